"""Fuzz the kernel model: Hypothesis draws operations and schedules until a failure or budget.

Examples:
  vmfuzz fuzz --budget 30                       fuzz the fixed kernel for 30 s
  vmfuzz fuzz --bug migrate_no_anon_vma_ref     rediscover a historical race (see 'vmfuzz bugs')
  vmfuzz fuzz --budget 10m                      wall time: 90s, 10m, 8h, 1h30m or seconds
  vmfuzz fuzz --seed 7 --budget 1Msteps         work: a million model steps per worker
  vmfuzz fuzz --budget 2mcpu                    two minutes of CPU time per worker
  vmfuzz fuzz --seed 7 --max-examples 500 --json
  vmfuzz fuzz --bug NAME --workers 4            four processes, four streams of the seed
  vmfuzz fuzz --bug vma_adjust_no_anon_vma_lock --no-check rmap_reachable
                                                the race's consequence, not its early catch

Without --seed a seed is drawn (from os.urandom) and printed, with the command that repeats
the run: the same seed, bugs and options search the same examples in the same order (with
--max-examples or a step budget exactly the same run; a time budget stops wherever the clock
stops it).  Every run says which kernel it fuzzed (the fixed kernel, or the historical bug
switches on) and what to try next.

Budgets (--budget): model steps (500ksteps, 2Msteps, 1000000steps) are work: a seed and a
step budget search the same examples on an idle and on a loaded machine, and a faster model
does the same search sooner.  CPU time (90cpu, 2mcpu) does not count the time other processes
take the core, but is not exact (a busy machine slows each step a little).  Wall time (60s,
10m) is what the clock says.  The budget bounds the search for a first failure; shrinking it
comes after and is limited by runs.  1.5Msteps is about what a 60-second campaign does on one
idle core (vmfuzz._budget.STANDARD_STEPS).  With --workers N, a step or CPU budget is each
worker's own (N streams, each with the whole budget: N times the work); a wall-time budget
is shared (every worker stops when it has passed).  Under a step budget the winner is the
stream whose failure came after the fewest steps (not the first in time), so the whole run,
shrunk case and totals included, is the same on any machine.

A campaign runs on every core by default (--workers): worker W searches stream W of the seed
(stream 0 is what one worker searches), the first failure stops the others, and the output
names the stream that found it, so 'vmfuzz fuzz --seed S --stream W' searches it again alone.
With --max-examples a campaign is one deterministic stream in one process.

A failure is shrunk (fewest tasks, operations and context switches), saved to the corpus
directory and printed as a race timeline; 'vmfuzz show PATH' draws it again and
'vmfuzz replay PATH' replays it.  A failure with a bug switch on is saved as that bug's case
(it must keep failing; the fix check replays it with the switch off).  A failure of the kernel
under test (no switch on) is saved as a finding: the case expects clean, so pytest and
'vmfuzz replay' show it red ("still fails") until the model or the kernel path is fixed, then
green ("fixed"); see docs/corpus.md.  A failure with a bug switch on is then verified as
'vmfuzz verify' does: every schedule of its program with at most 2 preemptions, on the bug
kernel and on the fixed kernel ("verify: <= 2 preemptions: violation on K of M schedules;
fixed kernel clean on all M' schedules").  When the search for fewer preemptions finds the
shrunk program failing another check on a smaller schedule (two pages cached for one entry,
where a switch later the stale one is mapped), an "also:" line reports it and it is saved too:
the failure keeps the check the campaign found.

--check NAME runs only the named checks, --no-check NAME turns one off (both repeatable);
the saved case records the choice in its config ("checks") and replays under it.

A campaign alternates Hypothesis examples with mutants of its program pool: programs that met
a new interleaving of two tasks' paths, changed one operation at a time (--mutants), and
probes that race each new entry against the teardown of every mm it uses, and a load or a
store against each page whose pte went A -> B -> A.

Progress goes to stderr: a line redrawn in place on a terminal, otherwise a plain line about
every 10 s (VMFUZZ_PROGRESS_EVERY=SECONDS changes that); none with --json.

--json prints exactly one object: {"found", "invariant", "message", "examples", "mutant_runs"
(runs of the program pool's mutants), "probe_runs" (of its partner and ABA probes), "steps",
"seconds" (wall), "cpu_seconds" (the campaign's CPU time, every worker's summed),
"steps_per_second", "ran_out" (the budget that ended a search that found nothing: "steps",
"cpu", "wall" or "examples"; null when a failure ended it), "case", "shrunk": {"tasks" (in
flight at once), "threads", "ops", "steps", "preemptions"} | null, "minimal_preemptions",
"first_failure_seconds", "first_failure_examples" and "first_failure_steps" (wall time,
examples and steps to the first, unshrunk failure), "found_by" (what ran it: "a Hypothesis
example", or the pool's "a pool mutant", "a collision walk", "a partner probe", "an ABA probe",
"a holder probe", "a window probe", "a nested window probe", "a reader probe", "a flight
probe", "a stored pool program re-run"; null when nothing was found), "post_shrink_seconds"
(shrinking after Hypothesis), "shrink": {"passes": [{"name", "tried" (candidates run), "kept"
(smaller failures adopted), "runs", "seconds" (CPU)}, ...] in the shrinker's order} (passes
empty when nothing was found), "clock_hit" (the shrinks a CPU-time safety net stopped before
their run limit: empty on any sane machine; otherwise the shrunk case may differ elsewhere),
"world" (the failure's world features), "seed", "seed_drawn" (true when no --seed was given),
"stream" (the stream that found the failure; with one worker, the stream searched; else null),
"workers", "scheduler", "bugs", "budget" ({"steps", "cpu_seconds", "wall_seconds"}, one of them
set, per worker for steps and CPU; or null with --max-examples alone), "kernel" (which kernel
was fuzzed, in words), "repeat" (the command that repeats the run), "next": [{"what",
"command"}] (what to try next), "verify" (with a bug switch on and a failure found: the bounded
verification of the shrunk case, as 'vmfuzz verify --json' prints it; else null), "vmfuzz":
{"version", "path", "code" (a digest of the source that ran), "hypothesis" (its version: a
seed's campaign is the same only under the same Hypothesis)}, "saved": {"path", "corpus_error",
"fallback"} | null (where the case went; see below), "unsaved_case" (the case file's text when
no folder took it, else null), "other_failures": [{"invariant", "message", "shrunk", "case"}]
(the shrunk program failing other checks with fewer preemptions or tasks in flight, as the
bounded search of its preemptions met them: the same race ending otherwise on a smaller
schedule; each saved as a case of its own)}.

A finding is never lost: when the corpus cannot be written (--corpus names a file, a read-only
folder, a full disk) the case is saved, under the name it would have had, to the first
fallback folder that takes it: $VMFUZZ_FALLBACK_DIR if set, else
$XDG_STATE_HOME/vmfuzz/unsaved (~/.local/state/vmfuzz/unsaved), else
$TMPDIR/vmfuzz-unsaved-UID; stderr names it (and says so before the search when the corpus is
already unwritable).  If no folder takes it, the case file's text is printed on stderr.

Exit status: 0 nothing found, 1 failure found (and saved in the corpus, or --no-save), 2 usage
or bad input, 3 internal error of vmfuzz itself (one line on stderr; VMFUZZ_TRACEBACK=1 shows
the traceback), 4 failure found but the corpus could not be written: the case is in the
fallback folder named on stderr (or printed there).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmfuzz import _check_args
from vmfuzz._budget import HELP as BUDGET_HELP
from vmfuzz._budget import BudgetError, CampaignBudget, parse_budget
from vmfuzz._cores import available_cores
from vmfuzz._fallback import (
    EXIT_NOT_IN_CORPUS,
    Saved,
    corpus_problem,
    fallback_dirs,
    save_case,
)
from vmfuzz._progress import Heartbeat, clock, progress_every
from vmfuzz._provenance import provenance
from vmfuzz.kernel import KernelConfig
from vmfuzz.kernel.bugs import unknown_bugs
from vmfuzz.schedules import FUZZ_SCHEDULERS as SCHEDULERS

if TYPE_CHECKING:  # Hypothesis is imported only when fuzzing (replay must not need it)
    from vmfuzz.campaign import CampaignResult
    from vmfuzz.causes import Cause
    from vmfuzz.failure import Failure
    from vmfuzz.verify import Verdict

# When neither --budget nor --max-examples is given: a minute of the user's time.
DEFAULT_BUDGET = CampaignBudget("wall", 60.0)
SEEDS = 1_000_000  # a drawn seed is below this: short enough to type
LONGER = (("10m", 600.0), ("1h", 3600.0), ("8h", 28800.0))  # wall budgets to suggest next


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bug", action="append", default=[], metavar="NAME",
                   help="switch on a historical bug (repeatable); 'vmfuzz bugs' lists them")
    p.add_argument("--seed", type=int, default=None,
                   help="campaign seed (default: drawn at random and printed, with the "
                   "command that repeats the run)")
    p.add_argument("--budget", default=None, metavar="BUDGET",
                   help=f"stop searching after this much: {BUDGET_HELP}; default 60 s, or "
                   "none with --max-examples.  Steps and CPU are per worker, wall time is "
                   "shared; shrinking a failure found comes after it and is limited by runs")
    p.add_argument("--max-examples", type=int, default=None, metavar="N",
                   help="stop after exactly N examples when nothing is found (the same run "
                   "for a given seed and stream on any machine; one worker)")
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
                   help="where failures are saved (default: corpus/); when it cannot be "
                   "written, a fallback folder (named on stderr, exit status 4)")
    p.add_argument("--no-save", action="store_true", help="do not write the failure to the corpus")
    p.add_argument("--pool", default=None, metavar="DIR",
                   help="keep the program pool in DIR: a campaign starts with the programs "
                   "stored there (those of another model are re-run first), stores the ones "
                   "it adds after every chunk and at the end, and its workers share them (a "
                   "run then depends on the folder's content, and with workers on timing)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    _check_args.add_arguments(p)


def _usage_error(msg: str) -> int:
    sys.stderr.write(f"vmfuzz fuzz: error: {msg}\n")
    return 2


def _plugins(args: argparse.Namespace) -> list[str]:
    """Plugins the command line loaded (when the command has a plugin option)."""
    return list(getattr(args, "plugin", None) or [])


def kernel_words(bugs: list[str], plugins: list[str]) -> str:
    """Which kernel a campaign fuzzes, in words."""
    if bugs:
        on = ", ".join(sorted(bugs))
        text = f"historical bug switch{'es' if len(bugs) > 1 else ''} on: {on}"
    else:
        text = "the fixed kernel (no historical bug switch on)"
    if plugins:
        text += f"; plugins loaded: {', '.join(plugins)}"
    return text


def repeat_command(args: argparse.Namespace, seed: int, workers: int | None,
                   stream: int | None, change: dict[str, str | None] | None = None) -> str:
    """The command line that runs this campaign again: its seed and every option given
    (``change`` replaces an option or, with None, drops it: ``{"seed": None}``)."""
    opts: dict[str, str | None] = {"seed": str(seed)}
    opts["budget"] = args.budget
    opts["max-examples"] = None if args.max_examples is None else str(args.max_examples)
    opts["workers"] = None if workers is None else str(workers)
    opts["stream"] = None if stream is None else str(stream)
    opts["scheduler"] = None if args.scheduler == "mixed" else args.scheduler
    opts["mutants"] = None if args.mutants is None else str(args.mutants)
    opts["corpus"] = None if args.corpus == "corpus" else args.corpus
    opts["pool"] = getattr(args, "pool", None)
    opts.update(change or {})
    parts = ["vmfuzz", "fuzz"]
    for b in sorted(args.bug):
        parts += ["--bug", b]
    for p in _plugins(args):
        parts += ["--plugin", p]
    parts += _check_args.argv(args)
    for key, value in opts.items():
        if value is not None:
            parts += [f"--{key}", value]
    if args.no_save:
        parts.append("--no-save")
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    bad = unknown_bugs(args.bug)
    if bad is not None:
        return _usage_error(bad)
    budget: CampaignBudget | None = None
    if args.budget is not None:
        try:
            budget = parse_budget(args.budget)
        except BudgetError as e:
            return _usage_error(f"--budget: {e}")
    elif args.max_examples is None:
        budget = DEFAULT_BUDGET
    from vmfuzz._limits import MAX_EXAMPLES, MAX_MUTANTS, MAX_WORKERS

    if args.max_examples is not None and args.max_examples < 1:
        return _usage_error("--max-examples must be >= 1")
    if args.max_examples is not None and args.max_examples > MAX_EXAMPLES:
        return _usage_error(f"--max-examples must be at most {MAX_EXAMPLES}")
    if args.mutants is not None and args.mutants < 0:
        return _usage_error("--mutants must be >= 0")
    if args.mutants is not None and args.mutants > MAX_MUTANTS:
        return _usage_error(f"--mutants must be at most {MAX_MUTANTS}")
    if args.workers is not None and args.workers > MAX_WORKERS:
        return _usage_error(f"--workers must be at most {MAX_WORKERS}")
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
    if getattr(args, "pool", None) is not None:
        from vmfuzz._write import probe_dir

        try:
            probe_dir(args.pool)
        except OSError as e:
            return _usage_error(f"--pool: cannot write the pool folder {args.pool}: "
                                f"{e.strerror or e}")
    try:
        every = progress_every()
    except ValueError as e:
        return _usage_error(str(e))
    given_workers, given_stream = args.workers, args.stream
    seed_drawn = args.seed is None
    seed: int = secrets.randbelow(SEEDS) if args.seed is None else args.seed
    args.seed = seed
    if args.workers is None:
        args.workers = 1 if args.max_examples is not None or args.stream is not None \
            else available_cores()
    if args.workers == 1 and args.stream is None:
        args.stream = 0
    repeat = repeat_command(args, seed, given_workers, given_stream)
    kernel = kernel_words(args.bug, _plugins(args))
    try:
        config = _check_args.apply(KernelConfig(bugs=frozenset(args.bug)), args)
    except ValueError as e:
        return _usage_error(str(e))

    t_start = time.monotonic()
    latest: list[CampaignResult] = []
    workers = f", {args.workers} workers" if args.workers > 1 else ""

    def status() -> str:
        elapsed = clock(time.monotonic() - t_start)
        if not latest:
            return f"vmfuzz fuzz: [{elapsed}] starting{workers}"
        r = latest[-1]
        rate = r.steps / r.seconds if r.seconds else 0.0
        cpu = f", {r.cpu_seconds:.0f} CPU-s" if r.cpu_seconds >= 1 else ""
        pool = f" + {r.stats.mutant_runs} mutant runs" if r.stats else ""
        state = "; found a failure, shrinking it" if r.found else ""
        return (f"vmfuzz fuzz: [{elapsed}] {r.examples} examples{pool}, {r.steps} steps "
                f"({rate:,.0f} steps/s{workers}{cpu}){state}")

    beat = Heartbeat(status, every=every)

    def progress(r: CampaignResult) -> None:
        latest.append(r)
        del latest[:-1]
        if not args.json:
            beat.update()

    if not args.no_save:
        problem = corpus_problem(args.corpus)
        if problem is not None:
            sys.stderr.write(f"vmfuzz fuzz: warning: cannot write the corpus ({problem}): a "
                             f"failure will be saved to {fallback_dirs()[0]} instead\n")
    if not args.json:
        limits = [f"{args.max_examples} examples"] if args.max_examples is not None else []
        per = " per worker" if args.workers > 1 and budget is not None \
            and budget.kind != "wall" else ""
        limits += [_budget_words(budget) + per] if budget is not None else []
        drawn = " (drawn)" if seed_drawn else ""
        beat.line(f"vmfuzz fuzz: {kernel}, seed {seed}{drawn}, for {' or '.join(limits)}"
                  f"{workers}")
        if seed_drawn:
            beat.line(f"vmfuzz fuzz: repeat this run: {repeat}")
        beat.__enter__()
    try:
        result = _campaign(config, args, budget, progress)
    except Exception as exc:  # a bug in vmfuzz itself, not a finding: say so in one line
        beat.close()
        if os.environ.get("VMFUZZ_TRACEBACK"):
            remote = getattr(exc, "remote_traceback", "")
            if remote:  # a worker's: the parent's own traceback says only that it failed
                sys.stderr.write(f"traceback in the worker process:\n{remote}")
            raise
        sys.stderr.write(
            f"vmfuzz fuzz: internal error: {type(exc).__name__}: {exc} (seed {seed}; "
            "rerun with VMFUZZ_TRACEBACK=1 for the traceback and please report it)\n"
        )
        return 3
    finally:
        beat.close()
    _pool_warnings(result)
    saved = None
    others: list[tuple[Failure, Saved | None]] = [(f, None) for f in result.others]
    if result.found and not args.no_save:
        saved = _save(result, args)
        others = [(f, _save_other(f, result, args)) for f in result.others]
    path = saved.path if saved is not None else None
    verdict = _verify(result, args)
    nxt = _next_steps(result, path, args, repeat, seed, given_workers, given_stream)
    if args.json:
        out = _to_json(result, path, args)
        out["saved"] = saved.to_json() if saved is not None else None
        out["unsaved_case"] = saved.text if saved is not None else None
        out["other_failures"] = [_other_json(f, sv) for f, sv in others]
        out.update(seed_drawn=seed_drawn, budget=budget.to_json() if budget else None,
                   kernel=kernel, repeat=repeat,
                   next=[{"what": w, "command": c} for w, c in nxt],
                   verify=verdict.to_json() if verdict is not None else None)
        print(json.dumps(out))
    else:
        _print_human(result, path, args, kernel, repeat, nxt, others)
        if verdict is not None:
            print(f"verify: {verdict.line()}")
    for _, sv in others:
        if sv is not None and not sv.in_corpus:
            _say_fallback(sv)
    if saved is not None and not saved.in_corpus:
        _say_fallback(saved)
        return EXIT_NOT_IN_CORPUS
    return 1 if result.found else 0


def _verify(result: CampaignResult, args: argparse.Namespace) -> Verdict | None:
    """A finding of a historical switch, shrunk: every schedule of its program with at most
    two preemptions on the bug kernel and on the fixed kernel (as 'vmfuzz verify')."""
    if not result.found or result.case is None or not args.bug:
        return None
    from vmfuzz.verify import verify

    return verify(result.case, limit=FUZZ_VERIFY_LIMIT)


# Schedules per kernel the verify line of a finding may run (a shrunk case has tens to a few
# hundred at two preemptions: see 'vmfuzz verify corpus/bugs').
FUZZ_VERIFY_LIMIT = 2_000


def _budget_words(budget: CampaignBudget) -> str:
    """``"60 s"``, ``"10:00"`` (a long wall budget as a clock), ``"1,000,000 steps"``."""
    if budget.kind == "wall" and budget.amount >= 120:
        return clock(budget.amount)
    return budget.describe()


def _campaign(config: KernelConfig, args: argparse.Namespace, budget: CampaignBudget | None,
              progress: Any) -> CampaignResult:
    """Run the campaign: in this process, or one worker process per stream."""
    from vmfuzz.campaign import fuzz

    pool = getattr(args, "pool", None)
    limits: dict[str, Any] = {"budget": None}
    if budget is not None:
        limits = {"budget": budget.wall_seconds, "step_budget": budget.steps,
                  "cpu_budget": budget.cpu_seconds}
    if args.workers == 1:
        return fuzz(config, scheduler=args.scheduler, seed_value=args.seed,
                    max_examples=args.max_examples, progress=progress, mutants=args.mutants,
                    stream=args.stream, pool_dir=pool, **limits)
    from vmfuzz._workers import fuzz_workers

    result, args.stream = fuzz_workers(config, workers=args.workers, scheduler=args.scheduler,
                                       seed_value=args.seed, mutants=args.mutants,
                                       progress=progress, pool_dir=pool, **limits)
    return result


def _pool_warnings(result: CampaignResult) -> None:
    """The pool folder's skipped files and entries and failed writes (stderr; the first few)."""
    shown = result.pool_warnings[:5]
    for w in shown:
        sys.stderr.write(f"vmfuzz fuzz: warning: pool: {w}\n")
    if len(result.pool_warnings) > len(shown):
        sys.stderr.write(f"vmfuzz fuzz: warning: pool: and {len(result.pool_warnings) - 5} "
                         "more\n")


def _save(result: CampaignResult, args: argparse.Namespace) -> Saved | None:
    from vmfuzz.corpus import NotReproducible

    assert result.case is not None and result.failure is not None
    meta = {"found_by": f"vmfuzz fuzz --scheduler {args.scheduler}", "seed": args.seed,
            "stream": args.stream}
    try:
        return save_case(result.case, result.failure.violation, Path(args.corpus), meta)
    except NotReproducible as e:  # printed, not fatal: the timeline below still shows it
        sys.stderr.write(f"vmfuzz fuzz: the failure was not saved: {e}\n")
        return None


def _save_other(failure: Failure, result: CampaignResult,
                args: argparse.Namespace) -> Saved | None:
    """Save one of the failure's smaller endings by another check (CampaignResult.others)
    beside it: a finding of its own, never lost."""
    from vmfuzz.corpus import NotReproducible

    assert result.failure is not None
    meta = {"found_by": f"vmfuzz fuzz --scheduler {args.scheduler} (the shrink of a "
                        f"{result.failure.violation.check} failure)",
            "seed": args.seed, "stream": args.stream}
    try:
        return save_case(failure.case, failure.violation, Path(args.corpus), meta)
    except NotReproducible as e:
        sys.stderr.write(f"vmfuzz fuzz: the {failure.violation.check} ending was not saved: "
                         f"{e}\n")
        return None


def _other_json(failure: Failure, saved: Saved | None) -> dict[str, Any]:
    from vmfuzz.campaign import size_of_failure

    return {"invariant": failure.violation.check, "message": failure.violation.describe(),
            "shrunk": size_of_failure(failure),
            "case": str(saved.path) if saved is not None and saved.path else None}


def _other_line(failure: Failure, saved: Saved | None) -> str:
    """One line for a smaller ending of the shrunk program by another check."""
    from vmfuzz.campaign import size_of_failure

    size = size_of_failure(failure)
    where = f" (saved: {saved.path})" if saved is not None and saved.path else ""
    pre = size["preemptions"]
    return (f"also:   the same program fails {failure.violation.check} with "
            f"{size['tasks']} tasks in flight / {pre} preemption{'' if pre == 1 else 's'}"
            f"{where}: {failure.violation.describe()}")


def _say_fallback(saved: Saved) -> None:
    """Where a failure the corpus could not take went (stderr; after the report)."""
    if saved.path is not None:
        sys.stderr.write(f"vmfuzz fuzz: cannot write the corpus ({saved.corpus_error}): the "
                         f"case is saved to {saved.path} instead; move it into the corpus\n")
        return
    sys.stderr.write(f"vmfuzz fuzz: cannot write the corpus ({saved.corpus_error}) nor any "
                     "fallback folder: the case file follows; save it as a .json file\n")
    sys.stderr.write(saved.text or "(the case could not be serialised)\n")


def _next_steps(result: CampaignResult, path: Path | None, args: argparse.Namespace,
                repeat: str, seed: int, workers: int | None,
                stream: int | None) -> list[tuple[str, str]]:
    """What to try next, as (what, command) pairs."""
    if result.found:
        if path is not None:
            steps = [("draw the race", f"vmfuzz show {shlex.quote(str(path))}"),
                     ("replay the case", f"vmfuzz replay {shlex.quote(str(path))}")]
            if not args.bug:
                steps.append(("once the model or the kernel path is fixed, it replays as "
                              "fixed: commit the case with the fix", "pytest"))
            return steps
        if args.no_save:
            return [("save it: the same run without --no-save",
                     repeat.replace(" --no-save", ""))]
        return []
    cmd = repeat_command
    if args.max_examples is not None:
        more = cmd(args, seed, workers, stream, {"max-examples": str(args.max_examples * 4)})
        other = cmd(args, seed, workers, stream, {"seed": None})
        return [("more examples", more), ("another seed (drawn without --seed)", other)]
    steps = []
    budget = parse_budget(args.budget) if args.budget is not None else DEFAULT_BUDGET
    if budget.kind == "wall":
        longer = next((text for text, s in LONGER if s > budget.amount), None)
    else:  # four times the work
        longer = CampaignBudget(budget.kind, budget.amount * 4).text()
    if longer is not None:
        steps.append(("a longer budget", cmd(args, seed, workers, stream, {"budget": longer})))
    steps.append(("another seed (drawn without --seed)",
                  cmd(args, seed, workers, stream, {"seed": None})))
    steps.append(("overnight on every core, resumable", "vmfuzz soak --duration 8h"
                  + "".join(f" --bug {b}" for b in sorted(args.bug))))
    return steps


def _causes(result: CampaignResult) -> list[Cause]:
    """The events behind the shrunk failure (:mod:`vmfuzz.causes`): its case run once more,
    with the kernel's history at hand ([] if that run does not end in the same check)."""
    from vmfuzz._scheduler import ScheduleDiverged
    from vmfuzz.case import execute

    if result.case is None or result.failure is None:
        return []
    if not result.failure.violation.causes:
        try:
            run = execute(result.case)
        except ScheduleDiverged:  # does not replay: no causes, the rest stands
            return []
        v = run.outcome.violation
        if v is not None and v.check == result.failure.violation.check:
            result.failure.violation.causes = run.explain()
    return result.failure.violation.causes


def _to_json(result: CampaignResult, path: Path | None, args: argparse.Namespace) -> dict[str, Any]:
    v = result.failure.violation if result.failure else None
    return {
        "found": result.found,
        "invariant": v.check if v else None,
        "message": v.describe() if v else None,
        "causes": [c.to_json() for c in _causes(result)],
        "examples": result.examples,
        "mutant_runs": result.stats.mutant_runs if result.stats else 0,
        "probe_runs": result.stats.probe_runs if result.stats else 0,
        "steps": result.steps,
        "seconds": round(result.seconds, 3),
        "cpu_seconds": round(result.cpu_seconds, 3),
        "ran_out": result.ran_out,
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
        "first_failure_steps": result.first_failure_steps,
        "found_by": result.found_by,
        "post_shrink_seconds": round(result.post_shrink_seconds, 3),
        "shrink": {"passes": [p.to_json() for p in result.shrink_passes]},
        "clock_hit": list(result.clock_hit),
        "pool": None if getattr(args, "pool", None) is None else {
            "dir": args.pool, "loaded": result.pool_loaded, "picked": result.pool_picked,
            "warnings": list(result.pool_warnings)},
        "world": sorted(result.case.config.world) if result.case else None,
        "seed": args.seed,
        "stream": args.stream,
        "workers": args.workers,
        "scheduler": args.scheduler,
        "bugs": sorted(args.bug),
        "vmfuzz": provenance(),
    }


def _print_human(result: CampaignResult, path: Path | None, args: argparse.Namespace,
                 kernel: str, repeat: str, nxt: list[tuple[str, str]],
                 others: Sequence[tuple[Failure, Saved | None]] = ()) -> None:
    rate = result.steps / result.seconds if result.seconds else 0.0
    first = result.stats.first_failure_example if result.stats else None
    print(
        f"{result.examples} examples"
        + (f" ({first} to the first failure, the rest Hypothesis's shrinking)"
           if first is not None and first < result.examples else "")
        + (f" + {result.stats.mutant_runs} pool mutant runs" if result.stats else "")
        + f", {result.steps} scheduler steps in {result.seconds:.1f}s "
        f"({result.cpu_seconds:.1f} CPU-s; "
        f"{result.examples / max(result.seconds, 1e-9):.1f} examples/s, {rate:,.0f} steps/s)"
    )
    print(f"kernel: {kernel}")
    if getattr(args, "pool", None) is not None:
        picked = f", {result.pool_picked} from the other workers" if result.pool_picked else ""
        print(f"pool:   {args.pool} ({result.pool_loaded} programs taken in at the start"
              f"{picked}; the new ones stored there)")
    if result.found:
        _print_failure(result, args)
    else:
        why = RAN_OUT.get(result.ran_out or "")
        print("no failure found" + (f" ({why})" if why else ""))
    if path is not None:
        print(f"saved:  {path}")
    for f, sv in others:
        print(_other_line(f, sv))
    print(f"repeat: {repeat}")
    if nxt:
        width = max(len(w) for w, _ in nxt)
        print("next:")
        for what, command in nxt:
            print(f"  {what.ljust(width)}  {command}")


RAN_OUT = {"steps": "the step budget ran out", "cpu": "the CPU budget ran out",
           "wall": "the time budget ran out", "examples": "--max-examples ran"}


def _print_failure(result: CampaignResult, args: argparse.Namespace) -> None:
    assert result.failure is not None and result.case is not None
    shrunk = result.shrunk() or {}
    print(f"FAILURE: {result.failure.violation.describe()}")
    if result.found_by is not None and result.first_failure_steps is not None:
        print(f"first met by {result.found_by}, after {result.first_failure_steps:,} steps")
    if args.workers > 1:
        print(f"found by stream {args.stream} of seed {args.seed} (search it again alone: "
              f"vmfuzz fuzz --seed {args.seed} --stream {args.stream}"
              + "".join(f" --bug {b}" for b in sorted(args.bug)) + ")")
    print(
        f"shrunk to {shrunk.get('tasks')} tasks, {shrunk.get('ops')} operations, "
        f"{shrunk.get('steps')} steps, {shrunk.get('preemptions')} preemptions"
        + (" (minimal preemptions verified)" if result.minimal_preemptions else "")
    )
    if result.clock_hit:
        print(result.clock_note())
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
            footer=[f"violated: {v.describe()}",
                    *(f"    {c.describe()}" for c in _causes(result))],
        )
    )
    if not args.bug:
        print("a finding on the kernel under test: its case expects clean, so pytest and "
              "'vmfuzz replay' report it as still failing until the model or the kernel "
              "path is fixed, then as fixed")
