"""Page faults, COW and page-table copy/zap (mm/memory.c, arch/x86/mm/fault.c; 2.6.36).

User memory access is the ``read`` and ``write`` operations: a load or store by a thread of the
process.  While the pte allows it the access is done by the "hardware", in one step and without
any kernel lock (a store writes a fresh token into the frame and records it as the mm's expected
value at that address in the same step; a load checks the frame's token against it).  Otherwise
the thread takes the fault (``do_page_fault``: mmap_sem for read, find_vma, access check,
``handle_mm_fault``) and retries the access, as the CPU re-executes the instruction.

Simplifications: one page-table level (``mm.pgd``) locked by ``mm->page_table_lock`` (the
kernel's split pte locks are per table, and the model's whole mm fits in one table); read faults
allocate a zeroed private page as 2.6.24-2.6.31 did, instead of mapping the ZERO_PAGE; no
accessed/dirty bits; no file pages (a vma with vm_ops but no fault handler faults as anonymous
memory, like a driver that hands out fresh pages).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from vmfuzz.kernel.fork import get_mm, mmput
from vmfuzz.kernel.mm_types import (
    VM_LOCKED,
    VM_WRITE,
    MigrationPte,
    MmStruct,
    PresentPte,
    Pte,
    SwapPte,
    VmAreaStruct,
    pte_same,
)
from vmfuzz.kernel.ops import operation
from vmfuzz.kernel.page_alloc import (
    alloc_page,
    get_page,
    lru_cache_add_active_or_unevictable,
    put_page,
)
from vmfuzz.kernel.rmap import (
    anon_vma_prepare,
    page_add_new_anon_rmap,
    page_dup_rmap,
    page_move_anon_rmap,
    page_remove_rmap,
)

if TYPE_CHECKING:
    from vmfuzz.kernel.kernel import Kernel

Gen = Generator[Any, None, Any]

ESRCH = -3
ENOMEM = -12
EFAULT = -14
EINVAL = -22


# --------------------------------------------------------------------------- fault paths
def do_anonymous_page(k: Kernel, mm: MmStruct, vma: VmAreaStruct, addr: int, write: bool) -> Gen:
    """do_anonymous_page(): a fault on pte_none in an anonymous vma.

    anon_vma_prepare, allocate a zeroed page (may sleep, may enter reclaim), then under the pte
    lock recheck pte_none (another thread may have faulted it in meanwhile: then drop ours) and
    install it, writable if the vma is (2.6.24-2.6.31, no ZERO_PAGE).
    """
    yield from anon_vma_prepare(k, vma)
    page = yield from alloc_page(k)
    if page is None:
        return ENOMEM  # VM_FAULT_OOM
    yield k.sched.spin_lock(mm.page_table_lock)
    if addr in mm.pgd:
        k.sched.spin_unlock(mm.page_table_lock)
        put_page(k, page)
        return 0
    mm.rss += 1
    page_add_new_anon_rmap(k, page, vma, addr)
    lru_cache_add_active_or_unevictable(k, page, vma)
    k.set_pte_at(mm, addr, PresentPte(page.pfn, bool(vma.vm_flags & VM_WRITE)))
    k.sched.spin_unlock(mm.page_table_lock)
    return 0


def do_wp_page(
    k: Kernel, mm: MmStruct, vma: VmAreaStruct, addr: int, orig_pte: PresentPte
) -> Gen:
    """do_wp_page() (2.6.36): write fault on a present read-only pte in a writable vma.

    Entered with the pte lock held.  Reuse the page if we are its only user (needs the page
    lock: trylock, else drop the pte lock, sleep on it and recheck the pte); otherwise copy it
    (COW): with the pte lock dropped, allocate and copy, then retake the lock and install the
    copy only if the pte is still the one we faulted on.
    """
    ptl = mm.page_table_lock
    old_page = k.pages[orig_pte.pfn]
    if not k.sched.trylock(old_page.lock):
        get_page(k, old_page)
        k.sched.spin_unlock(ptl)
        yield k.sched.lock_page(old_page.lock)
        yield k.sched.spin_lock(ptl)
        if not pte_same(mm.pgd.get(addr), orig_pte):
            k.sched.unlock_page(old_page.lock)
            put_page(k, old_page)
            k.sched.spin_unlock(ptl)
            return 0
        put_page(k, old_page)
    from vmfuzz.kernel.swapfile import reuse_swap_page

    reuse = reuse_swap_page(k, old_page)
    if reuse:
        page_move_anon_rmap(k, old_page, vma, addr)
    k.sched.unlock_page(old_page.lock)
    k.touch_page(old_page)
    if reuse:
        k.set_pte_at(mm, addr, PresentPte(old_page.pfn, True))
        k.sched.spin_unlock(ptl)
        return 0
    # gotten: copy on write.
    get_page(k, old_page)
    k.sched.spin_unlock(ptl)
    yield from anon_vma_prepare(k, vma)
    new_page = yield from alloc_page(k)
    if new_page is None:
        put_page(k, old_page)
        return ENOMEM
    new_page.data = old_page.data  # cow_user_page()
    if vma.vm_flags & VM_LOCKED:
        # "Don't let another task, with possibly unlocked vma, keep the mlocked page"
        # (2.6.36, since b291f000 "mlock: mlocked pages are unevictable"): the copy is this
        # locked vma's, so the old page, shared with a child whose vma fork left unlocked,
        # loses PG_mlocked.
        from vmfuzz.kernel.mlock import clear_page_mlock

        yield k.sched.lock_page(old_page.lock)  # for LRU manipulation
        clear_page_mlock(k, old_page)
        k.sched.unlock_page(old_page.lock)
    yield k.sched.spin_lock(ptl)
    if pte_same(mm.pgd.get(addr), orig_pte):
        page_add_new_anon_rmap(k, new_page, vma, addr)
        lru_cache_add_active_or_unevictable(k, new_page, vma)
        k.set_pte_at(mm, addr, PresentPte(new_page.pfn, True))
        page_remove_rmap(k, old_page)
        put_page(k, old_page)  # the pte's reference ("new_page = old_page" ... release)
    else:
        put_page(k, new_page)
    put_page(k, old_page)  # ours
    k.sched.spin_unlock(ptl)
    return 0


def handle_mm_fault(
    k: Kernel, mm: MmStruct, vma: VmAreaStruct, addr: int, write: bool
) -> Gen:
    """handle_mm_fault() -> handle_pte_fault() (2.6.36).  Caller holds mmap_sem.

    The pte is read without the pte lock and dispatched on: pte_none -> do_anonymous_page; a
    swap entry -> ``swapin.do_swap_page``; a migration entry -> migration_entry_wait (the
    access is then retried); present -> under the pte lock, if it did not change and the
    fault is a write on a read-only pte, do_wp_page.  Returns 0 or a negative errno.
    """
    orig = mm.pgd.get(addr)
    if orig is None:
        return (yield from do_anonymous_page(k, mm, vma, addr, write))
    if isinstance(orig, SwapPte):
        from vmfuzz.kernel.swapin import do_swap_page

        return (yield from do_swap_page(k, mm, vma, addr, orig, write))
    if isinstance(orig, MigrationPte):
        from vmfuzz.kernel.migrate import migration_entry_wait

        yield from migration_entry_wait(k, mm, addr)
        return 0
    yield k.sched.spin_lock(mm.page_table_lock)
    if not pte_same(mm.pgd.get(addr), orig):
        k.sched.spin_unlock(mm.page_table_lock)
        return 0
    if write and not orig.write:
        return (yield from do_wp_page(k, mm, vma, addr, orig))
    k.sched.spin_unlock(mm.page_table_lock)
    return 0


def do_page_fault(k: Kernel, mm: MmStruct, addr: int, write: bool) -> Gen:
    """do_page_fault() (x86): mmap_sem for read, find_vma, access check, handle_mm_fault.

    -EFAULT (SIGSEGV) when no vma covers ``addr`` or a write hits a vma without VM_WRITE.
    """
    yield k.sched.down_read(mm.mmap_sem)
    vma = mm.find_vma(addr)
    if vma is None or vma.vm_start > addr or (write and not vma.vm_flags & VM_WRITE):
        k.sched.up_read(mm.mmap_sem)
        return EFAULT
    ret = yield from handle_mm_fault(k, mm, vma, addr, write)
    k.sched.up_read(mm.mmap_sem)
    return ret


def user_access(k: Kernel, mm_id: int, addr: int, write: bool) -> Gen:
    """A thread's load or store: done directly while the pte allows it, else fault and retry."""
    mm = get_mm(k, mm_id)
    if mm is None:
        return ESRCH
    if not 0 <= addr < k.config.pages_per_mm:
        yield from mmput(k, mm)
        return EFAULT
    yield "user_access:store" if write else "user_access:load"
    ret = 0
    while True:
        pte = mm.pgd.get(addr)
        if isinstance(pte, PresentPte) and (pte.write or not write):
            page = k.pages[pte.pfn]
            if write:
                token = k.new_token()
                page.data = token
                k.expected.setdefault(mm.id, {})[addr] = token
                k.touch_page(page)
                k.note_write(mm, addr, token, page.pfn)
            else:
                k.check_read(mm, addr, page.data, page.pfn)
            break
        ret = yield from do_page_fault(k, mm, addr, write)
        if ret < 0:
            break
    yield from mmput(k, mm)
    return ret


@operation("read", mm="mm", addr="addr")
def sys_read(k: Kernel, mm: int, addr: int) -> Gen:
    """A user load from page ``addr`` (faults as needed); checks the token read."""
    return (yield from user_access(k, mm, addr, False))


@operation("write", mm="mm", addr="addr")
def sys_write(k: Kernel, mm: int, addr: int) -> Gen:
    """A user store to page ``addr`` (faults as needed); stores a fresh token."""
    return (yield from user_access(k, mm, addr, True))


# --------------------------------------------------------------------------- copy / zap
def copy_page_range(k: Kernel, dst_mm: MmStruct, src_mm: MmStruct, vma: VmAreaStruct) -> Gen:
    """copy_page_range() -> copy_pte_range() -> copy_one_pte() (2.6.36) for one vma at fork.

    Under both pte locks (child's, then parent's nested).  A present private page is
    write-protected in the parent and shared read-only with the child (get_page +
    page_dup_rmap); a swap entry gets another reference (swap_duplicate); a write migration
    entry is made read-only on both sides.  The child's expected view of each copied address
    is the parent's at the moment of the copy.  A vma without an anon_vma has no pages.
    """
    if vma.anon_vma is None:
        return 0
    addrs = sorted(a for a in src_mm.pgd if vma.vm_start <= a < vma.vm_end)
    if not addrs:
        return 0
    yield k.sched.spin_lock(dst_mm.page_table_lock)
    yield k.sched.spin_lock(src_mm.page_table_lock)
    src_view = k.expected.setdefault(src_mm.id, {})
    dst_view = k.expected.setdefault(dst_mm.id, {})
    ret = 0
    for addr in addrs:
        pte = src_mm.pgd.get(addr)
        if pte is None:
            continue
        new: Pte
        if isinstance(pte, SwapPte):
            from vmfuzz.kernel import swapfile

            if not swapfile.swap_duplicate(k, pte.entry):
                ret = ENOMEM
                break
            new = SwapPte(pte.entry)
        elif isinstance(pte, MigrationPte):
            if pte.write:
                k.set_pte_at(src_mm, addr, MigrationPte(pte.pfn, False))
            new = MigrationPte(pte.pfn, False)
        else:
            if pte.write:
                k.set_pte_at(src_mm, addr, PresentPte(pte.pfn, False))
            page = k.pages[pte.pfn]
            get_page(k, page)
            page_dup_rmap(k, page)
            dst_mm.rss += 1
            new = PresentPte(pte.pfn, False)
        k.set_pte_at(dst_mm, addr, new)
        if addr in src_view:
            dst_view[addr] = src_view[addr]
    k.sched.spin_unlock(src_mm.page_table_lock)
    k.sched.spin_unlock(dst_mm.page_table_lock)
    return ret


def zap_pte_range(k: Kernel, vma: VmAreaStruct, start: int, end: int) -> Gen:
    """zap_pte_range() (2.6.36) for ``[start, end)`` of ``vma``, under the pte lock.

    A present page loses its mapping and the pte's reference (page_remove_rmap + the mmu_gather
    release); a swap entry is released with ``swapfile.free_swap_and_cache``; a migration entry
    is just cleared (the migrating page's lock holder cleans up).  The mm's expected view of
    the range is dropped with the ptes.  With no pte in the range there is no page table to
    lock (``pmd_none``) and the lock is not taken.
    """
    mm = vma.vm_mm
    view = k.expected.setdefault(mm.id, {})
    addrs = sorted(a for a in mm.pgd if start <= a < end)
    if not addrs:
        for addr in range(start, end):
            view.pop(addr, None)
        return
    yield k.sched.spin_lock(mm.page_table_lock)
    for addr in addrs:
        pte = k.pte_clear(mm, addr)
        view.pop(addr, None)
        if isinstance(pte, PresentPte):
            page = k.pages[pte.pfn]
            mm.rss -= 1
            page_remove_rmap(k, page)
            put_page(k, page)
        elif isinstance(pte, SwapPte):
            from vmfuzz.kernel.swapfile import free_swap_and_cache

            yield from free_swap_and_cache(k, pte.entry)
    for addr in range(start, end):
        view.pop(addr, None)
    k.sched.spin_unlock(mm.page_table_lock)


def unmap_vmas(k: Kernel, vmas: list[VmAreaStruct], start: int, end: int) -> Gen:
    """unmap_vmas(): zap ``[start, end)`` of each vma in turn (cond_resched between them)."""
    for vma in vmas:
        s = max(start, vma.vm_start)
        e = min(end, vma.vm_end)
        if s < e:
            yield from zap_pte_range(k, vma, s, e)


def change_protection(k: Kernel, vma: VmAreaStruct, start: int, end: int) -> Gen:
    """change_protection() for a vma that lost VM_WRITE: write-protect its present ptes and
    migration entries (a vma that gains VM_WRITE keeps its read-only ptes: private pages are
    made writable by the next write fault, which reuses or copies them)."""
    if vma.vm_flags & VM_WRITE:
        return
    mm = vma.vm_mm
    addrs = sorted(a for a in mm.pgd if start <= a < end)
    if not addrs:
        return
    yield k.sched.spin_lock(mm.page_table_lock)
    for addr in addrs:
        pte = mm.pgd.get(addr)
        if isinstance(pte, PresentPte) and pte.write:
            k.set_pte_at(mm, addr, PresentPte(pte.pfn, False))
        elif isinstance(pte, MigrationPte) and pte.write:
            k.set_pte_at(mm, addr, MigrationPte(pte.pfn, False))
    k.sched.spin_unlock(mm.page_table_lock)
