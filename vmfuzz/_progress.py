"""A status line on stderr for long work (``vmfuzz fuzz``, ``vmfuzz zoo``).

On a terminal the line is redrawn in place (``\\r``) about once a second; anywhere else (a log
file, CI, a pipe) it is written as a plain line after every ``every`` seconds without other
output, so a long run is never silent and never floods a log.  ``VMFUZZ_PROGRESS_EVERY``
(seconds, default 10) sets that interval.  A background thread does the drawing: it only reads
the status text the caller hands it, so the work itself (a deterministic campaign) is untouched.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

EVERY = 10.0  # seconds between plain progress lines
ENV = "VMFUZZ_PROGRESS_EVERY"


def progress_every() -> float:
    """The interval between plain lines: ``$VMFUZZ_PROGRESS_EVERY`` or :data:`EVERY`;
    ``ValueError`` (one line) when the variable is not a positive number of seconds."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return EVERY
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise ValueError(f"{ENV}={raw!r}: expected a positive number of seconds")
    return value


def clock(seconds: float) -> str:
    """``12.3s`` below a minute, ``4m05s``, ``1h02m`` beyond."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Heartbeat:
    """Draws ``status()`` on ``stream`` until :meth:`close` (see the module docstring).

    :meth:`line` writes a permanent line (the status line is cleared first on a terminal) and
    counts as output, so plain status lines come only after ``every`` seconds of silence."""

    def __init__(
        self,
        status: Callable[[], str],
        *,
        every: float = EVERY,
        stream: TextIO | None = None,
        tty: bool | None = None,
    ) -> None:
        self.status = status
        self.every = every
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last = time.monotonic()
        self._drawn = False
        self._thread = threading.Thread(target=self._loop, name="vmfuzz-progress", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self) -> None:
        """New numbers: redraw now on a terminal (plain lines keep their rhythm)."""
        if self.tty:
            self._draw()

    def line(self, text: str) -> None:
        """A permanent line of output."""
        with self._lock:
            self._clear()
            self.stream.write(text + "\n")
            self.stream.flush()
            self._last = time.monotonic()

    def clear(self) -> None:
        """Wipe a terminal's status line (before writing a result on stdout)."""
        with self._lock:
            self._clear()
            self.stream.flush()

    def close(self) -> None:
        """Stop drawing; a terminal's status line stays, ended by a newline."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        with self._lock:
            if self._drawn:
                self.stream.write("\n")
                self.stream.flush()
                self._drawn = False

    def _loop(self) -> None:
        tick = min(1.0, self.every) if self.tty else self.every / 4
        while not self._stop.wait(tick):
            if self.tty:
                self._draw()
            elif time.monotonic() - self._last >= self.every:
                self.line(self.status())

    def _draw(self) -> None:
        text = self.status()
        with self._lock:
            self.stream.write("\r\x1b[K" + text)
            self.stream.flush()
            self._drawn = True

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self._drawn = False
