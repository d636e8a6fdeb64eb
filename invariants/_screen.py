"""The fused screen: one pass over a touched key that proves every built-in hook of its scope
would answer None for it, so the monitor runs those hooks only on the keys it cannot clear.

A step touches a few pages and entries, and each has about ten built-in hooks; almost always
every one of them answers None.  The screen reads the kept indexes once per key (the ptes of a
page from ``k.present_ptes``/``k.migration_ptes``, of an entry from ``k.swap_ptes``, all kept by
``set_pte_at``/``pte_clear``, and the monitor's swap-cache shadows) and compares them with the
counters and flags the kernel paths keep, in one function instead of one call per hook.

It is conservative: True only when every covered hook would answer None (a pending key is
re-run by its hooks anyway).  Any doubt (a freed object, a count that disagrees, a free frame, a
pte outside every vma) answers False, and the hooks run on that key exactly as before, in the
same order, so a violation is the same, at the same step, with the same message.  A full scan
(``Monitor(full=True)``) never uses it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vmfuzz.invariants import freeing, integrity, mapcount, mlock, promises, rmap, swapcache, vma
from vmfuzz.invariants._view import _FREED, vma_at

from vmfuzz.kernel.mm_types import (
    SWAP_MAP_BAD,
    VM_LOCKED,
    VM_RESERVED,
    FreedSwapBackingDev,
    PG_lru,
    PG_mlocked,
    PG_swapcache,
    PG_unevictable,
    PresentPte,
)

if TYPE_CHECKING:
    from vmfuzz.invariants._monitor import Monitor

# The page hooks quiet_page() answers for.
PAGE_HOOKS: frozenset[Any] = frozenset({
    swapcache._cache_page,
    freeing._bad_page,
    freeing._page_uaf,
    mapcount._mapcount,
    mapcount._refcount,
    mapcount._rw_exclusive,
    rmap._page,
    vma._pte_page,
    mlock._pinned,
    mlock._mlocked,
    integrity._page,
})

# The entry hooks quiet_entry() answers for.
ENTRY_HOOKS: frozenset[Any] = frozenset({
    swapcache._cache_entry,
    swapcache._swap_map,
    vma._pte_entry,
    mlock._entry,
    integrity._entry,
    promises._swap_entry_hook,
})


# The mm hooks quiet_mm() answers for (the rescan-gated ones need no screen: the monitor
# runs them only on the mms whose layout changed).
MM_HOOKS: frozenset[Any] = frozenset({freeing._mm_uaf})


def quiet_mm(m: Monitor, mm_id: int) -> bool:
    """True only if every hook of :data:`MM_HOOKS` would answer None for ``mm_id``."""
    mm = m.k.mms.get(mm_id)
    if mm is None or mm.dead or mm.users <= 0:
        return True  # use_after_free looks at user-visible mms only
    return type(mm.mmap_cache) not in _FREED  # use_after_free: the cache names a freed vma


def quiet_page(m: Monitor, pfn: int) -> bool:
    """True only if every hook of :data:`PAGE_HOOKS` would answer None for ``pfn``."""
    k = m.k
    page = k.pages[pfn]
    mapcount_ = page.mapcount
    count = page.count
    if mapcount_ < 0 or count < 0:
        return False  # (every counting hook reports a negative count)
    present = k.present_ptes.get(pfn)
    n = len(present) if present else 0
    if mapcount_ != n:
        return False  # mapcount_matches_ptes
    flags = page.flags
    if PG_swapcache in flags:
        if count < mapcount_ + 1:
            return False  # refcount_covers_users
        e = page.private  # swap_cache_unique: the slot holds exactly this page
        if not isinstance(e, int) or not 1 <= e < len(k.swap.swap_map):
            return False
        if k.swap.cache.get(e) is not page:
            return False
        claims = m.claims.get(e)
        if claims is not None and (len(claims) > 1 or pfn not in claims):
            return False
    else:
        if count < mapcount_:
            return False  # refcount_covers_users
        if m.cache_of.get(pfn):
            return False  # swap_cache_unique: some slot held this page
    if PG_mlocked in flags and PG_lru in flags and PG_unevictable not in flags:
        return False  # mlocked_resident
    if k.migration_ptes.get(pfn):
        return False  # reserved_page_pinned, and rmap/pte_in_vma of a migration pte
    free_list = k.free_list
    if pfn in free_list:
        # bad_page: a clean frame, on the free list once; use_after_free: no pte (mapcount
        # is the present ptes, checked above), no swap-cache slot (idem), no LRU list.
        if (count or mapcount_ or not flags.isdisjoint(freeing.FLAGS_CHECK_AT_FREE)
                or page.lock.owner is not None or free_list.count(pfn) > 1):
            return False
        for lru in k.lru.values():
            for p in lru:
                if p is page:
                    return False
    if not n:
        return True  # no pte: rmap_reachable, pte_in_vma, data_integrity, anon_rw_exclusive
    # rmap_reachable: page->mapping's family is live and rmap_walk finds every pte.
    av = page.mapping
    if av is not None:
        if type(av) in _FREED or type(av.root) in _FREED:
            return False
        head = av.head
        index = page.index
    mms = k.mms
    unsettled = k.expected_unsettled
    expected = k.expected
    data = page.data
    for mm_id, addr in present:  # type: ignore[union-attr]
        mm = mms.get(mm_id)
        if mm is None:
            return False
        if n > 1:  # anon_rw_exclusive: no writable pte of a page mapped twice
            pte = mm.pgd.get(addr)
            if isinstance(pte, PresentPte) and pte.write:
                return False
        if av is not None:
            for avc in head:
                v = avc.vma
                if type(v) in _FREED:
                    return False
                if v.vm_mm.id != mm_id:
                    continue
                a = v.vm_start + (index - v.vm_pgoff)
                if a == addr and v.vm_start <= a < v.vm_end:
                    break
            else:
                return False
        if mm.dead or mm.users <= 0:
            continue  # pte_in_vma and data_integrity look at user-visible mms only
        if vma_at(mm, addr) is None:
            return False  # pte_in_vma
        if mm_id not in unsettled and data != expected.get(mm_id, {}).get(addr, 0):
            return False  # data_integrity
    return True


def quiet_entry(m: Monitor, e: int) -> bool:
    """True only if every hook of :data:`ENTRY_HOOKS` would answer None for swap entry ``e``."""
    k = m.k
    si = k.swap
    cached = si.cache.get(e)
    claims = m.claims.get(e)
    if cached is None:
        if claims:
            return False  # swap_cache_unique: a page claims an uncached entry
    elif (e == 0 or PG_swapcache not in cached.flags or cached.private != e
          or claims is None or len(claims) != 1 or cached.pfn not in claims):
        return False  # swap_cache_unique: the slot's page and the claims disagree
    ptes = k.swap_ptes.get(e)
    n = len(ptes) if ptes else 0
    count = si.swap_map[e]
    if e == 0:
        if count != SWAP_MAP_BAD or n:
            return False  # swap_map_counts: the header slot has users
    else:  # swap_map_counts
        inflight_map = k.swap_inflight
        inflight = 0 if inflight_map is None else inflight_map.get(e, 0)
        if inflight < 0:
            return False
        want = n + (cached is not None) + inflight
        if count != want if inflight_map is not None else count < want:
            return False
    mms = k.mms
    new = m.new_swap_ptes.get(e)
    if new:  # reserved_pte_cleared: no new swap pte in a VM_LOCKED or VM_RESERVED vma
        for mm_id, addr in new:
            mm = mms.get(mm_id)
            if mm is None or mm.dead or mm.users <= 0:
                continue
            v = vma_at(mm, addr)
            if v is not None and v.vm_flags & (VM_LOCKED | VM_RESERVED):
                return False
    spec = m.promise_spec
    if spec is not None and spec.swap_off:
        return False  # swapoff_promise
    if not n:
        return True  # no swap pte: pte_in_vma, data_integrity
    found: int | None = None  # what a swapin of e would read (data_integrity)
    if e > 0:
        if cached is not None:
            found = cached.data
        elif type(si.bdev) is not FreedSwapBackingDev:
            found = si.bdev.data.get(e, 0)
    unsettled = k.expected_unsettled
    expected = k.expected
    for mm_id, addr in ptes:  # type: ignore[union-attr]
        mm = mms.get(mm_id)
        if mm is None or mm.dead or mm.users <= 0:
            continue  # pte_in_vma and data_integrity look at user-visible mms only
        if vma_at(mm, addr) is None:
            return False  # pte_in_vma
        if (found is not None and mm_id not in unsettled
                and found != expected.get(mm_id, {}).get(addr, 0)):
            return False  # data_integrity
    return True
