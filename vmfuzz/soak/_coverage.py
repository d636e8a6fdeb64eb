"""Coverage of the model: the workers' sampled coverage.py data, merged into ``coverage.json``.

One chunk of examples in ``SAMPLE_EVERY`` runs under coverage.py (line and branch coverage of
the ``vmfuzz.kernel`` package), each worker process writing its own data file under
``coverage/``; :func:`merge_coverage` combines them now and then.  Coverage thus costs about a
tenth of the throughput instead of half of it, and samples every kind of campaign.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

COVERED_PACKAGE = "vmfuzz.kernel"
COV_WARNINGS = [
    "no-data-collected", "module-not-imported", "module-not-measured", "couldnt-parse",
    "no-ctracer", "already-imported",
]


def merge_coverage(state_dir: Path) -> dict[str, Any] | None:
    """Combine every worker's coverage data file; the totals (percentages) or None."""
    files = sorted(
        str(p) for p in (state_dir / "coverage").glob("cov.slot*")
        if not p.name.endswith("-journal")
    )
    if not files:
        return None
    try:
        import coverage  # optional for fuzzing itself: imported only when there is data

        merged = coverage.Coverage(data_file=None, branch=True, source_pkgs=[COVERED_PACKAGE])
        merged.set_option("run:disable_warnings", COV_WARNINGS)
        merged.combine(files, keep=True)
        out = state_dir / "coverage.json"
        tmp = state_dir / ".coverage.json.tmp"
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            merged.json_report(outfile=str(tmp))
        os.replace(tmp, out)
        totals = json.loads(out.read_text(encoding="utf-8"))["totals"]
    except Exception:  # a data file being written, or no coverage.py: try again later
        return None
    stmts = totals.get("num_statements", 0)
    branches = totals.get("num_branches", 0)
    return {
        "lines": round(100.0 * totals.get("covered_lines", 0) / stmts, 2) if stmts else None,
        "branches": round(100.0 * totals.get("covered_branches", 0) / branches, 2)
        if branches else None,
        "covered_lines": totals.get("covered_lines", 0),
        "statements": stmts,
        "covered_branches": totals.get("covered_branches", 0),
        "branches_total": branches,
    }
