"""Kernel debug facilities mirrored by the checks (docs/oracle.md): page_table_check's
exclusive writable anon mapping, lockdep's no lock held on return to user space, and an excused
half-done state re-checked when the call that excused it returns."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import pytest
from vmfuzz.invariants import check_all, install

from vmfuzz import Violation
from vmfuzz.case import Case, OpCall, TaskSpec, execute
from vmfuzz.kernel import Kernel, KernelConfig
from vmfuzz.kernel.mm_types import PresentPte


def _forked() -> Kernel:
    """mm0 wrote page 1 and forked: the page is shared read-only with mm3."""
    ops = (OpCall("mmap", {"mm": 0, "addr": 0, "npages": 4}), OpCall("write", {"mm": 0, "addr": 1}),
           OpCall("fork", {"mm": 0}))
    run = execute(Case(KernelConfig(), (TaskSpec("T", ops),)))
    assert run.outcome.kind == "clean", run.outcome
    return run.kernel


def test_anon_rw_exclusive_fires_on_a_shared_writable_pte() -> None:
    k = _forked()
    check_all(k)  # the COW-shared page: read-only on both sides
    pte = k.mms[0].pgd[1]
    assert isinstance(pte, PresentPte)
    k.set_pte_at(k.mms[0], 1, PresentPte(pte.pfn, True))
    with pytest.raises(Violation) as info:
        check_all(k, ["anon_rw_exclusive"])
    assert info.value.check == "anon_rw_exclusive"
    assert "mapped writable at" in info.value.message


def _two_calls(k: Kernel, second_takes_lock: bool) -> Generator[Any, None, None]:
    """A call that breaks a page's mapcount inside lru_lock and returns without mending it;
    the next call, in the same step, takes lru_lock again."""
    k.call_begin("first", {})
    yield k.sched.spin_lock(k.lru_lock)
    page = k.pages[0]
    page.count, page.mapcount = 1, 1  # no pte maps it
    k.touch_page(page)
    yield "first:broken"
    k.sched.spin_unlock(k.lru_lock)
    k.call_return("first", {}, 0)
    k.call_begin("second", {})
    if second_takes_lock:
        yield k.sched.spin_lock(k.lru_lock)
        yield "second:inside"
        k.sched.spin_unlock(k.lru_lock)
    k.call_return("second", {}, 0)


def test_an_excuse_ends_when_its_call_returns() -> None:
    k = Kernel(KernelConfig())
    install(k, ["mapcount_matches_ptes"])
    k.sched.spawn(_two_calls(k, True), "T")
    with pytest.raises(Violation) as info:
        k.sched.run()
    v = info.value
    assert v.check == "mapcount_matches_ptes"
    # reported at the step that returned from the first call, not after the second's section
    assert v.step == 2, v


def test_lock_held_on_return_to_user_space() -> None:
    k = Kernel(KernelConfig())

    def leaky() -> Generator[Any, None, None]:
        k.call_begin("leaky", {})
        yield k.sched.spin_lock(k.lru_lock)
        k.call_return("leaky", {}, 0)

    k.sched.spawn(leaky(), "T")
    with pytest.raises(Violation) as info:
        k.sched.run()
    assert info.value.check == "lock_held_at_exit"
    assert "returned from leaky holding" in info.value.message


def _needs_lock(k: Kernel, path: Callable[[bool], Generator[Any, None, None]],
                needle: str) -> None:
    """``path(True)`` (with the lock) runs clean; ``path(False)`` fails lock_not_held with a
    message containing ``needle``."""
    k.sched.spawn(path(True), "T0")
    k.sched.run()
    k.sched.spawn(path(False), "T1")
    with pytest.raises(Violation) as info:
        k.sched.run()
    assert info.value.check == "lock_not_held"
    assert needle in info.value.message
    k.sched.live.clear()


@pytest.mark.parametrize("fn", ["mlock_vma_page", "munlock_vma_page"])
def test_mlock_and_munlock_of_a_page_assert_its_lock(fn: str) -> None:
    """2.6.36 mlock_vma_page()/munlock_vma_page(): BUG_ON(!PageLocked(page))."""
    from vmfuzz.kernel import mlock

    k = _forked()
    pte = k.mms[0].pgd[1]
    assert isinstance(pte, PresentPte)
    page = k.pages[pte.pfn]

    def path(locked: bool) -> Generator[Any, None, None]:
        if locked:
            yield k.sched.lock_page(page.lock)
        ret = getattr(mlock, fn)(k, page)
        if ret is not None:
            yield from ret
        if locked:
            k.sched.unlock_page(page.lock)
        yield "done"

    _needs_lock(k, path, f"{fn}: BUG_ON(!PageLocked(page))")


def test_a_pte_write_asserts_the_pte_lock() -> None:
    """Every pte write of a task is made under the mm's page_table_lock (the pte lock)."""
    k = _forked()
    mm = k.mms[0]
    pte = mm.pgd[1]
    assert isinstance(pte, PresentPte)

    def path(locked: bool, clear: bool) -> Generator[Any, None, None]:
        if locked:
            yield k.sched.spin_lock(mm.page_table_lock)
        if clear:
            k.pte_clear(mm, 3)
        else:
            k.set_pte_at(mm, 1, PresentPte(pte.pfn, False))
        if locked:
            k.sched.spin_unlock(mm.page_table_lock)
        yield "done"

    for clear in (False, True):
        _needs_lock(k, lambda locked, c=clear: path(locked, c), "page_table_lock")


def test_an_anon_vma_list_write_asserts_the_anon_vma_lock() -> None:
    """anon_vma->head is linked and unlinked only under anon_vma_lock() (the root's lock)."""
    from vmfuzz.kernel import rmap

    k = _forked()
    vma = k.mms[3].mmap
    assert vma is not None and vma.anon_vma is not None
    anon_vma = vma.anon_vma.root

    def path(locked: bool) -> Generator[Any, None, None]:
        if locked:
            yield from rmap.anon_vma_lock(k, anon_vma)
        rmap.anon_vma_list_writer(k, anon_vma)
        if locked:
            rmap.anon_vma_unlock(k, anon_vma)
        yield "done"

    _needs_lock(k, path, "anon_vma->head")


def test_a_vm_flags_write_asserts_mmap_sem_for_write() -> None:
    """vm_flags is written under mmap_sem held for write (the fault path and reclaim read it
    under the read lock)."""
    from vmfuzz.kernel.mmap import vma_flags_writer

    k = _forked()
    mm = k.mms[0]

    def path(write: bool) -> Generator[Any, None, None]:
        if write:
            yield k.sched.down_write(mm.mmap_sem)
        else:
            yield k.sched.down_read(mm.mmap_sem)
        vma_flags_writer(k, mm)
        if write:
            k.sched.up_write(mm.mmap_sem)
        else:
            k.sched.up_read(mm.mmap_sem)
        yield "done"

    _needs_lock(k, path, "vm_flags is written under mmap_sem")


def test_an_allocation_that_fails_finds_no_frame_free() -> None:
    from vmfuzz.kernel.page_alloc import alloc_page

    k = Kernel(KernelConfig(nr_frames=2))
    install(k, ["alloc_fails_with_free_frames"])
    got: list[Any] = []

    def path() -> Generator[Any, None, None]:
        for _ in range(3):
            got.append((yield from alloc_page(k)))

    k.sched.spawn(path(), "T")
    k.sched.run()  # the third finds the list empty (nothing to reclaim): fine
    assert got[2] is None and k.stats["pgalloc_fail"] == 1
    assert k.stats["pgalloc_fail_free"] == 0  # the failure report's count: none free
    check_all(k, ["alloc_fails_with_free_frames"])
    k.free_list.append(got[0].pfn)  # as if the allocator had missed a free frame
    k.stats["pgalloc_fail_free"] = 1
    with pytest.raises(Violation) as info:
        check_all(k, ["alloc_fails_with_free_frames"])
    assert "failed with 1 frame(s) on the free list" in info.value.message


def test_lru_at_rest_fires_on_a_page_isolated_and_never_put_back() -> None:
    from vmfuzz.kernel.page_alloc import isolate_lru_page

    k = _forked()
    check_all(k)
    pte = k.mms[0].pgd[1]
    assert isinstance(pte, PresentPte)
    assert isolate_lru_page(k, k.pages[pte.pfn])  # a path's private page, at rest
    with pytest.raises(Violation) as info:
        check_all(k, ["lru_at_rest"])
    assert "on no LRU list: isolated and never put back" in info.value.message


def test_rss_at_rest_fires_on_an_rss_count_no_pte_backs() -> None:
    k = _forked()
    check_all(k)
    k.mms[0].rss += 1  # a fault that backed out after counting the page
    with pytest.raises(Violation) as info:
        check_all(k, ["rss_at_rest"])
    present = sum(isinstance(p, PresentPte) for p in k.mms[0].pgd.values())
    assert f"mm0's rss is {present + 1} with {present} present ptes" in info.value.message


def test_anon_vma_leak_fires_on_an_anon_vma_nothing_links() -> None:
    from vmfuzz.kernel.rmap import anon_vma_alloc

    k = _forked()
    check_all(k)  # the parent's anon_vma and the child's, both linked
    lost = anon_vma_alloc(k)
    with pytest.raises(Violation) as info:
        check_all(k, ["anon_vma_leak"])
    assert f"anon_vma{lost.id} is live and no vma links it" in info.value.message
