"""Before/after table for a change that must not change behaviour (not collected by pytest).

One deterministic campaign per registered bug (and the fixed kernel) at fixed examples, with
the wall-clock shrink caps lifted so the result depends on work alone; prints and writes, per
row, examples, mutant and probe runs, steps, the finding, the shrunk size, whether its
preemptions are minimal, and a digest of the shrunk case that does not depend on
PYTHONHASHSEED.  Run it with each copy's interpreter and compare the two JSON files:

    python tests/equivalence.py before.json --seed 0 --max-examples 200 [--bug NAME ...]

Every limit of a campaign at fixed examples is a work limit, so a row is the same on an idle
and on a loaded machine; ``clock_hit`` names a wall-clock safety net that stopped a shrink
(then it may not be).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from typing import Any

import attrs

from vmfuzz.campaign import fuzz
from vmfuzz.kernel import KernelConfig
from vmfuzz.kernel.bugs import BUGS


def canon(o: Any) -> Any:
    """``o`` as JSON data, frozensets sorted (hash-seed independent)."""
    if attrs.has(type(o)):
        return {f.name: canon(getattr(o, f.name)) for f in attrs.fields(type(o))}
    if isinstance(o, (frozenset, set)):
        return sorted((canon(x) for x in o), key=repr)
    if isinstance(o, dict):
        return {str(k): canon(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [canon(x) for x in o]
    return o


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-examples", type=int, default=200)
    ap.add_argument("--bug", action="append")
    a = ap.parse_args()
    rows: dict[str, Any] = {}
    for name in a.bug or [*sorted(BUGS), "(fixed)"]:
        cfg = KernelConfig(bugs=frozenset() if name == "(fixed)" else frozenset({name}))
        c0 = time.process_time()
        r = fuzz(cfg, seed_value=a.seed, max_examples=a.max_examples, budget=None,
                 shrink_seconds=3600.0, post_shrink_seconds=3600.0)
        digest = None
        if r.case is not None:
            data = json.dumps(canon((r.case.config, r.case.tasks, r.case.schedule)),
                              sort_keys=True)
            digest = hashlib.sha256(data.encode()).hexdigest()[:12]
        rows[name] = {
            "examples": r.examples,
            "mutant_runs": r.stats.mutant_runs if r.stats else 0,
            "probe_runs": r.stats.probe_runs if r.stats else 0,
            "steps": r.steps, "found": r.invariant, "shrunk": r.shrunk(),
            "minimal": r.minimal_preemptions, "case": digest,
            "first_failure_example": r.stats.first_failure_example if r.stats else None,
            "clock_hit": r.clock_hit,
            "cpu_s": round(time.process_time() - c0, 1),
        }
        print(name, json.dumps(rows[name]), file=sys.stderr, flush=True)
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
