"""Freeing: a freed page is clean (bad_page), nothing uses a freed page, vma or anon_vma, and
an allocation fails only when no page is free.

``bad_page``: a frame on the free list has count 0, mapcount 0, none of the flags
free_pages_check() rejects (PG_lru, PG_swapcache, PG_mlocked, PG_active, PG_unevictable,
PG_reserved), is not locked, and is on the free list once.

``use_after_free``: freed vmas and anon_vmas are poisoned by the model (``k.free_vma``,
``k.free_anon_vma``), so any attribute access by a racing path raises this check at the use;
reachable-but-not-yet-used freed vmas/anon_vmas are reported by vma_list_sane and
rmap_reachable, and a freed vma left in a live mm's ``mmap_cache`` here, at its free.  For
frames the monitor checks, every step, that a free frame is referenced by no pte (present or
migration), no swap-cache slot and no LRU list.

``alloc_fails_with_free_frames``: a page allocation that fails (the caller returns -ENOMEM)
found the free list empty after its direct reclaim, as the allocator's failure report counts
them (2.6.36 ``__alloc_pages_slowpath`` tries the free list again after reclaim).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmfuzz.invariants._registry import DEFER, _Defer, register
from vmfuzz.invariants._view import (
    freed,
    freed_desc,
    lru_lists_of,
    page_desc,
    pte_users,
    user_visible,
    users_desc,
)

from vmfuzz.kernel.mm_types import (
    PG_active,
    PG_lru,
    PG_mlocked,
    PG_reserved,
    PG_swapcache,
    PG_unevictable,
)
from vmfuzz.violation import Violation

if TYPE_CHECKING:
    from vmfuzz.invariants._monitor import Monitor

# mm/page_alloc.c PAGE_FLAGS_CHECK_AT_FREE (the ones the model has; PG_locked is page.lock).
FLAGS_CHECK_AT_FREE = frozenset(
    {PG_lru, PG_swapcache, PG_mlocked, PG_active, PG_unevictable, PG_reserved}
)


def _bad_page(m: Monitor, pfn: int) -> Violation | _Defer | None:
    k = m.k
    if pfn not in k.free_list:
        return None
    page = k.pages[pfn]
    bad = []
    if page.count != 0:
        bad.append(f"count {page.count}")
    if page.mapcount != 0:
        bad.append(f"mapcount {page.mapcount}")
    flags = sorted(page.flags & FLAGS_CHECK_AT_FREE)
    if flags:
        bad.append(" ".join(flags))
    if page.locked:
        bad.append("PG_locked")
    times = k.free_list.count(pfn)
    if times > 1:
        bad.append(f"on the free list {times} times (double free)")
    if not bad:
        return None
    if m.atomic("page", pfn):
        return DEFER
    return Violation(
        "bad_page",
        f"BUG: Bad page state: free {page_desc(page)}: {', '.join(bad)}; expected count 0, "
        "mapcount 0, no PG_lru/PG_swapcache/PG_mlocked/PG_active/PG_unevictable/"
        "PG_reserved/PG_locked, on the free list once",
        pfn=pfn,
    )


def _page_uaf(m: Monitor, pfn: int) -> Violation | _Defer | None:
    k = m.k
    if pfn not in k.free_list:
        return None
    page = k.pages[pfn]
    refs = []
    users = pte_users(k, pfn)
    if users:
        refs.append(users_desc(k, users))
    slots = sorted(e for e in m.cache_of.get(pfn, ()) if k.swap.cache.get(e) is page)
    if slots:
        refs.append(f"swap cache slot of entr{'ies' if len(slots) > 1 else 'y'} {slots}")
    lists = lru_lists_of(k, page)
    if lists:
        refs.append(f"the {'/'.join(lists)} LRU list")
    if not refs:
        return None
    if m.atomic("page", pfn):
        return DEFER
    return Violation(
        "use_after_free",
        f"freed {page_desc(page)} is still referenced by {'; '.join(refs)}: expected no "
        "reference to a page on the free list (it will be reallocated under its users)",
        pfn=pfn,
    )


def _mm_uaf(m: Monitor, mm_id: int) -> Violation | None:
    """A live mm's ``mmap_cache`` names a freed vma: every writer that detaches a vma kills or
    moves the cache first, under the locks the cache's readers take, so the next find_vma
    would hand the freed vma to its caller (seed 004: a reader under page_table_lock alone
    caching a vma the detach had just taken off the list)."""
    mm = m.k.mms.get(mm_id)
    if mm is None or not user_visible(mm):
        return None
    vma = mm.mmap_cache
    if vma is None or not freed(vma):
        return None
    return Violation(
        "use_after_free",
        f"freed {freed_desc(vma)} is still referenced by {mm.name}->mmap_cache: expected the "
        "cache killed before the vma is detached and freed (find_vma returns it next)",
        mm=mm.name,
        object=freed_desc(vma),
    )


register(
    "bad_page",
    "freeing",
    "a freed page has count 0, no mapcount, no LRU/swap-cache/mlock flag, is unlocked, freed once",
    "mm/page_alloc.c free_pages_check()/bad_page(): 'BUG: Bad page state', "
    "PAGE_FLAGS_CHECK_AT_FREE",
    page=_bad_page,
)

register(
    "use_after_free",
    "freeing",
    "no use of a freed vma, anon_vma (poisoned by the model) or page (no pte/swap cache/LRU ref); "
    "no freed vma in a live mm's mmap_cache",
    "SLAB_DEBUG poisoning of vm_area_cachep/anon_vma_cachep; CONFIG_DEBUG_PAGEALLOC",
    page=_page_uaf,
    mm=_mm_uaf,
)


def _alloc_failure(m: Monitor) -> Violation | None:
    free = m.k.stats.get("pgalloc_fail_free", 0)
    if not free:
        return None
    return Violation(
        "alloc_fails_with_free_frames",
        f"a page allocation failed with {free} frame(s) on the free list: expected a failure "
        "only when no frame is free after direct reclaim (the caller returns -ENOMEM and a "
        "store faults with VM_FAULT_OOM for memory that is there)")


register(
    "alloc_fails_with_free_frames",
    "freeing",
    "a page allocation fails only when no frame is free after direct reclaim",
    "mm/page_alloc.c __alloc_pages_slowpath(): get_page_from_freelist() again after "
    "__alloc_pages_direct_reclaim(); warn_alloc_failed()/show_mem() 'free:'",
    each_step=_alloc_failure,
)
