"""Data integrity: what a user task would read is what it last wrote.

Reads: the model's ``read`` path calls ``k.check_read(mm, addr, found)``, which raises
``data_integrity`` on the spot.  Every step, the token ``k.expected[mm][addr]`` (0 = never
written) must be what a load of each touched pte would see (and of all of an mm's ptes when
its layout changed), so a lost write or a stale page shows up as soon as it is mapped, even if
nobody reads it:

* a present pte: its page's data;
* a swap pte holding entry ``e``: what a swapin of the address would read now, the swap-cache
  page's data if ``e`` is cached, else the device slot's (swap_readpage's source).  Checked
  when the swap pte is written, when ``e``'s cache slot or device slot changes (the kernel
  touches ``e``: swap_writepage, every cache add and delete), and when its cached page's data
  changes (the monitor adds the cache slots of every touched page), so a write lost while the
  page is out shows at once, not when a later load faults it back in.

Not checked (the model says the view is not authoritative): addresses outside every vma
(munmap in progress), exiting or dead mms, mms listed in the model hook
``k.expected_unsettled`` (e.g. a fork child before dup_mmap finishes), a swap device freed by
swapoff, and, deferred, mms whose mmap_sem is held for write, pages or entries inside a
spinlock section, and a locked swap-cache page (a swapin waits in lock_page before it maps
it: read_swap_cache_async's read or migration's copy may be in flight).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmfuzz.invariants._registry import DEFER, _Defer, register, rescan_gated
from vmfuzz.invariants._view import page_desc, vma_at, where

from vmfuzz.kernel.mm_types import FreedSwapBackingDev, PresentPte, SwapPte
from vmfuzz.violation import Violation

if TYPE_CHECKING:
    from vmfuzz.invariants._monitor import Monitor

CHECK = "data_integrity"


def _one(m: Monitor, mm_id: int, addr: int, pfn: int) -> Violation | bool:
    """True if fine or not checked, False if excused, else the violation."""
    k = m.k
    mm = k.mms.get(mm_id)
    # (user_visible(mm), inlined: a check's hot path)
    if mm is None or mm.dead or mm.users <= 0 or mm_id in m.unsettled():
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


def _swapped(m: Monitor, mm_id: int, addr: int, e: int) -> Violation | bool:
    """The swap pte ``e`` at ``addr`` of ``mm_id``: True if what a swapin would read there is
    the token last written (or not checked), False if excused, else the violation."""
    k = m.k
    mm = k.mms.get(mm_id)
    # (user_visible(mm), inlined: a check's hot path)
    if mm is None or mm.dead or mm.users <= 0 or mm_id in m.unsettled():
        return True
    si = k.swap
    if type(e) is not int or not 0 < e < len(si.swap_map):
        return True  # swap_map_counts reports it
    page = si.cache.get(e)
    if page is not None:
        found = page.data
    else:
        bdev = si.bdev
        if type(bdev) is FreedSwapBackingDev:
            return True  # swapoff freed the device under a swap pte: other checks report it
        found = bdev.data.get(e, 0)
    want = k.expected.get(mm_id, {}).get(addr, 0)
    if found == want or vma_at(mm, addr) is None:
        return True
    if m.mm_writer(mm) or m.atomic("entry", e):
        return False
    if page is not None and (page.lock.owner is not None or m.atomic("page", page.pfn)):
        return False
    how = "lost write" if found < want else "stale or foreign data"
    src = (f"its swap-cache page {page_desc(page)}" if page is not None
           else f"swap slot {e} on the device")
    objects: dict[str, object] = {"mm": mm.name, "addr": addr, "entry": e,
                                  "expected": want, "found": found,
                                  "source": "swap cache" if page is not None else "slot"}
    if page is not None:
        objects["pfn"] = page.pfn
    return Violation(
        CHECK,
        f"swap pte at {where(k, mm_id, addr)} holds entry {e}: a swapin would read token "
        f"{found} from {src}, but {mm.name} last wrote token {want} there ({how})",
        **objects,
    )


def _page(m: Monitor, pfn: int) -> Violation | _Defer | None:
    defer = False
    for mm_id, addr in sorted(m.k.present_ptes.get(pfn, ())):
        r = _one(m, mm_id, addr, pfn)
        if isinstance(r, Violation):
            return r
        defer = defer or not r
    return DEFER if defer else None


def _entry(m: Monitor, e: int) -> Violation | _Defer | None:
    defer = False
    for mm_id, addr in sorted(m.k.swap_ptes.get(e, ())):
        r = _swapped(m, mm_id, addr, e)
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
        elif isinstance(pte, SwapPte):
            r = _swapped(m, mm_id, addr, pte.entry)
        else:
            continue
        if isinstance(r, Violation):
            return r
        if not r:
            deferred.append(addr)
    return m.defer_addrs(CHECK, mm_id, deferred)


register(
    CHECK,
    "integrity",
    "every read, every mapped page and what a swapin of every swap pte would read hold the "
    "token its mm last wrote there",
    "user-visible memory semantics (no lost write, no stale or foreign page); the seeds' "
    "'random memory corruption'",
    page=_page,
    entry=_entry,
    mm=_mm,
)
