"""Reverse mapping of anonymous pages (mm/rmap.c, 2.6.36 anon_vma + anon_vma_chain rules).

Every anonymous page points (``page.mapping``) at an anon_vma; every vma that may map pages of
that anon_vma is linked to it by an anon_vma_chain (``anon_vma.head`` lists them, oldest first,
as ``list_add_tail`` queues them; ``vma.anon_vma_chain`` lists a vma's chains newest first).
A fork family shares one *root* anon_vma, and in the fixed kernel (2.6.36, commit 012f18004da3
"mm: always lock the root (oldest) anon_vma", after Linus's idea in seed 003) every lock of any
anon_vma is ``anon_vma->root->lock``: one lock serialises the whole family, so an rmap walk
excludes every vma_adjust of every vma that can map the page.  A child anon_vma pins its root
with a reference (commit 76545066c852 "mm: extend KSM refcounts to the anon_vma root").

Simplifications: ``find_mergeable_anon_vma`` is not modelled (a vma without an anon_vma always
gets a fresh one); SLAB_DESTROY_BY_RCU type-stability is not modelled, a freed anon_vma is
poisoned, so any use of it after ``anon_vma_free`` is reported (``page_lock_anon_vma`` is
written so that the fixed kernel never touches an anon_vma that may have been freed while it
waited for the lock: it rechecks ``page_mapped`` under the lock, as Hugh's 2.6.36 fix does).

Historical bugs switched here (see :mod:`vmfuzz.kernel.bugs`):
``anon_vma_lock_not_root`` and ``anon_vma_trylock_retry`` (seed 003), ``try_to_unmap_ignores_
reserved`` (seed 004) and ``anon_vma_root_not_pinned`` (76545066c852).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from vmfuzz._locks import READ, Lock
from vmfuzz._scheduler import kernel_function
from vmfuzz.kernel import bugs
from vmfuzz.kernel.mm_types import (
    VM_LOCKED,
    VM_RESERVED,
    AnonVma,
    AnonVmaChain,
    MigrationPte,
    Page,
    PG_swapcache,
    PresentPte,
    SwapPte,
    VmAreaStruct,
)
from vmfuzz.kernel.page_alloc import put_page
from vmfuzz.violation import Violation

if TYPE_CHECKING:
    from vmfuzz.kernel.kernel import Kernel

Gen = Generator[Any, None, Any]
RmapOne = Callable[[VmAreaStruct, int], Gen]

SWAP_SUCCESS = "SWAP_SUCCESS"
SWAP_AGAIN = "SWAP_AGAIN"
SWAP_FAIL = "SWAP_FAIL"
SWAP_MLOCK = "SWAP_MLOCK"  # internal to rmap/mlock; try_to_unmap reports it as SWAP_FAIL

bugs.register(
    "anon_vma_lock_not_root",
    "003_53b3b15ba9e43027.txt",
    "anon_vma_lock() takes the immediate anon_vma's lock instead of the root's (2.6.34): "
    "vma_adjust on a forked child's vma and rmap_walk on a pre-fork page hold different locks, "
    "so remove_migration_ptes misses a pte while the child's vm_start/vm_pgoff are half updated "
    "(migration_pte_page_locked); the half-updated vma is already unreachable by rmap",
    "rmap_reachable",
    mail_tasks=2,
    mail_preemptions=2,
)
bugs.register(
    "anon_vma_trylock_retry",
    "003_53b3b15ba9e43027.txt",
    "Mel's trylock-and-retry scheme (2.6.34-rc): per-anon_vma locks, rmap_walk holds the page's "
    "anon_vma and trylocks each vma's own, vma_adjust holds its own and trylocks the rest of "
    "its chain; on failure both back off and retry, and can retry forever in lock step",
    "livelock",
    mail_tasks=2,
)
bugs.register(
    "try_to_unmap_ignores_reserved",
    "004_b331e72de9ba5495.txt",
    "try_to_unmap_one refuses only VM_LOCKED vmas, not VM_RESERVED (2.6.3 objrmap before "
    "Andrea's fix), so reclaim or migration unmaps a driver's DMA page from a VM_RESERVED vma",
    "reserved_pte_cleared",
    mail_tasks=1,
    mail_preemptions=0,
    also=("reserved_page_pinned",),  # the migration path: the DMA page moved
)
bugs.register(
    "anon_vma_root_not_pinned",
    "76545066c8521f3e32c849744744842b4df25b79",
    "a child anon_vma does not pin its root (before 'mm: extend KSM refcounts to the anon_vma "
    "root'): when migration holds the child's anon_vma while both processes exit, the root "
    "is freed and the child's lock, which lives in the root, is used after free",
    "use_after_free",
    mail_tasks=2,
    mail_preemptions=1,
)


# --------------------------------------------------------------------------- anon_vma objects
def live_anon_vmas(k: Kernel) -> list[AnonVma]:
    """Every anon_vma allocated and not yet freed in ``k``, by id (for leak checks)."""
    return [av for _, av in sorted(k.anon_vmas_live.items())]


def anon_vma_alloc(k: Kernel) -> AnonVma:
    """anon_vma_alloc(): a new anon_vma, its own root, no chains, no references."""
    av = AnonVma(k.new_id("anon_vma"))
    k.anon_vmas_live[av.id] = av
    k.count("anon_vma_alloc")
    return av


def anon_vma_free(k: Kernel, anon_vma: AnonVma) -> None:
    """anon_vma_free(): poison it (any later use is a use-after-free)."""
    k.anon_vmas_live.pop(anon_vma.id, None)
    k.free_anon_vma(anon_vma)


def _trylock_scheme(k: Kernel) -> bool:
    return k.bug("anon_vma_trylock_retry")


def anon_vma_lockptr(k: Kernel, anon_vma: AnonVma) -> Lock:
    """The lock anon_vma_lock() takes: ``anon_vma->root->lock`` (2.6.36), or the anon_vma's own
    lock under the 2.6.34 schemes (``anon_vma_lock_not_root``, ``anon_vma_trylock_retry``)."""
    if k.bug("anon_vma_lock_not_root") or _trylock_scheme(k):
        return anon_vma.lock
    return anon_vma.root.lock


def anon_vma_lock(k: Kernel, anon_vma: AnonVma, at: str | None = None) -> Gen:
    """anon_vma_lock(): spin_lock(&anon_vma->root->lock)."""
    if at is None:
        at = kernel_function(1)
    yield k.sched.spin_lock(anon_vma_lockptr(k, anon_vma), at=at)


def anon_vma_unlock(k: Kernel, anon_vma: AnonVma) -> None:
    """anon_vma_unlock()."""
    k.sched.spin_unlock(anon_vma_lockptr(k, anon_vma))


def anon_vma_list_writer(k: Kernel, anon_vma: AnonVma) -> None:
    """Assert that the running task holds the lock anon_vma_lock() takes for ``anon_vma``:
    ``anon_vma->head`` is written only under it (mm/rmap.c: anon_vma_chain_link,
    anon_vma_prepare, anon_vma_unlink), as rmap walkers rely on.  A path that links or
    unlinks a chain without it fails ``lock_not_held`` at the write, as lockdep_assert_held
    would, whether or not a walker races with it."""
    k.sched.assert_held(
        anon_vma_lockptr(k, anon_vma), why="anon_vma->head is written under the anon_vma lock"
    )


def get_anon_vma(k: Kernel, anon_vma: AnonVma) -> None:
    """get_anon_vma(): atomic_inc(&anon_vma->external_refcount)."""
    anon_vma.refcount += 1


def _atomic_dec_and_lock(k: Kernel, anon_vma: AnonVma, lock: Lock) -> Gen:
    """atomic_dec_and_lock(&anon_vma->external_refcount, lock): True with ``lock`` held when the
    count dropped to zero."""
    if anon_vma.refcount > 1:
        anon_vma.refcount -= 1
        return False
    yield k.sched.spin_lock(lock, at="drop_anon_vma")
    anon_vma.refcount -= 1
    if anon_vma.refcount == 0:
        return True
    k.sched.spin_unlock(lock)
    return False


def drop_anon_vma(k: Kernel, anon_vma: AnonVma) -> Gen:
    """drop_anon_vma() (2.6.36): drop an external reference; free the anon_vma if that was the
    last user, and then its root if this dropped the root's last pin."""
    lock = anon_vma_lockptr(k, anon_vma)
    if not (yield from _atomic_dec_and_lock(k, anon_vma, lock)):
        return
    root = anon_vma.root
    empty = not anon_vma.head
    last_root_user = False
    root_empty = False
    if empty and anon_vma is not root and not k.bug("anon_vma_root_not_pinned"):
        root.refcount -= 1
        last_root_user = root.refcount == 0
        root_empty = not root.head
    k.sched.spin_unlock(lock)
    if empty:
        anon_vma_free(k, anon_vma)
        if root_empty and last_root_user:
            anon_vma_free(k, root)


# --------------------------------------------------------------------------- chains
def anon_vma_chain_link(k: Kernel, vma: VmAreaStruct, anon_vma: AnonVma) -> Gen:
    """anon_vma_chain_link(): link ``vma`` to ``anon_vma`` (same_vma at the head of the vma's
    list, same_anon_vma at the tail of the anon_vma's list, under the anon_vma lock)."""
    avc = AnonVmaChain(vma, anon_vma)
    vma.anon_vma_chain.insert(0, avc)
    yield from anon_vma_lock(k, anon_vma)
    anon_vma_list_writer(k, anon_vma)
    anon_vma.head.append(avc)
    anon_vma_unlock(k, anon_vma)


def anon_vma_prepare(k: Kernel, vma: VmAreaStruct) -> Gen:
    """anon_vma_prepare() (2.6.36): give ``vma`` an anon_vma before its first anon page.

    Two threads of one mm may fault in the same vma at once: both allocate, the one that
    finds ``vma->anon_vma`` still NULL under anon_vma lock + page_table_lock installs its own,
    the other frees its allocation.  Returns 0 (slab allocations do not fail in the model).
    """
    if vma.anon_vma is not None:
        return 0
    mm = vma.vm_mm
    anon_vma = anon_vma_alloc(k)  # find_mergeable_anon_vma() not modelled
    allocated: AnonVma | None = anon_vma
    yield from anon_vma_lock(k, anon_vma)
    yield k.sched.spin_lock(mm.page_table_lock)
    if vma.anon_vma is None:
        vma.anon_vma = anon_vma
        avc = AnonVmaChain(vma, anon_vma)
        vma.anon_vma_chain.insert(0, avc)
        anon_vma_list_writer(k, anon_vma)
        anon_vma.head.append(avc)
        allocated = None
    k.sched.spin_unlock(mm.page_table_lock)
    anon_vma_unlock(k, anon_vma)
    if allocated is not None:
        anon_vma_free(k, allocated)
    return 0


def anon_vma_clone(k: Kernel, dst: VmAreaStruct, src: VmAreaStruct) -> Gen:
    """anon_vma_clone(): link ``dst`` to every anon_vma ``src`` is linked to, oldest first
    (so ``dst``'s chain ends up in the same newest-first order)."""
    for pavc in list(reversed(src.anon_vma_chain)):
        yield from anon_vma_chain_link(k, dst, pavc.anon_vma)
    return 0


def anon_vma_fork(k: Kernel, vma: VmAreaStruct, pvma: VmAreaStruct) -> Gen:
    """anon_vma_fork() (2.6.36): link the child's ``vma`` to all the parent's anon_vmas (so rmap
    finds not-yet-COWed pages in the child), then give it its own anon_vma whose root is the
    parent's root, pinned by a reference (76545066c852), for the pages it COWs."""
    if pvma.anon_vma is None:
        return 0
    yield from anon_vma_clone(k, vma, pvma)
    anon_vma = anon_vma_alloc(k)
    anon_vma.root = pvma.anon_vma.root
    if not k.bug("anon_vma_root_not_pinned"):
        get_anon_vma(k, anon_vma.root)
    vma.anon_vma = anon_vma
    yield from anon_vma_chain_link(k, vma, anon_vma)
    return 0


def anon_vma_unlink(k: Kernel, avc: AnonVmaChain) -> Gen:
    """anon_vma_unlink(): take ``avc`` off its anon_vma's list; free the anon_vma when no chain
    and no external reference is left (dropping its pin on the root first)."""
    anon_vma = avc.anon_vma
    yield from anon_vma_lock(k, anon_vma)
    anon_vma_list_writer(k, anon_vma)
    for i, a in enumerate(anon_vma.head):
        if a is avc:
            del anon_vma.head[i]
            break
    empty = not anon_vma.head and anon_vma.refcount == 0
    anon_vma_unlock(k, anon_vma)
    if empty:
        if anon_vma.root is not anon_vma and not k.bug("anon_vma_root_not_pinned"):
            yield from drop_anon_vma(k, anon_vma.root)
        anon_vma_free(k, anon_vma)


def unlink_anon_vmas(k: Kernel, vma: VmAreaStruct) -> Gen:
    """unlink_anon_vmas(): unlink every chain of ``vma``, newest first, so the root goes last."""
    for avc in list(vma.anon_vma_chain):
        yield from anon_vma_unlink(k, avc)
        vma.anon_vma_chain.remove(avc)


def anon_vma_merge(k: Kernel, vma: VmAreaStruct, next_vma: VmAreaStruct) -> Gen:
    """anon_vma_merge(): ``next_vma`` was merged into ``vma``: drop next's chains."""
    if vma.anon_vma is not next_vma.anon_vma:
        raise Violation(
            "bad_vma",
            f"anon_vma_merge of {vma.describe()} and {next_vma.describe()} with different "
            "anon_vmas (VM_BUG_ON)",
        )
    yield from unlink_anon_vmas(k, next_vma)


# --------------------------------------------------------------------------- page <-> rmap
def linear_page_index(vma: VmAreaStruct, addr: int) -> int:
    """linear_page_index(): the page offset of ``addr`` in the vma's linear (anon) space."""
    return addr - vma.vm_start + vma.vm_pgoff


def vma_address(page: Page, vma: VmAreaStruct) -> int | None:
    """vma_address(): where ``page`` would be mapped in ``vma``, or None (-EFAULT).

    Reads ``vm_start`` then ``vm_pgoff``: racing a vma_adjust that has written one and not the
    other, it computes a wrong address (the seed 002 race).
    """
    address = vma.vm_start + (page.index - vma.vm_pgoff)
    if address < vma.vm_start or address >= vma.vm_end:
        return None
    return address


def __page_set_anon_rmap(page: Page, vma: VmAreaStruct, addr: int, exclusive: bool) -> None:
    anon_vma = vma.anon_vma
    if anon_vma is None:
        raise Violation("bad_vma", f"anon page mapped into {vma.describe()} without anon_vma")
    if not exclusive:
        if page.mapping is not None:
            return
        anon_vma = anon_vma.root
    page.mapping = anon_vma
    page.index = linear_page_index(vma, addr)


def page_add_new_anon_rmap(k: Kernel, page: Page, vma: VmAreaStruct, addr: int) -> None:
    """page_add_new_anon_rmap(): first mapping of a freshly allocated page, exclusive to the
    vma's own anon_vma.  As since 3.16, the caller puts the page on the LRU itself
    (``page_alloc.lru_cache_add_active_or_unevictable``; 2.6.36 did it in here)."""
    page.mapcount = 1
    __page_set_anon_rmap(page, vma, addr, True)
    k.touch_page(page)


def page_add_anon_rmap(k: Kernel, page: Page, vma: VmAreaStruct, addr: int) -> None:
    """page_add_anon_rmap(): map an existing anon (or swap cache) page once more; the first
    mapping of a page that has no anon_vma yet points it at the vma's root anon_vma.  The
    caller holds the page lock (``VM_BUG_ON(!PageLocked(page))``: the page's anon_vma and
    index are set or checked under it), asserted for a task's call (``lock_not_held``)."""
    if k.sched.in_send:
        k.sched.assert_held(page.lock, why="page_add_anon_rmap: VM_BUG_ON(!PageLocked(page))")
    page.mapcount += 1
    if page.mapcount == 1:
        __page_set_anon_rmap(page, vma, addr, False)
    k.touch_page(page)


def page_dup_rmap(k: Kernel, page: Page) -> None:
    """page_dup_rmap(): fork shares a mapped page with the child."""
    page.mapcount += 1
    k.touch_page(page)


def page_remove_rmap(k: Kernel, page: Page) -> None:
    """page_remove_rmap(): one pte less.  ``mapping`` is left set (migration and swapoff still
    need it; free_hot_cold_page resets it)."""
    if page.mapcount <= 0:
        raise Violation(
            "bad_page",
            f"page_remove_rmap on unmapped {page!r} (mapcount {page.mapcount})",
            pfn=page.pfn,
        )
    page.mapcount -= 1
    k.touch_page(page)


def page_move_anon_rmap(k: Kernel, page: Page, vma: VmAreaStruct, addr: int) -> None:
    """page_move_anon_rmap(): do_wp_page reuses an exclusively owned page: it now belongs to
    the faulting vma's own anon_vma."""
    if vma.anon_vma is None:
        raise Violation("bad_vma", f"page_move_anon_rmap into {vma.describe()} without anon_vma")
    page.mapping = vma.anon_vma
    k.touch_page(page)


def page_lock_anon_vma(k: Kernel, page: Page) -> Gen:
    """page_lock_anon_vma() (2.6.36 with Hugh's recheck): lock the root of the page's anon_vma.

    Returns the (immediate) anon_vma, locked through its root, or None when the page is not
    mapped.  ``page->mapping`` is only trustworthy while the page is mapped, and the anon_vma
    may be freed while we spin for the lock: so the lock is looked up before spinning and
    ``page_mapped`` is rechecked after, and the anon_vma is not touched if it failed.
    """
    anon_vma = page.mapping
    if anon_vma is None or page.mapcount <= 0:
        return None
    lock = anon_vma_lockptr(k, anon_vma)
    yield k.sched.spin_lock(lock, at=kernel_function(1))
    if page.mapcount <= 0:
        k.sched.spin_unlock(lock)
        return None
    return anon_vma


def page_unlock_anon_vma(k: Kernel, anon_vma: AnonVma) -> None:
    """page_unlock_anon_vma()."""
    anon_vma_unlock(k, anon_vma)


# --------------------------------------------------------------------------- try_to_unmap
def _out_mlock(k: Kernel, page: Page, vma: VmAreaStruct) -> str:
    """try_to_unmap_one's out_mlock: VM_LOCKED is only trustworthy under mmap_sem, which we may
    only trylock here; if it holds, mlock the page so vmscan culls it to the unevictable list."""
    from vmfuzz.kernel.mlock import mlock_vma_page

    mm = vma.vm_mm
    if k.sched.trylock(mm.mmap_sem, READ):
        ret = SWAP_FAIL
        if vma.vm_flags & VM_LOCKED:
            mlock_vma_page(k, page)
            ret = SWAP_MLOCK
        k.sched.up_read(mm.mmap_sem)
        return ret
    return SWAP_FAIL


def try_to_unmap_one(
    k: Kernel, page: Page, vma: VmAreaStruct, address: int, migration: bool
) -> Gen:
    """try_to_unmap_one() (2.6.36, with seed 004's VM_RESERVED check).

    Under the pte lock (``page_check_address``): refuse a VM_RESERVED vma (a driver's DMA
    region, seed 004) and, for reclaim, a VM_LOCKED one; otherwise clear the pte and install a
    migration entry (migration) or the page's swap entry (reclaim: the page must be in the
    swap cache; ``swap_duplicate`` takes the pte's reference on the slot).
    """
    mm = vma.vm_mm
    yield k.sched.spin_lock(mm.page_table_lock)
    pte = mm.pgd.get(address)
    if not (isinstance(pte, PresentPte) and pte.pfn == page.pfn):
        k.sched.spin_unlock(mm.page_table_lock)
        return SWAP_AGAIN
    if not migration and vma.vm_flags & VM_LOCKED:
        k.sched.spin_unlock(mm.page_table_lock)
        return _out_mlock(k, page, vma)
    if vma.vm_flags & VM_RESERVED and not k.bug("try_to_unmap_ignores_reserved"):
        # seed 004, Andrea: "if (vma->vm_flags & (VM_LOCKED|VM_RESERVED))"
        k.sched.spin_unlock(mm.page_table_lock)
        return SWAP_FAIL
    new: MigrationPte | SwapPte
    if migration:
        new = MigrationPte(page.pfn, pte.write)
    else:
        if PG_swapcache not in page.flags or page.private is None:
            k.sched.spin_unlock(mm.page_table_lock)
            raise Violation(
                "bad_page",
                f"try_to_unmap for reclaim of {page!r} which is not in the swap cache (BUG_ON)",
                pfn=page.pfn,
            )
        from vmfuzz.kernel import swapfile

        if not swapfile.swap_duplicate(k, page.private):
            k.sched.spin_unlock(mm.page_table_lock)
            return SWAP_FAIL
        new = SwapPte(page.private)
        swapfile.note_reclaim_unmap(k, mm, address)
    k.set_pte_at(mm, address, new)
    mm.rss -= 1
    page_remove_rmap(k, page)
    put_page(k, page)
    k.sched.spin_unlock(mm.page_table_lock)
    return SWAP_AGAIN


def try_to_unmap(k: Kernel, page: Page, migration: bool) -> Gen:
    """try_to_unmap() -> try_to_unmap_anon() (2.6.36): unmap ``page`` from every pte.

    The caller holds the page lock.  Returns ``SWAP_SUCCESS`` (no pte left), ``SWAP_AGAIN``
    (some left, try later) or ``SWAP_FAIL`` (a vma refuses: VM_LOCKED for reclaim, VM_RESERVED).
    Migration ignores VM_LOCKED (TTU_IGNORE_MLOCK).
    """
    k.sched.assert_held(page.lock, why="try_to_unmap: BUG_ON(!PageLocked(page))")
    ret = SWAP_AGAIN
    anon_vma = yield from page_lock_anon_vma(k, page)
    if anon_vma is not None:
        for avc in list(anon_vma.head):
            vma = avc.vma
            address = vma_address(page, vma)
            if address is None:
                continue
            ret = yield from try_to_unmap_one(k, page, vma, address, migration)
            if ret != SWAP_AGAIN or page.mapcount <= 0:
                break
        page_unlock_anon_vma(k, anon_vma)
    if ret != SWAP_MLOCK and page.mapcount <= 0:
        return SWAP_SUCCESS
    return SWAP_FAIL if ret == SWAP_MLOCK else ret


def try_to_munlock(k: Kernel, page: Page) -> Gen:
    """try_to_munlock() (try_to_unmap_anon with TTU_MUNLOCK): does any other VM_LOCKED vma
    still map ``page``?  If so it is mlocked again and ``SWAP_MLOCK`` returned."""
    k.sched.assert_held(page.lock, why="try_to_munlock: VM_BUG_ON(!PageLocked(page))")
    anon_vma = yield from page_lock_anon_vma(k, page)
    if anon_vma is None:
        return SWAP_AGAIN
    ret = SWAP_AGAIN
    for avc in list(anon_vma.head):
        vma = avc.vma
        address = vma_address(page, vma)
        if address is None:
            continue
        mm = vma.vm_mm
        yield k.sched.spin_lock(mm.page_table_lock)
        pte = mm.pgd.get(address)
        maps = isinstance(pte, PresentPte) and pte.pfn == page.pfn
        k.sched.spin_unlock(mm.page_table_lock)
        if maps and vma.vm_flags & VM_LOCKED:
            ret = _out_mlock(k, page, vma)
            if ret == SWAP_MLOCK:
                break
            ret = SWAP_AGAIN
    page_unlock_anon_vma(k, anon_vma)
    return ret


# --------------------------------------------------------------------------- rmap_walk
def rmap_walk(k: Kernel, page: Page, rmap_one: RmapOne) -> Gen:
    """rmap_walk() -> rmap_walk_anon() (2.6.36): call ``rmap_one(vma, address)`` for every vma
    that may map ``page``, under the anon_vma (root) lock.  Used by remove_migration_ptes,
    where the page is unmapped, so page_lock_anon_vma's page_mapped test cannot be used: the
    caller must keep the anon_vma alive (migration holds a reference on it)."""
    anon_vma = page.mapping
    if anon_vma is None:
        return SWAP_AGAIN
    if _trylock_scheme(k):
        return (yield from _rmap_walk_anon_trylock(k, page, anon_vma, rmap_one))
    ret = SWAP_AGAIN
    yield from anon_vma_lock(k, anon_vma)
    for avc in list(anon_vma.head):
        vma = avc.vma
        address = vma_address(page, vma)
        if address is None:
            continue
        ret = yield from rmap_one(vma, address)
        if ret != SWAP_AGAIN:
            break
    anon_vma_unlock(k, anon_vma)
    return ret


def _backoff(k: Kernel, held: list[Lock], contended: Lock, where: str) -> Gen:
    """The retry half of the trylock-and-retry scheme: with ``contended`` busy, drop every
    anon_vma lock taken so far, note a retry, and spin (cpu_relax) until the contended lock
    looks free before starting over.  Between the failed trylock and the unlock another CPU
    can run: both CPUs may fail against each other and back off in lock step, forever."""
    yield f"{where}:trylock_failed"
    for lock in reversed(held):
        k.sched.spin_unlock(lock)
    yield k.sched.retry(f"{where}:retry")
    yield k.sched.wait_event(lambda: contended.owner is None, "anon_vma lock", at=where)


def _rcu_anon_vma_lock(anon_vma: AnonVma) -> Lock:
    """``&vma->anon_vma->lock`` read under rcu_read_lock (migration holds it in 2.6.34): the
    walker holds only the page's anon_vma lock, so the vma's own anon_vma may already have been
    freed by unlink_anon_vmas (which frees it before unlinking the vma from the older ones);
    SLAB_DESTROY_BY_RCU keeps its lock word a valid anon_vma lock, so taking it is harmless.
    The only place the model reads a possibly freed anon_vma without reporting it."""
    lock: Lock = object.__getattribute__(anon_vma, "lock")
    return lock


def _rmap_walk_anon_trylock(k: Kernel, page: Page, anon_vma: AnonVma, rmap_one: RmapOne) -> Gen:
    """rmap_walk_anon with Mel's 2.6.34-rc trylock-and-retry (bug ``anon_vma_trylock_retry``):
    hold the page's anon_vma lock and, for each vma whose own anon_vma differs, trylock that
    one too while reading its geometry; if it is busy, back off and restart the walk."""
    ret = SWAP_AGAIN
    while True:
        yield k.sched.spin_lock(anon_vma.lock, at="rmap_walk_anon")
        restarted = False
        for avc in list(anon_vma.head):
            vma = avc.vma
            other = vma.anon_vma if vma.anon_vma is not anon_vma else None
            other_lock = _rcu_anon_vma_lock(other) if other is not None else None
            if other_lock is not None:
                yield "rmap_walk_anon:trylock(vma->anon_vma)"
                if not k.sched.trylock(other_lock):
                    yield from _backoff(k, [anon_vma.lock], other_lock, "rmap_walk_anon")
                    restarted = True
                    break
            address = vma_address(page, vma)
            if other_lock is not None:
                k.sched.spin_unlock(other_lock)
            if address is None:
                continue
            ret = yield from rmap_one(vma, address)
            if ret != SWAP_AGAIN:
                break
        if not restarted:
            break
    k.sched.spin_unlock(anon_vma.lock)
    return ret


def lock_vma_anon_vmas(k: Kernel, vma: VmAreaStruct) -> Gen:
    """Lock what vma_adjust needs to exclude rmap walks of pages ``vma`` may map; returns the
    locks held, to pass to :func:`unlock_vma_anon_vmas`.

    Fixed kernel: the root lock (one lock for the family).  ``anon_vma_lock_not_root``: the
    vma's own anon_vma lock.  ``anon_vma_trylock_retry``: the vma's own anon_vma lock, then
    trylock every other anon_vma on its chain, backing off and retrying on contention.
    """
    anon_vma = vma.anon_vma
    assert anon_vma is not None
    if not _trylock_scheme(k):
        lock = anon_vma_lockptr(k, anon_vma)
        yield k.sched.spin_lock(lock, at="vma_adjust")
        return [lock]
    while True:
        yield k.sched.spin_lock(anon_vma.lock, at="vma_adjust")
        held: list[Lock] = [anon_vma.lock]
        failed = None
        for avc in list(vma.anon_vma_chain):
            other = avc.anon_vma
            if other is anon_vma:
                continue
            yield "vma_adjust:trylock(anon_vma)"
            if not k.sched.trylock(other.lock):
                failed = other.lock
                break
            held.append(other.lock)
        if failed is None:
            return held
        yield from _backoff(k, held, failed, "vma_adjust")


def unlock_vma_anon_vmas(k: Kernel, held: list[Lock]) -> None:
    for lock in reversed(held):
        k.sched.spin_unlock(lock)
