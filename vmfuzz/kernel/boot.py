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
shortage     free memory is short: the zone's min watermark is a quarter of the frames, and
             an allocation at or below it first reclaims in the allocating task
             (direct reclaim: try_to_free_pages, 2.4 swap_out of the biggest mm, the
             allocating task's own included)
===========  ======================================================================

Initial process address space with every feature (``R`` resident, ``S`` swapped, ``.`` mapped,
not faulted; boot_pages = 8)::

    page   0 1 2 3 4 5 6 7
           R R   S S . . .      vmas [0,2) and [3,8)

The features are named in ``KernelConfig.world`` and saved with every corpus case.

``shortage`` changes no page: it sets ``k.pages_min`` (zone->pages_min) after the rest of the
world is built.  The model has no accessed bits (2.4 try_to_swap_out's young-pte aging), so
reclaim in a fault may take the page that fault has just mapped and the fault retries: a
program can thrash until the step budget (a ``budget`` outcome, never a check).  Measured on
300 random fixed-kernel programs with the feature on: at half the frames 1 thrashed (1019
direct reclaims), at a quarter none (130); a fixed-kernel campaign of 200 examples runs 8-14%
more steps than with the feature drawn but inert, 18-144% more at half.

The world is what the kernel under test built, not a fixed kernel's: a fixed kernel's fork would
leave a pin on the anon_vma root that an old kernel (76545066c852) never takes, and the old
kernel's own exit would then never free that root.  A check that fails while the world is built
(an old munmap that detaches vmas outside page_table_lock, say) is a finding like any other:
:class:`vmfuzz.kernel.Kernel` keeps it as ``boot_violation`` and the run reports it at step 0.

A plugin adds a feature with :func:`world_feature`: a name and a builder, called with a
:class:`Boot` after every built-in feature of the world is built (plugin features in the order
they were registered).  :data:`WORLD_FEATURES` lists the built-in features first, in the
order above, then the plugins'; the fuzzer draws, toggles and counts every one alike.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any, overload

import attrs

from vmfuzz._scheduler import Scheduler

if TYPE_CHECKING:
    from vmfuzz.kernel.kernel import Kernel

BUILTIN_FEATURES = ("swap_sync", "swapped", "resident", "forked", "split", "shortage")


@attrs.define
class Boot:
    """What a plugin feature's builder gets: the kernel being booted, its initial processes and
    boot vma size, and the helpers the built-in features use (each runs to completion on the
    boot's private scheduler, so the run's trace starts at its first task)."""

    k: Kernel
    initial: list[int]  # the initial processes' mm ids
    pages: int  # each initial process's boot vma: pages [0, pages)
    run: Callable[[Generator[Any, None, Any]], None]  # run one kernel path to completion

    def op(self, name: str, **args: int) -> None:
        """Run operation ``name`` (``vmfuzz.kernel.ops.OPS``) with ``args`` to completion."""
        self.run(_call(self.k, name, args))

    def target(self, mm: int, addr: int) -> None:
        """Note a page the feature populated: the fuzzer aims some operations at it."""
        self.k.boot_targets.append((mm, addr))


Builder = Callable[[Boot], None]


@attrs.frozen
class WorldFeature:
    """One world feature: its name, its doc line and, for a plugin's, its builder (the
    built-in features are built by :func:`boot` itself)."""

    name: str
    doc: str
    build: Builder | None = None


FEATURES: dict[str, WorldFeature] = {n: WorldFeature(n, "built in") for n in BUILTIN_FEATURES}


class _FeatureNames(Sequence[str]):
    """The names of :data:`FEATURES` in order, read-only and always current: modules that
    imported :data:`WORLD_FEATURES` by name see the features plugins register later."""

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[str, ...]: ...
    def __getitem__(self, i: int | slice) -> str | tuple[str, ...]:
        return tuple(FEATURES)[i]

    def __len__(self) -> int:
        return len(FEATURES)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(FEATURES))

    def __contains__(self, name: object) -> bool:
        return name in FEATURES

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))


WORLD_FEATURES: Sequence[str] = _FeatureNames()


def world_feature(name: str, doc: str | None = None) -> Callable[[Builder], Builder]:
    """Register ``fn(boot: Boot)`` as world feature ``name`` (a plugin's): built after the
    built-in features, with the real kernel paths (``boot.op``, ``boot.run``); ``doc``
    defaults to the first line of the builder's docstring."""
    if not name.isidentifier():
        raise ValueError(f"world feature {name!r}: the name must be a word (letters, digits, _)")

    def register(fn: Builder) -> Builder:
        if name in FEATURES:
            raise ValueError(f"world feature {name} registered twice")
        line = doc or (fn.__doc__ or name).strip().splitlines()[0]
        FEATURES[name] = WorldFeature(name, line, fn)
        _forget_booted()
        return fn

    return register


def unregister_feature(name: str) -> None:
    """Remove a plugin's world feature (a plugin that failed to load, a test's own)."""
    feature = FEATURES.get(name)
    if feature is None or feature.build is None:
        raise ValueError(f"world feature {name} is not a plugin's")
    del FEATURES[name]
    _forget_booted()


def _forget_booted() -> None:
    """Empty the kernel's cache of booted worlds: a world it holds may be built differently."""
    from vmfuzz.kernel.kernel import _BOOTED

    _BOOTED.clear()

RESIDENT_PAGES = (0, 1)
SWAPPED_PAGES = (3, 4)
SPLIT_HOLE = 2


def _call(k: Kernel, name: str, args: dict[str, int]) -> Generator[Any, None, None]:
    """Operation ``name`` as the world's system call: run, then kept in ``k.boot_calls`` with
    its return value and, for a store, the token it stored (what the checks of a call's
    promise to user space start the run from)."""
    from vmfuzz.kernel.ops import OPS

    ret = yield from OPS[name].fn(k, **args)
    cur = k.sched.current
    token = k.stored.get(cur.tid) if name == "write" and cur is not None else None
    k.boot_calls.append((name, dict(args), ret, token))


def boot(k: Kernel) -> None:
    """Map each initial process's boot vma, then build the world features of ``k.config``.

    ``k.boot_targets`` lists the (mm, addr) pages the features populated, in build order: the
    fuzzer aims some operations at them (memory the system actually uses)."""
    from vmfuzz.kernel.vmscan import shrink_list

    n = k.config.boot_pages
    world = k.config.world
    initial = sorted(k.mms)

    def run(gen: Generator[Any, None, Any]) -> None:
        k.sched.spawn(gen)
        k.sched.run()

    def op(name: str, **args: int) -> None:
        run(_call(k, name, args))

    main, k.sched = k.sched, Scheduler()
    k.sched.checks_only, k.sched.checks_off = main.checks_only, main.checks_off
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
            # The child's pages are its parent's (fork's promise) and the one it wrote: named
            # from what the world did, not from the child's page table, where a kernel that
            # lost a page in fork would hide it from the fuzzer.
            parent = {a for mm_id, a in k.boot_targets if mm_id == initial[0]}
            k.boot_targets += [(child, a) for a in sorted(parent | {0})]
        if "split" in world and SPLIT_HOLE < n:
            for mm_id in initial:
                op("munmap", mm=mm_id, addr=SPLIT_HOLE, npages=1)
                k.boot_targets.append((mm_id, SPLIT_HOLE + 1))  # the second vma's start
        if "shortage" in world:
            # Last, so the world above is built as without it: the run starts short.
            k.pages_min = k.config.nr_frames // 4
        for feature in list(FEATURES.values()):
            if feature.build is not None and feature.name in world:
                feature.build(Boot(k, initial, n, run))
    finally:
        k.sched = main
    k.clear_dirty()
