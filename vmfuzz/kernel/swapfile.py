"""Swap slots and their counts, the swap device, swapon/swapoff (mm/swapfile.c).

The model has one swap area (``k.swap``, :class:`~vmfuzz.kernel.mm_types.SwapInfo`).  Slot 0 is
the swap header, ``SWAP_MAP_BAD`` for ever.  ``swap_map[e]`` counts every user of slot ``e``:

* each swap pte holding ``e`` (try_to_unmap / try_to_swap_out / fork take one each);
* the swap cache, while a page is cached under ``e`` (add_to_swap_cache takes it, 2.4.10+ and
  2.6.18 style: ``add_to_swap_cache`` = ``swap_duplicate`` + the locked insert);
* *in-flight* references a running path holds in a local variable: get_swap_page's fresh count
  until add_to_swap_cache / set_pte hands it over, add_to_swap_cache's duplicate until the
  radix-tree insert, the 2.4.8 read_swap_cache_async's early swap_duplicate, and the 4.15+
  skip-swapcache pin (swapcache_prepare).  They are reported in ``k.swap_inflight`` (entry ->
  count), the hook the ``swap_map_counts`` invariant reads.

Counting follows 2.4.10+ (Hugh Dickins' fix of the seed-001 races) and 2.6.18; the 2.6.32+
SWAP_HAS_CACHE bit is modelled as a count plus the ``pinned`` set (see :func:`swapcache_prepare`).
Allocation is 2.4's scan_swap_map reduced to "lowest free slot", which maximises the reuse of a
just-freed entry the seed-001 races depend on.

The device behind the area (``p->swap_file``/bdev, what each slot holds on disk) is a
:class:`~vmfuzz.kernel.mm_types.SwapBackingDev`; swapoff frees it (poisoned, so a late reader is
a use after free, the race of commit eb085574a752) and swapon allocates a new one, optionally
``SWP_SYNCHRONOUS_IO`` (zram-like: do_swap_page may then skip the swap cache, 4.15 commit
0bcac06f27d7).

Swapoff is 2.6's try_to_unuse/unuse_mm: each in-use entry is read into the swap cache, every mm
is searched for its swap ptes under ``mmap_sem`` (read) and ``page_table_lock``, then the page is
deleted from the swap cache.  Historical bug switch (seed 004): ``unuse_process_no_mmap_sem``.

``swap_lock`` and ``tree_lock`` sections that never span a scheduling point are plain code (one
step is atomic); :func:`get_swap_page` and the inserts take them as real lock requests.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from vmfuzz.kernel import bugs
from vmfuzz.kernel.fork import mmget_not_zero, mmput
from vmfuzz.kernel.mm_types import (
    SWAP_MAP_BAD,
    SWP_SYNCHRONOUS_IO,
    SWP_USED,
    SWP_VALID,
    SWP_WRITEOK,
    FreedSwapBackingDev,
    PG_swapcache,
    PresentPte,
    SwapBackingDev,
    SwapPte,
    poison,
)
from vmfuzz.kernel.ops import operation
from vmfuzz.kernel.page_alloc import get_page, put_page
from vmfuzz.kernel.rmap import page_add_anon_rmap
from vmfuzz.violation import Violation

if TYPE_CHECKING:
    from vmfuzz.kernel.kernel import Kernel
    from vmfuzz.kernel.mm_types import MmStruct, Page, SwapInfo, VmAreaStruct

Gen = Generator[Any, None, Any]

ENOENT = 2
ENOMEM = 12
EEXIST = 17
EINVAL = 22
EBUSY = 16

bugs.register(
    "unuse_process_no_mmap_sem",
    "004_b331e72de9ba5495.txt",
    "swapoff's unuse_process walks mm->mmap under page_table_lock only (no mmap_sem), so a "
    "vma-list writer that does not take page_table_lock frees or moves vmas under it",
    "use_after_free",
    mail_tasks=2,
    mail_preemptions=1,
    also=("deadlock",),  # swapoff sleeps forever on an entry whose pte the unlocked walk missed
)


# --------------------------------------------------------------------------- the area
def swap_info(k: Kernel) -> SwapInfo:
    """``k.swap``, once the swap code has run: the Kernel hooks ``k.swap_inflight`` and
    ``k.reclaim_unmaps`` the invariants read exist from the first call on (before it, the
    swap_map_counts check knows of no in-flight counts and checks a lower bound)."""
    if k.swap_inflight is None:
        k.swap_inflight = {}
    if k.reclaim_unmaps is None:
        k.reclaim_unmaps = []
    return k.swap


def _flags(si: SwapInfo) -> int:
    return si.flags


def _set_flags(si: SwapInfo, flags: int) -> None:
    si.flags = flags
    si.enabled = bool(flags & SWP_WRITEOK)


def pinned(k: Kernel) -> set[int]:
    """Entries pinned by swapcache_prepare (SWAP_HAS_CACHE set, no page in the cache yet)."""
    return swap_info(k).pinned


def synchronous_io(k: Kernel) -> bool:
    """``si->flags & SWP_SYNCHRONOUS_IO``: swapin may skip the swap cache."""
    return bool(_flags(swap_info(k)) & SWP_SYNCHRONOUS_IO)


def valid_entry(k: Kernel, e: int) -> bool:
    return isinstance(e, int) and 1 <= e < len(k.swap.swap_map)


# --------------------------------------------------------------------------- in-flight refs
def _inflight(k: Kernel) -> dict[int, int]:
    swap_info(k)
    assert k.swap_inflight is not None  # created by swap_info
    return k.swap_inflight


def inflight_inc(k: Kernel, e: int) -> None:
    """A path now holds one swap_map count of ``e`` in a local variable."""
    inflight = _inflight(k)
    inflight[e] = inflight.get(e, 0) + 1
    k.touch_entry(e)


def inflight_dec(k: Kernel, e: int) -> None:
    """The in-flight count of ``e`` was handed over (to the cache, a pte) or freed."""
    inflight = _inflight(k)
    n = inflight.get(e, 0) - 1
    if n:
        inflight[e] = n
    else:
        inflight.pop(e, None)
    k.touch_entry(e)


def note_reclaim_unmap(k: Kernel, mm: MmStruct, addr: int) -> None:
    """Report a pte reclaim cleared or replaced this step (hook ``k.reclaim_unmaps``)."""
    swap_info(k)
    assert k.reclaim_unmaps is not None  # created by swap_info
    k.reclaim_unmaps.append((mm.id, addr))


# --------------------------------------------------------------------------- slot counts
def scan_swap_map(k: Kernel) -> int:
    """2.4 scan_swap_map() (caller holds swap_lock): the lowest free slot, count 1; 0 if none."""
    si = swap_info(k)
    if not _flags(si) & SWP_WRITEOK:
        return 0
    held = pinned(k)
    for e in range(1, len(si.swap_map)):
        if si.swap_map[e] == 0 and e not in held:
            si.swap_map[e] = 1
            k.touch_entry(e)
            return e
    return 0


def get_swap_page(k: Kernel) -> Gen:
    """get_swap_page() (2.4 / 2.6.18): allocate a slot with count 1, held by the caller.

    Returns the entry (0 = no swap space, or swapoff under way).  The count is in flight
    until the caller hands it over (add_to_swap_cache in 2.6 add_to_swap, the pte in 2.4
    try_to_swap_out) or swap_frees it."""
    si = swap_info(k)
    yield k.sched.spin_lock(si.swap_lock)
    e = scan_swap_map(k)
    if e:
        inflight_inc(k, e)
    k.sched.spin_unlock(si.swap_lock)
    return e


def swap_duplicate(k: Kernel, e: int) -> bool:
    """swap_duplicate(): one more user of ``e``; False if ``e`` is free or bad (2.4: "make sure
    the swap entry is still in use").  Plain: swap_lock is taken and dropped in one step."""
    si = swap_info(k)
    if not valid_entry(k, e) or not _flags(si) & SWP_USED:
        return False
    count = si.swap_map[e]
    if count == 0 or count == SWAP_MAP_BAD:
        return False
    si.swap_map[e] = count + 1
    k.touch_entry(e)
    return True


def swap_free(k: Kernel, e: int) -> None:
    """swap_free(): drop one user of ``e``.  Freeing an unused slot is the kernel's
    "swap_free: Unused swap offset entry" (a reference handed out twice): a violation.
    With ``swap_map_counts`` off the path goes on as the kernel did: swap_info_get's
    bad_free prints the error and swap_free changes nothing."""
    si = swap_info(k)
    report = k.config.check_on("swap_map_counts")
    if not valid_entry(k, e):
        if not report:
            return
        raise Violation(
            "swap_map_counts", f"swap_free: Bad swap offset entry {e!r}", entry=e
        )
    count = si.swap_map[e]
    if count == 0 or count == SWAP_MAP_BAD:
        if not report:
            return
        raise Violation(
            "swap_map_counts",
            f"swap_free: Unused swap offset entry {e} (swap_map[{e}] = {count}): a swap "
            "reference was freed twice",
            entry=e,
        )
    si.swap_map[e] = count - 1
    k.touch_entry(e)


def swap_device(k: Kernel) -> SwapBackingDev:
    """The live swap device, for a path that reads per-device state without swap_lock: the
    swap_map and (5.x) the swap cache's address space (swapper_spaces[type]), both freed by
    swapoff.  A path holding no get_swap_device() pin may find them freed: using a freed
    device raises ``use_after_free`` here."""
    bdev = swap_info(k).bdev
    bdev.generation  # noqa: B018  (touching a poisoned device is the use after free)
    return bdev


def _device_map(k: Kernel) -> list[int]:
    """si->swap_map read locklessly (see :func:`swap_device`)."""
    swap_device(k)
    return k.swap.swap_map


def swap_count(k: Kernel, e: int) -> int:
    """__swap_count(): swap_map[e] as the 4.15+ skip-swapcache test reads it (no lock)."""
    if not valid_entry(k, e):
        return 0
    return _device_map(k)[e]


def page_swapcount(k: Kernel, page: Page) -> int:
    """page_swapcount() (2.6.29): users of the page's swap entry other than the cache itself."""
    e = page.private
    if PG_swapcache not in page.flags or e is None or not valid_entry(k, e):
        return 0
    return max(0, k.swap.swap_map[e] - 1)


def nr_swap_pages(k: Kernel) -> int:
    return sum(1 for c in k.swap.swap_map[1:] if c == 0)


def vm_swap_full(k: Kernel) -> bool:
    """vm_swap_full(): more than half of the swap space is in use (nr_swap_pages*2 < total)."""
    total = len(k.swap.swap_map) - 1
    return total > 0 and nr_swap_pages(k) * 2 < total


def valid_swaphandles(k: Kernel, e: int) -> list[int]:
    """valid_swaphandles() (2.4.10+ / 2.6): the in-use slots of ``e``'s readahead window.

    The window is ``1 << page_cluster`` slots aligned down (slot 0, the header, skipped); it
    stops at the end of the area and at the first free or bad slot.  Read under swap_lock
    (here: one atomic step)."""
    from vmfuzz.kernel.swap_state import PAGE_CLUSTER

    si = swap_info(k)
    if not valid_entry(k, e) or not _flags(si) & SWP_USED:
        return []
    n = 1 << PAGE_CLUSTER
    toff = (e >> PAGE_CLUSTER) << PAGE_CLUSTER
    if toff == 0:
        toff, n = 1, n - 1
    out = []
    for off in range(toff, toff + n):
        if off >= len(si.swap_map):
            break
        count = si.swap_map[off]
        if count == 0 or count == SWAP_MAP_BAD:
            break
        out.append(off)
    return out


def swapcache_prepare(k: Kernel, e: int) -> int:
    """swapcache_prepare() (2.6.32+): set SWAP_HAS_CACHE on ``e`` before a swapin.

    0 on success (the pin is one in-flight count until :func:`swapcache_clear` or the cache
    insert); -EEXIST if a page is cached or another swapin holds the pin; -ENOENT if free."""
    si = swap_info(k)
    if not valid_entry(k, e) or _device_map(k)[e] in (0, SWAP_MAP_BAD):
        return -ENOENT
    if e in pinned(k) or e in si.cache:
        return -EEXIST
    si.swap_map[e] += 1
    pinned(k).add(e)
    inflight_inc(k, e)
    return 0


def swapcache_clear(k: Kernel, e: int) -> None:
    """swapcache_clear() (6.8 13ddaf26be32): drop the skip-swapcache pin of ``e``."""
    pinned(k).discard(e)
    inflight_dec(k, e)
    swap_free(k, e)


# --------------------------------------------------------------------------- device refs
def get_swap_device(k: Kernel, e: int) -> bool:
    """get_swap_device() (5.1 eb085574a752): pin the swap device against swapoff; False if
    swapoff has begun tearing it down (the caller backs out, its pte will have changed)."""
    si = swap_info(k)
    if not valid_entry(k, e) or not _flags(si) & SWP_VALID:
        return False
    si.users += 1
    return True


def put_swap_device(k: Kernel) -> None:
    si = swap_info(k)
    si.users -= 1


def swap_readpage(k: Kernel, e: int) -> int:
    """swap_readpage(): the token slot ``e`` holds on the device (0 if never written)."""
    return swap_info(k).bdev.data.get(e, 0)


def swap_writepage(k: Kernel, page: Page) -> None:
    """swap_writepage(): write a swap-cache page's data to its slot on the device (the entry
    is touched: what a swapin of its swap ptes reads may have changed)."""
    e = page.private
    assert e is not None
    swap_info(k).bdev.data[e] = page.data
    k.touch_entry(e)
    k.note_slot(e, page.data, page.pfn)


# --------------------------------------------------------------------------- cache helpers
def reuse_swap_page(k: Kernel, page: Page) -> bool:
    """reuse_swap_page() (2.6.29): may this fault map ``page`` writable without a copy?

    Caller holds the page lock.  When this mapping is the only user of the page and of its
    swap entry, the page leaves the swap cache (the entry is freed) and True is returned."""
    k.sched.assert_held(page.lock, why="reuse_swap_page: VM_BUG_ON(!PageLocked(page))")
    count = page.mapcount
    if count <= 1 and PG_swapcache in page.flags:
        count += page_swapcount(k, page)
        if count == 1:
            from vmfuzz.kernel.swap_state import delete_from_swap_cache

            delete_from_swap_cache(k, page)
    return count == 1


def free_swap_and_cache(k: Kernel, e: int) -> Gen:
    """free_swap_and_cache() (2.6.18+): zap_pte_range drops a swap pte's reference.

    If only the swap cache still uses ``e``, its page is trylocked (zap holds the pte lock:
    no sleeping) and deleted from the cache unless it is still mapped (2.6: unless
    vm_swap_full).  A generator for the callers' ``yield from``; it never yields."""
    from vmfuzz.kernel.swap_state import delete_from_swap_cache

    si = swap_info(k)
    if not valid_entry(k, e) or si.swap_map[e] in (0, SWAP_MAP_BAD):
        swap_free(k, e)  # raises: a swap pte with a free entry
        return
    swap_free(k, e)
    page = si.cache.get(e) if si.swap_map[e] == 1 else None
    if page is not None:
        get_page(k, page)
        if k.sched.trylock(page.lock):
            if (
                PG_swapcache in page.flags
                and page.private == e
                and (page.mapcount == 0 or vm_swap_full(k))
            ):
                delete_from_swap_cache(k, page)
            k.sched.unlock_page(page.lock)
        put_page(k, page)
    return
    yield  # a generator: callers use ``yield from``


# --------------------------------------------------------------------------- swapon / swapoff
@operation("swapon", flag="flag")
def sys_swapon(k: Kernel, flag: int) -> Gen:
    """swapon(2): enable the swap area again after a swapoff (flag=1: a SWP_SYNCHRONOUS_IO,
    zram-like device on which swapin may skip the swap cache).  -EBUSY if it is in use."""
    si = swap_info(k)
    yield k.sched.lock_kernel()
    if _flags(si) & SWP_USED or len(si.swap_map) < 2:
        k.sched.unlock_kernel()
        return -EBUSY
    si.generation += 1
    si.bdev = SwapBackingDev(si.generation)
    for e in range(1, len(si.swap_map)):
        si.swap_map[e] = 0
        k.touch_entry(e)
    si.swap_map[0] = SWAP_MAP_BAD
    si.users = 0
    _set_flags(si, SWP_USED | SWP_WRITEOK | SWP_VALID | (SWP_SYNCHRONOUS_IO if flag else 0))
    k.sched.unlock_kernel()
    return 0


@operation("swapoff")
def sys_swapoff(k: Kernel) -> Gen:
    """swapoff(2) (2.4.17 sys_swapoff / 2.6 try_to_unuse): bring every swapped page back in.

    Allocation from the area stops first (SWP_WRITEOK cleared); try_to_unuse then empties
    every slot; on -ENOMEM the area is re-enabled.  Finally (5.1+) SWP_VALID is cleared, the
    device's get_swap_device users are waited for, and the device is freed."""
    si = swap_info(k)
    yield k.sched.lock_kernel()
    if not _flags(si) & SWP_WRITEOK:
        k.sched.unlock_kernel()
        return -EINVAL
    _set_flags(si, _flags(si) & ~SWP_WRITEOK)
    k.sched.unlock_kernel()
    err = yield from try_to_unuse(k)
    yield k.sched.lock_kernel()
    if err:
        _set_flags(si, _flags(si) | SWP_WRITEOK)
        k.sched.unlock_kernel()
        return err
    # eb085574a752: no new get_swap_device() users, then wait for the ones in flight
    # (synchronize_rcu / percpu_ref_kill + wait_for_completion).
    _set_flags(si, _flags(si) & ~SWP_VALID)
    if si.users:
        yield k.sched.wait_event(lambda: si.users == 0, "swap device users")
    bdev = si.bdev
    desc = repr(bdev)
    poison(bdev, FreedSwapBackingDev, desc)  # vfree(swap_map); p->swap_file = NULL
    k.note_free(desc)
    _set_flags(si, 0)
    k.sched.unlock_kernel()
    return 0


def find_next_to_unuse(k: Kernel, prev: int) -> int:
    """find_next_to_unuse(): the next in-use slot after ``prev``, wrapping once; 0 if none."""
    swap_map = k.swap.swap_map
    n = len(swap_map)
    for i in list(range(prev + 1, n)) + list(range(1, prev + 1)):
        count = swap_map[i]
        if count and count != SWAP_MAP_BAD:
            return i
    return 0


def _unuse_state(k: Kernel, e: int) -> tuple[int, int, int]:
    """What try_to_unuse watches of entry ``e``'s users.  Swap ptes are counted by writes,
    not by number: a pte of an mm already visited may replace one of an mm not yet visited
    (reclaim unmaps again while munmap zaps), and equal numbers would send the pass to sleep
    with a user left behind (a false deadlock, found by the fuzzer's program pool)."""
    return (
        k.swap.swap_map[e],
        k.swap_pte_writes.get(e, 0),
        _inflight(k).get(e, 0),
    )


def _users_changed(k: Kernel, e: int, seen: tuple[int, int, int]) -> Callable[[], bool]:
    """The wait condition of try_to_unuse: ``e``'s users are no longer ``seen``."""
    return lambda: _unuse_state(k, e) != seen


def try_to_unuse(k: Kernel) -> Gen:
    """try_to_unuse() (2.4.17 / 2.6.x): for each in-use entry, read it into the swap cache,
    lock the page, replace every swap pte of it in every mm, delete it from the swap cache.

    The mms are walked in ``init_mm.mmlist`` order, re-reading the next one each time: a child
    forked meanwhile (dup_mmap copies swap ptes) comes after its parent, so the pass meets it
    (2.6 dup_mmap queues the child right behind the parent for exactly this).  Users left after
    a pass: if the pass replaced ptes or the entry's users changed meanwhile, pass again (the
    page lock is dropped for mmap_sem, so reclaim may have unmapped the page again from an mm
    already visited); if not, they are held in flight by another path or by an exiting mm:
    sleep until that entry's users change (2.4 kept looping here; the model sleeps so that the
    loop cannot starve the path it waits for)."""
    from vmfuzz.kernel.swap_state import delete_from_swap_cache, read_swap_cache_async

    si = swap_info(k)
    i = 0
    while True:
        i = find_next_to_unuse(k, i)
        if i == 0:
            return 0
        e = i
        page = yield from read_swap_cache_async(k, e, None, 0)
        if page is None:
            if si.swap_map[e] == 0:
                continue
            return -ENOMEM
        yield k.sched.lock_page(page.lock)
        # 2.6.39 dc644a073769: the page may have left the swap cache before we locked it.
        if PG_swapcache not in page.flags or page.private != e:
            k.sched.unlock_page(page.lock)
            put_page(k, page)
            i = e - 1
            continue
        before = _unuse_state(k, e)
        unused = 0  # swap ptes this pass replaced
        held: list[MmStruct] = []  # mm_users references, dropped after the page lock
        mm = _next_mm(k, -1)
        while mm is not None and si.swap_map[e] > 1:
            if mmget_not_zero(k, mm):
                held.append(mm)
                unused += yield from unuse_mm(k, mm, e, page)
            mm = _next_mm(k, mm.id)
        after = _unuse_state(k, e)
        done = False
        if PG_swapcache in page.flags and page.private == e and si.swap_map[e] <= 1:
            delete_from_swap_cache(k, page)
            done = True
        k.sched.unlock_page(page.lock)
        put_page(k, page)
        # mmput after unlock_page: the last reference runs exit_mmap, whose munlock may
        # lock_page this very page (4.20+ try_to_unuse drops its mm references unlocked).
        for mm in held:
            yield from mmput(k, mm)
        if done:
            yield "try_to_unuse:next_entry"
            continue
        i = e - 1
        if PG_swapcache not in page.flags or page.private != e or si.swap_map[e] <= 1:
            continue  # the page left the cache or lost its users meanwhile: look again
        if unused or after != before:
            yield "try_to_unuse:rescan"
        else:
            yield k.sched.wait_event(_users_changed(k, e, after), "swap entry users")


def _next_mm(k: Kernel, after: int) -> MmStruct | None:
    """The live mm after mm id ``after`` on init_mm.mmlist (ids grow: a child comes after its
    parent), read afresh each time as list_entry(p->next) is."""
    for mm_id in sorted(k.mms):
        mm = k.mms[mm_id]
        if mm_id > after and not mm.dead and mm.users > 0:
            return mm
    return None


def unuse_mm(k: Kernel, mm: MmStruct, e: int, page: Page) -> Gen:
    """unuse_mm() (2.6.7+; 2.4 unuse_process): replace ``e``'s swap ptes in ``mm`` by ``page``.

    Fixed kernel: holds ``mmap_sem`` for read while walking ``mm->mmap`` (down_read_trylock
    first: the page lock ranks below mmap_sem, so on contention it drops the page lock, takes
    mmap_sem, relocks), each vma's ptes under ``page_table_lock``.

    Bug ``unuse_process_no_mmap_sem`` (seed 004: Andrea's 2.6.3-mjb patch dropped the
    down_read as "superfluous, page_table_lock is held"): reads ``vm_next`` without mmap_sem.
    2.6.3 held page_table_lock across the whole walk, which was unsafe only against -mjb's
    vma-list writers that skipped it (Hugh Dickins, LKML 26 Mar 2004: 2.6.4-mjb1's vma_merge
    "does __vma_unlink without page_table_lock"); the model's writers all take it and assert
    it (a writer without it is ``detach_vmas_outside_ptl``, caught at its write).  So the
    switch takes the reader-side form: page_table_lock is dropped between two vmas, where an
    ordinary munmap can free the next vma, the point an unlocked -mjb writer could
    (docs/model-swap.md, notes).

    The caller holds an mm_users reference on ``mm`` and the page lock.  Returns how many swap
    ptes were replaced."""
    unused = 0
    if k.bug("unuse_process_no_mmap_sem"):
        # Andrea's "superfluous down_read" removed: vm_next is read under page_table_lock,
        # dropped between two vmas (the reader-side form of -mjb's unlocked list writers).
        yield k.sched.spin_lock(mm.page_table_lock)
        vma = mm.mmap
        while vma is not None:
            unused += unuse_vma(k, vma, e, page)
            nxt = vma.vm_next
            k.sched.spin_unlock(mm.page_table_lock)
            yield "unuse_process:next_vma"
            if nxt is None:
                break
            yield k.sched.spin_lock(mm.page_table_lock)
            vma = nxt
        if vma is None:
            k.sched.spin_unlock(mm.page_table_lock)
    else:
        if not k.sched.trylock(mm.mmap_sem, "r"):
            k.sched.unlock_page(page.lock)
            yield k.sched.down_read(mm.mmap_sem)
            yield k.sched.lock_page(page.lock)
        vma = mm.mmap
        while vma is not None:
            if vma.anon_vma is not None:
                yield k.sched.spin_lock(mm.page_table_lock)
                unused += unuse_vma(k, vma, e, page)
                k.sched.spin_unlock(mm.page_table_lock)
            yield "unuse_mm:next_vma"
            vma = vma.vm_next
        k.sched.up_read(mm.mmap_sem)
    return unused


def unuse_vma(k: Kernel, vma: VmAreaStruct, e: int, page: Page) -> int:
    """unuse_vma()/unuse_pte_range(): every pte of ``vma`` holding ``e`` (page_table_lock
    held); returns how many were replaced."""
    mm = vma.vm_mm
    n = 0
    for addr in range(vma.vm_start, vma.vm_end):
        pte = mm.pgd.get(addr)
        if isinstance(pte, SwapPte) and pte.entry == e:
            unuse_pte(k, vma, addr, e, page)
            n += 1
    return n


def unuse_pte(k: Kernel, vma: VmAreaStruct, addr: int, e: int, page: Page) -> None:
    """unuse_pte(): map ``page`` (read-only: do_wp_page decides on a later write) in place of
    the swap pte, and drop the pte's swap reference."""
    mm = vma.vm_mm
    get_page(k, page)
    k.set_pte_at(mm, addr, PresentPte(page.pfn, False))
    page_add_anon_rmap(k, page, vma, addr)
    mm.rss += 1
    swap_free(k, e)
