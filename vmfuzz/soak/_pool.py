"""The run's shared program pool, kept in the state folder: every campaign that keeps a pool
(:func:`vmfuzz.schedules.guided`) starts from it, and the programs it adds join it.

``STATE/pool/`` is a pool folder (:mod:`vmfuzz._poolstore`: one file per writer, programs as
case JSON, data only, a damaged entry skipped with a warning, a program of another model
re-run rather than trusted).  A local worker slot ``N`` writes ``pool-slotN.json``; a cluster
session's parent writes ``pool-cluster.json`` with what its campaigns bring back.  A campaign
starts from what every writer stored (:func:`start_pool`); on a Dask worker, which has no state
folder, it starts from entries handed to it as data (:func:`entries_for`,
:func:`loaded_from_entries`), at most :data:`POOL_SEED` of them.  Which entries a campaign
started from is part of what it did: its log line records how many and their digest.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

POOL_DIR = "pool"
POOL_SEED = 512  # entries handed to a campaign on a Dask worker (a pool's capacity)


def open_store(state: Path, writer: str) -> Any:
    """The run's pool folder as ``writer`` (:class:`vmfuzz._poolstore.PoolStore`)."""
    from vmfuzz._poolstore import PoolStore

    return PoolStore(state / POOL_DIR, writer=writer)


def start_pool(pool: Any, loaded: Any) -> int:
    """Put what a store loaded (:class:`vmfuzz._poolstore.Loaded`) into ``pool``: entries of
    this model are adopted, the others re-run (a violation there is not this campaign's: the
    program is simply not kept); the steps that took.  From here on ``pool.unsaved`` collects
    the entries the campaign adds."""
    for e in loaded.entries:
        pool.adopt(e)
    steps0 = pool.steps
    if loaded.rerun:
        pool.rerun(loaded.rerun)
    pool.unsaved = []
    return int(pool.steps - steps0)


def entries_for(state: Path, config: Any, limit: int = POOL_SEED) -> list[dict[str, Any]]:
    """The newest ``limit`` entries of the run's pool usable by a campaign of ``config``
    (a ``KernelConfig``), as pool-file JSON: what a campaign on a Dask worker starts from."""
    from vmfuzz._poolstore import entry_json

    got = open_store(state, "read").load(config)
    out = [entry_json(e, state / POOL_DIR) for e in got.entries]
    out += [_case_entry(c) for c in got.rerun]
    return out[-limit:] if limit else []


def _case_entry(case: Any) -> dict[str, Any]:
    """A program whose coverage is not trusted, as a pool entry to re-run (no model)."""
    from vmfuzz.corpus import CorpusCase, to_json

    return {"case": to_json(CorpusCase(case, "clean")), "length": 0, "targets": [],
            "frames": [], "new": []}


def loaded_from_entries(entries: list[dict[str, Any]], config: Any) -> Any:
    """What a pool folder holding ``entries`` would load for a campaign of ``config``
    (:class:`vmfuzz._poolstore.Loaded`: the same checks and trust as a folder's)."""
    from vmfuzz._poolstore import FORMAT, VERSION, PoolStore

    with tempfile.TemporaryDirectory(prefix="vmfuzz-pool-") as tmp:
        (Path(tmp) / "pool-in.json").write_text(
            json.dumps({"format": FORMAT, "version": VERSION, "entries": entries}))
        return PoolStore(tmp, writer="read").load(config)


def entries_json(entries: list[Any], folder: Path | None = None) -> list[dict[str, Any]]:
    """Pool entries (:class:`vmfuzz.pool.Entry`) as pool-file JSON."""
    from vmfuzz._poolstore import entry_json

    return [entry_json(e, folder) for e in entries]


def add_entries(state: Path, writer: str, entries: list[dict[str, Any]]) -> int:
    """Store pool-file JSON entries (a campaign's, from a Dask worker) in the run's pool as
    ``writer``; how many were new there (a damaged one is skipped)."""
    from vmfuzz._poolstore import BadEntry, entry_from_json

    folder = state / POOL_DIR
    good = []
    for item in entries:
        try:
            good.append(entry_from_json(item, folder)[0])
        except BadEntry:
            continue
    return int(open_store(state, writer).add(good))


def pool_keys(state: Path) -> set[str]:
    """Digests of the programs the run's pool holds (every writer's file; equal cases once)."""
    keys = set()
    for f in open_store(state, "read").files():
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        items = data.get("entries") if isinstance(data, dict) else None
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and isinstance(item.get("case"), dict):
                keys.add(_digest(item["case"]))
    return keys


def pool_size(state: Path) -> int:
    """Programs the run's pool holds."""
    return len(pool_keys(state))


def _digest(case: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(case, sort_keys=True).encode()).hexdigest()[:20]


def pool_digest(entries: list[dict[str, Any]]) -> str:
    """A short digest of the entries a campaign started from (its log line records it)."""
    h = hashlib.sha256()
    for item in entries:
        h.update(_digest(item.get("case") or {}).encode())
    return h.hexdigest()[:16]


def pool_pairs(pool: Any) -> list[list[str]]:
    """The interleaving pairs a pool's runs met, as JSON data (sorted)."""
    return sorted([a, b] for a, b in pool.hits)
