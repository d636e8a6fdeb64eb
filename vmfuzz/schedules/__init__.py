"""Schedule sources: everything that decides which runnable task runs next, one per module.

All sources implement :class:`vmfuzz.ScheduleSource` and are consulted only when two or more
tasks are runnable.  ``NonPreemptive`` is the deterministic default policy; the others deviate
from it in their own way.
"""

from vmfuzz.schedules._echo import Echo
from vmfuzz.schedules._exhaustive import explore
from vmfuzz.schedules._explicit import Explicit
from vmfuzz.schedules._nonpreemptive import NonPreemptive
from vmfuzz.schedules._pct import PCT
from vmfuzz.schedules._preemptions import PreemptionList
from vmfuzz.schedules._random import RandomWalk
from vmfuzz.schedules._replay import Replay
from vmfuzz.schedules._stall import Stall

# How the fuzzer draws schedules (``vmfuzz fuzz --scheduler``): mixed (each example draws PCT, a
# sparse preemption list or a random walk with echo: PCT finds deep races, preemption lists
# shrink best, the echoing random walk keeps retry loops colliding), preemptions, pct, random
# (with echo), or none (no preemption at all: plain stateful testing, the baseline).
FUZZ_SCHEDULERS = ("mixed", "preemptions", "pct", "random", "none")

__all__ = [
    "FUZZ_SCHEDULERS",
    "PCT",
    "Echo",
    "Explicit",
    "NonPreemptive",
    "PreemptionList",
    "RandomWalk",
    "Replay",
    "Stall",
    "explore",
]
