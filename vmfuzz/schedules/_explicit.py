"""The explicit schedule: a race diagram written as steps over yield labels.

Kernel engineers describe a race as "CPU0 runs until it has done X, then CPU1 runs until Y, then
CPU0 finishes".  This source takes exactly that, one step per string::

    run T1 until try_to_swap_out:after_get_swap_page
    run T2 until exit
    run T1 to completion

Step forms (``TASK`` is a task name, ``LABEL`` a yield label ``func:where``, optionally written
with the task as prefix, ``T1:func:where``):

``run TASK until LABEL``        TASK runs until it has yielded LABEL (``#N``: the N-th time,
                                counted from the start of this step)
``run TASK until exit``         TASK runs to the end (``run TASK to completion`` is the same)
``run TASK until blocked``      TASK runs until it blocks on a lock or goes to sleep
``run TASK for N steps``        TASK runs N scheduler steps

A step only *prefers* its task: at every decision point the step's task runs if it is runnable;
when it is blocked, the default policy picks among the others (that is how a lock serialises
tasks).  A step ends right after the step that satisfies it, so ``run T1 until X`` stops T1 with
X as its last label.  After the last step the default non-preemptive policy continues.

The source watches the scheduler's trace (``needs_trace``: its scheduler records one even when
made with ``record_trace=False``), so it notices labels passed while the task was the only
runnable one.  When a step can no longer be
satisfied (its task ended, or had already ended, without reaching the label; a step ``until
exit`` of a task that has ended is satisfied) a strict source raises
:class:`vmfuzz.ScheduleDiverged`; a lenient one (``strict=False``) drops the step, notes it in
:attr:`Explicit.diverged` and goes on.  :meth:`Explicit.finish` checks the steps left when a run
ends without a violation.

:func:`explicit_from_trace` turns a recorded trace into steps that replay it exactly.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import attrs

from vmfuzz._scheduler import ScheduleDiverged

if TYPE_CHECKING:
    from vmfuzz._scheduler import Scheduler, Task, TraceStep

_RUN = re.compile(r"^run\s+(?P<task>\S+)\s+(?P<rest>.*\S)\s*$")
_FOR = re.compile(r"^for\s+(?P<n>\d+)\s+steps?$")
_UNTIL = re.compile(r"^until\s+(?P<label>.*?\S)(?:\s+#(?P<n>\d+))?$")
_COMPLETION = ("to completion", "to exit", "until exit", "until it exits")
_BLOCKED = ("until blocked", "until it blocks")

FORMS = (
    "run TASK until LABEL [#N]",
    "run TASK until exit",
    "run TASK to completion",
    "run TASK until blocked",
    "run TASK for N steps",
)


@attrs.frozen
class Step:
    """One parsed step: ``kind`` is label | exit | blocked | steps; ``count`` is #N or N."""

    task: str
    kind: str
    label: str = ""
    count: int = 1
    text: str = ""

    def describe(self) -> str:
        return self.text or render_step(self)


def parse_step(text: str, task_names: Sequence[str] | None = None) -> Step:
    """Parse one step string; ``ValueError`` with a one-line reason if it is not one.

    With ``task_names``, the task (and a task prefix on the label) must be one of them.
    """
    if not isinstance(text, str):
        raise ValueError(f"a step must be a string, not {type(text).__name__}")
    line = " ".join(text.split())
    m = _RUN.match(line)
    if m is None:
        raise ValueError(f"cannot parse step {text!r}: expected one of: {'; '.join(FORMS)}")
    task, rest = m.group("task"), m.group("rest")
    if task_names is not None and task not in task_names:
        raise ValueError(
            f"step {text!r} names task {task!r}, but the tasks are {', '.join(task_names)}"
        )
    if rest in _COMPLETION:
        return Step(task, "exit", "exit", 1, text)
    if rest in _BLOCKED:
        return Step(task, "blocked", "", 1, text)
    f = _FOR.match(rest)
    if f is not None:
        n = int(f.group("n"))
        if n < 1:
            raise ValueError(f"step {text!r}: the number of steps must be at least 1")
        return Step(task, "steps", "", n, text)
    u = _UNTIL.match(rest)
    if u is None:
        raise ValueError(f"cannot parse step {text!r}: expected one of: {'; '.join(FORMS)}")
    label = u.group("label")
    n = int(u.group("n") or 1)
    if n < 1:
        raise ValueError(f"step {text!r}: #N counts from 1")
    prefix, sep, tail = label.partition(":")
    if sep and tail and (prefix == task or (task_names is not None and prefix in task_names)):
        # "T1:func:where": the label written with its task as prefix.
        if prefix != task:
            raise ValueError(f"step {text!r} runs {task} but waits for a label of task {prefix}")
        label = tail
    if label == "exit":
        return Step(task, "exit", "exit", 1, text)
    return Step(task, "label", label, n, text)


def render_step(step: Step) -> str:
    """The canonical text of ``step`` (what :func:`explicit_from_trace` writes)."""
    if step.kind == "exit":
        return f"run {step.task} until exit"
    if step.kind == "blocked":
        return f"run {step.task} until blocked"
    if step.kind == "steps":
        return f"run {step.task} for {step.count} step{'s' if step.count != 1 else ''}"
    return f"run {step.task} until {step.label}" + (f" #{step.count}" if step.count > 1 else "")


class Explicit:
    """Schedule source that follows explicit steps over yield labels (see the module doc)."""

    needs_trace = True  # it reads the labels passed since its last decision

    def __init__(self, steps: Iterable[str | Step], *, strict: bool = True) -> None:
        self.steps: list[Step] = [s if isinstance(s, Step) else parse_step(s) for s in steps]
        self.strict = strict
        self.diverged: str | None = None  # first divergence (lenient mode keeps going)
        self._i = 0  # index of the current step
        self._n = 0  # matches (or steps) counted towards the current step
        self._cursor = 0  # trace entries consumed

    @property
    def current(self) -> Step | None:
        return self.steps[self._i] if self._i < len(self.steps) else None

    @property
    def remaining(self) -> list[Step]:
        return self.steps[self._i :]

    def choose(self, runnable: list[Task], default: int, sched: Scheduler) -> int:
        self._advance(sched)
        step = self.current
        if step is not None:
            for idx, t in enumerate(runnable):
                if t.name == step.task:
                    return idx
        return default

    def finish(self, sched: Scheduler) -> str | None:
        """After a run that ended without a violation: why the steps left cannot be followed.

        None when every step was satisfied.  Never raises (the run is over).
        """
        strict, self.strict = self.strict, False
        try:
            self._advance(sched)
        finally:
            self.strict = strict
        if self.current is None:
            return self.diverged
        step = self.current
        return self.diverged or (
            f"explicit step {self._i + 1} ({step.describe()!r}) never completed: "
            f"the run ended first"
        )

    def failed_so_far(self, sched: Scheduler) -> str | None:
        """After a run that a check stopped: the first step the run already failed to follow
        (its task ended without getting there), or None.  A step still under way when the
        check fired is not a failure.  Never raises."""
        strict, self.strict = self.strict, False
        try:
            self._advance(sched)
        finally:
            self.strict = strict
        return self.diverged

    # ------------------------------------------------------------------ internals
    def _advance(self, sched: Scheduler) -> None:
        trace = sched.trace
        while self._cursor < len(trace) and self._i < len(self.steps):
            entry = trace[self._cursor]
            self._cursor += 1
            step = self.steps[self._i]
            if entry.task != step.task:
                continue
            if self._satisfies(step, entry):
                self._next()
            elif entry.label == "exit":
                self._diverge(
                    f"explicit step {self._i + 1} ({step.describe()!r}): {step.task} "
                    f"exited at step {entry.step} without getting there"
                    + _passed(step, trace[: self._cursor])
                )
        # A step whose task is already gone can never be satisfied.
        while self._i < len(self.steps):
            step = self.steps[self._i]
            task = _task_named(sched, step.task)
            if task is None or not task.done:
                break
            if step.kind == "exit":  # "run T to completion": T already has
                self._next()
                continue
            self._diverge(
                f"explicit step {self._i + 1} ({step.describe()!r}): {step.task} has "
                f"already exited (step {sched.step_no})" + _passed(step, trace)
            )

    def _satisfies(self, step: Step, entry: TraceStep) -> bool:
        if step.kind == "exit":
            return entry.label == "exit"
        if step.kind == "blocked":
            return any(
                e.startswith(("blocks on", "sleeps")) for e in entry.event.split("; ")
            )
        if step.kind == "steps" or entry.label == step.label:
            self._n += 1
            return self._n >= step.count
        return False

    def _next(self) -> None:
        self._i += 1
        self._n = 0

    def _diverge(self, why: str) -> None:
        if self.strict:
            raise ScheduleDiverged(why)
        if self.diverged is None:
            self.diverged = why
        self._next()


_MAX_LISTED = 40


def _passed(step: Step, trace: Sequence[TraceStep]) -> str:
    """``; T passed: a, b, ...`` (each label once, in the order first passed) with a close
    match to the step's label first, for a step that waited for a label in vain."""
    seen = list(dict.fromkeys(e.label for e in trace if e.task == step.task))
    if not seen:
        return f"; {step.task} passed no label"
    listed = ", ".join(seen[:_MAX_LISTED]) + (
        f", ... ({len(seen) - _MAX_LISTED} more)" if len(seen) > _MAX_LISTED else "")
    hint = ""
    if step.kind == "label":
        close = difflib.get_close_matches(step.label, seen, n=1, cutoff=0.5)
        close = close or [x for x in seen if step.label in x][:1]
        if close and close[0] != step.label:
            hint = f"; did you mean {close[0]!r}?"
    return f"{hint}; {step.task} passed: {listed}"


def _task_named(sched: Scheduler, name: str) -> Task | None:
    for t in sched.tasks:
        if t.name == name:
            return t
    return None


def explicit_from_trace(trace: Sequence[TraceStep]) -> list[str]:
    """Steps that replay ``trace`` exactly: one ``run T until LABEL`` per run of a task.

    Each maximal stretch of consecutive steps by one task becomes one step ending at the label
    that stretch ended on (``#N`` when that label was passed more than once in the stretch);
    the last stretch becomes ``run T until exit``.
    """
    out: list[str] = []
    i = 0
    while i < len(trace):
        task = trace[i].task
        j = i
        while j + 1 < len(trace) and trace[j + 1].task == task:
            j += 1
        last = trace[j].label
        if last == "exit" or j == len(trace) - 1:
            # The run ends in this stretch (a task exits, or a check fires and the label is
            # the one before the failing step): let the task run on.
            out.append(render_step(Step(task, "exit", "exit")))
        else:
            n = sum(1 for s in trace[i : j + 1] if s.label == last)
            out.append(render_step(Step(task, "label", last, n)))
        i = j + 1
    return out
