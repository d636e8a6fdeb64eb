"""Schedule sources: everything that decides which runnable task runs next, one per module.

All sources implement :class:`vmfuzz.ScheduleSource` and are consulted only when two or more
tasks are runnable.  ``NonPreemptive`` is the deterministic default policy; the others deviate
from it in their own way.  The fuzzer's schedule modes (how an example draws its source)
are one table, :data:`MODES`.
"""

from vmfuzz.schedules._collide import Collide
from vmfuzz.schedules._echo import Echo
from vmfuzz.schedules._exhaustive import explore
from vmfuzz.schedules._explicit import Explicit
from vmfuzz.schedules._modes import (
    FUZZ_SCHEDULERS,
    MIXED_PICKS,
    MODE_BY_NAME,
    MODES,
    SOAK_SCHEDULERS,
    Mode,
    guided,
)
from vmfuzz.schedules._nonpreemptive import NonPreemptive
from vmfuzz.schedules._pct import PCT
from vmfuzz.schedules._preemptions import PreemptionList
from vmfuzz.schedules._random import RandomWalk
from vmfuzz.schedules._replay import Replay
from vmfuzz.schedules._stall import Stall

__all__ = [
    "FUZZ_SCHEDULERS",
    "MIXED_PICKS",
    "MODES",
    "MODE_BY_NAME",
    "PCT",
    "SOAK_SCHEDULERS",
    "Collide",
    "Echo",
    "Explicit",
    "Mode",
    "NonPreemptive",
    "PreemptionList",
    "RandomWalk",
    "Replay",
    "Stall",
    "explore",
    "guided",
]
