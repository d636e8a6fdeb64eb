"""The run's shared program pool, kept in the state folder: every campaign that keeps a pool
(:func:`vmfuzz.schedules.guided`) starts from it, and the programs it adds join it.

``STATE/pool/<T>-<digest>.json`` holds one program each, as a case in the corpus's JSON format
(data only: :func:`vmfuzz.corpus.from_json`), named by the run's elapsed milliseconds when it
joined and a digest of its content (the same program from two workers is one file).  A
campaign starts from the newest :data:`POOL_SEED` programs, re-run under their recorded
schedules and offered to its pool (:func:`seed_pool`), so a program whose run differs under
today's model enters with today's interleavings, and a damaged file is skipped.  Which programs
a campaign started from is part of what it did: the campaign log records how many and their
digest (:func:`pool_digest`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from vmfuzz.soak._files import write_json

POOL_DIR = "pool"
POOL_SEED = 512  # newest programs a campaign starts from (a pool's capacity)


def _digest(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def pool_files(state: Path) -> list[Path]:
    """The pool's program files, oldest first."""
    return sorted((state / POOL_DIR).glob("*.json"))


def load_programs(state: Path, limit: int = POOL_SEED) -> list[dict[str, Any]]:
    """The newest ``limit`` programs of the pool (case JSON, oldest first); a file that is not
    JSON is skipped (:func:`seed_pool` skips one that is not a case)."""
    out: list[dict[str, Any]] = []
    for path in pool_files(state)[-limit:] if limit else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            out.append(data)
    return out


def pool_size(state: Path) -> int:
    """Programs in the pool."""
    return len(pool_files(state))


def add_programs(state: Path, programs: list[dict[str, Any]], elapsed: float) -> int:
    """Add ``programs`` (case JSON) to the pool; the number that were not in it yet."""
    known = {p.stem.split("-", 1)[-1] for p in pool_files(state)}
    added = 0
    for i, data in enumerate(programs):
        d = _digest(data)
        if d in known:
            continue
        known.add(d)
        write_json(state / POOL_DIR / f"{round(elapsed * 1000):012d}{i:04d}-{d}.json", data,
                   fsync=False)
        added += 1
    return added


def pool_digest(programs: list[dict[str, Any]]) -> str:
    """A short digest of the programs a campaign started from (its log line records it)."""
    h = hashlib.sha256()
    for data in programs:
        h.update(_digest(data).encode())
    return h.hexdigest()[:16]


def seed_pool(pool: Any, programs: list[dict[str, Any]]) -> int:
    """Run each program under its recorded schedule and offer it to ``pool``
    (:class:`vmfuzz.pool.Pool`); the scheduler steps this took.  A program that is not a
    valid case (damaged, or of an operation no longer registered) is skipped."""
    from vmfuzz.corpus import CorpusError, from_json

    steps0 = pool.steps
    for data in programs:
        try:
            cc = from_json(data)
        except (CorpusError, ValueError, KeyError, TypeError):
            continue
        if cc.case.config.bugs != pool.config.bugs:
            continue
        try:
            pool._run_one(cc.case, cc.source(strict=False))
        except Exception:  # a model change under a stored program: it just does not enter
            continue
    return int(pool.steps - steps0)


def new_programs(pool: Any, added_before: int) -> list[dict[str, Any]]:
    """The programs ``pool`` added after it had added ``added_before`` (case JSON)."""
    from vmfuzz.corpus import CorpusCase, to_json

    out = []
    n = len(pool.entries)
    for k in range(max(added_before, pool.added - n), pool.added):
        entry = pool.entries[k % n] if n == pool.capacity else pool.entries[k]
        out.append(to_json(CorpusCase(entry.case, "clean")))
    return out


def pool_pairs(pool: Any) -> list[list[str]]:
    """The interleaving pairs a pool's runs met, as JSON data (sorted)."""
    return sorted([a, b] for a, b in pool.hits)
