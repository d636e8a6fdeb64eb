"""List the historical bugs the model can re-create (each a switch for 'vmfuzz fuzz --bug').

--json prints a JSON list of objects: name, seed (seed document or fixing kernel commit),
summary, invariant (the check expected to catch it), mail_tasks / mail_preemptions (size of
the race as drawn in the mail, when it is drawn there), also (other checks that report the same
wrong state and are equally right), zoo (false: re-created and tested, but not in the zoo's bar
of 9 seeds in 10 found from scratch; 'vmfuzz zoo' runs it only when named or with --all),
consequence (what 'vmfuzz zoo --consequence' requires: check, the early checks turned off,
why, missing: why the model cannot show it, or "", and measured: what the consequence
campaigns found and, below the bar, why, or "").
"""

from __future__ import annotations

import argparse
import json

from vmfuzz.kernel import BUGS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a JSON list")


def run(args: argparse.Namespace) -> int:
    bugs = [BUGS[n] for n in sorted(BUGS)]
    if args.json:
        print(json.dumps([b.to_json() for b in bugs], indent=2))
        return 0
    if not bugs:
        print("no historical bugs registered")
        return 0
    width = max(len(b.name) for b in bugs)
    for b in bugs:
        print(f"{b.name:<{width}}  {b.seed}")
        print(f"{'':<{width}}  {b.summary}")
        also = f" (equally right: {', '.join(b.also)})" if b.also else ""
        print(f"{'':<{width}}  caught by: {b.invariant}{also}")
        c = b.consequence
        if c.missing:
            print(f"{'':<{width}}  consequence: not modelled ({c.missing})")
        elif c.early:
            print(f"{'':<{width}}  consequence: {c.check}, with {', '.join(c.early)} off "
                  f"({c.why})")
        if c.measured:
            print(f"{'':<{width}}  consequence measured: {c.measured}")
        if not b.zoo:
            print(f"{'':<{width}}  not in the zoo's bar (not yet found from scratch in 9 of 10 "
                  "seeds): vmfuzz zoo runs it when named or with --all")
    return 0
