"""Stall: hold one task in the middle of its path while the others replay a recorded run.

A check that reads a value, sleeps, and compares it again (pte_same() after lock_page) is fooled
by an ABA: the value changed and came back while the reader slept.  If a program without the
reader is known to make that ABA under some recorded decisions, the adversary is one
preemption: let the reader run ``steps`` of its steps (from scheduler step ``at``), stall it
there while the other tasks replay their recorded decisions, and let it go only when none of
them can run.  A random or PCT schedule has to hit that one window by chance.

A *pause* is the second preemption, inside the stalled task's own path: from scheduler step
``pause[0]`` it is held again, for ``pause[1]`` steps (None: as long as another task can run),
and then goes on ahead of the others.  A window probe places it right after the stalled task's
first change of an object it changes again later, so that both sides are half-done: the
recorded task that was preempted inside its change resumes and reads the stalled task's object
half-changed (a migration's rmap walk over a vma whose vm_start an mprotect has moved and whose
vm_pgoff it has not).

A *hold* names a task kept still while the stalled task is live and waits (for a lock another
task holds, an event): any other task runs first, so the held task stays inside its path until
the stalled one got through (a reclaim asleep in a driver's ->swapout while a munmap of its vma
waits for the mmap_sem a third task holds).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vmfuzz._scheduler import Scheduler, Task


class Stall:
    """Run task ``name`` for ``steps`` steps from step ``at`` (none during ``pause``), then hold
    it while the other tasks follow ``decisions`` (the task *names* their run chose at each of
    their decision points) and, past them, the default policy."""

    def __init__(self, name: str, decisions: Sequence[str], at: int = 0, steps: int = 1,
                 pause: tuple[int, int | None] | None = None, hold: str | None = None) -> None:
        self.name = name
        self.hold = hold
        self.decisions = list(decisions)
        self.at = at
        self.steps = steps
        self.pause = pause
        self.ran = 0
        self.pos = 0

    def _paused(self, step: int) -> bool:
        pause = self.pause
        return pause is not None and pause[0] <= step and (
            pause[1] is None or step < pause[0] + pause[1])

    def choose(self, runnable: list[Task], default: int, sched: Scheduler) -> int:
        others = [i for i, t in enumerate(runnable) if t.name != self.name]
        if len(others) == len(runnable):  # the stalled task is not runnable here
            stalled = None
        else:
            stalled = next(i for i, t in enumerate(runnable) if t.name == self.name)
        if stalled is not None and self.ran < self.steps and sched.step_no >= self.at and (
            not self._paused(sched.step_no)
        ):
            self.ran += 1
            return stalled
        if self.hold is not None and stalled is None and sched.step_no >= self.at and any(
            t.name == self.name for t in sched.live
        ):
            # The stalled task waits (for a lock, an event): task ``hold`` stays where it is
            # while another one can run.
            rest = [i for i in others if runnable[i].name != self.hold]
            if rest:
                others = rest
        if len(others) == 1:
            return others[0]
        if self.pos < len(self.decisions):
            want = self.decisions[self.pos]
            self.pos += 1
            for i in others:
                if runnable[i].name == want:
                    return i
        return default if default in others else others[0]
