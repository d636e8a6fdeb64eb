"""Soak runs: campaigns on every core, or on a Dask cluster, for hours, that survive
interruption and lose nothing.

:func:`run_soak` starts N worker processes (``spawn``; one per core by default), or, with
``SoakOptions.dask``, submits the campaigns to a Dask cluster (:mod:`vmfuzz.soak._cluster`).
Each local worker loops over campaigns (:func:`vmfuzz.campaign.fuzz`) until the run's deadline.
Every run has an identity ``R`` (``--seed``, or drawn; in ``run.json``); campaign ``i`` of
worker slot ``w`` has the seed ``R * RUN_STRIDE + w * SEED_STRIDE + i``, so no two campaigns of
a run, and none of two runs with different identities, share a seed; the slot's cursor is
written to the state directory *before* a campaign starts, so a restarted worker or a
``--resume`` never repeats one.  A campaign is a step budget (``--campaign-budget``; by default
its share of the session at a core's rate), so it does the same work on any machine.
Campaigns rotate through the schedulers (preemption lists, PCT, random walk) and the
:data:`PROFILES`; a campaign is reproducible from its recorded (seed, scheduler, profile) and
the pool it started from: see :func:`rerun_campaign`.

The run's pool of programs (``pool/``, :mod:`vmfuzz.soak._pool`) is shared: every campaign that
keeps a pool starts from its newest programs and adds the ones it kept, across workers,
machines and sessions.  A failure whose check and label the run has already shrunk is saved
as Hypothesis shrank it, without the post-Hypothesis shrink.

A failure is shrunk by the campaign in the worker that found it, saved to the corpus with
:func:`vmfuzz.corpus.save_failure` (atomic; named after the failure's signature, so the same
failure found by several workers is one file), its timeline drawn, and a finding record written
(atomically) to ``findings/`` before the parent hears of it: killing the whole run loses no
finding already reported.  A worker that dies (an exception outside the model, a signal, an
``os._exit``) is restarted, and the crash is itself a finding.

One chunk of examples in ``SAMPLE_EVERY`` (a campaign runs its examples in chunks, see
:func:`vmfuzz.campaign.fuzz`) runs under coverage.py, measuring line and branch coverage of the
``vmfuzz.kernel`` package; the parent merges the workers' data files now and then (local
workers only).

The state directory::

    run.json              what is fuzzed (bugs, plugins, ops, corpus), the run's identity,
                          and the sessions so far
    stats.json            totals, per-op / per-label counts, coverage, time series (atomic):
                          steps, examples, interleaving pairs, pool size, findings over time
    pairs.json            the distinct interleaving pairs the run's campaigns met
    pool/*.json           the run's shared pool: one program each (a case, corpus JSON)
    workers/slot<N>.json  the slot's seed cursor and its campaign in flight (atomic); slot 256:
                          the Dask campaigns' cursor and every campaign in flight
    workers/slot<N>.log   one JSON line per finished campaign
    workers/slot<N>.stack the worker's Python stack, each time it gets SIGUSR1
    findings/*.json       one record per finding, written when it is found (atomic)
    timelines/*.txt       the race timeline of each saved finding
    hits/*.json           unshrunk cases of failures the run had already shrunk and saved
                          (counted as hits of that finding, kept out of the corpus)
    coverage/             coverage.py data of the sampled chunks, one file per process
    coverage.json         the merged coverage (coverage.py's JSON report)
    summary.txt           the morning summary;  report.html: the same with plots

The modules, each importing only those above it::

    _plan        run identities; seeds, schedulers and profiles of each campaign
    _files       atomic JSON/text writes (vmfuzz._write), log lines, file locks
    _metrics     worker memory and CPU time from /proc
    _config      SoakConfig, SoakOptions, validate, durations (plugins: vmfuzz.plugins)
    _schema      what each state file must hold; a damaged one is an error naming it
    _findings    finding records, grouped by signature
    _coverage    merging the workers' coverage data
    _svg         the SVG line charts of the HTML page
    _state       run.json, the session lock, stats.json read back, campaigns in flight
    _pool        the run's shared pool in the state folder
    _report      summary text and HTML page (what ``vmfuzz report`` writes); several runs
    _task        one campaign as plain data in and out (what a Dask worker runs)
    _worker      the worker process; rerun_campaign; saving a finding
    _supervisor  Soak: the session's parent process; run_soak
    _cluster     ClusterSoak: the session's parent on a Dask cluster
    _session     run_soak: a session on local workers or on a cluster
    _bench       vmfuzz bench --soak: the pool carried vs cold; 1 vs 2 Dask workers

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
from vmfuzz.soak._session import run_soak
from vmfuzz.soak._state import FORMAT, read_run
from vmfuzz.soak._supervisor import Snapshot
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
