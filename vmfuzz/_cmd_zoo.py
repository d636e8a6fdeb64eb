"""Check the historical bug zoo: every bug rediscovered from a cold start, over several seeds.

For each bug in the zoo's bar ('vmfuzz bugs' marks the few outside it) and seed, one
'vmfuzz fuzz --bug NAME --seed S --budget B --json' runs in a fresh process (cold start: no
example database, nothing warmed up by another campaign), -j at a time.  A seed finds a bug
properly ("good") when the failure reports one of the bug's checks and its shrunk case needs
no more tasks in flight and no more context switches than the interleaving drawn in the seed
mail (or the shrunk program also fails one of the bug's checks on a schedule that small: the
campaign's "also" ending, see 'vmfuzz fuzz --help').  A bug's row is met when at least
--need seeds are good; with --fixed, the fixed kernel runs the same seeds and must find
nothing.

Examples:
  vmfuzz zoo                                   the zoo's bar: its bugs, seeds 0-9, 1.5Msteps each
  vmfuzz zoo --all                             every registered bug, the hard ones too
  vmfuzz zoo --fixed --markdown                plus the fixed kernel, as a markdown table
  vmfuzz zoo --bug anon_vma_trylock_retry --seeds 0-3 --budget 4Msteps
  vmfuzz zoo --budget 60s                      60 s of wall time each, as the zoo was measured
  vmfuzz zoo --corpus zoo-cases                keep each found failure (DIR/BUG-sSEED/)
  vmfuzz zoo --consequence --max-examples 1000 -j 2   both columns, budgets in examples

The consequence column (--consequence; --consequence-only runs that column alone): some
checks catch a bug before its race can happen (rmap_reachable at vma_adjust's first unlocked
write, lock_not_held at an unlocked detach, lockdep at the first wrong lock order).  Each bug
then runs with those checks off (--no-check) and a seed counts only if the failure is the
outcome the seed mail describes (e.g. seed 002: migration_pte_page_locked), shrunk to the
mail's size.  The checks and the reason, per bug: 'vmfuzz bugs' (CONSEQUENCES in
vmfuzz/kernel/bugs.py); a bug with no early check is judged on its default campaigns.  Under
a row whose consequence column is below the bar, a line says what was measured and why.

Budgets (--budget, each campaign's): model steps by default, 1.5Msteps (STANDARD_STEPS: about
the work a 60-second campaign does on one idle core), so the same command gives the same table
on an idle and on a loaded machine; also CPU time (90cpu) or wall time (60s, 10m), or
--max-examples N (examples).  A step or CPU budget is each worker's (see --workers).
--check/--no-check NAME pass on to every campaign.

Timing: each campaign runs --workers processes (as 'vmfuzz fuzz --workers': one stream of its
seed each, the first failure wins).  With a step or CPU budget (or --max-examples) the default
is one worker per campaign and -j the available cores: each campaign is one stream (under a
step budget or --max-examples, the same on any machine).  With a wall-time budget the default
is one campaign at a time with the cores shared out (available cores / -j per campaign, at
least 1), and with -j x --workers above the core count the budgets buy less search each.
Several workers per campaign under a step budget search as many streams, the winner being the
stream whose failure came after the fewest steps (the same on any machine); under a CPU or
wall-time budget they race, and the table may differ from run to run.  Progress goes to stderr,
one line per finished campaign, and in between a status line (time, campaigns done and
running): redrawn in place on a terminal, otherwise a plain line after about 10 s without other
output (VMFUZZ_PROGRESS_EVERY=SECONDS changes that).

Columns: found (seeds that found a failure), good (found properly, as above), to find (median
model steps / examples to the first, unshrunk failure, over the seeds that found it), shrunk
(worst tasks in flight / median steps / worst context switches), mail (the seed mail's tasks /
switches), checks (the checks reported).  Wall seconds to the first failure are in --json
("median_seconds") only: they depend on the machine's load.

--json prints one object: {"rows": [{"bug", "seed_doc", "seeds", "found", "good", "errors",
"median_find_steps", "median_find_examples", "median_seconds", "worst_tasks", "median_steps",
"worst_preemptions", "mail", "checks", "met", and with --consequence "consequence_check",
"consequence_off", "consequence_seeds", "consequence_good", "consequence_checks",
"consequence_missing"}], "workers" (per campaign), "budget" (each campaign's: {"steps",
"cpu_seconds", "wall_seconds"}, or null with --max-examples), "campaigns": [{"bug", "seed",
"out" (the campaign's own --json object, or null), "error", "consequence"}], "met", "vmfuzz"
(which vmfuzz the zoo is: version, path, code digest, Hypothesis version)}. Each campaign's
own object says which vmfuzz it ran; if that is other code than the zoo's own (a 'python -m
vmfuzz' that finds another copy first), a warning says so on stderr.
Exit status: 0 every row met, 1 some row not met, 2 usage or bad input, 3 a campaign failed to
run (its row counts it as an error and is not met), 130 interrupted (Ctrl-C: no campaign is
started any more; the table counts those that finished).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable

import attrs

from vmfuzz import _check_args
from vmfuzz._budget import HELP as BUDGET_HELP
from vmfuzz._budget import STANDARD, BudgetError, parse_budget
from vmfuzz._cores import available_cores
from vmfuzz._limits import MAX_EXAMPLES, MAX_WORKERS
from vmfuzz._progress import Heartbeat, clock, progress_every
from vmfuzz._provenance import provenance
from vmfuzz.kernel import BUGS, KernelConfig
from vmfuzz.kernel.bugs import unknown_bugs, zoo_bugs


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bug", action="append", default=[], metavar="NAME",
                   help="check this bug only (repeatable; default: every bug in the zoo's "
                   "bar, see 'vmfuzz bugs')")
    p.add_argument("--all", action="store_true",
                   help="every registered bug, also those outside the zoo's bar")
    p.add_argument("--seeds", default="0-9", metavar="LIST",
                   help="campaign seeds, e.g. 0-9 or 0,3,5-7 (default 0-9)")
    p.add_argument("--budget", default=None, metavar="BUDGET",
                   help=f"each campaign's budget: {BUDGET_HELP} (default {STANDARD.text()}: "
                   "about a 60-second campaign on one idle core; steps and CPU per worker)")
    p.add_argument("--need", type=int, default=None, metavar="N",
                   help="good seeds a bug needs (default: 9 of 10, i.e. 90%% of the seeds, "
                   "rounded up)")
    p.add_argument("-j", "--jobs", type=int, default=None, metavar="N",
                   help="campaigns at a time (default: the available cores; 1 with a "
                   "wall-time budget)")
    p.add_argument("--workers", type=int, default=None, metavar="W",
                   help="worker processes per campaign (default 1; with a wall-time budget "
                   "available cores / -j, at least 1): streams of the seed, each with the "
                   "whole step or CPU budget")
    p.add_argument("--fixed", action="store_true",
                   help="also run the fixed kernel on the same seeds (must find nothing)")
    p.add_argument("--corpus", default=None, metavar="DIR",
                   help="save each found failure under DIR/BUG-sSEED/ (default: not saved)")
    p.add_argument("--max-examples", type=int, default=None, metavar="N",
                   help="each campaign's budget in examples instead of time (one process, "
                   "deterministic for a seed)")
    p.add_argument("--consequence", action="store_true",
                   help="also run each bug with the checks that catch it early turned off, "
                   "requiring the outcome its mail describes (a consequence column)")
    p.add_argument("--consequence-only", action="store_true",
                   help="run only the consequence column's campaigns")
    _check_args.add_arguments(p)
    out = p.add_mutually_exclusive_group()
    out.add_argument("--markdown", action="store_true", help="print the table as markdown")
    out.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _usage_error(msg: str) -> int:
    sys.stderr.write(f"vmfuzz zoo: error: {msg}\n")
    return 2


def run(args: argparse.Namespace) -> int:
    from vmfuzz import _zoo

    bad = unknown_bugs(args.bug)
    if bad is not None:
        return _usage_error(bad)
    try:
        seeds = _zoo.parse_seeds(args.seeds)
    except ValueError as exc:
        return _usage_error(str(exc))
    try:
        budget = STANDARD if args.budget is None else parse_budget(str(args.budget))
    except BudgetError as e:
        return _usage_error(f"--budget: {e}")
    try:
        every = progress_every()
    except ValueError as e:
        return _usage_error(str(e))
    if args.jobs is not None and args.jobs < 1:
        return _usage_error("-j must be >= 1")
    if args.workers is not None and args.workers < 1:
        return _usage_error("--workers must be >= 1")
    if (args.jobs or 1) > MAX_WORKERS or (args.workers or 1) > MAX_WORKERS:
        return _usage_error(f"-j and --workers must be at most {MAX_WORKERS}")
    # Options a caller building its own Namespace may leave out (as before they existed).
    max_examples = getattr(args, "max_examples", None)
    consequence_only = getattr(args, "consequence_only", False)
    # Work budgets: one stream per campaign, campaigns side by side; a wall-time budget: the
    # cores shared out among -j campaigns (one at a time by default).
    by_work = budget.kind != "wall" or max_examples is not None
    if args.jobs is None:
        args.jobs = available_cores() if by_work else 1
    if args.workers is not None:
        workers = args.workers
    else:
        workers = 1 if by_work else max(1, available_cores() // args.jobs)
    need = args.need if args.need is not None else -(-9 * len(seeds) // 10)
    if not 0 <= need <= len(seeds):
        return _usage_error(f"--need must be between 0 and the number of seeds ({len(seeds)})")
    if args.all and args.bug:
        return _usage_error("--all and --bug exclude each other")
    if max_examples is not None and max_examples < 1:
        return _usage_error("--max-examples must be >= 1")
    if max_examples is not None and max_examples > MAX_EXAMPLES:
        return _usage_error(f"--max-examples must be at most {MAX_EXAMPLES}")
    try:
        _check_args.apply(KernelConfig(), args)
    except ValueError as e:
        return _usage_error(str(e))
    consequence = getattr(args, "consequence", False) or consequence_only
    bugs = sorted(set(args.bug)) if args.bug else sorted(BUGS) if args.all else zoo_bugs()
    names = bugs + ([""] if args.fixed else [])
    default_names = [] if consequence_only else names
    # Every bug's seed 0 first (early signal); the consequence column's after the default's.
    jobs: list[tuple[str, int] | tuple[str, int, bool]] = [
        (b, s) for s in seeds for b in default_names]
    # A bug with no early check runs the same campaign in both columns: it is run once (the
    # consequence column then judges the default column's campaigns by its own check).
    own_runs = [b for b in bugs if not BUGS[b].consequence.missing
                and (consequence_only or BUGS[b].consequence.early)]
    if consequence:
        jobs += [(b, s, True) for s in seeds for b in own_runs]
    chosen = _check_args.argv(args)
    # The default runner, unless an option changes the campaigns' command line.
    given: dict[str, Callable[..., _zoo.Campaign]] = {}
    if max_examples is not None or chosen:
        given["runner"] = functools.partial(_zoo.run_one, max_examples=max_examples,
                                            checks=chosen)
    total = len(jobs)
    each = f"{max_examples} examples" if max_examples is not None else budget.describe()
    column = (" (consequence column only)" if consequence_only
              else " (default and consequence columns)" if consequence else "")
    sys.stderr.write(
        f"vmfuzz zoo: {total} campaigns{column} ({len(bugs)} bug{'s' if len(bugs) != 1 else ''}"
        f"{' + fixed kernel' if args.fixed else ''}"
        f" x {len(seeds)} seeds, {each} each, {args.jobs} at a time, "
        f"{workers} worker{'s' if workers != 1 else ''} each)\n"
    )
    if not args.bug and not args.all and len(bugs) < len(BUGS):
        left = sorted(set(BUGS) - set(bugs))
        sys.stderr.write(f"vmfuzz zoo: outside the zoo's bar, left out: {', '.join(left)} "
                         "(--all or --bug NAME runs them)\n")
    if workers > 1 and budget.kind == "cpu":
        sys.stderr.write(f"vmfuzz zoo: note: {workers} workers per campaign race their streams "
                         "under a CPU budget (the first failure wins), so the table depends "
                         "on the machine; a step budget does not\n")

    own = provenance()
    warned = False
    t0 = time.monotonic()
    finished = 0

    def status() -> str:
        running = min(args.jobs, total - finished)
        return (f"vmfuzz zoo: [{clock(time.monotonic() - t0)}] {finished}/{total} campaigns "
                f"done, {running} running")

    beat = Heartbeat(status, every=every)

    def done(i: int, c: _zoo.Campaign) -> None:
        nonlocal warned, finished
        finished = i
        ran = (c.out or {}).get("vmfuzz") or {}
        if c.out is not None and ran.get("code") != own["code"] and not warned:
            warned = True
            beat.line(
                f"vmfuzz zoo: warning: campaigns run vmfuzz from {ran.get('path')} (code "
                f"{ran.get('code')}), not this one ({own['path']}, code {own['code']}): the "
                "table measures their code ('python -m vmfuzz' imports what this interpreter "
                "finds first)"
            )
        who = (c.bug or _zoo.FIXED) + (" (consequence)" if c.consequence else "")
        if c.error is not None:
            what = f"ERROR: {c.error}"
        elif not c.found:
            what = "nothing found"
        else:
            assert c.out is not None
            sh = c.out.get("shrunk") or {}
            steps = c.out.get("first_failure_steps")
            what = (f"{c.out.get('invariant')} after "
                    f"{'-' if steps is None else format(steps, ',')} steps "
                    f"({c.out.get('first_failure_examples')} examples"
                    + (f", {c.out['found_by']}" if c.out.get("found_by") else "") + "), "
                    f"shrunk to {_zoo.counted(sh.get('tasks'), 'task')} / "
                    f"{_zoo.counted(sh.get('preemptions'), 'switch')}")
            for check, size in c.endings()[1:]:
                what += (f"; also {check} at {_zoo.counted(size.get('tasks'), 'task')} / "
                         f"{_zoo.counted(size.get('preemptions'), 'switch')}")
            if c.bug:
                what += " (good)" if c.good() else f" (not good: {c.why_not_good()})"
        beat.line(f"[{i}/{total}] {who} seed {c.seed}: {what}")

    interrupted = False
    try:
        with beat:
            campaigns = _zoo.run_all(jobs, budget.text(), args.jobs, args.corpus, done,
                                     workers=workers, **given)
    except _zoo.Interrupted as stop:  # keep what finished: the table of those, then exit 130
        campaigns, interrupted = stop.finished, True
        sys.stderr.write(f"vmfuzz zoo: interrupted after {len(campaigns)} of {total} "
                         "campaigns; the table below counts only those\n")
    rows = [_zoo.summarize(b, [c for c in campaigns if c.bug == b and not c.consequence], need)
            for b in names]
    if consequence:
        judged = [c if c.bug in own_runs else attrs.evolve(c, consequence=True)
                  for c in campaigns if c.consequence or c.bug not in own_runs]
        rows = [_zoo.with_consequence(r, [c for c in judged if c.consequence
                                          and (c.bug or _zoo.FIXED) == r.bug], need,
                                      default_ran=not consequence_only)
                for r in rows]
    met = all(r.met for r in rows)
    if args.json:
        print(json.dumps({
            "rows": [r.to_json() for r in rows],
            "campaigns": [{"bug": c.bug or None, "seed": c.seed, "out": c.out, "error": c.error,
                           "consequence": c.consequence} for c in campaigns],
            "met": met,
            "workers": workers,
            "budget": None if max_examples is not None else budget.to_json(),
            "vmfuzz": own,
        }))
    elif args.markdown:
        print(_zoo.markdown(rows))
    else:
        print(_zoo.text(rows))
        for note in _zoo.consequence_notes(rows):
            print(note)
        print(f"\n{sum(r.met for r in rows)}/{len(rows)} rows met "
              f"(a bug needs {need} good seed{'' if need == 1 else 's'} of {len(seeds)})")
    if interrupted:
        return 130
    if any(c.error is not None for c in campaigns):
        return 3
    return 0 if met else 1
