"""Print the morning summary of a soak run again (and rewrite its HTML report).

  vmfuzz report soak-state           duration, throughput, coverage, findings with timelines
  vmfuzz report soak-state --json    the same as one JSON object

Works for a run that is still going or was killed: everything is read from the state directory
(run.json, stats.json, findings/, timelines/, coverage.json).  STATE/summary.txt and
STATE/report.html (plots of throughput and coverage over time, the findings' timelines) are
written again.

--json keys: state, elapsed, sessions, stop, workers, bugs, plugins, ops, corpus, examples,
steps, campaigns, budget_hits, schedulers, profiles, examples_per_second, steps_per_second,
coverage ({lines, branches, covered_lines, statements, covered_branches, branches_total,
sampled_chunks} | null), findings (one per signature: signature, kind, check, message,
corpus, timeline, elapsed, hits, workers, seed, scheduler, profile, shrunk ...), interrupted,
max_worker_rss_mb, worker_cpu_seconds, cores_busy (worker CPU seconds per second: how much of
the machine the run got), cpu_bound (the fraction of the workers' lifetime spent on a CPU or
waiting for one: near 1 when they never idle), steps_per_cpu_second, summary, report.
Exit status: 0 no findings, 1 findings, 2 not a soak state directory, or a state file that is
corrupt (one line naming the file: a truncated stats.json is never read as empty counters).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("state", metavar="STATE_DIR", help="the state directory of a soak run")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def run(args: argparse.Namespace) -> int:
    from vmfuzz.plugins import PluginError, load_plugins
    from vmfuzz.soak import SoakError, read_run, write_reports

    state = Path(args.state)
    try:
        run_json = read_run(state)
    except SoakError as e:
        sys.stderr.write(f"vmfuzz report: error: {e}\n")
        return 2
    if run_json is None:
        sys.stderr.write(f"vmfuzz report: error: {state}: not a soak state directory "
                         "(no run.json)\n")
        return 2
    try:  # the run's plugins: their operations appear in the findings' timelines
        load_plugins(run_json["config"].get("plugins", []))
    except PluginError as e:
        sys.stderr.write(f"vmfuzz report: warning: {e}\n")
    try:
        summary = write_reports(state)
    except SoakError as e:  # a corrupt state file: one line naming it
        sys.stderr.write(f"vmfuzz report: error: {e}\n")
        return 2
    except OSError as e:  # summary.txt / report.html could not be written
        sys.stderr.write(f"vmfuzz report: error: cannot write the report: {e}\n")
        return 2
    text = summary.pop("text", "")
    if args.json:
        print(json.dumps(summary))
    else:
        sys.stdout.write(text)
    return 1 if summary["findings"] else 0
