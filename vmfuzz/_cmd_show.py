"""Draw a corpus case as a mail's race diagram: one column per task, time downwards.

Drawn are the steps that matter to the verdict: where the check fired, the events behind it,
every step that set or cleared a pte of, freed or stored into an object the verdict names, and
the steps around each context switch.  Each shows the yield label its task stopped at and, below
it ("> path: event"), its data events on those objects; lock events are folded, and the steps in
between are one line per task ("... 13 steps: vm_mmap, ...").  At the bottom: the check, its
message, and the events behind it ("freed by T1 at step 19 (do_munmap (free_vma))").  --full
draws every step with its lock events in brackets.  --fix draws the fix-check run instead (the
same schedule with every bug switch off).  --explicit prints the run as an explicit schedule (a
JSON list of "run T until LABEL" steps) to paste into a hand-edited case.

exit status: 0 the case shows its recorded outcome, 1 it does not, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("case", metavar="CASE", help="a case file")
    p.add_argument(
        "--width", type=int, default=None,
        help="width in columns, 20 to 1000 (default: the terminal's)"
    )
    p.add_argument(
        "--full", action="store_true",
        help="draw every step with its lock events (default: the mail view, only the steps "
             "that touch the verdict's objects and the context switches)",
    )
    p.add_argument(
        "--fix", action="store_true", help="draw the run with every bug switch off"
    )
    p.add_argument(
        "--explicit", action="store_true", help="print the run as explicit schedule steps (JSON)"
    )


def run(args: argparse.Namespace) -> int:
    import attrs

    from vmfuzz._limits import MAX_WIDTH
    from vmfuzz.corpus import CLEAN, DIVERGED, CorpusError, attempt, load
    from vmfuzz.schedules._explicit import explicit_from_trace
    from vmfuzz.timeline import render_attempt

    if args.width is not None and not 20 <= args.width <= MAX_WIDTH:
        sys.stderr.write(f"vmfuzz show: error: --width must be from 20 to {MAX_WIDTH}, "
                         f"not {args.width}\n")
        return 2
    try:
        cc = load(args.case)
    except CorpusError as e:
        sys.stderr.write(f"vmfuzz show: {e}\n")
        return 2
    width = args.width or min(max(shutil.get_terminal_size((100, 24)).columns, 20), MAX_WIDTH)
    if args.fix:
        fixed = attrs.evolve(cc.case, config=attrs.evolve(cc.case.config, bugs=frozenset()))
        att = attempt(cc, fixed, strict=True)
        title = "the recorded schedule with every bug switch off (fix check)"
        if att.observed == DIVERGED:
            att = attempt(cc, fixed, strict=False)
            title += ": the schedule no longer applies, followed as far as it goes"
        expected = CLEAN
    else:
        att = attempt(cc)
        title = None
        expected = cc.expected
    if args.explicit:
        trace = att.sched.trace if att.sched is not None else []
        print(json.dumps(explicit_from_trace(trace), indent=2))
    else:
        sys.stdout.write(
            render_attempt(cc, att, width=width, full=args.full, mail=True,
                           expected=expected if args.fix else None, title=title)
        )
    return 0 if att.observed == expected else 1
