"""Bounded exhaustive exploration: every schedule with at most ``bound`` preemptions.

Stateless depth-first search (as in CHESS): re-run the program from scratch with a forced
prefix of choices, then continue with the default policy; backtrack into untried alternatives.
A switch away from a task that could still run costs one preemption; a switch when the running
task blocked or ended is free.  Each distinct schedule is run exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from vmfuzz._scheduler import Scheduler, Task

R = TypeVar("R")


class _Guided:
    def __init__(self, prefix: list[int]) -> None:
        self.prefix = prefix
        self.log: list[tuple[int, int, int, bool]] = []  # (n, default, chosen, preemptible)

    def choose(self, runnable: list[Task], default: int, sched: Scheduler) -> int:
        pos = len(self.log)
        chosen = self.prefix[pos] if pos < len(self.prefix) else default
        preemptible = sched.current is runnable[default]
        self.log.append((len(runnable), default, chosen, preemptible))
        return chosen


def explore(
    run_one: Callable[[_Guided], R], bound: int = 2, limit: int = 1_000_000
) -> Iterator[R]:
    """Yield ``run_one(source)`` for every schedule with at most ``bound`` preemptions.

    ``run_one`` must build the program afresh, run it under the given source and return
    whatever the caller wants collected (an outcome, a trace hash ...).
    """
    prefix: list[int] = []
    stack: list[list[int]] = []  # untried alternatives per decision depth
    runs = 0
    while True:
        src = _Guided(prefix)
        yield run_one(src)
        runs += 1
        if runs >= limit:
            return
        log = src.log
        used = sum(1 for n, d, c, p in log[: len(prefix)] if c != d and p)
        for n, _d, c, p in log[len(prefix):]:
            cost = 1 if p else 0
            alts = [k for k in range(n) if k != c] if used + cost <= bound else []
            stack.append(alts)
        while stack and not stack[-1]:
            stack.pop()
        if not stack:
            return
        depth = len(stack) - 1
        k = stack[depth].pop(0)
        prefix = [c for _, _, c, _ in log[:depth]] + [k]
