"""The shrink: rounds of the passes over a failure until none finds a smaller one or the
budget is spent, then a switch dropped by moving another, then the check that its
preemption count is minimal."""

from __future__ import annotations

import time
from typing import Any

import attrs

from vmfuzz.case import Case
from vmfuzz.failure import Failure
from vmfuzz.shrink._budget import Budget
from vmfuzz.shrink._passes import (
    MINIMAL_PREEMPTIONS,
    PASSES,
    ROUND_PASSES,
    SHIFT_RUNS,
    SHIFTED_SWITCHES,
    VERIFY_RUNS,
    VERIFY_SECONDS,
    Found,
    Pass,
    PassStats,
    Shrinking,
    other_failures,
)


@attrs.frozen
class ShrinkResult:
    """The shrunk failure, whether its preemption count is minimal (True: every smaller
    bound was searched exhaustively; None: a search was cut short or not run; False: fewer
    preemptions need more tasks in flight), and what each pass of :data:`PASSES` did (in
    that order).  ``clock_hit`` names the searches a CPU-time safety net stopped before
    their run limit (``shrink``, ``shifted_switches``, ``minimal_preemptions``): only then
    may another machine end elsewhere."""

    failure: Failure
    minimal_preemptions: bool | None
    passes: list[PassStats]
    clock_hit: tuple[str, ...] = ()
    # The same program failing other checks with fewer preemptions (or tasks in flight):
    # :func:`~vmfuzz.shrink._passes.other_failures`.
    others: tuple[Failure, ...] = ()

    @property
    def case(self) -> Case:
        return self.failure.case

    @property
    def preemptions(self) -> int:
        return self.failure.preemptions

    def to_json(self) -> dict[str, Any]:
        return {"passes": [p.to_json() for p in self.passes], "clock_hit": list(self.clock_hit)}


def shrink(
    failure: Failure,
    budget: Budget,
    *,
    verify_minimal: bool = True,
    verify_seconds: float = VERIFY_SECONDS,
) -> ShrinkResult:
    """Shrink ``failure`` (a failing case, as Hypothesis or the pool left it) to the size of a
    race drawn in a mail: fewest tasks in flight, then preemptions, operations and steps.

    A failure whose schedule is recorded decisions goes through rounds of
    :data:`ROUND_PASSES` within ``budget``, then ``shifted_switches`` (a switch dropped, another
    moved a few decisions, at most SHIFT_RUNS runs); then, with ``verify_minimal``, its preemption
    count is checked by bounded exhaustive search (``minimal_preemptions``: at most
    VERIFY_RUNS runs, with a safety net of ``verify_seconds`` from when it starts).  Every
    candidate kept fails the same check.
    """
    s = Shrinking(failure, failure.violation.check)
    stats = [PassStats(p.name) for p in PASSES]
    by_name = {st.name: st for st in stats}
    hit: list[str] = []
    if failure.case.schedule.kind == "decisions":
        _rounds(s, budget, by_name)
        if budget.clock_hit:
            hit.append("shrink")
        shift = Budget(SHIFT_RUNS, time.process_time() + verify_seconds)
        while SHIFTED_SWITCHES.applies(s) and not shift.spent:
            found = _run(SHIFTED_SWITCHES, s, shift, by_name[SHIFTED_SWITCHES.name])
            if found is None:
                break
            by_name[SHIFTED_SWITCHES.name].kept += 1
            s.adopt(found[1], found[0])
        if shift.clock_hit:
            hit.append(SHIFTED_SWITCHES.name)
    if verify_minimal:
        verify = Budget(VERIFY_RUNS, time.process_time() + verify_seconds)
        _run(MINIMAL_PREEMPTIONS, s, verify, by_name[MINIMAL_PREEMPTIONS.name])
        if verify.clock_hit:
            hit.append(MINIMAL_PREEMPTIONS.name)
    return ShrinkResult(s.failure, s.minimal, stats, tuple(hit), tuple(other_failures(s)))


def _rounds(s: Shrinking, budget: Budget, stats: dict[str, PassStats]) -> None:
    """Each round tries the passes in order; the first smaller failure found is kept and the
    round starts again.  Ends when a round finds none or the budget is spent."""
    while not budget.spent:
        for p in ROUND_PASSES:
            if not p.applies(s):
                continue
            found = _run(p, s, budget, stats[p.name])
            if found is not None:
                stats[p.name].kept += 1
                s.adopt(found[1], found[0])
                break
        else:
            return


def _run(p: Pass, s: Shrinking, budget: Budget, stats: PassStats) -> Found:
    """Run pass ``p`` on its share of ``budget``, and account for what it spent."""
    used = budget.used
    t0 = time.process_time()
    if p.share is None:
        found = p.run(s, budget, stats)
    else:
        sub = budget.share(*p.share)
        found = p.run(s, sub, stats)
        budget.absorb(sub)
    stats.runs += budget.used - used
    stats.seconds += time.process_time() - t0
    return found
