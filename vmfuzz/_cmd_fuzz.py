"""Fuzz the kernel model: Hypothesis draws operations and schedules until a failure or budget.

Examples:
  vmfuzz fuzz --budget 30                       fuzz the fixed kernel for 30 s
  vmfuzz fuzz --bug anon_vma_lock_not_root      rediscover a historical bug (see 'vmfuzz bugs')
  vmfuzz fuzz --seed 7 --max-examples 500 --json
  vmfuzz fuzz --bug NAME --workers 4            four processes, four streams of seed 0

A campaign runs on every core by default (--workers): worker W searches stream W of the seed
(stream 0 is what one worker searches), the first failure stops the others, and the output
names the stream that found it, so 'vmfuzz fuzz --seed S --stream W' searches it again alone.
With --max-examples a campaign is one deterministic stream in one process.

A failure is shrunk (fewest tasks, operations and context switches), saved to the corpus
directory and printed as a race timeline; replay it with 'vmfuzz replay PATH'.

A campaign alternates Hypothesis examples with mutants of its program pool: programs that met
a new interleaving of two tasks' paths, changed one operation at a time (--mutants), and
probes that race each new entry against the teardown of every mm it uses, and a load or a
store against each page whose pte went A -> B -> A.

--json prints exactly one object: {"found", "invariant", "message", "examples",
"mutant_runs" (runs of the program pool's mutants), "probe_runs" (of its partner and ABA probes),
"steps", "seconds", "steps_per_second", "case", "shrunk": {"tasks" (in flight at once), "threads",
"ops", "steps", "preemptions"} | null,
"minimal_preemptions", "first_failure_seconds" and "first_failure_examples" (time and examples
to the first, unshrunk failure), "post_shrink_seconds" (shrinking after Hypothesis), "shrink":
{"passes": [{"name", "tried" (candidates run), "kept" (smaller failures adopted), "runs",
"seconds" (CPU)}, ...] in the shrinker's order} (passes empty when nothing was found), "world"
(the failure's world features), "seed", "stream" (the stream that found the failure; with one
worker, the stream searched; else null), "workers", "scheduler", "bugs", "vmfuzz": {"version",
"path", "code" (a digest of the source that ran)}}.
Exit status: 0 nothing found, 1 failure found, 2 usage or bad input, 3 internal error of
vmfuzz itself (one line on stderr; VMFUZZ_TRACEBACK=1 shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmfuzz._cores import available_cores
from vmfuzz._provenance import provenance
from vmfuzz.kernel import KernelConfig
from vmfuzz.kernel.bugs import unknown_bugs
from vmfuzz.schedules import FUZZ_SCHEDULERS as SCHEDULERS

if TYPE_CHECKING:  # Hypothesis is imported only when fuzzing (replay must not need it)
    from vmfuzz.campaign import CampaignResult


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bug", action="append", default=[], metavar="NAME",
                   help="switch on a historical bug (repeatable); 'vmfuzz bugs' lists them")
    p.add_argument("--seed", type=int, default=0, help="campaign seed (default 0)")
    p.add_argument("--budget", type=float, default=60.0, metavar="SECONDS",
                   help="stop searching after this many seconds (default 60); shrinking "
                        "a failure found takes up to 80 s more")
    p.add_argument("--max-examples", type=int, default=None, metavar="N",
                   help="stop after N examples (deterministic for a given seed and stream; "
                   "one worker)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes searching at once, each its own stream of the seed "
                   "(default: one per available core; 1 with --max-examples or --stream)")
    p.add_argument("--stream", type=int, default=None, metavar="W",
                   help="search only stream W of the seed, in this process (what worker W of "
                   "a --workers campaign searched; default 0)")
    p.add_argument("--scheduler", choices=SCHEDULERS, default="mixed",
                   help="how schedules are drawn (default: mixed = PCT or sparse preemption "
                   "lists, drawn per example)")
    p.add_argument("--mutants", type=int, default=None, metavar="N",
                   help="program-pool mutants run after each 100 examples (default 400 with "
                   "the mixed and pct schedulers, 0 otherwise; 0 turns the pool off)")
    p.add_argument("--corpus", default="corpus", metavar="DIR",
                   help="where failures are saved (default: corpus/)")
    p.add_argument("--no-save", action="store_true", help="do not write the failure to the corpus")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _usage_error(msg: str) -> int:
    sys.stderr.write(f"vmfuzz fuzz: error: {msg}\n")
    return 2


def run(args: argparse.Namespace) -> int:
    from vmfuzz.campaign import fuzz

    bad = unknown_bugs(args.bug)
    if bad is not None:
        return _usage_error(bad)
    if args.budget is not None and args.budget <= 0:
        return _usage_error("--budget must be positive")
    if args.max_examples is not None and args.max_examples < 1:
        return _usage_error("--max-examples must be >= 1")
    if args.mutants is not None and args.mutants < 0:
        return _usage_error("--mutants must be >= 0")
    if args.stream is not None and args.stream < 0:
        return _usage_error("--stream must be >= 0")
    if args.workers is not None and args.workers < 1:
        return _usage_error("--workers must be >= 1")
    if args.workers is not None and args.workers > 1:
        if args.stream is not None:
            return _usage_error("--stream searches one stream in one process: drop --workers")
        if args.max_examples is not None:
            return _usage_error("--max-examples runs one deterministic stream in one process: "
                                "drop --workers (pick the stream with --stream)")
    if args.workers is None:
        args.workers = 1 if args.max_examples is not None or args.stream is not None \
            else available_cores()
    if args.workers == 1 and args.stream is None:
        args.stream = 0
    config = KernelConfig(bugs=frozenset(args.bug))
    show_progress = not args.json and sys.stderr.isatty()

    workers = f", {args.workers} workers" if args.workers > 1 else ""

    def progress(r: CampaignResult) -> None:
        if show_progress:
            rate = r.steps / r.seconds if r.seconds else 0.0
            pool = f" + {r.stats.mutant_runs} mutant runs" if r.stats else ""
            state = "; found, shrinking" if r.found and args.workers > 1 else ""
            sys.stderr.write(
                f"\r[{r.seconds:6.1f}s] {r.examples} examples{pool}, {r.steps} steps "
                f"({rate:,.0f} steps/s{workers}){state}"
            )
            sys.stderr.flush()

    budget = None if args.max_examples is not None and args.budget == 60.0 else args.budget
    try:
        if args.workers == 1:
            result = fuzz(
                config,
                scheduler=args.scheduler,
                seed_value=args.seed,
                budget=budget,
                max_examples=args.max_examples,
                progress=progress,
                mutants=args.mutants,
                stream=args.stream,
            )
        else:
            from vmfuzz._workers import fuzz_workers

            result, args.stream = fuzz_workers(
                config,
                workers=args.workers,
                scheduler=args.scheduler,
                seed_value=args.seed,
                budget=budget,
                mutants=args.mutants,
                progress=progress,
            )
    except Exception as exc:  # a bug in vmfuzz itself, not a finding: say so in one line
        if os.environ.get("VMFUZZ_TRACEBACK"):
            remote = getattr(exc, "remote_traceback", "")
            if remote:  # a worker's: the parent's own traceback says only that it failed
                sys.stderr.write(f"traceback in the worker process:\n{remote}")
            raise
        sys.stderr.write(
            f"vmfuzz fuzz: internal error: {type(exc).__name__}: {exc} (seed {args.seed}; "
            "rerun with VMFUZZ_TRACEBACK=1 for the traceback and please report it)\n"
        )
        return 3
    if show_progress:
        sys.stderr.write("\n")
    path = None
    if result.found and not args.no_save:
        path = _save(result, args)
    if args.json:
        print(json.dumps(_to_json(result, path, args)))
    else:
        _print_human(result, path, args)
    return 1 if result.found else 0


def _save(result: CampaignResult, args: argparse.Namespace) -> Path | None:
    try:
        from vmfuzz.corpus import save_failure
    except ImportError:  # the corpus module is not there yet
        return None

    assert result.case is not None and result.failure is not None
    meta = {"found_by": f"vmfuzz fuzz --scheduler {args.scheduler}", "seed": args.seed,
            "stream": args.stream}
    return save_failure(result.case, result.failure.violation, Path(args.corpus), meta)


def _to_json(result: CampaignResult, path: Path | None, args: argparse.Namespace) -> dict[str, Any]:
    v = result.failure.violation if result.failure else None
    return {
        "found": result.found,
        "invariant": v.check if v else None,
        "message": v.describe() if v else None,
        "examples": result.examples,
        "mutant_runs": result.stats.mutant_runs if result.stats else 0,
        "probe_runs": result.stats.probe_runs if result.stats else 0,
        "steps": result.steps,
        "seconds": round(result.seconds, 3),
        "steps_per_second": round(result.steps / result.seconds, 1) if result.seconds else 0.0,
        "case": str(path) if path else None,
        "shrunk": result.shrunk(),
        "minimal_preemptions": result.minimal_preemptions,
        "first_failure_seconds": (
            round(result.first_failure_seconds, 3)
            if result.first_failure_seconds is not None
            else None
        ),
        "first_failure_examples": result.stats.first_failure_example if result.stats else None,
        "post_shrink_seconds": round(result.post_shrink_seconds, 3),
        "shrink": {"passes": [p.to_json() for p in result.shrink_passes]},
        "world": sorted(result.case.config.world) if result.case else None,
        "seed": args.seed,
        "stream": args.stream,
        "workers": args.workers,
        "scheduler": args.scheduler,
        "bugs": sorted(args.bug),
        "vmfuzz": provenance(),
    }


def _print_human(result: CampaignResult, path: Path | None, args: argparse.Namespace) -> None:
    rate = result.steps / result.seconds if result.seconds else 0.0
    print(
        f"{result.examples} examples"
        + (f" + {result.stats.mutant_runs} pool mutant runs" if result.stats else "")
        + f", {result.steps} scheduler steps in {result.seconds:.1f}s "
        f"({result.examples / max(result.seconds, 1e-9):.1f} examples/s, {rate:,.0f} steps/s)"
    )
    if not result.found:
        print("no failure found")
        return
    assert result.failure is not None and result.case is not None
    shrunk = result.shrunk() or {}
    print(f"FAILURE: {result.failure.violation.describe()}")
    if args.workers > 1:
        print(f"found by stream {args.stream} of seed {args.seed} (search it again alone: "
              f"vmfuzz fuzz --seed {args.seed} --stream {args.stream}"
              + "".join(f" --bug {b}" for b in sorted(args.bug)) + ")")
    print(
        f"shrunk to {shrunk.get('tasks')} tasks, {shrunk.get('ops')} operations, "
        f"{shrunk.get('steps')} steps, {shrunk.get('preemptions')} preemptions"
        + (" (minimal preemptions verified)" if result.minimal_preemptions else "")
    )
    for t in result.case.tasks:
        ops = "; ".join(c.describe() for c in t.ops)
        print(f"  {t.name} (from step {t.start}): {ops}")
    import shutil

    from vmfuzz.timeline import render_timeline

    v = result.failure.violation
    print(
        render_timeline(
            result.failure.trace,
            [t.name for t in result.case.tasks],
            width=shutil.get_terminal_size((100, 24)).columns,
            mark_step=v.step,
            footer=[f"violated: {v.describe()}"],
        )
    )
    if path is not None:
        print(f"saved: {path}\nreplay: vmfuzz replay {path}\nshow:   vmfuzz show {path}")
