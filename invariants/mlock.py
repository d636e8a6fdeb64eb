"""mlock and reserved mappings: reclaim never unmaps them; mlocked pages are unevictable.

``reserved_pte_cleared``: reclaim (2.6 try_to_unmap for swap, 2.4 try_to_swap_out) must skip a
vma with VM_LOCKED or VM_RESERVED (seed 004: 2.6.3 only tested VM_LOCKED, so a driver's
VM_RESERVED DMA region was swapped out).  Seen two ways: a *new* swap pte appearing in such a
vma (a swap pte is only ever created by reclaim, or copied by fork), and, when the model keeps
it, the hook ``k.reclaim_unmaps`` (list of (mm id, addr) of every pte reclaim cleared or
replaced in this step; consumed and emptied by the monitor).  A VM_LOCKED vma of an mm with an
mlock() in progress is accepted: 2.6.36 sys_mlock sets VM_LOCKED under mmap_sem for write,
drops it, and only then faults the range in under mmap_sem for read, so reclaim may unmap a
page in between (benign: the populate brings it back).  Hook ``k.mlocking`` (mm ids with an
mlock in progress); while it is None (no mlock yet), any holder of the mm's mmap_sem counts as
one.

``reserved_page_pinned``: a page mapped by a VM_RESERVED vma stays where it is.  The vma is a
driver's DMA region paged in lazily (seed 004, Andrea: "A reserved region must not be messed from
the vm since it's a dma hardware region"): the device writes to the frame, so neither reclaim nor
migration may take the pte away or move the page.  ``reserved_pte_cleared`` sees reclaim; this
check sees migration, from the state alone: a migration entry (only migration creates one) at an
address of a VM_RESERVED vma of a live address space.

``mlocked_resident``: a PG_mlocked page sits on the unevictable list or is isolated (off every
LRU list), never on the active/inactive lists where reclaim scans, except inside
mlock_vma_page's page-locked section (the page is moved right after PG_mlocked is set).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmfuzz.invariants._registry import DEFER, _Defer, kernel_flag, register, step_guard
from vmfuzz.invariants._view import on_list, page_desc, user_visible, vma_at, vma_desc

from vmfuzz.kernel.mm_types import (
    VM_LOCKED,
    VM_RESERVED,
    PG_lru,
    PG_mlocked,
    PG_unevictable,
    SwapPte,
)
from vmfuzz.violation import Violation

if TYPE_CHECKING:
    from vmfuzz.invariants._monitor import Monitor

    from vmfuzz.kernel.mm_types import MmStruct

EVICTABLE = ("active", "inactive")


def _flags(flags: int) -> str:
    pairs = ((VM_LOCKED, "VM_LOCKED"), (VM_RESERVED, "VM_RESERVED"))
    return "|".join(n for bit, n in pairs if flags & bit)


def _mlocking(m: Monitor, mm: MmStruct) -> bool:
    """An mlock() of ``mm`` is in progress (mlock_fixup set VM_LOCKED; its populate, under
    mmap_sem for read after dropping it for write, will fault the range back in).

    Read from the model hook ``k.mlocking`` (set of mm ids) once the model keeps it; while it
    is None, any holder of ``mm->mmap_sem`` (either mode) is taken as a possible mlock in
    progress."""
    mlocking = m.k.mlocking
    if mlocking is not None:
        return mm.id in mlocking
    return m.held(mm.mmap_sem)


def _unmapped(m: Monitor, mm_id: int, addr: int, how: str) -> Violation | None:
    mm = m.k.mms.get(mm_id)
    if mm is None or not user_visible(mm):
        return None
    vma = vma_at(mm, addr)
    if vma is None or not vma.vm_flags & (VM_LOCKED | VM_RESERVED):
        return None
    if not vma.vm_flags & VM_RESERVED and _mlocking(m, mm):
        return None  # mlock in progress: it faults the range in after setting VM_LOCKED
    return Violation(
        "reserved_pte_cleared",
        f"reclaim {how} the pte at {mm.name} page {addr} in {vma_desc(vma)} which has "
        f"{_flags(vma.vm_flags)}: expected try_to_unmap/try_to_swap_out to refuse it "
        "(SWAP_FAIL)",
        mm=mm.name,
        addr=addr,
    )


def _entry(m: Monitor, e: int) -> Violation | None:
    if m.full:
        # A full scan has no history: a swap pte in a VM_RESERVED vma can only come from
        # reclaim (VM_LOCKED ones may predate an mlock that failed half way).
        for mm_id, addr in sorted(m.k.swap_ptes.get(e, ())):
            mm = m.k.mms.get(mm_id)
            if mm is None or not user_visible(mm):
                continue
            vma = vma_at(mm, addr)
            if vma is not None and vma.vm_flags & VM_RESERVED:
                return _unmapped(m, mm_id, addr, f"swapped out (swap entry {e})")
        return None
    for mm_id, addr in m.new_swap_ptes.get(e, ()):
        v = _unmapped(m, mm_id, addr, f"replaced with swap entry {e}")
        if v is not None:
            return v
    return None


_reclaimed = kernel_flag(
    "reclaim_unmaps",
    "Reclaim cleared or replaced a pte in this step (otherwise there is nothing to check).")


@step_guard(_reclaimed)
def _each_step(m: Monitor) -> Violation | None:
    unmaps = m.k.reclaim_unmaps
    if not unmaps:
        return None
    for mm_id, addr in unmaps:
        mm = m.k.mms.get(mm_id)
        pte = None if mm is None else mm.pgd.get(addr)
        how = "replaced with a swap entry" if isinstance(pte, SwapPte) else "cleared"
        v = _unmapped(m, mm_id, addr, how)
        if v is not None:
            return v
    return None


def _pinned(m: Monitor, pfn: int) -> Violation | None:
    """No migration entry for ``pfn`` sits in a VM_RESERVED vma (O(migration ptes of pfn))."""
    k = m.k
    for mm_id, addr in sorted(k.migration_ptes.get(pfn, ())):
        mm = k.mms.get(mm_id)
        if mm is None or not user_visible(mm):
            continue
        vma = vma_at(mm, addr)
        if vma is None or not vma.vm_flags & VM_RESERVED:
            continue
        return Violation(
            "reserved_page_pinned",
            f"migration replaced the pte at {mm.name} page {addr} in {vma_desc(vma)} (VM_RESERVED) "
            f"with a migration entry for pfn {pfn}: expected a VM_RESERVED page never to be "
            "unmapped or moved (try_to_unmap_one refuses the vma: SWAP_FAIL)",
            pfn=pfn,
            mm=mm.name,
            addr=addr,
        )
    return None


def _mlocked(m: Monitor, pfn: int) -> Violation | _Defer | None:
    k = m.k
    page = k.pages[pfn]
    flags = page.flags
    if PG_mlocked not in flags:
        return None
    if not m.full and (PG_lru not in flags or PG_unevictable in flags):
        return None  # isolated, or on the unevictable list (the flags say which list)
    lists = [name for name in EVICTABLE if on_list(page, k.lru.get(name, []))]
    if not lists:
        return None
    if page.locked or m.atomic("page", pfn):
        return DEFER
    return Violation(
        "mlocked_resident",
        f"{page_desc(page)} is PG_mlocked but on the {lists[0]} LRU list, where reclaim "
        "scans: expected the unevictable list or isolated (putback_lru_page culls it)",
        pfn=pfn,
    )


register(
    "reserved_pte_cleared",
    "mlock",
    "reclaim never unmaps a pte of a VM_LOCKED or VM_RESERVED vma",
    "mm/rmap.c try_to_unmap_one(): if (vma->vm_flags & (VM_LOCKED|VM_RESERVED)) "
    "SWAP_FAIL (seed 004); 2.4 swap_out_vma() skips them",
    entry=_entry,
    each_step=_each_step,
)

register(
    "reserved_page_pinned",
    "mlock",
    "a page mapped by a VM_RESERVED vma is never unmapped or moved by migration",
    "mm/rmap.c try_to_unmap_one(): if (vma->vm_flags & (VM_LOCKED|VM_RESERVED)) SWAP_FAIL, "
    "for migration too (seed 004: a VM_RESERVED vma is a driver's DMA region)",
    page=_pinned,
)

register(
    "mlocked_resident",
    "mlock",
    "a PG_mlocked page is on the unevictable list or isolated, never on an evictable list",
    "mm/vmscan.c putback_lru_page()/page_evictable(); Documentation/vm/unevictable-lru.txt",
    page=_mlocked,
)
