"""Measure vmfuzz: engine throughput (scheduler steps/s of a trivial two-task program).

Benchmarks are measurements, not tests: figures vary by machine.  --json prints one object:
{"engine": {"steps": int, "seconds": float, "steps_per_second": float}}.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator

from vmfuzz import Scheduler, Spinlock
from vmfuzz.schedules import RandomWalk


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", action="store_true", help="only the bare engine benchmark")
    p.add_argument("--quick", action="store_true", help="small budgets (finishes in seconds)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", metavar="FILE", help="also write the JSON object to FILE")


def _trivial(lock: Spinlock, sched: Scheduler, n: int) -> Iterator[object]:
    for _ in range(n):
        yield "loop:top"
        yield sched.spin_lock(lock)
        yield "loop:locked"
        sched.spin_unlock(lock)


def bench_engine(steps: int) -> dict[str, float]:
    """Steps/s of two tasks contending on one spinlock under a random schedule."""
    sched = Scheduler(RandomWalk(1), max_steps=10 * steps)
    lock = Spinlock("l")
    per_task = steps // 6
    sched.spawn(_trivial(lock, sched, per_task))
    sched.spawn(_trivial(lock, sched, per_task))
    t0 = time.perf_counter()
    sched.run()
    dt = time.perf_counter() - t0
    return {"steps": sched.step_no, "seconds": round(dt, 4), "steps_per_second": sched.step_no / dt}


def run(args: argparse.Namespace) -> int:
    result = {"engine": bench_engine(30_000 if args.quick else 300_000)}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    if args.json:
        print(json.dumps(result))
    else:
        e = result["engine"]
        rate = e["steps_per_second"]
        print(f"engine: {e['steps']} steps in {e['seconds']:.3f}s = {rate:,.0f} steps/s")
    return 0
