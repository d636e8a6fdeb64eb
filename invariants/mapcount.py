"""Page counts: mapcount equals the present ptes mapping the page; refcount covers its users,
and with no task running equals them; with no task running an mm's rss counts its present
ptes.

``page.mapcount`` is the kernel's ``page_mapcount()`` (_mapcount + 1) and ``page.count`` its
``page_count()``.  Between a pte update and the matching page_add_*_rmap / page_remove_rmap the
two disagree (do_swap_page and remove_migration_pte set the pte first, zap_pte_range clears it
first), but only inside the page_table_lock section: those states are deferred (``atomic``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmfuzz.invariants._registry import DEFER, _Defer, register
from vmfuzz.invariants._view import page_desc, pte_users, users_desc, where

from vmfuzz.kernel.mm_types import PG_swapcache, PresentPte
from vmfuzz.violation import Violation

if TYPE_CHECKING:
    from vmfuzz.invariants._monitor import Monitor


def _negative(page_check: str, m: Monitor, pfn: int) -> Violation | None:
    page = m.k.pages[pfn]
    if page.mapcount < 0 or page.count < 0:
        what = "mapcount" if page.mapcount < 0 else "count"
        return Violation(
            page_check,
            f"{page_desc(page)} has a negative {what}: an unbalanced "
            f"{'page_remove_rmap' if what == 'mapcount' else 'put_page'}",
            pfn=pfn,
        )
    return None


def _refs_at_rest(m: Monitor) -> Violation | None:
    """With no task live no path can hold a reference in a local variable, so each frame's
    count is exactly its users: the present ptes that map it (the hooks' record, not its
    mapcount) and the swap-cache slot that holds it.  A
    count above that is a leaked reference: the frame is never freed, and no free-time check
    ever sees it."""
    k = m.k
    cached = {page.pfn: e for e, page in sorted(k.swap.cache.items())}
    for page in k.pages:
        ptes = len(k.present_ptes.get(page.pfn, ()))
        # A page that claims a swap-cache slot holds the cache's reference; whether the claim
        # agrees with the cache is swap_cache_unique's to say.
        in_cache = page.pfn in cached or PG_swapcache in page.flags
        users = ptes + in_cache
        if page.count == users:
            continue
        cache = f" + swap cache (entry {cached.get(page.pfn, page.private)})" if in_cache else ""
        why = ("a reference was taken and never put: the frame is never freed"
               if page.count > users else "a user's reference was dropped")
        return Violation(
            "page_refs_at_rest",
            f"every task finished, but {page_desc(page)} has {users} user(s), {ptes} present "
            f"pte(s){cache}: expected count == {users} ({why})",
            pfn=page.pfn,
            expected=users,
            found=page.count,
        )
    return None


def _mapcount(m: Monitor, pfn: int) -> Violation | _Defer | None:
    k = m.k
    v = _negative("mapcount_matches_ptes", m, pfn)
    if v is not None:
        return v
    page = k.pages[pfn]
    n = len(k.present_ptes.get(pfn, ()))
    if page.mapcount == n:
        return None
    if m.atomic("page", pfn):
        return DEFER
    users = [u for u in pte_users(k, pfn) if u[2] == "present"]
    return Violation(
        "mapcount_matches_ptes",
        f"{page_desc(page)}: mapcount {page.mapcount} but {n} present pte(s) map it "
        f"({users_desc(k, users)}); expected mapcount == {n}",
        pfn=pfn,
        expected=n,
        found=page.mapcount,
    )


def _refcount(m: Monitor, pfn: int) -> Violation | _Defer | None:
    k = m.k
    v = _negative("refcount_covers_users", m, pfn)
    if v is not None:
        return v
    page = k.pages[pfn]
    cache = 1 if PG_swapcache in page.flags else 0
    need = page.mapcount + cache
    if page.count >= need:
        return None
    if m.atomic("page", pfn):
        return DEFER
    return Violation(
        "refcount_covers_users",
        f"{page_desc(page)}: count {page.count} < mapcount {page.mapcount}"
        + (" + 1 swap-cache reference" if cache else "")
        + f"; expected count >= {need} (a reference was dropped that a user still holds)",
        pfn=pfn,
        expected=need,
        found=page.count,
    )


def _rw_exclusive(m: Monitor, pfn: int) -> Violation | None:
    """An anon page mapped by more than one present pte is mapped read-only by all of them
    (COW): O(present ptes of pfn)."""
    k = m.k
    users = k.present_ptes.get(pfn)
    if users is None or len(users) < 2:
        return None
    for mm_id, addr in sorted(users):
        pte = k.mms[mm_id].pgd.get(addr)
        if isinstance(pte, PresentPte) and pte.write:
            return Violation(
                "anon_rw_exclusive",
                f"{page_desc(k.pages[pfn])} is mapped writable at {where(k, mm_id, addr)} "
                f"and by {len(users) - 1} other pte(s) ({users_desc(k, pte_users(k, pfn))}): "
                "expected an anon page mapped more than once to be read-only everywhere (COW)",
                pfn=pfn, mm=f"mm{mm_id}", addr=addr,
            )
    return None


register(
    "mapcount_matches_ptes",
    "mapcount",
    "each page's mapcount equals the number of present ptes mapping it, never negative",
    "mm/rmap.c page_remove_rmap()/page_add_anon_rmap() _mapcount accounting; "
    "mm/memory.c print_bad_pte() 'BUG: Bad page map'",
    page=_mapcount,
)

register(
    "refcount_covers_users",
    "mapcount",
    "each page's refcount >= mapcount + swap-cache reference, never negative",
    "include/linux/mm.h put_page_testzero(): VM_BUG_ON(page_count(page) == 0); "
    "mm/vmscan.c is_page_cache_freeable()",
    page=_refcount,
)

register(
    "page_refs_at_rest",
    "mapcount",
    "with no task running, each page's refcount equals its users: present ptes + swap cache",
    "include/linux/mm.h put_page_testzero(): the last user's put frees the page, so a "
    "reference never put leaks the frame (no free_pages_check ever sees it; mm selftests "
    "compare the free page count before and after)",
    at_rest=_refs_at_rest,
)

register(
    "anon_rw_exclusive",
    "mapcount",
    "an anon page mapped by more than one present pte is writable through none of them",
    "mm/page_table_check.c page_table_check_set(): "
    "BUG_ON(atomic_inc_return(&ptc->anon_map_count) > 1 && rw) (CONFIG_PAGE_TABLE_CHECK)",
    page=_rw_exclusive,
)


def _rss_at_rest(m: Monitor) -> Violation | None:
    """Each mm's rss counter equals the present ptes of its page table (the pages are all
    anonymous in the model: MM_ANONPAGES), read from the page table itself."""
    for mm in sorted(m.k.mms.values(), key=lambda x: x.id):
        present = sum(1 for pte in mm.pgd.values() if isinstance(pte, PresentPte))
        if mm.rss != present:
            return Violation(
                "rss_at_rest",
                f"every task finished, but {mm.name}'s rss is {mm.rss} with {present} present "
                "ptes: a path counted a page it did not map or unmapped one it did not count "
                "(VmRSS, getrusage and the OOM killer's badness read this counter)",
                mm=mm.name)
    return None


register(
    "rss_at_rest",
    "mapcount",
    "with no task running, each mm's rss counter equals the present ptes of its page table",
    "kernel/fork.c check_mm(): 'BUG: Bad rss-counter state' at the last mmput; "
    "include/linux/mm.h get_mm_counter(MM_ANONPAGES)",
    at_rest=_rss_at_rest,
)
