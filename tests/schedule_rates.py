"""How often one schedule of each fuzz mode shows a case's outcome on its program (not collected
by pytest).

The consequence zoo needs a campaign to draw a race's program and then one of its rare
schedules.  This measures the second half alone: the case's ``setup`` task (if any) runs first,
the other tasks start when it is done, and each mode's schedule source (PCT of depth 2 and 3
over the run's length, the echoing random walk) runs the program under seeds 0..N-1, with the
case's checks and ``--no-check`` on top:

    python tests/schedule_rates.py corpus/mail/seed002_rmap_walk_vs_vma_adjust.json \\
        --no-check rmap_reachable --want migration_pte_page_locked --runs 2000

Prints, per mode, how many runs ended in ``--want`` (default: the case's ``expected``) and the
CPU time.
"""

from __future__ import annotations

import argparse
import time

import attrs
from vmfuzz.invariants._choice import choose

from vmfuzz.case import execute
from vmfuzz.corpus import load
from vmfuzz.schedules import PCT, Echo, NonPreemptive, RandomWalk


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("case")
    p.add_argument("--no-check", action="append", default=[], metavar="NAME")
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--want", metavar="CHECK", help="the outcome counted (default: the case's)")
    args = p.parse_args()
    cc = load(args.case)
    case = cc.case
    if args.no_check:
        case = attrs.evolve(case, config=choose(case.config, None, args.no_check))
    want = args.want or cc.expected
    setup = tuple(t for t in case.tasks if t.name == "setup")
    ready = execute(attrs.evolve(case, tasks=setup), NonPreemptive()).outcome.steps if setup else 0
    tasks = tuple(t if t.name == "setup" else attrs.evolve(t, start=ready) for t in case.tasks)
    case = attrs.evolve(case, tasks=tasks)
    length = execute(case, NonPreemptive()).outcome.steps
    t0 = time.process_time()
    modes = (("pct depth 2", lambda s: PCT(s, 2, k=length)),
             ("pct depth 3", lambda s: PCT(s, 3, k=length)),
             ("random walk (echo)", lambda s: Echo(RandomWalk(s))))
    for name, source in modes:
        hits = other = 0
        for seed in range(args.runs):
            o = execute(case, source(seed), record_trace=False).outcome
            check = o.violation.check if o.violation is not None else o.kind
            hits += check == want
            other += check not in (want, "clean")
        print(f"{name}: {hits}/{args.runs} end in {want} ({other} in another outcome), "
              f"program of {length} steps")
    print(f"{time.process_time() - t0:.1f} s of CPU")


if __name__ == "__main__":
    main()
