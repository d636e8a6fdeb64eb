"""Verify a case on every small schedule: each one with at most N preemptions, not just its own.

PATH is a case file or a folder (every *.json below it, in name order).  The case's tasks
(its program) run under every schedule with at most --bound preemptions (a switch away from a
task that could go on; switching when it blocked or ended is free), by bounded exhaustive
search.  The default bound is 2; a bug case whose bug shows on none of those schedules and
whose own recorded schedule has more preemptions (a livelock in lock step needs a switch at
every step of its round) is verified again at that count.  For a case
with bug switches on, once on that kernel and once with every switch off (the fixed kernel):

  <= 2 preemptions: violation on 6 of 17 schedules (rmap_reachable 6); fixed kernel clean on
  all 17 schedules

The two counts differ when the fix changes where tasks block.  A case with no switch on (your
own program, a finding, or a case whose kernel a plugin patched) gets "clean on all M
schedules" or "violation on K of M".  The first failing schedule of the fixed kernel (or of a
program with no switch) is saved as a case (a finding: red until fixed) under --corpus, so
'vmfuzz show' draws it and 'vmfuzz replay' runs it.

--bug NAME (repeatable) runs the program on a kernel with these switches on instead of the
case's own, as a patch under test: e.g. a plugin's patch (--plugin FILE --bug ITS_SWITCH) on
the program of a case found in the old code.  That kernel alone is searched, and must be
clean on every schedule; its first failing schedule is saved as a case of its switches.

--check NAME / --no-check NAME (repeatable) choose the checks, on top of the case's own choice
(its config "checks").  Examples:

  vmfuzz verify corpus/bugs                     every committed bug case (seconds to minutes)
  vmfuzz verify CASE --bound 3 --limit 100000
  vmfuzz verify corpus/mail/seed002_rmap_walk_vs_vma_adjust.json --no-check rmap_reachable
  vmfuzz verify CASE --plugin patch.py --bug my_patch

Work: --limit bounds the schedules per kernel (default 100000); a search cut short says so and
never reads as clean.  Each line gives the schedules run and the scheduler steps they took.
Progress goes to stderr (a line redrawn on a terminal, a plain line about every 10 s
otherwise; VMFUZZ_PROGRESS_EVERY=SECONDS).

--json prints one object per case and line: {"path", "ok", "line", "bound", "kernel" and
"fixed" (null for a case with no switch or with --bug): {"kernel" (bug | fixed | program |
patched), "bugs",
"schedules", "steps", "violations", "outcomes" ({label: schedules}), "complete", "first"
(null, or the first failing schedule: check, message, step, task, label, decisions)},
"saved" (the failing schedule's case file, or null)}; an unusable file gives
{"path", "ok": false, "error"}.

exit status: 0 every case verified (a bug case: its bug shows on some schedule and the fixed
kernel is clean on all; a case with no switch, or a patch given with --bug: clean on all),
1 some case not, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from vmfuzz import _check_args
from vmfuzz._progress import Heartbeat, clock, progress_every

if TYPE_CHECKING:
    from vmfuzz.corpus import CorpusCase
    from vmfuzz.verify import Search, Verdict


def add_arguments(p: argparse.ArgumentParser) -> None:
    from vmfuzz.verify import DEFAULT_BOUND, DEFAULT_LIMIT

    p.add_argument("paths", nargs="+", metavar="PATH", help="case files or folders of cases")
    p.add_argument("--bound", type=int, default=None, metavar="N",
                   help=f"at most N preemptions per schedule (default {DEFAULT_BOUND}, then "
                   "the recorded schedule's count for a bug that needs more)")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT, metavar="SCHEDULES",
                   help=f"at most this many schedules per kernel (default {DEFAULT_LIMIT})")
    p.add_argument("--bug", action="append", default=[], metavar="NAME",
                   help="run on a kernel with these switches on instead of the case's own "
                   "(repeatable; e.g. a plugin's patch)")
    p.add_argument("--corpus", default="corpus", metavar="DIR",
                   help="where a failing schedule of the fixed kernel (or of a program with "
                   "no switch) is saved (default: corpus/)")
    p.add_argument("--no-save", action="store_true", help="do not save a failing schedule")
    p.add_argument("--json", action="store_true", help="one JSON object per case (JSON lines)")
    _check_args.add_arguments(p)


def _usage_error(msg: str) -> int:
    sys.stderr.write(f"vmfuzz verify: error: {msg}\n")
    return 2


def run(args: argparse.Namespace) -> int:
    import attrs

    from vmfuzz.corpus import CorpusError, case_files, load
    from vmfuzz.kernel import KernelConfig
    from vmfuzz.kernel.bugs import unknown_bugs
    from vmfuzz.verify import DEFAULT_BOUND, case_bound, verify

    if args.bound is not None and args.bound < 0:
        return _usage_error("--bound must be >= 0")
    if args.limit < 1:
        return _usage_error("--limit must be >= 1")
    from vmfuzz._limits import MAX_VERIFY_SCHEDULES

    if args.limit > MAX_VERIFY_SCHEDULES:
        return _usage_error(f"--limit must be at most {MAX_VERIFY_SCHEDULES}")
    bad_bug = unknown_bugs(args.bug)
    if bad_bug is not None:
        return _usage_error(bad_bug)
    try:
        every = progress_every()
        _check_args.apply(KernelConfig(), args)
    except ValueError as e:
        return _usage_error(str(e))
    files, errors = case_files(args.paths)
    bad = differ = good = 0

    def report_bad(e: CorpusError) -> None:
        nonlocal bad
        bad += 1
        sys.stderr.write(f"vmfuzz verify: {e}\n")
        if args.json:
            print(json.dumps({"path": e.path, "ok": False, "error": e.problem}), flush=True)

    for err in errors:
        report_bad(err)
    now: dict[str, object] = {"case": "", "schedules": 0, "kernel": ""}
    t0 = time.monotonic()

    def status() -> str:
        return (f"vmfuzz verify: [{clock(time.monotonic() - t0)}] {now['case']}: "
                f"{now['kernel']} kernel, {now['schedules']} schedules")

    def tick(s: Search) -> None:
        now["schedules"], now["kernel"] = s.schedules, s.kernel

    with Heartbeat(status, every=every) as beat:
        for path in files:
            try:
                cc = load(path)
            except CorpusError as e:
                report_bad(e)
                continue
            config = cc.case.config
            if args.bug:
                config = attrs.evolve(config, bugs=frozenset(args.bug))
            config = _check_args.apply(config, args)
            case = attrs.evolve(cc.case, config=config)
            now["case"] = path.name
            verdict = verify(case, DEFAULT_BOUND if args.bound is None else args.bound,
                             args.limit, tick, patch=bool(args.bug))
            if (args.bound is None and verdict.bug_case and verdict.main.violations == 0
                    and verdict.main.complete and case_bound(cc) > verdict.bound):
                # The bug needs more preemptions than the default allows (a lock-step
                # livelock): verify both kernels again at the recorded schedule's count.
                verdict = verify(case, case_bound(cc), args.limit, tick)
            saved = None if args.no_save else _save(verdict, cc, args)
            if verdict.ok:
                good += 1
            else:
                differ += 1
            if args.json:
                obj = {"path": str(path), **verdict.to_json(),
                       "saved": None if saved is None else str(saved)}
                beat.clear()
                print(json.dumps(obj), flush=True)
            else:
                beat.clear()
                print(_human(path, cc, verdict, saved), flush=True)
    if not args.json:
        total = good + differ + bad
        parts = [f"{good} verified"] + ([f"{differ} not verified"] if differ else []) + (
            [f"{bad} unusable"] if bad else [])
        print(f"{total} case{'s' if total != 1 else ''}: {', '.join(parts)}")
    if bad:
        return 2
    return 1 if differ else 0


def _human(path: Path, cc: CorpusCase, verdict: Verdict, saved: Path | None) -> str:
    from vmfuzz.verify import case_bound

    steps = verdict.main.steps + (verdict.fixed.steps if verdict.fixed is not None else 0)
    lines = [f"{'ok  ' if verdict.ok else 'FAIL'}  {path}: {verdict.line()} ({steps} steps)"]
    if verdict.fixed is not None and verdict.main.violations == 0 and verdict.main.complete:
        recorded = case_bound(cc)
        if recorded > verdict.bound:
            lines.append(f"      the recorded schedule has {recorded} preemptions: try "
                         f"--bound {recorded}")
    failing = verdict.failing
    if failing is not None and failing.first is not None:
        v = failing.first.outcome.violation
        assert v is not None
        lines.append(f"      first failing schedule: {v.describe()}")
        if saved is not None:
            lines.append(f"      saved: {saved} (vmfuzz show {saved})")
    return "\n".join(lines)


def _save(verdict: Verdict, cc: CorpusCase, args: argparse.Namespace) -> Path | None:
    """The first failing schedule of the fixed kernel, of a program with no switch (a finding:
    red until fixed) or of a patched kernel (a case of its switches) as a case file under
    --corpus; None when there is none."""
    failing = verdict.failing
    if failing is None or failing.first is None:
        return None
    from vmfuzz.corpus import NotReproducible, save_failure

    meta = {"found_by": f"vmfuzz verify --bound {verdict.bound}", "from": str(cc.path)}
    try:
        return save_failure(failing.case, failing.first, Path(args.corpus), meta)
    except NotReproducible as e:
        sys.stderr.write(f"vmfuzz verify: the failing schedule was not saved: {e}\n")
        return None
