"""Every schedule with at most 2 preemptions of one saved case's program, under each proposal.

Not a plugin: ``python examples/seed003/explore_case.py [CASE] [--bound N]``.  It loads both
plugins, takes the program of CASE (default: the livelock the guide's campaign found in Mel's
scheme, cases/livelock-vma_adjust-24f008d3.json) and runs it under every schedule with at most
``--bound`` preemptions (vmfuzz.schedules.explore, bounded exhaustive search as CHESS does) with
each switch on in turn, then with none, and counts the outcomes.
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path

import attrs

from vmfuzz.plugins import load_plugins

HERE = Path(__file__).resolve().parent
PROPOSALS = ("mel_trylock_retry", "linus_lock_root")
CASE = HERE / "cases" / "livelock-vma_adjust-24f008d3.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", nargs="?", default=str(CASE))
    ap.add_argument("--bound", type=int, default=2, help="preemptions at most (default 2)")
    args = ap.parse_args()
    load_plugins([str(HERE / f"{p}.py") for p in PROPOSALS])
    from vmfuzz.case import execute
    from vmfuzz.corpus import load
    from vmfuzz.schedules import explore

    program = load(args.case).case
    for bugs in [(p,) for p in PROPOSALS] + [()]:
        case = attrs.evolve(program, config=attrs.evolve(program.config, bugs=frozenset(bugs)))
        start = time.process_time()
        outcomes: collections.Counter[str] = collections.Counter()
        for run in explore(lambda src, case=case: execute(case, src), bound=args.bound):
            outcomes[run.outcome.check or run.outcome.kind] += 1
        seen = ", ".join(f"{n} {what}" for what, n in sorted(outcomes.items()))
        print(f"{bugs[0] if bugs else 'fixed kernel':18} {sum(outcomes.values()):5} schedules "
              f"with <= {args.bound} preemptions: {seen} ({time.process_time() - start:.1f}s)")


if __name__ == "__main__":
    main()
