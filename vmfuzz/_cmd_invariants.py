"""List the invariant checks: name, family, one-line doc, and the kernel check each mirrors.

Model checks run after every scheduler step (incrementally, on what the step touched); engine
checks (deadlock, lock order, sleeping in atomic ...) are raised by the scheduler itself.  Every
violation names its check, so these names are what corpus files and bug registrations use.
--json prints {"checks": [{"name", "family", "doc", "mirrors", "scopes"}, ...]} in run order.
"""

from __future__ import annotations

import argparse
import json
import textwrap


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--family", metavar="NAME", help="only the checks of this family")


def run(args: argparse.Namespace) -> int:
    from vmfuzz.invariants import CHECKS

    checks = [c for c in CHECKS.values() if args.family is None or c.family == args.family]
    if not checks:
        families = sorted({c.family for c in CHECKS.values()})
        print(f"vmfuzz invariants: no family {args.family!r} (families: {', '.join(families)})")
        return 2
    if args.json:
        print(json.dumps({"checks": [c.to_json() for c in checks]}, indent=2))
        return 0
    width = max(len(c.name) for c in checks)
    family = None
    for c in checks:
        if c.family != family:
            family = c.family
            how = "raised by the engine" if not c.per_step else "checked after every step"
            print(f"{'' if c is checks[0] else chr(10)}[{family}] ({how})")
        print(f"  {c.name:<{width}}  {c.doc}")
        for line in textwrap.wrap(f"mirrors: {c.mirrors}", 96 - width):
            print(f"  {'':<{width}}    {line}")
    return 0
