"""Checks chosen per run: ``--check NAME`` (only these) and ``--no-check NAME`` (not these).

The choice is part of the kernel config (``KernelConfig.checks`` / ``no_checks``), so a case
saved from such a run records it and replays under the same checks.  A check turned off is
not run by the monitor and not raised by the engine.  Three engine checks always stay on:
``deadlock``, ``livelock`` and ``soft_lockup`` end a run whose tasks can no longer make
progress, and without them such a run would never end.  The model's own BUG_ONs at a
faulting access (touching a poisoned vma: ``use_after_free``; freeing a busy page:
``bad_page``) stop the run where the kernel would crash whatever is chosen: turning such a
check off turns off its per-step scan.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs
from vmfuzz.invariants._registry import CHECKS

from vmfuzz.kernel.config import KernelConfig

ALWAYS_ON = ("deadlock", "livelock", "soft_lockup")


def choice_error(only: Iterable[str] | None, off: Iterable[str]) -> str | None:
    """None if the choice is usable, else one line saying what is wrong with it."""
    named = [*(only or ()), *off]
    unknown = list(dict.fromkeys(n for n in named if n not in CHECKS))
    if unknown:  # the first one, cut short: a name comes from the command line or a file
        first = unknown[0] if len(unknown[0]) <= 40 else unknown[0][:40] + "..."
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        return f"unknown check {first}{more} ('vmfuzz invariants' lists the checks)"
    stuck = [n for n in off if n in ALWAYS_ON]
    if stuck:
        return (f"{', '.join(stuck)} cannot be turned off: it ends a run whose tasks can no "
                "longer make progress")
    both = sorted(set(only or ()) & set(off))
    if both:
        return f"{', '.join(both)} is both chosen (--check) and turned off (--no-check)"
    return None


def choose(config: KernelConfig, only: Iterable[str] | None, off: Iterable[str]) -> KernelConfig:
    """``config`` with the checks chosen: ``only`` (None: keep its choice, or all checks) and
    ``off`` (added to those it turns off).  ValueError (one line) for an unusable choice."""
    only_set = frozenset(only) if only is not None else config.checks
    off_set = config.no_checks | frozenset(off)
    err = choice_error(only_set, off_set)
    if err is not None:
        raise ValueError(err)
    return attrs.evolve(config, checks=only_set, no_checks=off_set)


def describe(config: KernelConfig) -> str:
    """``"every check"``, or which checks run / are off, for a one-line summary."""
    parts = []
    if config.checks is not None:
        parts.append(f"only {', '.join(sorted(config.checks))}")
    if config.no_checks:
        parts.append(f"without {', '.join(sorted(config.no_checks))}")
    return "; ".join(parts) if parts else "every check"
