"""Finding records: one JSON file per hit in ``findings/``, grouped by failure signature.

A worker writes a record (atomically) the moment it has saved a failure or caught its own crash;
the supervisor writes one when a worker dies without a word.  Several workers finding the same
failure write several records with one signature: the report groups them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from vmfuzz.soak._schema import check_finding, read_state


def load_findings(state_dir: Path) -> list[dict[str, Any]]:
    """Every finding record of the run, oldest first (:class:`CorruptState` for a bad one)."""
    records = []
    for p in sorted((state_dir / "findings").glob("*.json")):
        rec = read_state(p, check_finding)
        if rec is not None:
            rec["record"] = str(p)
            records.append(rec)
    records.sort(key=lambda r: (r.get("elapsed", 0.0), r.get("record", "")))
    return records


def group_findings(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Findings deduplicated by signature: the first record of each, with ``hits`` and workers."""
    groups: dict[str, dict[str, Any]] = {}
    for rec in records:
        g = groups.get(rec["signature"])
        if g is None:
            g = dict(rec)
            g["hits"] = 0
            g["workers"] = []
            groups[rec["signature"]] = g
        g["hits"] += 1
        if rec.get("worker") not in g["workers"]:
            g["workers"].append(rec.get("worker"))
        if rec.get("corpus"):
            g["corpus"] = rec["corpus"]
            g["timeline"] = rec.get("timeline") or g.get("timeline")
        if rec.get("known"):  # an unshrunk hit of a finding saved before: not its size
            continue
        # The corpus keeps the shortest run of a signature: show that one's size.
        steps = (rec.get("shrunk") or {}).get("steps")
        best = (g.get("shrunk") or {}).get("steps")
        if steps is not None and (best is None or steps < best):
            g["shrunk"] = rec["shrunk"]
            g["minimal_preemptions"] = rec.get("minimal_preemptions")
            g["message"] = rec.get("message")
    return list(groups.values())


def known_like(records: list[dict[str, Any]], check: str,
               label: str | None) -> dict[str, Any] | None:
    """The first saved failure record with this check and label (what ``known`` matched)."""
    for rec in records:
        if (rec.get("kind") == "failure" and rec.get("corpus") and rec.get("check") == check
                and rec.get("label") == label):
            return rec
    return None


def finding_id(elapsed: float, slot: int, seed: int, kind: str) -> str:
    """The record's file name (no ``.json``): sorts by the run time it was found at."""
    return f"{int(elapsed * 1000):012d}-w{slot}-{kind}-{seed}"


def signature_digest(signature: str) -> str:
    """A short stable id for a finding signature (used in file and anchor names)."""
    return hashlib.sha256(signature.encode()).hexdigest()[:8]
