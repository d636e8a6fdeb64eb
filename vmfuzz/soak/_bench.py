"""The soak's measurements (``vmfuzz bench --soak``): what the shared pool buys, and what a Dask
worker more gives.

``pool``: the same campaigns (seeds, scheduler, step budget) run twice, cold (each its own
empty pool, as soaks ran before the shared pool) and carried (each starts from the entries the
earlier ones added, as a soak's campaigns do now: adopted as a pool folder hands them over).
After each campaign: the distinct interleaving pairs the campaigns have met together, and the
work done (scheduler steps: the same on any machine; CPU seconds).  The two kinds alternate,
so both see the same load.

``cluster``: one set of campaigns (fixed step budgets) run in this process, then as tasks on a
Dask cluster of 1 and of 2 single-thread workers on this machine (``dask scheduler`` and
``dask worker`` processes), alternating.  Each gives the steps done (identical: the same
work), the wall time, the workers' CPU seconds, steps per CPU second and per wall second.  On
shared or loaded cores, the CPU-based rates are the figure (the wall-clock speed-up only means
something on idle cores).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from vmfuzz.soak._config import SoakConfig
from vmfuzz.soak._plan import CLUSTER_SLOT, SEED_STRIDE, campaign_plan
from vmfuzz.soak._task import campaign_spec, run_campaign

Say = Callable[[str], None]
STORED = 1024  # entries a pool folder's writer keeps (vmfuzz._poolstore.CAPACITY)


def bench_pool(*, campaigns: int = 6, steps: int = 100_000, reps: int = 2,
               scheduler: str = "pct", seed0: int = 0, say: Say | None = None
               ) -> dict[str, Any]:
    """Distinct interleaving pairs after each of ``campaigns`` campaigns of ``steps`` steps,
    cold and with the pool carried, ``reps`` times (seeds ``seed0 + 1000 * rep + i``)."""
    from vmfuzz.campaign import fuzz
    from vmfuzz.kernel import KernelConfig
    from vmfuzz.pool import Pool

    config = KernelConfig()
    out = []
    for rep in range(reps):
        cold: set[Any] = set()
        carried: set[Any] = set()
        programs: list[Any] = []
        work = {"cold": [0, 0.0], "carried": [0, 0.0]}  # steps, CPU seconds
        rows = []
        for i in range(campaigns):
            seed = seed0 + 1000 * rep + i
            cpu = time.process_time()
            pool = Pool(config)
            r = fuzz(config, scheduler=scheduler, seed_value=seed, budget=None,
                     step_budget=steps, pool=pool)
            cold |= set(pool.hits)
            work["cold"][0] += r.steps
            work["cold"][1] += time.process_time() - cpu
            cpu = time.process_time()
            pool = Pool(config)
            for e in programs[-STORED:]:  # what the run's pool folder would hand it
                pool.adopt(e)
            pool.unsaved = []
            r = fuzz(config, scheduler=scheduler, seed_value=seed, budget=None,
                     step_budget=steps, pool=pool)
            programs += pool.unsaved
            carried |= set(pool.hits)
            work["carried"][0] += r.steps
            work["carried"][1] += time.process_time() - cpu
            row = {"campaign": i + 1, "seed": seed,
                   "cold_pairs": len(cold), "cold_steps": work["cold"][0],
                   "cold_cpu": round(work["cold"][1], 1),
                   "carried_pairs": len(carried), "carried_steps": work["carried"][0],
                   "carried_cpu": round(work["carried"][1], 1),
                   "pool_programs": len(programs)}
            rows.append(row)
            if say is not None:
                say(f"pool rep {rep} campaign {i + 1}: cold {len(cold)} pairs, carried "
                    f"{len(carried)} pairs ({len(programs)} programs in the pool)")
        out.append(rows)
    return {"campaigns": campaigns, "steps": steps, "scheduler": scheduler, "reps": out}


@contextlib.contextmanager
def _local_cluster(workers: int, folder: Path) -> Iterator[str]:
    """A Dask scheduler and ``workers`` single-thread workers on localhost, each a process."""
    from distributed import Client

    dask = shutil.which("dask", path=os.path.dirname(sys.executable)) or shutil.which("dask")
    if dask is None:
        raise RuntimeError('the dask command is not installed: pip install "vmfuzz[cluster]"')
    sched_file = folder / f"scheduler-{workers}.json"
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> None:
        procs.append(subprocess.Popen([dask, *args], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True))

    try:
        start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
              "--scheduler-file", str(sched_file))
        end = time.monotonic() + 120
        while not sched_file.exists() and time.monotonic() < end:
            time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        for _ in range(workers):
            start("worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                  "--host", "127.0.0.1")
        with Client(address, timeout="60s", set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=180)
        yield address
    finally:
        for p in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def _specs(campaigns: int, steps: int) -> list[dict[str, Any]]:
    config = SoakConfig()
    out = []
    for i in range(campaigns):
        seed, scheduler, profile = campaign_plan(CLUSTER_SLOT, i)
        out.append(campaign_spec(config, i, seed, scheduler, profile.name, steps=steps))
    return out


def _measure(results: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    steps = sum(r["steps"] for r in results)
    cpu = sum(r["cpu_seconds"] for r in results)
    return {"steps": steps, "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
            "steps_per_cpu_second": round(steps / cpu) if cpu else None,
            "steps_per_wall_second": round(steps / wall) if wall else None,
            "cores_busy": round(cpu / wall, 2) if wall else None}


def _warm(steps: int = 2_000) -> int:
    """One small campaign (not one of the measured ones), so that what is timed is the
    steady state a soak of hours runs in: imports done, the booted world cached."""
    seed, scheduler, profile = campaign_plan(CLUSTER_SLOT, SEED_STRIDE - 1)  # none measured
    spec = campaign_spec(SoakConfig(), SEED_STRIDE - 1, seed, scheduler, profile.name,
                         steps=steps)
    return int(run_campaign(spec)["steps"])


def bench_cluster(*, campaigns: int = 8, steps: int = 30_000, reps: int = 2,
                  say: Say | None = None) -> dict[str, Any]:
    """The same campaigns in this process, on 1 and on 2 Dask workers, ``reps`` times; every
    worker (and this process) runs one small warm-up campaign before the clock starts."""
    from distributed import Client

    specs = _specs(campaigns, steps)
    rows = []
    _warm()
    with tempfile.TemporaryDirectory(prefix="vmfuzz-bench-") as tmp:
        for rep in range(reps):
            t0 = time.monotonic()
            results = [run_campaign(s) for s in specs]
            row = {"rep": rep, "where": "this process", **_measure(results, time.monotonic() - t0)}
            rows.append(row)
            if say is not None:
                say(f"cluster rep {rep}: {row}")
            for n in (1, 2):
                with _local_cluster(n, Path(tmp)) as address, \
                        Client(address, timeout="60s", set_as_default=False) as client:
                    client.run(_warm)
                    t0 = time.monotonic()
                    futs = [client.submit(run_campaign, s, pure=False) for s in specs]
                    results = client.gather(futs)
                    row = {"rep": rep, "where": f"{n} Dask worker{'s' if n > 1 else ''}",
                           **_measure(results, time.monotonic() - t0),
                           "hosts": sorted({f"{r['host']}:{r['pid']}" for r in results})}
                rows.append(row)
                if say is not None:
                    say(f"cluster rep {rep}: {row}")
    return {"campaigns": campaigns, "steps": steps, "rows": rows}


def pool_table(res: dict[str, Any]) -> str:
    """The pool measurement as a text table."""
    lines = [f"distinct interleaving pairs after N campaigns of {res['steps']:,} steps "
             f"({res['scheduler']}), cold pools vs the pool carried across campaigns:",
             f"{'rep':>3} {'N':>3} {'cold pairs':>10} {'steps':>10} {'CPU s':>7} "
             f"{'carried':>8} {'steps':>10} {'CPU s':>7} {'pool':>5}"]
    for rep, rows in enumerate(res["reps"]):
        for r in rows:
            lines.append(f"{rep:>3} {r['campaign']:>3} {r['cold_pairs']:>10} "
                         f"{r['cold_steps']:>10,} {r['cold_cpu']:>7} {r['carried_pairs']:>8} "
                         f"{r['carried_steps']:>10,} {r['carried_cpu']:>7} "
                         f"{r['pool_programs']:>5}")
    for rep, rows in enumerate(res["reps"]):
        steps, cold, carried = at_equal_work(rows)
        lines.append(f"rep {rep}, at the cold run's {steps:,} steps: cold {cold} pairs, "
                     f"carried {carried:g} ({100 * (carried - cold) / max(1, cold):+.1f}%)")
    return "\n".join(lines) + "\n"


def at_equal_work(rows: list[dict[str, Any]]) -> tuple[int, int, float]:
    """(steps, cold pairs, carried pairs) at the cold campaigns' total work: a campaign runs
    past its step budget by its last pool round, and a carried pool's rounds are longer, so
    the carried run's pairs are read off its curve (linear between campaigns) at that work."""
    steps, cold = rows[-1]["cold_steps"], rows[-1]["cold_pairs"]
    pts = [(0, 0)] + [(r["carried_steps"], r["carried_pairs"]) for r in rows]
    for (s0, p0), (s1, p1) in itertools.pairwise(pts):
        if s0 <= steps <= s1:
            return steps, cold, round(p0 + (p1 - p0) * (steps - s0) / max(1, s1 - s0), 1)
    return steps, cold, float(pts[-1][1])


def cluster_table(res: dict[str, Any]) -> str:
    """The cluster measurement as a text table."""
    lines = [f"{res['campaigns']} campaigns of {res['steps']:,} steps (fixed kernel):",
             f"{'rep':>3} {'where':<16} {'steps':>9} {'wall s':>7} {'CPU s':>7} "
             f"{'steps/CPU s':>11} {'steps/wall s':>12} {'cores busy':>10}"]
    for r in res["rows"]:
        lines.append(f"{r['rep']:>3} {r['where']:<16} {r['steps']:>9,} {r['wall_seconds']:>7} "
                     f"{r['cpu_seconds']:>7} {r['steps_per_cpu_second']!s:>11} "
                     f"{r['steps_per_wall_second']!s:>12} {r['cores_busy']!s:>10}")
    return "\n".join(lines) + "\n"


def run_bench(as_json: bool, quick: bool, sections: tuple[str, ...] = ("pool", "cluster")
              ) -> int:
    """``vmfuzz bench --soak``: print the tables (or one JSON object)."""

    def say(msg: str) -> None:
        sys.stderr.write(f"vmfuzz bench: {msg}\n")
        sys.stderr.flush()

    out: dict[str, Any] = {}
    if "pool" in sections:
        out["pool"] = bench_pool(campaigns=3 if quick else 6,
                                 steps=40_000 if quick else 100_000,
                                 reps=1 if quick else 2, say=say)
        if not as_json:
            sys.stdout.write(pool_table(out["pool"]))
    if "cluster" in sections:
        try:
            import distributed  # noqa: F401
        except ImportError:
            sys.stderr.write('vmfuzz bench: the cluster section needs Dask distributed: '
                             'pip install "vmfuzz[cluster]"\n')
            return 2
        out["cluster"] = bench_cluster(campaigns=2 if quick else 8,
                                       steps=10_000 if quick else 30_000,
                                       reps=1 if quick else 2, say=say)
        if not as_json:
            sys.stdout.write(cluster_table(out["cluster"]))
    if as_json:
        print(json.dumps(out))
    return 0
