"""mlock / munlock (mm/mlock.c, 2.6.28+ unevictable LRU as of 2.6.36).

``mlock`` sets VM_LOCKED on the range's vmas (splitting and merging them like mprotect) under
mmap_sem for write, then, under mmap_sem for read, faults every page in (a write fault for a
writable private mapping, so COW is broken now and not later) and mlocks it: PG_mlocked, moved
to the unevictable list.  Pages faulted into a VM_LOCKED vma later are mlocked at fault time
(page_add_new_anon_rmap).  ``munlock`` clears VM_LOCKED first, then for each page clears
PG_mlocked and asks rmap whether another VM_LOCKED vma still maps it (try_to_munlock) before
putting it back on an evictable list.  munmap and exit munlock before unmapping.

Reclaim never sees an mlocked page: it is on the unevictable list; a page that is not (yet)
PG_mlocked in a VM_LOCKED vma is refused by try_to_unmap and mlocked there ("out_mlock").
VM_SPECIAL (VM_RESERVED) vmas are left alone by mlock, as mlock_fixup does.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from vmfuzz._locks import WRITE
from vmfuzz.kernel.fork import get_mm, mmput
from vmfuzz.kernel.mm_types import (
    VM_LOCKED,
    VM_RESERVED,
    VM_WRITE,
    MmStruct,
    Page,
    PG_mlocked,
    PresentPte,
    VmAreaStruct,
)
from vmfuzz.kernel.mmap import vma_flags_writer
from vmfuzz.kernel.ops import operation
from vmfuzz.kernel.page_alloc import (
    get_page_unless_zero,
    isolate_lru_page,
    put_page,
    putback_lru_page,
)

if TYPE_CHECKING:
    from vmfuzz.kernel.kernel import Kernel

Gen = Generator[Any, None, Any]

ESRCH = -3
ENOMEM = -12
EINVAL = -22


# --------------------------------------------------------------------------- pages
def mlock_vma_page(k: Kernel, page: Page) -> None:
    """mlock_vma_page(): the (locked) page is mapped by a VM_LOCKED vma: set PG_mlocked and, if
    it is on an LRU list, move it to the unevictable one (isolate + putback)."""
    k.sched.assert_held(page.lock, why="mlock_vma_page: BUG_ON(!PageLocked(page))")
    if PG_mlocked in page.flags:
        return
    page.flags.add(PG_mlocked)
    k.touch_page(page)
    k.count("mlock_page")
    if isolate_lru_page(k, page):
        putback_lru_page(k, page)


def munlock_vma_page(k: Kernel, page: Page) -> Gen:
    """munlock_vma_page() (2.6.36): clear PG_mlocked on the (locked) page; unless another
    VM_LOCKED vma maps it (try_to_munlock mlocks it again), it goes back to an evictable list.
    A page someone else has isolated is left to that isolator's putback."""
    from vmfuzz.kernel.rmap import try_to_munlock

    k.sched.assert_held(page.lock, why="munlock_vma_page: BUG_ON(!PageLocked(page))")
    if PG_mlocked not in page.flags:
        return
    page.flags.discard(PG_mlocked)
    k.touch_page(page)
    if isolate_lru_page(k, page):
        yield from try_to_munlock(k, page)
        putback_lru_page(k, page)


def clear_page_mlock(k: Kernel, page: Page) -> None:
    """clear_page_mlock() (2.6.36, mm/internal.h and __clear_page_mlock() in mm/mlock.c): the
    (locked) page loses PG_mlocked and, unless someone else has it isolated, goes back to the
    list putback picks, an evictable one.  No try_to_munlock: a VM_LOCKED vma that still maps
    it mlocks it again when reclaim meets it (lazy culling)."""
    if PG_mlocked not in page.flags:
        return
    page.flags.discard(PG_mlocked)
    k.touch_page(page)
    if page.mapping is None:  # truncated
        return
    if isolate_lru_page(k, page):
        putback_lru_page(k, page)


def munlock_vma_pages_range(k: Kernel, vma: VmAreaStruct, start: int, end: int) -> Gen:
    """munlock_vma_pages_range(): clear VM_LOCKED, then munlock each present page of the range
    (taking a reference and the page lock, as follow_page(FOLL_GET) + lock_page)."""
    mm = vma.vm_mm
    vma_flags_writer(k, mm)
    vma.vm_flags &= ~VM_LOCKED
    k.touch_mm(mm)
    for addr in range(start, end):
        pte = mm.pgd.get(addr)
        if not isinstance(pte, PresentPte):
            continue
        page = k.pages[pte.pfn]
        if not get_page_unless_zero(k, page):
            continue
        yield k.sched.lock_page(page.lock)
        if page.mapping is not None:
            yield from munlock_vma_page(k, page)
        k.sched.unlock_page(page.lock)
        k.touch_page(page)
        put_page(k, page)


def munlock_vma_pages_all(k: Kernel, vma: VmAreaStruct) -> Gen:
    """munlock_vma_pages_all(): before munmap / exit unmaps a VM_LOCKED vma."""
    yield from munlock_vma_pages_range(k, vma, vma.vm_start, vma.vm_end)


# --------------------------------------------------------------------------- vmas
def mlock_fixup(
    k: Kernel,
    mm: MmStruct,
    vma: VmAreaStruct,
    prev: VmAreaStruct | None,
    start: int,
    end: int,
    newflags: int,
) -> Gen:
    """mlock_fixup() (2.6.36): like mprotect_fixup for VM_LOCKED; munlock also munlocks the
    range's pages (the mlock half faults and mlocks them after mmap_sem is downgraded).
    Returns (error, prev)."""
    from vmfuzz.kernel.mmap import merge_or_split

    if newflags == vma.vm_flags or vma.vm_flags & VM_RESERVED:
        return 0, vma
    err, vma = yield from merge_or_split(k, mm, vma, prev, start, end, newflags)
    if err:
        return err, vma
    if newflags & VM_LOCKED:
        vma_flags_writer(k, mm)
        vma.vm_flags = newflags
        k.touch_mm(mm)
    else:
        yield from munlock_vma_pages_range(k, vma, start, end)
    return 0, vma


def do_mlock(k: Kernel, mm: MmStruct, start: int, end: int, on: bool) -> Gen:
    """do_mlock(): set or clear VM_LOCKED over ``[start, end)``; -ENOMEM on a hole."""
    from vmfuzz.kernel.mmap import find_vma_prev

    k.sched.assert_held(mm.mmap_sem, WRITE, why="do_mlock: caller holds mmap_sem")
    vma, prev = find_vma_prev(mm, start)
    if vma is None or vma.vm_start > start:
        return ENOMEM
    if start > vma.vm_start:
        prev = vma
    nstart = start
    while True:
        newflags = vma.vm_flags | VM_LOCKED if on else vma.vm_flags & ~VM_LOCKED
        tmp = min(vma.vm_end, end)
        err, prev = yield from mlock_fixup(k, mm, vma, prev, nstart, tmp, newflags)
        if err:
            return err
        assert prev is not None
        nstart = max(tmp, prev.vm_end)
        if nstart >= end:
            return 0
        nxt = prev.vm_next
        if nxt is None or nxt.vm_start != nstart:
            return ENOMEM
        vma = nxt


def do_mlock_pages(k: Kernel, mm: MmStruct, start: int, end: int) -> Gen:
    """do_mlock_pages() -> __mlock_vma_pages_range() (2.6.36): under mmap_sem for read, fault
    in each page of the VM_LOCKED vmas in the range (FOLL_WRITE for writable private vmas) and
    mlock it (trylock_page: if the page lock is busy the page is left to vmscan's out_mlock)."""
    from vmfuzz.kernel.memory import handle_mm_fault

    yield k.sched.down_read(mm.mmap_sem)
    ret = 0
    for addr in range(start, end):
        vma = mm.find_vma(addr)
        if vma is None or vma.vm_start > addr:
            continue
        if not vma.vm_flags & VM_LOCKED or vma.vm_flags & VM_RESERVED:
            continue
        write = bool(vma.vm_flags & VM_WRITE)
        while True:
            pte = mm.pgd.get(addr)
            if isinstance(pte, PresentPte) and (pte.write or not write):
                break
            ret = yield from handle_mm_fault(k, mm, vma, addr, write)
            if ret < 0:
                break
        if ret < 0:
            break
        assert isinstance(pte, PresentPte)  # the fault loop ends on a present pte or an error
        page = k.pages[pte.pfn]
        if k.sched.trylock(page.lock):
            mlock_vma_page(k, page)
            k.sched.unlock_page(page.lock)
            k.touch_page(page)
        yield "__mlock_vma_pages_range:cond_resched"
    k.sched.up_read(mm.mmap_sem)
    return ret


def _mlocking(k: Kernel, mm: MmStruct, delta: int) -> None:
    """Keep the hook ``k.mlocking`` (ids of mms with an mlock() in progress: VM_LOCKED may be
    set while the populate has not yet faulted the range back in), counting nested calls in
    ``k.mlock_nesting``."""
    counts = k.mlock_nesting
    counts[mm.id] = counts.get(mm.id, 0) + delta
    if counts[mm.id] <= 0:
        del counts[mm.id]
    k.mlocking = set(counts)


def _sys_mlock(k: Kernel, mm_id: int, addr: int, npages: int, on: bool) -> Gen:
    mm = get_mm(k, mm_id)
    if mm is None:
        return ESRCH
    if npages < 1 or addr < 0 or addr + npages > k.config.pages_per_mm:
        yield from mmput(k, mm)
        return EINVAL
    end = addr + npages
    if on:
        _mlocking(k, mm, 1)
    yield k.sched.down_write(mm.mmap_sem, at="sys_mlock" if on else "sys_munlock")
    ret = yield from do_mlock(k, mm, addr, end, on)
    k.sched.up_write(mm.mmap_sem)
    if on:
        if ret == 0:
            ret = yield from do_mlock_pages(k, mm, addr, end)
        _mlocking(k, mm, -1)
    yield from mmput(k, mm)
    return ret


@operation("mlock", mm="mm", addr="addr", npages="npages")
def sys_mlock(k: Kernel, mm: int, addr: int, npages: int) -> Gen:
    """mlock(addr, npages): lock the range's pages in memory."""
    return (yield from _sys_mlock(k, mm, addr, npages, True))


@operation("munlock", mm="mm", addr="addr", npages="npages")
def sys_munlock(k: Kernel, mm: int, addr: int, npages: int) -> Gen:
    """munlock(addr, npages)."""
    return (yield from _sys_mlock(k, mm, addr, npages, False))
