"""The regression corpus: cases as versioned JSON files, saving failures, replaying them.

A corpus file is data, never code: it is read with :mod:`json` and validated field by field
(no pickle, no eval).  The format is documented in ``docs/corpus.md``; in short::

    {"format": "vmfuzz-case", "version": 1,
     "model": {"version": "0.1.0", "digest": "..."},            (the model that recorded it)
     "plugins": [{"name": "../p.py", "sha256": "..."}],        (only when it uses a plugin's)
     "config": {"nr_mms": 3, ..., "bugs": ["..."]},
     "tasks": [{"name": "T1", "start": 0, "ops": [{"op": "munmap", "args": {...}}]}, ...],
     "schedule": {"decisions": [...], "anchors": [...]} | {"preemptions": [[gap, offset], ...]}
                 | {"explicit": ["run T1 until func:where", ...]} | {"pct": {...}}
                 | {"random": {"seed": n}} | {},
     "max_steps": 20000, "expected": "clean" | "<check name>",
     "trace_sha256": "...", "steps": 41, "violation": {...}, "metadata": {...}}

:func:`save_failure` is what the fuzzer calls for every shrunk failure; :func:`load` reads a
file (raising :class:`CorpusError`, one line naming the file and the problem); :func:`replay`
re-runs a case, compares the outcome with the recorded one and, for a case recorded with bug
switches on, re-runs it with them off (the fix check).  Nothing here imports Hypothesis.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import stat
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from vmfuzz import _limits as lim
from vmfuzz._casefiles import kind_of
from vmfuzz._casefiles import scan as scan_folder
from vmfuzz._provenance import model_digest, model_identity
from vmfuzz._scheduler import Outcome, ScheduleDiverged, Scheduler, ScheduleSource, Task
from vmfuzz._write import write_text
from vmfuzz.case import DEFAULT_MAX_STEPS, Case, OpCall, Run, Schedule, TaskSpec, execute
from vmfuzz.invariants import CHECKS
from vmfuzz.invariants._choice import choice_error
from vmfuzz.kernel import BUGS, OPS, KernelConfig
from vmfuzz.kernel.boot import WORLD_FEATURES
from vmfuzz.plugins import PluginError, PluginRef, changed, refs_for, require
from vmfuzz.schedules import Explicit, Replay
from vmfuzz.schedules._explicit import explicit_from_trace, parse_step
from vmfuzz.schedules._replay import Anchor, Anchoring, FollowAnchors
from vmfuzz.violation import Violation

FORMAT = "vmfuzz-case"
VERSION = 1
DEFAULT_CORPUS_DIR = "corpus"

# Outcome labels besides check names.
CLEAN = "clean"
BUDGET = "budget"
DIVERGED = "diverged"  # the recorded schedule no longer applies
ERROR = "error"  # the model raised something that is not a Violation
# A finding's verdicts (besides DIVERGED, BUDGET and ERROR): see ReplayResult.verdict.
FIXED = "fixed"
STILL_FAILS = "still fails"


_MAX_PROBLEM = 400  # characters of a CorpusError's problem


class CorpusError(Exception):
    """A corpus file that cannot be used: ``str(e)`` is one line, ``"<path>: <problem>"``."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        if len(problem) > _MAX_PROBLEM:  # a huge value quoted from the file
            problem = f"{problem[:_MAX_PROBLEM - 40]}... ({len(problem)} characters)"
        problem = " ".join(problem.splitlines())
        super().__init__(f"{os.fspath(path)}: {problem}")
        self.path = os.fspath(path)
        self.problem = problem


class NotReproducible(ValueError):
    """:func:`save_failure` re-ran the failure from scratch and did not see it again."""


@attrs.frozen
class CorpusCase:
    """A case as the corpus stores it: the case, what it should do, and where it came from.

    ``explicit`` holds the steps of an explicit schedule (then ``case.schedule`` is unused);
    ``violation`` is the recorded check/message/task/label/step, for people only; ``path`` is
    the file it was read from (None for a case not yet saved); ``plugins``, the plugins whose
    registrations it uses (loaded again when the case is read).
    """

    case: Case
    expected: str
    explicit: tuple[str, ...] | None = None
    trace_sha256: str | None = None
    steps: int | None = None
    violation: dict[str, Any] | None = attrs.field(default=None, eq=False)
    description: str = ""
    metadata: dict[str, Any] = attrs.field(factory=dict, eq=False)
    path: Path | None = attrs.field(default=None, eq=False)
    plugins: tuple[PluginRef, ...] = attrs.field(default=(), eq=False)
    # A finding on the kernel under test: expected is clean (the fix), and this records the
    # check that fired when it was found (check, message, step, task, label).
    found: dict[str, Any] | None = attrs.field(default=None, eq=False)
    # The recorded decisions' context switches, pinned to labels (None: not recorded).
    anchors: tuple[Anchor, ...] | None = attrs.field(default=None, eq=False)
    # The model that recorded the trace: {"version", "digest"} (None: not recorded).
    model: dict[str, str] | None = attrs.field(default=None, eq=False)

    @property
    def is_finding(self) -> bool:
        """Saved as a finding: red (``still fails``) until the fix makes it clean (``fixed``)."""
        return self.found is not None

    @property
    def name(self) -> str:
        """The case's name: its file name without ``.json``."""
        return self.path.stem if self.path is not None else "unsaved"

    @property
    def is_bug_case(self) -> bool:
        """Recorded with bug switches on and expecting a failure: it gets a fix check."""
        return bool(self.case.config.bugs) and self.expected != CLEAN

    def source(self, *, strict: bool = True) -> ScheduleSource:
        """A fresh schedule source for one run of this case."""
        if self.explicit is not None:
            return Explicit(self.explicit, strict=strict)
        if self.case.schedule.kind == "decisions":
            return Replay(self.case.schedule.decisions, strict=strict, anchors=self.anchors)
        return self.case.schedule.source()

    @property
    def model_changed(self) -> bool | None:
        """The model (kernel, checks, engine) differs from the one that recorded the case;
        None when the case does not say which model recorded it."""
        if self.model is None:
            return None
        return self.model.get("digest") != model_digest()

    def schedule_summary(self) -> str:
        if self.explicit is not None:
            return f"explicit, {len(self.explicit)} steps"
        s = self.case.schedule
        if s.kind == "decisions":
            return f"recorded, {len(s.decisions)} decisions"
        if s.kind == "preemptions":
            return f"{len(s.preemptions)} preemptions"
        if s.kind == "pct":
            return f"PCT seed {s.seed} depth {s.depth} k {s.k}"
        if s.kind == "random":
            return f"random walk seed {s.seed}"
        return "non-preemptive"


def outcome_label(outcome: Outcome) -> str:
    """``clean``, ``budget``, or the violated check's name."""
    if outcome.violation is not None:
        return outcome.violation.check
    return CLEAN if outcome.kind == "clean" else BUDGET


# ======================================================================= JSON -> case
class _Bad(Exception):
    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}" if where else problem)


_TOP_KEYS = {
    "format", "version", "description", "config", "tasks", "schedule", "max_steps", "expected",
    "trace_sha256", "steps", "violation", "metadata", "plugins", "found", "model",
}
_SCHEDULE_KEYS = ("decisions", "preemptions", "explicit", "pct", "random")
_DIGEST = re.compile(r"^[0-9a-f]{8,64}$")
_CHECK_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# A recorded violation: check, message, where it fired, and the events behind it
# (vmfuzz.causes: role, step, task, where, what, label each).
VIOLATION_FIELDS = ("check", "message", "task", "label", "step", "causes")


def _type_name(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false",
            int: "an integer", float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def _int(
    v: Any, where: str, minimum: int | None = None, maximum: int = lim.MAX_INT
) -> int:
    """An integer field, within ``[minimum, maximum]`` (by default ``|v| <= MAX_INT``)."""
    if not isinstance(v, int) or isinstance(v, bool):
        raise _Bad(where, f"expected an integer, found {_type_name(v)}")
    if minimum is not None and v < minimum:
        raise _Bad(where, f"must be >= {minimum}, found {v}")
    if v > maximum or v < -lim.MAX_INT:
        raise _Bad(where, f"must be <= {maximum}, found {_short_int(v)}"
                   if v > maximum else f"must be >= {-lim.MAX_INT}, found {_short_int(v)}")
    return v


def _short_int(v: int) -> str:
    """``v`` in a message: an integer of many digits by its size, not all of them."""
    text = str(abs(v))
    if len(text) <= 24:
        return str(v)
    return f"{'-' if v < 0 else ''}{text[:6]}... ({len(text)} digits)"


def _capped(items: list[Any], where: str, cap: int, what: str) -> list[Any]:
    if len(items) > cap:
        raise _Bad(where, f"{len(items)} {what}: a case has at most {cap}")
    return items


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise _Bad(where, f"expected a string, found {_type_name(v)}")
    return v


def _obj(
    v: Any, where: str, allowed: Iterable[str], required: Iterable[str] = ()
) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _Bad(where, f"expected an object, found {_type_name(v)}")
    allowed = set(allowed)
    unknown = sorted(k for k in v if k not in allowed)
    if unknown:
        raise _Bad(where, f"unknown field {unknown[0]!r} (known: {', '.join(sorted(allowed))})")
    for k in required:
        if k not in v:
            raise _Bad(where, f"missing field {k!r}")
    return v


def _list(v: Any, where: str) -> list[Any]:
    if not isinstance(v, list):
        raise _Bad(where, f"expected a list, found {_type_name(v)}")
    return v


def _config(v: Any) -> KernelConfig:
    d = _obj(
        v,
        "config",
        ("nr_mms", "pages_per_mm", "nr_frames", "nr_swap", "bugs", "boot_pages", "world",
         "checks"),
    )
    kw: dict[str, Any] = {}
    for key, cap in (("nr_mms", lim.MAX_NR_MMS), ("pages_per_mm", lim.MAX_PAGES_PER_MM),
                     ("nr_frames", lim.MAX_NR_FRAMES), ("nr_swap", lim.MAX_NR_SWAP)):
        if key in d:
            kw[key] = _int(d[key], f"config.{key}", 1, cap)
    # Cases written before boot vmas existed ran on empty address spaces: absent means 0.
    pages = kw.get("pages_per_mm", KernelConfig().pages_per_mm)
    boot = _int(d.get("boot_pages", 0), "config.boot_pages", 0)
    if boot > pages:
        raise _Bad("config.boot_pages",
                   f"must be <= pages_per_mm ({pages}), found {_short_int(boot)}")
    kw["boot_pages"] = boot
    raw_bugs = _list(d.get("bugs", []), "config.bugs")
    bugs = [_str(b, f"config.bugs[{i}]") for i, b in enumerate(raw_bugs)]
    for i, b in enumerate(bugs):
        if b not in BUGS:
            known = ", ".join(sorted(BUGS)) or "none registered"
            raise _Bad(f"config.bugs[{i}]", f"unknown bug switch {b!r} (known: {known})")
    raw_world = _list(d.get("world", []), "config.world")
    world = [_str(w, f"config.world[{i}]") for i, w in enumerate(raw_world)]
    for i, w in enumerate(world):
        if w not in WORLD_FEATURES:
            raise _Bad(
                f"config.world[{i}]",
                f"unknown world feature {w!r} (known: {', '.join(WORLD_FEATURES)})",
            )
    only, off = _checks(d.get("checks", {}))
    try:
        return KernelConfig(bugs=frozenset(bugs), world=frozenset(world), checks=only,
                            no_checks=off, **kw)
    except (TypeError, ValueError) as e:  # a rule of the kernel's own not checked above
        raise _Bad("config", str(e)) from None


def _checks(v: Any) -> tuple[frozenset[str] | None, frozenset[str]]:
    """``config.checks``: ``{"only": [names], "off": [names]}`` (either may be left out)."""
    d = _obj(v, "config.checks", ("only", "off"))
    named: dict[str, list[str]] = {}
    for key in ("only", "off"):
        where = f"config.checks.{key}"
        named[key] = [_str(n, f"{where}[{i}]") for i, n in enumerate(_list(d.get(key, []), where))]
    err = choice_error(named["only"] if "only" in d else None, named["off"])
    if err is not None:
        raise _Bad("config.checks", err)
    return (frozenset(named["only"]) if "only" in d else None), frozenset(named["off"])


def _opcall(v: Any, where: str) -> OpCall:
    d = _obj(v, where, ("op", "args"), ("op",))
    op = _str(d["op"], f"{where}.op")
    spec = OPS.get(op)
    if spec is None:
        raise _Bad(f"{where}.op", f"unknown operation {op!r}")
    args = _obj(d.get("args", {}), f"{where}.args", (a for a, _ in spec.params))
    want = [a for a, _ in spec.params]
    missing = [a for a in want if a not in args]
    if missing:
        raise _Bad(
            f"{where}.args",
            f"operation {op!r} takes ({', '.join(want)}); missing {', '.join(missing)}",
        )
    return OpCall(op, {a: _int(args[a], f"{where}.args.{a}") for a in want})


def _tasks(v: Any) -> tuple[TaskSpec, ...]:
    items = _capped(_list(v, "tasks"), "tasks", lim.MAX_TASKS, "tasks")
    out: list[TaskSpec] = []
    names: set[str] = set()
    for i, t in enumerate(items):
        where = f"tasks[{i}]"
        d = _obj(t, where, ("name", "start", "ops"), ("name", "ops"))
        name = _str(d["name"], f"{where}.name")
        if len(name) > lim.MAX_TASK_NAME:
            raise _Bad(f"{where}.name", f"a task name of {len(name)} characters: at most "
                                        f"{lim.MAX_TASK_NAME}")
        if not name or any(c.isspace() or not c.isprintable() for c in name):
            raise _Bad(f"{where}.name", f"task names must be non-empty words, found {name!r}")
        if name in names:
            raise _Bad(f"{where}.name", f"two tasks are named {name!r}")
        names.add(name)
        start = _int(d.get("start", 0), f"{where}.start", 0, lim.MAX_STEPS)
        raw_ops = _capped(_list(d["ops"], f"{where}.ops"), f"{where}.ops",
                          lim.MAX_OPS_PER_TASK, "operations")
        ops = tuple(_opcall(o, f"{where}.ops[{j}]") for j, o in enumerate(raw_ops))
        out.append(TaskSpec(name, ops, start))
    return tuple(out)


def _anchors(v: Any, decisions: Sequence[int], tasks: Sequence[TaskSpec]) -> tuple[Anchor, ...]:
    names = [t.name for t in tasks]
    # A decision is a task id: the order tasks are spawned in, by start step (ties in file
    # order, as case.execute spawns them), not their order in the file.
    ids = [t.name for t in sorted(tasks, key=lambda t: t.start)]
    out: list[Anchor] = []
    for i, item in enumerate(_list(v, "schedule.anchors")):
        where = f"schedule.anchors[{i}]"
        d = _obj(item, where, ("decision", "run", "at"), ("decision", "run", "at"))
        n = _int(d["decision"], f"{where}.decision", 0)
        if n >= len(decisions):
            raise _Bad(f"{where}.decision", f"decision {n}, but the case records "
                                            f"{len(decisions)} decisions")
        if out and n <= out[-1].decision:
            raise _Bad(f"{where}.decision", "anchors must be in increasing decision order")
        task = _str(d["run"], f"{where}.run")
        at = _obj(d["at"], f"{where}.at", names)
        if task not in names:
            raise _Bad(f"{where}.run", f"no task is named {task!r}")
        if decisions[n] != ids.index(task):
            raise _Bad(f"{where}.run", f"decision {n} picks task id {decisions[n]}, not {task}")
        labels = {name: _str(label, f"{where}.at.{name}") for name, label in at.items()}
        out.append(Anchor(n, task, labels))
    return tuple(out)


def _schedule(
    v: Any, tasks: Sequence[TaskSpec]
) -> tuple[Schedule, tuple[str, ...] | None, tuple[Anchor, ...] | None]:
    d = _obj(v, "schedule", (*_SCHEDULE_KEYS, "anchors"))
    if "anchors" in d and "decisions" not in d:
        raise _Bad("schedule.anchors", "anchors go with recorded decisions only")
    sched, explicit = _schedule_form(d, tasks)
    anchors = _anchors(d["anchors"], sched.decisions, tasks) if "anchors" in d else None
    return sched, explicit, anchors


def _schedule_form(
    d: dict[str, Any], tasks: Sequence[TaskSpec]
) -> tuple[Schedule, tuple[str, ...] | None]:
    given = [k for k in _SCHEDULE_KEYS if k in d]
    if len(given) > 1:
        raise _Bad("schedule", f"give one schedule form, found {' and '.join(given)}")
    if not given:
        return Schedule("none"), None
    kind = given[0]
    val = d[kind]
    where = f"schedule.{kind}"
    if kind in ("decisions", "preemptions", "explicit"):
        _capped(_list(val, where), where, lim.MAX_SCHEDULE, "entries")
    if kind == "decisions":
        decisions = tuple(
            _int(x, f"{where}[{i}]", 0) for i, x in enumerate(_list(val, where))
        )
        for i, x in enumerate(decisions):
            if x >= len(tasks):
                raise _Bad(f"{where}[{i}]", f"task index {x}, but the case has {len(tasks)} tasks")
        return Schedule("decisions", decisions=decisions), None
    if kind == "preemptions":
        pairs = []
        for i, p in enumerate(_list(val, where)):
            pair = _list(p, f"{where}[{i}]")
            if len(pair) != 2:
                raise _Bad(f"{where}[{i}]", f"expected [gap, offset], found {len(pair)} items")
            gap = _int(pair[0], f"{where}[{i}][0]", 0, lim.MAX_STEPS)
            pairs.append((gap, _int(pair[1], f"{where}[{i}][1]", 0)))
        return Schedule("preemptions", preemptions=tuple(pairs)), None
    if kind == "explicit":
        names = [t.name for t in tasks]
        steps = []
        for i, s in enumerate(_list(val, where)):
            if isinstance(s, str) and len(s) > lim.MAX_STEP_TEXT:
                raise _Bad(f"{where}[{i}]", f"a step of {len(s)} characters: at most "
                                            f"{lim.MAX_STEP_TEXT}")
            try:
                parse_step(_str(s, f"{where}[{i}]"), names)
            except ValueError as e:
                raise _Bad(f"{where}[{i}]", str(e)) from None
            steps.append(s)
        return Schedule("none"), tuple(steps)
    if kind == "pct":
        p = _obj(val, where, ("seed", "depth", "k"), ("seed",))
        return Schedule(
            "pct",
            seed=_int(p["seed"], f"{where}.seed"),
            depth=_int(p.get("depth", 3), f"{where}.depth", 1, lim.MAX_PCT_DEPTH),
            k=_int(p.get("k", 200), f"{where}.k", 1, lim.MAX_STEPS),
        ), None
    p = _obj(val, where, ("seed",), ("seed",))
    return Schedule("random", seed=_int(p["seed"], f"{where}.seed")), None


def from_json(data: Any, path: str | os.PathLike[str] = "<case>") -> CorpusCase:
    """Validate decoded JSON and build the case; :class:`CorpusError` names the problem."""
    try:
        return _from_json(data, Path(path))
    except _Bad as e:
        raise CorpusError(path, str(e)) from None


def _from_json(data: Any, path: Path) -> CorpusCase:
    if not isinstance(data, dict):
        raise _Bad("", f"not a vmfuzz case: the file holds {_type_name(data)}, not an object")
    fmt = data.get("format")
    if fmt != FORMAT:
        raise _Bad("", f"not a vmfuzz case: \"format\" is {fmt!r}, expected {FORMAT!r}")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise _Bad("version", f"expected the integer {VERSION}, found {version!r}")
    if version != VERSION:
        newer = " (written by a newer vmfuzz)" if version > VERSION else ""
        raise _Bad("version", f"unsupported case format version {version}{newer}; "
                              f"this vmfuzz reads version {VERSION}")
    _obj(data, "", _TOP_KEYS, ("config", "tasks", "expected"))
    # First: they register the names below.  A finding's plugin may have changed (the fix).
    plugins = _plugins(data.get("plugins", []), path, changed_ok=data.get("found") is not None)
    config = _config(data["config"])
    tasks = _tasks(data["tasks"])
    if not tasks and not config.world:  # no tasks: the world's building is the whole case
        raise _Bad("tasks", "a case needs at least one task (or a world to build)")
    schedule, explicit, anchors = _schedule(data.get("schedule", {}), tasks)
    max_steps = _int(data.get("max_steps", DEFAULT_MAX_STEPS), "max_steps", 1, lim.MAX_STEPS)
    expected = _str(data["expected"], "expected")
    if not _CHECK_NAME.match(expected):
        raise _Bad("expected", f"expected \"clean\" or a check name, found {expected!r}")
    if expected not in (CLEAN, BUDGET) and expected not in CHECKS:
        raise _Bad("expected", f"unknown check {expected!r} (`vmfuzz invariants` lists them)")
    sha = data.get("trace_sha256")
    if sha is not None and not (isinstance(sha, str) and _SHA256.match(sha)):
        raise _Bad("trace_sha256", "expected 64 lowercase hex digits (or leave it out)")
    steps = data.get("steps")
    if steps is not None:
        _int(steps, "steps", 0)
    violation = data.get("violation")
    if violation is not None:
        _obj(violation, "violation", VIOLATION_FIELDS)
    found = data.get("found")
    if found is not None:
        _obj(found, "found", VIOLATION_FIELDS, ("check",))
        _str(found["check"], "found.check")
        if expected != CLEAN:
            raise _Bad("found", "a finding's case expects \"clean\" (what the fix gives), "
                                f"not {expected!r}")
    model = data.get("model")
    if model is not None:
        _obj(model, "model", ("version", "digest"), ("version", "digest"))
        _str(model["version"], "model.version")
        if not (isinstance(model["digest"], str) and _DIGEST.match(model["digest"])):
            raise _Bad("model.digest", "expected lowercase hex digits")
    description = _str(data.get("description", ""), "description")
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict):
        raise _Bad("metadata", f"expected an object, found {_type_name(metadata)}")
    case = Case(config, tasks, schedule, max_steps)
    return CorpusCase(case, expected, explicit, sha, steps, violation, description, metadata, path,
                      plugins, found=found, anchors=anchors, model=model)


def _plugins(v: Any, path: Path, changed_ok: bool = False) -> tuple[PluginRef, ...]:
    """The case's plugins, each loaded as its code was when the case was saved (a file found
    relative to the case's folder, then to the current one)."""
    refs = []
    for i, item in enumerate(_list(v, "plugins")):
        d = _obj(item, f"plugins[{i}]", ("name", "sha256"), ("name", "sha256"))
        name = _str(d["name"], f"plugins[{i}].name")
        sha = d["sha256"]
        if not (isinstance(sha, str) and _SHA256.match(sha)):
            raise _Bad(f"plugins[{i}].sha256", "expected 64 lowercase hex digits")
        refs.append(PluginRef(name, sha))
    try:
        require(refs, path.parent, changed_ok=changed_ok)
    except PluginError as e:
        raise _Bad("plugins", str(e)) from None
    return tuple(refs)


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _Duplicate(k)
        out[k] = v
    return out


class _TooLong(ValueError):
    pass


def _parse_int(text: str) -> int:
    """JSON integers, refused beyond :data:`_limits.MAX_INT_DIGITS` digits before converting
    (a long one costs quadratic time, and Python refuses 4,300 digits with a traceback)."""
    if len(text.lstrip("-")) > lim.MAX_INT_DIGITS:
        raise _TooLong(len(text.lstrip("-")))
    return int(text)


def _read(p: Path) -> bytes:
    """The bytes of case file ``p``: a regular file of at most ``MAX_FILE_BYTES``, else
    :class:`CorpusError`.  A FIFO or a device is refused before it is opened (a FIFO would
    block, ``/dev/zero`` would never end); the opened file is checked again (no race)."""
    try:
        st = p.stat()
    except FileNotFoundError:
        if p.is_symlink():
            raise CorpusError(p, f"dangling symlink (to {os.readlink(p)}, which does not exist)"
                              ) from None
        raise CorpusError(p, "no such file") from None
    except OSError as e:
        raise CorpusError(p, f"cannot read: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise CorpusError(p, "is a directory, not a case file")
    if not stat.S_ISREG(st.st_mode):
        raise CorpusError(p, f"{kind_of(st.st_mode)}, not a regular file: only regular files "
                             "are read as cases")
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise CorpusError(p, f"cannot read: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise CorpusError(p, f"{kind_of(st.st_mode)}, not a regular file")
        if st.st_size > lim.MAX_FILE_BYTES:
            raise CorpusError(p, f"file of {st.st_size} bytes: case files are at most "
                                 f"{lim.MAX_FILE_BYTES} bytes")
        data = f.read(lim.MAX_FILE_BYTES + 1)
    if len(data) > lim.MAX_FILE_BYTES:  # it grew while being read
        raise CorpusError(p, f"case files are at most {lim.MAX_FILE_BYTES} bytes")
    return data


def _lone_surrogate(data: Any) -> str | None:
    """The path of the first string (key or value) in decoded JSON that is not valid Unicode
    (a lone surrogate escape such as ``"\\ud800"``: it cannot be printed or written), or None."""
    todo: list[tuple[str, Any]] = [("", data)]
    while todo:
        where, v = todo.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return where or "the file"
        elif isinstance(v, dict):
            for k, x in v.items():
                sub = f"{where}.{k}" if where else str(k)
                todo.append((where or "the file", k))
                todo.append((sub, x))
        elif isinstance(v, list):
            todo.extend((f"{where}[{i}]", x) for i, x in enumerate(v))
    return None


def load(path: str | os.PathLike[str]) -> CorpusCase:
    """Read and validate one case file; :class:`CorpusError` (one line) if it is unusable.

    Only a regular file within the caps of :mod:`vmfuzz._limits` is read (docs/corpus.md)."""
    p = Path(path)
    raw = _read(p)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CorpusError(p, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not text.strip():
        raise CorpusError(p, "empty file")
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_int=_parse_int)
    except _Duplicate as e:
        dup = e.args[0]
        raise CorpusError(p, f"malformed JSON: field {dup!r} given twice in one object") from None
    except _TooLong as e:
        raise CorpusError(p, f"an integer of {e.args[0]} digits: integers in a case have at "
                             f"most {lim.MAX_INT_DIGITS}") from None
    except json.JSONDecodeError as e:
        start = text.lstrip("\ufeff \t\r\n")
        if e.pos == len(text) - len(start) and start[:1] not in ('{', '[', '"'):
            first = start.splitlines()[0][:40] if start else ""
            raise CorpusError(p, f"not JSON (a case is one JSON object, {{...}}): the file "
                                 f"starts with {first!r}") from None
        end = text.rstrip()
        truncated = " (truncated?)" if e.pos >= len(end) or end[-1] not in "}]" else ""
        raise CorpusError(
            p, f"malformed JSON{truncated}: {e.msg} (line {e.lineno}, column {e.colno})"
        ) from None
    except RecursionError:
        raise CorpusError(p, "malformed JSON: nested too deeply") from None
    bad = _lone_surrogate(data)
    if bad is not None:
        raise CorpusError(p, f"{bad}: a string holds a lone surrogate (\\ud800-\\udfff "
                             "escape): not valid Unicode")
    return from_json(data, p)


def case_files(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[CorpusError]]:
    """The case files named by ``paths`` (folders: every ``*.json`` below, sorted).

    Problems come back as errors, so one bad argument never stops the others: a path that
    does not exist, a folder with no case file, and the entries below a folder that are named
    like cases but cannot be read as one (``*.JSON``, dangling symlinks, FIFOs and devices).
    A file named on its own is returned whatever its name; :func:`load` judges it.
    """
    files: list[Path] = []
    errors: list[CorpusError] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found, reported = scan_folder(p)
            files.extend(found)
            errors.extend(CorpusError(f, why) for f, why in reported)
            if not found and not reported:
                errors.append(CorpusError(p, "no case files (*.json) in this folder"))
        elif p.exists() or p.is_symlink():
            files.append(p)
        else:
            errors.append(CorpusError(p, "no such file or directory"))
    return files, errors


# ======================================================================= case -> JSON
def _schedule_json(cc: CorpusCase) -> dict[str, Any]:
    if cc.explicit is not None:
        return {"explicit": list(cc.explicit)}
    s = cc.case.schedule
    if s.kind == "decisions":
        if cc.anchors is None:
            return {"decisions": list(s.decisions)}
        return {"decisions": list(s.decisions), "anchors": [a.to_json() for a in cc.anchors]}
    if s.kind == "preemptions":
        return {"preemptions": [list(p) for p in s.preemptions]}
    if s.kind == "pct":
        return {"pct": {"seed": s.seed, "depth": s.depth, "k": s.k}}
    if s.kind == "random":
        return {"random": {"seed": s.seed}}
    if s.kind == "none":
        return {}
    raise ValueError(f"schedule kind {s.kind!r} cannot be stored")


def to_json(cc: CorpusCase) -> dict[str, Any]:
    """The JSON object for ``cc`` (the inverse of :func:`from_json`)."""
    out: dict[str, Any] = {"format": FORMAT, "version": VERSION}
    if cc.description:
        out["description"] = cc.description
    if cc.model is not None:
        out["model"] = dict(cc.model)
    if cc.plugins:
        out["plugins"] = [r.to_json() for r in cc.plugins]
    out["config"] = cc.case.config.to_json()
    tasks = []
    for t in cc.case.tasks:
        td: dict[str, Any] = {"name": t.name}
        if t.start:
            td["start"] = t.start
        td["ops"] = [{"op": c.op, "args": dict(c.args)} if c.args else {"op": c.op} for c in t.ops]
        tasks.append(td)
    out["tasks"] = tasks
    out["schedule"] = _schedule_json(cc)
    out["max_steps"] = cc.case.max_steps
    out["expected"] = cc.expected
    if cc.found is not None:
        out["found"] = cc.found
    if cc.trace_sha256 is not None:
        out["trace_sha256"] = cc.trace_sha256
    if cc.steps is not None:
        out["steps"] = cc.steps
    if cc.violation is not None:
        out["violation"] = cc.violation
    if cc.metadata:
        out["metadata"] = cc.metadata
    return out


def dumps(cc: CorpusCase, width: int = 100) -> str:
    """``cc`` as readable JSON text: short lists and objects on one line, long ones wrapped."""
    return _fmt(to_json(cc), 0, width, width) + "\n"


def _fmt(v: Any, indent: int, room: int, width: int) -> str:
    """``v`` at ``indent``; ``room`` is what is left of the current line where it starts."""
    compact = json.dumps(v, ensure_ascii=False, separators=(", ", ": "))
    if not isinstance(v, (dict, list)) or not v or len(compact) <= room:
        return compact
    pad = " " * (indent + 2)
    close = "\n" + " " * indent + ("]" if isinstance(v, list) else "}")
    if isinstance(v, list):
        if all(isinstance(x, int) for x in v):
            # A long list of numbers (decisions): fill lines instead of one item per line.
            lines: list[str] = []
            cur = ""
            for x in v:
                item = json.dumps(x, ensure_ascii=False)
                if cur and len(pad) + len(cur) + len(item) + 1 > width:
                    lines.append(cur.rstrip(", "))
                    cur = ""
                cur += item + ", "
            lines.append(cur.rstrip(", "))
            return "[\n" + ",\n".join(pad + line for line in lines) + close
        inner = [pad + _fmt(x, indent + 2, width - len(pad) - 1, width) for x in v]
        return "[\n" + ",\n".join(inner) + close
    parts = []
    for k, x in v.items():
        key = json.dumps(k, ensure_ascii=False) + ": "
        parts.append(pad + key + _fmt(x, indent + 2, width - len(pad) - len(key) - 1, width))
    return "{\n" + ",\n".join(parts) + close


def write_case(cc: CorpusCase, path: str | os.PathLike[str]) -> Path:
    """Write ``cc`` to ``path`` atomically, with the user's umask (:mod:`vmfuzz._write`).

    :class:`CorpusWriteError` (an ``OSError`` holding the case's text) when the file cannot
    be written: a full disk, a read-only folder, a file where the folder should be.
    """
    p = Path(path)
    text = dumps(cc)
    try:
        write_text(p, text)
    except OSError as e:
        raise CorpusWriteError(p, text, e) from e
    return p


class CorpusWriteError(OSError):
    """A case file that could not be written; ``text`` is what it would have held."""

    def __init__(self, path: Path, text: str, cause: OSError) -> None:
        super().__init__(cause.errno, f"{path}: cannot write: {cause.strerror or cause}")
        self.path = path
        self.text = text

    def __str__(self) -> str:
        return str(self.strerror)


# ======================================================================= saving failures
def signature(sched: Scheduler, outcome: Outcome) -> str:
    """The failure's identity: check name plus the labels every live task stood at.

    Two failures with the same check and the same racing positions are the same failure for
    naming and deduplication, whatever the task names, sizes or schedule that led there.
    """
    labels = {t.label for t in sched.tasks if not t.done and t.label != "start"}
    v = outcome.violation
    if v is not None and v.label:
        labels.add(v.label)
    return "|".join([outcome_label(outcome), *sorted(labels)])


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", s).strip("_") or "x"


def case_name(sched: Scheduler, outcome: Outcome) -> str:
    """Stable file stem for a failure: ``<check>-<function>-<hash of the signature>``."""
    v = outcome.violation
    where = (v.label or "").split(":", 1)[0] if v is not None else ""
    digest = hashlib.sha256(signature(sched, outcome).encode()).hexdigest()[:8]
    parts = [_slug(outcome_label(outcome))]
    if where:
        parts.append(_slug(where))
    parts.append(digest)
    return "-".join(parts)


def save_failure(
    case: Case,
    observed: Run | Outcome | Violation,
    corpus_dir: str | os.PathLike[str] = DEFAULT_CORPUS_DIR,
    metadata: Mapping[str, Any] | None = None,
    *,
    description: str = "",
) -> Path:
    """Save a (shrunk) failure to the corpus and return its path; prints nothing.

    ``observed`` is the :class:`~vmfuzz.case.Run` that failed (its recorded decisions become
    the schedule, whatever source produced them), or just its :class:`~vmfuzz.Outcome` or
    :class:`~vmfuzz.Violation` (then ``case.schedule`` must reproduce it).  The failure is
    re-run from scratch, with a fresh lockdep graph, before anything is written, so every saved
    case replays on its own: if the re-run does not show the same check (or, for a traced Run,
    the same trace), :class:`NotReproducible` is raised and nothing is written.  A clean or
    budget outcome raises ``ValueError``.

    ``metadata`` is stored with the case; by convention ``found_by`` (e.g. ``"vmfuzz fuzz
    --scheduler pct"``), ``seed`` and ``created`` (ISO time, default now).  The file is
    ``corpus_dir/<check>-<function>-<hash>.json``, named after the failure's
    :func:`signature`; when that file already holds the same failure, the shorter run (in
    scheduler steps) is kept, so saving a failure twice never adds a file.  A file in the way
    that cannot be read is never overwritten (the name gets ``-2``, ``-3`` ...).
    """
    traced = False
    if isinstance(observed, Run):
        outcome = observed.outcome
        stored = Schedule("decisions", decisions=tuple(observed.sched.decisions))
        traced = observed.sched.record_trace and bool(observed.sched.trace)
    elif isinstance(observed, Violation):
        outcome = Outcome("violation", 0, observed)
        stored = case.schedule
    else:
        outcome = observed
        stored = case.schedule
    if outcome.kind == "clean":
        raise ValueError("save_failure: the outcome is clean, there is no failure to save")
    if outcome.kind == "budget":
        raise ValueError("save_failure: a step budget overrun is not a failure")
    want = outcome_label(outcome)
    replay_case = attrs.evolve(case, schedule=stored)
    cc = CorpusCase(replay_case, want)
    anchoring = Anchoring(cc.source())
    try:
        run = execute(replay_case, anchoring)
    except ScheduleDiverged as e:
        raise NotReproducible(f"the recorded schedule does not replay: {e}") from None
    got = outcome_label(run.outcome)
    if got != want:
        raise NotReproducible(
            f"re-running the case from scratch gives {got}, not {want} "
            "(state carried over from earlier runs, e.g. a campaign-wide lockdep graph?)"
        )
    if traced and run.outcome.trace_sha256 != outcome.trace_sha256:
        raise NotReproducible(
            "re-running the case gives a different trace: the run is not deterministic"
        )
    if stored.kind != "decisions":
        # Store the exact record whatever produced the run: replay is then independent of
        # how any schedule source draws its choices.
        recorded = Schedule("decisions", decisions=tuple(run.decisions))
        replay_case = attrs.evolve(case, schedule=recorded)
    finding = not case.config.bugs  # a failure of the kernel under test: red until fixed
    explicit = _explicit_for(replay_case, run) if finding and run.sched.trace else None
    if explicit is not None:
        replay_case = attrs.evolve(replay_case, schedule=Schedule("none"))
    sig = signature(run.sched, run.outcome)
    v = run.outcome.violation
    run.explain()  # the file keeps the events behind the violation (v.causes)
    meta: dict[str, Any] = dict(metadata or {})
    meta.setdefault(
        "created", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    )
    meta["signature"] = sig
    new = CorpusCase(
        replay_case,
        CLEAN if finding else want,
        explicit,
        run.outcome.trace_sha256,
        run.outcome.steps,
        v.to_json() if v is not None and not finding else None,
        description,
        meta,
        plugins=refs_for(replay_case, want, corpus_dir),  # the plugins whose names it uses
        found=v.to_json() if v is not None and finding else None,
        anchors=tuple(anchoring.anchors) if explicit is None else None,
        model=model_identity(),
    )
    directory = Path(corpus_dir)
    base = case_name(run.sched, run.outcome)
    n = 1
    while True:
        path = directory / (f"{base}.json" if n == 1 else f"{base}-{n}.json")
        n += 1
        if not path.exists():
            return write_case(new, path)
        try:
            old = load(path)
        except CorpusError:
            continue  # never overwrite a file we cannot read
        if old.metadata.get("signature") != sig:
            continue
        if old.steps is not None and old.steps <= run.outcome.steps:
            return path
        return write_case(new, path)


def _explicit_for(case: Case, run: Run) -> tuple[str, ...] | None:
    """``run`` as explicit steps if they replay it exactly (same outcome and trace), else None.

    A finding is kept in this form: a fix that makes one side wait on a lock only serialises
    the steps, where recorded decisions would no longer apply."""
    steps = tuple(explicit_from_trace(run.sched.trace))
    try:
        again = execute(case, Explicit(steps))
    except ScheduleDiverged:
        return None
    same = outcome_label(again.outcome) == outcome_label(run.outcome)
    return steps if same and again.outcome.trace_sha256 == run.outcome.trace_sha256 else None


# ======================================================================= replay
_NO_LONGER = "the recorded schedule no longer applies: "


class _Watch:
    """Wraps a schedule source to keep hold of the scheduler (for the trace after a divergence)."""

    def __init__(self, inner: ScheduleSource) -> None:
        self.inner = inner
        self._sched: weakref.ref[Scheduler] | None = None

    @property
    def sched(self) -> Scheduler | None:
        """The scheduler that last asked, while something else keeps it (the run, or the
        traceback of its crash): held weakly, as the scheduler holds this source and a
        reference back would leave every run to the cyclic garbage collector."""
        return None if self._sched is None else self._sched()

    def choose(self, runnable: list[Task], default: int, sched: Scheduler) -> int:
        ref = self._sched
        if ref is None or ref() is not sched:
            self._sched = weakref.ref(sched)
        return self.inner.choose(runnable, default, sched)

    def unfollowed(self, sched: Scheduler) -> str | None:
        """After a run that ended without a violation: the part of the schedule left unused
        (or, run leniently, the first point where it could not be followed)."""
        inner = self.inner
        if isinstance(inner, Explicit):
            return inner.finish(sched)
        if isinstance(inner, Replay):
            if inner.diverged is not None:
                return inner.diverged
            if not inner.exhausted:
                return (
                    f"the run ended after {inner.pos} of {len(inner.decisions)} recorded "
                    "decisions"
                )
        return None

    def broken(self, sched: Scheduler) -> str | None:
        """After a run that a check stopped: a step of the schedule that the run already
        failed to follow (an explicit step whose task ended without reaching its label, a
        recorded switch that happened elsewhere), or None."""
        inner = self.inner
        if isinstance(inner, Explicit):
            return inner.failed_so_far(sched)
        if isinstance(inner, Replay):
            return inner.diverged
        return None


@attrs.frozen
class Attempt:
    """One run of a case: the outcome label, a one-line message, the scheduler and the run."""

    observed: str
    message: str
    sched: Scheduler | None
    run: Run | None

    @property
    def trace_sha256(self) -> str | None:
        if self.run is not None:
            return self.run.outcome.trace_sha256
        return self.sched.trace_sha256() if self.sched is not None else None

    @property
    def steps(self) -> int:
        return self.sched.step_no if self.sched is not None else 0


def attempt(cc: CorpusCase, case: Case | None = None, *, strict: bool = True) -> Attempt:
    """Run ``cc`` (or ``case`` under ``cc``'s schedule) once, never raising.

    A strict run reports ``diverged`` when the schedule cannot be followed, including when the
    run ends cleanly with recorded decisions or explicit steps left over.  A crash of the model
    (an exception that is not a Violation) is the outcome ``error``.
    """
    src = _Watch(cc.source(strict=strict))
    try:
        run = execute(case or cc.case, src)
    except ScheduleDiverged as e:
        return Attempt(DIVERGED, f"{_NO_LONGER}{e}", src.sched, None)
    except Exception as e:  # a model crash is reported as an outcome, never stops a replay
        return Attempt(ERROR, f"{type(e).__name__}: {e}", src.sched, None)
    out = run.outcome
    label = outcome_label(out)
    if out.violation is not None:
        broken = src.broken(run.sched)
        if strict and broken:  # the check fired on another interleaving than the recorded one
            return Attempt(DIVERGED, f"{_NO_LONGER}{broken}", run.sched, run)
        return Attempt(label, out.violation.describe(), run.sched, run)
    leftover = src.unfollowed(run.sched)
    if strict and leftover:
        return Attempt(
            DIVERGED, f"{_NO_LONGER}{leftover}", run.sched, run
        )
    msg = f"{label} after {out.steps} steps"
    if leftover:
        msg += f" ({leftover})"
    return Attempt(label, msg, run.sched, run)


@attrs.frozen
class FixCheck:
    """The recorded schedule replayed with every bug switch off.

    ``status``: ``holds`` (the fixed kernel stays clean), ``fails`` (some check fires:
    ``observed`` names it), ``budget`` or ``error``.  ``schedule_applies`` is false when the
    recorded schedule cannot be followed in the fixed kernel (a recorded task is not runnable
    where the record says, an explicit step cannot be reached, or the run ends with recorded
    decisions left); ``divergence`` says where, and the status is then that of the run that
    follows the schedule as far as it goes and continues with the default policy.
    """

    status: str
    observed: str
    message: str
    schedule_applies: bool = True
    divergence: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "observed": self.observed,
            "message": self.message,
            "schedule_applies": self.schedule_applies,
            "divergence": self.divergence,
        }

    def describe(self) -> str:
        if self.status == "holds":
            text = "fix holds on this schedule"
        elif self.status == "fails":
            text = f"FIX DOES NOT HOLD on this schedule: with the bugs off, {self.message}"
        else:
            text = f"fix check: {self.observed}: {self.message}"
        if not self.schedule_applies:
            text += (
                f" (but the recorded schedule no longer applies with the bugs off: "
                f"{self.divergence}; it was followed as far as it goes)"
            )
        return text


def fix_check(cc: CorpusCase) -> FixCheck | None:
    """Replay a bug case with its bug switches off; None for a case that is not a bug case."""
    if not cc.is_bug_case:
        return None
    fixed = attrs.evolve(cc.case, config=attrs.evolve(cc.case.config, bugs=frozenset()))
    att = attempt(cc, fixed, strict=True)
    divergence = None
    if att.observed == DIVERGED:
        divergence = att.message.removeprefix(_NO_LONGER)
        att = attempt(cc, fixed, strict=False)
    status = {CLEAN: "holds", BUDGET: "budget", ERROR: "error"}.get(att.observed, "fails")
    return FixCheck(status, att.observed, att.message, divergence is None, divergence)


@attrs.frozen
class ReplayResult:
    """A replayed case: did it show its recorded outcome, and with what trace.

    For a finding (:attr:`CorpusCase.is_finding`) whose schedule no longer applies,
    ``lenient`` is the run that follows it as far as it goes, then the default policy: it
    tells a finding that still fails from one that cannot be told (never read as fixed)."""

    case: CorpusCase
    attempt: Attempt
    fix: FixCheck | None = None
    lenient: Attempt | None = None

    @property
    def verdict(self) -> str | None:
        """A finding's state: ``fixed`` (clean now: the case passes), ``still fails`` (a check
        fires, on the recorded schedule or, when that no longer applies, as far as it goes),
        ``diverged`` (the schedule no longer applies and, followed as far as it goes, the run
        does not fail: cannot tell), ``budget`` or ``error``.  None for any other case."""
        if not self.case.is_finding:
            return None
        obs = self.observed
        if obs == DIVERGED and self.lenient is not None and self.lenient.run is not None \
                and self.lenient.run.outcome.violation is not None:
            return STILL_FAILS
        if obs == CLEAN:
            return FIXED
        if obs in (DIVERGED, BUDGET, ERROR):
            return obs
        return STILL_FAILS

    @property
    def observed(self) -> str:
        return self.attempt.observed

    @property
    def ok(self) -> bool:
        return self.attempt.observed == self.case.expected

    @property
    def trace_sha256(self) -> str | None:
        return self.attempt.trace_sha256

    @property
    def trace_matches(self) -> bool | None:
        """None when the case records no trace hash (a hand-written case)."""
        if self.case.trace_sha256 is None:
            return None
        return self.trace_sha256 == self.case.trace_sha256

    @property
    def divergence(self) -> str | None:
        """Where the case's own schedule stopped applying (the first diverging decision or
        step, with its labels), or None when it was followed."""
        if self.observed != DIVERGED:
            return None
        return self.attempt.message.removeprefix(_NO_LONGER)

    @property
    def differs(self) -> bool:
        """Something differs from the record: the outcome, the schedule or the trace."""
        return not self.ok or self.trace_matches is False or self.observed == DIVERGED

    def model_note(self) -> str:
        """``model changed since the case was saved (...)`` when the replay differs and the
        case's recorded model is not this one; else ``""``."""
        cc = self.case
        if not self.differs or not cc.model_changed or cc.model is None:
            return ""
        return (f"model changed since the case was saved (vmfuzz {cc.model.get('version')} "
                f"model {cc.model.get('digest')}, now {model_digest()}; "
                "'vmfuzz replay --rerecord' re-records a case that still shows its outcome)")

    def summary(self) -> str:
        """One line for people."""
        cc = self.case
        note = self.model_note()
        if cc.is_finding:
            line = self._finding_summary()
            return f"{line}; {note}" if note else line
        if self.ok:
            line = f"{cc.expected} as recorded"
            if self.trace_matches is False:
                line += " (but the trace differs from the recorded one"
                line += ")" if note else ": the model changed?)"
        else:
            line = f"expected {cc.expected}, observed {self.observed}: {self.attempt.message}"
        if note:
            line += f"; {note}"
        if self.fix is not None:
            line += f"; {self.fix.describe()}"
        return line

    def _finding_summary(self) -> str:
        found = self.case.found or {}
        was = f"found as {found.get('check')}" + (
            f" at step {found['step']}" if found.get("step") is not None else "")
        verdict = self.verdict
        att = self.attempt
        edited = changed(self.case.plugins)
        if edited:
            was += f"; plugin {', '.join(edited)} changed since"
        if verdict == FIXED:
            return f"fixed: clean after {att.steps} steps ({was})"
        if verdict == STILL_FAILS:
            diverged = ""
            if self.observed == DIVERGED and self.lenient is not None:
                diverged = (f" ({att.message}; it fails with the schedule followed as far "
                            "as it goes, then the default policy)")
                att = self.lenient
            v = att.run.outcome.violation if att.run is not None else None
            assert v is not None
            also = "" if v.check == found.get("check") else f"; {was}"
            return f"still fails (check {v.check} at step {v.step}{also}): {v.message}{diverged}"
        if verdict == DIVERGED:
            how = self.lenient.message if self.lenient is not None else "unknown"
            return (f"cannot tell whether fixed: {att.message}; followed as far as it goes, "
                    f"then the default policy: {how} ({was})")
        if verdict == BUDGET:
            return f"not fixed: the step budget ran out after {att.steps} steps ({was})"
        return f"not fixed: the model crashed: {att.message} ({was})"

    def to_json(self) -> dict[str, Any]:
        out = {
            "path": os.fspath(self.case.path) if self.case.path else None,
            "name": self.case.name,
            "ok": self.ok,
            "expected": self.case.expected,
            "observed": self.observed,
            "message": self.attempt.message,
            "steps": self.attempt.steps,
            "trace_sha256": self.trace_sha256,
            "recorded_trace_sha256": self.case.trace_sha256,
            "trace_matches": self.trace_matches,
            "fix_check": self.fix.to_json() if self.fix is not None else None,
            "divergence": self.divergence,
            "anchored": self.case.anchors is not None,
            "model": self.case.model,
            "model_digest": model_digest(),
            "model_changed": self.case.model_changed,
        }
        run = self.attempt.run
        if run is not None and run.outcome.violation is not None:
            run.explain()  # the violation with the events behind it
            out["violation"] = run.outcome.violation.to_json()
        if self.case.is_finding:  # only a finding's line has these (others read as before)
            out["verdict"] = self.verdict
            out["found"] = self.case.found
            out["summary"] = self.summary()
        return out


def replay(cc: CorpusCase, *, check_fix: bool = True) -> ReplayResult:
    """Replay ``cc`` and, for a bug case (unless ``check_fix`` is false), its fix check."""
    first = attempt(cc)
    lenient = None
    if cc.is_finding and first.observed == DIVERGED:
        lenient = attempt(cc, strict=False)
    return ReplayResult(cc, first, fix_check(cc) if check_fix else None, lenient)


# ======================================================================= re-recording
def _follows(src: ScheduleSource, sched: Scheduler) -> bool:
    """The run followed the case's race as recorded: every anchor's switch where the tasks
    stood where it says, or every explicit step (up to where a check stopped the run).  Where
    it cannot be told (decisions without anchors, seeded sources), :func:`rerecord` asks for
    the check to fire at its recorded label instead."""
    if isinstance(src, FollowAnchors):
        return src.pos == len(src.anchors)
    if isinstance(src, Explicit):
        return src.failed_so_far(sched) is None
    return False


# What rerecord() did to a case.
UNCHANGED = "unchanged"  # replays its record exactly: not rewritten
UPGRADED = "upgraded"  # same trace; the model's identity (or its new digest) and anchors recorded
RERECORDED = "rerecorded"  # same outcome on another trace: trace, steps, schedule rewritten
REFUSED = "refused"  # does not show its recorded outcome: left as it is


@attrs.frozen
class Rerecord:
    """What :func:`rerecord` did to one case (``action``) and why, in one line (``message``)."""

    case: CorpusCase
    action: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"path": os.fspath(self.case.path) if self.case.path else None,
                "name": self.case.name, "action": self.action, "message": self.message,
                "ok": self.action != REFUSED}


def rerecord(cc: CorpusCase, *, write: bool = True) -> Rerecord:
    """Record ``cc`` anew on the current model, if it still shows its recorded outcome.

    For after a deliberate model change (a new yield point, a renamed label): the case is run
    on its own schedule (recorded decisions are followed as far as they go when their anchors
    no longer hold) and rewritten only when the run shows the recorded outcome (a finding: the
    check it was found as); then its trace hash, steps, violation, recorded decisions and
    anchors, and the model's identity are this run's, and everything else (description,
    metadata, ``found``, plugins, an explicit schedule's steps) is kept.  The run must follow
    the recorded race (its anchors or explicit steps) or, where that cannot be told, show the
    check at its recorded label.  A case that replays
    its record exactly is left alone (only the model's identity and anchors are added when
    missing).  Nothing is written when ``write`` is false.
    """
    first = replay(cc, check_fix=False)
    if cc.is_finding and first.verdict == FIXED:
        return Rerecord(cc, UNCHANGED, "fixed: left as it is (its record is the failing run; "
                                       "commit it with the fix)")
    want = cc.found.get("check") if cc.is_finding and cc.found else cc.expected
    decisions = cc.explicit is None and cc.case.schedule.kind == "decisions"
    if first.observed == want and first.trace_matches is not False:
        missing = [what for what, gone in (("the model's identity", cc.model is None),
                                           ("this model's digest", bool(cc.model_changed)),
                                           ("anchors", decisions and cc.anchors is None))
                   if gone]
        if first.trace_matches is None or not missing:
            how = "no trace recorded" if first.trace_matches is None else "same trace"
            return Rerecord(cc, UNCHANGED, f"{want} as recorded ({how})")
        why = f"same trace; adds {' and '.join(missing)}"
    elif cc.explicit is not None and first.observed == DIVERGED:
        return Rerecord(cc, REFUSED, f"{first.attempt.message}: rewrite the explicit steps "
                                     "by hand (vmfuzz show CASE --full lists the labels)")
    else:
        why = (f"schedule diverged ({first.divergence})" if first.observed == DIVERGED
               else "trace differed")
    old = (cc.found if cc.is_finding else cc.violation) or {}
    # Recorded decisions: first the anchors alone (each switch where the tasks stand where
    # it was recorded), then the decisions followed as far as they go.
    sources: list[ScheduleSource] = []
    if decisions and cc.anchors is not None:
        sources.append(FollowAnchors(cc.anchors))
    sources.append(Replay(cc.case.schedule.decisions, strict=False) if decisions
                   else cc.source(strict=False))
    tried: list[str] = []
    for src in sources:
        anchoring = Anchoring(src)
        try:
            run = execute(cc.case, anchoring)
        except Exception as e:  # a model crash: the case is left alone
            return Rerecord(cc, REFUSED, f"the model crashed: {type(e).__name__}: {e}")
        v = run.outcome.violation
        got = outcome_label(run.outcome)
        if got == want and (v is None or _follows(src, run.sched) or not old.get("label")
                            or old.get("label") == v.label):
            break
        tried.append(f"{got} at step {v.step} ({v.label})" if v is not None else got)
    else:
        if tried[-1].startswith(f"{want} "):
            # Same check, another place: the decisions now run another race.
            return Rerecord(cc, REFUSED, f"{want} now fires at another label than the recorded "
                                         f"{old.get('label')} ({tried[-1]}): {why}; left as it "
                                         "is (re-save it from an explicit schedule of the race)")
        return Rerecord(cc, REFUSED, f"shows {' or '.join(dict.fromkeys(tried))}, not {want}: "
                                     f"{why}; left as it is")
    new = attrs.evolve(
        cc,
        case=attrs.evolve(cc.case, schedule=Schedule("decisions", decisions=tuple(run.decisions)))
        if decisions else cc.case,
        trace_sha256=run.outcome.trace_sha256,
        steps=run.outcome.steps,
        violation=v.to_json() if v is not None and not cc.is_finding else cc.violation,
        anchors=tuple(anchoring.anchors) if decisions else None,
        model=model_identity(),
    )
    again = replay(new, check_fix=False)
    if (not again.ok and not (cc.is_finding and again.verdict == STILL_FAILS)) \
            or again.trace_matches is not True:
        return Rerecord(cc, REFUSED, f"the re-recorded case does not replay as recorded "
                                     f"({again.summary()}); left as it is")
    steps = f"{cc.steps} -> {run.outcome.steps} steps" if cc.steps is not None else \
        f"{run.outcome.steps} steps"
    if write and cc.path is not None:
        write_case(new, cc.path)
    action = UPGRADED if why.startswith("same trace") else RERECORDED
    how = ""
    if action == RERECORDED and isinstance(src, FollowAnchors):
        how = "; on its anchors (the same switches at the same labels)"
    elif action == RERECORDED and isinstance(src, Replay) and cc.anchors is not None:
        how = ("; on its decisions followed as far as they go (the switches moved; the check "
               "fires at its recorded label)")
    return Rerecord(new, action, f"{want} as recorded; {why}; {steps}{how}")
