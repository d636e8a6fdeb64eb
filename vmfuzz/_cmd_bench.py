"""Measure vmfuzz: speed of the engine and the model, and how well each schedule strategy finds
the historical bugs.  Benchmarks are measurements, not tests: figures vary by machine.

Sections (all in one run unless --engine):
  engine    scheduler steps/s of a trivial two-task program (no model)
  model     steps/s of the fixed kernel model with all invariants on and all off, and the ratio
  scaling   microseconds per step as the model's sizes grow 1x, 4x, 16x (invariants on)
  fuzz      examples/s and steps/s of a 'vmfuzz fuzz' campaign on the fixed kernel
  bugs      per registered bug and per strategy (preemptions, pct, random, none = no
            preemption at all, i.e. plain stateful testing): found rate over K seeds with a fixed
            budget, median seconds and examples to the first failure, median shrunk size

--json prints one object:
  {"machine": {...}, "engine": {"steps", "seconds", "steps_per_second"},
   "model": {"steps_per_second_checks_on", "steps_per_second_checks_off", "overhead_ratio"},
   "scaling": [{"factor", "us_per_step"}...],
   "fuzz": {"examples", "steps", "seconds", "examples_per_second", "steps_per_second"},
   "bugs": [{"bug", "scheduler", "seeds", "found", "found_rate", "median_seconds",
             "median_examples", "shrunk": {"tasks", "steps", "preemptions"} | null}...],
   "settings": {"quick", "seeds", "budget", "workers"}}
--quick uses small budgets (under 2 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from typing import Any

from vmfuzz import Scheduler, Spinlock, _bench_mutants
from vmfuzz._cores import available_cores
from vmfuzz._scheduler import TaskGen
from vmfuzz.schedules import FUZZ_SCHEDULERS, RandomWalk

STRATEGIES = FUZZ_SCHEDULERS  # every --scheduler choice, from the modes table


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", action="store_true", help="only the bare engine benchmark")
    p.add_argument("--soak", action="append", nargs="?", const="all", default=None,
                   choices=("all", "pool", "cluster"), metavar="pool|cluster",
                   help="only the soak's measurements: distinct interleaving pairs in fixed "
                        "work, pool carried vs cold campaigns; steps per CPU second and per "
                        "wall second on 1 and 2 Dask workers (vmfuzz.soak._bench)")
    p.add_argument("--quick", action="store_true", help="small budgets (under 2 minutes)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", metavar="FILE", help="also write the JSON object to FILE")
    p.add_argument("--seeds", default=None, metavar="K",
                   help="seeds per bug and strategy (default 10, quick 1); with --mutants "
                   "also a list such as 0,3,5-7")
    p.add_argument("--budget", default=None, metavar="TIME",
                   help="budget per bug, strategy and seed: 90s, 2m or seconds (default 60, "
                        "quick 3)")
    p.add_argument("--bug", action="append", default=[], metavar="NAME",
                   help="only these bugs (repeatable; default all)")
    p.add_argument("--strategy", action="append", default=[], choices=STRATEGIES,
                   help="only these strategies (repeatable; default all)")
    p.add_argument("--workers", type=int, default=None,
                   help="processes for the bug-finding section (default: a process per core "
                        f"this process may use, here {available_cores()})")
    _bench_mutants.add_arguments(p)


# --------------------------------------------------------------------------- engine
def _trivial(lock: Spinlock, sched: Scheduler, n: int) -> TaskGen:
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


# --------------------------------------------------------------------------- model
def bench_model(quick: bool) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Invariant overhead at 1x, and cost per step at 1x / 4x / 16x (checks on)."""
    from vmfuzz._bench_invariants import run_model
    from vmfuzz.kernel import KernelConfig

    seeds = range(3 if quick else 10)
    base = KernelConfig()

    def rate(config: KernelConfig, checks: bool) -> float:
        steps = secs = 0.0
        for s in seeds:
            n, dt, _ = run_model(config, checks, s)
            steps += n
            secs += dt
        return steps / secs if secs else 0.0

    on, off = rate(base, True), rate(base, False)
    model = {
        "steps_per_second_checks_on": round(on, 1),
        "steps_per_second_checks_off": round(off, 1),
        "overhead_ratio": round(off / on, 3) if on else 0.0,
    }
    scaling = []
    for factor in (1, 4, 16):
        r = rate(base.scaled(factor), True)
        scaling.append({"factor": factor, "us_per_step": round(1e6 / r, 2) if r else 0.0})
    return model, scaling


def bench_fuzz(quick: bool) -> dict[str, float]:
    from vmfuzz.campaign import fuzz
    from vmfuzz.kernel import KernelConfig

    r = fuzz(KernelConfig(), seed_value=1, budget=5 if quick else 30)
    return {
        "examples": r.examples,
        "steps": r.steps,
        "seconds": round(r.seconds, 2),
        "examples_per_second": round(r.examples / r.seconds, 2),
        "steps_per_second": round(r.steps / r.seconds, 1),
        "found": r.found,
    }


# --------------------------------------------------------------------------- bugs
def _one_bug_run(job: tuple[str, str, int, float]) -> dict[str, Any]:
    bug, scheduler, seed, budget = job
    from vmfuzz.campaign import fuzz
    from vmfuzz.kernel import KernelConfig

    r = fuzz(
        KernelConfig(bugs=frozenset([bug])),
        scheduler=scheduler,
        seed_value=seed,
        budget=budget,
        verify_minimal=False,
    )
    stats = r.stats
    return {
        "bug": bug,
        "scheduler": scheduler,
        "seed": seed,
        "found": r.found,
        "invariant": r.invariant,
        "seconds": r.first_failure_seconds,
        "examples": stats.first_failure_example if stats else None,
        "shrunk": r.shrunk(),
    }


def bench_bugs(
    bugs: list[str], strategies: list[str], seeds: int, budget: float, workers: int,
    progress: bool,
) -> list[dict[str, Any]]:
    jobs = [(b, s, k, budget) for b in bugs for s in strategies for k in range(seeds)]
    results: list[dict[str, Any]] = []
    from vmfuzz.plugins import load_plugins, loaded_specs

    ctx = multiprocessing.get_context("spawn")
    plugins = loaded_specs()  # each run process loads this one's plugins first
    with ctx.Pool(max(1, workers), load_plugins if plugins else None, (plugins,)) as pool:
        for i, res in enumerate(pool.imap_unordered(_one_bug_run, jobs), 1):
            results.append(res)
            if progress:
                sys.stderr.write(f"\r  bug runs: {i}/{len(jobs)}")
                sys.stderr.flush()
    if progress:
        sys.stderr.write("\n")
    rows = []
    for b in bugs:
        for s in strategies:
            runs = [r for r in results if r["bug"] == b and r["scheduler"] == s]
            hits = [r for r in runs if r["found"]]
            shr = [r["shrunk"] for r in hits if r["shrunk"]]

            def med(key: str, items: list[dict[str, Any]]) -> float | None:
                vals = [x[key] for x in items if x.get(key) is not None]
                return round(statistics.median(vals), 2) if vals else None

            rows.append({
                "bug": b,
                "scheduler": s,
                "seeds": len(runs),
                "found": len(hits),
                "found_rate": round(len(hits) / len(runs), 3) if runs else 0.0,
                "median_seconds": med("seconds", hits),
                "median_examples": med("examples", hits),
                "shrunk": {k: med(k, shr) for k in ("tasks", "steps", "preemptions")}
                if shr else None,
                "invariants": sorted({str(r["invariant"]) for r in hits}),
            })
    return rows


# --------------------------------------------------------------------------- output
def _table(result: dict[str, Any]) -> str:
    lines = []
    e = result["engine"]
    lines.append(f"engine   {e['steps_per_second']:>12,.0f} steps/s (two tasks, one spinlock)")
    if "model" in result:
        m = result["model"]
        lines.append(
            f"model    {m['steps_per_second_checks_on']:>12,.0f} steps/s with all invariants, "
            f"{m['steps_per_second_checks_off']:,.0f} without (overhead x{m['overhead_ratio']})"
        )
        lines.append("scaling  " + ", ".join(
            f"{s['factor']}x: {s['us_per_step']} us/step" for s in result["scaling"]))
        f = result["fuzz"]
        lines.append(
            f"fuzz     {f['examples_per_second']:>12} examples/s, {f['steps_per_second']:,.0f} "
            f"steps/s ({f['examples']} examples in {f['seconds']}s)"
        )
    if result.get("bugs"):
        lines.append("")
        lines.append("| bug | strategy | found | median s | median examples | shrunk "
                     "tasks/steps/preemptions |")
        lines.append("|---|---|---|---|---|---|")
        for r in result["bugs"]:
            sh = r["shrunk"]
            size = f"{sh['tasks']}/{sh['steps']}/{sh['preemptions']}" if sh else "-"
            lines.append(
                f"| {r['bug']} | {r['scheduler']} | {r['found']}/{r['seeds']} | "
                f"{r['median_seconds'] if r['median_seconds'] is not None else '-'} | "
                f"{r['median_examples'] if r['median_examples'] is not None else '-'} | "
                f"{size} |"
            )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.soak:
        from vmfuzz.soak._bench import run_bench

        which = ("pool", "cluster") if "all" in args.soak else tuple(args.soak)
        return run_bench(args.json, args.quick, which)
    if args.mutants or args.mutant:
        return _bench_mutants.run(args)
    if args.seeds is not None:
        if not str(args.seeds).isdigit():
            sys.stderr.write("vmfuzz bench: error: --seeds: a number of seeds (a list is for "
                             "--mutants)\n")
            return 2
        args.seeds = int(args.seeds)
    if args.workers is None:
        args.workers = available_cores()
    from vmfuzz._limits import MAX_SEEDS, MAX_WORKERS

    if not 1 <= args.workers <= MAX_WORKERS:
        sys.stderr.write(f"vmfuzz bench: error: --workers must be from 1 to {MAX_WORKERS}\n")
        return 2
    if args.seeds is not None and not 1 <= args.seeds <= MAX_SEEDS:
        sys.stderr.write(f"vmfuzz bench: error: --seeds must be from 1 to {MAX_SEEDS}\n")
        return 2
    budget_given: float | None = None
    if args.budget is not None:
        from vmfuzz._duration import DurationError, parse_duration

        try:
            budget_given = parse_duration(str(args.budget))
        except DurationError as e:
            sys.stderr.write(f"vmfuzz bench: error: --budget: {e}\n")
            return 2
    progress = sys.stderr.isatty() and not args.json
    result: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "cores_available": available_cores(),
            "platform": platform.platform(),
        },
        "engine": bench_engine(30_000 if args.quick else 300_000),
    }
    if not args.engine:
        from vmfuzz.kernel import BUGS

        unknown = [b for b in args.bug if b not in BUGS]
        if unknown:
            sys.stderr.write(f"vmfuzz bench: error: unknown bug {', '.join(unknown)}\n")
            return 2
        if progress:
            sys.stderr.write("measuring model throughput and scaling...\n")
        result["model"], result["scaling"] = bench_model(args.quick)
        if progress:
            sys.stderr.write("measuring fuzz throughput...\n")
        result["fuzz"] = bench_fuzz(args.quick)
        seeds = args.seeds or (1 if args.quick else 10)
        budget = budget_given or (3.0 if args.quick else 60.0)
        bugs = args.bug or sorted(BUGS)
        strategies = args.strategy or (
            ["mixed", "none"] if args.quick else list(STRATEGIES)
        )
        if progress:
            sys.stderr.write(
                f"bug finding: {len(bugs)} bugs x {len(strategies)} strategies x {seeds} seeds, "
                f"{budget:g}s each, {args.workers} workers\n"
            )
        result["bugs"] = bench_bugs(bugs, strategies, seeds, budget, args.workers, progress)
        result["settings"] = {
            "quick": args.quick, "seeds": seeds, "budget": budget, "workers": args.workers,
            "strategies": strategies,
        }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    if args.json:
        print(json.dumps(result))
    else:
        print(_table(result))
    return 0
