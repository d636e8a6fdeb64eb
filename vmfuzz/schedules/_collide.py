"""Collide: steer a trylock-and-back-off scheme into the mutual back-off that livelocks it.

A retry loop livelocks when every round is a mutual back-off: each task holds the lock the
other's trylock wants when the trylock runs, both back off, and the next round starts the same.
A random walk rarely gets there: on the zoo's trylock livelock program, of the echoed walks
that collided at all, 7 in 10 collided one-sidedly (one task backed off, the holder went
through), and most mutual collisions drifted apart in the next round.  Collide is an
:class:`Echo` with two rules of its own, each taken only while no round is being echoed:

- *holders first*: right after a task's trylock fails (it still holds what it took before and
  has not backed off yet), the holders of the lock it wanted run first, for at most HOLD
  decisions or until it retries: a holder on its way to a trylock of its own then collides
  with it, mutually;
- *lock step*: once a task has retried, it and the holders it collided with run in turn
  (the one that ran least recently first) until one of them leaves the loop: the CPUs of a
  livelock run in lock step, and a round so run repeats the last.

Then Echo's own rule repeats the round exactly.  Nothing here knows a kernel path: the rules
read the scheduler's trylock refusals (``Task.refused_by``) and retry counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmfuzz.schedules._echo import Echo

if TYPE_CHECKING:
    from vmfuzz._scheduler import Scheduler, ScheduleSource, Task

# Decisions the holders of a refused lock are run first for (a holder's way from its own lock
# to its trylock is a few steps).
HOLD = 16
_NONE: tuple[str, ...] = ()


class Collide(Echo):
    """Echo of ``inner``, with holders first after a failed trylock and the colliding tasks
    in lock step after a retry."""

    def __init__(self, inner: ScheduleSource) -> None:
        super().__init__(inner)
        self._refusal: dict[int, tuple[str, ...]] = {}  # tid -> refused_by when last looked
        # tid -> (holders, the task's retries then, the decision the refusal was seen at)
        self._first: dict[int, tuple[tuple[str, ...], int, int]] = {}
        self._lockstep: set[str] = set()
        self._looping: set[int] = set()  # lock step tasks seen retrying
        self._ran: dict[int, int] = {}  # tid -> the decision it was last chosen at

    def choose(self, runnable: list[Task], default: int, sched: Scheduler) -> int:
        self._watch(sched)
        got = self._echo(runnable, sched)
        if got is None and self._round is None:
            got = self._collide(runnable, sched)
        if got is None:
            got = self.inner.choose(runnable, default, sched)
        self._ran[runnable[got].tid] = len(sched.decisions)
        return got

    def _collide(self, runnable: list[Task], sched: Scheduler) -> int | None:
        now = len(sched.decisions)
        holders: set[str] = set()
        for t in sched.live:
            refused = t.refused_by
            if refused is not self._refusal.get(t.tid, _NONE):  # a new failed trylock
                self._first[t.tid] = (refused, t.retries, now)
            self._refusal[t.tid] = refused
            first = self._first.get(t.tid)
            if first is None:
                continue
            names, retries, at = first
            if t.retries > retries:  # it backed off: the colliding tasks go in lock step
                self._lockstep = {t.name, *names}
                del self._first[t.tid]
            elif t.retries < retries or now - at >= HOLD:
                del self._first[t.tid]
            else:
                holders.update(names)
        if self._lockstep:
            members = [t for t in sched.live if t.name in self._lockstep]
            self._looping.update(t.tid for t in members if t.retries)
            if len(members) < 2 or any(not t.retries and t.tid in self._looping
                                       for t in members):  # one of them left the loop
                self._lockstep, self._looping = set(), set()
        picks = [i for i, t in enumerate(runnable) if t.name in holders]
        if not picks and self._lockstep:
            picks = [i for i, t in enumerate(runnable) if t.name not in self._lockstep] or \
                list(range(len(runnable)))
        if picks:
            return min(picks, key=lambda i: self._ran.get(runnable[i].tid, -1))
        return None
