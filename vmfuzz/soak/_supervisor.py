"""The supervisor of a soak session: starts the workers, collects their news, writes the state.

:class:`Soak` runs one session: it opens the state directory (:mod:`vmfuzz.soak._state`),
starts one worker process per slot (``spawn``), counts what they report into ``stats.json``
(totals, per-op and per-label counts, a time series), merges their coverage now and then, and
at the end writes the summary and the HTML report.  A worker that dies is restarted (after a
back-off when it keeps dying) and its death is a finding; a worker that grew too large, or ran
its share of campaigns, is replaced by a fresh process.  Ctrl-C (SIGINT), SIGTERM and SIGHUP
stop the session cleanly: the workers finish their campaign, shrinking a failure included; a
second signal, or the grace period running out, stops them at once.

A state write that fails (a full disk: the parent's ``stats.json``, or a worker's ``disk``
message) stops the session the same clean way (stop reason ``disk``): the workers finish their
campaign, a failure goes to the corpus or a fallback folder, a finding record that could not be
written is kept in memory and shown in the summary, which is printed even if ``summary.txt``
cannot be written; ``--resume`` goes on once there is room.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from types import FrameType
from typing import Any

import attrs

from vmfuzz.soak._config import SoakOptions, format_duration
from vmfuzz.soak._coverage import merge_coverage
from vmfuzz.soak._files import now_iso, write_json
from vmfuzz.soak._findings import finding_id
from vmfuzz.soak._metrics import cpu_seconds, rss_mb
from vmfuzz.soak._pool import pool_size
from vmfuzz.soak._report import write_reports
from vmfuzz.soak._state import PAIRS_FILE, clear_slot_file, open_run, read_pairs
from vmfuzz.soak._worker import WorkerArgs, worker_entry


@attrs.define
class _Slot:
    """A worker slot: its current process (restarted or replaced over the session) and counts."""

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
    logged: int = 0  # campaigns of the slot's log counted in the stats (over all sessions)
    partial: dict[str, int] = attrs.field(factory=lambda: {"examples": 0, "steps": 0})


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
    pairs: int = 0  # distinct interleaving pairs met so far
    pool: int = 0  # programs in the run's pool


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
        self.write_error: str | None = None  # the first write that failed: the session stops
        self.unwritten: list[dict[str, Any]] = []  # finding records not on disk
        self.pairs: set[tuple[str, str]] = set()  # interleaving pairs the run's campaigns met
        self._pairs_written = 0
        self.pool_size = 0  # programs in the run's pool (STATE/pool/)

    # ---------------------------------------------------------------- state
    def prepare(self) -> None:
        """Create the state directory, or read it back for ``--resume``."""
        run = open_run(self.o, self.on_event)
        self.run_json, self.stats, self.session = run.run_json, run.stats, run.session
        self.records = run.records
        self.signatures = {r["signature"] for r in self.records}
        self._lock_fd = run.lock_fd
        self.pairs = read_pairs(self.state)
        self._pairs_written = len(self.pairs)
        self.pool_size = pool_size(self.state)
        for s in self.slots:
            seen = self.stats["slots"].get(str(s.slot))
            if seen is not None:
                s.logged = seen["logged"]

    def _write_failed(self, error: str) -> None:
        """A write failed: stop the session cleanly (once), saying why."""
        if self.write_error is None:
            self.write_error = error
            if self.on_event is not None:
                self.on_event(f"stopping: cannot write ({error}); the workers finish their "
                              "campaign, then free space and continue with --resume")
        if self.stop_reason is None:
            self.stop_reason = "disk"

    # ---------------------------------------------------------------- workers
    def _start(self, s: _Slot, now: float) -> None:
        parent, child = self.ctx.Pipe(duplex=True)
        args = WorkerArgs(
            slot=s.slot, state_dir=str(self.state), config=self.o.config,
            deadline=self.deadline, t0=self.t0, offset=self.offset,
            campaign_seconds=self.o.campaign_budget(), sample_every=self.o.sample_every,
            parent_pid=os.getpid(), rss_recycle_mb=self.o.rss_recycle_mb,
            recycle_campaigns=self.o.recycle_campaigns, run_id=self.o.run_id or 0,
            campaign_steps=self.o.campaign_work(),
        )
        proc = self.ctx.Process(
            target=worker_entry, args=(args, child), name=f"vmfuzz-soak-{s.slot}", daemon=False
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
            s.partial["examples"] += payload["examples"]
            s.partial["steps"] += payload["steps"]
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
            s.logged += 1
            s.partial = {"examples": 0, "steps": 0}
            t["campaigns"] += 1
            self._add_pairs(payload.pop("pairs", None) or [])
            self.pool_size += payload.get("pool_added", 0)
            for key, val in (("schedulers", payload["scheduler"]),
                             ("profiles", payload["profile"])):
                t[key][val] = t[key].get(val, 0) + 1
        elif kind in ("finding", "crash"):
            if kind == "crash":
                s.crash_reported = True
            self._add_record(payload)
        elif kind == "recycle":
            s.recycle = True
        elif kind == "disk":
            self._write_failed(f"worker {s.slot}: {payload.get('error')}")
        elif kind == "coverage":
            t["sampled_chunks"] = t.get("sampled_chunks", 0) + payload.get("chunks", 1)
            self._coverage_due = True

    def _add_record(self, rec: dict[str, Any]) -> None:
        self.records.append(rec)
        if rec.get("record_error"):
            self.unwritten.append(rec)
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
        s.partial = {"examples": 0, "steps": 0}  # its campaign in flight is over
        if s.current is not None:
            try:  # reported above: not "interrupted" on --resume
                clear_slot_file(self.state, s.slot)
            except OSError as e:
                self._write_failed(f"{e.filename}: {e.strerror or e}")
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
            "found_at": now_iso(),
        }
        fid = finding_id(elapsed, s.slot, cur.get("seed", -1), "crash")
        try:
            write_json(self.state / "findings" / f"{fid}.json", rec)
        except OSError as e:
            rec["record_error"] = f"{e.strerror or e}"
            self._write_failed(f"{e.filename}: {e.strerror or e}")
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
                # Workers leave on their own only when the session's time is up (one whose
                # next campaign would start within half a second of the deadline).
                if self.stop_reason is None:
                    self.stop_reason = "duration"
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
        self._merge_coverage()
        self._flush_stats(final=True)
        self.session["ended"] = now_iso()
        self.session["stop"] = self.stop_reason if not self.force else "forced"
        self.session["elapsed"] = round(time.monotonic() - self.t0, 3)
        try:
            write_json(self.state / "run.json", self.run_json)
        except OSError as e:
            self._write_failed(f"{e.filename}: {e.strerror or e}")
        return write_reports(self.state, unwritten=self.unwritten,
                             write_error=self.write_error, run=self.run_json)

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
            alive=self._alive(),
            examples=t["examples"], steps=t["steps"], steps_per_second=self._rate_now(),
            campaigns=t["campaigns"], findings=len(self.signatures),
            coverage=self.stats.get("coverage"), stopping=self.stop_reason,
            pairs=len(self.pairs), pool=self.pool_size,
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
            "alive": self._alive(),
            "pairs": len(self.pairs),
            "pool": self.pool_size,
            "cpu": round(t.get("worker_cpu_seconds", 0.0), 2),
            "wait": round(t.get("worker_wait_seconds", 0.0), 2),
            "load": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        }
        if prev is None or dt >= interval or final:
            series.append(sample)
            if len(series) > 4000:  # keep the file small over very long runs
                st["series"] = series[:1] + series[1::2]
        st["elapsed"] = round(elapsed, 3)
        st["updated"] = now_iso()
        st["workers"] = self.o.workers
        st["steps_per_second"] = round(self._rate_now(), 1)
        st["findings"] = len(self.signatures)
        slots = st.setdefault("slots", {})
        for s in self.slots:
            slots[str(s.slot)] = {"logged": s.logged, **s.partial}
        st["worker_status"] = self._worker_status()
        t["pairs"] = len(self.pairs)
        t["pool"] = self.pool_size
        try:
            if len(self.pairs) != self._pairs_written:
                write_json(self.state / PAIRS_FILE, {"pairs": sorted(self.pairs)}, fsync=final)
                self._pairs_written = len(self.pairs)
            write_json(self.state / "stats.json", st, fsync=final)
        except OSError as e:
            self._write_failed(f"{e.filename}: {e.strerror or e}")

    def _alive(self) -> int:
        """Workers running now."""
        return sum(1 for s in self.slots if s.proc is not None)

    def _worker_status(self) -> list[dict[str, Any]]:
        return [
            {"slot": s.slot, "pid": s.proc.pid if s.proc is not None else None,
             "rss_mb": round(s.rss_mb, 1) if s.rss_mb is not None else None,
             "campaign": s.current, "campaigns": s.campaigns, "restarts": s.restarts,
             "recycles": s.recycles}
            for s in self.slots
        ]

    def _add_pairs(self, pairs: list[list[str]]) -> int:
        """Count the interleaving pairs a campaign met; how many the run had not met."""
        before = len(self.pairs)
        self.pairs.update((a, b) for a, b in pairs)
        return len(self.pairs) - before

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
