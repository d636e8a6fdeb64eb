"""Uniform random walk: every decision point picks any runnable task with equal probability."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vmfuzz._scheduler import Scheduler, Task


class RandomWalk:
    """The naive baseline: seeded uniform choice at every decision."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def choose(self, runnable: list[Task], default: int, sched: Scheduler) -> int:
        return self.rng.randrange(len(runnable))
