"""The vma list: sorted, non-overlapping, map_count == its length, no freed vma on it; and every
pte lies inside a vma.

Writers rewrite the list under ``mmap_sem`` held for write (split_vma, vma_adjust, detach ...),
in several steps, so the list may be mid-update while the writer holds it: deferred.  An exiting
mm (``users == 0``, exit_mmap frees vmas as it walks) or a dead one is not checked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmfuzz.invariants._registry import DEFER, _Defer, register, rescan_gated
from vmfuzz.invariants._view import (
    MAX_VMAS,
    freed,
    freed_desc,
    pte_kind,
    user_visible,
    vma_at,
    vma_desc,
)

from vmfuzz.violation import Violation

if TYPE_CHECKING:
    from vmfuzz.invariants._monitor import Monitor

    from vmfuzz.kernel.mm_types import MmStruct, VmAreaStruct


@rescan_gated
def _list(m: Monitor, mm_id: int) -> Violation | _Defer | None:
    mm = m.k.mms.get(mm_id)
    if mm is None or not user_visible(mm) or not m.rescan("vma_list_sane", mm_id):
        return None  # the layout signature (vmas, ranges, map_count) did not change
    vma = mm.mmap
    n = 0
    prev = None
    seen: set[int] = set()
    bad = ""
    while vma is not None:
        if freed(vma):
            return Violation(
                "vma_list_sane",
                f"{freed_desc(vma)} is reachable from {mm.name}->mmap after being freed "
                f"(entry {n} of the list, after {vma_desc(prev)}): expected detach before "
                "free",
                mm=mm.name,
            )
        if vma.id in seen or n >= MAX_VMAS:
            bad = f"{mm.name}'s vma list loops back to {vma_desc(vma)}"
            break
        seen.add(vma.id)
        n += 1
        if not bad:
            if vma.vm_mm is not mm:
                bad = f"{vma_desc(vma)} on {mm.name}'s list has vm_mm {vma.vm_mm!r}"
            elif not 0 <= vma.vm_start < vma.vm_end:
                bad = f"{vma_desc(vma)} of {mm.name} is empty or negative"
            elif prev is not None and vma.vm_start < prev.vm_end:
                how = "overlaps" if vma.vm_start >= prev.vm_start else "is out of order after"
                bad = f"{vma_desc(vma)} of {mm.name} {how} {vma_desc(prev)}"
        prev = vma
        vma = vma.vm_next
    if not bad and n != mm.map_count:
        bad = f"{mm.name} has map_count {mm.map_count} but {n} vma(s) on its list"
    if not bad:
        return None
    if m.mm_writer(mm):
        return DEFER
    return Violation(
        "vma_list_sane",
        bad + " (expected a sorted, non-overlapping list of length map_count, mmap_sem "
        "not held for write)",
        mm=mm.name,
    )


def _pte_check(m: Monitor, mm: MmStruct, addr: int, key: tuple[str, int]) -> Violation | bool:
    """True if fine, False if excused (mid-update), else the violation."""
    if mm.dead or mm.users <= 0 or vma_at(mm, addr) is not None:  # user_visible(mm), inlined
        return True
    if m.mm_writer(mm) or m.atomic(*key):
        return False
    pte = mm.pgd.get(addr)
    return Violation(
        "pte_in_vma",
        f"{pte_kind(pte)} pte {pte!r} at {mm.name} page {addr} lies in no vma of "
        f"{mm.name} (vmas: {', '.join(vma_desc(v) for v in _vmas(mm)) or 'none'}); expected "
        "zap_pte_range to have cleared it when its vma went away",
        mm=mm.name,
        addr=addr,
    )


def _vmas(mm: MmStruct) -> list[VmAreaStruct]:
    out: list[VmAreaStruct] = []
    vma = mm.mmap
    while vma is not None and not freed(vma) and len(out) < 16:
        out.append(vma)
        vma = vma.vm_next
    return out


def _pte_page(m: Monitor, pfn: int) -> Violation | _Defer | None:
    k = m.k
    defer = False
    for index in (k.present_ptes, k.migration_ptes):
        for mm_id, addr in sorted(index.get(pfn, ())):
            mm = k.mms.get(mm_id)
            if mm is None:
                continue
            r = _pte_check(m, mm, addr, ("page", pfn))
            if isinstance(r, Violation):
                return r
            defer = defer or not r
    return DEFER if defer else None


def _pte_entry(m: Monitor, e: int) -> Violation | _Defer | None:
    k = m.k
    defer = False
    for mm_id, addr in sorted(k.swap_ptes.get(e, ())):
        mm = k.mms.get(mm_id)
        if mm is None:
            continue
        r = _pte_check(m, mm, addr, ("entry", e))
        if isinstance(r, Violation):
            return r
        defer = defer or not r
    return DEFER if defer else None


@rescan_gated
def _pte_mm(m: Monitor, mm_id: int) -> Violation | _Defer | None:
    mm = m.k.mms.get(mm_id)
    if mm is None or not m.rescan("pte_in_vma", mm_id) or not user_visible(mm):
        return None
    deferred = []
    for addr in m.mm_addrs("pte_in_vma", mm):
        r = _pte_check(m, mm, addr, ("mm", mm_id))
        if isinstance(r, Violation):
            return r
        if not r:
            deferred.append(addr)
    return m.defer_addrs("pte_in_vma", mm_id, deferred)


register(
    "vma_list_sane",
    "vma",
    "each mm's vma list is sorted, non-overlapping, map_count long, with no freed vma on it",
    "mm/mmap.c validate_mm()/browse_rb() (CONFIG_DEBUG_VM_RB): BUG if i != mm->map_count",
    mm=_list,
)

register(
    "pte_in_vma",
    "vma",
    "every pte (present, swap or migration) of a live mm lies inside one of its vmas",
    "mm/memory.c unmap_vmas()/free_pgtables(): no pte survives its vma "
    "(exit_mmap: BUG_ON(mm->nr_ptes > ...))",
    page=_pte_page,
    entry=_pte_entry,
    mm=_pte_mm,
)
