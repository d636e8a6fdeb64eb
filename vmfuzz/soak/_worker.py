"""The worker process of a soak run: campaign after campaign until the deadline.

:func:`worker_entry` is the entry point of a process the supervisor starts (``spawn``).  The
worker reads its slot's seed cursor, writes the next one to ``workers/slot<N>.json`` *before* a
campaign starts (a restarted worker or a ``--resume`` never repeats a seed), and runs the
campaign (:func:`vmfuzz.campaign.fuzz`) in chunks of examples, reporting progress to the
supervisor over a pipe after each chunk.  A failure is shrunk here, saved to the corpus with
:func:`vmfuzz.corpus.save_failure` (atomic; named after the failure's signature, so the same
failure found by several workers is one file), its timeline drawn, and a finding record
written before the supervisor hears of it.  An exception escaping the worker is recorded as a
crash finding; the supervisor restarts the process.

A write that fails (a full disk, a read-only folder) is no crash: a failure the corpus cannot
take goes to a fallback folder (:mod:`vmfuzz._fallback`), a finding record that cannot be
written goes to the supervisor anyway, and the worker tells the supervisor (``disk``) and stops
after the campaign; it never starts a campaign whose seed cursor it could not write first.

The model (``vmfuzz.kernel``) and ``vmfuzz.campaign`` are imported inside functions, never at
the top: the worker imports the model under coverage.py so that its module-level lines count.
"""

from __future__ import annotations

import faulthandler
import fcntl
import os
import signal
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import attrs

from vmfuzz.plugins import load_plugins
from vmfuzz.soak._config import SoakConfig, validate
from vmfuzz.soak._coverage import COV_WARNINGS, COVERED_PACKAGE
from vmfuzz.soak._files import append_line, flock, now_iso, write_json, write_text
from vmfuzz.soak._findings import finding_id, known_like, load_findings
from vmfuzz.soak._metrics import rss_mb
from vmfuzz.soak._plan import Profile, campaign_plan, profile_named
from vmfuzz.soak._pool import (
    loaded_from_entries,
    open_store,
    pool_pairs,
    start_pool,
)
from vmfuzz.soak._state import read_slot
from vmfuzz.soak._task import kernel_config, known_test

CRASH_EXIT = 3  # exit status of a worker that reported its own crash
# A worker is replaced after its campaign when it has grown this much over its size after its
# first campaign (a long shrink leaves the heap large; a fresh process gives it back).
RSS_GROWTH_RECYCLE_MB = 150.0


def rerun_campaign(
    config: SoakConfig,
    seed: int,
    scheduler: str,
    profile: str,
    *,
    budget: float | None = 60.0,
    max_examples: int | None = None,
    steps: int | None = None,
    pool: list[dict[str, Any]] | None = None,
) -> Any:
    """Run the campaign a soak recorded as (seed, scheduler, profile) again, the same way.

    Returns the :class:`vmfuzz.campaign.CampaignResult`.  The examples come in the same order
    (each chunk of examples is seeded from the seed), so a campaign that found a failure finds
    the same one again.  A campaign that kept a pool started from the run's pool programs of
    the time (its log line: ``pool_in``); ``pool`` hands it pool entries to start from
    (:func:`vmfuzz.soak._pool.entries_for`), else it starts cold.  ``steps``:
    the campaign's step budget (the run's ``--campaign-budget``).
    """
    from vmfuzz.campaign import fuzz
    from vmfuzz.pool import Pool
    from vmfuzz.schedules import guided

    validate(config)
    prof = profile_named(profile)
    kconfig = kernel_config(config, prof)
    ops = list(config.ops) if config.ops is not None else None
    start = None
    if pool and guided(scheduler):
        start = Pool(kconfig, ops)
        start_pool(start, loaded_from_entries(pool, kconfig))
    return fuzz(
        kconfig,
        scheduler=scheduler,
        seed_value=seed,
        budget=budget,
        max_examples=max_examples,
        step_budget=steps,
        pool=start,
        chunk=prof.chunk,
        ops=ops,
        base_profile=prof.base_profile,
        collect_labels=True,
    )


@attrs.frozen
class WorkerArgs:
    """What the supervisor hands a worker process (pickled: plain data only)."""

    slot: int
    state_dir: str
    config: SoakConfig
    deadline: float  # time.monotonic() (system-wide on Linux)
    t0: float  # session start, time.monotonic()
    offset: float  # elapsed seconds of the earlier sessions
    campaign_seconds: float
    sample_every: int
    parent_pid: int
    rss_recycle_mb: float
    recycle_campaigns: int
    run_id: int = 0  # the run's identity (vmfuzz.soak._plan)
    campaign_steps: int | None = None  # a campaign's step budget (None: seconds only)


class _Stop(Exception):
    """Raised from the progress callback to end a campaign that has found nothing."""


def worker_entry(args: WorkerArgs, conn: Connection) -> None:
    """Process entry point of a worker (SIGINT is ignored: the parent decides when to stop)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # ``kill -USR1 PID`` appends the worker's Python stack to workers/slot<N>.stack (what is a
    # worker doing that has not reported progress for a long while?).
    stacks = Path(args.state_dir) / "workers" / f"slot{args.slot}.stack"
    try:
        stacks.parent.mkdir(parents=True, exist_ok=True)
        stack_file = open(stacks, "a", encoding="utf-8")  # open for the process' life
        faulthandler.register(signal.SIGUSR1, file=stack_file, all_threads=True)
    except OSError:  # a full disk: the run stops at the first state write, as it should
        pass
    w = _Worker(args, conn)
    try:
        w.run()
    except BaseException as exc:  # anything escaping here is a crash of the worker
        w.report_crash(exc)
        conn.close()
        os._exit(CRASH_EXIT)
    conn.close()


class _Worker:
    """One worker process: its slot's campaigns, progress messages, findings and coverage."""

    def __init__(self, args: WorkerArgs, conn: Connection) -> None:
        self.a = args
        self.conn = conn
        self.state = Path(args.state_dir)
        self.slot_file = self.state / "workers" / f"slot{args.slot}.json"
        self.log_file = self.state / "workers" / f"slot{args.slot}.log"
        self.stopping = False
        self.orphan = False
        self.current: dict[str, Any] | None = None
        self.cov: Any = None
        self.tracing = False
        self.carry = False
        self.chunks = 0
        self.sampled_chunks = 0
        self._last: dict[str, Any] = {}
        self.pool: Any = None  # the campaign's pool (a campaign that keeps one)
        self.pool_in = 0  # entries of the run's pool it started from
        self.store: Any = None  # the run's pool folder, as this slot's writer
        self.write_error: str | None = None  # the first state write that failed

    # ---------------------------------------------------------------- messages
    def send(self, kind: str, payload: dict[str, Any]) -> None:
        if self.orphan:
            return
        try:
            self.conn.send((kind, payload))
        except (OSError, EOFError):  # the parent is gone: finish quietly
            self.orphan = True
            self.stopping = True

    def _write_failed(self, e: OSError) -> None:
        """A state write failed: tell the supervisor once, and stop after this campaign."""
        if self.write_error is None:
            self.write_error = f"{e.filename or ''}: {e.strerror or e}".lstrip(": ")
            self.send("disk", {"slot": self.a.slot, "error": self.write_error})
        self.stopping = True

    def _check_stop(self) -> None:
        if os.getppid() != self.a.parent_pid:
            self.orphan = True
            self.stopping = True
        try:
            while not self.orphan and self.conn.poll():
                if self.conn.recv() == "stop":
                    self.stopping = True
        except (OSError, EOFError):
            self.orphan = True
            self.stopping = True

    def elapsed(self) -> float:
        return self.a.offset + time.monotonic() - self.a.t0

    # ---------------------------------------------------------------- main loop
    def run(self) -> None:
        self._import_model()
        # The slot's seed cursor is ours alone: a worker of a killed session that is still
        # finishing its campaign (an orphan) holds this lock until it exits.
        self.slot_file.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(self.state / "workers" / f"slot{self.a.slot}.lock",
                       os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(lock, fcntl.LOCK_EX)
        cursor = self._read_cursor()
        done = 0
        baseline: float | None = None
        while True:
            self._check_stop()
            remaining = self.a.deadline - time.monotonic()
            if self.stopping or remaining < 0.5:
                break
            index = cursor
            cursor += 1
            seed, scheduler, profile = campaign_plan(
                self.a.slot, index, self.a.config.schedulers, self.a.run_id
            )
            self.current = {
                "seed": seed, "scheduler": scheduler, "profile": profile.name,
                "index": index, "started": now_iso(), "elapsed": round(self.elapsed(), 3),
            }
            try:  # the cursor is on disk before the campaign starts, or it does not start
                write_json(self.slot_file, {"slot": self.a.slot, "next": cursor,
                                            "current": self.current})
            except OSError as e:
                self._write_failed(e)
                break
            self.send("start", dict(self.current))
            budget = max(0.5, remaining)  # the session's end; the campaign's own: steps
            if self.a.campaign_steps is None:
                budget = min(self.a.campaign_seconds, budget)
            result = self._campaign(seed, scheduler, profile, budget)
            finished = dict(self.current)
            try:
                write_json(self.slot_file, {"slot": self.a.slot, "next": cursor,
                                            "current": None}, fsync=False)
            except OSError as e:
                self._write_failed(e)
            self.current = None
            if result is not None:
                finished.update(
                    seconds=round(result.seconds, 3), examples=result.examples,
                    steps=result.steps, found=result.found,
                )
                finished["signature"] = self._found(result, seed, scheduler, profile)
            else:  # what ran of it (a --resume counts it from the log if the stats missed it)
                finished.update(stopped=True, examples=self._last["examples"],
                                steps=self._last["steps"])
            message = self._share_pool(finished)
            try:
                append_line(self.log_file, finished)
            except OSError as e:
                self._write_failed(e)
            self.send("end", message)
            if self.write_error is not None:
                break
            done += 1
            rss = rss_mb(os.getpid())
            if baseline is None:
                baseline = rss
            grown = rss is not None and baseline is not None and (
                rss > self.a.rss_recycle_mb or rss - baseline > RSS_GROWTH_RECYCLE_MB
            )
            if grown or 0 < self.a.recycle_campaigns <= done:
                self.send("recycle", {"rss_mb": rss, "campaigns": done})
                break

    def _import_model(self) -> None:
        """Import the model (under coverage, so module-level lines count) and the plugins."""
        if self.a.sample_every > 0:
            try:
                import coverage

                data = self.state / "coverage" / f"cov.slot{self.a.slot}.{os.getpid()}"
                data.parent.mkdir(parents=True, exist_ok=True)
                self.cov = coverage.Coverage(
                    data_file=str(data), branch=True, source_pkgs=[COVERED_PACKAGE]
                )
                self.cov.set_option("run:disable_warnings", COV_WARNINGS)
                self.cov.start()
            except Exception:  # coverage.py is optional for fuzzing itself
                self.cov = None
        try:
            import vmfuzz.kernel
        finally:
            if self.cov is not None:
                self.cov.stop()
                self._save_coverage()
        load_plugins(self.a.config.plugins)
        import vmfuzz.campaign  # noqa: F401

    def _save_coverage(self) -> bool:
        """Write the coverage data; a failed write turns coverage off for this process."""
        try:
            self.cov.save()
        except OSError:
            self.cov = None
            return False
        return True

    def _read_cursor(self) -> int:
        data = read_slot(self.slot_file)  # a damaged file is an error, never seed 0 again
        return int(data["next"]) if data is not None else 0

    def _campaign(
        self, seed: int, scheduler: str, profile: Profile, budget: float
    ) -> Any:
        from vmfuzz.campaign import fuzz
        from vmfuzz.pool import Pool
        from vmfuzz.schedules import guided

        self._last = {"examples": 0, "steps": 0, "budget_hits": 0, "ops": {}, "labels": {}}
        cfg = self.a.config
        kconfig = kernel_config(cfg, profile)
        ops = list(cfg.ops) if cfg.ops is not None else None
        self.pool = None
        if guided(scheduler):  # the run's pool: every campaign that keeps one starts from it
            self.pool = Pool(kconfig, ops)
            loaded = open_store(self.state, "read").load(kconfig)
            self.pool_in = len(loaded.entries) + len(loaded.rerun)
            seeded = start_pool(self.pool, loaded)
            if seeded:
                self.send("progress", {"examples": 0, "steps": seeded, "budget_hits": 0,
                                       "ops": {}, "labels": {}})
        known = [[r.get("check"), r.get("label")] for r in load_findings(self.state)
                 if r.get("kind") == "failure" and r.get("corpus")]
        self._next_chunk()
        try:
            return fuzz(
                kconfig,
                scheduler=scheduler,
                seed_value=seed,
                budget=budget,
                step_budget=self.a.campaign_steps,
                chunk=profile.chunk,
                ops=ops,
                base_profile=profile.base_profile,
                progress=self._progress,
                collect_labels=True,
                pool=self.pool,
                known=known_test(known),
            )
        except _Stop:
            return None
        finally:
            # Coverage started for a chunk that never ran (the budget was over): next one.
            self._end_chunk(ran=False)

    def _share_pool(self, finished: dict[str, Any]) -> dict[str, Any]:
        """Add the campaign's new pool programs to the run's pool; the "end" message (with
        the interleaving pairs the campaign met, which the log line leaves out)."""
        if self.pool is None:
            return finished
        finished["pool_in"] = self.pool_in
        if self.store is None:
            self.store = open_store(self.state, f"slot{self.a.slot}")
        try:
            finished["pool_added"] = self.store.add(self.pool.unsaved or [])
        except OSError as e:
            self._write_failed(e)
        return dict(finished, pairs=pool_pairs(self.pool))

    def _next_chunk(self) -> None:
        """Start coverage if the next chunk of examples is a sampled one."""
        every = max(1, self.a.sample_every)
        # Not the first chunks: a failure found in a traced chunk is also shrunk traced (slow).
        sampled = self.cov is not None and (
            self.carry or (self.chunks + self.a.slot + 1) % every == 0
        )
        self.chunks += 1
        self.carry = False
        if sampled:
            self.cov.start()
            self.tracing = True

    def _end_chunk(self, ran: bool = True) -> None:
        if not self.tracing:
            return
        self.cov.stop()
        self.tracing = False
        if not ran:
            self.carry = True
            return
        if not self._save_coverage():
            return
        self.sampled_chunks += 1
        self.send("coverage", {"chunks": 1})

    def _progress(self, r: Any) -> None:
        st = r.stats
        last = self._last
        delta: dict[str, Any] = {
            "examples": r.examples - last["examples"],
            "steps": r.steps - last["steps"],
            "budget_hits": r.budget_hits - last["budget_hits"],
        }
        for key in ("ops", "labels"):
            now = getattr(st, key, None) or {}
            before = last[key]
            delta[key] = {k: v - before.get(k, 0) for k, v in now.items() if v != before.get(k, 0)}
            last[key] = dict(now)
        last["examples"], last["steps"] = r.examples, r.steps
        last["budget_hits"] = r.budget_hits
        self._end_chunk()
        self.send("progress", delta)
        self._check_stop()
        if self.stopping and not r.found:
            raise _Stop
        if not r.found:  # no coverage while the failure is minimised after the last chunk
            self._next_chunk()

    # ---------------------------------------------------------------- findings
    def _found(self, r: Any, seed: int, scheduler: str, profile: Profile) -> str | None:
        if not r.found or r.failure is None or r.case is None:
            return None
        signature = self._record(r, r.case, r.failure.violation, r.shrunk(), seed, scheduler,
                                 profile)
        from vmfuzz.campaign import size_of_failure

        for other in getattr(r, "others", ()):  # the shrunk program failing another check
            self._record(r, other.case, other.violation, size_of_failure(other), seed,
                         scheduler, profile, also_of=signature)
        return signature

    def _record(self, r: Any, case: Any, v: Any, shrunk: Any, seed: int, scheduler: str,
                profile: Profile, also_of: str | None = None) -> str:
        """Save one failure of campaign ``r`` and record it as a finding; its signature.
        ``also_of``: the finding whose shrunk program this one is, failing another check
        on a smaller schedule."""
        meta = {
            "found_by": f"vmfuzz soak (worker {self.a.slot}, scheduler {scheduler}, "
                        f"profile {profile.name})",
            "seed": seed,
            "scheduler": scheduler,
            "profile": profile.name,
        }
        rec: dict[str, Any] = {
            "kind": "failure",
            "check": v.check,
            "message": v.describe(),
            "label": v.label,
            "worker": self.a.slot,
            "seed": seed,
            "scheduler": scheduler,
            "profile": profile.name,
            "examples": r.examples,
            "first_failure_example": getattr(r.stats, "first_failure_example", None),
            "shrunk": shrunk,
            "minimal_preemptions": r.minimal_preemptions if also_of is None else None,
            "shrink_passes": ([p.to_json() for p in getattr(r, "shrink_passes", [])]
                              if also_of is None else []),
            "clock_hit": list(getattr(r, "clock_hit", [])),
            "corpus": None,
            "timeline": None,
        }
        if also_of is not None:
            rec["also_of"] = also_of
        like = (known_like(load_findings(self.state), v.check, v.label)
                if r.known_hit and also_of is None else None)
        saved_error = save_finding(self.state, self.a.config.corpus, case, v, meta, rec, like)
        if rec.get("corpus_error"):
            self.stopping = True  # the corpus is unwritable: stop after this campaign
            self.send("disk", {"slot": self.a.slot, "error": rec["corpus_error"]})
        if saved_error is not None:
            self._write_failed(saved_error)
        rec["elapsed"] = round(self.elapsed(), 3)
        rec["found_at"] = now_iso()
        fid = finding_id(rec["elapsed"], self.a.slot, seed,
                         "failure" if also_of is None else f"also-{v.check}")
        try:
            write_json(self.state / "findings" / f"{fid}.json", rec)
        except OSError as e:  # the supervisor keeps it and shows it in the summary
            rec["record_error"] = f"{e.strerror or e}"
            self._write_failed(e)
        self.send("finding", rec)
        return str(rec["signature"])

    def report_crash(self, exc: BaseException) -> None:
        """Record a crash of this worker as a finding (the parent restarts the worker)."""
        tb = traceback.extract_tb(exc.__traceback__)
        where = ""
        if tb:
            fr = tb[-1]
            where = f"{Path(fr.filename).name}:{fr.name}:{fr.lineno}"
        cur = self.current or {}
        rec: dict[str, Any] = {
            "kind": "crash",
            "signature": f"worker_crash|{type(exc).__name__}|{where}",
            "check": "worker_crash",
            "message": f"worker {self.a.slot} crashed: {type(exc).__name__}: {exc}",
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
            "worker": self.a.slot,
            "seed": cur.get("seed"),
            "scheduler": cur.get("scheduler"),
            "profile": cur.get("profile"),
            "corpus": None,
            "timeline": None,
            "elapsed": round(self.elapsed(), 3),
            "found_at": now_iso(),
        }
        try:
            fid = finding_id(rec["elapsed"], self.a.slot, cur.get("seed", -1), "crash")
            write_json(self.state / "findings" / f"{fid}.json", rec)
        except OSError as e:
            rec["record_error"] = f"{e.strerror or e}"
        finally:
            self.send("crash", rec)




def save_finding(state: Path, corpus: str, case: Any, v: Any, meta: dict[str, Any],
                 rec: dict[str, Any], like: dict[str, Any] | None = None) -> OSError | None:
    """Save a failure to the corpus (else a fallback folder) and draw its timeline into the
    state folder; fills the finding record ``rec`` (signature, corpus, timeline, or what went
    wrong: ``corpus_error``, ``error``, ``case_text``).  The timeline write's error, if any
    (the report draws it again later).

    ``like``: the record of a finding with the same check and label that the run shrank and
    saved before, when the campaign left this one unshrunk for that reason.  The hit is then
    counted under that finding and its case kept in ``STATE/hits/``, not in the corpus: an
    unshrunk case would be a second corpus file (another signature) for one failure."""
    from vmfuzz.corpus import load

    if like is not None and like.get("corpus"):
        rec["signature"] = like["signature"]
        rec["known"] = True
        rec["corpus"] = like["corpus"]
        rec["timeline"] = like.get("timeline")
        try:
            saved = _save(state, str(state / "hits"), case, v, meta)
            if saved.path is not None:
                rec["hit_case"] = str(saved.path.resolve())
            else:
                rec["case_text"] = saved.text
        except Exception as e:  # the finding itself is saved already
            rec["hit_error"] = f"{type(e).__name__}: {e}"
        return None
    try:
        saved = _save(state, corpus, case, v, meta)
        if saved.corpus_error is not None:
            rec["corpus_error"] = saved.corpus_error
        if saved.path is None:
            rec["signature"] = f"{v.check}|{v.label or ''}|unsaved"
            rec["error"] = "no folder could take the case: its text is in case_text"
            rec["case_text"] = saved.text
            return None
        path = saved.path.resolve()
        cc = load(path)
        rec["signature"] = str(cc.metadata.get("signature") or path.stem)
        rec["corpus"] = str(path)
        try:
            rec["timeline"] = draw_timeline(state, cc, path)
        except OSError as e:
            return e
    except Exception as e:  # not reproducible, or the model raised while re-running it
        rec["signature"] = f"{v.check}|{v.label or ''}|unsaved"
        rec["error"] = f"{type(e).__name__}: {e}"
    return None


def _save(state: Path, corpus: str, case: Any, v: Any, meta: dict[str, Any]) -> Any:
    """Save to the corpus (else a fallback folder) under the corpus lock when it can be
    taken: workers saving one signature at once keep the shorter run."""
    from vmfuzz._fallback import save_case

    try:
        with flock(state / "corpus.lock"):
            return save_case(case, v, Path(corpus), meta)
    except OSError:  # the lock file cannot be created (a full disk): save without it
        return save_case(case, v, Path(corpus), meta)


def draw_timeline(state: Path, cc: Any, path: Path) -> str:
    """Draw the saved case's race timeline into ``STATE/timelines/``; its path."""
    try:
        from vmfuzz.corpus import attempt
        from vmfuzz.timeline import render_attempt

        text = render_attempt(cc, attempt(cc), width=120)
    except Exception as e:
        text = f"(no timeline: {type(e).__name__}: {e})\n"
    out = state / "timelines" / f"{path.stem}.txt"
    write_text(out, text)
    return str(out.resolve())
