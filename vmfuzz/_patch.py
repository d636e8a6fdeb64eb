"""A strict applier of unified diffs, for the mutation benchmark's patches.

Python's standard library has no patch tool, and a mutant's patch must keep applying while the
files it touches change elsewhere.  So each hunk is placed by its text, not by its line
numbers: the hunk's old lines (context and removed lines) must occur exactly once in the file
(the ``@@`` line numbers are only hints, used for nothing but the messages).  Anything else (no
match, two matches, two hunks over the same lines, a file the patch names twice) is refused
with a :class:`PatchError` that says which hunk of which file, and why.

Lines before the first ``---`` are the patch's header, free text (the benchmark reads
``Key: value`` lines from it).  Paths are the repository's (``vmfuzz/kernel/rmap.py``); an
``a/`` or ``b/`` prefix (``git diff``) is dropped.  Creating and deleting files is not
supported: a mutant changes code.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

import attrs

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


class PatchError(ValueError):
    """A patch that cannot be read or cannot be applied exactly."""


@attrs.frozen
class Hunk:
    """One ``@@`` block: the lines it expects (``old``) and the lines it leaves (``new``)."""

    line: int  # the old start line the patch claims (a hint)
    old: tuple[str, ...]
    new: tuple[str, ...]


@attrs.frozen
class FilePatch:
    path: str
    hunks: tuple[Hunk, ...]


@attrs.frozen
class Patch:
    header: tuple[str, ...]
    files: tuple[FilePatch, ...]

    def fields(self) -> dict[str, str]:
        """The header's ``Key: value`` lines (a leading ``#`` is allowed), keys lower case."""
        out: dict[str, str] = {}
        for line in self.header:
            m = re.match(r"^#?\s*([A-Za-z][\w -]*?)\s*:\s*(.*)$", line)
            if m:
                out[m.group(1).lower()] = m.group(2).strip()
        return out


def _strip_prefix(path: str) -> str:
    path = path.split("\t", 1)[0].strip()
    if path.startswith(("a/", "b/")):
        path = path[2:]
    return path


def parse(text: str) -> Patch:
    """Read a unified diff (PatchError if it is malformed)."""
    lines = text.splitlines()
    i = 0
    header: list[str] = []
    while i < len(lines) and not lines[i].startswith("--- "):
        header.append(lines[i])
        i += 1
    files: list[FilePatch] = []
    seen: set[str] = set()
    while i < len(lines):
        if not lines[i].startswith("--- "):
            if lines[i].strip() == "":
                i += 1
                continue
            raise PatchError(f"line {i + 1}: expected '--- PATH', found {lines[i][:60]!r}")
        old_path = _strip_prefix(lines[i][4:])
        if i + 1 >= len(lines) or not lines[i + 1].startswith("+++ "):
            raise PatchError(f"line {i + 2}: '--- {old_path}' is not followed by '+++ PATH'")
        path = _strip_prefix(lines[i + 1][4:])
        if old_path != path or path == "/dev/null":
            raise PatchError(f"line {i + 1}: a patch may only change files in place "
                             f"({old_path} -> {path})")
        if path in seen:
            raise PatchError(f"{path}: named twice in the patch (one '---' block per file)")
        seen.add(path)
        i += 2
        hunks: list[Hunk] = []
        while i < len(lines) and lines[i].startswith("@@"):
            m = _HUNK.match(lines[i])
            if not m:
                raise PatchError(f"line {i + 1}: malformed hunk header {lines[i][:60]!r}")
            n_old = int(m.group(2)) if m.group(2) is not None else 1
            n_new = int(m.group(4)) if m.group(4) is not None else 1
            start = int(m.group(1))
            i += 1
            old: list[str] = []
            new: list[str] = []
            while len(old) < n_old or len(new) < n_new:
                if i >= len(lines):
                    raise PatchError(f"{path}: hunk at line {start} ends early "
                                     f"({len(old)} of {n_old} old lines, {len(new)} of "
                                     f"{n_new} new)")
                line = lines[i]
                tag, body = (line[:1], line[1:]) if line else (" ", "")
                if tag == " ":
                    old.append(body)
                    new.append(body)
                elif tag == "-":
                    old.append(body)
                elif tag == "+":
                    new.append(body)
                elif tag == "\\":
                    pass  # "\ No newline at end of file"
                else:
                    raise PatchError(f"line {i + 1}: a hunk line starts with ' ', '-' or '+', "
                                     f"found {line[:60]!r}")
                i += 1
            if len(old) != n_old or len(new) != n_new:
                raise PatchError(f"{path}: hunk at line {start} does not match its header")
            if old == new:
                raise PatchError(f"{path}: hunk at line {start} changes nothing")
            hunks.append(Hunk(start, tuple(old), tuple(new)))
        if not hunks:
            raise PatchError(f"{path}: no hunk")
        files.append(FilePatch(path, tuple(hunks)))
    if not files:
        raise PatchError("no '--- PATH' / '+++ PATH' block: not a unified diff")
    return Patch(tuple(header), tuple(files))


def _find(haystack: list[str], needle: tuple[str, ...]) -> list[int]:
    n = len(needle)
    if n == 0:
        return []
    first = needle[0]
    return [i for i in range(len(haystack) - n + 1)
            if haystack[i] == first and tuple(haystack[i:i + n]) == needle]


def apply_file(path: str, text: str, hunks: tuple[Hunk, ...]) -> str:
    """``text`` with every hunk applied, each at the one place its old lines occur."""
    lines = text.splitlines()
    placed: list[tuple[int, Hunk]] = []
    for n, h in enumerate(hunks, 1):
        where = _find(lines, h.old)
        if not where:
            raise PatchError(f"{path}: hunk {n} (line {h.line}) does not apply: its "
                             f"{len(h.old)} old lines are not in the file (first: "
                             f"{h.old[0].strip()[:60]!r})")
        if len(where) > 1:
            at = ", ".join(str(w + 1) for w in where[:5])
            raise PatchError(f"{path}: hunk {n} (line {h.line}) is ambiguous: its old lines "
                             f"occur {len(where)} times (at lines {at}); add context")
        placed.append((where[0], h))
    placed.sort(key=lambda p: p[0])
    for (a, ha), (b, _) in itertools.pairwise(placed):
        if a + len(ha.old) > b:
            raise PatchError(f"{path}: two hunks overlap at lines {b + 1}-{a + len(ha.old)}")
    for start, h in reversed(placed):
        lines[start:start + len(h.old)] = list(h.new)
    return "\n".join(lines) + ("\n" if text.endswith("\n") or not text else "")


def apply(patch: Patch, read: Callable[[str], str]) -> dict[str, str]:
    """The patched text of every file the patch names (``read(path)`` gives the current text);
    nothing is written.  PatchError if any hunk does not apply exactly."""
    return {fp.path: apply_file(fp.path, read(fp.path), fp.hunks) for fp in patch.files}
