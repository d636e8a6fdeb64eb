"""Swap cache and swap map: one page per entry and one entry per page; swap_map counts its users.

``swap_map[e]`` counts every reference to slot ``e``: the swap ptes holding ``e``, the swap
cache's own reference while a page is cached under ``e``, and *in-flight* references: counts a
running path has taken (get_swap_page's fresh count before add_to_swap_cache; swapin_readahead's
swap_duplicate of each valid_swaphandles slot before read_swap_cache_async hands it over to the
cache or swap_frees it; 2.6 swapcache_prepare before add_to_swap_cache).  The model reports them
in ``k.swap_inflight`` (entry -> count).  While that map is None (the swap code has not run
yet) the check can only verify the lower bound ``swap_map[e] >= ptes + cache`` (a dropped
reference, not a leak).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmfuzz.invariants._registry import DEFER, _Defer, register
from vmfuzz.invariants._view import page_desc, where

from vmfuzz.kernel.mm_types import SWAP_MAP_BAD, PG_swapcache
from vmfuzz.violation import Violation

if TYPE_CHECKING:
    from vmfuzz.invariants._monitor import Monitor


def _excused(m: Monitor, e: int | None, pfns: tuple[int, ...]) -> bool:
    if e is not None and m.atomic("entry", e):
        return True
    return any(m.atomic("page", p) for p in pfns)


def _cache_page(m: Monitor, pfn: int) -> Violation | _Defer | None:
    k = m.k
    page = k.pages[pfn]
    cache = k.swap.cache
    nr = len(k.swap.swap_map)
    if PG_swapcache in page.flags:
        e = page.private
        if not isinstance(e, int) or not 1 <= e < nr:
            if _excused(m, None, (pfn,)):
                return DEFER
            return Violation(
                "swap_cache_unique",
                f"{page_desc(page)} has PG_swapcache but page->private {e!r} is not a valid "
                f"swap entry (expected 1..{nr - 1})",
                pfn=pfn,
                entry=e,
            )
        holder = cache.get(e)
        others = sorted(m.claims.get(e, set()) - {pfn})
        if holder is page and not others:
            return None
        if _excused(m, e, (pfn, *others)):
            return DEFER
        if holder is None:
            found = "holds no page"
        else:
            found = f"holds {page_desc(holder)}"
        also = f"; pfn(s) {others} claim entry {e} too" if others else ""
        two = " (two pages for one swap entry)" if holder is not None or others else ""
        return Violation(
            "swap_cache_unique",
            f"{page_desc(page)} has PG_swapcache for swap entry {e}, but the swap cache slot "
            f"of entry {e} {found}{also}{two}; expected the slot to hold exactly this page",
            pfn=pfn,
            entry=e,
        )
    held = m.cache_of.get(pfn)
    if not held:
        return None
    slots = sorted(e for e in held if cache.get(e) is page)
    if not slots:
        return None
    if _excused(m, slots[0], (pfn,)):
        return DEFER
    return Violation(
        "swap_cache_unique",
        f"{page_desc(page)} is in the swap cache under entr{'ies' if len(slots) > 1 else 'y'} "
        f"{slots} but has no PG_swapcache; expected PG_swapcache with page->private == the "
        "entry of its one slot",
        pfn=pfn,
        entries=slots,
    )


def _cache_entry(m: Monitor, e: int) -> Violation | _Defer | None:
    k = m.k
    page = k.swap.cache.get(e)
    claimants = sorted(m.claims.get(e, ()))
    if page is None:
        if not claimants:
            return None
        if _excused(m, e, tuple(claimants)):
            return DEFER
        return Violation(
            "swap_cache_unique",
            f"swap cache slot of entry {e} is empty but pfn(s) {claimants} have PG_swapcache "
            f"with page->private == {e}; expected no page to claim an uncached entry",
            entry=e,
            pfns=claimants,
        )
    if e == 0:
        return Violation(
            "swap_cache_unique",
            f"{page_desc(page)} is in the swap cache under entry 0, which is SWAP_MAP_BAD "
            "(the swap header): expected no page",
            entry=e,
            pfn=page.pfn,
        )
    ok_flags = PG_swapcache in page.flags and page.private == e
    if ok_flags and claimants == [page.pfn]:
        return None
    if _excused(m, e, (page.pfn, *claimants)):
        return DEFER
    if not ok_flags:
        return Violation(
            "swap_cache_unique",
            f"swap cache slot of entry {e} holds {page_desc(page)}, expected PG_swapcache "
            f"and page->private == {e}",
            entry=e,
            pfn=page.pfn,
        )
    return Violation(
        "swap_cache_unique",
        f"swap cache slot of entry {e} holds pfn {page.pfn} but pfn(s) {claimants} all claim "
        f"entry {e} (two pages for one swap entry); expected only pfn {page.pfn}",
        entry=e,
        pfns=claimants,
    )


def _swap_map(m: Monitor, e: int) -> Violation | _Defer | None:
    k = m.k
    swap_map = k.swap.swap_map
    ptes = sorted(k.swap_ptes.get(e, ()))
    cached = k.swap.cache.get(e)
    if e == 0:
        if swap_map[0] == SWAP_MAP_BAD and not ptes and cached is None:
            return None
        return Violation(
            "swap_map_counts",
            f"swap slot 0 is the swap header: expected swap_map[0] == SWAP_MAP_BAD and no "
            f"users, found swap_map[0] = {swap_map[0]}, {len(ptes)} swap pte(s)"
            + (f" ({where(k, *ptes[0])})" if ptes else "")
            + (f", swap cache {page_desc(cached)}" if cached is not None else ""),
            entry=0,
        )
    count = swap_map[e]
    inflight_map = k.swap_inflight
    inflight = 0 if inflight_map is None else inflight_map.get(e, 0)
    if inflight < 0:
        return Violation(
            "swap_map_counts",
            f"swap entry {e}: k.swap_inflight[{e}] = {inflight} is negative (a reference "
            "handed over twice)",
            entry=e,
        )
    want = len(ptes) + (cached is not None) + inflight
    ok = count == want if inflight_map is not None else count >= want
    if ok and m.full and inflight and not k.sched.live:
        return Violation(
            "swap_map_counts",
            f"swap entry {e}: {inflight} in-flight reference(s) remain after every task "
            "finished (a path took a swap_map count and never handed it over or freed it)",
            entry=e,
        )
    if ok:
        return None
    if m.atomic("entry", e):
        return DEFER
    parts = [f"{len(ptes)} swap pte(s)"]
    if ptes:
        parts[0] += " (" + "; ".join(where(k, mm, a) for mm, a in ptes[:3]) + ")"
    parts.append(f"{int(cached is not None)} swap cache"
                 + (f" (pfn {cached.pfn})" if cached is not None else ""))
    if inflight_map is not None:
        parts.append(f"{inflight} in flight")
    rel = "expected" if inflight_map is not None else "expected at least"
    why = (
        "a reference was dropped while still in use: the slot can be reallocated under its "
        "users"
        if count < want
        else "a reference leaked: the slot is never freed"
    )
    return Violation(
        "swap_map_counts",
        f"swap_map[{e}] = {count}, {rel} {want} = " + " + ".join(parts) + f" ({why})",
        entry=e,
        expected=want,
        found=count,
    )


register(
    "swap_cache_unique",
    "swapcache",
    "at most one page per swap entry and one entry per page; PG_swapcache agrees with the cache",
    "mm/swap_state.c add_to_swap_cache(): radix_tree_insert -EEXIST, "
    "BUG_ON(PageSwapCache(page)) (2.4: the add_to_swap_cache race of seed 001)",
    page=_cache_page,
    entry=_cache_entry,
)

register(
    "swap_map_counts",
    "swapcache",
    "swap_map[e] == swap ptes for e + swap-cache reference + in-flight references",
    "mm/swapfile.c swap_entry_free()/swap_info_get(): 'swap_free: Unused swap offset entry', "
    "swap_count accounting",
    entry=_swap_map,
)
