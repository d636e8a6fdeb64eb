"""A program pool kept in a folder: loaded before a campaign, saved as it grows, shared.

A campaign's pool (:mod:`vmfuzz.pool`) is what its search learned: programs known to interleave
in new ways.  Kept in a folder (``vmfuzz fuzz --pool DIR``, the soak's state folder), it is
loaded before the first example of every later campaign, and the workers of one campaign
share it through the folder.  The folder holds one file per writer, ``pool-<writer>.json``
(a writer is one stream of a campaign: ``s0``, ``s1`` ...), each rewritten whole and
atomically (:mod:`vmfuzz._write`) as its writer adds entries::

    {"format": "vmfuzz-pool", "version": 1,
     "entries": [{"case": {<a case, as a corpus file holds it: docs/corpus.md>},
                  "length": 41, "targets": [[0, 3], [1, null]], "frames": [2, 5],
                  "new": [["", "fault:map"], ["unmap:zap", "fault:map"]]}, ...]}

Data only (:mod:`json`, every entry validated by :func:`vmfuzz.corpus.from_json` and here):
a damaged file or entry is skipped with a warning, never a crash.  Each case records the
model that ran it (``model.digest``).  An entry of this model and of the campaign's kernel
(the world aside: a mutant may add world features) is trusted as stored; any other whose
sizes match is re-run under the campaign's kernel (its program is still a valid input, its
coverage may not be): :attr:`Loaded.rerun`.  A writer's file keeps its newest ``capacity``
entries.  Nothing here knows about any kernel path.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from vmfuzz._write import write_text
from vmfuzz.case import Case
from vmfuzz.kernel import KernelConfig
from vmfuzz.pool import Entry

FORMAT = "vmfuzz-pool"
VERSION = 1
PREFIX = "pool-"
CAPACITY = 1024  # entries a writer's file keeps (the newest; twice a pool's)
_MAX_FILE = 64 << 20  # bytes: a pool file larger than this is skipped


@attrs.define
class Loaded:
    """What :meth:`PoolStore.load` read: ``entries`` to trust as stored, ``rerun`` programs
    to run again under the campaign's kernel (then offered to the pool), and one line per
    file or entry skipped."""

    entries: list[Entry] = attrs.Factory(list)
    rerun: list[Case] = attrs.Factory(list)
    warnings: list[str] = attrs.Factory(list)


_KEYED = ("config", "tasks", "schedule", "max_steps")


def entry_key(case: Case) -> str:
    """A name for ``case``'s program (kernel, tasks, schedule): equal programs, equal keys."""
    from vmfuzz.corpus import CorpusCase, to_json

    key = _raw_key(to_json(CorpusCase(case, "clean")))
    assert key is not None
    return key


def _raw_key(case: Any) -> str | None:
    """:func:`entry_key` of a case as a pool file holds it, without reading it (None: no
    case there)."""
    if not isinstance(case, dict):
        return None
    data = {k: case.get(k) for k in _KEYED}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:20]


def entry_json(entry: Entry, folder: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """``entry`` as a pool file holds it (its case records this model and its plugins)."""
    from vmfuzz._provenance import model_identity
    from vmfuzz.corpus import CorpusCase, to_json
    from vmfuzz.plugins import refs_for

    cc = CorpusCase(entry.case, "clean", plugins=refs_for(entry.case, "clean", folder),
                    model=model_identity())
    return {"case": to_json(cc), "length": entry.length,
            "targets": [list(t) for t in entry.targets], "frames": list(entry.frames),
            "new": [list(p) for p in entry.new]}


def _ints(v: Any, what: str, nullable: bool = False) -> list[Any]:
    if not isinstance(v, list) or not all(
        (x is None and nullable) or (isinstance(x, int) and not isinstance(x, bool)) for x in v
    ):
        raise ValueError(f"{what}: expected a list of integers")
    return v


def entry_from_json(data: Any, folder: str | os.PathLike[str]) -> tuple[Entry, str | None]:
    """The entry ``data`` holds, and the model digest its case records (None: not recorded);
    :class:`BadEntry` says what is wrong."""
    try:
        return _entry_from_json(data, folder)
    except BadEntry:
        raise
    except Exception as e:  # a damaged entry is skipped, whatever is wrong with it
        raise BadEntry(str(e) or type(e).__name__) from None


class BadEntry(ValueError):
    """A pool entry that cannot be used; ``str(e)`` says why."""


def _entry_from_json(data: Any, folder: str | os.PathLike[str]) -> tuple[Entry, str | None]:
    from vmfuzz.corpus import from_json

    if not isinstance(data, dict) or set(data) - {"case", "length", "targets", "frames", "new"}:
        raise ValueError("expected an object with case, length, targets, frames, new")
    cc = from_json(data.get("case"), Path(folder) / "case")
    length = data.get("length", 0)
    if not isinstance(length, int) or isinstance(length, bool) or length < 0:
        raise ValueError("length: expected an integer >= 0")
    targets = data.get("targets", [])
    if not isinstance(targets, list):
        raise ValueError("targets: expected a list of [mm, addr] pairs")
    tgts = []
    for t in targets:
        mm, addr = _ints(t, "targets", nullable=True) if isinstance(t, list) and len(t) == 2 \
            else (None, None)
        if not isinstance(mm, int):
            raise ValueError("targets: expected a list of [mm, addr] pairs")
        tgts.append((mm, addr))
    frames = _ints(data.get("frames", []), "frames")
    new = data.get("new", [])
    if not isinstance(new, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in new
    ):
        raise ValueError("new: expected a list of [label, label] pairs")
    model = cc.model.get("digest") if cc.model else None
    return Entry(cc.case, length, tuple(tgts), tuple((a, b) for a, b in new),
                 tuple(frames)), model


def _same_sizes(a: KernelConfig, b: KernelConfig) -> bool:
    """The two kernels take the same argument ranges (a program of one is valid on the other)."""
    return attrs.evolve(a, bugs=(), world=(), checks=None, no_checks=()) == attrs.evolve(
        b, bugs=(), world=(), checks=None, no_checks=())


def _read_file(path: Path) -> tuple[list[Any], str | None]:
    """The raw entries of pool file ``path``, or a warning saying why it is skipped."""
    try:
        if path.stat().st_size > _MAX_FILE:
            return [], f"{path}: larger than {_MAX_FILE >> 20} MiB, skipped"
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return [], f"{path}: unreadable ({e}), skipped"
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:
        return [], f"{path}: not a pool file (malformed JSON: {e}), skipped"
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return [], f"{path}: not a pool file (\"format\" is not {FORMAT!r}), skipped"
    if data.get("version") != VERSION:
        return [], f"{path}: pool format version {data.get('version')!r} (this vmfuzz reads " \
                   f"{VERSION}), skipped"
    entries = data.get("entries")
    if not isinstance(entries, list):
        return [], f"{path}: \"entries\" is not a list, skipped"
    return entries, None


class PoolStore:
    """The pool folder ``path``, written as ``writer`` (``pool-<writer>.json``).

    :meth:`load` reads every writer's file; :meth:`add` appends entries to this writer's
    file (rewritten atomically); :meth:`pickup` reads what the other writers added since the
    last look (for the workers of one campaign).  Equal programs are one entry."""

    def __init__(self, path: str | os.PathLike[str], writer: str = "s0",
                 capacity: int = CAPACITY) -> None:
        if not writer or not all(c.isalnum() or c in "-_" for c in writer):
            raise ValueError(f"a writer name is letters, digits, - and _: {writer!r}")
        self.path = Path(path)
        self.writer = writer
        self.capacity = capacity
        self.file = self.path / f"{PREFIX}{writer}.json"
        self._own: dict[str, dict[str, Any]] = {}  # this writer's entries, oldest first
        self._own_read = False
        self._seen: dict[Path, tuple[int, int]] = {}  # others' files: (mtime_ns, size) read
        self.keys: set[str] = set()  # every program loaded or added

    def files(self) -> list[Path]:
        """The folder's pool files, sorted by name (missing folder: none)."""
        try:
            return sorted(p for p in self.path.glob(f"{PREFIX}*.json") if p.is_file())
        except OSError:
            return []

    def load(self, config: KernelConfig) -> Loaded:
        """Every entry of the folder for a campaign of ``config`` (see :class:`Loaded`), in the
        order of the files' names and of their entries: the same folder loads the same."""
        out = Loaded()
        for f in self.files():
            self._stamp(f)
            self._read(f, config, out)
        return out

    def _stamp(self, f: Path) -> bool:
        """Note ``f``'s size and time; False if they are what they were at the last look."""
        try:
            st = f.stat()
        except OSError:
            return False
        stamp = (st.st_mtime_ns, st.st_size)
        if self._seen.get(f) == stamp:
            return False
        self._seen[f] = stamp
        return True

    def pickup(self, config: KernelConfig) -> Loaded:
        """What the other writers' files hold that this store has not loaded yet (only the
        files changed since the last look are read)."""
        out = Loaded()
        for f in self.files():
            if f != self.file and self._stamp(f):
                self._read(f, config, out)
        return out

    def _read(self, f: Path, config: KernelConfig, out: Loaded) -> None:
        from vmfuzz._provenance import model_digest

        raw, problem = _read_file(f)
        if problem is not None:
            out.warnings.append(problem)
            return
        digest = model_digest()
        bad = 0
        first = ""
        for i, item in enumerate(raw):
            key = _raw_key(item.get("case") if isinstance(item, dict) else None)
            if key is not None and key in self.keys:
                continue
            try:
                entry, model = entry_from_json(item, self.path)
            except BadEntry as e:
                bad += 1
                first = first or f"entry {i}: {e}"
                continue
            key = entry_key(entry.case)
            if key in self.keys:
                continue
            self.keys.add(key)
            case = entry.case
            if not _same_sizes(case.config, config):
                bad += 1
                first = first or f"entry {i}: a kernel of other sizes than this campaign's"
                continue
            mine = attrs.evolve(config, world=config.world | case.config.world)
            if model == digest and case.config == mine:
                out.entries.append(entry)
            else:
                out.rerun.append(attrs.evolve(case, config=mine))
        if bad:
            out.warnings.append(f"{f}: {bad} damaged or unusable entr{'y' if bad == 1 else 'ies'}"
                                f" skipped ({first})")

    def add(self, entries: Sequence[Entry], *, fsync: bool = False) -> int:
        """Append ``entries`` (those not stored yet) to this writer's file, which keeps its
        newest ``capacity``; the number appended.  ``OSError`` if the file cannot be written
        (the entries stay in memory and go out with the next write)."""
        if not self._own_read:
            self._own_read = True
            if self.file.is_file():
                raw, _ = _read_file(self.file)
                for item in raw:
                    try:
                        entry, _m = entry_from_json(item, self.path)
                    except BadEntry:  # a damaged entry of our own file is dropped
                        continue
                    self._own.setdefault(entry_key(entry.case), item)
        n = 0
        for e in entries:
            key = entry_key(e.case)
            self.keys.add(key)
            if key in self._own:
                continue
            self._own[key] = entry_json(e, self.path)
            n += 1
        while len(self._own) > self.capacity:
            del self._own[next(iter(self._own))]
        if n or not self.file.exists():
            self._write(fsync)
        return n

    def _write(self, fsync: bool) -> None:
        text = json.dumps({"format": FORMAT, "version": VERSION,
                           "entries": list(self._own.values())}, separators=(",", ":"))
        write_text(self.file, text + "\n", fsync=fsync)


def merge(folders: Iterable[str | os.PathLike[str]], into: str | os.PathLike[str],
          writer: str = "merged") -> tuple[int, list[str]]:
    """Every valid entry of the pool folders ``folders`` (in that order, each folder's files by
    name; equal programs once) added, as stored, to folder ``into`` as writer ``writer``: the
    number added and a warning per file or entry skipped.  Entries of another model stay
    what they were, to be re-run by whoever loads them."""
    store = PoolStore(into, writer, capacity=1 << 30)
    store.add([])  # reads the writer's file as it is
    warnings: list[str] = []
    n = 0
    for folder in folders:
        for f in PoolStore(folder, "read").files():
            raw, problem = _read_file(f)
            if problem is not None:
                warnings.append(problem)
                continue
            for i, item in enumerate(raw):
                try:
                    entry, _m = entry_from_json(item, folder)
                except BadEntry as e:
                    warnings.append(f"{f}: entry {i} skipped ({e})")
                    continue
                key = entry_key(entry.case)
                if key not in store._own:
                    store._own[key] = item
                    n += 1
    if n:
        store._write(fsync=True)
    return n, warnings
