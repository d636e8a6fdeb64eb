"""Echo: once a task has gone round a retry loop, replay the interleaving of that round.

A trylock-and-back-off scheme livelocks only if every round repeats the collision of the one
before; a random or PCT schedule collides once and then drifts apart.  Echo wraps any source:
it watches each task's retry count (``yield sched.retry(...)``), and when a task retries for
the second time it repeats, decision by decision, the task choices made between its last two
retries, for as long as that task keeps retrying.  If a round was a mutual back-off, the
adversary that makes it recur forever is found (the engine's livelock check reports it after
``livelock_retries`` rounds); if not, the echo ends at the first progress.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vmfuzz._scheduler import Scheduler, ScheduleSource, Task


class Echo:
    """Delegate to ``inner``; repeat a retry loop's round of decisions once it recurs."""

    def __init__(self, inner: ScheduleSource) -> None:
        self.inner = inner
        self._seen: dict[int, int] = {}  # tid -> retries when last looked
        self._marks: dict[int, list[int]] = {}  # tid -> decision indexes of its last retries
        self._round: tuple[int, int, int] | None = None  # (tid, start, length) being echoed

    def choose(self, runnable: list[Task], default: int, sched: Scheduler) -> int:
        self._watch(sched)
        got = self._echo(runnable, sched)
        return got if got is not None else self.inner.choose(runnable, default, sched)

    def _watch(self, sched: Scheduler) -> None:
        """Note each live task's retries since the last decision (a round starts or ends)."""
        now = len(sched.decisions)
        for t in sched.live:
            r = t.retries
            before = self._seen.get(t.tid, 0)
            if r != before:
                self._seen[t.tid] = r
                marks = self._marks.setdefault(t.tid, [])
                if r > before:
                    marks.append(now)
                    del marks[:-2]
                else:  # progress: the loop was left
                    marks.clear()
                    if self._round is not None and self._round[0] == t.tid:
                        self._round = None
                if r > before and len(marks) == 2 and self._round is None:
                    self._round = (t.tid, marks[0], marks[1] - marks[0])

    def _echo(self, runnable: list[Task], sched: Scheduler) -> int | None:
        """The index of the task the echoed round chose here, or None (no round, or that
        task cannot run now)."""
        if self._round is not None:
            _tid, start, length = self._round
            if length > 0:
                now = len(sched.decisions)
                want = sched.decisions[start + (now - start) % length]
                for i, t in enumerate(runnable):
                    if t.tid == want:
                        return i
        return None
