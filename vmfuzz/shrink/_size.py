"""How big a failure is, and the failure a smaller run makes.

Size is ordered: tasks in flight at once, preemptions, operations (each world feature counts
as one), scheduler steps.  A candidate is kept only if it fails the same check and its size
is smaller.
"""

from __future__ import annotations

import attrs

from vmfuzz.case import Case, Run, Schedule, TaskSpec
from vmfuzz.failure import Failure, concurrent_tasks

Size = tuple[int, int, int, int]  # (tasks in flight, preemptions, operations, steps)
Prog = tuple[tuple[TaskSpec, ...], frozenset[str]]


def prog(case: Case) -> Prog:
    """A program as the shrinker tells programs apart: its tasks and its world."""
    return case.tasks, case.config.world


def op_count(case: Case) -> int:
    """Operations, counting each world feature as one (a feature is setup done at boot: a
    case that needs fewer of them is smaller)."""
    return sum(len(t.ops) for t in case.tasks) + len(case.config.world)


def size_of(case: Case, run: Run) -> Size:
    """How big the failure of ``run`` (of ``case``) is, in the order that matters: tasks in
    flight at once, preemptions, operations, scheduler steps."""
    return (
        concurrent_tasks(run.sched.trace), run.sched.preemptions, op_count(case),
        run.outcome.steps,
    )


def failure_size(failure: Failure) -> Size:
    """:func:`size_of` of a failure being shrunk."""
    return (
        concurrent_tasks(failure.trace),
        failure.preemptions,
        op_count(failure.case),
        failure.steps,
    )


def adopted(failure: Failure, run: Run, case: Case) -> Failure:
    """``failure`` replaced by ``run`` of ``case`` (its schedule as recorded decisions), a
    run that fails the same check."""
    assert run.outcome.violation is not None
    case = attrs.evolve(case, schedule=Schedule("decisions", decisions=tuple(run.sched.decisions)))
    return attrs.evolve(
        failure,
        case=case,
        violation=run.outcome.violation,
        steps=run.outcome.steps,
        preemptions=run.sched.preemptions,
        trace=list(run.sched.trace),
    )
