"""Which vmfuzz ran: its version, where it was imported from, and digests of its source.

``vmfuzz zoo`` runs each campaign as a fresh ``python -m vmfuzz fuzz`` process, which imports
whatever vmfuzz that interpreter finds first (an editable install, another venv's copy, the
current directory).  Each campaign's ``--json`` says which code it measured, and the zoo warns
when that is not its own code: a sweep must say what it measured.

A saved case records :func:`model_identity`: the version and :func:`model_digest`, a digest of
the code that decides a case's trace (the kernel model, the checks, the scheduler and schedule
sources), taken over each module's syntax tree without docstrings, so that editing a comment or
a docstring does not mark every saved case as written by another model.
"""

from __future__ import annotations

import ast
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
    """``{"version", "path" (the vmfuzz package directory), "code" (:func:`source_digest`),
    "hypothesis" (its version: a seed draws the same examples only under the same
    Hypothesis)}`` of the vmfuzz running now."""
    import importlib

    import hypothesis

    import vmfuzz

    roots = {name: Path(importlib.import_module(name).__file__ or "").resolve().parent
             for name in _PACKAGES}
    return {"version": vmfuzz.__version__, "path": str(roots["vmfuzz"]),
            "code": source_digest(roots), "hypothesis": hypothesis.__version__}


# The code a case's trace depends on, by package path below vmfuzz/ (folders end in "/").
_MODEL_PARTS = (
    "kernel/", "invariants/", "schedules/", "_scheduler.py", "_locks.py", "lockdep.py",
    "violation.py", "case.py",
)


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def code_digest(files: dict[str, Path]) -> str:
    """sha256 (16 hex digits) over each file's code, named by ``files``' keys in name order:
    the source as :func:`ast.unparse` writes it back without docstrings (comments, blank lines
    and layout do not count; a file that does not parse counts as its bytes)."""
    h = hashlib.sha256()
    for name in sorted(files):
        raw = files[name].read_bytes()
        try:
            text = ast.unparse(_without_docstrings(ast.parse(raw))).encode()
        except (SyntaxError, ValueError):
            text = raw
        h.update(name.encode() + b"\0" + text + b"\0")
    return h.hexdigest()[:16]


def model_files(root: Path) -> dict[str, Path]:
    """The files of :data:`_MODEL_PARTS` under the vmfuzz package directory ``root``."""
    out: dict[str, Path] = {}
    for part in _MODEL_PARTS:
        base = root / part
        if part.endswith("/"):
            for p in base.rglob("*.py"):
                if "__pycache__" not in p.parts:
                    out[f"vmfuzz/{p.relative_to(root).as_posix()}"] = p
        elif base.is_file():
            out[f"vmfuzz/{part}"] = base
    return out


@cache
def model_digest() -> str:
    """:func:`code_digest` of the model a case runs on (kernel, checks, engine) right now.

    The checks live in ``vmfuzz.invariants`` (a folder of its own in a checkout): they are
    taken from where that package was imported."""
    import importlib

    import vmfuzz

    root = Path(vmfuzz.__file__ or "").resolve().parent
    files = {k: v for k, v in model_files(root).items() if not k.startswith("vmfuzz/invariants/")}
    inv = Path(importlib.import_module("vmfuzz.invariants").__file__ or "").resolve().parent
    for p in inv.rglob("*.py"):
        if "__pycache__" not in p.parts:
            files[f"vmfuzz/invariants/{p.relative_to(inv).as_posix()}"] = p
    return code_digest(files)


def model_identity() -> dict[str, str]:
    """What a saved case records about the model that wrote it: ``{"version", "digest"}``."""
    import vmfuzz

    return {"version": vmfuzz.__version__, "digest": model_digest()}
