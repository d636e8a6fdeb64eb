"""What a soak run fuzzes (:class:`SoakConfig`) and how one session runs (:class:`SoakOptions`).

Also the checks of a configuration against what the model and the plugins register
(:func:`validate`), the rule that ``--resume`` fuzzes what the run fuzzed
(:func:`merge_resume_config`), and the durations people type and read (``8h``, ``2m05s``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from vmfuzz._budget import STEPS_PER_CPU_SECOND
from vmfuzz._duration import DurationError
from vmfuzz._duration import parse_duration as _parse_duration
from vmfuzz.plugins import PluginError, load_plugins
from vmfuzz.soak._plan import SCHEDULERS

DEFAULT_STATE_DIR = "soak-state"
SAMPLE_EVERY = 10  # one chunk of examples in this many runs under coverage.py
STATS_EVERY = 2.0  # seconds between stats.json writes
COVERAGE_EVERY = 15.0  # seconds between coverage merges
RSS_RECYCLE_MB = 2048.0  # a worker above this many MB is replaced after its campaign
# ... and after this many campaigns: each campaign's machine class stays referenced by
# Hypothesis (RuleBasedStateMachine._setup_state_per_class), ~0.1 MB a campaign.
RECYCLE_CAMPAIGNS = 200
# A campaign's default work: its share of the session (a tenth, within 5 s ... 60 s) at a
# core's steps per CPU second (vmfuzz._budget), so a resubmitted campaign does the same work.
STEPS_PER_CORE_SECOND = STEPS_PER_CPU_SECOND


class SoakError(Exception):
    """A usage problem: ``str(e)`` is one line for the user."""


@attrs.frozen
class SoakConfig:
    """What a run fuzzes; kept in ``run.json`` so that ``--resume`` fuzzes the same thing."""

    bugs: tuple[str, ...] = ()
    plugins: tuple[str, ...] = ()
    ops: tuple[str, ...] | None = None
    corpus: str = "corpus"  # "" in a --resume request: the run's corpus
    schedulers: tuple[str, ...] = SCHEDULERS
    checks: tuple[str, ...] | None = None  # --check: only these run (None: every check)
    no_checks: tuple[str, ...] = ()  # --no-check: turned off

    def to_json(self) -> dict[str, Any]:
        return {
            "checks": list(self.checks) if self.checks is not None else None,
            "no_checks": list(self.no_checks),
            "bugs": list(self.bugs),
            "plugins": list(self.plugins),
            "ops": list(self.ops) if self.ops is not None else None,
            "corpus": self.corpus,
            "schedulers": list(self.schedulers),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SoakConfig:
        ops = d.get("ops")
        return cls(
            tuple(d.get("bugs", ())),
            tuple(d.get("plugins", ())),
            tuple(ops) if ops is not None else None,
            str(d.get("corpus", "corpus")),
            tuple(d.get("schedulers") or SCHEDULERS),
            tuple(d["checks"]) if d.get("checks") is not None else None,
            tuple(d.get("no_checks", ())),
        )


@attrs.define
class SoakOptions:
    """One session of a soak run."""

    state_dir: Path
    duration: float
    workers: int
    config: SoakConfig
    resume: bool = False
    run_id: int | None = None  # --seed: the run's identity (None: drawn; --resume: the run's)
    campaign_seconds: float | None = None  # None: from the duration (5 s ... 60 s)
    campaign_steps: int | None = None  # None: campaign_budget() at STEPS_PER_CORE_SECOND
    dask: str | None = None  # --dask: the scheduler's address (None: local workers)
    sample_every: int = SAMPLE_EVERY
    stats_every: float = STATS_EVERY
    coverage_every: float = COVERAGE_EVERY
    stop_grace: float = 600.0  # seconds to wait for in-flight shrinking when stopping
    rss_recycle_mb: float = RSS_RECYCLE_MB
    recycle_campaigns: int = RECYCLE_CAMPAIGNS

    def campaign_budget(self) -> float:
        """Seconds each campaign may run: a tenth of the session, within 5 s ... 60 s."""
        if self.campaign_seconds is not None:
            return self.campaign_seconds
        return min(60.0, max(5.0, self.duration / 10))

    def campaign_work(self) -> int | None:
        """Scheduler steps each campaign runs (None: a campaign of ``campaign_seconds``)."""
        if self.campaign_steps is not None:
            return self.campaign_steps
        if self.campaign_seconds is not None:
            return None
        return round(self.campaign_budget() * STEPS_PER_CORE_SECOND)


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``2m``, ``8h``, ``1h30m``, ``1.5h`` or a bare number of seconds
    (:func:`vmfuzz._duration.parse_duration`, its error as a :class:`SoakError`)."""
    try:
        return _parse_duration(text)
    except DurationError as e:
        raise SoakError(str(e)) from None


def format_duration(seconds: float) -> str:
    """``45s``, ``2m05s``, ``8h00m``."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def validate(config: SoakConfig) -> None:
    """Import the model and the plugins; :class:`SoakError` for unknown bugs or operations."""
    # The model is imported here, not at the top: a worker imports it under coverage.py so
    # that its module-level lines count (see vmfuzz.soak._worker).
    import vmfuzz.kernel  # noqa: F401  (registers operations and bugs)

    try:
        load_plugins(config.plugins)
    except PluginError as e:
        raise SoakError(str(e)) from None
    from vmfuzz.kernel import BUGS, OPS

    unknown = [b for b in config.bugs if b not in BUGS]
    if unknown:
        known = ", ".join(sorted(BUGS)) or "(none registered)"
        raise SoakError(f"unknown bug {', '.join(unknown)}; known bugs: {known}")
    from vmfuzz.invariants._choice import choice_error

    bad_checks = choice_error(config.checks, config.no_checks)
    if bad_checks is not None:
        raise SoakError(bad_checks)
    from vmfuzz.schedules import FUZZ_SCHEDULERS as known_schedulers

    bad_sched = [x for x in config.schedulers if x not in known_schedulers]
    if bad_sched or not config.schedulers:
        raise SoakError(
            f"unknown scheduler {', '.join(bad_sched)}; one of {', '.join(known_schedulers)}"
        )
    if not OPS:
        raise SoakError(
            "no kernel operations are registered (vmfuzz.kernel.ops.OPS is empty); "
            "load some with --plugin MODULE"
        )
    if config.ops is not None:
        bad = [o for o in config.ops if o not in OPS]
        if bad:
            raise SoakError(
                f"unknown operation {', '.join(bad)}; known: {', '.join(sorted(OPS))}"
            )


def merge_resume_config(old: SoakConfig, new: SoakConfig) -> SoakConfig:
    """``--resume`` fuzzes what the run fuzzed; options given again must agree with it."""
    for field, given, kept in (
        ("--bug", new.bugs, old.bugs),
        ("--plugin", new.plugins, old.plugins),
    ):
        if given and sorted(given) != sorted(kept):
            raise SoakError(
                f"--resume: {field} {' '.join(given) or '(none)'} differs from the run's "
                f"{' '.join(kept) or '(none)'}; leave it out to continue the run as it was"
            )
    if (new.checks is not None or new.no_checks) and (
            sorted(new.checks or ()) != sorted(old.checks or ())
            or (new.checks is None) != (old.checks is None)
            or sorted(new.no_checks) != sorted(old.no_checks)):
        raise SoakError("--resume: --check/--no-check differ from the run's; leave them out")
    if new.ops is not None and old.ops is not None and sorted(new.ops) != sorted(old.ops):
        raise SoakError("--resume: --op differs from the run's; leave it out")
    if new.ops is not None and old.ops is None:
        raise SoakError("--resume: the run fuzzed every operation; leave --op out")
    if new.schedulers != SCHEDULERS and sorted(new.schedulers) != sorted(old.schedulers):
        raise SoakError("--resume: --scheduler differs from the run's; leave it out")
    if new.corpus and Path(new.corpus).resolve() != Path(old.corpus).resolve():
        raise SoakError(f"--resume: --corpus {new.corpus} differs from the run's {old.corpus}")
    return old
