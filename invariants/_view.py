"""Read-only views of the model's state for the checks: lookups and the words messages use.

Everything here is safe on poisoned objects: a freed vma or anon_vma is recognised by its class
and never has an attribute read (that would raise ``use_after_free`` from the checker itself).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vmfuzz.kernel.mm_types import FreedAnonVma, FreedVma, MigrationPte, PresentPte

if TYPE_CHECKING:
    from vmfuzz.kernel import Kernel
    from vmfuzz.kernel.mm_types import AnonVma, MmStruct, Page, VmAreaStruct

# A vma list longer than this is a cycle (vm_next loops); sizes stay far below it.
MAX_VMAS = 1 << 16


_FREED = frozenset({FreedVma, FreedAnonVma})


def freed(obj: Any) -> bool:
    """True for a poisoned (kmem_cache_free'd) vma or anon_vma (poison() sets exactly one of
    these classes; no class derives from them)."""
    return type(obj) in _FREED


def freed_desc(obj: Any) -> str:
    """The description a poisoned object was freed with (vma range, anon_vma id)."""
    return str(object.__getattribute__(obj, "_freed_desc"))


def vma_desc(vma: VmAreaStruct | None) -> str:
    if vma is None:
        return "no vma"
    if freed(vma):
        return f"freed {freed_desc(vma)}"
    return f"vma{vma.id}[{vma.vm_start},{vma.vm_end}) pgoff {vma.vm_pgoff}"


def av_desc(av: AnonVma | None) -> str:
    if av is None:
        return "no anon_vma"
    if freed(av):
        return f"freed {freed_desc(av)}"
    return f"anon_vma{av.id}"


def vma_at(mm: MmStruct, addr: int) -> VmAreaStruct | None:
    """The vma on ``mm``'s list covering ``addr`` (None if none, or if the list is broken)."""
    vma = mm.mmap
    n = 0
    freed_types = _FREED  # freed() inlined: a check's hot path
    while vma is not None and n < MAX_VMAS:
        if type(vma) in freed_types:
            return None
        if vma.vm_start <= addr < vma.vm_end:
            return vma
        if vma.vm_start > addr:
            return None
        vma = vma.vm_next
        n += 1
    return None


def user_visible(mm: MmStruct | None) -> bool:
    """An mm whose address space a user task can still touch (not exiting, not dead)."""
    return mm is not None and not mm.dead and mm.users > 0


def where(k: Kernel, mm_id: int, addr: int) -> str:
    """``mm1 page 5 (vma3[4,8) pgoff 4)``: an address with the vma that covers it."""
    mm = k.mms.get(mm_id)
    if mm is None:
        return f"mm{mm_id} (no such mm) page {addr}"
    return f"{mm.name} page {addr} ({vma_desc(vma_at(mm, addr))})"


def page_desc(page: Page) -> str:
    """``pfn 3 (count 2, mapcount 1, PG_lru PG_swapcache, private 4, anon_vma1 index 7)``."""
    flags = " ".join(sorted(page.flags)) or "no flags"
    if page.locked:
        flags = "PG_locked " + flags
    extra = f", private {page.private}" if page.private is not None else ""
    mapping = f", {av_desc(page.mapping)} index {page.index}" if page.mapping is not None else ""
    return (
        f"pfn {page.pfn} (count {page.count}, mapcount {page.mapcount}, {flags}{extra}{mapping})"
    )


def pte_users(k: Kernel, pfn: int) -> list[tuple[int, int, str]]:
    """Every (mm id, addr, kind) whose pte maps ``pfn``: kind is "present" or "migration"."""
    present = k.present_ptes.get(pfn)
    migration = k.migration_ptes.get(pfn)
    if not migration:
        if not present:
            return []
        return [(mm, addr, "present") for mm, addr in sorted(present)]
    out = [(mm, addr, "present") for mm, addr in present or ()]
    out += [(mm, addr, "migration") for mm, addr in migration]
    out.sort()
    return out


def users_desc(k: Kernel, users: list[tuple[int, int, str]], limit: int = 4) -> str:
    parts = [f"{kind} pte at {where(k, mm, addr)}" for mm, addr, kind in users[:limit]]
    if len(users) > limit:
        parts.append(f"... {len(users) - limit} more")
    return "; ".join(parts) if parts else "no pte"


def pte_kind(pte: object) -> str:
    if isinstance(pte, PresentPte):
        return "present"
    if isinstance(pte, MigrationPte):
        return "migration"
    return "swap"


def on_list(page: Page, pages: list[Page]) -> bool:
    """Identity membership (struct page addresses), never equality."""
    return any(p is page for p in pages)


def lru_lists_of(k: Kernel, page: Page) -> list[str]:
    """Names of the LRU lists ``page`` is on (normally zero or one)."""
    return [name for name in sorted(k.lru) if on_list(page, k.lru[name])]
