"""One campaign on several cores: ``vmfuzz fuzz --workers N``.

Worker ``w`` is a process (``spawn``) that runs :func:`vmfuzz.campaign.fuzz` on stream ``w`` of
the campaign's seed (:func:`vmfuzz.campaign.chunk_seed`; stream 0 is exactly what a one-worker
campaign runs), after loading the plugins its parent has loaded.  A wall-clock budget is the
parent's clock, shared: a worker gets what is left of it when it has started.  A step or CPU
budget is per worker: each stream runs until it has spent that much itself, so a stream's
search is the same as when it runs alone.  The first worker to meet a
failure wins: the others are stopped at once and the winner shrinks its failure alone.  Its
stream is reported, so ``vmfuzz fuzz --seed S --stream W`` searches the same stream again in one
process (``--max-examples`` makes that deterministic).

Under a step budget alone (no wall or CPU budget, no pool folder) "first" is counted in work,
not by the clock: the winner is the stream that met its failure after the fewest steps (the
lower stream on a tie).  A stream that has found nothing by the time it has run as many steps
as the best failure so far is stopped (it cannot do better); one that finds a failure after
fewer steps takes over from the winner.  Each stream's counters are taken where it passed the
winner's step count, so the result, the totals included, is the same on any machine: only
the waiting differs.

Workers send their counters after every chunk of examples, so the progress line and the
totals (examples, mutant and probe runs, steps) count every stream.  Failures and counters
travel over a pipe between processes of this run only.  With a pool folder (``--pool``) the
streams also share their pools through it (:mod:`vmfuzz._poolstore`), each stream writing its
own file.
Nothing here knows about the kernel model.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any, cast

import attrs

from vmfuzz.campaign import CampaignResult
from vmfuzz.context import Stats
from vmfuzz.kernel import KernelConfig

Progress = Callable[[CampaignResult], None]


@attrs.frozen
class _Job:
    """What one worker runs: stream ``stream`` of the campaign, until ``deadline``
    (``time.monotonic()``, the same clock in every process on Linux) or ``max_examples``."""

    config: KernelConfig
    scheduler: str
    seed_value: int
    stream: int
    deadline: float | None
    max_examples: int | None
    mutants: int | None
    plugins: tuple[str, ...] = ()  # loaded first: the parent's registries, in every worker
    pool_dir: str | None = None  # the pool folder the streams share (vmfuzz._poolstore)
    step_budget: int | None = None  # this worker's own
    cpu_budget: float | None = None  # this worker's own CPU seconds


class WorkerError(RuntimeError):
    """A worker raised (a bug in vmfuzz, not a finding) or died; the one-line message names its
    stream, ``remote_traceback`` is the worker's traceback (empty if it died)."""

    def __init__(self, message: str, remote_traceback: str = "") -> None:
        super().__init__(message)
        self.remote_traceback = remote_traceback


def _worker(job: _Job, conn: Connection) -> None:
    """Process entry point: run the stream, report counters per chunk, then the result."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    from vmfuzz.campaign import fuzz

    announced = False

    def progress(r: CampaignResult) -> None:
        nonlocal announced
        conn.send(("progress", _counters(r)))
        if r.found and not announced:  # before the shrink: the parent stops the others now
            announced = True
            conn.send(("found", None))

    try:
        if job.plugins:
            from vmfuzz.plugins import load_plugins

            load_plugins(job.plugins)
        budget = None
        if job.deadline is not None:
            budget = max(0.001, job.deadline - time.monotonic())
        r = fuzz(job.config, scheduler=job.scheduler, seed_value=job.seed_value, budget=budget,
                 max_examples=job.max_examples, progress=progress, mutants=job.mutants,
                 stream=job.stream, pool_dir=job.pool_dir, step_budget=job.step_budget,
                 cpu_budget=job.cpu_budget)
        conn.send(("done", r))
    except BaseException as exc:  # reported to the parent, which decides
        conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    finally:
        conn.close()


def _counters(r: CampaignResult) -> dict[str, float]:
    st = r.stats
    return {
        "examples": r.examples,
        "steps": r.steps,
        "mutant_runs": st.mutant_runs if st else 0,
        "probe_runs": st.probe_runs if st else 0,
        "budget_hits": r.budget_hits,
        "pool_loaded": r.pool_loaded,
        "pool_picked": r.pool_picked,
        "cpu_seconds": r.cpu_seconds,
        "first_failure_steps": -1 if r.first_failure_steps is None else r.first_failure_steps,
    }


def fuzz_workers(
    config: KernelConfig,
    *,
    workers: int,
    scheduler: str = "mixed",
    seed_value: int = 0,
    budget: float | None = 60.0,
    max_examples: int | None = None,
    mutants: int | None = None,
    progress: Progress | None = None,
    target: Callable[[_Job, Connection], None] | None = None,
    pool_dir: str | None = None,
    step_budget: int | None = None,
    cpu_budget: float | None = None,
) -> tuple[CampaignResult, int | None]:
    """Run streams ``0..workers-1`` of the campaign side by side; returns the combined result
    and the stream that found the failure (None if none did).  ``budget`` (wall seconds) is
    shared; ``step_budget`` and ``cpu_budget`` are each worker's.

    The result is the winner's (failure, shrunk case, preemptions, shrink time), with the
    counters summed over every stream and ``seconds`` / ``first_failure_seconds`` on the
    parent's clock (process start-up included; the first failure as the winner met it, before
    any shrinking).  Raises :class:`WorkerError` if a worker fails; Ctrl-C stops every worker
    and is re-raised.  ``target`` replaces the workers' entry point (tests give one whose
    stream 1 never reports).  With ``pool_dir`` the streams share their pool through that
    folder (:mod:`vmfuzz._poolstore`): each takes the others' new entries after every chunk,
    so what a stream searches then depends on how far the others got (on timing)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, not {workers}")
    from vmfuzz.plugins import loaded_specs

    plugins = loaded_specs()  # a worker's operations, bugs and checks are this process's
    t0 = time.monotonic()
    deadline = None if budget is None else t0 + budget
    ctx = multiprocessing.get_context("spawn")
    procs: dict[int, Any] = {}
    conns: dict[Connection, int] = {}
    counters: dict[int, dict[str, float]] = {}
    results: dict[int, CampaignResult] = {}
    winner: int | None = None
    by_work = step_budget is not None and budget is None and cpu_budget is None \
        and pool_dir is None
    reports: dict[int, list[dict[str, float]]] = {}  # by_work: every report of each stream
    best: tuple[float, int] | None = None  # by_work: (first failure's steps, stream) of winner
    try:
        for w in range(workers):
            parent, child = ctx.Pipe(duplex=False)
            job = _Job(config, scheduler, seed_value, w, deadline, max_examples, mutants,
                       plugins, pool_dir, step_budget, cpu_budget)
            p = ctx.Process(target=target or _worker, args=(job, child), name=f"vmfuzz-stream{w}",
                            daemon=True)
            p.start()
            child.close()
            procs[w] = p
            conns[parent] = w
        while conns:
            # wait() returns the ready objects it was given: here, only Connections.
            for conn in cast(list[Connection], wait(list(conns))):
                w = conns[conn]
                try:
                    msg = conn.recv()
                except EOFError:
                    del conns[conn]
                    procs[w].join()
                    if w not in results and (winner is None or w == winner):
                        raise WorkerError(
                            f"worker {w} (stream {w}) died with exit status "
                            f"{procs[w].exitcode} before reporting a result"
                        ) from None
                    continue
                kind = msg[0]
                if kind == "progress":
                    counters[w] = msg[1]
                    if by_work:
                        reports.setdefault(w, []).append(msg[1])
                        best, winner = _by_work(procs, reports, best, winner, w)
                    if progress is not None:
                        progress(_combined(counters, t0, winner is not None))
                elif kind == "found" and winner is None and not by_work:
                    winner = w
                    for other, p in procs.items():
                        if other != w and p.is_alive():
                            p.terminate()
                elif kind == "done":
                    results[w] = msg[1]
                elif kind == "error":
                    if winner is not None and w != winner:
                        continue  # stopped mid-run: its error is the stop, not a bug
                    raise WorkerError(f"worker {w} (stream {w}): {msg[1]}", msg[2])
    finally:
        for p in procs.values():
            if p.is_alive():
                p.terminate()
            p.join()
    for w, r in results.items():
        counters[w] = _counters(r)
    if best is not None:  # every other stream as far as the winner's failure, no further
        for w, seen in reports.items():
            if w != winner:
                counters[w] = next((c for c in seen if c["steps"] >= best[0]), counters[w])
    total = _combined(counters, t0, winner is not None)
    for res in results.values():  # the pool folder's warnings, each once
        total.pool_warnings += [w for w in res.pool_warnings if w not in total.pool_warnings]
    if winner is None:
        # The budget that ended the streams (one kind unless a wall clock cut some short).
        total.ran_out = ",".join(sorted({str(r.ran_out) for r in results.values()})) or None
        return total, None
    r = results[winner]  # a winner that ended without a result raised WorkerError above
    assert r.stats is not None and total.stats is not None
    r.examples, r.steps, r.budget_hits = total.examples, total.steps, total.budget_hits
    r.stats.mutant_runs, r.stats.probe_runs = total.stats.mutant_runs, total.stats.probe_runs
    r.pool_loaded, r.pool_picked = total.pool_loaded, total.pool_picked
    r.pool_warnings = total.pool_warnings
    r.cpu_seconds = total.cpu_seconds
    r.seconds = time.monotonic() - t0
    # When the winner first met the failure (before Hypothesis shrank it), on the parent's
    # clock: time.monotonic() is one clock for every process on Linux.
    at = r.stats.first_failure_at
    r.first_failure_seconds = at - t0 if at is not None else None
    return r, winner


def _by_work(procs: dict[int, Any], reports: dict[int, list[dict[str, float]]],
             best: tuple[float, int] | None, winner: int | None,
             w: int) -> tuple[tuple[float, int] | None, int | None]:
    """After a report of stream ``w`` under a step budget: the best failure so far and its
    stream; a stream beaten (or replaced as the winner) is stopped."""
    found = reports[w][-1].get("first_failure_steps", -1)
    if found >= 0 and (best is None or (found, w) < best):
        if winner is not None and procs[winner].is_alive():
            procs[winner].terminate()  # a failure after fewer steps takes over
        best, winner = (found, w), w
    if best is None:
        return best, winner
    for other, seen in reports.items():
        beaten = seen[-1]["steps"] >= best[0] or seen[-1].get("first_failure_steps", -1) >= 0
        if other != winner and beaten and procs[other].is_alive():
            procs[other].terminate()
    return best, winner


def _combined(counters: dict[int, dict[str, float]], t0: float, found: bool) -> CampaignResult:
    """A result that carries the summed counters of every stream (no failure)."""
    total = {k: int(sum(c.get(k, 0) for c in counters.values()))
             for k in ("examples", "steps", "mutant_runs", "probe_runs", "budget_hits",
                       "pool_loaded", "pool_picked")}
    cpu = sum(c.get("cpu_seconds", 0.0) for c in counters.values())
    stats = Stats(examples=total["examples"], steps=total["steps"],
                  mutant_runs=total["mutant_runs"], probe_runs=total["probe_runs"],
                  budget_hits=total["budget_hits"])
    return CampaignResult(found=found, examples=total["examples"], steps=total["steps"],
                          seconds=time.monotonic() - t0, budget_hits=total["budget_hits"],
                          stats=stats, pool_loaded=total["pool_loaded"],
                          pool_picked=total["pool_picked"], cpu_seconds=cpu)
