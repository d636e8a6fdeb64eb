"""The state a run starts from: each process's boot vma, plus optional *world features*.

A fuzzed program needs several operations just to reach an interesting state (fault a page in,
swap it out, fork a child); each costs a Hypothesis draw, and races hide behind that setup.  A
real machine is never empty, so a run may start from a populated world instead.  Every feature
is a generic property of a running system, built with the real kernel paths of the kernel under
test, bug switches and all (sequentially, on a private scheduler, before any fuzzed task runs):

===========  ======================================================================
feature      what the world has at step 0
===========  ======================================================================
swap_sync    the swap area is a SWP_SYNCHRONOUS_IO device (zram-like: swapin may
             skip the swap cache)
swapped      pages 3 and 4 of each initial process written, then reclaimed to swap
resident     pages 0 and 1 of each initial process written (faulted in, on the LRU)
forked       process 0 has forked: its child is the first new mm, and has written
             its page 0 (a COW copy, or its own page)
split        each initial process's boot vma has a hole at page 2: two vmas
===========  ======================================================================

Initial process address space with every feature (``R`` resident, ``S`` swapped, ``.`` mapped,
not faulted; boot_pages = 8)::

    page   0 1 2 3 4 5 6 7
           R R   S S . . .      vmas [0,2) and [3,8)

The features are named in ``KernelConfig.world`` and saved with every corpus case.

The world is what the kernel under test built, not a fixed kernel's: a fixed kernel's fork would
leave a pin on the anon_vma root that an old kernel (76545066c852) never takes, and the old
kernel's own exit would then never free that root.  A check that fails while the world is built
(an old munmap that detaches vmas outside page_table_lock, say) is a finding like any other:
:class:`vmfuzz.kernel.Kernel` keeps it as ``boot_violation`` and the run reports it at step 0.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from vmfuzz._scheduler import Scheduler

if TYPE_CHECKING:
    from vmfuzz.kernel.kernel import Kernel

WORLD_FEATURES = ("swap_sync", "swapped", "resident", "forked", "split")

RESIDENT_PAGES = (0, 1)
SWAPPED_PAGES = (3, 4)
SPLIT_HOLE = 2


def boot(k: Kernel) -> None:
    """Map each initial process's boot vma, then build the world features of ``k.config``.

    ``k.boot_targets`` lists the (mm, addr) pages the features populated, in build order: the
    fuzzer aims some operations at them (memory the system actually uses)."""
    from vmfuzz.kernel.ops import OPS
    from vmfuzz.kernel.vmscan import shrink_list

    n = k.config.boot_pages
    world = k.config.world
    initial = sorted(k.mms)

    def run(gen: Generator[Any, None, Any]) -> None:
        k.sched.spawn(gen)
        k.sched.run()

    def op(name: str, **args: int) -> None:
        run(OPS[name].fn(k, **args))

    main, k.sched = k.sched, Scheduler()
    try:
        if n:
            for mm_id in initial:
                op("mmap", mm=mm_id, addr=0, npages=n)
        if "swap_sync" in world:
            op("swapoff")
            op("swapon", flag=1)
        if "swapped" in world:
            pages = [a for a in SWAPPED_PAGES if a < n]
            for mm_id in initial:
                for addr in pages:
                    op("write", mm=mm_id, addr=addr)
                    k.boot_targets.append((mm_id, addr))
            run(shrink_list(k, len(pages) * len(initial), True))
        if "resident" in world:
            for mm_id in initial:
                for addr in RESIDENT_PAGES:
                    if addr < n:
                        op("write", mm=mm_id, addr=addr)
                        k.boot_targets.append((mm_id, addr))
        if "forked" in world and n:
            child = k._next_id["mm"]
            op("fork", mm=initial[0])
            op("write", mm=child, addr=0)
            k.boot_targets += [(child, a) for a in sorted(k.mms[child].pgd)]
        if "split" in world and SPLIT_HOLE < n:
            for mm_id in initial:
                op("munmap", mm=mm_id, addr=SPLIT_HOLE, npages=1)
                k.boot_targets.append((mm_id, SPLIT_HOLE + 1))  # the second vma's start
    finally:
        k.sched = main
    k.clear_dirty()
