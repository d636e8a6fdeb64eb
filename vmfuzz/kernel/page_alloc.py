"""The frame allocator and the zone LRU lists (mm/page_alloc.c, mm/swap.c, mm/vmscan.c helpers).

Follows 2.6.36: pages are handed out lowest pfn first (a small pool, so frames are reused and
races on a recycled frame show up), a failed allocation enters direct reclaim once
(``__alloc_pages_direct_reclaim`` -> ``try_to_free_pages``) and then fails (the caller returns
-ENOMEM).  Below the zone's min watermark (``k.pages_min``, the "shortage" world feature) an
allocation reclaims first even though a frame is free, in the allocating task: 2.4
``__alloc_pages`` falls below ``pages_min`` into ``balance_classzone`` -> ``try_to_free_pages``,
2.6.36 fails ``ALLOC_WMARK_MIN`` into ``__alloc_pages_direct_reclaim`` (seed 000: "Process A runs
short of memory, decides to swap_out its own mm"; seed 001: "Due to some shortage, enters
try_to_free_pages").  The final ``put_page`` frees a page: as ``__page_cache_release`` it
first takes the page off its LRU list, and as ``free_hot_cold_page`` it resets an anon page's
``mapping``.  A page freed while still mapped or in the swap cache is *not* repaired here:
that is the kernel's ``bad_page()`` and the invariants report it.

LRU helpers follow the 2.6.28+ split LRU (active, inactive, unevictable).  They are plain
functions and do not take ``zone->lru_lock`` themselves: a caller that must hold it (as the
kernel's callers do) takes ``k.lru_lock`` around the call; a call without it is atomic in the
model (no yield inside), which is what the kernel's pagevec batching amounts to.

Reference counting as in the kernel: every present pte holds a page reference (and a mapcount),
the swap cache holds one, ``isolate_lru_page`` takes one and ``putback_lru_page`` drops it.  The
LRU lists themselves hold none.
"""

from __future__ import annotations

import bisect
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from vmfuzz.kernel.mm_types import (
    VM_LOCKED,
    VM_RESERVED,
    Page,
    PG_active,
    PG_lru,
    PG_mlocked,
    PG_unevictable,
    VmAreaStruct,
)
from vmfuzz.violation import Violation

if TYPE_CHECKING:
    from vmfuzz.kernel.kernel import Kernel

Gen = Generator[Any, None, Any]

LRU_ACTIVE = "active"
LRU_INACTIVE = "inactive"
LRU_UNEVICTABLE = "unevictable"


def _always() -> bool:
    return True


# --------------------------------------------------------------------------- allocation
def alloc_page(k: Kernel, reclaim: bool = True) -> Gen:
    """alloc_page(GFP_HIGHUSER_MOVABLE) (2.6.36 ``__alloc_pages_nodemask``): the lowest free pfn.

    Yields once at entry: ``might_sleep()`` (a caller holding a spinlock is a sleep-in-atomic
    violation, exactly as CONFIG_DEBUG_SPINLOCK_SLEEP reports it) and ``cond_resched()``, a real
    point where other CPUs run.  At or below the min watermark (``k.pages_min``) it first calls
    direct reclaim (``vmscan.try_to_free_pages``) in this task; with the free list empty it
    calls it once and retries; ``None`` means out of memory.  ``reclaim`` False skips the
    watermark's reclaim (compaction_alloc takes the frames compaction freed; its empty-list
    fallback is kept as it was).  Reclaim is not re-entered from reclaim (PF_MEMALLOC).  The
    page comes back with count 1, no flags, no mapping and zeroed data
    (``alloc_zeroed_user_highpage``).
    """
    yield k.sched.wait_event(_always, "might_sleep")
    if reclaim and k.pages_min and len(k.free_list) <= k.pages_min:
        yield from _direct_reclaim(k)
    for attempt in range(2):
        if k.free_list:
            # zone->lock protects the free lists; taking a frame is atomic (no yield inside).
            pfn = k.free_list.pop(0)
            page = k.pages[pfn]
            page.count = 1
            page.mapcount = 0
            page.flags.clear()
            page.mapping = None
            page.index = 0
            page.private = None
            page.data = 0
            k.touch_page(page)
            k.count("pgalloc")
            return page
        if attempt == 0:
            from vmfuzz.kernel.vmscan import try_to_free_pages  # reclaim is above the allocator

            yield from try_to_free_pages(k)
    k.count("pgalloc_fail")
    # The failure report's free pages (warn_alloc_failed -> show_mem "free:"), summed over
    # every failure: ``alloc_fails_with_free_frames`` expects it to stay 0.
    k.stats["pgalloc_fail_free"] = k.stats.get("pgalloc_fail_free", 0) + len(k.free_list)
    return None


def lock_new_page(k: Kernel, page: Page) -> None:
    """__set_page_locked() on a page fresh from the allocator.  One that comes locked was
    freed or reused while still locked: the allocator's check_new_page() reports it
    (PAGE_FLAGS_CHECK_AT_PREP has PG_locked), a bad_page, not a crash of the model."""
    if not k.sched.trylock(page.lock):
        raise Violation("bad_page", f"{page!r} is locked as it comes from the allocator: "
                        "check_new_page(), PG_locked in PAGE_FLAGS_CHECK_AT_PREP",
                        pfn=page.pfn)


def _direct_reclaim(k: Kernel) -> Gen:
    """The watermark's direct reclaim: ``try_to_free_pages`` with PF_MEMALLOC set on the
    task, so that an allocation inside reclaim does not reclaim again."""
    from vmfuzz.kernel.vmscan import try_to_free_pages  # reclaim sits above the allocator

    cur = k.sched.current
    tid = -1 if cur is None else cur.tid
    if tid in k.memalloc:
        return
    k.count("allocstall")
    k.memalloc.add(tid)
    try:
        yield from try_to_free_pages(k)
    finally:
        k.memalloc.discard(tid)


def get_page(k: Kernel, page: Page) -> None:
    """get_page(): take a reference (the page must be in use)."""
    if page.count <= 0:
        raise Violation(
            "bad_page",
            f"get_page on free {page!r} (count {page.count})",
            pfn=page.pfn,
        )
    page.count += 1
    k.touch_page(page)


def get_page_unless_zero(k: Kernel, page: Page) -> bool:
    """get_page_unless_zero(): take a reference unless the page is being freed."""
    if page.count <= 0:
        return False
    page.count += 1
    k.touch_page(page)
    return True


def put_page(k: Kernel, page: Page) -> None:
    """put_page(): drop a reference; the last one frees the page.

    Freeing follows ``__page_cache_release`` (off the LRU under lru_lock) and
    ``free_hot_cold_page`` (anon ``mapping`` reset, PG_mlocked cleared as ``free_page_mlock``).
    A count going below zero is the kernel's ``VM_BUG_ON(page_count(page) == 0)``.
    """
    if page.count <= 0:
        raise Violation(
            "bad_page",
            f"put_page on free {page!r} (count {page.count})",
            pfn=page.pfn,
        )
    page.count -= 1
    k.touch_page(page)
    if page.count == 0:
        __free_page(k, page)


def __free_page(k: Kernel, page: Page) -> None:
    if PG_lru in page.flags:
        del_page_from_lru(k, page)
    page.flags.discard(PG_active)
    page.flags.discard(PG_unevictable)
    page.flags.discard(PG_mlocked)
    page.mapping = None
    page.index = 0
    bisect.insort(k.free_list, page.pfn)
    k.count("pgfree")


# --------------------------------------------------------------------------- LRU lists
def _lru_of(page: Page) -> str:
    """page_lru(): which list a page on the LRU sits on, from its flags."""
    if PG_unevictable in page.flags:
        return LRU_UNEVICTABLE
    if PG_active in page.flags:
        return LRU_ACTIVE
    return LRU_INACTIVE


def _remove_from(k: Kernel, page: Page) -> None:
    lst = k.lru[_lru_of(page)]
    for i, p in enumerate(lst):
        if p is page:
            del lst[i]
            return
    for name in (LRU_ACTIVE, LRU_INACTIVE, LRU_UNEVICTABLE):  # flags and list disagree
        lst = k.lru[name]
        for i, p in enumerate(lst):
            if p is page:
                del lst[i]
                return
    raise Violation("bad_page", f"{page!r} has PG_lru but is on no LRU list", pfn=page.pfn)


def add_page_to_lru_list(k: Kernel, page: Page, lru: str) -> None:
    """add_page_to_lru_list(): put a page that is on no list onto ``lru`` (sets PG_lru)."""
    if PG_lru in page.flags:
        raise Violation("bad_page", f"{page!r} added to the LRU twice", pfn=page.pfn)
    page.flags.discard(PG_active)
    page.flags.discard(PG_unevictable)
    if lru == LRU_ACTIVE:
        page.flags.add(PG_active)
    elif lru == LRU_UNEVICTABLE:
        page.flags.add(PG_unevictable)
    page.flags.add(PG_lru)
    k.lru[lru].append(page)
    k.touch_page(page)


def lru_cache_add(k: Kernel, page: Page) -> None:
    """lru_cache_add_anon(): a page the kernel just brought in goes to the inactive list."""
    add_page_to_lru_list(k, page, LRU_INACTIVE)


def lru_cache_add_active_or_unevictable(k: Kernel, page: Page, vma: VmAreaStruct) -> None:
    """The LRU half of 2.6.36 page_add_new_anon_rmap(): a new anon page goes to the active list,
    or, faulted into a VM_LOCKED vma (``is_mlocked_vma``), is marked PG_mlocked and goes to the
    unevictable list.  VM_SPECIAL vmas (here VM_RESERVED) never mlock their pages."""
    if vma.vm_flags & VM_LOCKED and not vma.vm_flags & VM_RESERVED:
        page.flags.add(PG_mlocked)
        add_page_to_lru_list(k, page, LRU_UNEVICTABLE)
    else:
        add_page_to_lru_list(k, page, LRU_ACTIVE)


def del_page_from_lru(k: Kernel, page: Page) -> None:
    """del_page_from_lru(): take a page off its list, clearing PG_lru, PG_active, PG_unevictable."""
    _remove_from(k, page)
    page.flags.discard(PG_lru)
    page.flags.discard(PG_active)
    page.flags.discard(PG_unevictable)
    k.touch_page(page)


def isolate_lru_page(k: Kernel, page: Page) -> bool:
    """isolate_lru_page() (2.6.36): take a page off the LRU for private use.

    Succeeds only if PG_lru is set and the page is not being freed; then clears PG_lru, removes
    the page from its list (PG_active / PG_unevictable are kept, as ``del_page_from_lru_list``
    keeps them, so putback knows where it came from) and takes a reference that
    :func:`putback_lru_page` drops.
    """
    if PG_lru not in page.flags or page.count <= 0:
        return False
    _remove_from(k, page)
    page.flags.discard(PG_lru)
    page.count += 1
    k.touch_page(page)
    return True


def page_evictable(page: Page) -> bool:
    """page_evictable() without a vma: an mlocked page is not."""
    return PG_mlocked not in page.flags


def putback_lru_page(k: Kernel, page: Page) -> None:
    """putback_lru_page() (2.6.36): return an isolated page to the right list and drop the
    isolation reference.  Evictable pages go back to the active or inactive list (by PG_active),
    mlocked ones to the unevictable list.  If that was the last reference the page is freed
    (and, as in the kernel, taken straight off the list again)."""
    if PG_lru in page.flags:
        raise Violation("bad_page", f"putback of {page!r} which is on the LRU", pfn=page.pfn)
    was_active = PG_active in page.flags
    page.flags.discard(PG_unevictable)
    if page_evictable(page):
        add_page_to_lru_list(k, page, LRU_ACTIVE if was_active else LRU_INACTIVE)
    else:
        add_page_to_lru_list(k, page, LRU_UNEVICTABLE)
    put_page(k, page)
