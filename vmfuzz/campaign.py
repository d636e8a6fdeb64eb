"""A fuzzing campaign: run the state machine until a budget is spent or a failure is found.

The campaign runs Hypothesis in chunks of examples (each chunk seeded from ``seed`` and its
index, so the same seed gives the same examples), stops at the first failure, takes the shrunk
case Hypothesis leaves behind, then tries bounded exhaustive exploration of that case's tasks to
confirm (or lower) its preemption count.  ``vmfuzz fuzz`` and ``vmfuzz soak`` are built on it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs
from hypothesis import Verbosity, seed, settings
from hypothesis.stateful import get_state_machine_test

from vmfuzz.case import Case, Run, Schedule, execute
from vmfuzz.kernel import KernelConfig
from vmfuzz.schedules import PreemptionList, Replay, explore
from vmfuzz.strategies import Failure, Stats, machine_for, profile

Progress = Callable[["CampaignResult"], None]


@attrs.define
class CampaignResult:
    """What a campaign did and found."""

    found: bool = False
    failure: Failure | None = None
    case: Case | None = None
    examples: int = 0
    steps: int = 0
    seconds: float = 0.0
    budget_hits: int = 0
    preemptions: int = 0
    minimal_preemptions: bool | None = None
    stats: Stats | None = None
    error: str | None = None
    first_failure_seconds: float | None = None  # time to the first (unshrunk) failure
    post_shrink_seconds: float = 0.0  # delta debugging + exhaustive preemption search

    @property
    def invariant(self) -> str | None:
        return self.failure.violation.check if self.failure else None

    def shrunk(self) -> dict[str, int] | None:
        """Size of the shrunk failure.  ``tasks`` counts the tasks that were in flight at the
        same time (the CPUs of a mail's race drawing: a setup task that finished before the
        others started does not count); ``threads`` counts every task of the case."""
        if self.case is None or self.failure is None:
            return None
        return {
            "tasks": concurrent_tasks(self.failure.trace),
            "threads": len(self.case.tasks),
            "ops": sum(len(t.ops) for t in self.case.tasks),
            "steps": self.failure.steps,
            "preemptions": self.preemptions,
        }


def fuzz(
    config: KernelConfig,
    *,
    scheduler: str = "mixed",
    seed_value: int = 0,
    budget: float | None = 60.0,
    max_examples: int | None = None,
    chunk: int = 50,
    ops: list[str] | None = None,
    base_profile: str = "dev",
    progress: Progress | None = None,
    collect_labels: bool = False,
    verify_minimal: bool = True,
    amplify: int | None = None,
    shrink_seconds: float = 10.0,
) -> CampaignResult:
    """Fuzz ``config`` until ``budget`` seconds or ``max_examples`` examples, or a failure."""
    if amplify is None:  # extra PCT schedules per program, except for the baselines
        amplify = 3 if scheduler in ("mixed", "pct") else 0
    cls = machine_for(
        config, scheduler=scheduler, ops=ops, collect_labels=collect_labels, amplify=amplify
    )
    result = CampaignResult(stats=cls.stats)
    t0 = time.monotonic()
    index = 0
    while True:
        done = cls.stats.examples
        if max_examples is not None and done >= max_examples:
            break
        if budget is not None and time.monotonic() - t0 >= budget:
            break
        n = chunk if max_examples is None else max(1, min(chunk, max_examples - done))
        s = settings(profile(base_profile), max_examples=n, verbosity=Verbosity.quiet,
                     derandomize=False)
        test = seed(seed_value * 1_000_003 + index)(get_state_machine_test(cls, settings=s))
        index += 1
        try:
            with _shrink_deadline(shrink_seconds):
                test()
        except Exception as exc:  # the failure Hypothesis shrank and re-raised
            if cls.failure is None:
                result.error = f"{type(exc).__name__}: {exc}"
                raise
            result.found = True
            break
        finally:
            _update(result, cls, t0)
            if progress is not None:
                progress(result)
    t_shrunk = time.monotonic()
    if result.found and cls.failure is not None:
        result.failure = cls.failure
        result.case = cls.failure.case
        result.preemptions = cls.failure.preemptions
        if result.case.schedule.kind == "decisions":
            _delta_shrink(result)
        if verify_minimal:
            _minimise_preemptions(result)
    result.post_shrink_seconds = time.monotonic() - t_shrunk
    _update(result, cls, t0)
    return result


def concurrent_tasks(trace: list[Any]) -> int:
    """The most tasks that had started and not yet exited at any step of ``trace``."""
    live: set[str] = set()
    most = 0
    for step in trace:
        live.add(step.task)
        most = max(most, len(live))
        if step.label == "exit":
            live.discard(step.task)
    return most


@contextlib.contextmanager
def _shrink_deadline(seconds: float) -> Iterator[None]:
    """Cap Hypothesis' shrinking time (its engine stops shrinking at MAX_SHRINKING_SECONDS,
    300 by default).  Our own delta debugging and exhaustive preemption search run after it
    and finish the job far cheaper than more Hypothesis shrink passes over a stateful run."""
    from hypothesis.internal.conjecture import engine

    old = getattr(engine, "MAX_SHRINKING_SECONDS", None)
    if old is None:
        yield
        return
    engine.MAX_SHRINKING_SECONDS = seconds  # type: ignore[assignment]
    try:
        yield
    finally:
        engine.MAX_SHRINKING_SECONDS = old


def _update(result: CampaignResult, cls: Any, t0: float) -> None:
    if cls.stats.first_failure_at is not None:
        result.first_failure_seconds = cls.stats.first_failure_at - t0
    result.examples = cls.stats.examples
    result.steps = cls.stats.steps
    result.budget_hits = cls.stats.budget_hits
    result.seconds = time.monotonic() - t0


def _search(case: Case, check: str, bound: int, limit: int) -> tuple[Run | None, bool]:
    """A run of ``case``'s tasks failing ``check`` with <= ``bound`` preemptions, if any.

    Returns (run or None, whether the search space was exhausted within ``limit`` runs).
    """
    hit: list[Run] = []

    def run_one(src: Any) -> bool:
        run = execute(case, src)
        if run.outcome.check == check:
            hit.append(run)
            return True
        return False

    runs = 0
    for found in explore(run_one, bound=bound, limit=limit):
        runs += 1
        if found:
            return hit[0], True
    return None, runs < limit


def _adopt(result: CampaignResult, run: Run, case: Case) -> None:
    assert result.failure is not None
    result.case = attrs.evolve(
        case, schedule=Schedule("decisions", decisions=tuple(run.sched.decisions))
    )
    result.failure = attrs.evolve(
        result.failure,
        case=result.case,
        violation=run.outcome.violation,
        steps=run.outcome.steps,
        preemptions=run.sched.preemptions,
        trace=list(run.sched.trace),
    )
    result.preemptions = run.sched.preemptions


def _smaller_programs(case: Case) -> list[Case]:
    """The case without one of its tasks, or without one operation of a multi-op task."""
    out = []
    tasks = case.tasks
    for i, t in enumerate(tasks):
        if len(tasks) > 1:
            out.append(attrs.evolve(case, tasks=tasks[:i] + tasks[i + 1 :]))
        for j in range(len(t.ops) if len(t.ops) > 1 else 0):
            fewer = attrs.evolve(t, ops=t.ops[:j] + t.ops[j + 1 :])
            out.append(attrs.evolve(case, tasks=(*tasks[:i], fewer, *tasks[i + 1 :])))
    return out


class _Recorder:
    """Wraps a source and records, per decision, (default index, chosen index)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.log: list[tuple[int, int, int]] = []

    def choose(self, runnable: list[Any], default: int, sched: Any) -> int:
        chosen = self.inner.choose(runnable, default, sched) % len(runnable)
        self.log.append((len(runnable), default, chosen))
        return chosen


def to_preemptions(case: Case, decisions: tuple[int, ...]) -> list[tuple[int, int]]:
    """The recorded decisions as a sparse preemption list relative to the default policy
    (exact: replaying the list reproduces the decisions)."""
    rec = _Recorder(Replay(decisions, strict=False))
    execute(case, rec, record_trace=False)
    out = []
    gap = 0
    for n, default, chosen in rec.log:
        if chosen == default:
            gap += 1
            continue
        others = [k for k in range(n) if k != default]
        out.append((gap, others.index(chosen)))
        gap = 0
    return out


def _delta_shrink(result: CampaignResult, max_runs: int = 1500, per_candidate: int = 120) -> None:
    """Greedy delta debugging after Hypothesis: drop tasks, operations and context switches
    while the same check still fails.  A candidate program is tried first under the old
    preemption list (relative to the default policy, so it survives most deletions: one
    run), then by a small bounded exhaustive search with as many preemptions as now.
    PCT-found failures shrink poorly in Hypothesis (a deleted op shifts every later decision
    of a PCT schedule); this pass does not depend on how the failure was found."""
    assert result.failure is not None and result.case is not None
    check = result.failure.violation.check
    case = result.case
    pre = to_preemptions(case, result.case.schedule.decisions)
    runs = 0

    def attempt(c: Case, p: list[tuple[int, int]], search: bool) -> Run | None:
        nonlocal runs
        runs += 1
        run = execute(c, PreemptionList(p))
        if run.outcome.check == check:
            return run
        if not search:
            return None
        found, _ = _search(c, check, len(p), per_candidate)
        runs += per_candidate // 4  # charge an estimate: most searches stop early
        return found

    improved = True
    while improved and runs < max_runs:
        improved = False
        candidates = [(c, pre, True) for c in _smaller_programs(case)]
        candidates += [(case, pre[:i] + pre[i + 1 :], False) for i in range(len(pre))]
        for c, p, search in candidates:
            if runs >= max_runs:
                break
            run = attempt(c, p, search)
            if run is not None:
                case = c
                pre = to_preemptions(c, tuple(run.sched.decisions))
                _adopt(result, run, c)
                improved = True
                break


def _minimise_preemptions(result: CampaignResult, limit: int = 3000) -> None:
    """Look for schedules of the shrunk program with fewer preemptions, by bounded
    exhaustive search (as CHESS does) over all schedules below the current count.
    ``minimal_preemptions`` is True when every smaller bound was searched exhaustively.
    """
    assert result.failure is not None and result.case is not None
    check = result.failure.violation.check
    for bound in range(result.preemptions):
        run, exhausted = _search(result.case, check, bound, limit)
        if run is not None:
            _adopt(result, run, result.case)
            result.minimal_preemptions = True
            return
        if not exhausted:
            result.minimal_preemptions = None
            return
    result.minimal_preemptions = True
