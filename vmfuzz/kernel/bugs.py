"""The historical bug registry: each entry is a switch that restores old kernel code at one place.

``Kernel.bug(name)`` is tested at exactly that place.  ``seed`` names the seed thread
(shared/seeds/NNN_*.txt) or the kernel commit that fixed the bug; ``invariant`` is the check
expected to catch it.  A bug with ``zoo`` False is re-created and tested (its drawn race
replays) but is not part of the zoo's bar (found from scratch in 9 of 10 seeds of 60 s):
``vmfuzz zoo`` runs it only when named, or with ``--all``.
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
    # Other checks that are equally right: the same wrong state seen from another side (a
    # stale page mapped at an address is lost data *and* a page rmap cannot reach there).
    also: tuple[str, ...] = ()
    # False: outside the zoo's bar (the fuzzer does not yet rediscover it from scratch in 9 of
    # 10 seeds of 60 s); its registration says why and what was measured.
    zoo: bool = True

    def caught_by(self) -> tuple[str, ...]:
        """Every check that correctly reports this bug: ``invariant`` first, then ``also``."""
        return (self.invariant, *self.also)

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
    also: tuple[str, ...] = (),
    zoo: bool = True,
) -> None:
    """Add bug ``name``; ``mail_*`` give the size of the race as drawn in the seed mail;
    ``also`` names other checks that report the same wrong state (equally right); ``zoo``
    False keeps it out of the zoo's bar (see the module doc)."""
    if name in BUGS:
        raise ValueError(f"bug {name} registered twice")
    BUGS[name] = Bug(name, seed, summary, invariant, mail_tasks, mail_preemptions, tuple(also),
                     zoo)


def zoo_bugs() -> list[str]:
    """The names of the bugs in the zoo's bar (``zoo`` True), sorted."""
    return sorted(n for n, b in BUGS.items() if b.zoo)


def unknown_bugs(names: list[str]) -> str | None:
    """None if every name is a registered bug, else a one-line error naming the known ones."""
    unknown = [n for n in names if n not in BUGS]
    if not unknown:
        return None
    known = ", ".join(sorted(BUGS)) or "(none registered)"
    return f"unknown bug {', '.join(unknown)}; known bugs: {known}"
