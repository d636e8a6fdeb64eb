"""A failure as the engine passes it around: the case that fails, the violation, and the run.

Hypothesis examples, pool mutants and probes all leave one behind; the shrinker takes one and
gives back a smaller one; the corpus saves its case.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from vmfuzz.case import Case
from vmfuzz.violation import Violation


@attrs.define
class Failure:
    """What the final (shrunk) run of a failing program left behind."""

    case: Case
    violation: Violation
    steps: int
    preemptions: int
    trace: list[Any]


def concurrent_tasks(trace: Sequence[Any]) -> int:
    """The most tasks that had started and not yet exited at any step of ``trace`` (the
    CPUs of a mail's race drawing: a setup task that finished before the others started does
    not count)."""
    live: set[str] = set()
    most = 0
    for step in trace:
        live.add(step.task)
        most = max(most, len(live))
        if step.label == "exit":
            live.discard(step.task)
    return most
