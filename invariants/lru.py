"""The LRU lists: with no task running, every page in use is on exactly one of them.

Reclaim, migration and compaction find a page only through the LRU: ``isolate_lru_page``
takes it off (clearing PG_lru) for a path's private use and ``putback_lru_page`` returns it.
A path that isolates a page and drops it without the putback (an error path that calls
put_page instead) leaves a page in use that no scan ever reaches again: nothing frees or
moves it until its last user unmaps it, and no free-time check sees that.  With no task live
no path can hold a page isolated, so the state at rest says it all.  A free page is on no list
(``bad_page`` checks it when it is freed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmfuzz.invariants._registry import register
from vmfuzz.invariants._view import page_desc

from vmfuzz.kernel.mm_types import PG_lru
from vmfuzz.violation import Violation

if TYPE_CHECKING:
    from vmfuzz.invariants._monitor import Monitor


def _lru_at_rest(m: Monitor) -> Violation | None:
    """Each frame with a reference is on exactly one LRU list, and PG_lru is set exactly when
    it is on one (read from the lists themselves, not from a counter the paths keep)."""
    k = m.k
    lists: dict[int, list[str]] = {}
    for name, lst in k.lru.items():
        for page in lst:
            lists.setdefault(page.pfn, []).append(name)
    for page in k.pages:
        on = lists.get(page.pfn, [])
        if len(on) > 1:
            why = f"is on {len(on)} LRU lists ({', '.join(on)}): expected one"
        elif (PG_lru in page.flags) != bool(on):
            why = ("has PG_lru but is on no LRU list" if not on else
                   f"is on the {on[0]} list without PG_lru") + ": expected them to agree"
        elif page.count > 0 and not on:
            why = ("is in use but on no LRU list: isolated and never put back, so reclaim "
                   "and migration can never find it again; expected every page in use on a "
                   "list when no path runs")
        else:
            continue
        return Violation("lru_at_rest", f"every task finished, but {page_desc(page)} {why}",
                         pfn=page.pfn)
    return None


register(
    "lru_at_rest",
    "lru",
    "with no task running, each page in use is on exactly one LRU list, and PG_lru says so",
    "mm/vmscan.c isolate_lru_page()/putback_lru_page(): an isolated page is put back "
    "(NR_ISOLATED_ANON returns to 0, too_many_isolated()); mm_inline.h del_page_from_lru_list() "
    "and PageLRU agree",
    at_rest=_lru_at_rest,
)
