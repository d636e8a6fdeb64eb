"""Data integrity: what a user task would read is what it last wrote.

Two halves.  Reads: the model's ``read`` path calls ``k.check_read(mm, addr, found)``, which
raises ``data_integrity`` on the spot.  Every step: each present pte's page holds the token
``k.expected[mm][addr]`` (0 = never written), for the ptes the step touched (and all of an mm's
ptes when its layout changed), so a lost write or a stale page shows up as soon as it is
mapped, even if nobody reads it.  Not checked (the model says the view is not authoritative):
addresses outside every vma (munmap in progress), exiting or dead mms, mms listed in the model
hook ``k.expected_unsettled`` (e.g. a fork child before dup_mmap finishes), and, deferred, mms
whose mmap_sem is held for write or pages inside a spinlock section.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmfuzz.invariants._registry import DEFER, _Defer, register, rescan_gated
from vmfuzz.invariants._view import page_desc, user_visible, vma_at, where

from vmfuzz.kernel.mm_types import PresentPte
from vmfuzz.violation import Violation

if TYPE_CHECKING:
    from vmfuzz.invariants._monitor import Monitor

CHECK = "data_integrity"


def _one(m: Monitor, mm_id: int, addr: int, pfn: int) -> Violation | bool:
    """True if fine or not checked, False if excused, else the violation."""
    k = m.k
    mm = k.mms.get(mm_id)
    if mm is None or not user_visible(mm) or mm_id in m.unsettled():
        return True
    if not 0 <= pfn < len(k.pages):
        return True  # bad_page reports it
    page = k.pages[pfn]
    want = k.expected.get(mm_id, {}).get(addr, 0)
    if page.data == want or vma_at(mm, addr) is None:
        return True
    if m.mm_writer(mm) or m.atomic("page", pfn):
        return False
    how = "lost write" if page.data < want else "stale or foreign data"
    return Violation(
        CHECK,
        f"present pte at {where(k, mm_id, addr)} maps {page_desc(page)} holding token "
        f"{page.data}, but {mm.name} last wrote token {want} there ({how})",
        mm=mm.name,
        addr=addr,
        pfn=pfn,
        expected=want,
        found=page.data,
    )


def _page(m: Monitor, pfn: int) -> Violation | _Defer | None:
    defer = False
    for mm_id, addr in sorted(m.k.present_ptes.get(pfn, ())):
        r = _one(m, mm_id, addr, pfn)
        if isinstance(r, Violation):
            return r
        defer = defer or not r
    return DEFER if defer else None


@rescan_gated
def _mm(m: Monitor, mm_id: int) -> Violation | _Defer | None:
    mm = m.k.mms.get(mm_id)
    if mm is None or not m.rescan(CHECK, mm_id):
        return None
    deferred = []
    for addr in m.mm_addrs(CHECK, mm):
        pte = mm.pgd[addr]
        if isinstance(pte, PresentPte):
            r = _one(m, mm_id, addr, pte.pfn)
            if isinstance(r, Violation):
                return r
            if not r:
                deferred.append(addr)
    return m.defer_addrs(CHECK, mm_id, deferred)


register(
    CHECK,
    "integrity",
    "every read, and every mapped page at every step, holds the token its mm last wrote there",
    "user-visible memory semantics (no lost write, no stale or foreign page); the seeds' "
    "'random memory corruption'",
    page=_page,
    mm=_mm,
)
