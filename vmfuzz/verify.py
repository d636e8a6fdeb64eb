"""Bounded verification: a case's program under every schedule with at most N preemptions.

A replay follows one schedule; a fix that holds there may still fail on its neighbour.  Here
the case's tasks are run under *every* schedule with at most ``bound`` preemptions (a switch
away from a task that could go on; a switch when it blocked or ended is free), by the
stateless bounded exhaustive search of :func:`vmfuzz.schedules.explore` (CHESS), once on the
kernel the case was recorded on and, for a case with bug switches, once more with every
switch off (the fixed kernel).  The verdict is one line, e.g. ``violation on 3 of 40
schedules (rmap_reachable 3); fixed kernel clean on all 38 schedules``: the two kernels'
schedule counts differ when the fix changes where tasks block.

The work is bounded by ``limit`` schedules per kernel; a search cut short says so and never
reads as clean.  Each schedule is counted in scheduler steps too (the work unit of the
report).  Nothing here imports Hypothesis.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from vmfuzz.case import Case, Run, execute
from vmfuzz.corpus import outcome_label
from vmfuzz.schedules import Replay, explore

DEFAULT_BOUND = 2
DEFAULT_LIMIT = 100_000  # schedules per kernel


@attrs.define
class Search:
    """Every schedule of one kernel's run of the program: what each ended in.

    ``outcomes`` counts schedules per outcome label (``clean``, ``budget``, a check name);
    ``first`` is the first schedule (in search order: fewest preemptions along each branch
    first) that violated a check, re-run with its trace; ``complete`` is false when ``limit``
    cut the search short."""

    kernel: str  # "bug" | "fixed" | "program" | "patched"
    case: Case  # the program on this kernel
    schedules: int = 0
    steps: int = 0
    outcomes: dict[str, int] = attrs.field(factory=dict)
    first: Run | None = None
    complete: bool = True

    @property
    def violations(self) -> int:
        return sum(n for label, n in self.outcomes.items() if label not in ("clean", "budget"))

    @property
    def clean(self) -> bool:
        """Clean on every schedule, and every schedule was tried."""
        return self.complete and self.violations == 0

    def counts(self) -> str:
        """``"rmap_reachable 3, budget 1"``: the non-clean outcomes, most frequent first."""
        bad = sorted(((n, k) for k, n in self.outcomes.items() if k != "clean"),
                     key=lambda x: (-x[0], x[1]))
        return ", ".join(f"{k} {n}" for n, k in bad)

    def phrase(self) -> str:
        """``"violation on K of M schedules (check K)"`` or ``"clean on all M schedules"``."""
        cut = "" if self.complete else f" (search cut short at the limit of {self.schedules})"
        if self.violations:
            return (f"violation on {self.violations} of {self.schedules} schedules "
                    f"({self.counts()}){cut}")
        budget = self.outcomes.get("budget", 0)
        if budget:
            return (f"no violation on {self.schedules} schedules, but {budget} ran out of "
                    f"steps{cut}")
        if not self.complete:
            return f"no violation on the first {self.schedules} schedules{cut}"
        return f"clean on all {self.schedules} schedules"

    def to_json(self) -> dict[str, Any]:
        v = self.first.outcome.violation if self.first is not None else None
        return {
            "kernel": self.kernel,
            "bugs": sorted(self.case.config.bugs),
            "schedules": self.schedules,
            "steps": self.steps,
            "violations": self.violations,
            "outcomes": dict(sorted(self.outcomes.items())),
            "complete": self.complete,
            "first": None if v is None or self.first is None else {
                "check": v.check, "message": v.message, "step": v.step, "task": v.task,
                "label": v.label, "decisions": list(self.first.decisions),
            },
        }


def search(
    case: Case,
    kernel: str,
    bound: int = DEFAULT_BOUND,
    limit: int = DEFAULT_LIMIT,
    tick: Callable[[Search], None] | None = None,
) -> Search:
    """Run ``case``'s program under every schedule with <= ``bound`` preemptions (at most
    ``limit`` of them); ``tick(search)`` after each schedule (progress)."""
    out = Search(kernel, case)
    first_decisions: list[tuple[int, ...]] = []

    def run_one(src: Any) -> None:
        if out.schedules >= limit:  # one schedule more than the limit: the search is cut
            out.complete = False
            return
        run = execute(case, src, record_trace=False)
        label = outcome_label(run.outcome)
        out.schedules += 1
        out.steps += run.outcome.steps
        out.outcomes[label] = out.outcomes.get(label, 0) + 1
        if run.outcome.violation is not None and not first_decisions:
            first_decisions.append(tuple(run.decisions))
        if tick is not None:
            tick(out)

    for _ in explore(run_one, bound=bound, limit=limit + 1):
        if not out.complete:
            break
    if first_decisions:  # the first failing schedule again, with its trace (to show or save)
        out.first = execute(case, Replay(first_decisions[0]))
    return out


@attrs.define
class Verdict:
    """A case verified: the search on its kernel and, for a bug case, on the fixed kernel."""

    bound: int
    main: Search
    fixed: Search | None = None

    @property
    def bug_case(self) -> bool:
        return self.fixed is not None

    @property
    def ok(self) -> bool:
        """A bug case: its bug shows on some schedule and the fixed kernel is clean on all.
        A program without switches: clean on every schedule."""
        if self.fixed is not None:
            return self.main.violations > 0 and self.fixed.clean
        return self.main.clean

    @property
    def failing(self) -> Search | None:
        """The search whose first failing schedule is a finding to save: the fixed kernel's,
        or a program's or a patched kernel's own (None when there is none)."""
        s = self.fixed if self.fixed is not None else self.main
        return s if s.first is not None else None

    def line(self) -> str:
        """The verdict in one line."""
        pre = f"<= {self.bound} preemption{'s' if self.bound != 1 else ''}: "
        if self.fixed is None:
            if self.main.kernel == "patched":
                on = ", ".join(sorted(self.main.case.config.bugs))
                return f"{pre}kernel with {on}: {self.main.phrase()}"
            return pre + self.main.phrase()
        fixed = self.fixed.phrase()
        return f"{pre}{self.main.phrase()}; fixed kernel {fixed}"

    def to_json(self) -> dict[str, Any]:
        return {
            "bound": self.bound,
            "ok": self.ok,
            "line": self.line(),
            "kernel": self.main.to_json(),
            "fixed": self.fixed.to_json() if self.fixed is not None else None,
        }


def verify(
    case: Case,
    bound: int = DEFAULT_BOUND,
    limit: int = DEFAULT_LIMIT,
    tick: Callable[[Search], None] | None = None,
    *,
    patch: bool = False,
) -> Verdict:
    """Every schedule of ``case``'s program with <= ``bound`` preemptions on its kernel and,
    when it has bug switches on, on the fixed kernel (every switch off, the same checks).
    ``patch``: the switches are a patch under test (a plugin's): its kernel alone, which must
    be clean on every schedule."""
    if patch:
        return Verdict(bound, search(case, "patched", bound, limit, tick))
    if not case.config.bugs:
        return Verdict(bound, search(case, "program", bound, limit, tick))
    main = search(case, "bug", bound, limit, tick)
    fixed_case = attrs.evolve(case, config=attrs.evolve(case.config, bugs=frozenset()))
    return Verdict(bound, main, search(fixed_case, "fixed", bound, limit, tick))


def case_bound(cc: Any) -> int:
    """``DEFAULT_BOUND``, or the preemptions of the case's own recorded schedule when it has
    more: the bound ``vmfuzz verify`` tries next for a bug that no schedule with two
    preemptions shows (a lock-step livelock needs a switch at every step of its round).
    Counted as the search counts them: a switch away from a task that could go on; a
    departure where the running task blocked or ended is free."""
    try:
        run = execute(cc.case, cc.source())
    except Exception:  # a case that no longer runs: verify reports it as it stands
        return DEFAULT_BOUND
    return max(DEFAULT_BOUND, run.sched.preemptions)
