"""PCT: probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010).

Each task gets a random priority when first seen (all >= depth); the highest-priority runnable
task runs.  At ``depth - 1`` random decision points (chosen among the first ``k``), the task that
ran last is demoted below every initial priority.  A bug of depth d is hit with probability at
least 1/(n * k^(d-1)).  Uses its own seeded RNG: deterministic for a given seed.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vmfuzz._scheduler import Scheduler, Task


class PCT:
    """Priority-based randomized scheduler with ``depth - 1`` priority change points."""

    def __init__(self, seed: int, depth: int = 3, k: int = 200) -> None:
        if depth < 1:
            raise ValueError("PCT depth must be >= 1")
        self.rng = random.Random(seed)
        self.depth = depth
        self.change_points: dict[int, int] = {}
        for j in range(1, depth):
            self.change_points.setdefault(self.rng.randrange(max(1, k)), j)
        self.priority: dict[int, float] = {}
        self._n = 0

    def _prio(self, task: Task) -> float:
        p = self.priority.get(task.tid)
        if p is None:
            p = self.depth + self.rng.random()
            self.priority[task.tid] = p
        return p

    def choose(self, runnable: list[Task], default: int, sched: Scheduler) -> int:
        j = self.change_points.get(self._n)
        self._n += 1
        if j is not None and sched.current is not None:
            self.priority[sched.current.tid] = float(j)
        best = max(range(len(runnable)), key=lambda i: (self._prio(runnable[i]), -i))
        return best
