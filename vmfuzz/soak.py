"""Soak runs: campaigns on every core, for hours, that survive interruption and lose nothing.

:func:`run_soak` starts N worker processes (``spawn``; one per core by default).  Each worker
loops over campaigns (:func:`vmfuzz.campaign.fuzz`) until the run's deadline.  Campaign ``i``
of worker slot ``w`` has the seed ``w * SEED_STRIDE + i``, so no two campaigns of a run share a
seed; the slot's cursor is written to the state directory *before* a campaign starts, so a
restarted worker or a ``--resume`` never repeats one.  Campaigns rotate through the schedulers
(preemption lists, PCT, random walk) and the :data:`PROFILES`; a campaign is reproducible from
its recorded (seed, scheduler, profile): see :func:`rerun_campaign`.

A failure is shrunk by the campaign in the worker that found it, saved to the corpus with
:func:`vmfuzz.corpus.save_failure` (atomic; named after the failure's signature, so the same
failure found by several workers is one file), its timeline drawn, and a finding record written
(atomically) to ``findings/`` before the parent hears of it: killing the whole run loses no
finding already reported.  A worker that dies (an exception outside the model, a signal, an
``os._exit``) is restarted, and the crash is itself a finding.

One chunk of examples in ``SAMPLE_EVERY`` (a campaign runs its examples in chunks, see
:func:`vmfuzz.campaign.fuzz`) runs under coverage.py, measuring line and branch coverage of the
``vmfuzz.kernel`` package; the parent merges the workers' data files now and then.  Coverage
thus costs about a tenth of the throughput instead of half of it, and samples every kind of
campaign.

The state directory::

    run.json              what is fuzzed (bugs, plugins, ops, corpus) and the sessions so far
    stats.json            totals, per-op / per-label counts, coverage, time series (atomic)
    workers/slot<N>.json  the slot's seed cursor and its campaign in flight (atomic)
    workers/slot<N>.log   one JSON line per finished campaign
    workers/slot<N>.stack the worker's Python stack, each time it gets SIGUSR1
    findings/*.json       one record per finding, written when it is found (atomic)
    timelines/*.txt       the race timeline of each saved finding
    coverage/             coverage.py data of the sampled chunks, one file per process
    coverage.json         the merged coverage (coverage.py's JSON report)
    summary.txt           the morning summary;  report.html: the same with plots

Nothing here knows about a specific kernel path or bug.
"""

from __future__ import annotations

import contextlib
import datetime
import faulthandler
import fcntl
import hashlib
import importlib
import importlib.util
import json
import multiprocessing
import os
import re
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from pathlib import Path
from types import FrameType
from typing import Any

import attrs

FORMAT = "vmfuzz-soak"
VERSION = 1
DEFAULT_STATE_DIR = "soak-state"
SEED_STRIDE = 10_000_000  # seeds of slot w: w * SEED_STRIDE + 0, 1, 2 ...
SCHEDULERS = ("preemptions", "pct", "random")  # as vmfuzz.strategies.SCHEDULERS (no import)
SAMPLE_EVERY = 10  # one chunk of examples in this many runs under coverage.py
STATS_EVERY = 2.0  # seconds between stats.json writes
COVERAGE_EVERY = 15.0  # seconds between coverage merges
RSS_RECYCLE_MB = 2048.0  # a worker above this many MB is replaced after its campaign
# ... and after this many campaigns: each campaign's machine class stays referenced by
# Hypothesis (RuleBasedStateMachine._setup_state_per_class), ~0.1 MB a campaign.
RECYCLE_CAMPAIGNS = 200
# ... and when it has grown this much over its size after its first campaign (a long shrink
# leaves the heap large; a fresh process gives it back).
RSS_GROWTH_RECYCLE_MB = 150.0
CRASH_EXIT = 3  # exit status of a worker that reported its own crash
COVERED_PACKAGE = "vmfuzz.kernel"
_COV_WARNINGS = [
    "no-data-collected", "module-not-imported", "module-not-measured", "couldnt-parse",
    "no-ctracer", "already-imported",
]


@attrs.frozen
class Profile:
    """A campaign shape: the Hypothesis settings profile, model size factor, examples per run.

    ``default`` is exactly what ``vmfuzz fuzz --seed S --scheduler X`` runs.
    """

    name: str
    base_profile: str
    scale: int
    chunk: int


PROFILES = (
    Profile("default", "dev", 1, 50),
    Profile("long", "soak", 1, 100),
    Profile("wide", "soak", 2, 50),
)
_PROFILE_BY_NAME = {p.name: p for p in PROFILES}


def campaign_plan(
    slot: int, index: int, schedulers: tuple[str, ...] = SCHEDULERS
) -> tuple[int, str, Profile]:
    """Seed, scheduler and profile of campaign ``index`` of worker slot ``slot``.

    Schedulers rotate fastest, profiles every ``len(schedulers)`` campaigns; slots start at
    different points of the rotation so that at any time the workers run different kinds of
    campaign.
    """
    seed = slot * SEED_STRIDE + index
    turn = index + slot
    n = len(schedulers)
    return seed, schedulers[turn % n], PROFILES[(turn // n) % len(PROFILES)]


# ============================================================================ configuration
@attrs.frozen
class SoakConfig:
    """What a run fuzzes; kept in ``run.json`` so that ``--resume`` fuzzes the same thing."""

    bugs: tuple[str, ...] = ()
    plugins: tuple[str, ...] = ()
    ops: tuple[str, ...] | None = None
    corpus: str = "corpus"  # "" in a --resume request: the run's corpus
    schedulers: tuple[str, ...] = SCHEDULERS

    def to_json(self) -> dict[str, Any]:
        return {
            "bugs": list(self.bugs),
            "plugins": list(self.plugins),
            "ops": list(self.ops) if self.ops is not None else None,
            "corpus": self.corpus,
            "schedulers": list(self.schedulers),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SoakConfig:
        ops = d.get("ops")
        return cls(
            tuple(d.get("bugs", ())),
            tuple(d.get("plugins", ())),
            tuple(ops) if ops is not None else None,
            str(d.get("corpus", "corpus")),
            tuple(d.get("schedulers") or SCHEDULERS),
        )


@attrs.define
class SoakOptions:
    """One session of a soak run."""

    state_dir: Path
    duration: float
    workers: int
    config: SoakConfig
    resume: bool = False
    campaign_seconds: float | None = None  # None: from the duration (5 s ... 60 s)
    sample_every: int = SAMPLE_EVERY
    stats_every: float = STATS_EVERY
    coverage_every: float = COVERAGE_EVERY
    stop_grace: float = 600.0  # seconds to wait for in-flight shrinking when stopping
    rss_recycle_mb: float = RSS_RECYCLE_MB
    recycle_campaigns: int = RECYCLE_CAMPAIGNS

    def campaign_budget(self) -> float:
        if self.campaign_seconds is not None:
            return self.campaign_seconds
        return min(60.0, max(5.0, self.duration / 10))


class SoakError(Exception):
    """A usage problem: ``str(e)`` is one line for the user."""


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``2m``, ``8h``, ``1h30m``, ``1.5h`` or a bare number of seconds."""
    s = text.strip().lower().replace(" ", "")
    pos = 0
    total = 0.0
    while pos < len(s):
        m = _DURATION.match(s, pos)
        if m is None:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise SoakError(f"bad duration {text!r}: use e.g. 90s, 2m, 8h or 1h30m")
    if total <= 0:
        raise SoakError(f"the duration must be positive, not {text!r}")
    return total


def format_duration(seconds: float) -> str:
    """``45s``, ``2m05s``, ``8h00m``."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def load_plugins(plugins: tuple[str, ...] | list[str]) -> None:
    """Import each plugin: a module name, or a path to a ``.py`` file (registers ops, bugs ...).

    Worker processes import the same plugins before fuzzing, so whatever they register exists
    in every process.
    """
    for name in plugins:
        if name.endswith(".py") or os.sep in name:
            path = Path(name)
            modname = "vmfuzz_plugin_" + re.sub(r"\W", "_", path.stem)
            if modname in sys.modules:
                continue
            if not path.is_file():
                raise SoakError(f"plugin {name}: no such file")
            spec = importlib.util.spec_from_file_location(modname, path)
            if spec is None or spec.loader is None:
                raise SoakError(f"plugin {name}: cannot be imported")
            mod = importlib.util.module_from_spec(spec)
            sys.modules[modname] = mod
            try:
                spec.loader.exec_module(mod)
            except Exception as e:
                del sys.modules[modname]
                raise SoakError(f"plugin {name}: {type(e).__name__}: {e}") from None
        else:
            try:
                importlib.import_module(name)
            except Exception as e:
                raise SoakError(f"plugin {name}: {type(e).__name__}: {e}") from None


def validate(config: SoakConfig) -> None:
    """Import the model and the plugins; :class:`SoakError` for unknown bugs or operations."""
    import vmfuzz.kernel  # noqa: F401  (registers operations and bugs)

    load_plugins(config.plugins)
    from vmfuzz.kernel import BUGS, OPS

    unknown = [b for b in config.bugs if b not in BUGS]
    if unknown:
        known = ", ".join(sorted(BUGS)) or "(none registered)"
        raise SoakError(f"unknown bug {', '.join(unknown)}; known bugs: {known}")
    from vmfuzz.strategies import SCHEDULERS as known_schedulers

    bad_sched = [x for x in config.schedulers if x not in known_schedulers]
    if bad_sched or not config.schedulers:
        raise SoakError(
            f"unknown scheduler {', '.join(bad_sched)}; one of {', '.join(known_schedulers)}"
        )
    if not OPS:
        raise SoakError(
            "no kernel operations are registered (vmfuzz.kernel.ops.OPS is empty); "
            "load some with --plugin MODULE"
        )
    if config.ops is not None:
        bad = [o for o in config.ops if o not in OPS]
        if bad:
            raise SoakError(
                f"unknown operation {', '.join(bad)}; known: {', '.join(sorted(OPS))}"
            )


# ============================================================================ files
def write_json(path: Path, data: Any, *, fsync: bool = True) -> None:
    """Write ``data`` as JSON to ``path`` atomically (temp file in the same folder + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=False)
            f.write("\n")
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None if it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of ``path`` (a torn last line, from a kill, is skipped)."""
    out = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return out
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            out.append(item)
    return out


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (released by the kernel if the holder dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def rss_mb(pid: int) -> float | None:
    """Resident set size of process ``pid`` in MB (Linux /proc), or None."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        return None
    return None


def cpu_seconds(pid: int) -> tuple[float, float] | None:
    """Seconds process ``pid`` has spent on a CPU and waiting for one (runnable), or None.

    From /proc/PID/schedstat (Linux); a process that is on a CPU or waiting for one all the
    time is CPU-bound: on an idle machine it would keep a core busy.
    """
    try:
        with open(f"/proc/{pid}/schedstat", encoding="ascii") as f:
            run, wait = f.read().split()[:2]
        return int(run) / 1e9, int(wait) / 1e9
    except (OSError, ValueError):
        return None


def load_findings(state_dir: Path) -> list[dict[str, Any]]:
    """Every finding record of the run, oldest first."""
    records = []
    for p in sorted((state_dir / "findings").glob("*.json")):
        rec = read_json(p)
        if isinstance(rec, dict) and "signature" in rec:
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
        # The corpus keeps the shortest run of a signature: show that one's size.
        steps = (rec.get("shrunk") or {}).get("steps")
        best = (g.get("shrunk") or {}).get("steps")
        if steps is not None and (best is None or steps < best):
            g["shrunk"] = rec["shrunk"]
            g["minimal_preemptions"] = rec.get("minimal_preemptions")
            g["message"] = rec.get("message")
    return list(groups.values())


def _finding_id(elapsed: float, slot: int, seed: int, kind: str) -> str:
    return f"{int(elapsed * 1000):012d}-w{slot}-{kind}-{seed}"


# ============================================================================ campaigns
def kernel_config(config: SoakConfig, profile: Profile) -> Any:
    from vmfuzz.kernel import KernelConfig

    c = KernelConfig(bugs=frozenset(config.bugs))
    return c.scaled(profile.scale) if profile.scale != 1 else c


def rerun_campaign(
    config: SoakConfig,
    seed: int,
    scheduler: str,
    profile: str,
    *,
    budget: float | None = 60.0,
    max_examples: int | None = None,
) -> Any:
    """Run the campaign a soak recorded as (seed, scheduler, profile) again, the same way.

    Returns the :class:`vmfuzz.campaign.CampaignResult`.  The examples come in the same order
    (each chunk of examples is seeded from the seed), so a campaign that found a failure finds
    the same one again.
    """
    from vmfuzz.campaign import fuzz

    validate(config)
    prof = _PROFILE_BY_NAME[profile]
    return fuzz(
        kernel_config(config, prof),
        scheduler=scheduler,
        seed_value=seed,
        budget=budget,
        max_examples=max_examples,
        chunk=prof.chunk,
        ops=list(config.ops) if config.ops is not None else None,
        base_profile=prof.base_profile,
        collect_labels=True,
    )


# ============================================================================ the worker
@attrs.frozen
class _WorkerArgs:
    slot: int
    state_dir: str
    config: SoakConfig
    deadline: float  # time.monotonic() (system-wide on Linux)
    t0: float  # session start, time.monotonic()
    offset: float  # elapsed seconds of the earlier sessions
    campaign_seconds: float
    sample_every: int
    parent_pid: int
    rss_recycle_mb: float
    recycle_campaigns: int


class _Stop(Exception):
    """Raised from the progress callback to end a campaign that has found nothing."""


def _worker_entry(args: _WorkerArgs, conn: Connection) -> None:
    """Process entry point of a worker (SIGINT is ignored: the parent decides when to stop)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # ``kill -USR1 PID`` appends the worker's Python stack to workers/slot<N>.stack (what is a
    # worker doing that has not reported progress for a long while?).
    stacks = Path(args.state_dir) / "workers" / f"slot{args.slot}.stack"
    stacks.parent.mkdir(parents=True, exist_ok=True)
    stack_file = open(stacks, "a", encoding="utf-8")  # open for the process' life
    faulthandler.register(signal.SIGUSR1, file=stack_file, all_threads=True)
    w = _Worker(args, conn)
    try:
        w.run()
    except BaseException as exc:  # anything escaping here is a crash of the worker
        w.report_crash(exc)
        conn.close()
        os._exit(CRASH_EXIT)
    conn.close()


class _Worker:
    def __init__(self, args: _WorkerArgs, conn: Connection) -> None:
        self.a = args
        self.conn = conn
        self.state = Path(args.state_dir)
        self.slot_file = self.state / "workers" / f"slot{args.slot}.json"
        self.log_file = self.state / "workers" / f"slot{args.slot}.log"
        self.stopping = False
        self.orphan = False
        self.current: dict[str, Any] | None = None
        self.cov: Any = None
        self.tracing = False
        self.carry = False
        self.chunks = 0
        self.sampled_chunks = 0
        self._last: dict[str, Any] = {}

    # ---------------------------------------------------------------- messages
    def send(self, kind: str, payload: dict[str, Any]) -> None:
        if self.orphan:
            return
        try:
            self.conn.send((kind, payload))
        except (OSError, EOFError):  # the parent is gone: finish quietly
            self.orphan = True
            self.stopping = True

    def _check_stop(self) -> None:
        if os.getppid() != self.a.parent_pid:
            self.orphan = True
            self.stopping = True
        try:
            while not self.orphan and self.conn.poll():
                if self.conn.recv() == "stop":
                    self.stopping = True
        except (OSError, EOFError):
            self.orphan = True
            self.stopping = True

    def elapsed(self) -> float:
        return self.a.offset + time.monotonic() - self.a.t0

    # ---------------------------------------------------------------- main loop
    def run(self) -> None:
        self._import_model()
        # The slot's seed cursor is ours alone: a worker of a killed session that is still
        # finishing its campaign (an orphan) holds this lock until it exits.
        self.slot_file.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(self.state / "workers" / f"slot{self.a.slot}.lock",
                       os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(lock, fcntl.LOCK_EX)
        cursor = self._read_cursor()
        done = 0
        baseline: float | None = None
        while True:
            self._check_stop()
            remaining = self.a.deadline - time.monotonic()
            if self.stopping or remaining < 0.5:
                break
            index = cursor
            cursor += 1
            seed, scheduler, profile = campaign_plan(
                self.a.slot, index, self.a.config.schedulers
            )
            self.current = {
                "seed": seed, "scheduler": scheduler, "profile": profile.name,
                "index": index, "started": _now_iso(), "elapsed": round(self.elapsed(), 3),
            }
            write_json(self.slot_file, {"slot": self.a.slot, "next": cursor,
                                        "current": self.current})
            self.send("start", dict(self.current))
            budget = min(self.a.campaign_seconds, max(0.5, remaining))
            result = self._campaign(seed, scheduler, profile, budget)
            finished = dict(self.current)
            write_json(self.slot_file, {"slot": self.a.slot, "next": cursor, "current": None},
                       fsync=False)
            self.current = None
            if result is not None:
                finished.update(
                    seconds=round(result.seconds, 3), examples=result.examples,
                    steps=result.steps, found=result.found,
                )
                finished["signature"] = self._found(result, seed, scheduler, profile)
            else:
                finished["stopped"] = True
            with open(self.log_file, "a", encoding="utf-8") as f:
                f.write(json.dumps(finished) + "\n")
            self.send("end", finished)
            done += 1
            rss = rss_mb(os.getpid())
            if baseline is None:
                baseline = rss
            grown = rss is not None and baseline is not None and (
                rss > self.a.rss_recycle_mb or rss - baseline > RSS_GROWTH_RECYCLE_MB
            )
            if grown or 0 < self.a.recycle_campaigns <= done:
                self.send("recycle", {"rss_mb": rss, "campaigns": done})
                break

    def _import_model(self) -> None:
        """Import the model (under coverage, so module-level lines count) and the plugins."""
        if self.a.sample_every > 0:
            try:
                import coverage

                data = self.state / "coverage" / f"cov.slot{self.a.slot}.{os.getpid()}"
                data.parent.mkdir(parents=True, exist_ok=True)
                self.cov = coverage.Coverage(
                    data_file=str(data), branch=True, source_pkgs=[COVERED_PACKAGE]
                )
                self.cov.set_option("run:disable_warnings", _COV_WARNINGS)
                self.cov.start()
            except Exception:  # coverage.py is optional for fuzzing itself
                self.cov = None
        try:
            import vmfuzz.kernel
        finally:
            if self.cov is not None:
                self.cov.stop()
                self.cov.save()
        load_plugins(self.a.config.plugins)
        import vmfuzz.campaign  # noqa: F401

    def _read_cursor(self) -> int:
        data = read_json(self.slot_file)
        if isinstance(data, dict) and isinstance(data.get("next"), int):
            return int(data["next"])
        return 0

    def _campaign(
        self, seed: int, scheduler: str, profile: Profile, budget: float
    ) -> Any:
        from vmfuzz.campaign import fuzz

        self._last = {"examples": 0, "steps": 0, "budget_hits": 0, "ops": {}, "labels": {}}
        cfg = self.a.config
        self._next_chunk()
        try:
            return fuzz(
                kernel_config(cfg, profile),
                scheduler=scheduler,
                seed_value=seed,
                budget=budget,
                chunk=profile.chunk,
                ops=list(cfg.ops) if cfg.ops is not None else None,
                base_profile=profile.base_profile,
                progress=self._progress,
                collect_labels=True,
            )
        except _Stop:
            return None
        finally:
            # Coverage started for a chunk that never ran (the budget was over): next one.
            self._end_chunk(ran=False)

    def _next_chunk(self) -> None:
        """Start coverage if the next chunk of examples is a sampled one."""
        every = max(1, self.a.sample_every)
        # Not the first chunks: a failure found in a traced chunk is also shrunk traced (slow).
        sampled = self.cov is not None and (
            self.carry or (self.chunks + self.a.slot + 1) % every == 0
        )
        self.chunks += 1
        self.carry = False
        if sampled:
            self.cov.start()
            self.tracing = True

    def _end_chunk(self, ran: bool = True) -> None:
        if not self.tracing:
            return
        self.cov.stop()
        self.tracing = False
        if not ran:
            self.carry = True
            return
        self.cov.save()
        self.sampled_chunks += 1
        self.send("coverage", {"chunks": 1})

    def _progress(self, r: Any) -> None:
        st = r.stats
        last = self._last
        delta: dict[str, Any] = {
            "examples": r.examples - last["examples"],
            "steps": r.steps - last["steps"],
            "budget_hits": r.budget_hits - last["budget_hits"],
        }
        for key in ("ops", "labels"):
            now = getattr(st, key, None) or {}
            before = last[key]
            delta[key] = {k: v - before.get(k, 0) for k, v in now.items() if v != before.get(k, 0)}
            last[key] = dict(now)
        last["examples"], last["steps"] = r.examples, r.steps
        last["budget_hits"] = r.budget_hits
        self._end_chunk()
        self.send("progress", delta)
        self._check_stop()
        if self.stopping and not r.found:
            raise _Stop
        if not r.found:  # no coverage while the failure is minimised after the last chunk
            self._next_chunk()

    # ---------------------------------------------------------------- findings
    def _found(self, r: Any, seed: int, scheduler: str, profile: Profile) -> str | None:
        if not r.found or r.failure is None or r.case is None:
            return None
        from vmfuzz.corpus import load, save_failure

        v = r.failure.violation
        meta = {
            "found_by": f"vmfuzz soak (worker {self.a.slot}, scheduler {scheduler}, "
                        f"profile {profile.name})",
            "seed": seed,
            "scheduler": scheduler,
            "profile": profile.name,
        }
        rec: dict[str, Any] = {
            "kind": "failure",
            "check": v.check,
            "message": v.describe(),
            "label": v.label,
            "worker": self.a.slot,
            "seed": seed,
            "scheduler": scheduler,
            "profile": profile.name,
            "examples": r.examples,
            "first_failure_example": getattr(r.stats, "first_failure_example", None),
            "shrunk": r.shrunk(),
            "minimal_preemptions": r.minimal_preemptions,
            "corpus": None,
            "timeline": None,
        }
        corpus = Path(self.a.config.corpus)
        try:
            with _flock(self.state / "corpus.lock"):
                path = save_failure(r.case, v, corpus, meta)
            path = path.resolve()
            cc = load(path)
            rec["signature"] = str(cc.metadata.get("signature") or path.stem)
            rec["corpus"] = str(path)
            rec["timeline"] = self._timeline(cc, path)
        except Exception as e:  # not reproducible, or the model raised while re-running it
            rec["signature"] = f"{v.check}|{v.label or ''}|unsaved"
            rec["error"] = f"{type(e).__name__}: {e}"
        rec["elapsed"] = round(self.elapsed(), 3)
        rec["found_at"] = _now_iso()
        fid = _finding_id(rec["elapsed"], self.a.slot, seed, "failure")
        write_json(self.state / "findings" / f"{fid}.json", rec)
        self.send("finding", rec)
        return str(rec["signature"])

    def _timeline(self, cc: Any, path: Path) -> str | None:
        try:
            from vmfuzz.corpus import attempt
            from vmfuzz.timeline import render_attempt

            text = render_attempt(cc, attempt(cc), width=120)
        except Exception as e:
            text = f"(no timeline: {type(e).__name__}: {e})\n"
        out = self.state / "timelines" / f"{path.stem}.txt"
        write_text(out, text)
        return str(out.resolve())

    def report_crash(self, exc: BaseException) -> None:
        """Record a crash of this worker as a finding (the parent restarts the worker)."""
        tb = traceback.extract_tb(exc.__traceback__)
        where = ""
        if tb:
            fr = tb[-1]
            where = f"{Path(fr.filename).name}:{fr.name}:{fr.lineno}"
        cur = self.current or {}
        rec = {
            "kind": "crash",
            "signature": f"worker_crash|{type(exc).__name__}|{where}",
            "check": "worker_crash",
            "message": f"worker {self.a.slot} crashed: {type(exc).__name__}: {exc}",
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
            "worker": self.a.slot,
            "seed": cur.get("seed"),
            "scheduler": cur.get("scheduler"),
            "profile": cur.get("profile"),
            "corpus": None,
            "timeline": None,
            "elapsed": round(self.elapsed(), 3),
            "found_at": _now_iso(),
        }
        try:
            fid = _finding_id(rec["elapsed"], self.a.slot, cur.get("seed", -1), "crash")
            write_json(self.state / "findings" / f"{fid}.json", rec)
        finally:
            self.send("crash", rec)


# ============================================================================ the parent
@attrs.define
class _Slot:
    slot: int
    proc: Any = None
    conn: Connection | None = None
    current: dict[str, Any] | None = None
    crash_reported: bool = False
    recycle: bool = False
    restart_at: float | None = None
    crashes: list[float] = attrs.field(factory=list)
    restarts: int = 0  # after a crash or a recycle
    recycles: int = 0
    rss_mb: float | None = None
    cpu: tuple[float, float] = (0.0, 0.0)  # current process: on-CPU, runnable-waiting
    seen: float = 0.0  # time.monotonic() of the last reading
    campaigns: int = 0


@attrs.define
class Snapshot:
    """What the progress display shows."""

    elapsed: float
    session_elapsed: float
    duration: float
    workers: int
    alive: int
    examples: int
    steps: int
    steps_per_second: float
    campaigns: int
    findings: int
    coverage: dict[str, Any] | None
    stopping: str | None


EventHook = Callable[[str], None]
StatusHook = Callable[[Snapshot], None]


class Soak:
    """The parent of a soak session: starts workers, collects their news, writes the state."""

    def __init__(
        self,
        opts: SoakOptions,
        *,
        on_status: StatusHook | None = None,
        on_event: EventHook | None = None,
    ) -> None:
        self.o = opts
        self.state = opts.state_dir
        self.on_status = on_status
        self.on_event = on_event
        self.ctx = multiprocessing.get_context("spawn")
        self.slots = [_Slot(i) for i in range(opts.workers)]
        self.stop_reason: str | None = None
        self.force = False
        self.stats: dict[str, Any] = {}
        self.records: list[dict[str, Any]] = []
        self.signatures: set[str] = set()
        self.session: dict[str, Any] = {}
        self.run_json: dict[str, Any] = {}
        self._rate: list[tuple[float, int]] = []
        self._lock_fd: int | None = None

    # ---------------------------------------------------------------- state
    def prepare(self) -> None:
        """Create the state directory, or read it back for ``--resume``."""
        o = self.o
        run_file = self.state / "run.json"
        existing = read_json(run_file)
        if o.resume:
            if not isinstance(existing, dict) or existing.get("format") != FORMAT:
                raise SoakError(f"--resume: {self.state} holds no soak run (no run.json)")
            old = SoakConfig.from_json(existing.get("config", {}))
            self.o.config = _merge_config(old, o.config)
            self.run_json = existing
        else:
            if run_file.exists():
                raise SoakError(
                    f"{self.state} already holds a soak run: add --resume to continue it, "
                    "or pass another --state"
                )
            # The corpus is kept as an absolute path: a --resume from elsewhere saves there.
            self.o.config = attrs.evolve(
                o.config, corpus=str(Path(o.config.corpus or "corpus").resolve())
            )
            self.run_json = {
                "format": FORMAT, "version": VERSION, "created": _now_iso(),
                "config": o.config.to_json(), "sessions": [],
            }
        validate(self.o.config)
        self._lock_session()
        if not o.resume and run_file.exists():  # another fresh run got here first
            raise SoakError(f"{self.state} already holds a soak run: pass another --state")
        self.run_json["config"] = self.o.config.to_json()
        stats = read_json(self.state / "stats.json") if o.resume else None
        self.stats = stats if isinstance(stats, dict) else _new_stats()
        self.stats.setdefault("interrupted", [])
        self.records = load_findings(self.state)
        self.signatures = {r["signature"] for r in self.records}
        if o.resume:
            self._note_interrupted_campaigns("the previous session was killed")
            for s in self.run_json.get("sessions", []):
                if s.get("ended") is None and not s.get("stop"):
                    s["stop"] = "killed"
        self.session = {
            "started": _now_iso(), "duration": o.duration, "workers": o.workers,
            "elapsed_before": self.stats.get("elapsed", 0.0), "ended": None, "stop": None,
            "pid": os.getpid(),
        }
        self.run_json.setdefault("sessions", []).append(self.session)
        write_json(run_file, self.run_json)

    def _lock_session(self) -> None:
        """One session at a time per state directory (the kernel drops the lock if we die)."""
        self.state.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state / "run.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise SoakError(f"another vmfuzz soak session is running on {self.state}") from None
        self._lock_fd = fd

    def _note_interrupted_campaigns(self, why: str) -> None:
        """Campaigns the slot files show in flight are recorded (they can be re-run)."""
        for p in sorted((self.state / "workers").glob("slot*.json")):
            d = read_json(p)
            if not isinstance(d, dict) or not d.get("current"):
                continue
            cur = dict(d["current"])
            cur["slot"] = d.get("slot")
            cur["why"] = why
            self.stats["interrupted"].append(cur)
            d["current"] = None
            write_json(p, d)

    # ---------------------------------------------------------------- workers
    def _start(self, s: _Slot, now: float) -> None:
        parent, child = self.ctx.Pipe(duplex=True)
        args = _WorkerArgs(
            slot=s.slot, state_dir=str(self.state), config=self.o.config,
            deadline=self.deadline, t0=self.t0, offset=self.offset,
            campaign_seconds=self.o.campaign_budget(), sample_every=self.o.sample_every,
            parent_pid=os.getpid(), rss_recycle_mb=self.o.rss_recycle_mb,
            recycle_campaigns=self.o.recycle_campaigns,
        )
        proc = self.ctx.Process(
            target=_worker_entry, args=(args, child), name=f"vmfuzz-soak-{s.slot}", daemon=False
        )
        # Workers ignore Ctrl-C and hangups (the parent stops them cleanly); SIG_IGN set here
        # survives the exec, so there is no window before the worker sets it itself.
        old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGHUP)}
        try:
            proc.start()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
        child.close()
        s.proc, s.conn = proc, parent
        s.cpu = (0.0, 0.0)
        s.seen = now
        s.crash_reported = s.recycle = False
        s.restart_at = None
        s.current = None

    def _handle(self, s: _Slot, kind: str, payload: dict[str, Any]) -> None:
        t = self.stats["totals"]
        if kind == "progress":
            t["examples"] += payload["examples"]
            t["steps"] += payload["steps"]
            t["budget_hits"] += payload["budget_hits"]
            for key in ("ops", "labels"):
                counts = t[key]
                for k, v in payload[key].items():
                    counts[k] = counts.get(k, 0) + v
        elif kind == "start":
            s.current = payload
        elif kind == "end":
            s.current = None
            s.campaigns += 1
            t["campaigns"] += 1
            for key, val in (("schedulers", payload["scheduler"]),
                             ("profiles", payload["profile"])):
                t[key][val] = t[key].get(val, 0) + 1
        elif kind in ("finding", "crash"):
            if kind == "crash":
                s.crash_reported = True
            self._add_record(payload)
        elif kind == "recycle":
            s.recycle = True
        elif kind == "coverage":
            t["sampled_chunks"] = t.get("sampled_chunks", 0) + payload.get("chunks", 1)
            self._coverage_due = True

    def _add_record(self, rec: dict[str, Any]) -> None:
        self.records.append(rec)
        new = rec["signature"] not in self.signatures
        self.signatures.add(rec["signature"])
        if new and self.on_event is not None:
            where = rec.get("corpus") or rec.get("error") or ""
            self.on_event(
                f"new finding after {format_duration(rec.get('elapsed', 0))}: "
                f"{rec.get('message')} (worker {rec.get('worker')}, seed {rec.get('seed')}, "
                f"{rec.get('scheduler')}) {where}".rstrip()
            )

    def _reap(self, s: _Slot, now: float) -> None:
        """A worker process ended: a crash is a finding; restart it while the run goes on."""
        assert s.proc is not None
        self._drain(s)
        code = s.proc.exitcode
        s.proc.join()
        if s.conn is not None:
            s.conn.close()
        s.proc, s.conn = None, None
        crashed = code != 0 and not self.force
        if crashed and not s.crash_reported:
            self._record_death(s, code)
        elif not crashed and s.current is not None and self.force:
            cur = dict(s.current)
            cur.update(slot=s.slot, why="stopped mid-campaign (a failure it may have been "
                                         "shrinking is not saved: re-run the campaign)")
            self.stats["interrupted"].append(cur)
        if s.current is not None:
            self._clear_slot_file(s.slot)  # reported above: not "interrupted" on --resume
        s.current = None
        running = self.stop_reason is None and now < self.deadline - 0.5
        if crashed:
            s.crashes.append(now)
        if running and (crashed or s.recycle):
            recent = [c for c in s.crashes if now - c < 60]
            delay = 0.0 if len(recent) <= 1 else min(30.0, 2.0 ** (len(recent) - 2))
            s.restart_at = now + delay
            s.restarts += 1
            s.recycles += 0 if crashed else 1
            if crashed and self.on_event is not None:
                self.on_event(f"worker {s.slot} died ({_death(code)}); restarting it")

    def _clear_slot_file(self, slot: int) -> None:
        """The slot's campaign in flight is accounted for (the cursor stays)."""
        path = self.state / "workers" / f"slot{slot}.json"
        d = read_json(path)
        if isinstance(d, dict) and d.get("current"):
            d["current"] = None
            write_json(path, d)

    def _record_death(self, s: _Slot, code: int | None) -> None:
        how = _death(code)
        cur = s.current or {}
        elapsed = self.elapsed()
        rec = {
            "kind": "crash",
            "signature": f"worker_crash|{how}",
            "check": "worker_crash",
            "message": f"worker {s.slot} died ({how}) during campaign seed {cur.get('seed')}",
            "worker": s.slot,
            "seed": cur.get("seed"),
            "scheduler": cur.get("scheduler"),
            "profile": cur.get("profile"),
            "corpus": None,
            "timeline": None,
            "elapsed": round(elapsed, 3),
            "found_at": _now_iso(),
        }
        fid = _finding_id(elapsed, s.slot, cur.get("seed", -1), "crash")
        write_json(self.state / "findings" / f"{fid}.json", rec)
        self._add_record(rec)

    def _drain(self, s: _Slot) -> None:
        if s.conn is None:
            return
        try:
            while s.conn.poll():
                kind, payload = s.conn.recv()
                self._handle(s, kind, payload)
        except (OSError, EOFError):
            pass

    # ---------------------------------------------------------------- time
    def elapsed(self) -> float:
        return self.offset + time.monotonic() - self.t0

    # ---------------------------------------------------------------- the loop
    def run(self) -> dict[str, Any]:
        """Run the session; returns the morning summary (as JSON data)."""
        self.prepare()
        self.t0 = time.monotonic()
        self.offset = float(self.stats.get("elapsed", 0.0))
        self.deadline = self.t0 + self.o.duration
        self._coverage_due = False
        handled = [signal.SIGINT, signal.SIGTERM]
        if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # (not under nohup)
            handled.append(signal.SIGHUP)
        old = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        try:
            self._loop()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            self._shutdown()
        try:
            return self._finish()
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_reason is None:
            self.stop_reason = "interrupted"
            if self.on_event is not None:
                self.on_event(
                    "stopping: workers finish their campaign (a failure being shrunk is "
                    "shrunk and saved); Ctrl-C again to stop at once"
                )
        else:
            self.force = True

    def _loop(self) -> None:
        now = time.monotonic()
        for s in self.slots:
            self._start(s, now)
        next_stats = now + self.o.stats_every
        next_cov = now + self.o.coverage_every
        next_status = now
        stop_sent = False
        stop_since = 0.0
        while True:
            now = time.monotonic()
            if self.stop_reason is None and now >= self.deadline:
                self.stop_reason = "duration"
            if self.stop_reason is not None and not stop_sent:
                stop_sent = True
                stop_since = now
                for s in self.slots:
                    s.restart_at = None
                    if s.conn is not None:
                        with contextlib.suppress(OSError):
                            s.conn.send("stop")
            if stop_sent and now - stop_since > self.o.stop_grace:
                self.force = True
            if self.force:
                for s in self.slots:
                    if s.proc is not None and s.proc.exitcode is None:
                        s.proc.terminate()
            conns = [s.conn for s in self.slots if s.conn is not None]
            ready = wait(conns, timeout=0.2) if conns else []
            if not conns:
                time.sleep(0.05)
            for s in self.slots:
                if s.conn is not None and s.conn in ready:
                    self._drain(s)
            now = time.monotonic()
            for s in self.slots:
                if s.proc is not None and s.proc.exitcode is not None:
                    self._reap(s, now)
                if s.proc is None and s.restart_at is not None and now >= s.restart_at:
                    if self.stop_reason is None:
                        self._start(s, now)
                    else:
                        s.restart_at = None
                if s.proc is not None and s.proc.pid is not None:
                    self._sample_process(s)
            if all(s.proc is None and s.restart_at is None for s in self.slots):
                break
            # Merge when there is new data: at once the first time, then every so often.
            first = self.stats.get("coverage") is None
            if self._coverage_due and (first or now >= next_cov):
                self._merge_coverage()
                self._coverage_due = False
                next_cov = now + self.o.coverage_every
            if now >= next_stats:
                self._flush_stats()
                next_stats = now + self.o.stats_every
            if now >= next_status and self.on_status is not None:
                self.on_status(self.snapshot())
                next_status = now + 0.5

    def _sample_process(self, s: _Slot) -> None:
        """Read a worker's memory and CPU time (CPU time is summed over all workers)."""
        assert s.proc is not None and s.proc.pid is not None
        s.rss_mb = rss_mb(s.proc.pid)
        cpu = cpu_seconds(s.proc.pid)
        now = time.monotonic()
        if cpu is not None and cpu[0] >= s.cpu[0] and cpu[1] >= s.cpu[1]:
            t = self.stats["totals"]
            t["worker_alive_seconds"] = t.get("worker_alive_seconds", 0.0) + now - s.seen
            s.seen = now
            t["worker_cpu_seconds"] = t.get("worker_cpu_seconds", 0.0) + cpu[0] - s.cpu[0]
            t["worker_wait_seconds"] = t.get("worker_wait_seconds", 0.0) + cpu[1] - s.cpu[1]
            s.cpu = cpu

    def _shutdown(self) -> None:
        """Make sure no worker outlives the parent (after an exception in the loop)."""
        for s in self.slots:
            if s.proc is not None and s.proc.exitcode is None:
                s.proc.terminate()
                s.proc.join(5)
                if s.proc.exitcode is None:
                    s.proc.kill()
                    s.proc.join()

    def _finish(self) -> dict[str, Any]:
        from vmfuzz import _soak_report

        self._merge_coverage()
        self._flush_stats(final=True)
        self.session["ended"] = _now_iso()
        self.session["stop"] = self.stop_reason if not self.force else "forced"
        self.session["elapsed"] = round(time.monotonic() - self.t0, 3)
        write_json(self.state / "run.json", self.run_json)
        return _soak_report.write_reports(self.state)

    # ---------------------------------------------------------------- stats
    def _rate_now(self) -> float:
        """Steps per second over the last ~10 s."""
        now = time.monotonic()
        steps = self.stats["totals"]["steps"]
        self._rate.append((now, steps))
        while len(self._rate) > 2 and now - self._rate[0][0] > 10:
            self._rate.pop(0)
        t, s0 = self._rate[0]
        return (steps - s0) / (now - t) if now > t else 0.0

    def snapshot(self) -> Snapshot:
        t = self.stats["totals"]
        return Snapshot(
            elapsed=self.elapsed(), session_elapsed=time.monotonic() - self.t0,
            duration=self.o.duration, workers=self.o.workers,
            alive=sum(1 for s in self.slots if s.proc is not None),
            examples=t["examples"], steps=t["steps"], steps_per_second=self._rate_now(),
            campaigns=t["campaigns"], findings=len(self.signatures),
            coverage=self.stats.get("coverage"), stopping=self.stop_reason,
        )

    def _flush_stats(self, final: bool = False) -> None:
        st = self.stats
        elapsed = self.elapsed()
        t = st["totals"]
        series = st["series"]
        prev = series[-1] if series else None
        dt = elapsed - prev["t"] if prev else elapsed - self.offset
        interval = min(30.0, max(1.0, self.o.duration / 240))
        # Rates over a window of several samples: workers report once per chunk of examples
        # (a second or more each), so rates between two samples alone would be mostly 0 or spikes.
        base = None
        for old in reversed(series):
            base = old
            if elapsed - old["t"] >= max(10.0, 3 * interval):
                break
        span = elapsed - base["t"] if base is not None else 0.0
        sample = {
            "t": round(elapsed, 2),
            "examples": t["examples"],
            "steps": t["steps"],
            "steps_per_second": round((t["steps"] - base["steps"]) / span, 1)
            if base is not None and span > 0 else None,
            "examples_per_second": round((t["examples"] - base["examples"]) / span, 2)
            if base is not None and span > 0 else None,
            "findings": len(self.signatures),
            "lines": (st.get("coverage") or {}).get("lines"),
            "branches": (st.get("coverage") or {}).get("branches"),
            "rss_mb": {str(s.slot): round(s.rss_mb, 1) for s in self.slots
                       if s.rss_mb is not None and s.proc is not None},
            "alive": sum(1 for s in self.slots if s.proc is not None),
            "cpu": round(t.get("worker_cpu_seconds", 0.0), 2),
            "wait": round(t.get("worker_wait_seconds", 0.0), 2),
            "load": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        }
        if prev is None or dt >= interval or final:
            series.append(sample)
            if len(series) > 4000:  # keep the file small over very long runs
                st["series"] = series[:1] + series[1::2]
        st["elapsed"] = round(elapsed, 3)
        st["updated"] = _now_iso()
        st["workers"] = self.o.workers
        st["steps_per_second"] = round(self._rate_now(), 1)
        st["findings"] = len(self.signatures)
        st["worker_status"] = [
            {"slot": s.slot, "pid": s.proc.pid if s.proc is not None else None,
             "rss_mb": round(s.rss_mb, 1) if s.rss_mb is not None else None,
             "campaign": s.current, "campaigns": s.campaigns, "restarts": s.restarts,
             "recycles": s.recycles}
            for s in self.slots
        ]
        write_json(self.state / "stats.json", st, fsync=final)

    def _merge_coverage(self) -> None:
        """Merge the workers' coverage data into ``coverage.json`` and the stats."""
        if not self.stats["totals"].get("sampled_chunks"):
            return  # only the import-time lines so far: nothing worth reporting
        cov = merge_coverage(self.state)
        if cov is not None:
            cov["t"] = round(self.elapsed(), 2)
            cov["sampled_chunks"] = self.stats["totals"].get("sampled_chunks", 0)
            self.stats["coverage"] = cov


def _death(code: int | None) -> str:
    """How a process ended, from its exit code: ``exit status 7``, ``killed by SIGKILL``."""
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def merge_coverage(state_dir: Path) -> dict[str, Any] | None:
    """Combine every worker's coverage data file; the totals (percentages) or None."""
    files = sorted(
        str(p) for p in (state_dir / "coverage").glob("cov.slot*")
        if not p.name.endswith("-journal")
    )
    if not files:
        return None
    try:
        import coverage

        merged = coverage.Coverage(data_file=None, branch=True, source_pkgs=[COVERED_PACKAGE])
        merged.set_option("run:disable_warnings", _COV_WARNINGS)
        merged.combine(files, keep=True)
        out = state_dir / "coverage.json"
        tmp = state_dir / ".coverage.json.tmp"
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            merged.json_report(outfile=str(tmp))
        os.replace(tmp, out)
        totals = json.loads(out.read_text(encoding="utf-8"))["totals"]
    except Exception:  # a data file being written, or no coverage.py: try again later
        return None
    stmts = totals.get("num_statements", 0)
    branches = totals.get("num_branches", 0)
    return {
        "lines": round(100.0 * totals.get("covered_lines", 0) / stmts, 2) if stmts else None,
        "branches": round(100.0 * totals.get("covered_branches", 0) / branches, 2)
        if branches else None,
        "covered_lines": totals.get("covered_lines", 0),
        "statements": stmts,
        "covered_branches": totals.get("covered_branches", 0),
        "branches_total": branches,
    }


def _new_stats() -> dict[str, Any]:
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


def _merge_config(old: SoakConfig, new: SoakConfig) -> SoakConfig:
    """``--resume`` fuzzes what the run fuzzed; options given again must agree with it."""
    for field, given, kept in (
        ("--bug", new.bugs, old.bugs),
        ("--plugin", new.plugins, old.plugins),
    ):
        if given and sorted(given) != sorted(kept):
            raise SoakError(
                f"--resume: {field} {' '.join(given) or '(none)'} differs from the run's "
                f"{' '.join(kept) or '(none)'}; leave it out to continue the run as it was"
            )
    if new.ops is not None and old.ops is not None and sorted(new.ops) != sorted(old.ops):
        raise SoakError("--resume: --op differs from the run's; leave it out")
    if new.ops is not None and old.ops is None:
        raise SoakError("--resume: the run fuzzed every operation; leave --op out")
    if new.schedulers != SCHEDULERS and sorted(new.schedulers) != sorted(old.schedulers):
        raise SoakError("--resume: --scheduler differs from the run's; leave it out")
    if new.corpus and Path(new.corpus).resolve() != Path(old.corpus).resolve():
        raise SoakError(f"--resume: --corpus {new.corpus} differs from the run's {old.corpus}")
    return old


def run_soak(
    opts: SoakOptions,
    *,
    on_status: StatusHook | None = None,
    on_event: EventHook | None = None,
) -> dict[str, Any]:
    """Run one soak session (a new run, or ``opts.resume``); the summary as JSON data.

    Raises :class:`SoakError` for usage problems (nothing started then).  Workers are started
    with the ``spawn`` method: a script calling this needs the usual
    ``if __name__ == "__main__":`` guard.
    """
    if opts.workers < 1:
        raise SoakError("--workers must be >= 1")
    if opts.duration <= 0:
        raise SoakError("the duration must be positive")
    return Soak(opts, on_status=on_status, on_event=on_event).run()


def signature_digest(signature: str) -> str:
    """A short stable id for a finding signature (used in file and anchor names)."""
    return hashlib.sha256(signature.encode()).hexdigest()[:8]
