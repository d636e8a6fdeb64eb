"""The state directory of a soak run, as a session opens it: ``run.json``, the session lock,
``stats.json`` read back, and the slot files' campaigns in flight.

A new run gets a fresh ``run.json`` (what is fuzzed, the sessions so far); ``--resume`` reads
it back, fuzzes what the run fuzzed, records the campaigns a killed session left in flight (they
can be re-run) and goes on with the run's totals.  One session at a time per state directory:
the lock is a ``flock`` on ``run.lock``, which the kernel drops if the session dies.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

import attrs

from vmfuzz.soak._config import (
    SoakConfig,
    SoakError,
    SoakOptions,
    merge_resume_config,
    validate,
)
from vmfuzz.soak._files import now_iso, read_json, write_json
from vmfuzz.soak._findings import load_findings

FORMAT = "vmfuzz-soak"
VERSION = 1


@attrs.define
class OpenedRun:
    """What a session starts from: the run's files read back (or new), and its lock."""

    run_json: dict[str, Any]
    stats: dict[str, Any]
    records: list[dict[str, Any]]
    session: dict[str, Any]  # this session's entry of run_json["sessions"]
    lock_fd: int


def new_stats() -> dict[str, Any]:
    """The ``stats.json`` of a run that has done nothing yet."""
    return {
        "format": "vmfuzz-soak-stats",
        "version": VERSION,
        "elapsed": 0.0,
        "totals": {
            "examples": 0, "steps": 0, "budget_hits": 0, "campaigns": 0,
            "sampled_chunks": 0, "schedulers": {}, "profiles": {}, "ops": {}, "labels": {},
        },
        "coverage": None,
        "series": [],
        "interrupted": [],
    }


def open_run(o: SoakOptions) -> OpenedRun:
    """Create the state directory, or read it back for ``--resume``; lock it for this session.

    Sets ``o.config`` to what the run fuzzes: the run's own on ``--resume``, else the request
    with the corpus as an absolute path.  :class:`SoakError` (nothing started) for a state
    directory that holds no run on ``--resume``, or already holds one without it.
    """
    state = o.state_dir
    run_file = state / "run.json"
    existing = read_json(run_file)
    if o.resume:
        if not isinstance(existing, dict) or existing.get("format") != FORMAT:
            raise SoakError(f"--resume: {state} holds no soak run (no run.json)")
        old = SoakConfig.from_json(existing.get("config", {}))
        o.config = merge_resume_config(old, o.config)
        run_json = existing
    else:
        if run_file.exists():
            raise SoakError(
                f"{state} already holds a soak run: add --resume to continue it, "
                "or pass another --state"
            )
        # The corpus is kept as an absolute path: a --resume from elsewhere saves there.
        o.config = attrs.evolve(o.config, corpus=str(Path(o.config.corpus or "corpus").resolve()))
        run_json = {
            "format": FORMAT, "version": VERSION, "created": now_iso(),
            "config": o.config.to_json(), "sessions": [],
        }
    validate(o.config)
    lock_fd = _lock_session(state)
    if not o.resume and run_file.exists():  # another fresh run got here first
        raise SoakError(f"{state} already holds a soak run: pass another --state")
    run_json["config"] = o.config.to_json()
    read_back = read_json(state / "stats.json") if o.resume else None
    stats = read_back if isinstance(read_back, dict) else new_stats()
    stats.setdefault("interrupted", [])
    records = load_findings(state)
    if o.resume:
        _note_interrupted_campaigns(state, stats, "the previous session was killed")
        for s in run_json.get("sessions", []):
            if s.get("ended") is None and not s.get("stop"):
                s["stop"] = "killed"
    session = {
        "started": now_iso(), "duration": o.duration, "workers": o.workers,
        "elapsed_before": stats.get("elapsed", 0.0), "ended": None, "stop": None,
        "pid": os.getpid(),
    }
    run_json.setdefault("sessions", []).append(session)
    write_json(run_file, run_json)
    return OpenedRun(run_json, stats, records, session, lock_fd)


def _lock_session(state: Path) -> int:
    """One session at a time per state directory (the kernel drops the lock if we die)."""
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(state / "run.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise SoakError(f"another vmfuzz soak session is running on {state}") from None
    return fd


def _note_interrupted_campaigns(state: Path, stats: dict[str, Any], why: str) -> None:
    """Campaigns the slot files show in flight are recorded (they can be re-run)."""
    for p in sorted((state / "workers").glob("slot*.json")):
        d = read_json(p)
        if not isinstance(d, dict) or not d.get("current"):
            continue
        cur = dict(d["current"])
        cur["slot"] = d.get("slot")
        cur["why"] = why
        stats["interrupted"].append(cur)
        d["current"] = None
        write_json(p, d)


def clear_slot_file(state: Path, slot: int) -> None:
    """The slot's campaign in flight is accounted for (the cursor stays)."""
    path = state / "workers" / f"slot{slot}.json"
    d = read_json(path)
    if isinstance(d, dict) and d.get("current"):
        d["current"] = None
        write_json(path, d)
