"""Durations as people type them (``90s``, ``10m``, ``8h``, ``1h30m``, ``45``), for every
command that takes a time budget (``vmfuzz fuzz --budget``, ``vmfuzz soak --duration``).

Kept apart from the commands so that each imports only this, not another command's module.
"""

from __future__ import annotations

import re

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_SECONDS = 366 * 86400.0  # a year: anything longer is a typo, not a plan


class DurationError(ValueError):
    """A duration that cannot be used: ``str(e)`` is one line for the user."""


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``2m``, ``8h``, ``1h30m``, ``1.5h`` or a bare number of seconds.

    Only digits and units are read, so ``nan``, ``inf``, ``-5`` and ``1e3`` are refused
    (:class:`DurationError`), as are an empty text, a total of zero and more than a year
    (``MAX_SECONDS``).
    """
    shown = text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"
    s = text.strip().lower().replace(" ", "")
    pos = 0
    total = 0.0
    while pos < len(s):
        m = _DURATION.match(s, pos)
        if m is None:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise DurationError(f"bad duration {shown!r}: use e.g. 90s, 10m, 8h, 1h30m or seconds")
    if total <= 0:
        raise DurationError(f"the duration must be positive, not {shown!r}")
    if total > MAX_SECONDS:
        raise DurationError(f"the duration must be at most 366d, not {shown!r}")
    return total
