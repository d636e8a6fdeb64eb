"""Soak runs: campaigns on every core, for hours, that survive interruption and lose nothing.

:func:`run_soak` starts N worker processes (``spawn``; one per core by default).  Each worker
loops over campaigns (:func:`vmfuzz.campaign.fuzz`) until the run's deadline.  Campaign ``i``
of worker slot ``w`` has the seed ``w * SEED_STRIDE + i``, so no two campaigns of a run share a
seed; the slot's cursor is written to the state directory *before* a campaign starts, so a
restarted worker or a ``--resume`` never repeats one.  Campaigns rotate through the schedulers
(preemption lists, PCT, random walk) and the :data:`PROFILES`; a campaign is reproducible from
its recorded (seed, scheduler, profile): see :func:`rerun_campaign`.

A failure is shrunk by the campaign in the worker that found it, saved to the corpus with
:func:`vmfuzz.corpus.save_failure` (atomic; named after the failure's signature, so the same
failure found by several workers is one file), its timeline drawn, and a finding record written
(atomically) to ``findings/`` before the parent hears of it: killing the whole run loses no
finding already reported.  A worker that dies (an exception outside the model, a signal, an
``os._exit``) is restarted, and the crash is itself a finding.

One chunk of examples in ``SAMPLE_EVERY`` (a campaign runs its examples in chunks, see
:func:`vmfuzz.campaign.fuzz`) runs under coverage.py, measuring line and branch coverage of the
``vmfuzz.kernel`` package; the parent merges the workers' data files now and then.

The state directory::

    run.json              what is fuzzed (bugs, plugins, ops, corpus) and the sessions so far
    stats.json            totals, per-op / per-label counts, coverage, time series (atomic)
    workers/slot<N>.json  the slot's seed cursor and its campaign in flight (atomic)
    workers/slot<N>.log   one JSON line per finished campaign
    workers/slot<N>.stack the worker's Python stack, each time it gets SIGUSR1
    findings/*.json       one record per finding, written when it is found (atomic)
    timelines/*.txt       the race timeline of each saved finding
    coverage/             coverage.py data of the sampled chunks, one file per process
    coverage.json         the merged coverage (coverage.py's JSON report)
    summary.txt           the morning summary;  report.html: the same with plots

The modules, each importing only those above it::

    _plan        seeds, schedulers and profiles of each campaign
    _files       atomic JSON/text writes (vmfuzz._write), log lines, file locks
    _metrics     worker memory and CPU time from /proc
    _config      SoakConfig, SoakOptions, validate, durations (plugins: vmfuzz.plugins)
    _schema      what each state file must hold; a damaged one is an error naming it
    _findings    finding records, grouped by signature
    _coverage    merging the workers' coverage data
    _report      summary text and HTML page (what ``vmfuzz report`` writes)
    _svg         the SVG line charts of the HTML page
    _state       run.json, the session lock, stats.json read back, campaigns in flight
    _worker      the worker process; rerun_campaign
    _supervisor  Soak: the session's parent process; run_soak

Nothing here knows about a specific kernel path or bug.
"""

from vmfuzz.soak._config import (
    DEFAULT_STATE_DIR,
    SoakConfig,
    SoakError,
    SoakOptions,
    format_duration,
    parse_duration,
    validate,
)
from vmfuzz.soak._files import read_json, read_jsonl
from vmfuzz.soak._plan import PROFILES, SCHEDULERS, SEED_STRIDE, Profile, campaign_plan
from vmfuzz.soak._report import write_reports
from vmfuzz.soak._state import FORMAT, read_run
from vmfuzz.soak._supervisor import Snapshot, run_soak
from vmfuzz.soak._svg import svg_chart
from vmfuzz.soak._worker import rerun_campaign

__all__ = [
    "DEFAULT_STATE_DIR",
    "FORMAT",
    "PROFILES",
    "SCHEDULERS",
    "SEED_STRIDE",
    "Profile",
    "Snapshot",
    "SoakConfig",
    "SoakError",
    "SoakOptions",
    "campaign_plan",
    "format_duration",
    "parse_duration",
    "read_json",
    "read_jsonl",
    "read_run",
    "rerun_campaign",
    "run_soak",
    "svg_chart",
    "validate",
    "write_reports",
]
