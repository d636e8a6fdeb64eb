"""Page migration (mm/migrate.c, 2.6.36) as memory compaction drives it: without mmap_sem.

``migrate(pfn)`` scans the frames from ``pfn`` on and isolates the first anon LRU page
(isolate_migratepages scans a pfn range under lru_lock), then runs ``unmap_and_move``:
allocate the target, lock the old page, take a reference on its anon_vma (the page will be
unmapped, and only that reference keeps the anon_vma alive: 3f6c82728f4e), replace every pte
by a migration entry (try_to_unmap), move the swap cache slot if any, copy the data and flags,
turn the migration entries into ptes of the new page (remove_migration_ptes, an rmap_walk),
unlock.  If the page could not be fully unmapped or is pinned, the migration entries are turned
back into ptes of the old page.  A fault on a migration entry sleeps until the page is unlocked
(migration_entry_wait), whose ``BUG_ON(!PageLocked(p))`` in ``migration_entry_to_page`` is
raised here as the ``migration_pte_page_locked`` violation.

Simplifications: one page per call and one pass (migrate_pages retries -EAGAIN pages up to ten
times); the old page is locked with lock_page (the "force" pass); mlocked (unevictable) pages
are not isolated, as compaction's __isolate_lru_page skips them.

Historical bug switched here: ``migrate_no_anon_vma_ref`` (3f6c82728f4e).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from vmfuzz.kernel import bugs
from vmfuzz.kernel.mm_types import (
    AnonVma,
    MigrationPte,
    MmStruct,
    Page,
    PG_active,
    PG_lru,
    PG_mlocked,
    PG_swapcache,
    PG_unevictable,
    PresentPte,
    VmAreaStruct,
)
from vmfuzz.kernel.ops import operation
from vmfuzz.kernel.page_alloc import (
    alloc_page,
    get_page,
    get_page_unless_zero,
    isolate_lru_page,
    put_page,
    putback_lru_page,
)
from vmfuzz.kernel.rmap import (
    SWAP_AGAIN,
    drop_anon_vma,
    get_anon_vma,
    page_add_anon_rmap,
    rmap_walk,
    try_to_unmap,
)
from vmfuzz.violation import Violation

if TYPE_CHECKING:
    from vmfuzz.kernel.kernel import Kernel

Gen = Generator[Any, None, Any]

ENOMEM = -12
EAGAIN = -11
EBUSY = -16
EINVAL = -22

bugs.register(
    "migrate_no_anon_vma_ref",
    "3f6c82728f4e31a97c3a1b32abccb512fed0b573",
    "unmap_and_move() takes no reference on the anon_vma (before 'mm: migration: take a "
    "reference to the anon_vma before migrating'): once try_to_unmap has replaced every pte, "
    "the process can exit and free the anon_vma, which remove_migration_ptes then walks",
    "use_after_free",
    mail_tasks=2,
    mail_preemptions=1,
)


# --------------------------------------------------------------------------- migration ptes
def remove_migration_pte(
    k: Kernel, new: Page, vma: VmAreaStruct, addr: int, old: Page
) -> Gen:
    """remove_migration_pte(): if ``addr`` in ``vma`` holds a migration entry for ``old``,
    replace it by a pte of ``new`` (same write bit) and map ``new`` there."""
    mm = vma.vm_mm
    yield k.sched.spin_lock(mm.page_table_lock)
    pte = mm.pgd.get(addr)
    if isinstance(pte, MigrationPte) and pte.pfn == old.pfn:
        get_page(k, new)
        k.set_pte_at(mm, addr, PresentPte(new.pfn, pte.write))
        mm.rss += 1
        page_add_anon_rmap(k, new, vma, addr)
    k.sched.spin_unlock(mm.page_table_lock)
    return SWAP_AGAIN


def remove_migration_ptes(k: Kernel, old: Page, new: Page) -> Gen:
    """remove_migration_ptes(): walk ``new``'s rmap and replace every migration entry for
    ``old`` by a pte of ``new`` (``new`` is ``old`` when a failed migration is undone)."""

    def one(vma: VmAreaStruct, addr: int) -> Gen:
        return remove_migration_pte(k, new, vma, addr, old)

    yield from rmap_walk(k, new, one)


def migration_entry_wait(k: Kernel, mm: MmStruct, addr: int) -> Gen:
    """migration_entry_wait() (2.6.36): a fault found a migration entry: pin the page and sleep
    until its migration unlocks it; the faulting access is then retried.

    ``migration_entry_to_page`` BUGs if the page is not locked: a migration entry is only valid
    while its page is locked.
    """
    yield k.sched.spin_lock(mm.page_table_lock)
    pte = mm.pgd.get(addr)
    if not isinstance(pte, MigrationPte):
        k.sched.spin_unlock(mm.page_table_lock)
        return
    page = k.pages[pte.pfn]
    if not page.locked:
        k.sched.spin_unlock(mm.page_table_lock)
        raise Violation(
            "migration_pte_page_locked",
            f"{mm.name} page {addr} holds a migration entry for pfn {page.pfn} which is not "
            "locked (migration_entry_to_page: BUG_ON(!PageLocked(p)))",
            mm=mm.name,
            addr=addr,
            pfn=page.pfn,
        )
    if not get_page_unless_zero(k, page):
        k.sched.spin_unlock(mm.page_table_lock)
        return
    k.sched.spin_unlock(mm.page_table_lock)
    yield k.sched.wait_event(lambda: not page.locked, "page unlocked")  # wait_on_page_locked
    put_page(k, page)


# --------------------------------------------------------------------------- moving a page
def migrate_page_move_mapping(k: Kernel, newpage: Page, page: Page) -> Gen:
    """migrate_page_move_mapping() (2.6.36): check that nobody else holds a reference (the
    isolation reference, plus the swap cache's if any) and move the swap cache slot to
    ``newpage`` under the swap cache's tree_lock."""
    if PG_swapcache not in page.flags:
        return 0 if page.count == 1 else EAGAIN
    tree_lock = k.swap.tree_lock
    yield k.sched.spin_lock(tree_lock, at="migrate_page_move_mapping")
    entry = page.private
    if page.count != 2 or entry is None or k.swap.cache.get(entry) is not page:
        k.sched.spin_unlock(tree_lock)
        return EAGAIN
    get_page(k, newpage)  # the swap cache's reference
    newpage.flags.add(PG_swapcache)
    newpage.private = entry
    k.swap.cache[entry] = newpage
    page.flags.discard(PG_swapcache)
    page.private = None
    page.count -= 1  # page_unfreeze_refs(page, expected_count - 1)
    k.touch_page(page)
    k.touch_page(newpage)
    k.touch_entry(entry)
    k.sched.spin_unlock(tree_lock)
    return 0


def migrate_page_copy(k: Kernel, newpage: Page, page: Page) -> None:
    """migrate_page_copy(): copy the data and the LRU/mlock state; the old page loses its
    mapping."""
    newpage.data = page.data
    if PG_active in page.flags:
        page.flags.discard(PG_active)
        newpage.flags.add(PG_active)
    elif PG_unevictable in page.flags:
        page.flags.discard(PG_unevictable)
        newpage.flags.add(PG_unevictable)
    if PG_mlocked in page.flags:  # mlock_migrate_page()
        page.flags.discard(PG_mlocked)
        newpage.flags.add(PG_mlocked)
    page.mapping = None
    k.touch_page(page)
    k.touch_page(newpage)


def move_to_new_page(k: Kernel, newpage: Page, page: Page, remap_swapcache: bool) -> Gen:
    """move_to_new_page(): give ``newpage`` the old page's identity and contents, then (on
    success) point the migration entries at it."""
    if not k.sched.trylock(newpage.lock):
        raise Violation("bad_page", f"new page {newpage!r} of a migration is locked (BUG)")
    newpage.index = page.index
    newpage.mapping = page.mapping
    rc = yield from migrate_page_move_mapping(k, newpage, page)
    if rc == 0:
        yield "migrate_page:copy"
        migrate_page_copy(k, newpage, page)
    if rc:
        newpage.mapping = None
    elif remap_swapcache:
        yield from remove_migration_ptes(k, page, newpage)
    k.sched.unlock_page(newpage.lock)
    k.touch_page(newpage)
    return rc


def unmap_and_move(k: Kernel, page: Page) -> Gen:
    """unmap_and_move() (2.6.36) for an isolated page (we hold the isolation reference)."""
    newpage = yield from alloc_page(k, reclaim=False)  # compaction_alloc: no watermark reclaim
    if newpage is None:
        putback_lru_page(k, page)
        return ENOMEM
    if page.count == 1:
        # Freed from under us: only the isolation reference is left.
        putback_lru_page(k, page)
        put_page(k, newpage)
        return 0
    yield k.sched.lock_page(page.lock)
    rc = EAGAIN
    anon_vma: AnonVma | None = None
    remap_swapcache = True
    do_unmap = True
    if page.mapcount <= 0:
        # 67b9509b2c68: an unmapped anon page's anon_vma may be gone; only swap cache pages
        # are migrated then, and not remapped.
        if PG_swapcache not in page.flags:
            do_unmap = False
            remap_swapcache = False
        else:
            remap_swapcache = False
    elif page.mapping is not None and not k.bug("migrate_no_anon_vma_ref"):
        # Take a reference so the anon_vma exists when the page is remapped later.
        anon_vma = page.mapping
        get_anon_vma(k, anon_vma)
    if do_unmap:
        if page.mapping is not None and page.mapcount > 0:
            yield from try_to_unmap(k, page, True)
        yield "unmap_and_move:move_to_new_page"
        if page.mapcount <= 0:
            rc = yield from move_to_new_page(k, newpage, page, remap_swapcache)
        if rc and remap_swapcache:
            yield from remove_migration_ptes(k, page, page)
    if anon_vma is not None:
        yield from drop_anon_vma(k, anon_vma)
    k.sched.unlock_page(page.lock)
    k.touch_page(page)
    putback_lru_page(k, page)  # migrated: the last reference, the old page is freed
    putback_lru_page(k, newpage)  # not migrated: this frees the new page
    k.count("migrate_success" if rc == 0 else "migrate_fail")
    return rc


def _migratable(page: Page) -> bool:
    """What compaction's __isolate_lru_page(ISOLATE_BOTH) accepts here: an anon (or swap
    cache) page on an evictable LRU list."""
    return (
        PG_lru in page.flags
        and PG_unevictable not in page.flags
        and (page.mapping is not None or PG_swapcache in page.flags)
    )


@operation("migrate", pfn="pfn")
def sys_migrate(k: Kernel, pfn: int) -> Gen:
    """Compaction scans the frames from ``pfn`` on (wrapping) and migrates the first anon LRU
    page it can isolate to a new frame, without mmap_sem."""
    n = len(k.pages)
    if not 0 <= pfn < n:
        return EINVAL
    yield k.sched.spin_lock(k.lru_lock, at="isolate_migratepages")
    page = None
    for i in range(n):
        candidate = k.pages[(pfn + i) % n]
        if _migratable(candidate) and isolate_lru_page(k, candidate):
            page = candidate
            break
    k.sched.spin_unlock(k.lru_lock)
    if page is None:
        return EBUSY
    return (yield from unmap_and_move(k, page))
