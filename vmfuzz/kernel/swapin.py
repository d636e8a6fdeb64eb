"""do_swap_page(): the swap-in fault (mm/memory.c).

The shape is 2.4's, as seed 001 draws it: look the entry up in the swap cache; on a miss
(the page_table_lock is not held here; 2.4 dropped it at this point) take the Big Kernel Lock
around swapin_readahead + read_swap_cache_async; lock the page; retake the page_table_lock and
back out unless the pte is still the one we faulted on; map the page, drop the pte's swap
reference and, when swap is filling up (vm_swap_full) or the vma is mlocked, delete the page
from the swap cache (try_to_free_swap) so its entry is freed.  A write fault on a page nobody
else uses takes it over at once (2.6.29 reuse_swap_page).

Later kernels' defences are all in the fixed kernel, each undone by one switch:

* seed 001 (``vm_swap_full_delete_race``): 2.4.8 backed out only if the pte had become
  *present*; 2.4.10 compares it with the faulting pte (pte_same), because while this thread
  slept on the BKL another thread may have faulted the page in, deleted it from the swap cache
  (vm_swap_full) and freed the entry, and try_to_swap_out may have reused that entry for a
  different page: the lookup then finds someone else's page under "our" entry while our pte
  holds another entry.
* 4969c1192d15 "mm: fix swapin race condition" (2.6.34) and Hugh Dickins' follow-up "mm:
  further fix swapin race condition" (2.6.36-rc5) (``swapin_no_swapcache_recheck``): after
  lock_page, check the page is still in the swap cache *for this entry*; pte_same alone is
  fooled once the entry was freed and reused for another page of the same pte.
* 0bcac06f27d7 (4.15) lets a SWP_SYNCHRONOUS_IO device skip the swap cache when the entry has
  one user; 13ddaf26be32 "mm/swap: fix race when skipping swapcache" (6.8)
  (``swapin_skip_swapcache_race``) pins the entry with swapcache_prepare so that a concurrent
  swapin of the same entry cannot finish, free the entry and let it be reused (the same ABA
  as seed 001, 23 years later).
* eb085574a752 "mm, swap: fix race between swapoff and some swap operations" (5.1)
  (``swapin_no_get_swap_device``): get_swap_device pins the device so swapoff cannot free it
  under a swapin that has not reached the swap cache.

Convention: called by handle_mm_fault (mmap_sem held for read) *without* page_table_lock, with
the swap pte it read (``orig_pte``); returns 0 (done, or the pte changed: the access retries),
or -ENOMEM.  A read fault maps the page read-only unless reuse_swap_page says it is ours alone.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from vmfuzz.kernel import bugs
from vmfuzz.kernel.mm_types import (
    VM_LOCKED,
    PG_mlocked,
    PG_swapcache,
    PresentPte,
    SwapPte,
    pte_same,
)
from vmfuzz.kernel.page_alloc import (
    alloc_page,
    lock_new_page,
    lru_cache_add_active_or_unevictable,
    put_page,
)
from vmfuzz.kernel.rmap import page_add_anon_rmap, page_add_new_anon_rmap
from vmfuzz.kernel.swap_state import (
    lookup_swap_cache,
    read_swap_cache_async,
    swapin_readahead,
    try_to_free_swap,
)
from vmfuzz.kernel.swapfile import (
    ENOMEM,
    get_swap_device,
    pinned,
    put_swap_device,
    reuse_swap_page,
    swap_count,
    swap_free,
    swap_readpage,
    swapcache_clear,
    swapcache_prepare,
    synchronous_io,
    vm_swap_full,
)

if TYPE_CHECKING:
    from vmfuzz.kernel.kernel import Kernel
    from vmfuzz.kernel.mm_types import MmStruct, Page, VmAreaStruct

Gen = Generator[Any, None, Any]

bugs.register(
    "vm_swap_full_delete_race",
    "001_7c293cf58bcd9bf3.txt",
    "2.4.8 do_swap_page backs out only if the pte became present (not pte_same): after another "
    "thread's vm_swap_full delete freed the entry and try_to_swap_out reused it while this "
    "one waited for the BKL, it maps the page now cached for that entry",
    "data_integrity",
    mail_tasks=2,
    mail_preemptions=1,
    # the stale page's index names another address; or the entry, freed while still in use,
    # is caught with a swap pte and no count left
    also=("rmap_reachable", "swap_map_counts"),
)
bugs.register(
    "swapin_no_swapcache_recheck",
    "4969c1192d15afa3389e7ae3302096ff684ba655",
    "do_swap_page does not recheck PageSwapCache && page_private == entry after lock_page "
    "(4969c1192d15 + 'mm: further fix swapin race condition'): the entry was freed by "
    "reuse_swap_page and given to a COW copy, pte_same passes, the old page is mapped",
    "data_integrity",
    mail_tasks=4,
    mail_preemptions=1,
    also=("rmap_reachable",),  # the stale page's index names another address
    # Outside the zoo's bar (9 of 10 seeds of 60 s).  The race replays as Hugh drew it (tests/
    # test_model_swap_races.py).  From scratch, the writers alone (one task, next to a stalled
    # reader) need at least three exact operations in a {forked, swapped} world without
    # "resident": write(0,3); exit(3) (or munmap(3,3,1)); swap_out(1), where the parent's
    # COW copy gets back the entry the child's exit freed (4969c1192d15's own race: the
    # page left the swap cache); Hugh's form, the child's copy getting it, needs five (the
    # child's page 0 takes the lowest free slot first).  Measured by enumeration over the
    # worlds with swapped pages: no one-task program of two, and no other of three, of
    # {write, munmap, exit of a world target, swap_out(1), kswapd(1), fork(0)} makes it.
    # The search finds it in 2 of 10 seeds of 60 s (shrunk to 4 tasks / 5 and 30 switches);
    # in seed 0's 60 s none of the 106 programs that made a swap pte of the parent or the
    # child ABA could fail (each probed with a reader stalled after up to 40 of its steps):
    # the three operations never met.
    zoo=False,
)
bugs.register(
    "swapin_skip_swapcache_race",
    "13ddaf26be32",
    "skip-swapcache swapin (SWP_SYNCHRONOUS_IO) without swapcache_prepare: a racing swapin "
    "of the same entry maps its page, frees the entry, it is reused by swapout, pte_same "
    "passes and the stale page is mapped",
    "data_integrity",
    mail_tasks=2,
    mail_preemptions=1,
    also=("rmap_reachable",),  # the stale page's index names another address
)
bugs.register(
    "swapin_no_get_swap_device",
    "eb085574a752",
    "do_swap_page does not pin the swap device (get_swap_device): swapoff completes and frees "
    "the device (swap_map, swap cache address space) between the pte read and the lookup",
    "use_after_free",
    mail_tasks=2,
    mail_preemptions=1,
)


def do_swap_page(
    k: Kernel, mm: MmStruct, vma: VmAreaStruct, addr: int, orig_pte: SwapPte, write: bool
) -> Gen:
    """do_swap_page() (see the module doc for the shape and the switches)."""
    entry = orig_pte.entry
    # handle_mm_fault read the pte without a lock: from here on swapoff may run to its end
    # (eb085574a752: "after getting the swap entry information from the page table, system
    # may swap off the swap device").
    yield "do_swap_page:entry"
    have_dev = False
    if not k.bug("swapin_no_get_swap_device"):
        if not get_swap_device(k, entry):
            # swapoff is tearing the device down: it will have replaced our pte.
            return 0
        have_dev = True
    ret = yield from _do_swap_page(k, mm, vma, addr, orig_pte, write)
    if have_dev:
        put_swap_device(k)
    return ret


def _do_swap_page(
    k: Kernel, mm: MmStruct, vma: VmAreaStruct, addr: int, orig_pte: SwapPte, write: bool
) -> Gen:
    entry = orig_pte.entry
    page = lookup_swap_cache(k, entry)
    if page is None:
        # Seed 001: "do_swap_page's lookup of entry doesn't find it in the cache, so drops
        # page_table lock, waits for BKL."
        yield "do_swap_page:lookup_missed"
        if synchronous_io(k) and swap_count(k, entry) == 1:
            # 4.15 skip-swapcache swapin: read straight into a private page.
            yield "do_swap_page:skip_swapcache"
            return (yield from _swapin_skip_swapcache(k, mm, vma, addr, orig_pte, write))
        yield k.sched.lock_kernel(at="do_swap_page")
        yield from swapin_readahead(k, entry, vma, addr)
        page = yield from read_swap_cache_async(k, entry, vma, addr)
        k.sched.unlock_kernel()
        if page is None:
            # Back out if somebody else faulted in this pte while we slept.
            yield k.sched.spin_lock(mm.page_table_lock, at="do_swap_page")
            ret = -ENOMEM if pte_same(mm.pgd.get(addr), orig_pte) else 0
            k.sched.spin_unlock(mm.page_table_lock)
            return ret
    yield k.sched.lock_page(page.lock, at="do_swap_page")
    if not k.bug("swapin_no_swapcache_recheck") and (
        PG_swapcache not in page.flags or page.private != entry
    ):
        # try_to_free_swap, reuse_swap_page or swapoff released the swap cache from under
        # us (4969c1192d15), or the page now belongs to another entry (2.6.36-rc5).
        k.sched.unlock_page(page.lock)
        put_page(k, page)
        return 0
    yield k.sched.spin_lock(mm.page_table_lock, at="do_swap_page")
    cur = mm.pgd.get(addr)
    if k.bug("vm_swap_full_delete_race"):
        changed = isinstance(cur, PresentPte)  # 2.4.8: if (pte_present(*page_table))
    else:
        changed = not pte_same(cur, orig_pte)
    if changed:
        k.sched.spin_unlock(mm.page_table_lock)
        k.sched.unlock_page(page.lock)
        put_page(k, page)
        return 0
    _map_swap_page(k, mm, vma, addr, page, write, True)
    swap_free(k, entry)
    if (
        PG_swapcache in page.flags
        and (vm_swap_full(k) or vma.vm_flags & VM_LOCKED or PG_mlocked in page.flags)
    ):
        try_to_free_swap(k, page)
    k.sched.unlock_page(page.lock)
    k.sched.spin_unlock(mm.page_table_lock)
    return 0


def _map_swap_page(
    k: Kernel, mm: MmStruct, vma: VmAreaStruct, addr: int, page: Page, write: bool,
    swapcache: bool,
) -> None:
    """Install the pte (page_table_lock and page lock held); our page reference becomes the
    pte's.  Writable only if this fault owns the page (reuse_swap_page / a private copy)."""
    if swapcache:
        writable = write and reuse_swap_page(k, page)
        k.set_pte_at(mm, addr, PresentPte(page.pfn, writable))
        page_add_anon_rmap(k, page, vma, addr)
    else:
        k.set_pte_at(mm, addr, PresentPte(page.pfn, write))
        page_add_new_anon_rmap(k, page, vma, addr)
        lru_cache_add_active_or_unevictable(k, page, vma)
    mm.rss += 1
    k.touch_mm(mm)


def _swapin_skip_swapcache(
    k: Kernel, mm: MmStruct, vma: VmAreaStruct, addr: int, orig_pte: SwapPte, write: bool
) -> Gen:
    """The SWP_SYNCHRONOUS_IO path (4.15+): the entry has one user, so read it into a new
    private page without the swap cache.  13ddaf26be32: swapcache_prepare() first, so a
    concurrent swapin of the same entry backs off instead of racing us to free it."""
    entry = orig_pte.entry
    pin = False
    if not k.bug("swapin_skip_swapcache_race"):
        if swapcache_prepare(k, entry) != 0:
            # Someone else is swapping it in: wait for them (01626a182302), then refault.
            yield k.sched.wait_event(
                lambda: entry not in pinned(k), "swapcache_prepare", at="do_swap_page"
            )
            return 0
        pin = True
    ret = 0
    page = yield from alloc_page(k)
    if page is None:
        ret = -ENOMEM
    else:
        lock_new_page(k, page)
        yield "do_swap_page:swap_readpage"
        page.data = swap_readpage(k, entry)
        k.touch_page(page)
        yield k.sched.spin_lock(mm.page_table_lock, at="do_swap_page")
        if pte_same(mm.pgd.get(addr), orig_pte):
            _map_swap_page(k, mm, vma, addr, page, write, False)
            swap_free(k, entry)
            k.sched.unlock_page(page.lock)
            k.sched.spin_unlock(mm.page_table_lock)
        else:
            k.sched.spin_unlock(mm.page_table_lock)
            k.sched.unlock_page(page.lock)
            put_page(k, page)
    if pin:
        swapcache_clear(k, entry)  # after the pte lock is dropped
    return ret
