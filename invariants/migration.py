"""Migration entries: a migration pte exists only while the page it names is locked.

unmap_and_move() locks the old page, try_to_unmap() replaces its ptes with migration entries,
and remove_migration_ptes() (via rmap_walk) puts real ptes back before the page is unlocked.  A
migration entry left behind after the unlock (seeds 002/003: rmap_walk missed a vma whose
vm_start/vm_pgoff were mid-update) later trips ``migration_entry_to_page``'s BUG_ON.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmfuzz.invariants._registry import kernel_flag, register, step_guard
from vmfuzz.invariants._view import page_desc, where

from vmfuzz.violation import Violation

if TYPE_CHECKING:
    from vmfuzz.invariants._monitor import Monitor


_migrating = kernel_flag(
    "migration_ptes", "Some pte is a migration entry (otherwise there is nothing to check).")


@step_guard(_migrating)
def _each_step(m: Monitor) -> Violation | None:
    """Every page named by a migration pte is PG_locked (O(pages under migration) per step)."""
    k = m.k
    for pfn in sorted(k.migration_ptes):
        users = k.migration_ptes[pfn]
        if not 0 <= pfn < len(k.pages):
            mm, addr = min(users)
            return Violation(
                "migration_pte_page_locked",
                f"migration pte at {where(k, mm, addr)} names pfn {pfn}, outside mem_map",
                pfn=pfn,
            )
        page = k.pages[pfn]
        if not page.locked:
            ptes = sorted(users)
            shown = "; ".join(where(k, mm, addr) for mm, addr in ptes[:4])
            more = f" and {len(ptes) - 4} more" if len(ptes) > 4 else ""
            return Violation(
                "migration_pte_page_locked",
                f"{len(ptes)} migration pte(s) for {page_desc(page)} at {shown}{more}, "
                "but the page is not locked: expected PG_locked while any migration entry "
                "exists (remove_migration_ptes missed these ptes or ran after unlock_page)",
                pfn=pfn,
                ptes=ptes,
            )
    return None


register(
    "migration_pte_page_locked",
    "migration",
    "a migration pte exists only while its page is PG_locked",
    "include/linux/swapops.h migration_entry_to_page(): BUG_ON(!PageLocked(p))",
    each_step=_each_step,
)
