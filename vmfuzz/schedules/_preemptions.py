"""Sparse preemption list: (gap, target-offset) pairs relative to the non-preemptive policy.

Each pair is one context switch: let ``gap`` decision points go by as the default policy would,
then switch to another runnable task, ``offset`` counting (modulo, never rejected) among the tasks
other than the default one.  Deleting a pair removes exactly that one switch, which is what lets
a generic shrinker minimise the number of preemptions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vmfuzz._scheduler import Scheduler, Task


class PreemptionList:
    """Deviate from the default policy exactly at the listed decision points."""

    def __init__(self, preemptions: Iterable[tuple[int, int]] = ()) -> None:
        self.pending: list[tuple[int, int]] = [(max(0, g), o) for g, o in preemptions]
        self.used: list[tuple[int, int]] = []
        self._i = 0
        self._count = 0

    def extend(self, preemptions: Iterable[tuple[int, int]]) -> None:
        """Append another batch (the fuzzer draws schedules in batches)."""
        self.pending.extend((max(0, g), o) for g, o in preemptions)

    def choose(self, runnable: list[Task], default: int, sched: Scheduler) -> int:
        if self._i >= len(self.pending):
            return default
        gap, offset = self.pending[self._i]
        if self._count < gap:
            self._count += 1
            return default
        self._i += 1
        self._count = 0
        self.used.append((gap, offset))
        others = [k for k in range(len(runnable)) if k != default]
        return others[offset % len(others)]
