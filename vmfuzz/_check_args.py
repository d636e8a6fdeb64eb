"""The ``--check NAME`` / ``--no-check NAME`` options of fuzz, zoo, soak and verify."""

from __future__ import annotations

import argparse

from vmfuzz.kernel.config import KernelConfig

HELP_CHECK = (
    "run only this check (repeatable; 'vmfuzz invariants' lists them; deadlock, livelock "
    "and soft_lockup always run); a case saved from the run records the choice and replays under it"
)
HELP_NO_CHECK = (
    "turn this check off (repeatable), e.g. --no-check rmap_reachable to see what a race "
    "leads to when the check that catches it early is off"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``--check`` and ``--no-check`` to a subcommand."""
    p.add_argument("--check", action="append", default=None, metavar="NAME", help=HELP_CHECK)
    p.add_argument("--no-check", action="append", default=[], metavar="NAME",
                   help=HELP_NO_CHECK)


def apply(config: KernelConfig, args: argparse.Namespace) -> KernelConfig:
    """``config`` with the checks chosen on the command line; ValueError (one line) if a name
    is unknown or cannot be turned off."""
    from vmfuzz.invariants._choice import choose

    only, off = getattr(args, "check", None), getattr(args, "no_check", [])
    if only is None and not off:
        return config
    return choose(config, only, off)


def argv(args: argparse.Namespace) -> list[str]:
    """The options again, for a command line of a child process."""
    out: list[str] = []
    for name in getattr(args, "check", None) or ():
        out += ["--check", name]
    for name in getattr(args, "no_check", []):
        out += ["--no-check", name]
    return out
