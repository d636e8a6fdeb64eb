"""The post-Hypothesis shrink.

Hypothesis shrinks the drawn data; what is left often still has more tasks and context
switches than the race needs (a PCT schedule does not survive a deleted op, a setup op sits
in a task of its own).  :func:`shrink` shrinks the program and its schedule directly, the way
one trims a race by hand: fewer switches for this program, then a smaller program that fails
the same check under some schedule with no more switches, and again, through the named
passes of :data:`PASSES` (in order).  Nothing here knows about any kernel path: only tasks,
operations and scheduler decisions.
"""

from vmfuzz.shrink._budget import Budget
from vmfuzz.shrink._passes import PASSES, Pass, PassStats
from vmfuzz.shrink._programs import (
    grown_programs,
    serialized,
    smaller_programs,
    split_programs,
)
from vmfuzz.shrink._schedules import (
    Anchored,
    anchors_of,
    delays,
    search,
    to_preemptions,
    without,
)
from vmfuzz.shrink._shrinker import ShrinkResult, shrink

__all__ = [
    "PASSES",
    "Anchored",
    "Budget",
    "Pass",
    "PassStats",
    "ShrinkResult",
    "anchors_of",
    "delays",
    "grown_programs",
    "search",
    "serialized",
    "shrink",
    "smaller_programs",
    "split_programs",
    "to_preemptions",
    "without",
]
