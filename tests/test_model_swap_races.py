"""The swap/reclaim historical bugs: each hand-written interleaving (the seed mail's drawing, as
explicit schedule steps over yield labels) shows the named violation with the bug switched on
and runs clean on the fixed kernel.

Every scenario is set up sequentially with ordinary operations (:class:`Sim.op`), then races
ordinary operations; nothing in the model knows about the scenario.
"""

from __future__ import annotations

import pytest
from test_model_swap import Op, Sim, o

from vmfuzz.kernel import BUGS
from vmfuzz.kernel.mm_types import PresentPte, SwapPte


def run(
    bug: str | None,
    setup: list[Op],
    tasks: dict[str, list[Op]],
    steps: list[str],
) -> tuple[Sim, str | None]:
    sim = Sim([bug] if bug else [])
    sim.ops(setup)
    out = sim.race(tasks, steps, strict=bug is not None)
    if out.kind == "violation":
        assert out.violation is not None
        return sim, out.violation.check
    assert out.kind == "clean", out.kind
    return sim, None


def both(bug: str, setup: list[Op], tasks: dict[str, list[Op]], steps: list[str]) -> Sim:
    """The bug's registered invariant fires with the switch on; the fixed kernel is clean
    (and passes a full invariant scan at the end)."""
    _, check = run(bug, setup, tasks, steps)
    assert check == BUGS[bug].invariant
    sim, check = run(None, setup, tasks, steps)
    assert check is None
    sim.full_check()
    return sim


# --------------------------------------------------------------------------- seed 000
DRIVER = [o("mmap_driver", mm=0, addr=0, npages=2), o("write", mm=0, addr=0),
          o("write", mm=0, addr=1)]


def test_seed000_swapout_vma_after_unlock() -> None:
    """kswapd: try_to_swap_out drops the vmlist lock, ->swapout(vma, page) sleeps on the driver
    lock; munmap frees the vma; the driver then looks at vma->vm_file."""
    both(
        "swapout_vma_after_unlock",
        DRIVER,
        {"T1": [o("swap_out", count=1)], "T2": [o("munmap", mm=0, addr=0, npages=2)]},
        ["run T1 until drv_swapout:write", "run T2 to completion", "run T1 to completion"],
    )


def test_seed000_swapout_holds_vmlist_lock() -> None:
    """Kanoj's deadlock: B holds the driver lock L; A swaps out its own mm holding the vmlist
    semaphore into ->swapout, which waits for L; B runs short of memory and reclaims from A's
    mm: it needs A's vmlist semaphore."""
    both(
        "swapout_holds_vmlist_lock",
        DRIVER,
        {"A": [o("swap_out", count=1)], "B": [o("driver_ioctl", mm=1)]},
        [
            "run B until sys_driver_ioctl:down(driver_lock)",
            "run A until blocked",
            "run B to completion",
        ],
    )


def test_seed000_swapout_vma_after_unlock_in_direct_reclaim() -> None:
    """No kswapd: T1 runs short of memory in its own page fault (the shortage watermark),
    reclaims, and the 2.4 scan picks the driver's mm; munmap frees the vma under ->swapout."""
    setup = [o("mmap_driver", mm=0, addr=0, npages=5), o("mmap", mm=1, addr=0, npages=5)]
    setup += [o("write", mm=1, addr=a) for a in range(4)]  # 9 of 12 frames used: 3 free
    tasks = {"T1": [o("write", mm=1, addr=4)], "T2": [o("munmap", mm=0, addr=0, npages=5)]}
    steps = ["run T1 until drv_swapout:write", "run T2 to completion", "run T1 to completion"]
    for bug in ("swapout_vma_after_unlock", None):
        sim = Sim([bug] if bug else [], world=frozenset({"shortage"}))
        sim.ops(setup)
        out = sim.race(tasks, steps, strict=bug is not None)
        assert sim.k.stats.get("allocstall") == 1
        if bug:
            assert out.violation is not None and out.violation.check == "use_after_free"
            assert out.violation.task == "T1"
        else:
            assert out.kind == "clean"
            assert isinstance(sim.pte(1, 4), PresentPte) and sim.pte(0, 0) is None


def test_seed000_holds_vmlist_lock_found_by_lockdep_in_one_task() -> None:
    """No race needed: one task doing both orders in sequence gives lockdep both chains."""
    setup = DRIVER[:2]
    _, check = run("swapout_holds_vmlist_lock", setup,
                   {"T": [o("driver_ioctl", mm=1), o("swap_out", count=1)]}, [])
    assert check == "lock_order_inversion"
    _, check = run(None, setup, {"T": [o("driver_ioctl", mm=1), o("swap_out", count=1)]}, [])
    assert check is None


def test_seed000_holds_vmlist_lock_is_also_a_real_deadlock_without_lockdep() -> None:
    """The same interleaving with lockdep off: the engine reports the wait-for cycle."""
    from vmfuzz.invariants import install

    from vmfuzz import Scheduler
    from vmfuzz.case import OpCall, thread
    from vmfuzz.kernel import Kernel, KernelConfig
    from vmfuzz.schedules._explicit import Explicit

    sched = Scheduler()
    k = Kernel(KernelConfig(bugs=frozenset({"swapout_holds_vmlist_lock"})), sched)
    install(k)
    for name, args in DRIVER:
        k.spawn(name, **args)
        sched.run()
    sched.source = Explicit(
        ["run B until sys_driver_ioctl:down(driver_lock)", "run A until blocked",
         "run B to completion"]
    )
    sched.spawn(thread(k, [OpCall("swap_out", {"count": 1})]), "A")
    sched.spawn(thread(k, [OpCall("driver_ioctl", {"mm": 1})]), "B")
    out = sched.run_to_outcome()
    assert out.kind == "violation" and out.check == "deadlock"


# --------------------------------------------------------------------------- seed 001
def test_seed001_read_swap_cache_async_unlocked_check() -> None:
    """Andrea's diagram: try_to_swap_out: get_swap_page / readahead: valid_swaphandles,
    swap_duplicate, add_to_swap_cache / try_to_swap_out: add_to_swap_cache -> BOOM."""
    setup = [o("mmap", mm=1, addr=0, npages=1), o("write", mm=1, addr=0), o("kswapd", count=1),
             o("mmap", mm=0, addr=0, npages=4)]
    setup += [o("write", mm=0, addr=a) for a in range(4)]
    sim = both(
        "read_swap_cache_async_unlocked_check",
        setup,
        {"T1": [o("swap_out", count=1)], "T2": [o("read", mm=1, addr=0)]},
        ["run T1 until try_to_swap_out:after_get_swap_page", "run T2 to completion",
         "run T1 to completion"],
    )
    # Fixed: try_to_swap_out's add_to_swap_cache met -EEXIST, freed entry 2 and took 3.
    assert isinstance(sim.pte(0, 0), SwapPte) and sim.pte(0, 0).entry == 3


def test_seed001_read_swap_cache_async_unlocked_check_in_hughs_order() -> None:
    """Hugh's order: CPU1 faults the page in and frees its entry; CPU0 gets the BKL (the
    readahead finds nothing); CPU1's swap_out gets the entry just freed; only then CPU0's
    2.4.8 swap_duplicate (under swap_device_lock) and both add_to_swap_cache."""
    setup = [o("mmap", mm=0, addr=0, npages=2), o("write", mm=0, addr=1),
             o("write", mm=0, addr=0), o("kswapd", count=1)]
    both(
        "read_swap_cache_async_unlocked_check",
        setup,
        {"T0": [o("read", mm=0, addr=1)],
         "T1": [o("write", mm=0, addr=1), o("swap_out", count=2)]},
        ["run T0 until do_swap_page:lookup_missed", "run T1 until swap_out:spin_lock(mmlist_lock)",
         "run T0 until do_swap_page:lock_kernel(BKL)",
         "run T1 until try_to_swap_out:after_get_swap_page",
         "run T0 to completion", "run T1 to completion"],
    )


def test_seed001_vm_swap_full_delete_race() -> None:
    """Hugh's drawing: CPU0's lookup misses, it waits; CPU1 faults the same page, takes it
    over (the entry is deleted from the swap cache and freed), then swap_out gives that entry
    to another page and ours a new one; CPU0's 2.4.8 back-out test (pte_present) passes and
    it maps the other page's data."""
    setup = [o("mmap", mm=0, addr=0, npages=2), o("write", mm=0, addr=1),
             o("write", mm=0, addr=0), o("kswapd", count=1)]
    sim = both(
        "vm_swap_full_delete_race",
        setup,
        {"T0": [o("read", mm=0, addr=1)],
         "T1": [o("write", mm=0, addr=1), o("swap_out", count=2)]},
        ["run T0 until do_swap_page:lookup_missed", "run T1 to completion",
         "run T0 to completion"],
    )
    assert isinstance(sim.pte(0, 1), PresentPte)


# --------------------------------------------------------------------------- seed 004
def test_seed004_unuse_process_no_mmap_sem() -> None:
    """swapoff walks mm0's vmas without mmap_sem; munmap frees the next vma under it."""
    setup = [o("mmap", mm=0, addr=0, npages=2), o("write", mm=0, addr=0),
             o("mmap", mm=0, addr=4, npages=2), o("write", mm=0, addr=4), o("kswapd", count=1)]
    sim = both(
        "unuse_process_no_mmap_sem",
        setup,
        {"T0": [o("swapoff")], "T1": [o("munmap", mm=0, addr=4, npages=2)]},
        ["run T0 until unuse_process:next_vma", "run T1 to completion", "run T0 to completion"],
    )
    assert sim.swap_map[1:] == [0] * (len(sim.swap_map) - 1)


# --------------------------------------------------------------------------- later races
SYNC_DEVICE = [o("swapoff"), o("swapon", flag=1), o("mmap", mm=0, addr=1, npages=1),
               o("write", mm=0, addr=1), o("kswapd", count=1)]


def test_13ddaf26be32_skip_swapcache_race() -> None:
    """Two threads swap the same entry in without the swap cache; the second maps its copy,
    frees the entry, writes, and swap_out reuses the entry for the same pte: the first one's
    pte_same passes and it maps its stale copy."""
    both(
        "swapin_skip_swapcache_race",
        SYNC_DEVICE,
        {"T0": [o("read", mm=0, addr=1)],
         "T1": [o("write", mm=0, addr=1), o("swap_out", count=1)]},
        ["run T0 until do_swap_page:swap_readpage", "run T1 to completion",
         "run T0 to completion"],
    )


def test_eb085574a752_swapin_races_swapoff() -> None:
    """A swapin that has read its pte but not pinned the device: swapoff completes and frees
    the device (and its swap_map) before the swapin reads the map."""
    both(
        "swapin_no_get_swap_device",
        SYNC_DEVICE,
        {"T0": [o("read", mm=0, addr=1)], "T1": [o("swapoff")]},
        ["run T0 until do_swap_page:skip_swapcache", "run T1 to completion",
         "run T0 to completion"],
    )


def test_eb085574a752_swapoff_between_pte_read_and_lookup() -> None:
    """The same bug on the swap-cache path: swapoff runs to its end between handle_mm_fault's
    lockless pte read and lookup_swap_cache, which then walks the freed device's cache."""
    both(
        "swapin_no_get_swap_device",
        [o("mmap", mm=0, addr=0, npages=2), o("write", mm=0, addr=1), o("kswapd", count=1)],
        {"T0": [o("read", mm=0, addr=1)], "T1": [o("swapoff")]},
        ["run T0 until do_swap_page:entry", "run T1 to completion", "run T0 to completion"],
    )


# 4969c1192d15's drawings: A faults page1 in and holds its lock, B waits for it; A COWs and
# ends; C drops the other user of swap1; K gives swap1 to a copy; B goes on.
RECHECK_STEPS = [
    "run A until do_swap_page:lock_page(PG_locked)",
    "run B until blocked",
    "run A to completion",
    "run C to completion",
    "run K to completion",
    "run B to completion",
]


def test_4969c1192d15_swapin_no_swapcache_recheck() -> None:
    """Hugh Dickins' drawing for 'mm: further fix swapin race condition': A and B are threads
    of the child, C its parent.  A locks page1 (swap1) and COWs it; B waits for page1's lock;
    C takes page1 over (reuse_swap_page frees swap1); swap_out gives swap1 to A's COW copy;
    B finally locks page1, pte_same passes, and it maps C's page into the child."""
    setup = [o("mmap", mm=0, addr=0, npages=2), o("write", mm=0, addr=0), o("fork", mm=0),
             o("kswapd", count=1), o("mmap", mm=3, addr=4, npages=2), o("write", mm=3, addr=4),
             o("write", mm=3, addr=5)]
    both(
        "swapin_no_swapcache_recheck",
        setup,
        {"A": [o("write", mm=3, addr=0)], "B": [o("read", mm=3, addr=0)],
         "C": [o("write", mm=0, addr=0)], "K": [o("swap_out", count=1)]},
        RECHECK_STEPS,
    )


def test_4969c1192d15_swapin_no_swapcache_recheck_child_exits() -> None:
    """The shortest form (enumerated one-task writer programs: three operations): the parent's
    threads A and B fault on page1 (swap1, shared with the child); A COWs it; the child exits,
    its swap1 reference goes and page1 leaves the swap cache (4969c1192d15's own race);
    swap_out gives swap1 to A's copy; B locks page1, pte_same passes, it maps the stale page.

    ::

        A (mm0 write)    B (mm0 read)     C (exit child)   K (swap_out)
        lock page1
                         lock page1 ...
        COW: copy
                                          swap1 freed
                                                           copy -> swap1
                         ... page1 mapped
    """
    setup = [o("mmap", mm=0, addr=0, npages=2), o("write", mm=0, addr=0), o("fork", mm=0),
             o("kswapd", count=1)]
    both(
        "swapin_no_swapcache_recheck",
        setup,
        {"A": [o("write", mm=0, addr=0)], "B": [o("read", mm=0, addr=0)],
         "C": [o("exit", mm=3)], "K": [o("swap_out", count=1)]},
        RECHECK_STEPS,
    )


@pytest.mark.parametrize(
    "bug",
    [
        "swapout_vma_after_unlock",
        "swapout_holds_vmlist_lock",
        "read_swap_cache_async_unlocked_check",
        "vm_swap_full_delete_race",
        "unuse_process_no_mmap_sem",
        "swapin_no_swapcache_recheck",
        "swapin_skip_swapcache_race",
        "swapin_no_get_swap_device",
    ],
)
def test_bug_registered_with_its_invariant(bug: str) -> None:
    b = BUGS[bug]
    assert b.summary and b.invariant in {
        "use_after_free", "lock_order_inversion", "swap_cache_unique", "data_integrity",
    }


# --------------------------------------------------------------------------- fixed-kernel races
def test_swapoff_meets_a_child_forked_during_the_pass() -> None:
    """Regression (found by the fuzzer in the fixed kernel): swapoff waits for mm0's mmap_sem
    while fork copies mm0's swap pte into a new child, twice (the second child is created after
    the pass started); the pass must still visit it (a child comes after its parent on mmlist)
    instead of sleeping on an entry nobody will move."""
    sim = Sim()
    sim.ops([o("mmap", mm=0, addr=0, npages=1), o("write", mm=0, addr=0),
             o("swap_out", count=1)])
    out = sim.race(
        {"T0": [o("fork", mm=0), o("fork", mm=0)], "T1": [o("swapoff")]},
        ["run T0 until dup_mmap:down_write(mmap_sem)", "run T1 until blocked",
         "run T0 to completion", "run T1 to completion"],
    )
    assert out.kind == "clean", out.violation and out.violation.describe()
    for child in sorted(sim.k.mms)[-2:]:
        assert isinstance(sim.pte(child, 0), PresentPte)
    assert sim.swap_map[1:] == [0] * (len(sim.swap_map) - 1)
    sim.full_check()


def test_swapoff_drops_mm_references_after_the_page_lock() -> None:
    """Regression (fuzzer, fixed kernel): the process exits while swapoff holds its mm; the
    reference swapoff drops is the last, and exit_mmap munlocks the page swapoff still had
    locked.  swapoff must drop its mm references after unlock_page."""
    sim = Sim()
    sim.ops([o("mmap", mm=0, addr=0, npages=1), o("write", mm=0, addr=0),
             o("kswapd", count=1)])
    out = sim.race(
        {"T3": [o("mlock", mm=0, addr=0, npages=1), o("exit", mm=0)], "T1": [o("swapoff")]},
        ["run T3 until sys_mlock:down_write(mmap_sem)", "run T1 until blocked",
         "run T3 to completion", "run T1 to completion"],
    )
    assert out.kind == "clean", out.violation and out.violation.describe()
    assert sim.k.mms[0].dead
    assert sim.swap_map[1:] == [0] * (len(sim.swap_map) - 1)
    sim.full_check()


def test_swap_out_rechecks_vm_locked_before_replacing_the_pte() -> None:
    """Regression (the fuzzer's case, fixed kernel, replayed as recorded): direct reclaim's 2.4
    scan checked the vma's flags, then waited for swap_lock and tree_lock while mlock (2.6:
    mmap_sem only) set VM_LOCKED; the swap pte must not be installed in the mlocked vma."""
    from vmfuzz.case import Case, OpCall, Schedule, TaskSpec, execute
    from vmfuzz.kernel import KernelConfig
    from vmfuzz.schedules import Replay

    case = Case(
        KernelConfig(),
        (
            TaskSpec("T0", (OpCall("read", {"mm": 0, "addr": 0}),)),
            TaskSpec("T1", (OpCall("mlock", {"mm": 0, "addr": 0, "npages": 11}),)),
            TaskSpec("T2", (OpCall("driver_ioctl", {"mm": 0}),)),
        ),
        Schedule("decisions", decisions=(0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1)),
    )
    run = execute(case, Replay(case.schedule.decisions, strict=False))
    assert run.outcome.kind == "clean", run.outcome.violation and run.outcome.violation.describe()
    assert isinstance(run.kernel.mms[0].pgd.get(0), PresentPte)


def test_swapoff_sees_a_swap_pte_replaced_by_another_mms() -> None:
    """Regression (found by the program pool, fixed kernel, replayed as recorded): while
    swapoff's pass waits for the child's mmap_sem, reclaim unmaps the page again from the
    parent (already visited: one swap pte more) and the child's mmap zaps its own (one less).
    The entry's users are as many as before the pass, yet one sits in an mm the pass has
    left behind: swapoff must pass again, not sleep until they change (a false deadlock)."""
    from vmfuzz.case import Case, OpCall, Schedule, TaskSpec, execute
    from vmfuzz.kernel import KernelConfig
    from vmfuzz.schedules import Replay

    case = Case(
        KernelConfig(world=frozenset({"swapped", "forked"})),
        (
            TaskSpec("T0", (OpCall("read", {"mm": 0, "addr": 3}), OpCall("swapoff", {}))),
            TaskSpec("T2", (OpCall("kswapd", {"count": 2}),), start=6),
            TaskSpec("T3", (OpCall("mmap_reserved", {"mm": 3, "addr": 2, "npages": 3}),),
                     start=3),
        ),
        Schedule("decisions", decisions=(1,) * 11 + (2,) + (0,) * 22 + (1, 1) + (2,) * 6),
    )
    run = execute(case, Replay(case.schedule.decisions, strict=False))
    assert run.outcome.kind == "clean", run.outcome.violation and run.outcome.violation.describe()
    assert run.kernel.swap.swap_map[1:] == [0] * (len(run.kernel.swap.swap_map) - 1)
    assert "try_to_unuse:rescan" in {s.label for s in run.sched.trace}


def test_seed004_detached_vma_freed_while_in_mmap_cache() -> None:
    """The mail's race with no later access: swap_out's find_vma (page_table_lock alone) stores
    the vma that munmap has just detached into mm->mmap_cache, and munmap frees it.  The freed
    vma left in the cache is a use after free at the free itself (find_vma would return it
    next); the fixed kernel, detaching under page_table_lock, is clean on the same schedule."""
    import attrs

    from vmfuzz.case import execute
    from vmfuzz.corpus import load

    cc = load("corpus/mail/seed004_mmap_cache_holds_detached_vma.json")
    munmap_only = attrs.evolve(cc.case.tasks[2], ops=cc.case.tasks[2].ops[:1])
    case = attrs.evolve(cc.case, tasks=(*cc.case.tasks[:2], munmap_only))
    run = execute(case, cc.source())
    v = run.outcome.violation
    assert v is not None and v.check == "use_after_free", run.outcome
    assert "mm0->mmap_cache" in v.message
    assert (v.task, v.label) == ("CPU1", "exit")  # do_munmap frees in CPU1's last step
    assert [c.role for c in run.explain()] == ["freed by"]
    fixed = attrs.evolve(case, config=attrs.evolve(case.config, bugs=frozenset()))
    assert execute(fixed, cc.source(strict=False)).outcome.kind == "clean"
