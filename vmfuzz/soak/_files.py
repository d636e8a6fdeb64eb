"""Files of the state directory: atomic JSON and text writes, log lines, file locks.

Every file a reader may look at while the run goes on (``run.json``, ``stats.json``, slot files,
finding records) is written to a temporary file in the same folder and renamed over the old one
(:mod:`vmfuzz._write`: the user's umask, the fault hook), so a reader, or a ``kill -9`` at any
moment, sees the old content or the new, never half.  The state files are read back strictly
(:mod:`vmfuzz.soak._schema`); :func:`read_json` is for what may be missing or unreadable
without harm (``coverage.json``, a progress poll).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vmfuzz import _write


def write_json(path: Path, data: Any, *, fsync: bool = True) -> None:
    """Write ``data`` as JSON to ``path`` atomically (:func:`vmfuzz._write.write_text`)."""
    _write.write_text(path, json.dumps(data, indent=1, sort_keys=False) + "\n", fsync=fsync)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    _write.write_text(path, text, fsync=False)


def append_line(path: Path, data: Any) -> None:
    """Append ``data`` as one JSON line to the log ``path``."""
    _write.append_text(path, json.dumps(data) + "\n")


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None if it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of ``path`` (a torn last line, from a kill, is skipped)."""
    out: list[dict[str, Any]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return out
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            out.append(item)
    return out


@contextlib.contextmanager
def flock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (released by the kernel if the holder dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def now_iso() -> str:
    """The wall-clock time in UTC, to the second (``found_at``, ``started`` ...)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
