"""The state directory of a soak run, as a session opens it: ``run.json``, the session lock,
``stats.json`` read back, and the slot files' campaigns in flight.

A new run gets a fresh ``run.json`` (what is fuzzed, the sessions so far); ``--resume`` reads
it back, fuzzes what the run fuzzed, records the campaigns a killed session left in flight (they
can be re-run) and goes on with the run's totals.  One session at a time per state directory:
the lock is a ``flock`` on ``run.lock``, which the kernel drops if the session dies.

Before anything runs, the state folder and the corpus must be writable (else one line, exit
status 2), and every state file read back must be sound (:mod:`vmfuzz.soak._schema`: a corrupt
one is an error naming it).  After a ``kill -9`` of the session's parent, its workers stop at
their next chunk of examples (a failure being shrunk is shrunk and saved first) and log the
campaign; ``--resume`` waits for them (their slot locks), then adds every campaign the slot logs
hold beyond what ``stats.json`` counted (``slots``: per slot, the log lines counted and the
progress counted of the campaign in flight), so no campaign is missing from the totals (its
examples, steps, scheduler and profile; the per-operation and per-label counts are not logged).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from vmfuzz._write import probe_dir
from vmfuzz.soak._config import (
    SoakConfig,
    SoakError,
    SoakOptions,
    merge_resume_config,
    validate,
)
from vmfuzz.soak._files import now_iso, read_jsonl, write_json
from vmfuzz.soak._findings import load_findings
from vmfuzz.soak._plan import draw_run_id
from vmfuzz.soak._schema import (
    FORMAT,
    check_pairs,
    check_run,
    check_slot,
    check_stats,
    read_state,
)

VERSION = 1
PAIRS_FILE = "pairs.json"  # the interleaving pairs the run's campaigns met: {"pairs": [[a, b]]}


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
        "slots": {},
    }


def read_run(state: Path) -> dict[str, Any] | None:
    """``STATE/run.json`` (None if there is none); :class:`CorruptState` if it is damaged."""
    data = read_state(state / "run.json", check_run)
    return data if isinstance(data, dict) else None


def read_pairs(state: Path) -> set[tuple[str, str]]:
    """The interleaving pairs the run met so far (``STATE/pairs.json``; none if missing)."""
    data = read_state(state / PAIRS_FILE, check_pairs)
    if not isinstance(data, dict):
        return set()
    return {(a, b) for a, b in data["pairs"]}


def check_writable(state: Path, corpus: str) -> None:
    """:class:`SoakError` (one line) unless the state folder and the corpus can be written."""
    try:
        state.mkdir(parents=True, exist_ok=True)
        probe_dir(state)
    except OSError as e:
        raise SoakError(f"cannot write the state folder {state}: {e.strerror or e}") from None
    try:
        probe_dir(corpus)
    except OSError as e:
        raise SoakError(f"cannot write the corpus {corpus}: {e.strerror or e} (--corpus "
                        "names where failures are saved)") from None


def open_run(o: SoakOptions, on_event: Callable[[str], None] | None = None) -> OpenedRun:
    """Create the state directory, or read it back for ``--resume``; lock it for this session.

    Sets ``o.config`` to what the run fuzzes: the run's own on ``--resume``, else the request
    with the corpus as an absolute path.  :class:`SoakError` (nothing started) for a state
    directory that holds no run on ``--resume``, or already holds one without it.
    """
    state = o.state_dir
    run_file = state / "run.json"
    existing = read_run(state)
    if o.resume:
        if existing is None:
            raise SoakError(f"--resume: {state} holds no soak run (no run.json)")
        old = SoakConfig.from_json(existing.get("config", {}))
        o.config = merge_resume_config(old, o.config)
        kept = int(existing.get("run_id", 0))  # (a run created before run identities: 0)
        if o.run_id is not None and o.run_id != kept:
            raise SoakError(f"--resume: --seed {o.run_id} differs from the run's {kept}; "
                            "leave it out to continue the run")
        o.run_id = kept
        run_json = existing
    else:
        if run_file.exists():
            raise SoakError(
                f"{state} already holds a soak run: add --resume to continue it, "
                "or pass another --state"
            )
        # The corpus is kept as an absolute path: a --resume from elsewhere saves there.
        o.config = attrs.evolve(o.config, corpus=str(Path(o.config.corpus or "corpus").resolve()))
        drawn = o.run_id is None
        if o.run_id is None:
            o.run_id = draw_run_id()
        run_json = {
            "format": FORMAT, "version": VERSION, "created": now_iso(),
            "run_id": o.run_id, "run_id_drawn": drawn,
            "config": o.config.to_json(), "sessions": [],
        }
    validate(o.config)
    check_writable(state, o.config.corpus)
    lock_fd = _lock_session(state)
    try:
        return _open_locked(o, run_json, lock_fd, on_event)
    except BaseException:
        os.close(lock_fd)
        raise


def _open_locked(o: SoakOptions, run_json: dict[str, Any], lock_fd: int,
                 on_event: Callable[[str], None] | None) -> OpenedRun:
    state = o.state_dir
    run_file = state / "run.json"
    if not o.resume and run_file.exists():  # another fresh run got here first
        raise SoakError(f"{state} already holds a soak run: pass another --state")
    run_json["config"] = o.config.to_json()
    read_back = read_state(state / "stats.json", check_stats) if o.resume else None
    stats = read_back if isinstance(read_back, dict) else new_stats()
    stats.setdefault("interrupted", [])
    stats.setdefault("slots", {})
    records = load_findings(state)
    if o.resume:
        _wait_for_orphans(state, on_event)
        if read_back is None or "slots" in read_back:  # (older stats: no per-slot counts)
            _recover_logged_campaigns(state, stats, on_event)
        _note_interrupted_campaigns(state, stats, "the previous session was killed",
                                    resubmitting=o.dask is not None)
        for s in run_json.get("sessions", []):
            if s.get("ended") is None and not s.get("stop"):
                s["stop"] = "killed"
    session = {
        "started": now_iso(), "duration": o.duration, "workers": o.workers,
        "elapsed_before": stats.get("elapsed", 0.0), "ended": None, "stop": None,
        "pid": os.getpid(),
    }
    run_json.setdefault("sessions", []).append(session)
    try:
        write_json(run_file, run_json)
    except OSError as e:
        raise SoakError(f"cannot write {run_file}: {e.strerror or e}") from None
    return OpenedRun(run_json, stats, records, session, lock_fd)


def _lock_session(state: Path) -> int:
    """One session at a time per state directory (the kernel drops the lock if we die)."""
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(state / "run.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise SoakError(f"another vmfuzz soak session is running on {state}") from None
    return fd


def slot_files(state: Path) -> list[tuple[int, Path]]:
    """The run's slot files, by slot number."""
    out = []
    for p in (state / "workers").glob("slot*.json"):
        num = p.stem[len("slot"):]
        if num.isdigit():
            out.append((int(num), p))
    return sorted(out)


def read_slot(path: Path) -> dict[str, Any] | None:
    """A slot file (None if missing); :class:`CorruptState` if it is damaged."""
    data = read_state(path, check_slot)
    return data if isinstance(data, dict) else None


def _wait_for_orphans(state: Path, on_event: Callable[[str], None] | None) -> None:
    """Wait until no worker of a killed session holds a slot lock (it is saving a failure)."""
    for lock in sorted((state / "workers").glob("slot*.lock")):
        fd = os.open(lock, os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                if on_event is not None:
                    on_event(f"waiting for a worker of the killed session to finish its "
                             f"campaign ({lock.stem})")
                fcntl.flock(fd, fcntl.LOCK_EX)
        finally:
            os.close(fd)


def _recover_logged_campaigns(state: Path, stats: dict[str, Any],
                              on_event: Callable[[str], None] | None) -> None:
    """Count the campaigns the slot logs hold beyond those ``stats.json`` counted."""
    t = stats["totals"]
    recovered = 0
    for num, _ in slot_files(state):
        lines = read_jsonl(state / "workers" / f"slot{num}.log")
        seen = stats["slots"].get(str(num), {"logged": 0, "examples": 0, "steps": 0})
        partial = {"examples": seen["examples"], "steps": seen["steps"]}
        for line in lines[seen["logged"]:]:
            t["campaigns"] += 1
            for key in ("examples", "steps"):
                v = line.get(key)
                if isinstance(v, int) and not isinstance(v, bool):
                    t[key] += max(0, v - partial[key])
                partial[key] = 0
            for key, val in (("schedulers", line.get("scheduler")),
                             ("profiles", line.get("profile"))):
                if isinstance(val, str):
                    t[key][val] = t[key].get(val, 0) + 1
            recovered += 1
        stats["slots"][str(num)] = {"logged": len(lines), "examples": 0, "steps": 0}
    if recovered:
        stats["recovered_campaigns"] = stats.get("recovered_campaigns", 0) + recovered
        if on_event is not None:
            on_event(f"counted {recovered} campaign{'s' if recovered != 1 else ''} the killed "
                     "session finished after its last stats.json")


def _note_interrupted_campaigns(state: Path, stats: dict[str, Any], why: str,
                                resubmitting: bool = False) -> None:
    """Campaigns the slot files show in flight are recorded (they can be re-run); those a
    cluster session had in flight are left for a cluster session (``resubmitting``) to submit
    again."""
    for _, p in slot_files(state):
        d = read_slot(p)
        if d is not None and d.get("in_flight") and not resubmitting:
            for cur in d["in_flight"]:
                stats["interrupted"].append(dict(cur, slot=d.get("slot"), why=why))
            d["in_flight"] = []
            write_json(p, d)
        if d is None or not d.get("current"):
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
    d = read_slot(path)
    if d is not None and d.get("current"):
        d["current"] = None
        write_json(path, d)
