"""A fuzzing campaign: run the state machine until a budget is spent or a failure is found.

The campaign runs Hypothesis in chunks of examples (each chunk seeded from ``seed`` and its
index, so the same seed gives the same examples), stops at the first failure, takes the shrunk
case Hypothesis leaves behind, then tries bounded exhaustive exploration of that case's tasks to
confirm (or lower) its preemption count.  ``vmfuzz fuzz`` and ``vmfuzz soak`` are built on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import attrs
from hypothesis import Verbosity, seed, settings
from hypothesis.stateful import get_state_machine_test

from vmfuzz.case import Case, Schedule, execute
from vmfuzz.kernel import KernelConfig
from vmfuzz.schedules import explore
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

    @property
    def invariant(self) -> str | None:
        return self.failure.violation.check if self.failure else None

    def shrunk(self) -> dict[str, int] | None:
        if self.case is None or self.failure is None:
            return None
        return {
            "tasks": len(self.case.tasks),
            "ops": sum(len(t.ops) for t in self.case.tasks),
            "steps": self.failure.steps,
            "preemptions": self.preemptions,
        }


def fuzz(
    config: KernelConfig,
    *,
    scheduler: str = "preemptions",
    seed_value: int = 0,
    budget: float | None = 60.0,
    max_examples: int | None = None,
    chunk: int = 50,
    ops: list[str] | None = None,
    base_profile: str = "dev",
    progress: Progress | None = None,
    collect_labels: bool = False,
    verify_minimal: bool = True,
) -> CampaignResult:
    """Fuzz ``config`` until ``budget`` seconds or ``max_examples`` examples, or a failure."""
    cls = machine_for(config, scheduler=scheduler, ops=ops, collect_labels=collect_labels)
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
    if result.found and cls.failure is not None:
        result.failure = cls.failure
        result.case = cls.failure.case
        result.preemptions = cls.failure.preemptions
        if verify_minimal:
            _minimise_preemptions(result)
    _update(result, cls, t0)
    return result


def _update(result: CampaignResult, cls: Any, t0: float) -> None:
    result.examples = cls.stats.examples
    result.steps = cls.stats.steps
    result.budget_hits = cls.stats.budget_hits
    result.seconds = time.monotonic() - t0


def _minimise_preemptions(result: CampaignResult, limit: int = 4000) -> None:
    """Search schedules of the shrunk case's tasks with fewer preemptions (bounded DFS).

    If one fails the same check, the case adopts it: the count is then minimal for these
    operations.  ``minimal_preemptions`` is True when every bound below was exhausted.
    """
    assert result.failure is not None and result.case is not None
    check = result.failure.violation.check
    case = result.case
    for bound in range(result.preemptions):
        hit: list[Any] = []

        def run_one(src: Any, case: Case = case) -> bool:
            if hit:
                return True
            run = execute(case, src)
            if run.outcome.check == check and run.sched.preemptions <= bound:
                hit.append(run)
                return True
            return False

        runs = 0
        exhausted = True
        for found in explore(run_one, bound=bound, limit=limit):
            runs += 1
            if found:
                break
        else:
            exhausted = runs < limit
        if hit:
            run = hit[0]
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
            result.minimal_preemptions = True
            return
        if not exhausted:
            result.minimal_preemptions = None
            return
    result.minimal_preemptions = True
