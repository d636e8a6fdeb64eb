"""A campaign's context: its configuration in, its statistics, failure and pool out.

The campaign builds one and hands it to every state-machine instance it runs (Hypothesis
builds a machine per example from a factory bound to it); nothing of a campaign lives on a
class, so campaigns run one after another in one process leave nothing behind.
"""

from __future__ import annotations

import attrs

from vmfuzz.case import DEFAULT_MAX_STEPS
from vmfuzz.failure import Failure
from vmfuzz.kernel import KernelConfig
from vmfuzz.pool import Pool
from vmfuzz.schedules import FUZZ_SCHEDULERS


@attrs.define(eq=False)
class Stats:
    """Counters over a whole campaign (all examples, including shrinking)."""

    examples: int = 0
    steps: int = 0
    first_failure_example: int | None = None  # examples run before the first failure (unshrunk)
    first_failure_at: float | None = None  # time.monotonic() of the first failure
    first_failure_steps: int | None = None  # steps run up to the first failure, its run's too
    # what ran the first failure: "a Hypothesis example", or a pool mechanism (Pool.found_by)
    found_by: str | None = None
    budget_hits: int = 0
    mutant_runs: int = 0  # runs of the pool's mutants (vmfuzz.pool), not examples
    probe_runs: int = 0  # runs of the pool's partner and ABA probes (Pool.probe)
    ops: dict[str, int] = attrs.field(factory=dict)
    labels: dict[str, int] = attrs.field(factory=dict)


class StepBudgetSpent(KeyboardInterrupt):
    """Raised as an example would start once the campaign's ``step_budget`` is spent.
    Hypothesis takes a KeyboardInterrupt as "stop now": the chunk's run ends at once, with
    nothing counted as a failure or shrunk; the campaign catches this one alone."""


def _check_scheduler(_ctx: object, _attr: object, value: str) -> None:
    if value not in FUZZ_SCHEDULERS:
        raise ValueError(
            f"scheduler must be one of {', '.join(FUZZ_SCHEDULERS)}, not {value!r}"
        )


@attrs.define(eq=False)
class CampaignContext:
    """What one campaign's examples share: configuration (read) and results (written).

    ``scheduler`` is a row of :data:`vmfuzz.schedules.MODES` or ``mixed``; ``amplify`` is how
    many more schedules of its kind each drawn program runs under; with ``pool`` (see
    :meth:`with_pool`) examples with new interleavings are offered to a program pool."""

    config: KernelConfig = attrs.field(factory=KernelConfig)
    scheduler: str = attrs.field(default="mixed", validator=_check_scheduler)
    ops: list[str] | None = None
    max_threads: int = 4
    max_steps: int = DEFAULT_MAX_STEPS
    collect_labels: bool = False
    amplify: int = 0
    draw_world: bool = True  # each example starts from a drawn world (kernel.boot)
    step_budget: int | None = None  # scheduler steps over the whole campaign (None: no limit)
    # Out: what the campaign's examples did and found.
    stats: Stats = attrs.field(factory=Stats)
    failure: Failure | None = None
    pool: Pool | None = None

    def step_budget_spent(self) -> bool:
        """The campaign ran ``step_budget`` steps and has found nothing (a failure found is
        still shrunk: that is not part of the budget)."""
        return (
            self.step_budget is not None
            and self.stats.first_failure_at is None
            and self.stats.steps >= self.step_budget
        )

    def with_pool(self) -> CampaignContext:
        """This context with a fresh program pool of its configuration."""
        self.pool = Pool(self.config, self.ops, self.max_threads)
        return self
