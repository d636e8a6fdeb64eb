"""The vma list and its writers (mm/mmap.c, mm/mprotect.c; 2.6.36 with the seed 004 rule).

An mm's vmas are a singly linked list sorted by ``vm_start`` (``mm.mmap``, ``vm_next``; the
model has no rbtree, ``find_vma`` walks the list).  Locking, as in the fixed kernel:

* vma-list writers (link, unlink, detach) and vma-geometry writers (``vm_start``, ``vm_end``,
  ``vm_pgoff``) hold ``mmap_sem`` for write **and** ``page_table_lock`` (Andrea in seed 004:
  "both the page_table_lock and the down_write must be held during all writes, so the reader
  can choose between a down_read or a spin_lock"; 2.4 and 2.6.0-2.6.5 readers such as
  swap_out and unuse_process walk the list under the spinlock alone).  This is asserted
  (``lock_not_held``) at every list write, as lockdep_assert_held would;
* geometry writers also hold the anon_vma lock (2.6.36: the root's, 012f18004da3) whenever a
  change can move where a page of the vma is found (vm_start / vm_pgoff, split, merge), so an
  rmap walk never sees a half-updated vma (seed 002).  Lock order: mmap_sem -> anon_vma lock
  -> page_table_lock.

The geometry fields are written one at a time with an interleaving point after each write: a
path that reads them without the locks (an rmap walk in a buggy kernel) can see ``vm_start``
moved and ``vm_pgoff`` not yet.

Historical bugs switched here: ``vma_adjust_no_anon_vma_lock`` (seed 002) and
``detach_vmas_outside_ptl`` (seed 004).  Addresses are page numbers; every mapping is MAP_FIXED
and private anonymous (``vm_pgoff == vm_start`` at mmap, as do_mmap_pgoff sets it for anon).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from vmfuzz._locks import WRITE
from vmfuzz.kernel import bugs
from vmfuzz.kernel.fork import get_mm, mmput
from vmfuzz.kernel.mm_types import (
    VM_LOCKED,
    VM_READ,
    VM_RESERVED,
    VM_SHARED,
    VM_WRITE,
    AnonVma,
    MmStruct,
    VmAreaStruct,
)
from vmfuzz.kernel.ops import operation
from vmfuzz.kernel.rmap import (
    anon_vma_clone,
    anon_vma_merge,
    lock_vma_anon_vmas,
    unlink_anon_vmas,
    unlock_vma_anon_vmas,
)

if TYPE_CHECKING:
    from vmfuzz.kernel.kernel import Kernel

Gen = Generator[Any, None, Any]

ESRCH = -3
ENOMEM = -12
EINVAL = -22

VM_SPECIAL = VM_RESERVED  # VM_IO | VM_DONTEXPAND | VM_RESERVED | VM_PFNMAP: never merged

bugs.register(
    "vma_adjust_no_anon_vma_lock",
    "002_5f4ecc6fc4dabef2.txt",
    "vma_adjust() writes vm_start and vm_pgoff without the anon_vma lock (2.6.34-rc, after the "
    "anon_vma_chain change): remove_migration_ptes' rmap_walk computes vma_address from a "
    "half-updated vma, misses a migration pte and leaves it behind after the page is unlocked "
    "(migration_pte_page_locked); the half-updated vma is already unreachable by rmap",
    "rmap_reachable",
    mail_tasks=2,
    mail_preemptions=2,
)
bugs.register(
    "detach_vmas_outside_ptl",
    "004_b331e72de9ba5495.txt",
    "do_munmap() calls detach_vmas_to_be_unmapped() before taking page_table_lock (2.6.3-mjb), "
    "so a reader that walks mm->mmap under page_table_lock alone (swap_out, unuse_process) "
    "races with the list write (swap_out's find_vma caches the vma being detached, freed "
    "next); the vma-list writer rule (mmap_sem + page_table_lock) fails",
    "lock_not_held",
    mail_tasks=2,
    mail_preemptions=1,
)


# --------------------------------------------------------------------------- list primitives
def vma_list_writer(k: Kernel, mm: MmStruct) -> None:
    """Assert the seed 004 rule: a writer of ``mm``'s vma list or vma geometry holds
    page_table_lock and (unless the mm's last user is gone: exit_mmap) mmap_sem for write."""
    k.sched.assert_held(
        mm.page_table_lock, why="vma list writers hold mmap_sem for write and page_table_lock"
    )
    if mm.users > 0:
        k.sched.assert_held(
            mm.mmap_sem, WRITE, why="vma list writers hold mmap_sem for write and page_table_lock"
        )


def vma_flags_writer(k: Kernel, mm: MmStruct) -> None:
    """Assert that a writer of a vma's ``vm_flags`` holds ``mmap_sem`` for write (unless the
    mm's last user is gone: exit_mmap).  Readers such as the fault path and reclaim's
    VM_LOCKED test rely on it; a path that changes the flags under the read lock fails
    ``lock_not_held`` at the write, as lockdep_assert_held would."""
    if mm.users > 0 and k.sched.in_send:
        k.sched.assert_held(
            mm.mmap_sem, WRITE, why="vm_flags is written under mmap_sem held for write"
        )


def find_vma_prev(mm: MmStruct, addr: int) -> tuple[VmAreaStruct | None, VmAreaStruct | None]:
    """find_vma_prev(): the first vma with vm_end > addr, and the vma before it."""
    prev = None
    vma = mm.mmap
    while vma is not None and vma.vm_end <= addr:
        prev = vma
        vma = vma.vm_next
    return vma, prev


def _find_prev(mm: MmStruct, vma: VmAreaStruct) -> VmAreaStruct | None:
    prev = None
    cur = mm.mmap
    while cur is not None and cur is not vma:
        prev = cur
        cur = cur.vm_next
    return prev


def __vma_link(k: Kernel, mm: MmStruct, vma: VmAreaStruct, prev: VmAreaStruct | None) -> None:
    """__vma_link_list() + map_count++ (caller is a vma-list writer)."""
    vma_list_writer(k, mm)
    if prev is None:
        vma.vm_next = mm.mmap
        mm.mmap = vma
    else:
        vma.vm_next = prev.vm_next
        prev.vm_next = vma
    mm.map_count += 1
    k.touch_mm(mm)


def __insert_vm_struct(k: Kernel, mm: MmStruct, vma: VmAreaStruct) -> None:
    """__insert_vm_struct(): link ``vma`` at its sorted place."""
    _, prev = find_vma_prev(mm, vma.vm_start)
    __vma_link(k, mm, vma, prev)


def __vma_unlink(k: Kernel, mm: MmStruct, vma: VmAreaStruct, prev: VmAreaStruct | None) -> None:
    """__vma_unlink() + map_count-- (caller is a vma-list writer)."""
    vma_list_writer(k, mm)
    if prev is None:
        mm.mmap = vma.vm_next
    else:
        prev.vm_next = vma.vm_next
    if mm.mmap_cache is vma:
        mm.mmap_cache = prev
    mm.map_count -= 1
    k.touch_mm(mm)


# --------------------------------------------------------------------------- vma_adjust
def vma_adjust(
    k: Kernel,
    vma: VmAreaStruct,
    start: int,
    end: int,
    pgoff: int,
    insert: VmAreaStruct | None = None,
) -> Gen:
    """vma_adjust() (2.6.36): change ``vma`` to ``[start, end)`` at ``pgoff``, inserting
    ``insert`` (split_vma) or absorbing / shifting the boundary with the next vma (vma_merge's
    cases 1-8).

    The expanding vma first gets the shrinking one's anon_vmas (anon_vma_clone) so rmap can
    find imported pages.  Then, under the anon_vma (root) lock and page_table_lock, the
    geometry fields are written one by one, the next vma adjusted, and ``insert`` linked or the
    absorbed next vma unlinked; after the locks, an absorbed vma drops its anon_vma chains and
    is freed (twice for mprotect's case 6).
    """
    mm = vma.vm_mm
    nxt = vma.vm_next
    importer: VmAreaStruct | None = None
    adjust_next = 0
    remove_next = 0
    if nxt is not None and insert is None:
        exporter: VmAreaStruct | None = None
        if end >= nxt.vm_end:
            # vma expands over all of next, and perhaps the one after too (case 6).
            remove_next = 1 + (end > nxt.vm_end)
            end = nxt.vm_end
            exporter, importer = nxt, vma
        elif end > nxt.vm_start:
            # vma expands over part of next: mprotect case 5 shifts the boundary up.
            adjust_next = end - nxt.vm_start
            exporter, importer = nxt, vma
        elif end < vma.vm_end:
            # vma shrinks and next expands: mprotect case 4 shifts the boundary down.
            adjust_next = -(vma.vm_end - end)
            exporter, importer = vma, nxt
        if exporter is not None and importer is not None:
            yield from _import_anon_vma(k, importer, exporter)
    while True:
        held = []
        locker: VmAreaStruct | None = vma if vma.anon_vma is not None else None
        if locker is None and adjust_next and nxt is not None and nxt.anon_vma is not None:
            locker = nxt
        if (
            locker is not None
            and (insert is not None or importer is not None or start != vma.vm_start)
            and not k.bug("vma_adjust_no_anon_vma_lock")
        ):
            held = yield from lock_vma_anon_vmas(k, locker)
        yield k.sched.spin_lock(mm.page_table_lock, at="vma_adjust")
        vma_list_writer(k, mm)
        if start != vma.vm_start:
            vma.vm_start = start
            k.touch_mm(mm)
            yield "vma_adjust:vm_start"
        if end != vma.vm_end:
            vma.vm_end = end
            k.touch_mm(mm)
            yield "vma_adjust:vm_end"
        if pgoff != vma.vm_pgoff:
            vma.vm_pgoff = pgoff
            k.touch_mm(mm)
            yield "vma_adjust:vm_pgoff"
        if adjust_next and nxt is not None:
            nxt.vm_start += adjust_next
            k.touch_mm(mm)
            yield "vma_adjust:next->vm_start"
            nxt.vm_pgoff += adjust_next
            k.touch_mm(mm)
        if remove_next and nxt is not None:
            __vma_unlink(k, mm, nxt, vma)
        elif insert is not None:
            __insert_vm_struct(k, mm, insert)
        k.sched.spin_unlock(mm.page_table_lock)
        unlock_vma_anon_vmas(k, held)
        if not remove_next or nxt is None:
            break
        # vma_merge has merged next into vma: drop next's anon_vmas and free it.
        if nxt.anon_vma is not None:
            yield from anon_vma_merge(k, vma, nxt)
        k.free_vma(nxt)
        if remove_next != 2:
            break
        # mprotect case 6: remove the one after too ("goto again").
        nxt = vma.vm_next
        assert nxt is not None
        remove_next = 1 + (end > nxt.vm_end)
        end = nxt.vm_end
        importer = vma
        yield from _import_anon_vma(k, vma, nxt)
    return 0


def _import_anon_vma(k: Kernel, importer: VmAreaStruct, exporter: VmAreaStruct) -> Gen:
    """vma_adjust's "easily overlooked" step: the expanding vma takes the shrinking vma's
    anon_vmas if it has none, to cover the pages it imports."""
    if exporter.anon_vma is not None and importer.anon_vma is None:
        yield from anon_vma_clone(k, importer, exporter)
        importer.anon_vma = exporter.anon_vma


def split_vma(k: Kernel, mm: MmStruct, vma: VmAreaStruct, addr: int, new_below: bool) -> Gen:
    """__split_vma() (2.6.36): split ``vma`` at ``addr``; the new vma takes the part below
    (``new_below``) or above ``addr``.  The new vma is linked to the same anon_vmas first
    (anon_vma_clone), then vma_adjust shrinks ``vma`` and inserts it."""
    new = VmAreaStruct(
        k.new_id("vma"), mm, vma.vm_start, vma.vm_end, vma.vm_pgoff, vma.vm_flags
    )
    new.vm_ops = vma.vm_ops
    new.vm_file = vma.vm_file
    new.anon_vma = vma.anon_vma
    if new_below:
        new.vm_end = addr
    else:
        new.vm_start = addr
        new.vm_pgoff += addr - vma.vm_start
    yield from anon_vma_clone(k, new, vma)
    if new_below:
        return (yield from vma_adjust(
            k, vma, addr, vma.vm_end, vma.vm_pgoff + (addr - new.vm_start), new
        ))
    return (yield from vma_adjust(k, vma, vma.vm_start, addr, vma.vm_pgoff, new))


# --------------------------------------------------------------------------- vma_merge
def _is_mergeable_vma(vma: VmAreaStruct, vm_flags: int, vm_ops: str | None) -> bool:
    return vma.vm_flags == vm_flags and vma.vm_ops is None and vm_ops is None


def _is_mergeable_anon_vma(a1: AnonVma | None, a2: AnonVma | None) -> bool:
    return a1 is None or a2 is None or a1 is a2


def _can_vma_merge_after(
    vma: VmAreaStruct, vm_flags: int, anon_vma: AnonVma | None, vm_ops: str | None, pgoff: int
) -> bool:
    return (
        _is_mergeable_vma(vma, vm_flags, vm_ops)
        and _is_mergeable_anon_vma(anon_vma, vma.anon_vma)
        and vma.vm_pgoff + (vma.vm_end - vma.vm_start) == pgoff
    )


def _can_vma_merge_before(
    vma: VmAreaStruct, vm_flags: int, anon_vma: AnonVma | None, vm_ops: str | None, pgoff: int
) -> bool:
    return (
        _is_mergeable_vma(vma, vm_flags, vm_ops)
        and _is_mergeable_anon_vma(anon_vma, vma.anon_vma)
        and vma.vm_pgoff == pgoff
    )


def vma_merge(
    k: Kernel,
    mm: MmStruct,
    prev: VmAreaStruct | None,
    addr: int,
    end: int,
    vm_flags: int,
    anon_vma: AnonVma | None,
    pgoff: int,
    vm_ops: str | None = None,
) -> Gen:
    """vma_merge() (2.6.36): can ``[addr, end)`` with these flags merge with ``prev`` and/or
    the vma after it?  Returns the merged vma or None.  VM_SPECIAL vmas never merge."""
    if vm_flags & VM_SPECIAL:
        return None
    nxt = prev.vm_next if prev is not None else mm.mmap
    area = nxt
    if nxt is not None and nxt.vm_end == end:  # cases 6, 7, 8
        nxt = nxt.vm_next
    pglen = end - addr
    if (
        prev is not None
        and prev.vm_end == addr
        and _can_vma_merge_after(prev, vm_flags, anon_vma, vm_ops, pgoff)
    ):
        if (
            nxt is not None
            and end == nxt.vm_start
            and _can_vma_merge_before(nxt, vm_flags, anon_vma, vm_ops, pgoff + pglen)
            and _is_mergeable_anon_vma(prev.anon_vma, nxt.anon_vma)
        ):  # cases 1, 6
            yield from vma_adjust(k, prev, prev.vm_start, nxt.vm_end, prev.vm_pgoff)
        else:  # cases 2, 5, 7
            yield from vma_adjust(k, prev, prev.vm_start, end, prev.vm_pgoff)
        return prev
    if (
        nxt is not None
        and end == nxt.vm_start
        and _can_vma_merge_before(nxt, vm_flags, anon_vma, vm_ops, pgoff + pglen)
    ):
        if prev is not None and addr < prev.vm_end:  # case 4
            yield from vma_adjust(k, prev, prev.vm_start, addr, prev.vm_pgoff)
        else:  # cases 3, 8
            assert area is not None
            yield from vma_adjust(k, area, addr, nxt.vm_end, nxt.vm_pgoff - pglen)
        return area
    return None


# --------------------------------------------------------------------------- mmap
def _range_ok(k: Kernel, addr: int, npages: int) -> bool:
    return npages >= 1 and 0 <= addr and addr + npages <= k.config.pages_per_mm


def do_mmap_pgoff(
    k: Kernel, mm: MmStruct, addr: int, npages: int, flags: int, vm_ops: str | None = None
) -> Gen:
    """do_mmap_pgoff() -> mmap_region() (2.6.36) for a MAP_FIXED|MAP_PRIVATE mapping of
    ``npages`` at ``addr`` with vm_flags ``flags`` (VM_READ is implied) and driver ``vm_ops``.

    The caller holds ``mm->mmap_sem`` for write (as sys_mmap_pgoff does; see :func:`vm_mmap`).
    Any old mapping in the range is unmapped first; an anonymous mapping is merged into a
    neighbour when it can be, else a new vma is linked.  Returns ``addr`` or a negative errno.
    """
    k.sched.assert_held(mm.mmap_sem, WRITE, why="do_mmap_pgoff: caller holds mmap_sem")
    if not _range_ok(k, addr, npages):
        return EINVAL
    vm_flags = flags | VM_READ
    end = addr + npages
    pgoff = addr  # anon: "pgoff = addr >> PAGE_SHIFT"
    while True:  # munmap_back: clear old maps
        vma = mm.find_vma(addr)
        if vma is not None and vma.vm_start < end:
            if (yield from do_munmap(k, mm, addr, npages)):
                return ENOMEM
            continue
        break
    _, prev = find_vma_prev(mm, addr)
    if vm_ops is None and not vm_flags & VM_SHARED:
        merged = yield from vma_merge(k, mm, prev, addr, end, vm_flags, None, pgoff)
        if merged is not None:
            return addr
    vma = VmAreaStruct(k.new_id("vma"), mm, addr, end, pgoff, vm_flags)
    vma.vm_ops = vm_ops
    yield k.sched.spin_lock(mm.page_table_lock, at="vma_link")
    __vma_link(k, mm, vma, prev)
    k.sched.spin_unlock(mm.page_table_lock)
    return addr


def vm_mmap(
    k: Kernel, mm: MmStruct, addr: int, npages: int, flags: int, vm_ops: str | None = None
) -> Gen:
    """sys_mmap_pgoff's body: do_mmap_pgoff under mmap_sem for write."""
    yield k.sched.down_write(mm.mmap_sem)
    ret = yield from do_mmap_pgoff(k, mm, addr, npages, flags, vm_ops)
    k.sched.up_write(mm.mmap_sem)
    return ret


def _sys_mmap(k: Kernel, mm_id: int, addr: int, npages: int, flags: int) -> Gen:
    mm = get_mm(k, mm_id)
    if mm is None:
        return ESRCH
    ret = yield from vm_mmap(k, mm, addr, npages, flags)
    yield from mmput(k, mm)
    return ret


@operation("mmap", mm="mm", addr="addr", npages="npages")
def sys_mmap(k: Kernel, mm: int, addr: int, npages: int) -> Gen:
    """mmap(MAP_FIXED|MAP_PRIVATE|MAP_ANONYMOUS, PROT_READ|PROT_WRITE) of npages at addr."""
    return (yield from _sys_mmap(k, mm, addr, npages, VM_READ | VM_WRITE))


@operation("mmap_reserved", mm="mm", addr="addr", npages="npages")
def sys_mmap_reserved(k: Kernel, mm: int, addr: int, npages: int) -> Gen:
    """A driver's mmap of a DMA buffer paged in lazily: a VM_RESERVED private mapping (seed 004)."""
    return (yield from _sys_mmap(k, mm, addr, npages, VM_READ | VM_WRITE | VM_RESERVED))


# --------------------------------------------------------------------------- munmap
def detach_vmas_to_be_unmapped(
    k: Kernel, mm: MmStruct, vma: VmAreaStruct, prev: VmAreaStruct | None, end: int
) -> list[VmAreaStruct]:
    """detach_vmas_to_be_unmapped(): unlink the vmas from ``vma`` up to ``end`` as one run
    (a vma-list write: the caller holds mmap_sem for write and page_table_lock)."""
    vma_list_writer(k, mm)
    detached = []
    cur: VmAreaStruct | None = vma
    while cur is not None and cur.vm_start < end:
        mm.map_count -= 1
        detached.append(cur)
        cur = cur.vm_next
    if prev is None:
        mm.mmap = cur
    else:
        prev.vm_next = cur
    detached[-1].vm_next = None
    mm.mmap_cache = None  # "Kill the cache."
    k.touch_mm(mm)
    return detached


def free_pgtables(k: Kernel, vmas: list[VmAreaStruct]) -> Gen:
    """free_pgtables(): the page tables are freed with the range (not modelled); each vma
    leaves its anon_vmas (unlink_anon_vmas)."""
    for vma in vmas:
        yield from unlink_anon_vmas(k, vma)


def unmap_region(
    k: Kernel, mm: MmStruct, vmas: list[VmAreaStruct], start: int, end: int
) -> Gen:
    """unmap_region(): zap the ptes of the detached vmas, then free_pgtables."""
    from vmfuzz.kernel.memory import unmap_vmas

    yield from unmap_vmas(k, vmas, start, end)
    yield from free_pgtables(k, vmas)


def remove_vma_list(k: Kernel, vmas: list[VmAreaStruct]) -> None:
    """remove_vma_list() -> remove_vma(): free each detached vma."""
    for vma in vmas:
        k.free_vma(vma)


def do_munmap(k: Kernel, mm: MmStruct, start: int, npages: int) -> Gen:
    """do_munmap() (2.6.36 with seed 004's fix): unmap ``[start, start+npages)``.

    Caller holds mmap_sem for write.  Split the vmas at the range's ends, munlock VM_LOCKED
    ones, detach the run of vmas (under page_table_lock: Andrea's fix in seed 004), zap their
    ptes and unlink their anon_vmas (unmap_region), then free them.
    """
    from vmfuzz.kernel.mlock import munlock_vma_pages_all

    k.sched.assert_held(mm.mmap_sem, WRITE, why="do_munmap: caller holds mmap_sem")
    if not _range_ok(k, start, npages):
        return EINVAL
    end = start + npages
    vma, prev = find_vma_prev(mm, start)
    if vma is None or vma.vm_start >= end:
        return 0
    if start > vma.vm_start:
        err = yield from split_vma(k, mm, vma, start, False)
        if err:
            return err
        prev = vma
    last = mm.find_vma(end)
    if last is not None and end > last.vm_start:
        err = yield from split_vma(k, mm, last, end, True)
        if err:
            return err
    first = prev.vm_next if prev is not None else mm.mmap
    assert first is not None
    tmp: VmAreaStruct | None = first
    while tmp is not None and tmp.vm_start < end:
        if tmp.vm_flags & VM_LOCKED:
            yield from munlock_vma_pages_all(k, tmp)
        tmp = tmp.vm_next
    if k.bug("detach_vmas_outside_ptl"):
        # 2.6.3-mjb: detach first, take page_table_lock only for unmap_region.  The model's
        # unmap_region takes the pte lock itself (and only where there are ptes), so the
        # old spin_lock before it is taken and dropped here: a reader that held
        # page_table_lock across the detach is done before any vma is zapped or freed.
        yield "do_munmap:detach_vmas_to_be_unmapped"
        detached = detach_vmas_to_be_unmapped(k, mm, first, prev, end)
        yield k.sched.spin_lock(mm.page_table_lock, at="do_munmap")
        k.sched.spin_unlock(mm.page_table_lock)
    else:
        yield k.sched.spin_lock(mm.page_table_lock, at="do_munmap")
        detached = detach_vmas_to_be_unmapped(k, mm, first, prev, end)
        k.sched.spin_unlock(mm.page_table_lock)
    yield from unmap_region(k, mm, detached, start, end)
    remove_vma_list(k, detached)
    return 0


@operation("munmap", mm="mm", addr="addr", npages="npages")
def sys_munmap(k: Kernel, mm: int, addr: int, npages: int) -> Gen:
    """munmap(addr, npages)."""
    m = get_mm(k, mm)
    if m is None:
        return ESRCH
    yield k.sched.down_write(m.mmap_sem)
    ret = yield from do_munmap(k, m, addr, npages)
    k.sched.up_write(m.mmap_sem)
    yield from mmput(k, m)
    return ret


def exit_mmap(k: Kernel, mm: MmStruct) -> Gen:
    """exit_mmap() (2.6.36): the mm's last user is gone: munlock, then unmap and free every vma.

    No mmap_sem: nobody else can reach the mm through a user reference now (rmap walks still
    can, through the anon_vmas, and they take the pte lock and the anon_vma lock).
    """
    from vmfuzz.kernel.memory import unmap_vmas
    from vmfuzz.kernel.mlock import munlock_vma_pages_all

    for vma in mm.vmas():
        if vma.vm_flags & VM_LOCKED:
            yield from munlock_vma_pages_all(k, vma)
    vmas = mm.vmas()
    if vmas:
        yield k.sched.spin_lock(mm.page_table_lock, at="exit_mmap")
        vma_list_writer(k, mm)
        mm.mmap = None
        mm.mmap_cache = None
        mm.map_count = 0
        k.touch_mm(mm)
        k.sched.spin_unlock(mm.page_table_lock)
        yield from unmap_vmas(k, vmas, 0, k.config.pages_per_mm)
        yield from free_pgtables(k, vmas)
        remove_vma_list(k, vmas)
    k.expected.setdefault(mm.id, {}).clear()


# --------------------------------------------------------------------------- mprotect
def merge_or_split(
    k: Kernel,
    mm: MmStruct,
    vma: VmAreaStruct,
    prev: VmAreaStruct | None,
    start: int,
    end: int,
    newflags: int,
) -> Gen:
    """The common head of mprotect_fixup() and mlock_fixup() (2.6.36): make ``[start, end)``
    a vma of its own that may take ``newflags``, by vma_merge with a neighbour or else by
    splitting ``vma`` at start and end.  Returns (error, the vma covering the range)."""
    pgoff = vma.vm_pgoff + (start - vma.vm_start)
    merged = yield from vma_merge(k, mm, prev, start, end, newflags, vma.anon_vma, pgoff,
                                  vma.vm_ops)
    if merged is not None:
        vma = merged
    else:
        if start != vma.vm_start:
            err = yield from split_vma(k, mm, vma, start, True)
            if err:
                return err, vma
        if end != vma.vm_end:
            err = yield from split_vma(k, mm, vma, end, False)
            if err:
                return err, vma
    return 0, vma


def mprotect_fixup(
    k: Kernel,
    mm: MmStruct,
    vma: VmAreaStruct,
    prev: VmAreaStruct | None,
    start: int,
    end: int,
    newflags: int,
) -> Gen:
    """mprotect_fixup() (2.6.36): give ``[start, end)`` of ``vma`` the flags ``newflags``:
    merge with a neighbour if possible, else split off the range; then write-protect ptes if
    VM_WRITE went away.  Returns (error, prev for the caller's loop)."""
    from vmfuzz.kernel.memory import change_protection

    if newflags == vma.vm_flags:
        return 0, vma
    err, vma = yield from merge_or_split(k, mm, vma, prev, start, end, newflags)
    if err:
        return err, vma
    vma_flags_writer(k, mm)
    vma.vm_flags = newflags
    k.touch_mm(mm)
    yield from change_protection(k, vma, start, end)
    return 0, vma


@operation("mprotect", mm="mm", addr="addr", npages="npages", flag="flag")
def sys_mprotect(k: Kernel, mm: int, addr: int, npages: int, flag: int) -> Gen:
    """mprotect(addr, npages, PROT_READ|PROT_WRITE if flag else PROT_READ)."""
    m = get_mm(k, mm)
    if m is None:
        return ESRCH
    ret = 0
    if not _range_ok(k, addr, npages):
        ret = EINVAL
    else:
        end = addr + npages
        prot = VM_READ | (VM_WRITE if flag else 0)
        yield k.sched.down_write(m.mmap_sem)
        vma, prev = find_vma_prev(m, addr)
        if vma is None or vma.vm_start > addr:
            ret = ENOMEM
        else:
            if addr > vma.vm_start:
                prev = vma
            nstart = addr
            while True:
                newflags = prot | (vma.vm_flags & ~(VM_READ | VM_WRITE))
                tmp = min(vma.vm_end, end)
                ret, prev = yield from mprotect_fixup(k, m, vma, prev, nstart, tmp, newflags)
                if ret:
                    break
                assert prev is not None
                nstart = max(tmp, prev.vm_end)
                if nstart >= end:
                    break
                nxt = prev.vm_next
                if nxt is None or nxt.vm_start != nstart:
                    ret = ENOMEM
                    break
                vma = nxt
        k.sched.up_write(m.mmap_sem)
    yield from mmput(k, m)
    return ret
