"""Reverse-map completeness: rmap_walk finds every pte of an anon page; a family has one root.

For an anon page (``page.mapping`` is its anon_vma) the kernel finds the ptes by walking
``anon_vma->head`` (the same_anon_vma chains) and computing ``vma_address(page, vma) =
vm_start + (page->index - vm_pgoff)``.  try_to_unmap and remove_migration_ptes must find *every*
pte that way; a pte they cannot find is swapped-out data or a migration entry left behind
(seeds 002/003).  While ``vm_start``/``vm_pgoff`` are rewritten in separate steps (vma_adjust)
the walk is wrong, but in the fixed kernel only under ``anon_vma->root->lock``, which every
walker takes: such states are deferred while the root lock is held.

``anon_vma_leak``: an anon_vma lives while a vma links it (an anon_vma_chain of a vma on an
mm's list) or it is the root of a family member that lives; with no task running (no
migration holds a reference) any other live anon_vma was never freed: a leak.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmfuzz.invariants._registry import DEFER, _Defer, register, rescan_gated
from vmfuzz.invariants._view import (
    _FREED,
    MAX_VMAS,
    av_desc,
    freed,
    freed_desc,
    page_desc,
    pte_kind,
    pte_users,
    vma_desc,
    where,
)

from vmfuzz.kernel.mm_types import PresentPte, SwapPte
from vmfuzz.violation import Violation

if TYPE_CHECKING:
    from vmfuzz.invariants._monitor import Monitor

    from vmfuzz.kernel.mm_types import AnonVma, Page

CHECK = "rmap_reachable"


def _family(page: Page) -> tuple[AnonVma, AnonVma] | Violation | None:
    """(anon_vma, root) of a mapped anon page, None if not anon, a Violation if freed."""
    av = page.mapping
    if av is None:
        return None
    if type(av) in _FREED:  # freed(), inlined here and below: a check's hot path
        return Violation(
            CHECK,
            f"{page_desc(page)} is mapped but page->mapping is {freed_desc(av)}, already "
            "freed: expected the anon_vma to live while any pte maps its pages",
            pfn=page.pfn,
        )
    root = av.root
    if type(root) in _FREED:
        return Violation(
            CHECK,
            f"{page_desc(page)} is mapped but anon_vma{av.id}->root is {freed_desc(root)}, "
            "already freed: expected one live root per anon_vma family",
            pfn=page.pfn,
        )
    return av, root


def _walk(m: Monitor, av: AnonVma, index: int, mm_id: int, addr: int) -> bool | Violation:
    """rmap_walk_anon: does some vma on ``av->head`` of ``mm_id`` map ``index`` at ``addr``?"""
    for avc in av.head:
        vma = avc.vma
        if type(vma) in _FREED:
            return Violation(
                CHECK,
                f"{freed_desc(vma)} is still on anon_vma{av.id}'s same_anon_vma list after "
                "being freed: expected unlink_anon_vmas before the vma is freed",
                anon_vma=av.id,
            )
        if vma.vm_mm.id != mm_id:
            continue
        a = vma.vm_start + (index - vma.vm_pgoff)
        if a == addr and vma.vm_start <= a < vma.vm_end:
            return True
    return False


def _unreachable(
    m: Monitor, page: Page, av: AnonVma, mm_id: int, addr: int, kind: str
) -> Violation:
    k = m.k
    cands = []
    for avc in av.head:
        vma = avc.vma
        if not freed(vma) and vma.vm_mm.id == mm_id:
            a = vma.vm_start + (page.index - vma.vm_pgoff)
            inside = vma.vm_start <= a < vma.vm_end
            cands.append(f"{vma_desc(vma)} gives address {a}{'' if inside else ' (outside)'}")
    seen = "; ".join(cands) if cands else f"no vma of mm{mm_id} is on that list"
    return Violation(
        CHECK,
        f"{kind} pte at {where(k, mm_id, addr)} maps {page_desc(page)}, but rmap_walk of "
        f"{av_desc(av)} cannot find it ({seen}); expected a vma of mm{mm_id} on the list "
        f"with vma_address(page, vma) == {addr}",
        pfn=page.pfn,
        mm=mm_id,
        addr=addr,
    )


def _page(m: Monitor, pfn: int) -> Violation | _Defer | None:
    k = m.k
    users = pte_users(k, pfn)
    if not users:
        return None
    page = k.pages[pfn]
    fam = _family(page)
    if fam is None or isinstance(fam, Violation):
        return fam
    av, root = fam
    for mm_id, addr, kind in users:
        r = _walk(m, av, page.index, mm_id, addr)
        if isinstance(r, Violation):
            return r
        if not r:
            if m.held(root.lock) or m.atomic("page", pfn):
                return DEFER
            return _unreachable(m, page, av, mm_id, addr, kind)
    return None


@rescan_gated
def _mm(m: Monitor, mm_id: int) -> Violation | _Defer | None:
    k = m.k
    mm = k.mms.get(mm_id)
    if mm is None or not m.rescan(CHECK, mm_id):
        return None
    defer = False
    # One live root per family: every anon_vma on a vma's chain list shares its root.
    vma = mm.mmap
    n = 0
    while vma is not None and n < MAX_VMAS and not freed(vma):
        n += 1
        chains = vma.anon_vma_chain
        anon = vma.anon_vma
        if anon is not None and freed(anon):
            return Violation(
                CHECK,
                f"{vma_desc(vma)} of {mm.name} has vma->anon_vma {freed_desc(anon)}, already "
                "freed",
                mm=mm.name,
            )
        roots: list[AnonVma] = []
        bad = ""
        for avc in chains:
            a = avc.anon_vma
            if freed(a):
                return Violation(
                    CHECK,
                    f"{vma_desc(vma)} of {mm.name} is chained to {freed_desc(a)}, already "
                    "freed: expected unlink_anon_vmas before anon_vma_free",
                    mm=mm.name,
                )
            r = a.root
            if freed(r):
                return Violation(
                    CHECK,
                    f"{vma_desc(vma)} of {mm.name} is chained to anon_vma{a.id} whose root is "
                    f"{freed_desc(r)}: expected one live root per family (the root is freed "
                    "last)",
                    mm=mm.name,
                )
            if avc.vma is not vma and not bad:
                bad = f"a chain of {vma_desc(vma)} points to {vma_desc(avc.vma)}"
            if not any(x is r for x in roots):
                roots.append(r)
        if not bad and len(roots) > 1:
            bad = (
                f"{vma_desc(vma)} of {mm.name} is chained to anon_vmas with different roots "
                f"({', '.join(av_desc(r) for r in roots)}); expected one root per family"
            )
        if not bad and anon is not None and not any(avc.anon_vma is anon for avc in chains):
            bad = f"{vma_desc(vma)} of {mm.name} has anon_vma{anon.id} but no chain to it"
        if not bad and roots and roots[0].root is not roots[0]:
            bad = f"{av_desc(roots[0])} is a root whose ->root is not itself"
        if bad:
            if m.mm_writer(mm) or any(m.held(r.lock) for r in roots) or m.atomic("mm", mm_id):
                defer = True
            else:
                return Violation(CHECK, bad, mm=mm.name)
        vma = vma.vm_next
    # Every pte of the mm is reachable (its layout changed: vm_start/vm_pgoff/chains moved).
    deferred = []
    for addr in m.mm_addrs(CHECK, mm):
        pte = mm.pgd[addr]
        if isinstance(pte, SwapPte):
            continue
        if not 0 <= pte.pfn < len(k.pages):
            continue  # reported by bad_page / migration checks
        page = k.pages[pte.pfn]
        fam = _family(page)
        if fam is None:
            continue
        if isinstance(fam, Violation):
            return fam
        av, root = fam
        found = _walk(m, av, page.index, mm_id, addr)
        if isinstance(found, Violation):
            return found
        if not found:
            if m.held(root.lock) or m.atomic("page", pte.pfn):
                deferred.append(addr)
                continue
            kind = "present" if isinstance(pte, PresentPte) else pte_kind(pte)
            return _unreachable(m, page, av, mm_id, addr, kind)
    r2 = m.defer_addrs(CHECK, mm_id, deferred)
    return DEFER if defer else r2


def _anon_vma_leak(m: Monitor) -> Violation | None:
    """With no task live, every live anon_vma is linked by a vma on an mm's list, or is the
    root of one that is: read from the vmas, not from the anon_vma's own list or refcount."""
    k = m.k
    live = k.anon_vmas_live
    if not live:
        return None
    linked: set[int] = set()
    for mm_id in sorted(k.mms):
        vma = k.mms[mm_id].mmap
        n = 0
        while vma is not None and type(vma) not in _FREED and n < MAX_VMAS:
            for avc in vma.anon_vma_chain:
                av = avc.anon_vma
                if type(av) not in _FREED:
                    linked.add(av.id)
                    if type(av.root) not in _FREED:
                        linked.add(av.root.id)
            vma = vma.vm_next
            n += 1
    for av_id in sorted(live):
        if av_id not in linked:
            av = live[av_id]
            return Violation(
                "anon_vma_leak",
                f"every task finished, but {av_desc(av)} is live and no vma links it (nor is it "
                "the root of a linked one): expected it freed when its last vma was unlinked "
                "(a leaked anon_vma)",
                anon_vma=av_desc(av),
            )
    return None


register(
    CHECK,
    "rmap",
    "every pte of an anon page is found by rmap_walk of its anon_vma; a family has one live root",
    "mm/rmap.c rmap_walk_anon()/vma_address() must find every pte (remove_migration_ptes, "
    "try_to_unmap); __page_check_anon_rmap(): BUG_ON(anon_vma->root != vma->anon_vma->root)",
    page=_page,
    mm=_mm,
)


register(
    "anon_vma_leak",
    "rmap",
    "with no task running, every live anon_vma is linked by a vma, or is the root of one that is",
    "mm/rmap.c anon_vma_unlink()/drop_anon_vma(): an anon_vma with no vma and no reference is "
    "freed (anon_vma_cachep objects return to their baseline; kmemleak: an unreferenced object)",
    at_rest=_anon_vma_leak,
)
