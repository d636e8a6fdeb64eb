"""The fuzzer's schedule modes, in one table: how an example's schedule is drawn.

A mode turns the schedule parameters an example draws once (seed, PCT depth, PCT k) into a
schedule source.  ``mixed`` is not a row: each of its examples draws one of the rows by
``mixed`` (which values of a uniform draw 0..N-1 pick the row).  A new strategy is one source
module in this package plus one row here; the state machine, the campaign, the soak's rotation
and the CLI's ``--scheduler`` choices all read this table.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from vmfuzz._scheduler import ScheduleSource
from vmfuzz.schedules._echo import Echo
from vmfuzz.schedules._nonpreemptive import NonPreemptive
from vmfuzz.schedules._pct import PCT
from vmfuzz.schedules._preemptions import PreemptionList
from vmfuzz.schedules._random import RandomWalk


@attrs.frozen
class Mode:
    """One way the fuzzer draws an example's schedule."""

    name: str
    doc: str
    # The example's source from its drawn (seed, depth, k).
    source: Callable[[int, int, int], ScheduleSource]
    # The values of the ``mixed`` pick (0..N-1) that choose this mode.
    mixed: tuple[int, ...] = ()
    # More schedules of this kind for one program, from (seed, depth, run length): a program
    # is re-run under a few of them (amplification).  None: the mode is not amplified.
    rerun: Callable[[int, int, int], ScheduleSource] | None = None
    # The machine's ``preempt`` rule adds drawn preemption batches to the source.
    preempt_rule: bool = False
    # As a campaign's only scheduler: amplified and with a program pool (a baseline is not).
    guided: bool = False
    # A soak rotates through it.
    soak: bool = False


MODES: tuple[Mode, ...] = (
    Mode(
        "preemptions",
        "sparse (gap, target-offset) preemption lists drawn in batches: shrink best",
        lambda seed, depth, k: PreemptionList(),
        mixed=(2, 3),
        preempt_rule=True,
        soak=True,
    ),
    Mode(
        "pct",
        "PCT, depth-1 priority change points over k steps: deep races",
        lambda seed, depth, k: PCT(seed, depth, k=k),
        mixed=(0, 1),
        rerun=lambda seed, depth, length: PCT(seed, depth, length),
        guided=True,
        soak=True,
    ),
    Mode(
        "random",
        "random walk with echo: many switches, keeps retry loops colliding (livelocks)",
        lambda seed, depth, k: Echo(RandomWalk(seed)),
        mixed=(4,),
        rerun=lambda seed, depth, length: Echo(RandomWalk(seed)),
        soak=True,
    ),
    Mode(
        "none",
        "no preemption at all: plain stateful testing, the baseline",
        lambda seed, depth, k: NonPreemptive(),
    ),
)

MODE_BY_NAME: dict[str, Mode] = {m.name: m for m in MODES}

# ``mixed`` pick value -> mode name (2/5 PCT, 2/5 preemption lists, 1/5 random walk).
_PICKS = dict(sorted((v, m.name) for m in MODES for v in m.mixed))
if list(_PICKS) != list(range(sum(len(m.mixed) for m in MODES))):
    raise AssertionError("the modes' mixed values must cover 0..N-1 once each")
MIXED_PICKS: tuple[str, ...] = tuple(_PICKS.values())

# ``vmfuzz fuzz --scheduler`` choices: mixed, then every mode.
FUZZ_SCHEDULERS: tuple[str, ...] = ("mixed", *(m.name for m in MODES))
# Schedulers a soak rotates through.
SOAK_SCHEDULERS: tuple[str, ...] = tuple(m.name for m in MODES if m.soak)


def guided(scheduler: str) -> bool:
    """True if a campaign with ``scheduler`` amplifies programs and keeps a pool."""
    mode = MODE_BY_NAME.get(scheduler)
    return scheduler == "mixed" or (mode is not None and mode.guided)
