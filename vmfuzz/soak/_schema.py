"""What each state file must hold; a file that does not is an error naming it, never "empty".

Every state file is written atomically, so neither a ``kill -9`` nor a full disk leaves one half
written: a file that does not parse, or holds a field of the wrong type, was damaged from
outside (a truncating copy, a hand edit, a disk fault).  Reading it as empty would silently
reset the counters or repeat seeds, so :func:`read_state` raises :class:`CorruptState` (one
line: the file and what is wrong) and the command exits with status 2.  A missing file is
``None``: a run that has not written it yet.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmfuzz.soak._config import SoakError
from vmfuzz.soak._plan import MAX_RUN_ID

FORMAT = "vmfuzz-soak"

Check = Callable[[Any], str | None]  # what is wrong with the data, or None
Spec = dict[str, tuple[Callable[[Any], bool], str, bool]]  # field -> (test, kind, required)


class CorruptState(SoakError):
    """A state file that cannot be used: ``str(e)`` names the file and the problem."""


def read_state(path: Path, check: Check) -> Any:
    """The JSON of ``path`` after ``check``; None if the file is missing."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CorruptState(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        what = "empty" if not raw.strip() else f"not JSON ({_first_line(e)})"
        raise CorruptState(f"{path}: corrupt soak state file: {what}") from None
    problem = check(data)
    if problem is not None:
        raise CorruptState(f"{path}: corrupt soak state file: {problem}")
    return data


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _fields(d: Any, spec: Spec) -> str | None:
    """Check ``d`` is an object whose fields match ``spec``: name -> (test, kind, required)."""
    if not isinstance(d, dict):
        return f"a JSON object expected, not {type(d).__name__}"
    for name, (test, kind, required) in spec.items():
        if name not in d:
            if required:
                return f"no field {name!r}"
            continue
        if not test(d[name]):
            return f"field {name!r} must be {kind}, not {json.dumps(d[name])[:40]}"
    return None


def _count(v: Any) -> bool:
    return _is_int(v) and v >= 0


def _counts(v: Any) -> bool:
    return isinstance(v, dict) and all(_count(x) for x in v.values())


def _opt(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or test(v)


def _list_of_objects(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, dict) for x in v)


def _str(v: Any) -> bool:
    return isinstance(v, str)


def _obj(v: Any) -> bool:
    return isinstance(v, dict)


def check_run(d: Any) -> str | None:
    """``run.json``: the run's configuration and its sessions."""
    problem = _fields(d, {
        "format": (lambda v: v == FORMAT, f"{FORMAT!r}", True),
        "config": (_obj, "an object", True),
        "sessions": (_list_of_objects, "a list of objects", True),
        "run_id": (lambda v: _count(v) and v <= MAX_RUN_ID,
                   f"a run identity (0 .. {MAX_RUN_ID})", False),
    })
    if problem is not None:
        return problem
    strs = (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
            "a list of strings")
    problem = _fields(d["config"], {
        "bugs": (*strs, False), "plugins": (*strs, False), "schedulers": (*strs, False),
        "ops": (_opt(strs[0]), "a list of strings or null", False),
        "corpus": (_str, "a path", False),
        "checks": (_opt(strs[0]), "a list of strings or null", False),
        "no_checks": (*strs, False),
    })
    if problem is not None:
        return f"config: {problem}"
    for i, s in enumerate(d["sessions"]):
        problem = _fields(s, {
            "workers": (_opt(_count), "a count or null", False),
            "stop": (_opt(_str), "a string or null", False),
            "elapsed": (_opt(_is_num), "a number or null", False),
        })
        if problem is not None:
            return f"sessions[{i}]: {problem}"
    return None


def check_stats(d: Any) -> str | None:
    """``stats.json``: the run's totals and time series."""
    problem = _fields(d, {
        "totals": (_obj, "an object", True),
        "elapsed": (_is_num, "a number", True),
        "series": (_list_of_objects, "a list of objects", True),
        "interrupted": (_list_of_objects, "a list of objects", False),
        "coverage": (_opt(_obj), "an object or null", False),
        "slots": (_obj, "an object", False),
    })
    if problem is not None:
        return problem
    t = d["totals"]
    spec: Spec = {k: (_count, "a count (integer >= 0)", True)
            for k in ("examples", "steps", "budget_hits", "campaigns")}
    spec.update({k: (_counts, "an object of counts", True)
                 for k in ("schedulers", "profiles", "ops", "labels")})
    spec.update({k: (_is_num, "a number", False)
                 for k in ("worker_cpu_seconds", "worker_wait_seconds", "worker_alive_seconds")})
    spec["sampled_chunks"] = (_count, "a count (integer >= 0)", False)
    spec.update({k: (_count, "a count (integer >= 0)", False)
                 for k in ("pairs", "pool", "workers_lost", "resubmitted")})
    problem = _fields(t, spec)
    if problem is not None:
        return f"totals: {problem}"
    if d.get("coverage") is not None:
        cov: Spec = {k: (_opt(_is_num), "a number or null", False) for k in ("lines", "branches")}
        cov.update({k: (_count, "a count", False) for k in (
            "covered_lines", "statements", "covered_branches", "branches_total",
            "sampled_chunks")})
        problem = _fields(d["coverage"], cov)
        if problem is not None:
            return f"coverage: {problem}"
    for i, p in enumerate(d["series"]):
        spec = {"t": (_is_num, "a number", True)}
        spec.update({k: (_opt(_is_num), "a number or null", False)
                     for k in ("steps", "examples", "steps_per_second", "examples_per_second",
                               "lines", "branches", "cpu", "wait", "load", "pairs", "pool",
                               "findings")})
        spec["rss_mb"] = (_opt(lambda v: isinstance(v, dict) and all(
            x is None or _is_num(x) for x in v.values())), "an object of numbers", False)
        problem = _fields(p, spec)
        if problem is not None:
            return f"series[{i}]: {problem}"
    for slot, s in d.get("slots", {}).items():
        problem = _fields(s, {"logged": (_count, "a count", True),
                              "examples": (_count, "a count", True),
                              "steps": (_count, "a count", True)})
        if problem is not None:
            return f"slots[{slot}]: {problem}"
    return None


def check_pairs(d: Any) -> str | None:
    """``pairs.json``: the interleaving pairs the run's campaigns met."""
    problem = _fields(d, {"pairs": (lambda v: isinstance(v, list) and all(
        isinstance(x, list) and len(x) == 2 and all(isinstance(y, str) for y in x) for x in v),
        "a list of [label, label] pairs", True)})
    return problem


def check_slot(d: Any) -> str | None:
    """``workers/slot<N>.json``: the slot's seed cursor and its campaign in flight."""
    problem = _fields(d, {
        "slot": (_count, "a count", True),
        "next": (_count, "a count (the next campaign's index)", True),
        "current": (_opt(_obj), "an object or null", True),
    })
    if problem is not None:
        return problem
    cur = d["current"]
    if cur is not None:
        return _fields(cur, {"seed": (_count, "a count", True),
                             "index": (_count, "a count", True)})
    return None


def check_finding(d: Any) -> str | None:
    """``findings/*.json``: one finding record (the fields the report reads)."""
    problem = _fields(d, {
        "signature": (_str, "a string", True),
        "kind": (_str, "a string", False),
        "check": (_opt(_str), "a string", False),
        "message": (_opt(_str), "a string", False),
        "elapsed": (_is_num, "a number", False),
        "worker": (_opt(_count), "a count or null", False),
        "seed": (_opt(_is_int), "an integer or null", False),
        "corpus": (_opt(_str), "a path or null", False),
        "timeline": (_opt(_str), "a path or null", False),
        "shrunk": (_opt(_obj), "an object or null", False),
        "shrink_passes": (_opt(_list_of_objects), "a list of objects", False),
        "traceback": (_opt(_str), "a string or null", False),
        "case_text": (_opt(_str), "a string or null", False),
    })
    if problem is not None:
        return problem
    for i, p in enumerate(d.get("shrink_passes") or []):
        spec: Spec = {"name": (_str, "a string", True),
                      "seconds": (_opt(_is_num), "a number", False)}
        spec.update({k: (_opt(_count), "a count", False) for k in ("tried", "kept", "runs")})
        problem = _fields(p, spec)
        if problem is not None:
            return f"shrink_passes[{i}]: {problem}"
    return None
