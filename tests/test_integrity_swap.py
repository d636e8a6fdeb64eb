"""data_integrity behind a swap entry: what a swapin of a swap pte would read (the swap-cache
page, else the device slot) is the token its mm last wrote, checked when the pte, the cache
slot, the device slot or the cached page's data change -- not only when a later load faults
the page back in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_invariants import World, base, caught, fresh, quiet, run_paths
from test_model_swap import Sim
from vmfuzz.invariants import Monitor, check_all, install

from vmfuzz import Violation
from vmfuzz.causes import explain
from vmfuzz.kernel import Kernel
from vmfuzz.kernel.mm_types import PresentPte, SwapPte
from vmfuzz.kernel.rmap import try_to_unmap
from vmfuzz.kernel.swap_state import add_to_swap, delete_from_swap_cache
from vmfuzz.kernel.swapfile import swap_writepage


# --------------------------------------------------------------------------- hand-built states
def swapped(w: World) -> tuple[int, int]:
    """mm0 page 0 swapped out to entry 1: written to its slot, gone from the swap cache."""
    vma, pages = base(w, mapped=1)
    page = pages[0]
    w.add_to_swap_cache(page, 1)
    w.swap_out_pte(vma, 0)
    w.k.swap.bdev.data[1] = page.data
    w.k.swap.cache.pop(1)
    page.flags.clear()
    page.private = None
    w.k.swap.swap_map[1] -= 1
    w.k.touch_entry(1)
    w.free(page)
    return 1, page.data


def test_a_slot_holding_an_older_token_is_a_lost_write() -> None:
    w = World()
    e, tok = swapped(w)
    quiet(w)
    m = w.monitor("data_integrity")
    w.k.expected[0][0] = w.k.new_token()  # a store the swap slot never got
    w.k.touch_entry(e)
    v = caught(w, "data_integrity", m)
    assert "swap pte at mm0 page 0" in v.message and "swap slot 1" in v.message
    assert f"token {tok}" in v.message and "lost write" in v.message
    assert v.objects["entry"] == e and v.objects["source"] == "slot"


def test_a_slot_overwritten_by_another_page_is_foreign_data() -> None:
    w = World()
    e, _tok = swapped(w)
    m = w.monitor("data_integrity")
    w.k.swap.bdev.data[e] = w.k.new_token()  # the entry's slot reused for another page
    w.k.touch_entry(e)
    v = caught(w, "data_integrity", m)
    assert "stale or foreign data" in v.message


def test_a_store_into_the_cached_page_of_another_mms_swap_pte_is_caught() -> None:
    """The parent stores into a swap-cache page whose entry the child's swap pte holds: the
    child's swapin would read the parent's token (the page's own touch finds the entry)."""
    w = World()
    vma, pages = base(w, mapped=1)
    page = pages[0]
    child = w.fork_vma(vma, w.mm(1))
    w.map(child, 0, page, write=False)
    w.k.expected[1] = dict(w.k.expected[0])
    w.add_to_swap_cache(page, 2)
    w.swap_out_pte(child, 0)
    quiet(w)
    m = w.monitor("data_integrity")
    tok = w.k.new_token()
    page.data = tok  # the parent writes without breaking COW
    w.k.expected[0][0] = tok
    w.k.touch_page(page)
    v = caught(w, "data_integrity", m)
    assert "swap pte at mm1 page 0" in v.message and "swap-cache page" in v.message
    assert "stale or foreign data" in v.message and v.objects["pfn"] == page.pfn


def test_a_locked_cache_page_is_deferred_until_unlocked() -> None:
    """A swapin waits in lock_page before it maps a swap-cache page (the read may be in
    flight): a locked page's data is not yet what a swapin reads; once unlocked it is."""
    w = fresh()
    e, _tok = swapped(w)
    m = install(w.k, ["data_integrity"])
    m.step()
    page = w.k.pages[w.k.free_list.pop()]
    page.count = 1

    def read_in(k: Kernel) -> Iterator[object]:  # a read that never stores the slot's data
        yield k.sched.lock_page(page.lock)
        w.add_to_swap_cache(page, e)
        yield "swap_readpage"
        page.data = 0
        k.touch_page(page)
        k.sched.unlock_page(page.lock)
        yield "end_io"

    with pytest.raises(Violation) as ei:
        run_paths(w.k, read_in)
    assert ei.value.check == "data_integrity" and ei.value.label == "end_io"


def test_a_freed_swap_device_is_not_read() -> None:
    w = World()
    _e, _tok = swapped(w)
    w.k.expected[0][0] = w.k.new_token()
    _poison_device(w.k)
    check_all(w.k, ["data_integrity"])


def _poison_device(k: Kernel) -> None:
    from vmfuzz.kernel.mm_types import FreedSwapBackingDev, poison

    poison(k.swap.bdev, FreedSwapBackingDev, "swapdev1")


# --------------------------------------------------------------------------- a real mistake
def reclaim(*, write: bool) -> Sim:
    """mm0 writes page 0; then a reclaim path swaps it out, writing it to its slot first, or
    (``write=False``, the mistake) deleting it from the swap cache unwritten."""
    s = Sim(nr_swap=4)
    s.op("mmap", mm=0, addr=0, npages=1)
    s.op("write", mm=0, addr=0)
    mm = s.k.mms[0]
    pte = mm.pgd[0]
    assert isinstance(pte, PresentPte)
    page = s.k.pages[pte.pfn]

    def shrink(k: Kernel) -> Iterator[object]:
        yield k.sched.lock_page(page.lock)
        assert (yield from add_to_swap(k, page))
        yield from try_to_unmap(k, page, False)
        yield "pageout"
        if write:
            swap_writepage(k, page)
        delete_from_swap_cache(k, page)  # frees the page: its last reference was the cache's
        k.sched.unlock_page(page.lock)
        yield "done"

    s.sched.spawn(shrink(s.k), "kswapd")
    s.sched.run()
    return s


def test_a_page_freed_from_the_swap_cache_unwritten_is_caught_before_any_load() -> None:
    with pytest.raises(Violation) as ei:
        reclaim(write=False)
    v = ei.value
    assert v.check == "data_integrity" and v.label == "done", v.describe()  # at the unlock
    assert "swap slot" in v.message and "token 0" in v.message and "lost write" in v.message


def test_the_same_reclaim_with_its_writeback_is_clean_and_reads_back() -> None:
    s = reclaim(write=True)
    assert isinstance(s.pte(0, 0), SwapPte)
    s.full_check()
    s.op("read", mm=0, addr=0)


def test_causes_name_the_lost_store_and_the_swapout() -> None:
    s = Sim(nr_swap=4)
    s.op("mmap", mm=0, addr=0, npages=1)
    s.op("write", mm=0, addr=0)
    s.op("swap_out", count=1)
    s.op("kswapd", count=1)
    pte = s.pte(0, 0)
    assert isinstance(pte, SwapPte) and pte.entry not in s.k.swap.cache
    tok = s.k.expected[0][0]
    s.k.swap.bdev.data[pte.entry] = 0  # what a slot that lost its write holds
    s.k.touch_entry(pte.entry)
    with pytest.raises(Violation) as ei:
        check_all(s.k)
    v = ei.value
    assert v.check == "data_integrity"
    roles = {c.role: c for c in explain(v, s.k, [])}
    assert f"token {tok}" in roles["lost write:"].what
    assert "swap slot" in roles["slot written by"].what
    assert "swap entry" in roles["swapped out by"].what


def test_monitor_and_full_scan_agree_on_a_clean_swapped_world() -> None:
    s = Sim(nr_swap=6, nr_mms=2)
    for op, args in [("mmap", {"mm": 0, "addr": 0, "npages": 2}), ("write", {"mm": 0, "addr": 0}),
                     ("write", {"mm": 0, "addr": 1}), ("fork", {"mm": 0}),
                     ("swap_out", {"count": 2}), ("kswapd", {"count": 2}),
                     ("write", {"mm": 0, "addr": 1}), ("read", {"mm": 1, "addr": 1}),
                     ("swap_out", {"count": 2})]:
        s.op(op, **args)
    assert any(isinstance(p, SwapPte) for mm in s.k.mms.values() for p in mm.pgd.values())
    s.full_check()
    Monitor(s.k).step()
