"""A finished run is freed by reference counting alone: no reference cycle runs through its
kernel, its scheduler or its invariant monitor.

Campaigns make hundreds of thousands of runs; a cycle through any of these keeps a run's world,
history and trace alive until the cyclic garbage collector finds it, which then costs a tenth
or more of a run's time.  The links back to the kernel are weak (the scheduler's
``state_version``, ``Monitor.k`` between steps)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from vmfuzz.case import Case, OpCall, TaskSpec, execute
from vmfuzz.kernel import KernelConfig
from vmfuzz.schedules import RandomWalk


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _case(*tasks: tuple[tuple[str, dict[str, int]], ...]) -> Case:
    world = frozenset({"swapped", "forked", "split"})
    return Case(KernelConfig(world=world), tuple(
        TaskSpec(f"T{i}", tuple(OpCall(op, args) for op, args in ops))
        for i, ops in enumerate(tasks)
    ))


# Two tasks contending for an mm's locks (a task blocks, so the wait-for search runs), a
# fault and reclaim (history, swap entries), a retry-free munmap.
_RACE = _case(
    (("write", {"mm": 0, "addr": 1}), ("munmap", {"mm": 0, "addr": 0, "npages": 2})),
    (("swap_out", {"count": 2}), ("read", {"mm": 0, "addr": 1})),
)


@pytest.mark.parametrize("checks", [False, True])
def test_a_run_is_freed_without_the_cyclic_collector(no_cyclic_gc: None, checks: bool) -> None:
    for seed in range(4):
        run = execute(_RACE, RandomWalk(seed), invariants=checks)
        assert run.outcome.steps > 0
        kernel, sched = weakref.ref(run.kernel), weakref.ref(run.sched)
        del run
        assert kernel() is None, "a reference cycle keeps the run's kernel alive"
        assert sched() is None, "a reference cycle keeps the run's scheduler alive"


def test_the_monitor_reads_its_kernel_between_steps() -> None:
    run = execute(_RACE)
    monitor = run.sched.checkers[0].__self__  # type: ignore[attr-defined]
    assert monitor.k is run.kernel
    monitor.step()  # the final state holds
    assert monitor.k is run.kernel and "k" not in vars(monitor)
