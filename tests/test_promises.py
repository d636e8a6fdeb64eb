"""The promise checks (invariants/promises.py): each fires on a hand-built broken promise and
stays quiet on the fixed kernel (the mutants' witnesses, clean on the fixed model and failing on
their mutants, are tests/test_mutants.py's)."""

from __future__ import annotations

from pathlib import Path

import pytest
from vmfuzz.invariants import Monitor
from vmfuzz.invariants.promises import CHECKS as PROMISES

from vmfuzz import Violation
from vmfuzz.case import Case, OpCall, Run, TaskSpec, execute
from vmfuzz.kernel import KernelConfig
from vmfuzz.kernel.mm_types import VM_LOCKED, PG_mlocked, PresentPte, SwapPte

MUTANTS = Path(__file__).resolve().parent.parent / "vmfuzz" / "_mutants"


def _run(*ops: tuple[str, dict[str, int]]) -> tuple[Run, Monitor]:
    # The promise checks alone: the hand-built bad states break other checks too.
    config = KernelConfig(checks=frozenset((*PROMISES, "mlock_state_promise", "exit_promise")))
    case = Case(config, (TaskSpec("T", tuple(OpCall(op, args) for op, args in ops)),))
    run = execute(case)
    assert run.outcome.kind == "clean", run.outcome
    monitor = run.sched.checkers[0].__self__  # type: ignore[attr-defined]
    assert isinstance(monitor, Monitor)
    monitor.step()  # quiet on the fixed kernel's final state
    return run, monitor


def _fires(monitor: Monitor, check: str) -> Violation:
    with pytest.raises(Violation) as info:
        monitor.step()
    assert info.value.check == check, info.value
    return info.value


MMAP = ("mmap", {"mm": 0, "addr": 0, "npages": 4})
WRITE1 = ("write", {"mm": 0, "addr": 1})


def test_mlock_promise_fires_when_a_locked_page_goes() -> None:
    run, monitor = _run(MMAP, ("mlock", {"mm": 0, "addr": 0, "npages": 4}))
    k = run.kernel
    k.pte_clear(k.mms[0], 2)
    v = _fires(monitor, "mlock_promise")
    assert "mm0 page 2 is not resident" in v.message


def test_mlock_promise_ends_at_munlock() -> None:
    run, _ = _run(MMAP, ("mlock", {"mm": 0, "addr": 0, "npages": 4}),
                  ("munlock", {"mm": 0, "addr": 0, "npages": 4}), ("kswapd", {"count": 4}))
    assert run.kernel.mms[0].pgd  # a page may go to swap: no promise left


def test_munmap_promise_fires_on_a_pte_left_in_the_range() -> None:
    run, monitor = _run(MMAP, WRITE1, ("munmap", {"mm": 0, "addr": 0, "npages": 4}))
    k = run.kernel
    k.set_pte_at(k.mms[0], 1, PresentPte(5, True))
    _fires(monitor, "munmap_promise")


def test_mprotect_promise_fires_on_a_writable_pte() -> None:
    run, monitor = _run(MMAP, WRITE1, ("mprotect", {"mm": 0, "addr": 0, "npages": 4, "flag": 0}))
    k = run.kernel
    pte = k.mms[0].pgd[1]
    assert isinstance(pte, PresentPte) and not pte.write
    k.set_pte_at(k.mms[0], 1, PresentPte(pte.pfn, True))
    _fires(monitor, "mprotect_promise")


def test_mprotect_promise_fires_on_a_store_that_succeeds() -> None:
    run, monitor = _run(MMAP, ("mprotect", {"mm": 0, "addr": 0, "npages": 4, "flag": 0}))
    k = run.kernel
    k.call_begin("write", {"mm": 0, "addr": 2})
    k.call_return("write", {"mm": 0, "addr": 2}, 0)  # a store the kernel let through
    _fires(monitor, "mprotect_promise")


def test_fork_promise_fires_when_the_child_reads_other_data() -> None:
    run, monitor = _run(MMAP, WRITE1, ("fork", {"mm": 0}), ("read", {"mm": 3, "addr": 1}))
    k = run.kernel
    args = {"mm": 3, "addr": 1}
    k.call_begin("read", args)
    assert k.calls is not None
    k.loaded[k.calls[-1][0]] = 0  # the child reads a zero page, not the parent's token
    k.call_return("read", args, 0)
    v = _fires(monitor, "fork_promise")
    assert "its parent had token" in v.message


def test_fork_promise_child_store_is_its_own() -> None:
    _run(MMAP, WRITE1, ("fork", {"mm": 0}), ("write", {"mm": 3, "addr": 1}),
         ("write", {"mm": 0, "addr": 1}), ("read", {"mm": 3, "addr": 1}),
         ("read", {"mm": 0, "addr": 1}))


def test_swapoff_promise_fires_on_a_swap_pte_left() -> None:
    run, monitor = _run(MMAP, WRITE1, ("kswapd", {"count": 1}), ("swapoff", {}))
    k = run.kernel
    assert not k.swap_ptes
    k.set_pte_at(k.mms[0], 2, SwapPte(3))
    _fires(monitor, "swapoff_promise")


def test_swapoff_promise_ends_at_swapon() -> None:
    run, _ = _run(MMAP, WRITE1, ("swapoff", {}), ("swapon", {"flag": 0}),
                        ("kswapd", {"count": 1}))
    assert run.kernel.swap_ptes


def test_the_worlds_calls_start_the_spec() -> None:
    """The world a run starts from was built by calls: the forked world's child must read what
    its parent had stored on the pages the world swapped out before the fork."""
    config = KernelConfig(world=frozenset({"swapped", "forked"}), checks=frozenset(PROMISES))
    case = Case(config, (TaskSpec("T", (OpCall("read", {"mm": 3, "addr": 3}),)),))
    run = execute(case)
    assert run.outcome.kind == "clean", run.outcome
    monitor = run.sched.checkers[0].__self__  # type: ignore[attr-defined]
    assert isinstance(monitor, Monitor)
    monitor.step()
    k = run.kernel
    assert [op for op, *_ in k.boot_calls].count("fork") == 1
    assert isinstance(k.mms[3].pgd[4], SwapPte)
    k.call_begin("read", {"mm": 3, "addr": 4})
    cur = k.sched.current
    k.loaded[-1 if cur is None else cur.tid] = 0  # a zero page: the parent's data is lost
    k.call_return("read", {"mm": 3, "addr": 4}, 0)
    v = _fires(monitor, "fork_promise")
    assert "mm3 reads token 0 at page 4" in v.message


def _read(run: Run, mm: int, addr: int, got: int) -> None:
    """A load of ``addr`` that the kernel answers with token ``got``."""
    k = run.kernel
    args = {"mm": mm, "addr": addr}
    k.call_begin("read", args)
    assert k.calls is not None
    k.loaded[k.calls[-1][0]] = got
    k.call_return("read", args, 0)


def test_load_promise_fires_when_a_load_misses_the_last_store() -> None:
    run, monitor = _run(MMAP, WRITE1, ("kswapd", {"count": 4}), ("read", {"mm": 0, "addr": 1}))
    stored = run.kernel.loaded[0]  # the load after reclaim read the store back
    assert stored != 0
    _read(run, 0, 1, stored + 1)
    v = _fires(monitor, "load_promise")
    assert f"token {stored}, its last store" in v.message


def test_load_promise_fires_when_a_fresh_mapping_is_not_zero() -> None:
    run, monitor = _run(MMAP, WRITE1, MMAP, ("read", {"mm": 0, "addr": 1}))
    assert run.kernel.loaded[0] == 0  # mmap over the old mapping: zeroes
    _read(run, 0, 1, 7)
    assert "mmap's zeroes" in _fires(monitor, "load_promise").message


def test_mlock_state_promise_fires_on_a_lock_fork_passed_on() -> None:
    run, monitor = _run(MMAP, ("mlock", {"mm": 0, "addr": 0, "npages": 4}), ("fork", {"mm": 0}))
    k = run.kernel
    child = next(mm for mm_id, mm in sorted(k.mms.items()) if mm_id >= 3 and mm.mmap)
    assert child.mmap is not None and not child.mmap.vm_flags & VM_LOCKED
    child.mmap.vm_flags |= VM_LOCKED
    k.touch_mm(child)
    assert "has VM_LOCKED" in _fires(monitor, "mlock_state_promise").message


def test_mlock_state_promise_fires_on_a_lock_mprotect_dropped() -> None:
    run, monitor = _run(MMAP, ("mlock", {"mm": 0, "addr": 0, "npages": 4}),
                        ("mprotect", {"mm": 0, "addr": 0, "npages": 4, "flag": 0}))
    k = run.kernel
    vma = k.mms[0].mmap
    assert vma is not None and vma.vm_flags & VM_LOCKED  # mprotect keeps the lock
    vma.vm_flags &= ~VM_LOCKED
    k.touch_mm(k.mms[0])
    assert "lacks VM_LOCKED" in _fires(monitor, "mlock_state_promise").message


def test_a_cow_in_a_locked_vma_leaves_no_mlocked_page_to_the_child() -> None:
    """2.6.36 do_wp_page munlocks the old page when a locked vma copies it: the forked child,
    whose vma fork left unlocked, keeps a page that is not mlocked (before the model did it,
    the child's page stayed PG_mlocked with no locked vma mapping it)."""
    run, _ = _run(MMAP, WRITE1, ("mlock", {"mm": 0, "addr": 0, "npages": 4}),
                  ("fork", {"mm": 0}), ("write", {"mm": 0, "addr": 1}))
    k = run.kernel
    parent, child = k.mms[0].pgd[1], k.mms[3].pgd[1]
    assert isinstance(parent, PresentPte) and isinstance(child, PresentPte)
    assert parent.pfn != child.pfn
    assert PG_mlocked in k.pages[parent.pfn].flags
    assert PG_mlocked not in k.pages[child.pfn].flags


def test_enomem_promise_fires_on_enomem_without_a_failed_allocation() -> None:
    run, monitor = _run(MMAP, WRITE1, ("kswapd", {"count": 1}))
    k = run.kernel
    k.call_begin("swapoff", {})
    k.call_return("swapoff", {}, -12)
    v = _fires(monitor, "enomem_promise")
    assert "swapoff returned -ENOMEM, but no page allocation failed" in v.message


def test_enomem_promise_takes_a_failed_allocation_as_the_cause() -> None:
    run, monitor = _run(MMAP, WRITE1)
    k = run.kernel
    k.call_begin("read", {"mm": 0, "addr": 1})
    monitor.step()  # the step the load began in (alloc_page yields before it can fail)
    k.count("pgalloc_fail")  # the fault's page allocation failed: VM_FAULT_OOM
    k.call_return("read", {"mm": 0, "addr": 1}, -12)
    monitor.step()  # quiet
    k.call_begin("write", {"mm": 0, "addr": 2})
    k.call_return("write", {"mm": 0, "addr": 2}, -12)
    assert "a store to mm0 page 2 returned -ENOMEM" in _fires(monitor, "enomem_promise").message


def test_load_promise_takes_no_zeroes_from_an_mmap_a_store_raced() -> None:
    """A store that began while an mmap of its page ran may land in the new mapping (a driver
    mmap populates it before returning): the load after reads the store, not zeroes."""
    from vmfuzz.schedules import Explicit

    config = KernelConfig(checks=frozenset(PROMISES))
    case = Case(config, (
        TaskSpec("T1", (OpCall("mmap_driver", {"mm": 0, "addr": 0, "npages": 8}),
                        OpCall("read", {"mm": 0, "addr": 0}))),
        TaskSpec("T0", (OpCall("write", {"mm": 0, "addr": 0}),)),
    ))
    run = execute(case, Explicit(["run T1 until do_page_fault:down_read(mmap_sem) #2",
                                  "run T0 until exit", "run T1 until exit"]))
    k = run.kernel
    assert k.calls is not None
    assert [(tid, op, ret is None) for tid, op, _a, ret in k.calls[:4]] == [
        (0, "mmap_driver", True), (1, "write", True), (1, "write", False),
        (0, "mmap_driver", False)]  # the store ran inside the mmap
    assert k.loaded[0] != 0  # the load read the store
    assert run.outcome.kind == "clean", run.outcome


def test_exit_promise_fires_on_an_address_space_left_after_exit() -> None:
    run, monitor = _run(("mmap", {"mm": 1, "addr": 0, "npages": 4}),
                        ("write", {"mm": 1, "addr": 1}), ("exit", {"mm": 1}))
    k = run.kernel
    mm = k.mms[1]
    assert mm.mmap is None and not mm.pgd and mm.users == 0  # torn down
    mm.users = 1  # a reference never put
    k.touch_mm(mm)
    v = _fires(monitor, "exit_promise")
    assert "exit of mm1 returned 0, but its address space still has a user" in v.message


def test_einval_promise_fires_on_einval_for_a_range_inside_the_address_space() -> None:
    run, monitor = _run(MMAP)
    k = run.kernel
    top = k.config.pages_per_mm
    for addr, npages in ((top - 1, 2), (-1, 1), (0, 0)):  # outside, or empty: a cause
        k.call_begin("munmap", {"mm": 0, "addr": addr, "npages": npages})
        k.call_return("munmap", {"mm": 0, "addr": addr, "npages": npages}, -22)
        monitor.step()
    args = {"mm": 0, "addr": top - 2, "npages": 2}  # ends exactly at the top: valid
    k.call_begin("mprotect", {**args, "flag": 0})
    k.call_return("mprotect", {**args, "flag": 0}, -22)
    v = _fires(monitor, "einval_promise")
    assert f"mprotect of mm0 pages [{top - 2}, {top}) returned -EINVAL" in v.message
