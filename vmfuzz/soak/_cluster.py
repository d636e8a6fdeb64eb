"""A soak session whose campaigns run on a Dask cluster (``vmfuzz soak --dask ADDRESS``).

:class:`ClusterSoak` is the session's parent, as :class:`vmfuzz.soak._supervisor.Soak` is for
local workers, but its workers are a Dask cluster's (``dask scheduler``, ``dask worker
ADDRESS`` on any hosts that have vmfuzz installed).  It plans the campaigns (slot
:data:`CLUSTER_SLOT` of the run: seeds no local slot and no other run uses), submits each as a
task (:func:`vmfuzz.soak._task.run_campaign`: plain data in, plain data out) with the run's
pool programs and the failures it already has, keeps one campaign per worker thread in flight,
and writes everything a campaign brings back into the one state folder here:
counts and interleaving pairs into ``stats.json`` and ``pairs.json``, the programs it added into
``pool/``, its failure into the corpus (re-run here first), a finding record and a timeline.

Nothing is lost with a worker: Dask runs the tasks of a lost worker again on another one (its
``allowed-failures``), and a campaign is a step budget with seeded chunks and the pool it was
handed, so the new run does the lost one's work and finds what it would have found.  A task
that keeps killing workers (``KilledWorker``) or raises is a crash finding, like a local
worker's death.  The cursor and the campaigns in flight are in ``workers/slot256.json``
*before* a task is submitted: after a ``kill -9`` of this process, ``--resume --dask`` submits
the campaigns that were in flight again (a local ``--resume`` records them as interrupted).
A campaign is never cut short by the clock: at the end of ``--duration`` (or at the first
Ctrl-C) nothing more is submitted and the session ends when the campaigns in flight have done
their work; a second Ctrl-C cancels them (they are submitted again on ``--resume``).
"""

from __future__ import annotations

import contextlib
import time
import traceback
from typing import Any

from vmfuzz.soak._config import SoakError, SoakOptions
from vmfuzz.soak._files import append_line, now_iso, read_jsonl, write_json
from vmfuzz.soak._findings import finding_id, known_like
from vmfuzz.soak._plan import CLUSTER_SLOT, campaign_plan
from vmfuzz.soak._pool import add_entries, entries_for
from vmfuzz.soak._state import read_slot
from vmfuzz.soak._supervisor import EventHook, Soak, StatusHook, _Slot
from vmfuzz.soak._task import campaign_spec, run_campaign
from vmfuzz.soak._worker import save_finding

CONNECT_TIMEOUT = "20s"  # to reach the scheduler before anything starts


def _distributed() -> Any:
    """The ``distributed`` package, or :class:`SoakError` naming the extra to install."""
    try:
        import distributed
    except ImportError:
        raise SoakError('--dask needs Dask distributed: pip install "vmfuzz[cluster]" '
                        '(or pip install distributed)') from None
    return distributed


class ClusterSoak(Soak):
    """The parent of a soak session on a Dask cluster: plans, submits, collects, writes."""

    def __init__(self, opts: SoakOptions, *, on_status: StatusHook | None = None,
                 on_event: EventHook | None = None) -> None:
        super().__init__(opts, on_status=on_status, on_event=on_event)
        assert opts.dask is not None
        self.address = opts.dask
        self.slots = [_Slot(CLUSTER_SLOT)]
        self.client: Any = None
        self.futures: dict[Any, dict[str, Any]] = {}  # future -> its campaign
        self.in_flight: dict[int, dict[str, Any]] = {}  # index -> campaign (slot file)
        self.cursor = 0
        self.resubmit: list[dict[str, Any]] = []  # in flight when the last session ended
        self.threads: dict[str, int] = {}  # Dask worker address -> threads
        self.processing: dict[str, list[str]] = {}  # Dask worker address -> task keys

    # ---------------------------------------------------------------- state
    @property
    def slot_file(self) -> Any:
        return self.state / "workers" / f"slot{CLUSTER_SLOT}.json"

    def run(self) -> dict[str, Any]:
        distributed = _distributed()
        if self.on_event is not None:
            self.on_event(f"connecting to the Dask scheduler at {self.address}")
        try:
            self.client = distributed.Client(self.address, timeout=CONNECT_TIMEOUT,
                                             set_as_default=False)
        except (OSError, TimeoutError, ValueError) as e:
            raise SoakError(f"--dask {self.address}: cannot reach the Dask scheduler "
                            f"({type(e).__name__}: {e}); start one with 'dask scheduler'"
                            ) from None
        try:
            self._poll_workers()
            if self.on_event is not None:
                self.on_event(f"the cluster has {len(self.threads)} workers, "
                              f"{sum(self.threads.values())} threads"
                              + ("; campaigns wait for a worker to join" if not self.threads
                                 else ""))
            return super().run()
        finally:
            with contextlib.suppress(Exception):
                self.client.close()

    def prepare(self) -> None:
        super().prepare()
        data = read_slot(self.slot_file)
        if data is not None:
            self.cursor = int(data["next"])
            done = {c.get("index") for c in read_jsonl(self.state / "workers" /
                                                        f"slot{CLUSTER_SLOT}.log")}
            # (a campaign logged just before a kill is done, whatever the slot file says)
            self.resubmit = [c for c in data.get("in_flight") or []
                             if isinstance(c, dict) and c.get("index") not in done]
        self.session["dask"] = self.address

    def _write_slot(self) -> None:
        write_json(self.slot_file, {"slot": CLUSTER_SLOT, "next": self.cursor, "current": None,
                                    "in_flight": list(self.in_flight.values())})

    # ---------------------------------------------------------------- workers
    def _poll_workers(self) -> None:
        """Learn which Dask workers there are; say which left (their tasks run again)."""
        threads = dict(self.client.nthreads())
        try:
            processing = {w: [str(k) for k in keys]
                          for w, keys in self.client.processing().items()}
        except Exception:
            processing = {}
        for gone in sorted(set(self.threads) - set(threads)):
            t = self.stats["totals"]
            t["workers_lost"] = t.get("workers_lost", 0) + 1
            lost = [k for k in self.processing.get(gone, []) if k.startswith("vmfuzz-")]
            t["resubmitted"] = t.get("resubmitted", 0) + len(lost)
            if self.on_event is not None:
                what = (f"; Dask runs its campaign{'s' if len(lost) != 1 else ''} "
                        f"{', '.join(lost)} again on another worker" if lost else "")
                self.on_event(f"Dask worker {gone} left{what}")
        for new in sorted(set(threads) - set(self.threads)):
            if self.on_event is not None and self.threads:
                self.on_event(f"Dask worker {new} joined ({threads[new]} threads)")
        self.threads = threads
        self.processing = processing
        self.o.workers = max(1, sum(threads.values()))
        # the session's size: the most worker threads it had at once
        self.session["workers"] = max(self.o.workers, self.session.get("workers") or 0)

    def _alive(self) -> int:
        return len(self.threads)

    def _worker_status(self) -> list[dict[str, Any]]:
        return [{"dask_worker": w, "threads": n, "tasks": self.processing.get(w, [])}
                for w, n in sorted(self.threads.items())]

    # ---------------------------------------------------------------- campaigns
    def _next_campaign(self) -> dict[str, Any]:
        index = self.cursor
        self.cursor += 1
        seed, scheduler, profile = campaign_plan(
            CLUSTER_SLOT, index, self.o.config.schedulers, self.o.run_id or 0)
        return {"seed": seed, "scheduler": scheduler, "profile": profile.name,
                "index": index, "started": now_iso(), "elapsed": round(self.elapsed(), 3)}

    def _submit(self, camp: dict[str, Any]) -> None:
        from vmfuzz.schedules import guided

        known = [[r.get("check"), r.get("label")] for r in self.records
                 if r.get("kind") == "failure" and r.get("corpus")]
        spec = campaign_spec(
            self.o.config, camp["index"], camp["seed"], camp["scheduler"], camp["profile"],
            steps=self.o.campaign_work() or _default_steps(self.o),
            pool=entries_for(self.state, _kernel(self.o.config, camp["profile"]))
            if guided(camp["scheduler"]) else [],
            known=known,
        )
        self.in_flight[camp["index"]] = camp
        self._write_slot()  # the campaign is on disk before it runs anywhere
        key = f"vmfuzz-{self.o.run_id or 0}-{camp['index']}-seed{camp['seed']}"
        fut = self.client.submit(run_campaign, spec, key=key, pure=False)
        self.futures[fut] = camp

    def _collect(self, fut: Any) -> None:
        camp = self.futures.pop(fut)
        status = fut.status
        if status == "finished":
            try:
                out = fut.result()
            except Exception as e:  # the result could not be fetched (its worker left)
                self._crash(camp, e)
                return
            self._take(camp, out)
        elif status == "cancelled":
            return  # stays in flight: --resume submits it again
        else:
            try:
                exc = fut.exception()
            except Exception as e:
                exc = e
            self._crash(camp, exc)

    def _take(self, camp: dict[str, Any], out: dict[str, Any]) -> None:
        """Write what a campaign brought back into the state folder."""
        slot = self.slots[0]
        self._handle(slot, "progress", {
            "examples": out["examples"], "steps": out["steps"],
            "budget_hits": out["budget_hits"], "ops": out["ops"], "labels": out["labels"]})
        t = self.stats["totals"]
        t["worker_cpu_seconds"] = t.get("worker_cpu_seconds", 0.0) + out["cpu_seconds"]
        finished = dict(camp, seconds=out["seconds"], cpu_seconds=out["cpu_seconds"],
                        examples=out["examples"], steps=out["steps"], found=out["found"],
                        dask_worker=f"{out['host']}:{out['pid']}")
        if out["cut"]:
            finished["stopped"] = True  # the session's end cut it short
        if out["pool_in"] or out["pool_out"]:
            finished["pool_in"] = out["pool_in"]
            finished["pool_in_digest"] = out["pool_in_digest"]
            try:
                finished["pool_added"] = add_entries(self.state, "cluster", out["pool_out"])
            except OSError as e:
                self._write_failed(f"{e.filename}: {e.strerror or e}")
        if out["failure"] is not None:
            finished["signature"] = self._finding(camp, out)
        try:
            append_line(self.state / "workers" / f"slot{CLUSTER_SLOT}.log", finished)
        except OSError as e:
            self._write_failed(f"{e.filename}: {e.strerror or e}")
        self._handle(slot, "end", dict(finished, pairs=out["pairs"]))
        self.in_flight.pop(camp["index"], None)
        try:
            self._write_slot()
        except OSError as e:
            self._write_failed(f"{e.filename}: {e.strerror or e}")

    def _finding(self, camp: dict[str, Any], out: dict[str, Any]) -> str:
        """Save a campaign's failure (re-run here from its case) and record it, then the
        smaller endings of its shrunk program by other checks (``others``), each a finding."""
        signature = self._one_finding(camp, out, out["failure"])
        for other in out["failure"].get("others") or ():
            data = dict(out["failure"], **other, minimal_preemptions=None, shrink_passes=[],
                        known=False)
            self._one_finding(camp, out, data, also_of=signature)
        return signature

    def _one_finding(self, camp: dict[str, Any], out: dict[str, Any], data: dict[str, Any],
                     also_of: str | None = None) -> str:
        """Save one failure (re-run here from its case) and record it; its signature."""
        from vmfuzz.case import execute
        from vmfuzz.corpus import from_json

        where = f"{out['host']}:{out['pid']}"
        meta = {"found_by": f"vmfuzz soak --dask (worker {where}, scheduler "
                            f"{camp['scheduler']}, profile {camp['profile']})",
                "seed": camp["seed"], "scheduler": camp["scheduler"],
                "profile": camp["profile"]}
        rec: dict[str, Any] = {
            "kind": "failure", "check": data["check"], "message": data["message"],
            "label": data["label"], "worker": CLUSTER_SLOT, "dask_worker": where,
            "seed": camp["seed"], "scheduler": camp["scheduler"], "profile": camp["profile"],
            "examples": out["examples"],
            "first_failure_example": data["first_failure_example"], "shrunk": data["shrunk"],
            "minimal_preemptions": data["minimal_preemptions"],
            "shrink_passes": data["shrink_passes"], "clock_hit": data["clock_hit"],
            "corpus": None, "timeline": None,
        }
        if also_of is not None:
            rec["also_of"] = also_of
        try:
            cc = from_json(data["case"])
            run = execute(cc.case, cc.source())
            v = run.outcome.violation
            if v is None:
                raise ValueError(f"re-run here, the case ends {run.outcome.kind}")
        except Exception as e:  # kept in the record: the campaign can be re-run
            rec["signature"] = f"{data['check']}|{data['label'] or ''}|unsaved"
            rec["error"] = f"{type(e).__name__}: {e}"
        else:
            like = (known_like(self.records, v.check, v.label) if data.get("known")
                    else None)
            error = save_finding(self.state, self.o.config.corpus, cc.case, v, meta, rec, like)
            if error is not None:
                self._write_failed(f"{error.filename}: {error.strerror or error}")
            if rec.get("corpus_error"):
                self._write_failed(str(rec["corpus_error"]))
        rec["elapsed"] = round(self.elapsed(), 3)
        rec["found_at"] = now_iso()
        self._write_record(rec, camp, "failure" if also_of is None else f"also-{data['check']}")
        return str(rec["signature"])

    def _write_record(self, rec: dict[str, Any], camp: dict[str, Any], kind: str) -> None:
        fid = finding_id(rec["elapsed"], CLUSTER_SLOT, camp["seed"], kind)
        try:
            write_json(self.state / "findings" / f"{fid}.json", rec)
        except OSError as e:
            rec["record_error"] = f"{e.strerror or e}"
            self._write_failed(f"{e.filename}: {e.strerror or e}")
        self._add_record(rec)

    def _crash(self, camp: dict[str, Any], exc: BaseException | None) -> None:
        """A task that raised, or killed every worker that ran it: a crash finding."""
        name = type(exc).__name__ if exc is not None else "lost"
        how = ("killed the Dask workers that ran it" if name == "KilledWorker"
               else f"raised {name}: {exc}")
        rec: dict[str, Any] = {
            "kind": "crash", "signature": f"worker_crash|{name}", "check": "worker_crash",
            "message": f"campaign seed {camp['seed']} {how}", "worker": CLUSTER_SLOT,
            "seed": camp["seed"], "scheduler": camp["scheduler"], "profile": camp["profile"],
            "traceback": "".join(traceback.format_exception(exc)) if exc is not None else None,
            "corpus": None, "timeline": None, "elapsed": round(self.elapsed(), 3),
            "found_at": now_iso(),
        }
        self._write_record(rec, camp, "crash")
        try:
            append_line(self.state / "workers" / f"slot{CLUSTER_SLOT}.log",
                        dict(camp, crashed=name, examples=0, steps=0))
        except OSError as e:
            self._write_failed(f"{e.filename}: {e.strerror or e}")
        self._handle(self.slots[0], "end", dict(camp))
        self.in_flight.pop(camp["index"], None)
        with contextlib.suppress(OSError):
            self._write_slot()

    # ---------------------------------------------------------------- the loop
    def _loop(self) -> None:
        now = time.monotonic()
        for camp in self.resubmit:
            if self.on_event is not None:
                self.on_event(f"submitting again campaign seed {camp.get('seed')}, in flight "
                              "when the last session ended")
            self._submit(camp)
        next_stats = now + self.o.stats_every
        next_poll = now + 1.0
        next_status = now
        while True:
            now = time.monotonic()
            if self.stop_reason is None and now >= self.deadline:
                self.stop_reason = "duration"
            if self.force:
                for fut in list(self.futures):
                    fut.cancel()
                self.futures.clear()
                break
            if self.stop_reason is None:
                while len(self.futures) < self.o.workers:
                    self._submit(self._next_campaign())
            if not self.futures:
                break
            done = [f for f in self.futures if f.done()]
            if not done:
                time.sleep(0.2)
            for fut in done:
                self._collect(fut)
            now = time.monotonic()
            if now >= next_poll:
                with contextlib.suppress(Exception):
                    self._poll_workers()
                next_poll = now + 1.0
            if now >= next_stats:
                self._flush_stats()
                next_stats = now + self.o.stats_every
            if now >= next_status and self.on_status is not None:
                self.on_status(self.snapshot())
                next_status = now + 0.5

    def _shutdown(self) -> None:
        for fut in list(self.futures):
            with contextlib.suppress(Exception):
                fut.cancel()
        self.futures.clear()

    def _sample_process(self, s: _Slot) -> None:
        return None


def _kernel(config: Any, profile: str) -> Any:
    """The ``KernelConfig`` of a campaign of ``profile``."""
    from vmfuzz.soak._plan import profile_named
    from vmfuzz.soak._task import kernel_config

    return kernel_config(config, profile_named(profile))


def _default_steps(o: SoakOptions) -> int:
    from vmfuzz.soak._config import STEPS_PER_CORE_SECOND

    return round(o.campaign_budget() * STEPS_PER_CORE_SECOND)
