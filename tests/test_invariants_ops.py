"""The checks stay quiet while every kernel path runs sequentially on the fixed kernel.

Generic over :data:`vmfuzz.kernel.ops.OPS` (whatever operations exist when the tests run): each
operation runs, with a few argument values of its kinds, after a setup that maps and writes some
pages in two mms, then the written pages are read back; and one long task runs every operation
in turn.  The per-step monitor is installed by ``case.execute``; the end state gets a full scan.
A failure here is either a model bug or a check that rejects a legitimate state: the message
names the check, the step and the label.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
from vmfuzz.invariants import check_all

from vmfuzz.case import Case, OpCall, Schedule, TaskSpec, execute
from vmfuzz.kernel import OPS, Kernel, KernelConfig
from vmfuzz.kernel.mm_types import PresentPte
from vmfuzz.kernel.ops import OpSpec

CONFIG = KernelConfig()
PPM = CONFIG.pages_per_mm

# A few values per argument kind: typical ones first, then edges (ops must accept any value).
VALUES: dict[str, tuple[int, ...]] = {
    "mm": (0, 1, 2),
    "addr": (2, 0, PPM - 1),
    "npages": (4, 1, PPM),
    "pfn": (1, 0, CONFIG.nr_frames - 1),
    "entry": (1, 2, CONFIG.nr_swap - 1),
    "flag": (1, 0, 1),
    "count": (2, 1, 4),
}

# Operations that only exist for other test modules (registered for their duration).
def _model_ops() -> list[str]:
    return sorted(name for name in OPS if not name.startswith("test_"))


def _call(op: str, variant: int, **fixed: int) -> OpCall:
    spec = OPS[op]
    args = {name: fixed.get(kind, VALUES[kind][variant % 3]) for name, kind in spec.params}
    return OpCall(op, args)


def _setup() -> tuple[OpCall, ...]:
    """mmap 8 pages at 0 in mm0 and mm1 and write every other page (whichever ops exist)."""
    calls: list[OpCall] = []
    for mm in (0, 1):
        if "mmap" in OPS:
            calls.append(_call("mmap", 0, mm=mm, addr=0, npages=8, flag=1))
        if "write" in OPS:
            calls += [_call("write", 0, mm=mm, addr=a) for a in range(0, 8, 2)]
    return tuple(calls)


def _readback() -> tuple[OpCall, ...]:
    if "read" not in OPS:
        return ()
    return tuple(_call("read", 0, mm=mm, addr=a) for mm in (0, 1) for a in range(8))


def _run(calls: tuple[OpCall, ...]) -> None:
    case = Case(CONFIG, (TaskSpec("T0", calls),), Schedule())
    run = execute(case)
    out = run.outcome
    what = "; ".join(c.describe() for c in calls[-6:])
    assert out.kind == "clean", (
        f"{out.kind} after ...{what}: "
        + (out.violation.describe() if out.violation is not None else f"{out.steps} steps")
    )
    check_all(run.kernel)


OP_NAMES = _model_ops()


@pytest.mark.skipif(not OP_NAMES, reason="no kernel operations registered yet")
@pytest.mark.parametrize("op", OP_NAMES or ["none"])
def test_each_op_sequentially_is_quiet(op: str) -> None:
    for variant in range(3):
        _run((*_setup(), _call(op, variant), *_readback()))


@pytest.mark.skipif(not OP_NAMES, reason="no kernel operations registered yet")
def test_long_sequential_run_of_every_op_is_quiet() -> None:
    calls = list(_setup())
    for variant in range(3):
        for op in OP_NAMES:
            calls.append(_call(op, variant))
            if "write" in OPS:
                calls.append(_call("write", variant))
    _run(tuple(calls) + _readback())


@pytest.mark.skipif(not OP_NAMES, reason="no kernel operations registered yet")
def test_two_threads_interleaved_every_op_is_quiet() -> None:
    """Two tasks, non-preemptive but interleaving at every sleep: still no violation."""
    t0 = _setup()
    t1 = tuple(_call(op, v) for v in range(2) for op in OP_NAMES)
    case = Case(CONFIG, (TaskSpec("T0", t0 + t1), TaskSpec("T1", t1[::-1])), Schedule())
    out = execute(case).outcome
    assert out.kind in ("clean", "budget"), (
        out.violation.describe() if out.violation is not None else out.kind
    )


def _leaky_map(k: Kernel, mm: int, addr: int) -> Generator[Any, None, None]:
    """A broken path: maps frame 0 (under the pte lock) without taking a reference or the
    rmap."""
    yield "test_inv_leaky_map:start"
    ptl = k.mms[mm].page_table_lock
    yield k.sched.spin_lock(ptl)
    k.set_pte_at(k.mms[mm], addr, PresentPte(0, True))
    k.sched.spin_unlock(ptl)


def test_harness_reports_a_broken_op() -> None:
    """The harness above can fail: a path that breaks an invariant is reported by name."""
    OPS["test_inv_leaky_map"] = OpSpec(
        "test_inv_leaky_map", _leaky_map, (("mm", "mm"), ("addr", "addr")), "broken"
    )
    try:
        want = r"use_after_free: freed pfn 0 .* present pte at mm0 page 2"
        with pytest.raises(AssertionError, match=want):
            _run((_call("test_inv_leaky_map", 0),))
    finally:
        del OPS["test_inv_leaky_map"]
