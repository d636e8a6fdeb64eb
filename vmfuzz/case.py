"""A case: kernel config + tasks (each a thread running operations) + schedule; and running one.

This is the unit the fuzzer generates, the corpus stores (as JSON, see docs/corpus.md) and replay
re-runs.  Each task starts at a scheduler step (``start``; 0 = at the beginning) and runs its
operations in order; the schedule is one of the :mod:`vmfuzz.schedules` sources, described as
data.  Running a case needs no Hypothesis.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import TYPE_CHECKING, Any

import attrs

from vmfuzz._scheduler import Outcome, Scheduler, ScheduleSource
from vmfuzz.kernel import Kernel, KernelConfig
from vmfuzz.kernel.ops import OPS
from vmfuzz.lockdep import LockDep
from vmfuzz.schedules import PCT, NonPreemptive, PreemptionList, RandomWalk, Replay

if TYPE_CHECKING:
    from vmfuzz.causes import Cause

DEFAULT_MAX_STEPS = 20_000


@attrs.frozen
class OpCall:
    """One operation with its arguments, e.g. ``OpCall("munmap", {"mm": 0, "addr": 2, ...})``."""

    op: str
    args: dict[str, int] = attrs.field(factory=dict, hash=False)

    def describe(self) -> str:
        return f"{self.op}({', '.join(f'{k}={v}' for k, v in self.args.items())})"


@attrs.frozen
class TaskSpec:
    """A simulated thread: its name, the step at which it starts, and its operations."""

    name: str
    ops: tuple[OpCall, ...]
    start: int = 0


@attrs.frozen
class Schedule:
    """A schedule source as data: ``kind`` is preemptions | decisions | pct | random | none."""

    kind: str = "none"
    preemptions: tuple[tuple[int, int], ...] = ()
    decisions: tuple[int, ...] = ()
    seed: int = 0
    depth: int = 3
    k: int = 200

    def source(self) -> ScheduleSource:
        if self.kind == "preemptions":
            return PreemptionList(self.preemptions)
        if self.kind == "decisions":
            return Replay(self.decisions)
        if self.kind == "pct":
            return PCT(self.seed, self.depth, self.k)
        if self.kind == "random":
            return RandomWalk(self.seed)
        if self.kind == "none":
            return NonPreemptive()
        raise ValueError(f"unknown schedule kind {self.kind!r}")


@attrs.frozen
class Case:
    """Everything needed to re-run one execution exactly."""

    config: KernelConfig
    tasks: tuple[TaskSpec, ...]
    schedule: Schedule = Schedule()
    max_steps: int = DEFAULT_MAX_STEPS


@attrs.define
class Run:
    """The result of running a case: outcome, the scheduler (trace, decisions) and the kernel."""

    outcome: Outcome
    sched: Scheduler
    kernel: Kernel

    @property
    def decisions(self) -> list[int]:
        return self.sched.decisions

    def explain(self) -> list[Cause]:
        """The events behind the run's violation (:mod:`vmfuzz.causes`), also kept on it as
        ``violation.causes``; [] for a run that held.  Computed on demand: runs that only
        decide (the shrinker's, the pool's) never pay for it."""
        from vmfuzz.causes import explain

        v = self.outcome.violation
        if v is None:
            return []
        if not v.causes:
            v.causes = explain(v, self.kernel, self.sched.trace)
        return v.causes


def thread(k: Kernel, ops: Iterable[OpCall]) -> Generator[Any, None, None]:
    """A task body: run each operation in order (one syscall after another)."""
    for call in ops:
        spec = OPS[call.op]
        k.call_begin(call.op, call.args)
        ret = yield from spec.fn(k, **call.args)
        k.call_return(call.op, call.args, ret)
        k.sched.note_progress()


def execute(
    case: Case,
    source: ScheduleSource | None = None,
    *,
    invariants: bool = True,
    lockdep: LockDep | None = None,
    record_trace: bool = True,
) -> Run:
    """Run ``case`` (under ``source`` instead of its own schedule if given) to its outcome."""
    from vmfuzz.invariants import install  # invariants sit above the kernel model

    sched = Scheduler(
        source if source is not None else case.schedule.source(),
        max_steps=case.max_steps,
        lockdep=lockdep if lockdep is not None else LockDep(),
        record_trace=record_trace,
    )
    k = Kernel(case.config, sched)
    if k.boot_violation is not None:  # the kernel under test failed a check building the world
        return Run(Outcome("violation", 0, k.boot_violation, sched.trace_sha256()), sched, k)
    if invariants:
        install(k)
    pending = sorted(case.tasks, key=lambda t: t.start)
    # Tasks join when the scheduler reaches their start step (or at once if nothing is live).
    outcome: Outcome | None = None
    while pending and pending[0].start <= sched.step_no:
        t = pending.pop(0)
        sched.spawn(thread(k, t.ops), t.name)
    while outcome is None:
        if not sched.live and not pending:
            outcome = Outcome("clean", sched.step_no, None, sched.trace_sha256())
            break
        if pending and (not sched.live or pending[0].start <= sched.step_no):
            t = pending.pop(0)
            sched.spawn(thread(k, t.ops), t.name)
            continue
        limit = pending[0].start - sched.step_no if pending else None
        sub = _run_some(sched, limit)
        if sub is not None:
            outcome = sub
    return Run(outcome, sched, k)


def _run_some(sched: Scheduler, limit: int | None) -> Outcome | None:
    from vmfuzz._scheduler import StepBudgetExceeded
    from vmfuzz.violation import Violation

    try:
        sched.run(limit)
    except Violation as v:
        return Outcome("violation", sched.step_no, v, sched.trace_sha256())
    except StepBudgetExceeded:
        return Outcome("budget", sched.step_no, None, sched.trace_sha256())
    return None
