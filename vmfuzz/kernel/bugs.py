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


BUGS: dict[str, Bug] = {}


def register(name: str, seed: str, summary: str, invariant: str) -> None:
    if name in BUGS:
        raise ValueError(f"bug {name} registered twice")
    BUGS[name] = Bug(name, seed, summary, invariant)
