"""Replay of a recorded decision list (the task ids chosen at each decision point).

A run records ``Scheduler.decisions``; feeding them back reproduces the run exactly.  If the
program changed (say, a bug switch turned off) and a recorded task is not runnable where the
record says, :class:`vmfuzz.ScheduleDiverged` says so instead of running a different schedule.
Past the end of the record, the default policy continues.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from vmfuzz._scheduler import ScheduleDiverged

if TYPE_CHECKING:
    from vmfuzz._scheduler import Scheduler, Task


class Replay:
    """Choose exactly the recorded tasks, in order."""

    def __init__(self, decisions: Sequence[int], *, strict: bool = True) -> None:
        self.decisions = list(decisions)
        self.strict = strict
        self.pos = 0

    @property
    def exhausted(self) -> bool:
        return self.pos >= len(self.decisions)

    def choose(self, runnable: list[Task], default: int, sched: Scheduler) -> int:
        if self.pos >= len(self.decisions):
            return default
        tid = self.decisions[self.pos]
        self.pos += 1
        for i, t in enumerate(runnable):
            if t.tid == tid:
                return i
        if self.strict:
            names = ", ".join(t.name for t in runnable)
            raise ScheduleDiverged(
                f"decision {self.pos - 1} (step {sched.step_no}) wants task id {tid}, "
                f"but only {names} can run"
            )
        return default
