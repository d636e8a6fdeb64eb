"""Replay of a recorded decision list (the task ids chosen at each decision point).

A run records ``Scheduler.decisions``; feeding them back reproduces the run exactly.  If the
program changed (say, a bug switch turned off) and a recorded task is not runnable where the
record says, :class:`vmfuzz.ScheduleDiverged` says so instead of running a different schedule.
Past the end of the record, the default policy continues.

A decision list alone does not notice a model that yields once more (or once less) on a path:
the same task ids then switch CPUs at other points of the code.  *Anchors* pin the record to the
code: at every context switch (a decision that picks another task than the one that ran last)
the decision index, the task picked and the label every live task stands at.  A replay with
anchors checks each of them, and checks that it switches nowhere else, so the first decision
at which the recorded list would run another interleaving is a divergence, named by its step
and labels.  :class:`Anchoring` records anchors while any source decides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

from vmfuzz._scheduler import ScheduleDiverged

if TYPE_CHECKING:
    from vmfuzz._scheduler import Scheduler, ScheduleSource, Task


@attrs.frozen
class Anchor:
    """A context switch of a recorded run: at decision ``decision``, ``task`` was picked while
    each live task stood at its label in ``at`` (task name -> label)."""

    decision: int
    task: str
    at: Mapping[str, str] = attrs.field(hash=False)

    def to_json(self) -> dict[str, object]:
        return {"decision": self.decision, "run": self.task, "at": dict(self.at)}


def _labels(sched: Scheduler) -> dict[str, str]:
    return {t.name: t.label for t in sched.live}


def _where(at: Mapping[str, str]) -> str:
    return ", ".join(f"{name} at {label}" for name, label in at.items())


class Replay:
    """Choose exactly the recorded tasks, in order (checking ``anchors`` when given)."""

    def __init__(
        self,
        decisions: Sequence[int],
        *,
        strict: bool = True,
        anchors: Sequence[Anchor] | None = None,
    ) -> None:
        self.decisions = list(decisions)
        self.strict = strict
        self.pos = 0
        self.anchors = {a.decision: a for a in anchors} if anchors is not None else None
        self.diverged: str | None = None  # first anchor that did not hold (lenient mode)

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
                if self.anchors is not None:
                    self._check(t, sched)
                return i
        if self.strict:
            names = ", ".join(t.name for t in runnable)
            raise ScheduleDiverged(
                f"decision {self.pos - 1} (step {sched.step_no}) wants task id {tid}, "
                f"but only {names} can run"
            )
        return default

    def _check(self, task: Task, sched: Scheduler) -> None:
        """The recorded anchor at this decision holds, and there is none where none was."""
        assert self.anchors is not None
        n = self.pos - 1
        anchor = self.anchors.get(n)
        now = _labels(sched)
        why = None
        if anchor is not None:
            if anchor.task != task.name or dict(anchor.at) != now:
                why = (f"decision {n} (step {sched.step_no}) switched to {anchor.task} with "
                       f"{_where(anchor.at)} when recorded; here it picks {task.name} with "
                       f"{_where(now)}")
        elif task is not sched.current:
            why = (f"decision {n} (step {sched.step_no}) switches to {task.name} with "
                   f"{_where(now)}, where the recorded run did not switch")
        if why is None:
            return
        if self.strict:
            raise ScheduleDiverged(why)
        if self.diverged is None:
            self.diverged = why


class Anchoring:
    """Wraps a schedule source and records an :class:`Anchor` at every context switch."""

    def __init__(self, inner: ScheduleSource) -> None:
        self.inner = inner
        self.anchors: list[Anchor] = []

    def choose(self, runnable: list[Task], default: int, sched: Scheduler) -> int:
        idx = self.inner.choose(runnable, default, sched)
        task = runnable[idx % len(runnable)]
        if task is not sched.current:
            self.anchors.append(Anchor(len(sched.decisions), task.name, _labels(sched)))
        return idx


class FollowAnchors:
    """Re-runs a recorded run on a changed model by its anchors alone: each recorded switch
    happens when every live task stands where the anchor says, wherever that falls in the
    decision count; elsewhere the running task goes on (the default policy).  Used to record
    a case anew after a yield point moved (``vmfuzz replay --rerecord``)."""

    def __init__(self, anchors: Sequence[Anchor]) -> None:
        self.anchors = list(anchors)
        self.pos = 0  # anchors matched

    def choose(self, runnable: list[Task], default: int, sched: Scheduler) -> int:
        if self.pos < len(self.anchors):
            anchor = self.anchors[self.pos]
            if dict(anchor.at) == _labels(sched):
                for i, t in enumerate(runnable):
                    if t.name == anchor.task:
                        self.pos += 1
                        return i
        return default
