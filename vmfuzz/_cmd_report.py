"""Print the morning summary of a soak run again (and rewrite its HTML report).

  vmfuzz report soak-state           duration, throughput, the search, findings with timelines
  vmfuzz report soak-state --json    the same as one JSON object
  vmfuzz report soak-state --watch 30
                                     rewrite STATE/report.html every 30 s while the run goes
                                     on (the page reloads itself as often); Ctrl-C ends
  vmfuzz report host1-state host2-state --html all.html
                                     several runs (several machines' soaks) in one summary

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
waiting for one: near 1 when they never idle), steps_per_cpu_second, run_id (the run's
identity: its campaign seeds are its own), pairs (distinct interleaving pairs the campaigns
met), new_pairs_last_hour, pool (programs in the run's shared pool), workers_lost (Dask
workers that left), dask (the cluster's address, or null), summary, report.

Several folders: the runs' totals summed, findings grouped by signature across them (with the
folders that hit each), interleaving pairs and pool programs counted once however many runs
met them, and a warning for two runs with one run identity (they searched the same campaigns).
--json keys then: states, elapsed, examples, steps, campaigns, worker_cpu_seconds, pairs,
pool, findings (each with states), shared_identities, runs (each folder's own summary).
Exit status: 0 no findings, 1 findings, 2 not a soak state directory, or a state file that is
corrupt (one line naming the file: a truncated stats.json is never read as empty counters).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("state", metavar="STATE_DIR", nargs="+",
                   help="the state directory of a soak run (several: one merged summary)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--watch", type=float, default=None, metavar="SECONDS",
                   help="rewrite the HTML report every SECONDS until the run's session ends "
                        "(the page reloads itself as often); one state directory")
    p.add_argument("--html", default=None, metavar="PATH",
                   help="where the merged page of several runs goes (default "
                        "vmfuzz-report.html here)")


def _error(msg: str) -> int:
    sys.stderr.write(f"vmfuzz report: error: {msg}\n")
    return 2


def run(args: argparse.Namespace) -> int:
    from vmfuzz.plugins import PluginError, load_plugins
    from vmfuzz.soak import SoakError, read_run

    # (a Namespace built by a caller may hold one folder, and neither --watch nor --html)
    given = [args.state] if isinstance(args.state, str) else args.state
    states = [Path(x) for x in given]
    watch, html = getattr(args, "watch", None), getattr(args, "html", None)
    if watch is not None and (len(states) > 1 or watch <= 0):
        return _error("--watch takes one state directory and a number of seconds > 0")
    if html is not None and len(states) == 1:
        return _error("--html is for several state directories (one writes STATE/report.html)")
    for state in states:
        try:
            run_json = read_run(state)
        except SoakError as e:
            return _error(str(e))
        if run_json is None:
            return _error(f"{state}: not a soak state directory (no run.json)")
        try:  # the run's plugins: their operations appear in the findings' timelines
            load_plugins(run_json["config"].get("plugins", []))
        except PluginError as e:
            sys.stderr.write(f"vmfuzz report: warning: {e}\n")
    if len(states) > 1:
        return _merged(states, html, args.json)
    if watch is not None:
        return _watch(states[0], watch)
    return _one(states[0], args.json)


def _one(state: Path, as_json: bool, refresh: float | None = None) -> int:
    from vmfuzz.soak import SoakError, write_reports

    try:
        summary = write_reports(state, refresh=refresh)
    except SoakError as e:  # a corrupt state file: one line naming it
        return _error(str(e))
    except OSError as e:  # summary.txt / report.html could not be written
        return _error(f"cannot write the report: {e}")
    text = summary.pop("text", "")
    if as_json:
        print(json.dumps(summary))
    elif refresh is None:
        sys.stdout.write(text)
    return 1 if summary["findings"] else 0


def _watch(state: Path, every: float) -> int:
    """Rewrite the report every ``every`` seconds while the run's last session goes on."""
    import time

    from vmfuzz.soak import SoakError, read_run

    sys.stderr.write(f"vmfuzz report: writing {state / 'report.html'} every {every:g} s "
                     "until the run's session ends (Ctrl-C to stop)\n")
    try:
        while True:
            try:
                run_json = read_run(state) or {}
            except SoakError as e:
                return _error(str(e))
            sessions = run_json.get("sessions") or [{}]
            if sessions[-1].get("ended") is not None:
                sys.stderr.write("vmfuzz report: the session has ended\n")
                return _one(state, False)
            code = _one(state, False, refresh=every)
            if code == 2:
                return code
            time.sleep(every)
    except KeyboardInterrupt:
        return _one(state, False)


def _merged(states: list[Path], html: str | None, as_json: bool) -> int:
    from vmfuzz.soak import SoakError
    from vmfuzz.soak._files import write_text
    from vmfuzz.soak._report import merge_runs, merged_text, render_merged_html

    try:
        merged = merge_runs(states)
    except SoakError as e:
        return _error(str(e))
    out = Path(html or "vmfuzz-report.html")
    try:
        write_text(out, render_merged_html(merged))
    except OSError as e:
        return _error(f"cannot write {out}: {e.strerror or e}")
    merged["report"] = str(out)
    if as_json:
        print(json.dumps(merged))
    else:
        sys.stdout.write(merged_text(merged) + f"report: {out}\n")
    return 1 if merged["findings"] else 0
