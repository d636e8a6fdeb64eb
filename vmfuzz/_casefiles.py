"""Which entries below a folder are case files, and which are reported instead of skipped.

A case file is a regular file (or a symlink to one) named ``*.json``, not hidden.  Entries a
user most likely meant as cases but that cannot be read as one are *reported*, one line each,
never silently passed over: ``*.JSON`` (and other case spellings of the suffix), a dangling
symlink, and anything that is not a regular file (a FIFO, a device, a socket) named like a
case.  Nothing here opens a file: a FIFO is only looked at, never read.

Kept free of the model so that the pytest plugin can list a corpus while collecting.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def kind_of(mode: int) -> str:
    """What a file of this ``st_mode`` is, in words (``a FIFO``, ``a character device`` ...)."""
    for test, word in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return word
    return "not a regular file"


def problem(path: Path) -> str | None:
    """Why the entry ``path`` (named like a case) cannot be read as one, or None if it can.

    Follows symlinks: a symlink to a regular file is fine; a dangling one, or one to a device,
    is not."""
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            return f"dangling symlink (to {os.readlink(path)}, which does not exist)"
        return "no such file"
    except OSError as e:  # a symlink loop, a permission problem
        return f"cannot read: {e.strerror or e}"
    if stat.S_ISREG(st.st_mode):
        return None
    return f"{kind_of(st.st_mode)}, not a regular file: only regular files are read as cases"


def _hidden(name: str) -> bool:
    return name.startswith(".")


def scan(folder: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The case files below ``folder`` (sorted) and the reported entries with their problem.

    Hidden files and folders are skipped; symlinked folders are not followed (a loop cannot
    trap the walk)."""
    files: list[Path] = []
    reported: list[tuple[Path, str]] = []
    for here, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _hidden(d))
        for name in sorted(names):
            if _hidden(name) or not name.lower().endswith(".json"):
                continue
            p = Path(here) / name
            why = problem(p)
            if why is None and not name.endswith(".json"):
                why = (f"named {name[-5:]!r}: case files end in '.json' (lowercase); rename it "
                       "to have it replayed and collected by pytest")
            if why is None:
                files.append(p)
            else:
                reported.append((p, why))
        # A symlink to a folder shows up among dirs and is not walked; one named like a case
        # file whose target is gone shows up among names (handled above).
    return sorted(files), sorted(reported)
