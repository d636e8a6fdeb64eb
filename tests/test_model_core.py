"""Sequential semantics of the mm-core model: vmas, faults, COW, migration, mlock, exit.

Every test runs kernel paths one operation at a time (one task, run to completion) on a kernel
with all invariants installed, so any inconsistency on the way fails the test too.  Address
spaces are drawn one character per page (16 pages):

* ``layout``: the vma covering each page, ``A``, ``B``, ... in list order, upper case when the
  vma is writable, lower case when read-only, blank when unmapped;
* ``ptes``: ``W`` present writable, ``r`` present read-only, ``s`` swap entry, ``m`` migration
  entry, ``.`` none.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from vmfuzz.invariants import check_all, install

from vmfuzz import LockDep, Scheduler
from vmfuzz.kernel import Kernel, KernelConfig
from vmfuzz.kernel.mm_types import (
    VM_LOCKED,
    VM_WRITE,
    PG_active,
    PG_lru,
    PG_mlocked,
    PG_unevictable,
    PresentPte,
    SwapPte,
)
from vmfuzz.kernel.rmap import SWAP_FAIL, live_anon_vmas, try_to_unmap

EFAULT = -14
ESRCH = -3
EAGAIN = -11
EBUSY = -16


# --------------------------------------------------------------------------- helpers
def new_kernel(**cfg: Any) -> Kernel:
    cfg.setdefault("boot_pages", 0)  # these tests map exactly what they use
    k = Kernel(KernelConfig(**cfg), Scheduler(lockdep=LockDep()))
    install(k)
    return k


def do(k: Kernel, op: str, **args: int) -> Any:
    """Run one operation to completion as its own task; returns its result."""
    task = k.spawn(op, **args)
    k.sched.run()
    return task.result


def layout(k: Kernel, mm: int) -> str:
    out = [" "] * k.config.pages_per_mm
    for i, vma in enumerate(k.mms[mm].vmas()):
        letter = chr(ord("A") + i)
        for a in range(vma.vm_start, vma.vm_end):
            out[a] = letter if vma.vm_flags & VM_WRITE else letter.lower()
    return "".join(out)


def ptes(k: Kernel, mm: int) -> str:
    out = []
    for a in range(k.config.pages_per_mm):
        pte = k.mms[mm].pgd.get(a)
        if pte is None:
            out.append(".")
        elif isinstance(pte, PresentPte):
            out.append("W" if pte.write else "r")
        elif isinstance(pte, SwapPte):
            out.append("s")
        else:
            out.append("m")
    return "".join(out)


def pfn_at(k: Kernel, mm: int, addr: int) -> int:
    pte = k.mms[mm].pgd[addr]
    assert isinstance(pte, PresentPte)
    return pte.pfn


def used_frames(k: Kernel) -> int:
    return k.config.nr_frames - len(k.free_list)


def run_in_task(k: Kernel, gen: Iterator[Any]) -> Any:
    task = k.sched.spawn(gen, "direct")
    k.sched.run()
    return task.result


# --------------------------------------------------------------------------- mmap / munmap
def test_mmap_merges_adjacent_anonymous_mappings() -> None:
    k = new_kernel()
    assert do(k, "mmap", mm=0, addr=0, npages=2) == 0
    assert layout(k, 0) == "AA              "
    do(k, "mmap", mm=0, addr=2, npages=2)  # case 2: prev expands
    assert layout(k, 0) == "AAAA            "
    do(k, "mmap", mm=0, addr=6, npages=2)
    assert layout(k, 0) == "AAAA  BB        "
    do(k, "mmap", mm=0, addr=4, npages=2)  # case 1: prev absorbs the new range and next
    assert layout(k, 0) == "AAAAAAAA        "
    assert k.mms[0].map_count == 1


def test_mmap_does_not_merge_different_anon_vmas() -> None:
    k = new_kernel()
    do(k, "mmap", mm=0, addr=0, npages=2)
    do(k, "mmap", mm=0, addr=4, npages=2)
    do(k, "write", mm=0, addr=0)  # each vma gets its own anon_vma
    do(k, "write", mm=0, addr=4)
    do(k, "mmap", mm=0, addr=2, npages=2)
    # The hole merges with prev only: prev and next have different anon_vmas.
    assert layout(k, 0) == "AAAABB          "
    assert ptes(k, 0) == "W...W..........."
    assert len(live_anon_vmas(k)) == 2


def test_mmap_fixed_replaces_an_old_mapping() -> None:
    k = new_kernel()
    do(k, "mmap", mm=0, addr=0, npages=4)
    do(k, "write", mm=0, addr=1)
    assert used_frames(k) == 1
    do(k, "mmap", mm=0, addr=0, npages=4)
    assert ptes(k, 0) == "................"
    assert used_frames(k) == 0
    assert do(k, "read", mm=0, addr=1) == 0  # a fresh zero page: token 0 is what is expected


def test_munmap_splits_vmas_and_frees_the_range() -> None:
    k = new_kernel()
    do(k, "mmap", mm=0, addr=0, npages=8)
    for a in range(8):
        do(k, "write", mm=0, addr=a)
    assert ptes(k, 0) == "WWWWWWWW........"
    assert used_frames(k) == 8
    assert do(k, "munmap", mm=0, addr=2, npages=3) == 0
    assert layout(k, 0) == "AA   BBB        "
    assert ptes(k, 0) == "WW...WWW........"
    assert k.mms[0].map_count == 2
    assert used_frames(k) == 5
    assert not any(a in k.expected[0] for a in (2, 3, 4))
    assert do(k, "read", mm=0, addr=3) == EFAULT
    for a in (0, 1, 5, 6, 7):
        assert do(k, "read", mm=0, addr=a) == 0  # check_read: the tokens survived
    do(k, "munmap", mm=0, addr=0, npages=16)
    assert layout(k, 0) == " " * 16
    assert used_frames(k) == 0


def test_bad_arguments_fail_like_the_syscall() -> None:
    k = new_kernel()
    assert do(k, "mmap", mm=0, addr=15, npages=2) < 0  # past TASK_SIZE
    assert do(k, "munmap", mm=0, addr=0, npages=1) == 0  # nothing mapped: fine
    assert do(k, "mprotect", mm=0, addr=0, npages=1, flag=0) < 0  # -ENOMEM: a hole
    assert do(k, "write", mm=0, addr=0) == EFAULT
    assert do(k, "mmap", mm=7, addr=0, npages=1) == ESRCH  # no such process
    assert do(k, "migrate", pfn=3) == EBUSY  # no anon page on the LRU to migrate


# --------------------------------------------------------------------------- mprotect
def test_mprotect_splits_and_merges_back() -> None:
    k = new_kernel()
    do(k, "mmap", mm=0, addr=0, npages=8)
    for a in range(8):
        do(k, "write", mm=0, addr=a)
    assert layout(k, 0) == "AAAAAAAA        "
    do(k, "mprotect", mm=0, addr=2, npages=2, flag=0)  # split twice
    assert layout(k, 0) == "AAbbCCCC        "
    assert ptes(k, 0) == "WWrrWWWW........"
    do(k, "mprotect", mm=0, addr=4, npages=2, flag=0)  # case 5: boundary shifts up
    assert layout(k, 0) == "AAbbbbCC        "
    assert ptes(k, 0) == "WWrrrrWW........"
    assert do(k, "write", mm=0, addr=3) == EFAULT  # SIGSEGV on a read-only vma
    do(k, "mprotect", mm=0, addr=2, npages=4, flag=1)  # case 6: prev absorbs both
    assert layout(k, 0) == "AAAAAAAA        "
    assert k.mms[0].map_count == 1
    vma = k.mms[0].mmap
    assert vma is not None and (vma.vm_start, vma.vm_end, vma.vm_pgoff) == (0, 8, 0)
    for a in range(8):
        do(k, "read", mm=0, addr=a)  # every token survived the splits and merges
    # The ptes stay read-only until written; the write reuses the exclusive page.
    before = k.stats["pgalloc"]
    do(k, "write", mm=0, addr=3)
    assert ptes(k, 0) == "WWrWrrWW........"
    assert k.stats["pgalloc"] == before


def test_mprotect_case4_shifts_the_boundary_down() -> None:
    k = new_kernel()
    do(k, "mmap", mm=0, addr=0, npages=8)
    do(k, "write", mm=0, addr=5)
    do(k, "mprotect", mm=0, addr=4, npages=4, flag=0)
    assert layout(k, 0) == "AAAAbbbb        "
    do(k, "mprotect", mm=0, addr=2, npages=2, flag=0)  # next (b) expands down over [2,4)
    assert layout(k, 0) == "AAbbbbbb        "
    b = k.mms[0].vmas()[1]
    assert (b.vm_start, b.vm_pgoff) == (2, 2)
    do(k, "read", mm=0, addr=5)


# --------------------------------------------------------------------------- fork / COW
def test_fork_and_cow_keep_both_views() -> None:
    k = new_kernel()
    do(k, "mmap", mm=0, addr=0, npages=2)
    do(k, "write", mm=0, addr=0)
    do(k, "write", mm=0, addr=1)
    shared = pfn_at(k, 0, 1)
    child = do(k, "fork", mm=0)
    assert child == 3
    assert layout(k, 3) == "AA              "
    assert ptes(k, 0) == ptes(k, 3) == "rr.............."
    assert k.pages[shared].mapcount == 2
    assert k.expected[3] == k.expected[0]
    do(k, "write", mm=3, addr=0)  # the child breaks COW on page 0
    assert ptes(k, 3) == "Wr.............."
    assert k.expected[3][0] != k.expected[0][0]
    for mm in (0, 3):
        for a in (0, 1):
            do(k, "read", mm=mm, addr=a)  # each sees its own token (check_read)
    do(k, "write", mm=0, addr=1)  # the parent copies the shared page
    assert pfn_at(k, 0, 1) != shared and pfn_at(k, 3, 1) == shared
    assert k.pages[shared].mapcount == 1
    before = k.stats["pgalloc"]
    do(k, "write", mm=3, addr=1)  # now exclusive: reused, not copied
    assert pfn_at(k, 3, 1) == shared and k.stats["pgalloc"] == before
    # Each process's pages live in its own anon_vma; the child's pins the root.
    child_av = k.pages[shared].mapping
    assert child_av is not None and child_av.root is not child_av
    assert child_av.root.refcount == 1


def test_fork_copies_swap_entries() -> None:
    k = new_kernel()
    do(k, "mmap", mm=0, addr=0, npages=2)
    do(k, "write", mm=0, addr=0)
    for _ in range(4):
        do(k, "kswapd", count=2)
    assert ptes(k, 0)[0] == "s"
    e = k.mms[0].pgd[0].entry  # type: ignore[union-attr]
    users = k.swap.swap_map[e]
    do(k, "fork", mm=0)
    assert ptes(k, 3)[0] == "s" and k.swap.swap_map[e] == users + 1
    do(k, "read", mm=3, addr=0)  # swapped back in with the right token
    do(k, "read", mm=0, addr=0)


# --------------------------------------------------------------------------- migration
def test_migration_keeps_data_and_leaves_no_migration_entry() -> None:
    k = new_kernel()
    do(k, "mmap", mm=0, addr=0, npages=2)
    do(k, "write", mm=0, addr=0)
    do(k, "write", mm=0, addr=1)
    old = pfn_at(k, 0, 0)
    token = k.pages[old].data
    assert do(k, "migrate", pfn=old) == 0
    new = pfn_at(k, 0, 0)
    assert new != old
    assert k.pages[new].data == token
    assert old in k.free_list
    assert not k.migration_ptes
    assert ptes(k, 0) == "WW.............."
    assert {PG_lru, PG_active} <= k.pages[new].flags
    do(k, "read", mm=0, addr=0)


def test_migration_of_a_page_shared_by_fork() -> None:
    k = new_kernel()
    do(k, "mmap", mm=0, addr=0, npages=1)
    do(k, "write", mm=0, addr=0)
    do(k, "fork", mm=0)
    old = pfn_at(k, 0, 0)
    assert do(k, "migrate", pfn=old) == 0
    new = pfn_at(k, 0, 0)
    assert pfn_at(k, 3, 0) == new != old
    assert k.pages[new].mapcount == 2
    assert ptes(k, 0) == ptes(k, 3) == "r..............."
    do(k, "read", mm=3, addr=0)
    do(k, "write", mm=3, addr=0)
    do(k, "read", mm=0, addr=0)


def test_migration_refuses_vm_reserved() -> None:
    k = new_kernel()
    do(k, "mmap_reserved", mm=0, addr=0, npages=1)
    do(k, "write", mm=0, addr=0)
    pfn = pfn_at(k, 0, 0)
    assert do(k, "migrate", pfn=pfn) == EAGAIN
    assert pfn_at(k, 0, 0) == pfn and not k.migration_ptes
    do(k, "read", mm=0, addr=0)


def test_fault_on_migration_entry_waits_for_the_migration() -> None:
    k = new_kernel()
    do(k, "mmap", mm=0, addr=0, npages=1)
    do(k, "write", mm=0, addr=0)
    pfn = pfn_at(k, 0, 0)
    mig = k.spawn("migrate", name="mig", pfn=pfn)
    while mig.label != "unmap_and_move:move_to_new_page":
        k.sched.step()
    assert ptes(k, 0)[0] == "m"
    reader = k.spawn("read", name="reader", mm=0, addr=0)
    k.sched.source = _Only("reader")  # the reader runs until it must sleep
    while reader.blocked is None:
        k.sched.step()
    assert reader.label == "migration_entry_wait:wait(page unlocked)"
    assert k.pages[pfn].count == 2  # the sleeper pinned the page (get_page_unless_zero)
    k.sched.source = _Only("mig")
    k.sched.run()
    assert reader.done and reader.result == 0
    # The pin makes migrate_page_move_mapping back out: the old page is mapped again.
    assert mig.result == EAGAIN
    assert ptes(k, 0)[0] == "W" and pfn_at(k, 0, 0) == pfn and not k.migration_ptes


class _Only:
    def __init__(self, name: str) -> None:
        self.name = name

    def choose(self, runnable: list[Any], default: int, sched: Scheduler) -> int:
        for i, t in enumerate(runnable):
            if t.name == self.name:
                return i
        return default


# --------------------------------------------------------------------------- mlock / reserved
def test_mlocked_pages_are_unevictable_and_never_reclaimed() -> None:
    k = new_kernel()
    do(k, "mmap", mm=0, addr=0, npages=4)
    do(k, "write", mm=0, addr=0)
    assert do(k, "mlock", mm=0, addr=1, npages=2) == 0
    assert layout(k, 0) == "ABBC            "
    assert k.mms[0].vmas()[1].vm_flags & VM_LOCKED
    assert ptes(k, 0) == "WWW............."  # mlock faulted the locked range in
    for a in (1, 2):
        page = k.pages[pfn_at(k, 0, a)]
        assert PG_mlocked in page.flags and PG_unevictable in page.flags
        assert any(p is page for p in k.lru["unevictable"])
    for _ in range(6):
        do(k, "kswapd", count=4)
    assert ptes(k, 0) == "sWW............."  # only the unlocked page went to swap
    do(k, "munlock", mm=0, addr=0, npages=4)
    assert layout(k, 0) == "AAAA            "
    for a in (1, 2):
        page = k.pages[pfn_at(k, 0, a)]
        assert PG_mlocked not in page.flags and PG_unevictable not in page.flags
    for _ in range(6):
        do(k, "kswapd", count=4)
    assert ptes(k, 0) == "sss............."
    for a in range(3):
        do(k, "read", mm=0, addr=a)


def test_try_to_unmap_refuses_vm_locked_and_mlocks_the_page() -> None:
    k = new_kernel()
    do(k, "mmap", mm=0, addr=0, npages=1)
    do(k, "write", mm=0, addr=0)
    page = k.pages[pfn_at(k, 0, 0)]
    k.mms[0].vmas()[0].vm_flags |= VM_LOCKED  # as if mlock_fixup had just set it

    def reclaim_one() -> Iterator[Any]:
        yield k.sched.lock_page(page.lock)
        ret = yield from try_to_unmap(k, page, False)
        k.sched.unlock_page(page.lock)
        return ret

    assert run_in_task(k, reclaim_one()) == SWAP_FAIL
    assert ptes(k, 0)[0] == "W"
    assert PG_mlocked in page.flags and PG_unevictable in page.flags


def test_vm_reserved_pages_are_never_reclaimed() -> None:
    k = new_kernel()
    do(k, "mmap_reserved", mm=0, addr=0, npages=2)
    do(k, "mmap", mm=0, addr=4, npages=2)
    for a in (0, 1, 4, 5):
        do(k, "write", mm=0, addr=a)
    for _ in range(6):
        do(k, "kswapd", count=4)
        do(k, "swap_out", count=4)
    assert ptes(k, 0) == "WW..ss.........."
    for a in (0, 1, 4, 5):
        do(k, "read", mm=0, addr=a)


# --------------------------------------------------------------------------- exit / threads
def test_exit_frees_everything() -> None:
    k = new_kernel()
    do(k, "mmap", mm=0, addr=0, npages=8)
    for a in range(6):
        do(k, "write", mm=0, addr=a)
    do(k, "fork", mm=0)
    do(k, "write", mm=3, addr=0)
    do(k, "mprotect", mm=0, addr=2, npages=2, flag=0)
    do(k, "mlock", mm=3, addr=4, npages=2)
    do(k, "kswapd", count=3)
    do(k, "migrate", pfn=pfn_at(k, 0, 5) if isinstance(k.mms[0].pgd.get(5), PresentPte) else 0)
    assert any(c for c in k.swap.swap_map[1:])  # some pages are in swap
    assert live_anon_vmas(k)
    assert do(k, "exit", mm=3) == 0
    assert do(k, "exit", mm=0) == 0
    assert k.mms[0].dead and k.mms[3].dead
    assert k.mms[0].mmap is None and not k.mms[0].pgd
    assert len(k.free_list) == k.config.nr_frames
    assert all(c == 0 for c in k.swap.swap_map[1:]) and not k.swap.cache
    assert not live_anon_vmas(k)
    assert not any(k.lru.values())
    assert do(k, "write", mm=0, addr=0) == ESRCH  # a dead process makes no syscalls
    check_all(k)


def test_last_thread_out_tears_the_mm_down() -> None:
    """exit() in one thread while another is inside a fault: mm_users keeps the mm alive and
    the faulting thread's mmput runs exit_mmap."""
    k = new_kernel()
    do(k, "mmap", mm=0, addr=0, npages=2)
    writer = k.spawn("write", name="writer", mm=0, addr=1)
    while writer.label != "user_access:store":
        k.sched.step()
    assert k.mms[0].users == 2
    ex = k.spawn("exit", name="exit", mm=0)
    k.sched.source = _Only("exit")
    while not ex.done:
        k.sched.step()
    assert not k.mms[0].dead and k.mms[0].users == 1
    assert k.sched.live == [writer]
    k.sched.run()
    assert writer.result == 0
    assert k.mms[0].dead and k.mms[0].users == 0
    assert len(k.free_list) == k.config.nr_frames and not live_anon_vmas(k)


def test_two_threads_fault_the_same_page() -> None:
    """Both threads allocate an anon_vma and a page; one installs them, the other frees its
    own (anon_vma_prepare and do_anonymous_page recheck under the locks)."""
    k = new_kernel()
    do(k, "mmap", mm=0, addr=0, npages=1)
    a = k.spawn("write", name="a", mm=0, addr=0)
    b = k.spawn("write", name="b", mm=0, addr=0)
    k.sched.source = _Alternate()
    k.sched.run()
    assert a.result == b.result == 0
    assert len(live_anon_vmas(k)) == 1
    assert used_frames(k) == 1
    assert k.stats["anon_vma_alloc"] == 2 and k.stats["pgalloc"] == 2
    do(k, "read", mm=0, addr=0)


class _Alternate:
    def choose(self, runnable: list[Any], default: int, sched: Scheduler) -> int:
        for i, t in enumerate(runnable):
            if t is not sched.current:
                return i
        return default


# --------------------------------------------------------------------------- the fixed kernel
OPS = [
    ("mmap", {"mm": 0, "addr": 0, "npages": 6}),
    ("write", {"mm": 0, "addr": 1}),
    ("write", {"mm": 0, "addr": 4}),
    ("fork", {"mm": 0}),
    ("mprotect", {"mm": 3, "addr": 2, "npages": 2, "flag": 0}),
    ("migrate", {"pfn": 0}),
    ("write", {"mm": 3, "addr": 4}),
    ("munmap", {"mm": 0, "addr": 3, "npages": 2}),
    ("mlock", {"mm": 3, "addr": 0, "npages": 2}),
    ("kswapd", {"count": 2}),
    ("read", {"mm": 3, "addr": 1}),
    ("migrate", {"pfn": 1}),
    ("exit", {"mm": 3}),
]


@pytest.mark.parametrize("seed", range(40))
def test_fixed_kernel_is_clean_under_random_schedules(seed: int) -> None:
    """Three threads mixing every mm-core path under a random schedule: no violation."""
    from vmfuzz.case import Case, OpCall, TaskSpec, execute
    from vmfuzz.schedules import RandomWalk

    calls = [OpCall(op, args) for op, args in OPS]
    tasks = (
        TaskSpec("T0", tuple(calls[0:5])),
        TaskSpec("T1", tuple(calls[5:9])),
        TaskSpec("T2", tuple(calls[9:])),
    )
    run = execute(Case(KernelConfig(), tasks), RandomWalk(seed))
    assert run.outcome.kind != "violation", run.outcome.violation.describe()  # type: ignore[union-attr]
