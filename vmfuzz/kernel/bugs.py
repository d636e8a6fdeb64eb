"""The historical bug registry: each entry is a switch that restores old kernel code at one place.

``Kernel.bug(name)`` is tested at exactly that place.  ``seed`` names the seed thread
(shared/seeds/NNN_*.txt) or the kernel commit that fixed the bug; ``invariant`` is the check
expected to catch it.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Bug:
    """One historical bug: name, where it comes from, a one-line summary, expected check."""

    name: str
    seed: str
    summary: str
    invariant: str
    mail_tasks: int | None = None  # the interleaving drawn in the mail: CPUs/tasks ...
    mail_preemptions: int | None = None  # ... and context switches away from a running task

    def to_json(self) -> dict[str, object]:
        return attrs.asdict(self)


BUGS: dict[str, Bug] = {}


def register(
    name: str,
    seed: str,
    summary: str,
    invariant: str,
    *,
    mail_tasks: int | None = None,
    mail_preemptions: int | None = None,
) -> None:
    """Add bug ``name``; ``mail_*`` give the size of the race as drawn in the seed mail."""
    if name in BUGS:
        raise ValueError(f"bug {name} registered twice")
    BUGS[name] = Bug(name, seed, summary, invariant, mail_tasks, mail_preemptions)
