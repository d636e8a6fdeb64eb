"""Soak run: fuzz on every core for hours, keep every finding, say in the morning what happened.

Examples:
  vmfuzz soak --duration 8h                     all cores, fixed kernel, state in soak-state/
  vmfuzz soak --duration 2m --workers 2 --bug NAME
  vmfuzz soak --resume --duration 1h            continue the run in soak-state/ (no seed repeats)
  vmfuzz soak --plugin ./p.py --bug NAME        every worker loads the plugin (a bug of its own)
  vmfuzz soak --dask tcp://HOST:8786 --duration 8h   campaigns on a Dask cluster (README)
  vmfuzz soak --seed 7 --duration 8h            this run's identity is 7 (default: drawn)
  vmfuzz report soak-state                      print the morning summary again

Each run has an identity (--seed, or drawn and kept in STATE/run.json): its campaign seeds are
its own, so soaks on several machines (different identities) never search the same campaign.
Each worker process loops over campaigns with seeds no other campaign of the run used, rotating
schedulers (by default those the schedule modes table marks for soaks: preemptions, pct,
random) and profiles.  A campaign is a number of model steps (--campaign-budget; by default
a tenth of --duration, 5 s to 60 s, at 23.4k steps per CPU second): the same work on any
machine.  Campaigns that keep a program pool (pct) start from the run's shared pool
(STATE/pool/, kept across --resume) and add the programs they keep to it; a failure whose
check and label the run already has is not shrunk again.  A failure is shrunk, saved to the corpus
(one file per failure signature, however many workers find it) and its timeline written to
STATE/timelines/ the moment it is found.  A worker that dies is restarted; its death is a
finding too.  Ctrl-C stops cleanly (a failure being shrunk is shrunk and saved first; Ctrl-C
again stops at once), kill -9 loses no finding already reported, --resume continues.

STATE/stats.json is rewritten every few seconds: examples, steps, steps/s, findings, counts per
operation and per yield label, distinct interleaving pairs met and the pool's size over time,
line and branch coverage of the model (vmfuzz.kernel, measured on one chunk of examples in
ten, merged across local workers).  At the end the summary is printed and written to
STATE/summary.txt, with plots and timelines in STATE/report.html ('vmfuzz report STATE --watch
60' rewrites it every minute during the run).  Progress goes to stderr: a self-overwriting line
on a terminal, else a line every 30 s (--progress-every) and one per event.

--dask ADDRESS: the campaigns are Dask tasks on the cluster whose scheduler is at ADDRESS
('dask scheduler', 'dask worker ADDRESS --nthreads 1' on each host; pip install
"vmfuzz[cluster]").  Everything comes back into STATE and the corpus here.  A worker lost
mid-campaign loses nothing: Dask runs its campaign again elsewhere (the same work, the same
result).  At the end of --duration nothing more is submitted and the campaigns in flight finish;
--resume --dask submits again those a killed session had in flight.

Faults.  Before anything runs, the state folder and the corpus must be writable and every
state file of a --resume sound (else one line naming the folder or file, exit status 2: a
truncated stats.json or slot file is never read as zero counters or seed 0).  A write that
fails during the run (a full disk) stops the session cleanly: workers finish their campaign, a
failure the corpus cannot take is saved to a fallback folder ($VMFUZZ_FALLBACK_DIR, else
~/.local/state/vmfuzz/unsaved, else $TMPDIR/vmfuzz-unsaved-UID; the summary names it), the
summary is printed even if it cannot be written, and --resume goes on once there is room.
After a kill -9 of this process its workers stop at their next chunk of examples (a failure
being shrunk is saved first); --resume waits for them and counts their last campaigns from the
slot logs.

--json prints the summary as one JSON object (see 'vmfuzz report --json'; "write_error" is
the write that stopped the run, or null).
Exit status: 0 nothing found, 1 findings (failures or worker crashes), 2 usage, bad input or
a corrupt state file, 4 the run stopped because a file could not be written, or a finding is
not in the corpus (in a fallback folder, or printed in the summary).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from vmfuzz import _check_args
from vmfuzz._cores import available_cores
from vmfuzz.plugins import portable_spec
from vmfuzz.schedules import SOAK_SCHEDULERS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", default="8h", metavar="TIME",
                   help="how long this session runs: 90s, 2m, 8h, 1h30m (default 8h)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes (default: a worker per core this process may use, "
                        f"here {available_cores()})")
    p.add_argument("--bug", action="append", default=[], metavar="NAME",
                   help="switch on a historical bug (repeatable); 'vmfuzz bugs' lists them")
    p.add_argument("--corpus", default=None, metavar="DIR",
                   help="where failures are saved (default: corpus/; --resume: the run's)")
    p.add_argument("--state", default=None, metavar="DIR",
                   help="the run's state directory (default: soak-state/)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in the state directory (same bugs, fresh seeds)")
    p.add_argument("--seed", type=int, default=None, metavar="N",
                   help="the run's identity, 0 .. 2**30-1 (default: drawn, kept in run.json): "
                        "runs with different identities never share a campaign seed, so soaks "
                        "on several machines search different examples")
    p.add_argument("--op", action="append", default=None, metavar="NAME",
                   help="fuzz only these operations (repeatable; default: all)")
    p.add_argument("--scheduler", action="append", default=None, metavar="NAME",
                   help="rotate only through these schedulers (repeatable; default: "
                        f"{', '.join(SOAK_SCHEDULERS)})")
    p.add_argument("--dask", default=None, metavar="ADDRESS",
                   help="run the campaigns on a Dask cluster: the scheduler's address "
                        "(tcp://HOST:8786); --workers is then the cluster's own (needs "
                        'pip install "vmfuzz[cluster]")')
    p.add_argument("--campaign-budget", default=None, metavar="STEPS",
                   help="each campaign's work in model steps: 500ksteps, 2Msteps (default: a "
                        "tenth of --duration, 5 s ... 60 s, at a core's 23.4k steps per CPU "
                        "second): the same work on any machine, and again when resubmitted")
    p.add_argument("--coverage-every", type=int, default=None, metavar="N",
                   help="measure model coverage on one chunk of examples in N (default 10; "
                        "0: do not measure)")
    p.add_argument("--progress-every", type=float, default=None, metavar="SECONDS",
                   help="when stderr is not a terminal, a progress line every SECONDS "
                        "(default 30; 0: events only)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    _check_args.add_arguments(p)


def _parse_steps(text: str) -> int | str:
    """The step budget in ``text`` (``500ksteps``), or the one-line error."""
    from vmfuzz._budget import BudgetError, parse_budget

    try:
        budget = parse_budget(text)
    except BudgetError as e:
        return f"--campaign-budget: {e}"
    if budget.steps is None:
        return (f"--campaign-budget {text}: a soak campaign is a number of model steps "
                "(500ksteps, 2Msteps), so that it is the same work wherever it runs")
    return budget.steps


def _usage_error(msg: str) -> int:
    sys.stderr.write(f"vmfuzz soak: error: {msg}\n")
    return 2


class _StatusLine:
    """Progress on stderr: one self-overwriting line on a terminal; elsewhere (nohup, systemd,
    CI) a plain line every ``every`` seconds.  Events (findings, workers lost) are lines."""

    def __init__(self, terminal: bool, every: float) -> None:
        self.terminal = terminal
        self.every = every
        self.next_line = 0.0
        self.shown = False

    def status(self, snap: object) -> None:
        import time

        from vmfuzz.soak import Snapshot, format_duration

        if not isinstance(snap, Snapshot):
            return
        if not self.terminal:
            now = time.monotonic()
            if self.every <= 0 or now < self.next_line:
                return
            self.next_line = now + self.every
        cov = snap.coverage or {}
        cov_text = (
            f"  cov {cov.get('lines', 0):.1f}% lines {cov.get('branches', 0):.1f}% br"
            if cov.get("lines") is not None else ""
        )
        state = f"  [{snap.stopping}: finishing]" if snap.stopping else ""
        line = (
            f"[{format_duration(snap.session_elapsed)}/{format_duration(snap.duration)}] "
            f"findings {snap.findings}  {snap.steps_per_second:,.0f} steps/s  "
            f"{snap.examples:,} examples  {snap.campaigns} campaigns  "
            f"pairs {snap.pairs:,}  pool {snap.pool:,}  "
            f"{snap.alive}/{snap.workers} workers{cov_text}{state}"
        )
        if not self.terminal:
            sys.stderr.write(f"vmfuzz soak: {line}\n")
            sys.stderr.flush()
            return
        width = 200
        try:
            width = os.get_terminal_size(sys.stderr.fileno()).columns - 1
        except OSError:
            pass
        sys.stderr.write("\r" + line[:width] + "\x1b[K")
        sys.stderr.flush()
        self.shown = True

    def event(self, msg: str) -> None:
        if not self.terminal:
            sys.stderr.write(f"vmfuzz soak: {msg}\n")
        else:
            sys.stderr.write(("\r\x1b[K" if self.shown else "") + msg + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.terminal and self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    from vmfuzz.soak import (
        DEFAULT_STATE_DIR,
        SCHEDULERS,
        SoakConfig,
        SoakError,
        SoakOptions,
        parse_duration,
        run_soak,
    )

    try:
        duration = parse_duration(args.duration)
    except SoakError as e:
        return _usage_error(str(e))
    workers = args.workers if args.workers is not None else available_cores()
    if workers < 1:
        return _usage_error("--workers must be >= 1")
    from vmfuzz._limits import MAX_WORKERS

    if workers > MAX_WORKERS:
        return _usage_error(f"--workers must be at most {MAX_WORKERS}, not {workers}")
    state = Path(args.state or DEFAULT_STATE_DIR)
    if state.exists() and not state.is_dir():
        return _usage_error(f"--state {state}: not a directory")
    config = SoakConfig(
        bugs=tuple(args.bug),
        plugins=tuple(portable_spec(p) for p in args.plugin),  # --plugin: every command's
        ops=tuple(args.op) if args.op else None,
        corpus=str(Path(args.corpus).resolve()) if args.corpus else "",
        schedulers=tuple(dict.fromkeys(args.scheduler)) if args.scheduler else SCHEDULERS,
        checks=tuple(dict.fromkeys(args.check)) if args.check is not None else None,
        no_checks=tuple(dict.fromkeys(args.no_check)),
    )
    if args.coverage_every is not None and args.coverage_every < 0:
        return _usage_error("--coverage-every must be >= 0")
    from vmfuzz.soak._plan import MAX_RUN_ID

    if args.seed is not None and not 0 <= args.seed <= MAX_RUN_ID:
        return _usage_error(f"--seed must be 0 .. {MAX_RUN_ID}, not {args.seed}")
    steps = None
    if args.campaign_budget is not None:
        parsed = _parse_steps(args.campaign_budget)
        if isinstance(parsed, str):
            return _usage_error(parsed)
        steps = parsed
    opts = SoakOptions(state_dir=state, duration=duration, workers=workers, config=config,
                       resume=args.resume, run_id=args.seed, campaign_steps=steps,
                       dask=args.dask)
    if args.coverage_every is not None:
        opts.sample_every = args.coverage_every
    if args.progress_every is not None and args.progress_every < 0:
        return _usage_error("--progress-every must be >= 0")
    terminal = sys.stderr.isatty()
    every = args.progress_every if args.progress_every is not None else 30.0
    ui = _StatusLine(terminal, every)
    try:
        summary = run_soak(opts, on_status=ui.status, on_event=ui.event)
    except SoakError as e:
        ui.close()
        return _usage_error(str(e))
    ui.close()
    text = summary.pop("text", "")
    if args.json:
        print(json.dumps(summary))
    else:
        sys.stdout.write(text)
    outside = [f for f in summary["findings"] if f.get("corpus_error") or f.get("case_text")]
    if summary.get("write_error") or outside:
        why = summary.get("write_error") or outside[0].get("corpus_error")
        sys.stderr.write(f"vmfuzz soak: cannot write ({why}): "
                         + (f"{len(outside)} finding(s) are not in the corpus (the summary says "
                            "where they are); " if outside else "")
                         + "free space, then continue with --resume\n")
        return 4
    return 1 if summary["findings"] else 0
