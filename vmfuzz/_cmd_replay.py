"""Replay corpus cases (no Hypothesis needed): does each still show its recorded outcome?

PATH is a case file or a folder (every *.json below it, in name order).  A case recorded with
bug switches on is replayed a second time with every switch off, on the same schedule: the fix
check says whether the fixed kernel stays clean there, or that the recorded schedule no longer
applies (and what the fixed kernel does when the schedule is followed as far as it goes).

A finding (a failure of the kernel under test, saved by 'vmfuzz fuzz' with no bug switch on)
expects clean: its line says "still fails (check X at step N)" while the bug is there (FAIL,
exit 1) and "fixed" once the model or the kernel path is fixed (ok).  If its schedule no
longer applies, it is never read as fixed: "still fails" if it fails with the schedule
followed as far as it goes, else "cannot tell whether fixed" (FAIL).

A case saved by vmfuzz records the model that wrote it (the version and a digest of the kernel
model, checks and scheduler, comments and docstrings aside) and, next to recorded decisions,
anchors: the labels every task stood at at each context switch.  When the model moved a yield
point, the replay stops at the first decision where the recorded list would run another
interleaving and says "diverged" with that step and its labels (never "clean"), and a case that
differs from its record says "model changed since the case was saved".

--rerecord, after a deliberate model change, records each case anew when it still shows its
recorded outcome (a finding: the check it was found as), keeping its description, metadata and
finding record; one line per case says what it did: unchanged (replays its record exactly),
upgraded (same trace: the model's identity and anchors added), rerecorded (same outcome on a new
trace: trace, steps, decisions rewritten) or refused (left as it is: it no longer shows its
outcome, or its explicit steps no longer apply).  Exit status 1 when some case was refused.

A file that cannot be used (malformed, truncated, wrong version, unknown operation, over a
size limit of docs/corpus.md ...) gets one line on stderr naming the file and the problem; the
other files are still replayed.  So do entries below a folder named like cases that are not
readable ones (*.JSON, dangling symlinks, FIFOs, devices: only regular files are read), and a
folder with no case file at all.

--json prints one JSON object per line and case: path, name, ok, expected, observed, message,
steps, trace_sha256 (of this replay), recorded_trace_sha256, trace_matches (null when the case
records no hash), fix_check (null, or status holds|fails|budget|error, observed, message,
schedule_applies, divergence), divergence (where the case's own schedule stopped applying, or
null), anchored, model (the recorded {version, digest}, or null), model_digest (this model's),
model_changed (null when the case does not record its model); a finding's line also has
verdict (fixed, still fails, diverged, budget or error), found (the check, step, task, label and
message when it was found) and summary (the line's text).  An unusable file gives
{"path", "ok": false, "error"}.

--verify also runs each case's program under every schedule with at most --bound
preemptions (default 2), on its kernel and, for a bug case, on the fixed kernel, and prints
the line 'vmfuzz verify' prints (its object as "verify" in --json); a case not verified
(its bug shows on no schedule, or the fixed kernel fails on one) counts as a difference.

exit status: 0 every case shows its recorded outcome, 1 some case differs, 2 some file is
unusable (bad input wins over a difference).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vmfuzz.corpus import CorpusError

# How the summary line counts findings by verdict.
_COUNTED = {"still fails": "still failing", "diverged": "undecided (schedule no longer applies)",
            "budget": "out of steps", "error": "crashed"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="case files or folders of cases")
    p.add_argument("--json", action="store_true", help="one JSON object per case (JSON lines)")
    p.add_argument(
        "--no-fix-check", action="store_true", help="skip replaying bug cases with the bugs off"
    )
    p.add_argument(
        "--strict-trace",
        action="store_true",
        help="a trace that differs from the recorded hash counts as a difference",
    )
    p.add_argument(
        "--timeline", action="store_true", help="draw the timeline of every case that differs"
    )
    p.add_argument(
        "--rerecord",
        action="store_true",
        help="after a deliberate model change: rewrite each case that still shows its recorded "
        "outcome with this model's trace (see above); cases that do not are left alone",
    )
    p.add_argument("--width", type=int, default=None,
                   help="timeline width, 20 to 1000 (default: the terminal's)")
    p.add_argument("--verify", action="store_true",
                   help="also run each case's program under every schedule with at most "
                   "--bound preemptions, bug kernel and fixed kernel (as 'vmfuzz verify')")
    p.add_argument("--bound", type=int, default=2, metavar="N",
                   help="preemptions per schedule for --verify (default 2)")


def run(args: argparse.Namespace) -> int:
    from vmfuzz._limits import MAX_WIDTH
    from vmfuzz.corpus import FIXED, CorpusError, case_files, load, replay
    from vmfuzz.timeline import render_attempt
    from vmfuzz.verify import verify

    if args.width is not None and not 20 <= args.width <= MAX_WIDTH:
        sys.stderr.write(f"vmfuzz replay: error: --width must be from 20 to {MAX_WIDTH}, "
                         f"not {args.width}\n")
        return 2
    if args.bound < 0:
        sys.stderr.write("vmfuzz replay: error: --bound must be >= 0\n")
        return 2
    files, errors = case_files(args.paths)
    if args.rerecord:
        return _rerecord(args, files, errors)
    bad = 0
    differ = 0
    good = 0
    verdicts: dict[str, int] = {}  # findings' verdicts

    def report_bad(e: CorpusError) -> None:
        nonlocal bad
        bad += 1
        sys.stderr.write(f"vmfuzz replay: {e}\n")
        if args.json:
            print(json.dumps({"path": e.path, "ok": False, "error": e.problem}), flush=True)

    for e in errors:
        report_bad(e)
    width = args.width or min(max(shutil.get_terminal_size((100, 24)).columns, 20), MAX_WIDTH)
    for path in files:
        try:
            cc = load(path)
        except CorpusError as e:
            report_bad(e)
            continue
        result = replay(cc, check_fix=not args.no_fix_check)
        # A fixed finding's recorded trace is the failing run's: it cannot match any more.
        ok = result.ok and not (args.strict_trace and result.trace_matches is False
                                and result.verdict != FIXED)
        if ok:
            good += 1
        else:
            differ += 1
        checked = verify(cc.case, args.bound) if args.verify else None
        if checked is not None and not checked.ok and ok:
            ok = False
            good -= 1
            differ += 1
        if result.verdict is not None:
            verdicts[result.verdict] = verdicts.get(result.verdict, 0) + 1
        if args.json:
            obj = result.to_json()
            obj["ok"] = ok
            if checked is not None:
                obj["verify"] = checked.to_json()
            print(json.dumps(obj), flush=True)
        else:
            print(f"{'ok  ' if ok else 'FAIL'}  {path}: {result.summary()}", flush=True)
            if checked is not None:
                print(f"      verify: {checked.line()}", flush=True)
            if not ok and args.timeline:
                print(render_attempt(cc, result.attempt, width=width))
    if not args.json:
        total = good + differ + bad
        parts = [f"{good} ok"]
        if differ:
            parts.append(f"{differ} differ")
        if bad:
            parts.append(f"{bad} unusable")
        findings = ""
        if verdicts:
            findings = "; findings: " + ", ".join(
                f"{n} {_COUNTED.get(word, word)}" for word, n in sorted(verdicts.items()))
        print(f"{total} case{'s' if total != 1 else ''}: {', '.join(parts)}{findings}")
    if bad:
        return 2
    return 1 if differ else 0


def _rerecord(args: argparse.Namespace, files: list[Path], errors: list[CorpusError]) -> int:
    """Re-record each case (see the module doc): one line per case and a summary."""
    from vmfuzz.corpus import REFUSED, CorpusError, load, rerecord

    bad = 0
    counts: dict[str, int] = {}
    for e in errors:
        bad += 1
        sys.stderr.write(f"vmfuzz replay: {e}\n")
    for path in files:
        try:
            cc = load(path)
        except CorpusError as e:
            bad += 1
            sys.stderr.write(f"vmfuzz replay: {e}\n")
            if args.json:
                print(json.dumps({"path": e.path, "ok": False, "error": e.problem}), flush=True)
            continue
        try:
            done = rerecord(cc)
        except OSError as e:  # a read-only corpus, a full disk: the old file is intact
            bad += 1
            sys.stderr.write(f"vmfuzz replay: {path}: cannot write the re-recorded case "
                             f"({e.strerror or e}); left as it is\n")
            if args.json:
                print(json.dumps({"path": str(path), "ok": False, "error": str(e)}), flush=True)
            continue
        counts[done.action] = counts.get(done.action, 0) + 1
        if args.json:
            print(json.dumps(done.to_json()), flush=True)
        else:
            print(f"{done.action:<10}  {path}: {done.message}", flush=True)
    if not args.json:
        total = sum(counts.values()) + bad
        parts = [f"{n} {word}" for word, n in sorted(counts.items())]
        if bad:
            parts.append(f"{bad} unusable")
        print(f"{total} case{'s' if total != 1 else ''}: {', '.join(parts) or 'none'}")
    if bad:
        return 2
    return 1 if counts.get(REFUSED) else 0
