"""Which vmfuzz ran: its version, where it was imported from, and a digest of its source.

``vmfuzz zoo`` runs each campaign as a fresh ``python -m vmfuzz fuzz`` process, which imports
whatever vmfuzz that interpreter finds first (an editable install, another venv's copy, the
current directory).  Each campaign's ``--json`` says which code it measured, and the zoo warns
when that is not its own code: a sweep must say what it measured.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

# The import packages that make up vmfuzz, and the one a checkout keeps outside vmfuzz/
# (pyproject's package-dir): the digest names files by package, so it is the same for an
# installed copy (nested) and a checkout (side by side).
_PACKAGES = ("vmfuzz", "vmfuzz.strategies", "vmfuzz.invariants")


def source_digest(roots: dict[str, Path]) -> str:
    """sha256 (12 hex digits) over every ``*.py`` under each package root, each file named
    by its package path (``vmfuzz/strategies/profiles.py``) and taken in name order."""
    files: dict[str, Path] = {}
    for package, root in roots.items():
        prefix = package.replace(".", "/")
        for p in root.rglob("*.py"):
            if "__pycache__" not in p.parts:
                files[f"{prefix}/{p.relative_to(root).as_posix()}"] = p
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name].read_bytes() + b"\0")
    return h.hexdigest()[:12]


@cache
def provenance() -> dict[str, str]:
    """``{"version", "path" (the vmfuzz package directory), "code" (:func:`source_digest`)}``
    of the vmfuzz running now."""
    import importlib

    import vmfuzz

    roots = {name: Path(importlib.import_module(name).__file__ or "").resolve().parent
             for name in _PACKAGES}
    return {"version": vmfuzz.__version__, "path": str(roots["vmfuzz"]),
            "code": source_digest(roots)}
