"""Page reclaim in both styles the seeds argue about, and the seed-000 driver (mm/vmscan.c).

2.4 virtual scan (op ``swap_out``, and direct reclaim): ``swap_out`` picks the address space
with the most resident pages, pins it (mm_users, as 2.4 did), and ``swap_out_mm`` walks its
``mm->mmap`` list under ``mm->page_table_lock`` (2.3.21+ vmlist_access_lock) from
``mm->swap_address``; ``swap_out_vma`` skips VM_LOCKED|VM_RESERVED; ``try_to_swap_out``
trylocks the page, clears the pte, gives an anon page a swap entry (get_swap_page +
add_to_swap_cache, retried on -EEXIST as 2.4.10 does) and installs the swap pte.  Unmapped
swap-cache pages are then written and freed by the LRU pass.

2.6 LRU + rmap scan (op ``kswapd``; 2.6.36 shrink_inactive_list / shrink_page_list): isolate
the oldest inactive page (deactivating the oldest active one when the inactive list is empty),
trylock it, cull mlocked pages to the unevictable list, ``add_to_swap``, ``try_to_unmap`` (rmap:
refuses VM_LOCKED|VM_RESERVED vmas), ``pageout`` (synchronous swap_writepage), then
``__remove_mapping``: free the page only if nobody else holds a reference (page_freeze_refs).

Direct reclaim (``try_to_free_pages``, entered by alloc_page when the free list is empty, and by
the driver's ioctl): the 2.4 order, an LRU pass that frees what is already unmapped, then the
virtual scan (swap_out) and the LRU pass again, and finally the 2.6 rmap pass.

The seed-000 driver (``k.drivers["drv"]``): ``mmap_driver`` maps and populates a private vma
with ``vm_ops = "drv"`` (its pages are anonymous memory, like a driver that hands out fresh
pages, and are swap-backed); the 2.4 scan calls the driver's ->swapout() for such a vma after
dropping the vmlist lock: it takes the driver's sleeping lock and writes the page to the device
(the page itself goes to swap as any anon page, so the data survives).  ``driver_ioctl`` holds
the driver lock and allocates a buffer under memory pressure, entering direct reclaim against
the other address spaces with I/O to drivers disabled (memalloc_noio: it must not recurse into
its own ->swapout).  Historical bug switches (seed 000, Kanoj Sarcar / Manfred Spraul, 1999):

* ``swapout_vma_after_unlock``: ->swapout(vma, page) is given the vma after vmlist_access_unlock
  and sleeps; munmap frees the vma meanwhile (use after free).  Fixed (2.3.23): the scan takes a
  reference on what the driver needs (get_file) and passes it instead of the vma.
* ``swapout_holds_vmlist_lock``: Manfred's alternative: the vmlist lock is the mm's semaphore
  (2.3's plain semaphore, modelled as mmap_sem taken for write) and ->swapout() sleeps holding
  it.  A task holding the driver lock that runs short of memory and reclaims from the first mm
  blocks on that semaphore: ABBA.  Lockdep reports it as ``lock_order_inversion`` at the moment
  the second task blocks (the wait-for cycle is the same moment's ``deadlock``).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from vmfuzz.kernel import bugs
from vmfuzz.kernel.fork import get_mm, mmget_not_zero, mmput
from vmfuzz.kernel.memory import do_page_fault
from vmfuzz.kernel.mm_types import (
    VM_LOCKED,
    VM_RESERVED,
    VM_WRITE,
    PG_active,
    PG_reserved,
    PG_swapcache,
    PresentPte,
    SwapPte,
)
from vmfuzz.kernel.mmap import vm_mmap
from vmfuzz.kernel.ops import operation
from vmfuzz.kernel.page_alloc import (
    LRU_INACTIVE,
    add_page_to_lru_list,
    alloc_page,
    del_page_from_lru,
    isolate_lru_page,
    page_evictable,
    put_page,
    putback_lru_page,
)
from vmfuzz.kernel.rmap import (
    SWAP_AGAIN,
    SWAP_FAIL,
    linear_page_index,
    page_remove_rmap,
    try_to_unmap,
)
from vmfuzz.kernel.swap_state import (
    __delete_from_swap_cache,
    add_to_swap,
    add_to_swap_cache,
    try_to_free_swap,
)
from vmfuzz.kernel.swapfile import (
    get_swap_page,
    inflight_dec,
    note_reclaim_unmap,
    swap_duplicate,
    swap_free,
    swap_writepage,
    vm_swap_full,
)

if TYPE_CHECKING:
    from vmfuzz.kernel.kernel import Kernel
    from vmfuzz.kernel.mm_types import Driver, MmStruct, Page, VmAreaStruct

Gen = Generator[Any, None, Any]

ESRCH = -3
ENOMEM = -12

SWAP_CLUSTER_MAX = 4  # pages one direct-reclaim LRU pass scans
SLEPT = 2  # try_to_swap_out dropped the vmlist lock (->swapout slept): the scan must stop

bugs.register(
    "swapout_vma_after_unlock",
    "000_41ea98ac7be5309c.txt",
    "kswapd's try_to_swap_out drops the vmlist lock and passes the vma to the driver's "
    "->swapout(), which sleeps; do_munmap frees the vma meanwhile",
    "use_after_free",
    mail_tasks=2,
    mail_preemptions=1,
)
bugs.register(
    "swapout_holds_vmlist_lock",
    "000_41ea98ac7be5309c.txt",
    "->swapout() is called holding the vmlist lock (the mm semaphore) and sleeps on the "
    "driver lock; a task holding the driver lock reclaims from the same mm: ABBA deadlock",
    "lock_order_inversion",
    mail_tasks=2,
    mail_preemptions=1,
    also=("deadlock",),  # the ABBA itself, when the schedule closes the cycle before lockdep
)


# --------------------------------------------------------------------------- task flags
def _noio(k: Kernel) -> set[int]:
    """Task ids running with PF_MEMALLOC_NOIO (memalloc_noio_save): no I/O from reclaim."""
    return k.memalloc_noio


def gfp_io(k: Kernel) -> bool:
    """__GFP_IO for an allocation by the running task (cleared by memalloc_noio_save)."""
    cur = k.sched.current
    return cur is None or cur.tid not in _noio(k)


def _rss(mm: MmStruct) -> int:
    return sum(1 for pte in mm.pgd.values() if isinstance(pte, PresentPte))


# --------------------------------------------------------------------------- the driver
class DriverFile:
    """The driver's per-mm open file (``vma->vm_file``): what ->swapout needs, refcounted."""
    __slots__ = ("count", "drv", "mm_id")

    def __init__(self, drv: Driver, mm_id: int) -> None:
        self.drv = drv
        self.mm_id = mm_id
        self.count = 0


def driver_store(drv: Driver) -> dict[tuple[int, int], int]:
    """What the driver's ->swapout wrote: (mm id, page offset) -> token (the device's log)."""
    return drv.store


def get_file(k: Kernel, vma: VmAreaStruct) -> DriverFile:
    """get_file(vma->vm_file) (2.3.23 try_to_swap_out): pin what ->swapout will need."""
    drv = k.drivers[vma.vm_ops or "drv"]
    f = DriverFile(drv, vma.vm_mm.id)
    f.count += 1
    return f


def fput(f: DriverFile) -> None:
    f.count -= 1


def drv_swapout(k: Kernel, f: DriverFile, page: Page, offset: int) -> Gen:
    """The driver's ->swapout(page, file) (2.3.23+ interface): take the driver's own sleeping
    lock, write the page to the device at ``offset`` of ``file``."""
    drv = f.drv
    yield k.sched.mutex_lock(drv.lock)
    yield "drv_swapout:write"
    driver_store(drv)[(f.mm_id, offset)] = page.data
    k.sched.mutex_unlock(drv.lock)
    return 0


def drv_swapout_vma(k: Kernel, drv: Driver, vma: VmAreaStruct, page: Page) -> Gen:
    """The 2.3.21 ->swapout(vma, page) interface: the driver finds its file and offset through
    the vma *after* sleeping on its lock (seed 000: the vma may be gone by then)."""
    yield k.sched.mutex_lock(drv.lock)
    yield "drv_swapout:write"
    key = (vma.vm_mm.id, page.index)  # vma->vm_file, vma->vm_pgoff: use after free if freed
    driver_store(drv)[key] = page.data
    k.sched.mutex_unlock(drv.lock)
    return 0


@operation("mmap_driver", mm="mm", addr="addr", npages="npages")
def sys_mmap_driver(k: Kernel, mm: int, addr: int, npages: int) -> Gen:
    """mmap() of the seed-000 driver: a private mapping with vm_ops whose ->swapout sleeps.

    The driver hands its buffer out at mmap time: the range is populated (MAP_POPULATE's
    make_pages_present, after mmap_sem is dropped), each page a zeroed anonymous page."""
    m = get_mm(k, mm)
    if m is None:
        return ESRCH
    ret = yield from vm_mmap(k, m, addr, npages, VM_WRITE, "drv")
    if ret == addr:
        for a in range(addr, addr + npages):
            if (yield from do_page_fault(k, m, a, False)) < 0:
                break
    yield from mmput(k, m)
    return ret


@operation("driver_ioctl", mm="mm")
def sys_driver_ioctl(k: Kernel, mm: int) -> Gen:
    """An ioctl of the seed-000 driver: holding the driver lock, allocate a DMA buffer.

    Simplification: the buffer is large enough that the allocation always goes through direct
    reclaim (2.4 __alloc_pages -> try_to_free_pages below the zone watermark), with I/O to
    drivers disabled (memalloc_noio_save: a driver holding its lock must not be re-entered)."""
    m = get_mm(k, mm)
    if m is None:
        return ESRCH
    drv = k.drivers["drv"]
    yield k.sched.mutex_lock(drv.lock)
    cur = k.sched.current
    assert cur is not None
    tid = cur.tid
    noio = _noio(k)
    was = tid in noio
    noio.add(tid)
    yield from try_to_free_pages(k)
    page = yield from alloc_page(k)
    ret = 0
    if page is None:
        ret = ENOMEM
    else:
        yield "driver_ioctl:dma"
        put_page(k, page)
    if not was:
        noio.discard(tid)
    k.sched.mutex_unlock(drv.lock)
    yield from mmput(k, m)
    return ret


# --------------------------------------------------------------------------- 2.4 virtual scan
def try_to_swap_out(k: Kernel, mm: MmStruct, vma: VmAreaStruct, addr: int, io: bool) -> Gen:
    """try_to_swap_out() (2.4.10+; the driver branch 2.3.23).  Called with the vmlist lock
    (page_table_lock) held.  Returns 1 if the pte was unmapped, 0 if not, SLEPT if the lock was
    dropped for a driver's ->swapout (the caller must stop: the vma may be gone).

    Order: the page gets its swap entry and swap-cache slot first, then the pte is replaced in
    one step that rechecks VM_LOCKED|VM_RESERVED.  (2.4 cleared the pte first; its mlock changed
    vm_flags under the vmlist lock.  The model's mlock is 2.6's, under mmap_sem alone, so the
    flags can change while this path waits for swap_lock or tree_lock: the recheck is 2.6
    try_to_unmap_one's, under the pte lock.)"""
    pte = mm.pgd.get(addr)
    if not isinstance(pte, PresentPte):
        return 0
    page = k.pages[pte.pfn]
    if PG_reserved in page.flags:
        return 0
    if not page_evictable(page):
        # 2.4 needed no page test: its mlock_fixup_* changed vm_flags and the vma list under
        # the vmlist lock this scan holds.  The model's mlock is 2.6's (mmap_sem alone), so a
        # vma merge in flight (vma_adjust writes vm_end before mlock_fixup sets VM_LOCKED) can
        # show a page of a returned mlock inside a vma without VM_LOCKED: ask the page, as
        # 2.6.28+ reclaim does (shrink_page_list: !page_evictable -> cull_mlocked).
        return 0
    driver = vma.vm_ops is not None
    if driver and not io:
        return 0  # 2.3: if (!(gfp_mask & __GFP_IO)) goto out_failed: no ->swapout
    if page.mapping is None and PG_swapcache not in page.flags:
        return 0  # not an anonymous page: nothing to swap it to
    if not k.sched.trylock(page.lock):
        return 0
    new_entry = 0
    if PG_swapcache not in page.flags:
        while True:
            e = yield from get_swap_page(k)
            if not e:
                k.sched.unlock_page(page.lock)  # no swap space left
                return 0
            yield "try_to_swap_out:after_get_swap_page"
            err = yield from add_to_swap_cache(k, page, e)
            if err == 0:
                new_entry = e
                break
            # Raced with a "speculative" read_swap_cache_async.
            swap_free(k, e)
            inflight_dec(k, e)
    e = page.private
    assert e is not None
    if vma.vm_flags & (VM_LOCKED | VM_RESERVED) or mm.pgd.get(addr) is not pte:
        # mlocked meanwhile (or the pte changed): leave it mapped, in the swap cache.
        if new_entry:
            swap_free(k, new_entry)
            inflight_dec(k, new_entry)
        k.sched.unlock_page(page.lock)
        return 0
    # "From this point on ... nuke this pte" and install the swap entry.
    k.pte_clear(mm, addr)
    note_reclaim_unmap(k, mm, addr)
    if new_entry:
        inflight_dec(k, e)  # get_swap_page's count becomes the pte's
    else:
        swap_duplicate(k, e)
    k.set_pte_at(mm, addr, SwapPte(e))
    mm.rss -= 1
    page_remove_rmap(k, page)
    k.sched.unlock_page(page.lock)
    if driver:
        return (yield from _swapout_driver(k, mm, vma, addr, page))
    put_page(k, page)  # the pte's reference
    return 1


def _swapout_driver(k: Kernel, mm: MmStruct, vma: VmAreaStruct, addr: int, page: Page) -> Gen:
    """The 2.3.x ``vma->vm_ops->swapout`` branch (page_table_lock held; returns SLEPT with it
    dropped; holds the pte's page reference until ->swapout returns)."""
    drv = k.drivers[vma.vm_ops or "drv"]
    if k.bug("swapout_holds_vmlist_lock"):
        # The page tables are unlocked, the vmlist semaphore is kept across ->swapout.
        k.sched.spin_unlock(mm.page_table_lock)
        yield from drv_swapout_vma(k, drv, vma, page)
    elif k.bug("swapout_vma_after_unlock"):
        k.sched.spin_unlock(mm.page_table_lock)  # vmlist_access_unlock(vma->vm_mm)
        yield from drv_swapout_vma(k, drv, vma, page)
    else:
        f = get_file(k, vma)
        offset = linear_page_index(vma, addr)
        k.sched.spin_unlock(mm.page_table_lock)
        yield from drv_swapout(k, f, page, offset)
        fput(f)
    put_page(k, page)
    return SLEPT


def find_vma_stepwise(k: Kernel, mm: MmStruct, addr: int) -> Gen:
    """find_vma() with an interleaving point between the walk and its ``mmap_cache`` store,
    for a reader that holds page_table_lock alone (2.4 swap_out_mm).

    Readers under mmap_sem need no such point: every vma-list writer holds mmap_sem for write.
    Under page_table_lock alone, a writer that skips it (seed 004's detach) can unlink and
    kill the cache in between, and the store then caches a detached vma that do_munmap
    frees: the next find_vma of the mm reads it."""
    vma = mm.cached_vma(addr)
    if vma is None:
        vma = mm.walk_vmas(addr)
        if vma is not None:
            yield "find_vma:mmap_cache"
            mm.mmap_cache = vma
    return vma


def swap_out_mm(k: Kernel, mm: MmStruct, count: int, io: bool) -> Gen:
    """swap_out_mm() / swap_out_vma() (2.4): scan ``mm`` from ``mm->swap_address`` under the
    vmlist lock until ``count`` ptes were unmapped; returns how many were."""
    holds_sem = k.bug("swapout_holds_vmlist_lock")
    if holds_sem:
        yield k.sched.down_write(mm.mmap_sem)  # Manfred: the mm semaphore is the vmlist lock
    yield k.sched.spin_lock(mm.page_table_lock)
    done = 0
    addr = mm.swap_address
    vma = yield from find_vma_stepwise(k, mm, addr)
    while vma is not None:
        if addr < vma.vm_start:
            addr = vma.vm_start
        if not vma.vm_flags & (VM_LOCKED | VM_RESERVED):
            while addr < vma.vm_end:
                mm.swap_address = addr + 1
                r = yield from try_to_swap_out(k, mm, vma, addr, io)
                if r == SLEPT:
                    if holds_sem:
                        k.sched.up_write(mm.mmap_sem)
                    return done + 1
                done += r
                if done >= count:
                    k.sched.spin_unlock(mm.page_table_lock)
                    if holds_sem:
                        k.sched.up_write(mm.mmap_sem)
                    return done
                addr += 1
        yield "swap_out_mm:next_vma"
        vma = vma.vm_next
        if vma is not None:
            addr = vma.vm_start
    mm.swap_address = 0  # reset to 0 when we reach the end of the address space
    k.sched.spin_unlock(mm.page_table_lock)
    if holds_sem:
        k.sched.up_write(mm.mmap_sem)
    return done


def swap_out(k: Kernel, count: int, io: bool = True) -> Gen:
    """swap_out() (2.4): pick the mm with the most resident pages, pin it, scan it."""
    yield k.sched.spin_lock(k.mmlist_lock)
    best: MmStruct | None = None
    best_rss = 0
    for _, mm in sorted(k.mms.items()):
        if mm.dead or mm.users <= 0:
            continue
        if k.bug("swapout_holds_vmlist_lock") and k.sched.holds(mm.mmap_sem):
            continue  # our own mm, whose semaphore we hold: the swapper never re-enters it
        rss = _rss(mm)
        if rss > best_rss:
            best, best_rss = mm, rss
    got = best is not None and mmget_not_zero(k, best)  # "make sure it doesn't disappear"
    k.sched.spin_unlock(k.mmlist_lock)
    if not got or best is None:
        return 0
    done = yield from swap_out_mm(k, best, count, io)
    yield from mmput(k, best)
    return done


@operation("swap_out", count="count")
def sys_swap_out(k: Kernel, count: int) -> Gen:
    """kswapd's 2.4 virtual scan: unmap up to ``count`` pages of the biggest mm into swap."""
    return (yield from swap_out(k, max(1, count)))


# --------------------------------------------------------------------------- 2.6 LRU scan
def _isolate_one(k: Kernel) -> Page | None:
    """The oldest inactive page, isolated (lru_lock held); refill from the active list first
    (shrink_active_list: the anon pages age to the inactive list) when it is empty."""
    inactive = k.lru["inactive"]
    if not inactive and k.lru["active"]:
        page = k.lru["active"][0]
        del_page_from_lru(k, page)
        page.flags.discard(PG_active)
        add_page_to_lru_list(k, page, LRU_INACTIVE)
    for page in list(inactive):
        if isolate_lru_page(k, page):
            return page
    return None


def shrink_page(k: Kernel, page: Page, may_unmap: bool) -> Gen:
    """shrink_page_list() for one isolated page (2.6.36); returns 1 if it was freed."""
    if not k.sched.trylock(page.lock):
        putback_lru_page(k, page)  # keep
        return 0
    if not page_evictable(page):
        # cull_mlocked
        if PG_swapcache in page.flags:
            try_to_free_swap(k, page)
        k.sched.unlock_page(page.lock)
        putback_lru_page(k, page)
        return 0
    if page.mapcount > 0 and not may_unmap:
        return _keep_locked(k, page)
    io = gfp_io(k)
    if page.mapping is not None and PG_swapcache not in page.flags and page.mapcount > 0:
        if not io:
            return _keep_locked(k, page)
        if not (yield from add_to_swap(k, page)):
            return _activate_locked(k, page)
    if page.mapcount > 0:
        r = yield from try_to_unmap(k, page, False)
        if r == SWAP_FAIL:
            return _activate_locked(k, page)
        if r == SWAP_AGAIN:
            return _keep_locked(k, page)
    if PG_swapcache in page.flags:
        if not io:
            return _keep_locked(k, page)
        # pageout(): synchronous swap_writepage (the page stays locked, as for a ramdisk).
        yield "pageout:swap_writepage"
        swap_writepage(k, page)
        # __remove_mapping(): page_freeze_refs(page, 2): our isolation reference + the cache's.
        if page.count != 2:
            return _keep_locked(k, page)
        e = page.private
        assert e is not None
        __delete_from_swap_cache(k, page)
        swap_free(k, e)
        page.count -= 1  # the cache's reference, frozen away with it
        k.touch_page(page)
    elif page.mapcount > 0 or page.count != 1:
        return _keep_locked(k, page)
    k.sched.unlock_page(page.lock)
    put_page(k, page)  # free_it: the last reference
    return 1


def _keep_locked(k: Kernel, page: Page) -> int:
    k.sched.unlock_page(page.lock)
    putback_lru_page(k, page)
    return 0


def _activate_locked(k: Kernel, page: Page) -> int:
    """activate_locked: not a candidate for swapping, so reclaim swap space (vm_swap_full)."""
    if PG_swapcache in page.flags and vm_swap_full(k):
        try_to_free_swap(k, page)
    page.flags.add(PG_active)
    k.touch_page(page)
    k.sched.unlock_page(page.lock)
    putback_lru_page(k, page)
    return 0


def shrink_list(k: Kernel, nr_to_scan: int, may_unmap: bool) -> Gen:
    """shrink_inactive_list() (2.6.36; with ``may_unmap=False`` the 2.4 shrink_cache, which
    cannot unmap): isolate and shrink up to ``nr_to_scan`` pages; returns how many were freed."""
    freed = 0
    for _ in range(nr_to_scan):
        yield k.sched.spin_lock(k.lru_lock)
        page = _isolate_one(k)
        k.sched.spin_unlock(k.lru_lock)
        if page is None:
            break
        freed += yield from shrink_page(k, page, may_unmap)
    return freed


@operation("kswapd", count="count")
def sys_kswapd(k: Kernel, count: int) -> Gen:
    """kswapd's 2.6 pass: shrink up to ``count`` pages of the LRU (rmap unmapping)."""
    return (yield from shrink_list(k, max(1, count), True))


# --------------------------------------------------------------------------- direct reclaim
def try_to_free_pages(k: Kernel) -> Gen:
    """try_to_free_pages(): direct reclaim for an allocation that found no free frame.

    2.4 order: an LRU pass (shrink_cache) frees what is already unmapped; then the virtual scan
    (swap_out) unmaps a page of the biggest mm into swap, and the LRU pass frees it; if that
    did nothing, the 2.6 rmap pass.  Returns the number of frames freed."""
    io = gfp_io(k)
    freed = yield from shrink_list(k, SWAP_CLUSTER_MAX, False)
    if freed:
        return freed
    yield from swap_out(k, 1, io)
    freed = yield from shrink_list(k, SWAP_CLUSTER_MAX, False)
    if freed:
        return freed
    return (yield from shrink_list(k, SWAP_CLUSTER_MAX, True))
