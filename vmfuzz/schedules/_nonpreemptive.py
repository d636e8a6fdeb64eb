"""The default policy: the running task keeps the CPU until it blocks or ends; then lowest id."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vmfuzz._scheduler import Scheduler, Task


class NonPreemptive:
    """Never preempts: always the scheduler's default choice."""

    def choose(self, runnable: list[Task], default: int, sched: Scheduler) -> int:
        return default
