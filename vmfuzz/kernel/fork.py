"""Process address-space lifetime: mm_users references, fork (dup_mmap) and exit (kernel/fork.c,
kernel/exit.c; 2.6.36).

An mm is shared by the threads of its process: in the model every operation that works on a
user mm is a thread of that process and holds an ``mm_users`` reference while it runs
(:func:`get_mm` ... :func:`mmput`), as ``get_task_mm``/``mmput`` pin it for other tasks.  The
process itself holds one reference (``users`` starts at 1); ``exit`` drops it, and whoever drops
the last reference (the exiting thread, another thread of the process, or a kernel thread such as
kswapd or swapoff that pinned the mm) runs ``exit_mmap``.

``fork(mm)`` creates the child as a new mm id (``Kernel.new_mm``: the first child of a run is
``nr_mms``, the id the strategies draw one past the initial mms).  The child is invisible to
operations (no user reference) until dup_mmap has finished, as a child process only runs after
fork returns; rmap walks see its vmas as soon as anon_vma_fork links them, as in the kernel.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from vmfuzz.kernel.mm_types import VM_LOCKED, MmStruct, VmAreaStruct
from vmfuzz.kernel.ops import operation

if TYPE_CHECKING:
    from vmfuzz.kernel.kernel import Kernel

Gen = Generator[Any, None, Any]

ESRCH = -3
ENOMEM = -12


def mm_exiting(mm: MmStruct) -> bool:
    """True when no thread can make syscalls on ``mm``: its process has exited, or it is a
    child still being built by fork (``mm.exiting``)."""
    return mm.exiting


def set_mm_exiting(mm: MmStruct, exiting: bool) -> None:
    mm.exiting = exiting


def get_mm(k: Kernel, mm_id: int) -> MmStruct | None:
    """Look up a live process's mm and take an mm_users reference (get_task_mm()).

    None when there is no such mm, it is being torn down (mm_users already 0, as
    ``atomic_inc_not_zero``), or its process has exited (a dead process makes no syscalls).
    Lookup and reference happen in one step, so the mm cannot go away in between.
    """
    mm = k.mms.get(mm_id)
    if mm is None or mm.dead or mm.users <= 0 or mm_exiting(mm):
        return None
    mmget(k, mm)
    return mm


def mmget(k: Kernel, mm: MmStruct) -> None:
    """atomic_inc(&mm->mm_users): the caller already holds a reference."""
    mm.users += 1
    k.touch_mm(mm)


def mmget_not_zero(k: Kernel, mm: MmStruct) -> bool:
    """atomic_inc_not_zero(&mm->mm_users): for kernel threads that find an mm on a list."""
    if mm.dead or mm.users <= 0:
        return False
    mmget(k, mm)
    return True


def mmput(k: Kernel, mm: MmStruct) -> Gen:
    """mmput(): drop a reference; the last one tears the address space down (exit_mmap)."""
    mm.users -= 1
    k.touch_mm(mm)
    if mm.users > 0:
        return
    from vmfuzz.kernel.mmap import exit_mmap

    yield from exit_mmap(k, mm)
    mm.dead = True
    k.touch_mm(mm)


# --------------------------------------------------------------------------- fork
def dup_mmap(k: Kernel, mm: MmStruct, oldmm: MmStruct) -> Gen:
    """dup_mmap() (2.6.36): copy every vma of ``oldmm`` into the new ``mm``.

    Holds oldmm's mmap_sem for write (and the new mm's, nested).  Per vma: a copy without
    VM_LOCKED (mlock is not inherited), anon_vma_fork, link into the child's list (under the
    child's page_table_lock: the vma-list writer rule of seed 004), then copy_page_range, which
    write-protects both sides of every private page (COW).
    """
    from vmfuzz.kernel.memory import copy_page_range
    from vmfuzz.kernel.mmap import vma_list_writer
    from vmfuzz.kernel.rmap import anon_vma_fork

    yield k.sched.down_write(oldmm.mmap_sem)
    yield k.sched.down_write(mm.mmap_sem)  # not linked in yet: no deadlock potential
    retval = 0
    prev: VmAreaStruct | None = None
    mpnt = oldmm.mmap
    while mpnt is not None:
        tmp = VmAreaStruct(
            k.new_id("vma"), mm, mpnt.vm_start, mpnt.vm_end, mpnt.vm_pgoff,
            mpnt.vm_flags & ~VM_LOCKED,
        )
        tmp.vm_ops = mpnt.vm_ops
        tmp.vm_file = mpnt.vm_file
        retval = yield from anon_vma_fork(k, tmp, mpnt)
        if retval:
            k.free_vma(tmp)
            break
        # Link in the new vma (the child's vma-list writer: mmap_sem + page_table_lock).
        yield k.sched.spin_lock(mm.page_table_lock)
        vma_list_writer(k, mm)
        if prev is None:
            mm.mmap = tmp
        else:
            prev.vm_next = tmp
        prev = tmp
        mm.map_count += 1
        k.touch_mm(mm)
        k.sched.spin_unlock(mm.page_table_lock)
        retval = yield from copy_page_range(k, mm, oldmm, mpnt)
        if retval:
            break
        mpnt = mpnt.vm_next
    k.sched.up_write(mm.mmap_sem)
    k.sched.up_write(oldmm.mmap_sem)
    return retval


@operation("fork", mm="mm")
def sys_fork(k: Kernel, mm: int) -> Gen:
    """fork(): a child process with a COW copy of ``mm`` (the child gets the next new mm id)."""
    oldmm = get_mm(k, mm)
    if oldmm is None:
        return ESRCH
    child = k.new_mm()  # users == 1: dup_mm's reference, the child process's on success
    k.count("fork")
    set_mm_exiting(child, True)  # the child runs no syscall before fork returns
    retval = yield from dup_mmap(k, child, oldmm)
    if retval:
        # copy failed: the half-built child is torn down, as dup_mm's mmput does.
        yield from mmput(k, child)
        k.count("fork_fail")
    else:
        set_mm_exiting(child, False)
    yield from mmput(k, oldmm)
    return child.id if not retval else retval


@operation("exit", mm="mm", destroys="mm")
def sys_exit(k: Kernel, mm: int) -> Gen:
    """exit(): the process owning ``mm`` exits; the last user of the mm tears it down."""
    m = get_mm(k, mm)
    if m is None:
        return ESRCH
    set_mm_exiting(m, True)
    k.touch_mm(m)
    yield "do_exit:exit_mm"
    yield from mmput(k, m)  # the process's own reference
    yield from mmput(k, m)  # ours (usually the last: exit_mmap runs here)
    return 0
