"""Measure vmfuzz: how fast the engine, the model and a campaign run, and how well each schedule
strategy finds the registered bugs.  Benchmarks are measurements, not tests.

Every rate is per CPU-second of the process that did the work (time.process_time), with the
wall-clock rate beside it; every section repeats its work (interleaved where two things are
compared) and gives min/median/max over the repetitions; every workload is fixed, so two runs,
two machines or two versions of the code measure the same work.

Sections:
  limits   the ceilings: bare generators resumed round-robin (the interpreter's limit), the
           Scheduler with label-only tasks, the Scheduler as campaigns build it (lockdep, trace,
           trace hash), a plain three-rule Hypothesis state machine and the fuzzer's own
           machine with no model step run (examples per CPU-s, same settings; their ratio is
           what the fuzzer's machine adds to an example)
  model    the recorded workload (vmfuzz/workloads/hotpath-vN.json: a campaign's own runs as
           decision replays) with every check off and on, interleaved; the overhead of the
           checks; runs whose trace no longer matches the recording are counted (drift)
  scaling  one fixed program at sizes 1x, 4x, 16x: CPU microseconds per step and per run
  fuzz     'vmfuzz fuzz --seed 1 --max-examples N' on the fixed kernel: steps and examples
           per CPU-second
  bugs     per bug, strategy and seed, a campaign with a work budget (model steps): found
           rate, median steps, examples and CPU-s to the first failure, median shrunk size;
           the peak and the growth of each worker process's RSS

Duration: --quick is about 90 s of CPU (under two minutes on two idle cores).  The default runs
the same sections with more repetitions and every bug x every strategy x 3 seeds at 200ksteps:
about 3 CPU-hours, 1.5 hours on two cores; narrow it with --bug, --strategy, --seeds, --budget
or skip it with --no-bugs.

--mutants and --soak run other benchmarks instead (the mutation benchmark, the soak's).

--json prints one object: {"machine", "settings", "limits", "model", "scaling", "fuzz",
"bugs", "rss"}; a rate is {"min", "median", "max"} per CPU-second (and "wall_median").
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from vmfuzz import Scheduler, Spinlock, _bench_mutants
from vmfuzz._cores import available_cores
from vmfuzz._scheduler import TaskGen
from vmfuzz.schedules import FUZZ_SCHEDULERS, RandomWalk

STRATEGIES = FUZZ_SCHEDULERS  # every --scheduler choice, from the modes table
DEFAULT_BUDGET = "200ksteps"
QUICK_BUDGET = "5ksteps"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", action="store_true", help="only the limits section")
    p.add_argument("--soak", action="append", nargs="?", const="all", default=None,
                   choices=("all", "pool", "cluster"), metavar="pool|cluster",
                   help="only the soak's measurements: distinct interleaving pairs in fixed "
                        "work, pool carried vs cold campaigns; steps per CPU second and per "
                        "wall second on 1 and 2 Dask workers (vmfuzz.soak._bench)")
    p.add_argument("--quick", action="store_true",
                   help="fewer repetitions and small budgets: about 90 CPU-s, under two "
                        "minutes on two cores")
    p.add_argument("--no-bugs", action="store_true", help="skip the bug-finding section")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", metavar="FILE", help="also write the JSON object to FILE")
    p.add_argument("--reps", type=int, default=None, metavar="N",
                   help="repetitions of each measured workload (default 7, quick 3)")
    p.add_argument("--seeds", default=None, metavar="K",
                   help="seeds per bug and strategy (default 3, quick 1); with --mutants "
                   "also a list such as 0,3,5-7")
    p.add_argument("--budget", default=None, metavar="WORK",
                   help=f"budget per bug, strategy and seed: model steps (default "
                        f"{DEFAULT_BUDGET}, quick {QUICK_BUDGET}: the same work on any "
                        "machine), or CPU (90cpu) or wall time (60s)")
    p.add_argument("--bug", action="append", default=[], metavar="NAME",
                   help="only these bugs (repeatable; default all)")
    p.add_argument("--strategy", action="append", default=[], choices=STRATEGIES,
                   help="only these strategies (repeatable; default all, quick mixed)")
    p.add_argument("--workers", type=int, default=None,
                   help="processes for the bug-finding section (default: a process per core "
                        f"this process may use, here {available_cores()})")
    _bench_mutants.add_arguments(p)


# --------------------------------------------------------------------------- figures
def spread(values: Sequence[float], nd: int = 1) -> dict[str, float]:
    """min / median / max of repeated measurements."""
    v = sorted(values)
    if not v:
        return {"min": 0.0, "median": 0.0, "max": 0.0}
    return {"min": round(v[0], nd), "median": round(statistics.median(v), nd),
            "max": round(v[-1], nd)}


def _timed(fn: Callable[[], int]) -> tuple[int, float, float]:
    """(work units ``fn`` reports, CPU seconds, wall seconds)."""
    c0, t0 = time.process_time(), time.perf_counter()
    n = fn()
    return n, time.process_time() - c0, time.perf_counter() - t0


def _rates(runs: list[tuple[int, float, float]]) -> dict[str, Any]:
    """Per-CPU-second spread of (units, cpu, wall) repetitions, with the median wall rate."""
    return {
        **spread([n / c for n, c, _ in runs if c > 0]),
        "wall_median": round(statistics.median(n / w for n, _, w in runs if w > 0), 1)
        if any(w > 0 for _, _, w in runs) else 0.0,
        "units": runs[0][0] if runs else 0,
    }


def _interleave(
    jobs: Sequence[tuple[str, Callable[[], int]]], reps: int, say: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    """Each job ``reps`` times, alternating (A B C A B C ...): the machine's load falls on all."""
    runs: dict[str, list[tuple[int, float, float]]] = {name: [] for name, _ in jobs}
    for i in range(reps):
        for name, fn in jobs:
            say(f"{name} {i + 1}/{reps}")
            runs[name].append(_timed(fn))
    return {name: _rates(r) for name, r in runs.items()}


# --------------------------------------------------------------------------- limits
def _labels(n: int) -> TaskGen:
    for _ in range(n):
        yield "loop:top"


def _bare_generators(steps: int) -> int:
    gens = [_labels(steps // 2), _labels(steps // 2)]
    n = 0
    while gens:
        for g in list(gens):
            try:
                next(g)
                n += 1
            except StopIteration:
                gens.remove(g)
    return n


def _bare_scheduler(steps: int) -> int:
    sched = Scheduler(RandomWalk(1), max_steps=10 * steps, record_trace=False)
    sched.spawn(_labels(steps // 2))
    sched.spawn(_labels(steps // 2))
    sched.run()
    return sched.step_no


def _trivial(lock: Spinlock, sched: Scheduler, n: int) -> TaskGen:
    for _ in range(n):
        yield "loop:top"
        yield sched.spin_lock(lock)
        yield "loop:locked"
        sched.spin_unlock(lock)


def _fuzzer_scheduler(steps: int) -> int:
    """Two tasks on one spinlock, as the fuzzer builds a scheduler (lockdep, trace, hash)."""
    from vmfuzz.lockdep import LockDep

    sched = Scheduler(RandomWalk(1), max_steps=10 * steps, lockdep=LockDep())
    lock = Spinlock("l")
    sched.spawn(_trivial(lock, sched, steps // 6))
    sched.spawn(_trivial(lock, sched, steps // 6))
    sched.run_to_outcome()
    return sched.step_no


def _plain_machine(examples: int) -> int:
    """Examples of a plain three-rule Hypothesis state machine (derandomized)."""
    from hypothesis import strategies as st
    from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

    class Plain(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.items: list[int] = []

        @rule(x=st.integers(0, 3))
        def add(self, x: int) -> None:
            self.items.append(x)

        @rule()
        def drop(self) -> None:
            if self.items:
                self.items.pop()

        @rule(n=st.integers(1, 400))
        def advance(self, n: int) -> None:
            self.items = self.items[:n]

    count = 0

    class Counted(Plain):
        def __init__(self) -> None:
            nonlocal count
            count += 1
            super().__init__()

    run_state_machine_as_test(Counted, settings=_machine_settings(examples))
    return count


def _machine_settings(examples: int) -> Any:
    """The settings both machine rows run under: derandomized, ten rules an example."""
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=examples, derandomize=True, database=None, deadline=None,
        suppress_health_check=list(HealthCheck), stateful_step_count=10)


def _vmfuzz_machine(examples: int) -> int:
    """Examples of the fuzzer's own state machine with the model at its cheapest: no scheduler
    step runs (its rules draw, spawn and queue, its setup restores the drawn world and installs
    the checks, its teardown records the case): what the machine costs an example beside the
    plain one, under the same settings."""
    from hypothesis.stateful import run_state_machine_as_test

    from vmfuzz.context import CampaignContext
    from vmfuzz.kernel import KernelConfig
    from vmfuzz.strategies.machine import KernelMachine

    ctx = CampaignContext(KernelConfig())

    class NoSteps(KernelMachine):
        def __init__(self) -> None:
            super().__init__(ctx)

        def _run(self, steps: int | None) -> None:
            return None

    run_state_machine_as_test(NoSteps, settings=_machine_settings(examples))
    return ctx.stats.examples


def bench_limits(quick: bool, reps: int, say: Callable[[str], None]) -> dict[str, Any]:
    steps = 30_000 if quick else 200_000
    examples = 100 if quick else 400
    out: dict[str, Any] = _interleave([
        ("bare_generators", lambda: _bare_generators(steps)),
        ("bare_scheduler", lambda: _bare_scheduler(steps)),
        ("fuzzer_scheduler", lambda: _fuzzer_scheduler(steps)),
    ], reps, say)
    machines = _interleave([
        ("plain_machine", lambda: _plain_machine(examples)),
        ("vmfuzz_machine", lambda: _vmfuzz_machine(examples)),
    ], reps, say)
    out["plain_machine_examples"] = machines["plain_machine"]
    out["vmfuzz_machine_examples"] = machines["vmfuzz_machine"]
    plain, ours = machines["plain_machine"]["median"], machines["vmfuzz_machine"]["median"]
    out["machine_cost_ratio"] = round(plain / ours, 2) if ours else None
    return out


# --------------------------------------------------------------------------- model
def bench_model(reps: int, say: Callable[[str], None]) -> dict[str, Any]:
    """The recorded workload, every check off and on, interleaved."""
    from vmfuzz import _workload as wl

    w = wl.load()
    drift = {"off": 0, "on": 0}

    def one(checks: bool) -> Callable[[], int]:
        def go() -> int:
            p = wl.replay(w, checks=checks)
            drift["on" if checks else "off"] = max(drift["on" if checks else "off"],
                                                   p.mismatches)
            return p.steps
        return go

    r = _interleave([("checks_off", one(False)), ("checks_on", one(True))], reps, say)
    on, off = r["checks_on"]["median"], r["checks_off"]["median"]
    return {
        "workload": f"hotpath-v{w.version}: {len(w.runs)} runs, {w.steps} steps ({w.recorded})",
        "checks_off": r["checks_off"],
        "checks_on": r["checks_on"],
        "overhead": round(off / on, 2) if on else None,
        "drifted_runs": max(drift.values()),
    }


def bench_scaling(reps: int, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """One fixed program (each task: the model workload over 4 pages) at 1x, 4x, 16x."""
    from vmfuzz._bench_invariants import model_case
    from vmfuzz.case import execute
    from vmfuzz.kernel import KernelConfig

    rows = []
    for factor in (1, 4, 16):
        case = model_case(KernelConfig().scaled(factor), 0, span=4)
        execute(case)  # its world's first boot is not a run's cost
        runs: list[tuple[int, float, float]] = []
        for i in range(reps):
            say(f"scaling {factor}x {i + 1}/{reps}")
            runs.append(_timed(lambda c=case: execute(c).outcome.steps))  # type: ignore[misc]
        cpu = statistics.median(c for _, c, _ in runs)
        rows.append({"factor": factor, "steps": runs[0][0],
                     "us_per_step": round(1e6 * cpu / runs[0][0], 2) if runs[0][0] else None,
                     "ms_per_run": round(1e3 * cpu, 2)})
    return rows


def bench_fuzz(quick: bool, reps: int, say: Callable[[str], None]) -> dict[str, Any]:
    """A whole campaign at a fixed seed and example count: the same work every time."""
    from vmfuzz.campaign import fuzz
    from vmfuzz.kernel import KernelConfig

    n = 100 if quick else 300
    steps: list[tuple[int, float, float]] = []
    examples: list[tuple[int, float, float]] = []
    for i in range(reps):
        say(f"fuzz --seed 1 --max-examples {n} {i + 1}/{reps}")
        c0, t0 = time.process_time(), time.perf_counter()
        r = fuzz(KernelConfig(), seed_value=1, max_examples=n, budget=None)
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        steps.append((r.steps, cpu, wall))
        examples.append((r.examples, cpu, wall))
    return {"command": f"fuzz --seed 1 --max-examples {n}", "steps": _rates(steps),
            "examples": _rates(examples)}


# --------------------------------------------------------------------------- bugs
def _one_bug_run(job: tuple[str, str, int, str, str, bool]) -> dict[str, Any]:
    bug, scheduler, seed, kind, amount, quick = job
    from vmfuzz.campaign import HYPOTHESIS_SHRINK_RUNS, POST_SHRINK_RUNS, fuzz
    from vmfuzz.kernel import KernelConfig

    c0 = time.process_time()
    r = fuzz(
        KernelConfig(bugs=frozenset([bug])),
        scheduler=scheduler,
        seed_value=seed,
        budget=float(amount) if kind == "wall" else None,
        step_budget=int(amount) if kind == "steps" else None,
        cpu_budget=float(amount) if kind == "cpu" else None,
        verify_minimal=False,
        # --quick: a short shrink (its sizes are rougher), as a found bug's shrink may take
        # most of a minute of CPU.
        shrink_runs=100 if quick else HYPOTHESIS_SHRINK_RUNS,
        post_shrink_runs=300 if quick else POST_SHRINK_RUNS,
    )
    stats = r.stats
    return {
        "bug": bug,
        "scheduler": scheduler,
        "seed": seed,
        "found": r.found,
        "invariant": r.invariant,
        "steps": r.first_failure_steps,
        "examples": stats.first_failure_example if stats else None,
        "cpu_seconds": round(time.process_time() - c0, 2),
        "shrunk": r.shrunk(),
        "pid": os.getpid(),
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def bench_bugs(
    bugs: list[str], strategies: list[str], seeds: int, budget: tuple[str, str], workers: int,
    say: Callable[[str], None], quick: bool = False,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows per bug and strategy, and the RSS of each worker (first and last job, peak)."""
    jobs = [(b, s, k, *budget, quick) for b in bugs for s in strategies for k in range(seeds)]
    results: list[dict[str, Any]] = []
    from vmfuzz.plugins import load_plugins, loaded_specs

    ctx = multiprocessing.get_context("spawn")
    plugins = loaded_specs()  # each run process loads this one's plugins first
    with ctx.Pool(max(1, workers), load_plugins if plugins else None, (plugins,)) as pool:
        for i, res in enumerate(pool.imap(_one_bug_run, jobs), 1):
            results.append(res)
            say(f"bug runs {i}/{len(jobs)}")
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
                "median_steps": med("steps", hits),
                "median_examples": med("examples", hits),
                "median_cpu_seconds": med("cpu_seconds", runs),
                "shrunk": {k: med(k, shr) for k in ("tasks", "steps", "preemptions")}
                if shr else None,
                "invariants": sorted({str(r["invariant"]) for r in hits}),
            })
    rss = []
    for pid in dict.fromkeys(r["pid"] for r in results):
        mine = [r["maxrss_kb"] for r in results if r["pid"] == pid]
        rss.append({"jobs": len(mine), "first_mb": round(mine[0] / 1024, 1),
                    "peak_mb": round(max(mine) / 1024, 1),
                    "growth_mb": round((mine[-1] - mine[0]) / 1024, 1)})
    return rows, rss


# --------------------------------------------------------------------------- output
def _r(x: dict[str, Any]) -> str:
    return (f"{x['median']:>12,.0f} /CPU-s (min {x['min']:,.0f}, max {x['max']:,.0f}; "
            f"wall {x['wall_median']:,.0f}/s)")


def _table(result: dict[str, Any]) -> str:
    lines = []
    lim = result.get("limits")
    if lim:
        lines.append("limits (steps per CPU-second, median of repetitions)")
        for key, what in (("bare_generators", "bare generators, round-robin next()"),
                          ("bare_scheduler", "Scheduler, label-only tasks"),
                          ("fuzzer_scheduler", "Scheduler as campaigns build it")):
            lines.append(f"  {what:<38}{_r(lim[key])}")
        lines.append(f"  {'plain Hypothesis machine (examples)':<38}"
                     f"{_r(lim['plain_machine_examples'])}")
        if "vmfuzz_machine_examples" in lim:
            lines.append(f"  {'vmfuzz machine, no model step (ex.)':<38}"
                         f"{_r(lim['vmfuzz_machine_examples'])}")
            lines.append(f"  an example of the vmfuzz machine costs x{lim['machine_cost_ratio']} "
                         "a plain machine's (same settings, model aside)")
    m = result.get("model")
    if m:
        lines.append(f"model    {m['workload']}")
        lines.append(f"  {'every check off':<38}{_r(m['checks_off'])}")
        lines.append(f"  {'every check on':<38}{_r(m['checks_on'])}")
        lines.append(f"  overhead of the checks x{m['overhead']}; runs drifted from the "
                     f"recording: {m['drifted_runs']}")
    if result.get("scaling"):
        lines.append("scaling  " + ", ".join(
            f"{s['factor']}x: {s['us_per_step']} us/step, {s['ms_per_run']} ms/run"
            for s in result["scaling"]))
    f = result.get("fuzz")
    if f:
        lines.append(f"fuzz     {f['command']}")
        lines.append(f"  {'steps':<38}{_r(f['steps'])}")
        lines.append(f"  {'examples':<38}{_r(f['examples'])}")
    if result.get("bugs"):
        lines.append("")
        lines.append("| bug | strategy | found | median steps | median examples | median CPU-s "
                     "| shrunk tasks/steps/preemptions |")
        lines.append("|---|---|---|---|---|---|---|")
        for r in result["bugs"]:
            sh = r["shrunk"]
            size = f"{sh['tasks']}/{sh['steps']}/{sh['preemptions']}" if sh else "-"

            def show(v: Any) -> str:
                return "-" if v is None else f"{v:g}"

            lines.append(
                f"| {r['bug']} | {r['scheduler']} | {r['found']}/{r['seeds']} | "
                f"{show(r['median_steps'])} | {show(r['median_examples'])} | "
                f"{show(r['median_cpu_seconds'])} | {size} |"
            )
        for i, w in enumerate(result.get("rss", [])):
            lines.append(f"worker {i}: {w['jobs']} runs, RSS {w['first_mb']} MB after the "
                         f"first, peak {w['peak_mb']} MB, growth {w['growth_mb']} MB")
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
    if args.reps is not None and not 1 <= args.reps <= 1000:
        sys.stderr.write("vmfuzz bench: error: --reps must be from 1 to 1000\n")
        return 2
    from vmfuzz._budget import BudgetError, parse_budget

    budget_text = args.budget or (QUICK_BUDGET if args.quick else DEFAULT_BUDGET)
    try:
        parsed = parse_budget(str(budget_text))
    except BudgetError as e:
        sys.stderr.write(f"vmfuzz bench: error: --budget: {e}\n")
        return 2
    budget = (parsed.kind, str(parsed.amount))
    from vmfuzz.kernel import BUGS

    unknown = [b for b in args.bug if b not in BUGS]
    if unknown:
        sys.stderr.write(f"vmfuzz bench: error: unknown bug {', '.join(unknown)}\n")
        return 2
    reps = args.reps or (3 if args.quick else 7)
    started = time.perf_counter()

    def say(what: str) -> None:
        # Progress on stderr, a line each (also when it is not a terminal: logs show it).
        sys.stderr.write(f"bench [{time.perf_counter() - started:5.0f}s] {what}\n")
        sys.stderr.flush()

    seeds = args.seeds or (1 if args.quick else 3)
    bugs = args.bug or sorted(BUGS)
    strategies = args.strategy or (["mixed"] if args.quick else list(STRATEGIES))
    result: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "cores_available": available_cores(),
            "platform": platform.platform(),
            "load_average": list(os.getloadavg()),
        },
        "settings": {
            "quick": args.quick, "reps": reps, "seeds": seeds, "budget": budget_text,
            "workers": args.workers, "strategies": strategies,
        },
    }
    result["limits"] = bench_limits(args.quick, reps, say)
    if not args.engine:
        result["model"] = bench_model(reps, say)
        result["scaling"] = bench_scaling(reps, say)
        result["fuzz"] = bench_fuzz(args.quick, 1 if args.quick else 3, say)
        if not args.no_bugs:
            say(f"bug finding: {len(bugs)} bugs x {len(strategies)} strategies x {seeds} "
                f"seeds, {budget_text} each, {args.workers} workers")
            result["bugs"], result["rss"] = bench_bugs(
                bugs, strategies, seeds, budget, args.workers, say, args.quick)
    result["seconds"] = {"cpu_this_process": round(time.process_time(), 1),
                         "wall": round(time.perf_counter() - started, 1)}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    if args.json:
        print(json.dumps(result))
    else:
        print(_table(result))
    return 0
