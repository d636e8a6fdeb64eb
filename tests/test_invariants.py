"""Tests of the invariant checks: each catches a hand-built bad state and accepts a tricky good one.

States are built directly on a fresh :class:`Kernel` (mm_types objects, ``k.set_pte_at``), the
way the model's paths leave them.  ``caught()`` runs the incremental monitor on what the
mutations touched (restricted to the check under test, so the test names what fires) and the
full scan; ``quiet()`` runs *all* checks both ways.  Mid-flight states are made by small kernel
paths (generators) run on the scheduler with the monitor installed, so excuses come from the
real lock state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import attrs
import pytest
from vmfuzz.invariants import CHECKS, Monitor, check_all, install, names

from vmfuzz import LockDep, Mutex, Scheduler, Spinlock, Violation, _watchdog
from vmfuzz.cli import main
from vmfuzz.kernel import Kernel, KernelConfig
from vmfuzz.kernel.mm_types import (
    VM_LOCKED,
    VM_READ,
    VM_RESERVED,
    VM_WRITE,
    AnonVma,
    AnonVmaChain,
    MigrationPte,
    MmStruct,
    Page,
    PG_lru,
    PG_mlocked,
    PG_swapcache,
    PresentPte,
    SwapPte,
    VmAreaStruct,
)
from vmfuzz.kernel.page_alloc import LRU_ACTIVE, add_page_to_lru_list, del_page_from_lru
from vmfuzz.schedules import PreemptionList, RandomWalk

# The names other engineers refer to (in docs, corpus files and reports): all must exist.
REQUIRED = [
    "migration_pte_page_locked",
    "mapcount_matches_ptes",
    "refcount_covers_users",
    "swap_cache_unique",
    "swap_map_counts",
    "rmap_reachable",
    "vma_list_sane",
    "use_after_free",
    "reserved_pte_cleared",
    "reserved_page_pinned",
    "mlocked_resident",
    "data_integrity",
    "bad_page",
    "deadlock",
    "lock_order_inversion",
    "sleep_in_atomic",
    "unlock_not_held",
    "lock_not_held",
    "lock_held_at_exit",
    "livelock",
]


# --------------------------------------------------------------------------- state builder
class World:
    """A Kernel plus helpers that build states the way the model's paths do."""

    def __init__(self, config: KernelConfig | None = None) -> None:
        # Empty address spaces (no boot vmas): the tests build every vma themselves.
        self.k = Kernel(attrs.evolve(config or KernelConfig(), boot_pages=0))
        self.vmas = 0
        self.avs = 0

    def mm(self, i: int = 0) -> MmStruct:
        return self.k.mms[i]

    def anon_vma(self, root: AnonVma | None = None) -> AnonVma:
        self.avs += 1
        av = AnonVma(self.avs)
        if root is not None:
            av.root = root
        return av

    def vma(
        self,
        mm: MmStruct,
        start: int,
        end: int,
        pgoff: int | None = None,
        flags: int = VM_READ | VM_WRITE,
        anon: bool = True,
    ) -> VmAreaStruct:
        """A vma linked into ``mm``'s sorted list, with its own anon_vma (anon_vma_prepare)."""
        self.vmas += 1
        vma = VmAreaStruct(self.vmas, mm, start, end, start if pgoff is None else pgoff, flags)
        if anon:
            self.chain(vma, self.anon_vma())
            vma.anon_vma = vma.anon_vma_chain[0].anon_vma
        prev, cur = None, mm.mmap
        while cur is not None and cur.vm_start < start:
            prev, cur = cur, cur.vm_next
        vma.vm_next = cur
        if prev is None:
            mm.mmap = vma
        else:
            prev.vm_next = vma
        mm.map_count += 1
        self.k.touch_mm(mm)
        return vma

    def chain(self, vma: VmAreaStruct, av: AnonVma) -> None:
        """anon_vma_chain_link: the newest chain goes first on the vma, last on the anon_vma."""
        avc = AnonVmaChain(vma, av)
        vma.anon_vma_chain.insert(0, avc)
        av.head.append(avc)

    def fork_vma(self, parent: VmAreaStruct, child_mm: MmStruct) -> VmAreaStruct:
        """dup_mmap + anon_vma_fork: clone the parent's chains, add a child anon_vma."""
        child = self.vma(child_mm, parent.vm_start, parent.vm_end, parent.vm_pgoff,
                         parent.vm_flags, anon=False)
        for avc in reversed(parent.anon_vma_chain):
            self.chain(child, avc.anon_vma)
        assert parent.anon_vma is not None
        av = self.anon_vma(root=parent.anon_vma.root)
        self.chain(child, av)
        child.anon_vma = av
        return child

    def alloc(self) -> Page:
        """alloc_page + lru_cache_add: a page in use is on an LRU list (lru_at_rest)."""
        pfn = self.k.free_list.pop(0)
        page = self.k.pages[pfn]
        page.count = 1
        add_page_to_lru_list(self.k, page, LRU_ACTIVE)
        return page

    def map(
        self,
        vma: VmAreaStruct,
        addr: int,
        page: Page | None = None,
        *,
        token: int | None = None,
        write: bool = True,
        rmap: bool = True,
    ) -> Page:
        """do_anonymous_page / page_add_anon_rmap + set_pte_at, and the user's write."""
        mm = vma.vm_mm
        if page is None:
            page = self.alloc()
            page.mapping = vma.anon_vma
            page.index = addr - vma.vm_start + vma.vm_pgoff
            page.data = self.k.new_token() if token is None else token
        else:
            page.count += 1
            # a second mapping of an anon page is a COW share: read-only everywhere
            for mm_id, a in sorted(self.k.present_ptes.get(page.pfn, ())):
                self.k.set_pte_at(self.k.mms[mm_id], a, PresentPte(page.pfn, False))
            write = False
        if rmap:
            page.mapcount += 1
        if not isinstance(mm.pgd.get(addr), PresentPte):
            mm.rss += 1  # inc_mm_counter(MM_ANONPAGES) (rss_at_rest)
        self.k.set_pte_at(mm, addr, PresentPte(page.pfn, write))
        self.k.expected[mm.id][addr] = page.data
        self.k.touch_page(page)
        return page

    def add_to_swap_cache(self, page: Page, e: int) -> None:
        page.flags.add(PG_swapcache)
        page.private = e
        page.count += 1
        self.k.swap.cache[e] = page
        self.k.swap.swap_map[e] += 1
        self.k.touch_page(page)
        self.k.touch_entry(e)

    def swap_out_pte(self, vma: VmAreaStruct, addr: int) -> None:
        """try_to_unmap_one for swap: the pte becomes the page's swap entry."""
        mm = vma.vm_mm
        pte = mm.pgd[addr]
        assert isinstance(pte, PresentPte)
        page = self.k.pages[pte.pfn]
        e = page.private
        assert e is not None
        self.k.swap.swap_map[e] += 1
        self.k.set_pte_at(mm, addr, SwapPte(e))
        mm.rss -= 1
        page.mapcount -= 1
        page.count -= 1
        self.k.touch_page(page)

    def free(self, page: Page) -> None:
        if any(p is page for lst in self.k.lru.values() for p in lst):
            del_page_from_lru(self.k, page)  # (the last put takes it off its list)
        page.count = 0
        page.mapping = None
        self.k.free_list.append(page.pfn)
        self.k.touch_page(page)

    def monitor(self, only: str | None = None) -> Monitor:
        return Monitor(self.k, None if only is None else [only])


def caught(w: World, check: str, monitor: Monitor | None = None) -> Violation:
    """The incremental monitor (only ``check``) and the full scan both report ``check``."""
    m = monitor if monitor is not None else w.monitor(check)
    with pytest.raises(Violation) as inc:
        m.step()
    assert inc.value.check == check, inc.value.describe()
    with pytest.raises(Violation) as full:
        check_all(w.k, [check])
    assert full.value.check == check
    with pytest.raises(Violation):
        check_all(w.k)  # all checks on: something fires
    return inc.value


def quiet(w: World, monitor: Monitor | None = None) -> None:
    """No check (all enabled) fires, incrementally or in a full scan."""
    (monitor if monitor is not None else Monitor(w.k)).step()
    check_all(w.k)


def base(w: World, *, mapped: int = 3) -> tuple[VmAreaStruct, list[Page]]:
    """mm0 with a vma [0, 8) and ``mapped`` written pages."""
    vma = w.vma(w.mm(0), 0, 8)
    return vma, [w.map(vma, a) for a in range(mapped)]


# --------------------------------------------------------------------------- mini kernel paths
Path = Callable[[Kernel], Iterator[object]]


def run_paths(k: Kernel, *paths: Path, preempt: tuple[tuple[int, int], ...] = ()) -> None:
    """Run kernel paths on ``k``'s scheduler (monitor installed), raising any violation."""
    k.sched.source = PreemptionList(preempt)
    for i, p in enumerate(paths):
        k.sched.spawn(p(k), f"T{i}")
    k.sched.run()


def fresh(config: KernelConfig | None = None) -> World:
    w = World(config)
    w.k.sched = Scheduler(max_steps=1000, lockdep=LockDep())
    return w


# =========================================================================== registry, CLI
def test_required_checks_registered_with_docs() -> None:
    for name in REQUIRED:
        assert name in CHECKS, name
    for c in CHECKS.values():
        assert c.doc and "\n" not in c.doc and c.mirrors, c.name
        assert c.per_step == (c.family != "engine"), c.name
    assert names("engine")[-1] == "livelock"
    assert "step budget without progress" in CHECKS["livelock"].doc


def test_cli_lists_checks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["invariants", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    listed = {c["name"]: c for c in data["checks"]}
    assert set(REQUIRED) <= set(listed)
    assert listed["migration_pte_page_locked"]["mirrors"].startswith("include/linux/swapops.h")
    assert main(["invariants"]) == 0
    text = capsys.readouterr().out
    assert "rmap_reachable" in text and "migration_entry_to_page" in text
    assert main(["invariants", "--family", "engine", "--json"]) == 0
    engine = json.loads(capsys.readouterr().out)["checks"]
    assert [c["name"] for c in engine] == names("engine")
    assert all(c["scopes"] == ["engine"] for c in engine)
    assert main(["invariants", "--family", "nope"]) == 2


def test_unknown_check_name_rejected() -> None:
    with pytest.raises(KeyError):
        install(Kernel(), ["no_such_check"])


# =========================================================================== migration
def test_migration_pte_of_unlocked_page_caught() -> None:
    w = World()
    _vma, pages = base(w)
    m = w.monitor("migration_pte_page_locked")
    page = pages[1]
    w.k.set_pte_at(w.mm(0), 1, MigrationPte(page.pfn, True))
    page.mapcount -= 1
    v = caught(w, "migration_pte_page_locked", m)
    assert f"pfn {page.pfn}" in v.message and "mm0 page 1" in v.message


def test_migration_mid_flight_accepted_then_leftover_caught() -> None:
    """unmap_and_move: lock, migration ptes, copy, restore, unlock is clean; unlocking with a
    migration entry left behind (seeds 002/003) fires at the unlock step."""
    for leave_one in (False, True):
        w = fresh()
        _vma, pages = base(w, mapped=2)
        old = pages[0]
        install(w.k)

        def migrate(
            k: Kernel, old: Page = old, leave_one: bool = leave_one, w: World = w
        ) -> Iterator[object]:
            mm = w.mm(0)
            yield k.sched.lock_page(old.lock)
            yield k.sched.spin_lock(mm.page_table_lock)
            k.set_pte_at(mm, 0, MigrationPte(old.pfn, True))
            old.mapcount -= 1
            k.touch_page(old)
            k.sched.spin_unlock(mm.page_table_lock)
            yield "unmap_and_move:unmapped"
            new = w.alloc()
            new.data, new.mapping, new.index = old.data, old.mapping, old.index
            yield k.sched.lock_page(new.lock)
            yield "move_to_new_page:copied"
            if not leave_one:
                yield k.sched.spin_lock(mm.page_table_lock)
                new.count += 1
                new.mapcount += 1
                k.set_pte_at(mm, 0, PresentPte(new.pfn, True))
                k.sched.spin_unlock(mm.page_table_lock)
            yield "remove_migration_ptes:done"
            k.sched.unlock_page(new.lock)
            k.sched.unlock_page(old.lock)
            yield "unmap_and_move:unlocked"
            if not leave_one:
                old.count -= 1
                w.free(old)
                new.count -= 1
                k.touch_page(new)

        if leave_one:
            with pytest.raises(Violation) as ei:
                run_paths(w.k, migrate)
            assert ei.value.check == "migration_pte_page_locked"
            assert ei.value.label == "unmap_and_move:unlocked"
        else:
            run_paths(w.k, migrate)
            check_all(w.k)


# =========================================================================== mapcount
def test_mapcount_mismatch_caught() -> None:
    w = World()
    vma, pages = base(w)
    m = w.monitor("mapcount_matches_ptes")
    w.map(vma, 5, pages[0], rmap=False)  # a second pte, page_add_anon_rmap forgotten
    v = caught(w, "mapcount_matches_ptes", m)
    assert "mapcount 1 but 2 present pte(s)" in v.message


def test_negative_mapcount_caught() -> None:
    w = World()
    _vma, pages = base(w)
    m = w.monitor("mapcount_matches_ptes")
    w.k.pte_clear(w.mm(0), 0)
    pages[0].mapcount -= 2
    assert "negative mapcount" in caught(w, "mapcount_matches_ptes", m).message


def test_mapcount_inside_page_table_lock_deferred() -> None:
    """do_swap_page/remove_migration_pte set the pte before page_add_anon_rmap, under the pte
    lock: fine while the lock is held; the same gap after the unlock fires."""
    for forget in (False, True):
        w = fresh()
        vma, pages = base(w, mapped=1)
        child = w.fork_vma(vma, w.mm(1))
        page = pages[0]
        w.k.set_pte_at(w.mm(0), 0, PresentPte(page.pfn, False))  # COW-shared: read-only
        install(w.k)

        def share(
            k: Kernel, page: Page = page, forget: bool = forget, w: World = w
        ) -> Iterator[object]:
            mm = w.mm(1)
            yield k.sched.spin_lock(mm.page_table_lock)
            page.count += 1
            k.set_pte_at(mm, 0, PresentPte(page.pfn, False))
            mm.rss += 1
            k.expected[mm.id][0] = page.data
            yield "do_swap_page:set_pte"
            yield "do_swap_page:between"
            if not forget:
                page.mapcount += 1
                k.touch_page(page)
            k.sched.spin_unlock(mm.page_table_lock)
            yield "do_swap_page:unlocked"

        assert child.vm_mm is w.mm(1)
        if forget:
            with pytest.raises(Violation) as ei:
                run_paths(w.k, share)
            assert ei.value.check == "mapcount_matches_ptes"
            assert ei.value.label == "do_swap_page:unlocked"
        else:
            run_paths(w.k, share)
            check_all(w.k)


# =========================================================================== refcount
def test_refcount_below_users_caught() -> None:
    w = World()
    _vma, pages = base(w)
    m = w.monitor("refcount_covers_users")
    w.add_to_swap_cache(pages[2], 3)
    pages[2].count -= 1  # the swap cache's reference dropped
    v = caught(w, "refcount_covers_users", m)
    assert "count 1 < mapcount 1 + 1 swap-cache reference" in v.message


def test_refcount_extra_references_and_cache_only_page_accepted() -> None:
    w = World()
    vma, pages = base(w)
    m = Monitor(w.k)
    pages[0].count += 2  # get_user_pages pins
    w.k.touch_page(pages[0])
    w.k.sched.spawn((yield_ for yield_ in ["gup"]), "pinner")  # their holder is still running
    # pages[1] is swapped out: only the swap cache holds it (count 1, mapcount 0)
    w.add_to_swap_cache(pages[1], 2)
    w.swap_out_pte(vma, 1)
    quiet(w, m)
    assert pages[1].count == 1 and pages[1].mapcount == 0


# =========================================================================== swap cache
def test_two_pages_for_one_swap_entry_caught() -> None:
    """Seed 001: read_swap_cache_async and try_to_swap_out both add_to_swap_cache(entry)."""
    w = World()
    _vma, pages = base(w)
    m = w.monitor("swap_cache_unique")
    w.add_to_swap_cache(pages[0], 4)
    w.add_to_swap_cache(pages[1], 4)  # overwrites the slot: pages[0] still claims entry 4
    v = caught(w, "swap_cache_unique", m)
    assert "entry 4" in v.message and "two pages for one swap entry" in v.message


def test_swap_cache_page_without_flag_caught() -> None:
    w = World()
    _vma, pages = base(w)
    m = w.monitor("swap_cache_unique")
    w.add_to_swap_cache(pages[0], 4)
    pages[0].flags.discard(PG_swapcache)
    w.k.touch_page(pages[0])
    assert "no PG_swapcache" in caught(w, "swap_cache_unique", m).message


def test_swap_cache_delete_and_reuse_accepted() -> None:
    w = World()
    _vma, pages = base(w)
    m = Monitor(w.k)
    w.add_to_swap_cache(pages[0], 4)
    quiet(w, m)
    # delete_from_swap_cache, then another page takes the (freed) slot
    del w.k.swap.cache[4]
    pages[0].flags.discard(PG_swapcache)
    pages[0].private = None
    pages[0].count -= 1
    w.k.swap.swap_map[4] -= 1
    w.k.touch_page(pages[0])
    w.k.touch_entry(4)
    w.add_to_swap_cache(pages[1], 4)
    quiet(w, m)


# =========================================================================== swap map
def test_swap_pte_without_swap_map_reference_caught() -> None:
    w = World()
    vma, pages = base(w)
    m = w.monitor("swap_map_counts")
    w.add_to_swap_cache(pages[0], 5)
    w.swap_out_pte(vma, 0)
    w.k.swap.swap_map[5] = 1  # swap_free'd under a live swap pte
    w.k.touch_entry(5)
    v = caught(w, "swap_map_counts", m)
    assert "swap_map[5] = 1" in v.message and "dropped while still in use" in v.message
    assert "mm0 page 0" in v.message


def test_swap_map_leak_caught_when_inflight_is_tracked() -> None:
    w = World()
    _vma, pages = base(w)
    w.k.swap_inflight = {}  # type: ignore[attr-defined]
    m = w.monitor("swap_map_counts")
    w.add_to_swap_cache(pages[0], 5)
    w.k.swap.swap_map[5] += 1  # swap_duplicate never handed over or freed
    v = caught(w, "swap_map_counts", m)
    assert "leaked" in v.message and "0 in flight" in v.message


def test_swap_readahead_inflight_reference_accepted() -> None:
    """swapin_readahead: valid_swaphandles swap_duplicate'd entry 6 (no pte, not cached yet);
    the model reports the count in k.swap_inflight until read_swap_cache_async takes it."""
    w = World()
    base(w)
    w.k.swap_inflight = {}  # type: ignore[attr-defined]
    m = Monitor(w.k)
    w.k.swap.swap_map[6] = 1
    w.k.swap_inflight[6] = 1  # type: ignore[attr-defined]
    w.k.touch_entry(6)
    m.step()
    # without the hook the check is a lower bound: the same state is accepted as well
    del w.k.swap_inflight  # type: ignore[attr-defined]
    check_all(w.k)
    # with the hook and every task finished, a remaining in-flight count is a leak
    w.k.swap_inflight = {6: 1}  # type: ignore[attr-defined]
    with pytest.raises(Violation, match="in-flight reference"):
        check_all(w.k, ["swap_map_counts"])


def test_swap_header_slot_never_used() -> None:
    w = World()
    _vma, _pages = base(w)
    m = w.monitor("swap_map_counts")
    w.k.set_pte_at(w.mm(0), 7, SwapPte(0))
    assert "swap header" in caught(w, "swap_map_counts", m).message


# =========================================================================== rmap
def test_pte_unreachable_after_unlocked_vma_adjust_caught() -> None:
    """vma_adjust moved vm_start without vm_pgoff, outside the anon_vma lock (seed 002)."""
    w = World()
    vma, _pages = base(w)
    m = w.monitor("rmap_reachable")
    vma.vm_start = 1  # vm_pgoff still 0: vma_address() is now off by one
    w.k.touch_mm(w.mm(0))
    v = caught(w, "rmap_reachable", m)
    assert "cannot find it" in v.message and "mm0 page 0" in v.message


def test_vma_adjust_under_root_lock_accepted_but_not_after_unlock() -> None:
    """expand_downwards/vma_adjust write vm_start and vm_pgoff as two steps under the root
    anon_vma lock (walkers take it): accepted.  Leaving vm_pgoff stale fires at the unlock."""
    for fix in (True, False):
        w = fresh()
        vma = w.vma(w.mm(0), 2, 8)
        for a in (2, 3, 4):
            w.map(vma, a)
        install(w.k)

        def adjust(
            k: Kernel, vma: VmAreaStruct = vma, fix: bool = fix, w: World = w
        ) -> Iterator[object]:
            mm = w.mm(0)
            assert vma.anon_vma is not None
            yield k.sched.down_write(mm.mmap_sem)
            yield k.sched.spin_lock(vma.anon_vma.root.lock)
            vma.vm_start = 1
            k.touch_mm(mm)
            yield "vma_adjust:vm_start"
            if fix:
                vma.vm_pgoff = 1
                k.touch_mm(mm)
            yield "vma_adjust:vm_pgoff"
            k.sched.spin_unlock(vma.anon_vma.root.lock)
            yield "vma_adjust:unlocked"
            k.sched.up_write(mm.mmap_sem)

        if fix:
            run_paths(w.k, adjust)
            check_all(w.k)
        else:
            with pytest.raises(Violation) as ei:
                run_paths(w.k, adjust)
            assert ei.value.check == "rmap_reachable"
            assert ei.value.label == "vma_adjust:unlocked"


def test_fork_shared_page_reachable_from_child() -> None:
    """After fork the child's vma is on the parent anon_vma's list: COW-shared pages are
    reachable from both mms; the child's own new page uses the child anon_vma."""
    w = World()
    vma, pages = base(w)
    m = Monitor(w.k)
    child = w.fork_vma(vma, w.mm(1))
    for a, p in enumerate(pages):
        w.map(child, a, p, write=False)
    quiet(w, m)
    w.map(child, 5)  # a fresh page in the child (do_anonymous_page)
    quiet(w, m)


def test_non_root_mapping_for_shared_swapin_caught() -> None:
    """A swapped-in page first mapped by the child gets the *child* anon_vma (not the root,
    as __page_set_anon_rmap does when not exclusive): the parent's pte is unreachable."""
    w = World()
    vma, _ = base(w, mapped=0)
    child = w.fork_vma(vma, w.mm(1))
    m = w.monitor("rmap_reachable")
    page = w.map(child, 2)  # mapping = child anon_vma
    w.map(vma, 2, page)
    assert "mm0 page 2" in caught(w, "rmap_reachable", m).message


def test_anon_vma_family_with_freed_root_caught() -> None:
    w = World()
    vma, _ = base(w, mapped=0)
    child = w.fork_vma(vma, w.mm(1))
    m = w.monitor("rmap_reachable")
    assert vma.anon_vma is not None
    root = vma.anon_vma
    w.k.free_anon_vma(root)  # freed while the child family still points at it
    w.k.clear_dirty()
    w.k.touch_mm(child.vm_mm)
    v = caught(w, "rmap_reachable", m)
    assert "mm1" in v.message and "root is freed" in v.message


# =========================================================================== vma list
def test_overlapping_vmas_caught() -> None:
    w = World()
    base(w, mapped=0)
    m = w.monitor("vma_list_sane")
    w.vma(w.mm(0), 6, 10)
    assert "overlaps" in caught(w, "vma_list_sane", m).message


def test_map_count_mismatch_caught() -> None:
    w = World()
    base(w, mapped=0)
    m = w.monitor("vma_list_sane")
    w.mm(0).map_count = 2
    w.k.touch_mm(w.mm(0))
    assert "map_count 2 but 1" in caught(w, "vma_list_sane", m).message


def test_freed_vma_on_list_caught() -> None:
    w = World()
    vma, _ = base(w, mapped=0)
    w.vma(w.mm(0), 10, 12)
    m = w.monitor("vma_list_sane")
    assert vma.vm_next is not None
    w.k.free_vma(vma.vm_next)
    w.k.touch_mm(w.mm(0))
    assert "after being freed" in caught(w, "vma_list_sane", m).message


def test_split_vma_mid_flight_accepted_under_mmap_sem() -> None:
    """split_vma inserts the new vma, then shrinks the old one: overlapping in between, but
    only under mmap_sem held for write."""
    w = fresh()
    vma, _ = base(w, mapped=0)
    install(w.k)

    def split(k: Kernel) -> Iterator[object]:
        mm = w.mm(0)
        yield k.sched.down_write(mm.mmap_sem)
        new = w.vma(mm, 4, 8, 4)
        yield "split_vma:inserted"
        vma.vm_end = 4
        k.touch_mm(mm)
        yield "split_vma:adjusted"
        k.sched.up_write(mm.mmap_sem)
        assert new.vm_start == 4

    run_paths(w.k, split)
    check_all(w.k)


def test_pte_outside_vmas_caught_and_mid_munmap_accepted() -> None:
    w = World()
    vma, _pages = base(w)
    m = w.monitor("pte_in_vma")
    vma.vm_end = 2  # shrunk without zapping the pte at 2
    w.k.touch_mm(w.mm(0))
    assert "lies in no vma" in caught(w, "pte_in_vma", m).message
    # the same kind of state while munmap holds mmap_sem for write: detached, not yet zapped
    # (the detached vma is still on its anon_vma's list, so rmap still finds its ptes)
    w2 = fresh()
    base(w2)
    vma2 = w2.vma(w2.mm(0), 8, 12)
    pages2 = [w2.map(vma2, a) for a in (8, 9)]
    install(w2.k)

    def munmap(k: Kernel) -> Iterator[object]:
        mm = w2.mm(0)
        yield k.sched.down_write(mm.mmap_sem)
        assert mm.mmap is not None
        mm.mmap.vm_next = None  # detach_vmas_to_be_unmapped
        mm.map_count -= 1
        k.touch_mm(mm)
        yield "do_munmap:detached"
        yield k.sched.spin_lock(mm.page_table_lock)
        for a, page in zip((8, 9), pages2, strict=True):
            k.pte_clear(mm, a)
            mm.rss -= 1
            page.mapcount -= 1
            k.expected[mm.id].pop(a)
        k.sched.spin_unlock(mm.page_table_lock)
        yield "unmap_region:zapped"
        for page in pages2:
            w2.free(page)
        av = vma2.anon_vma
        assert av is not None
        av.head.clear()  # unlink_anon_vmas
        k.free_anon_vma(av)
        k.free_vma(vma2)
        k.sched.up_write(mm.mmap_sem)

    run_paths(w2.k, munmap)
    check_all(w2.k)


# =========================================================================== freeing
def test_free_page_still_mapped_caught() -> None:
    w = World()
    _vma, pages = base(w)
    m = w.monitor("use_after_free")
    w.k.free_list.append(pages[1].pfn)
    pages[1].count = 0
    w.k.touch_page(pages[1])
    v = caught(w, "use_after_free", m)
    assert f"pfn {pages[1].pfn}" in v.message and "present pte at mm0 page 1" in v.message


def test_poisoned_vma_use_raises_use_after_free() -> None:
    w = World()
    vma, _ = base(w, mapped=0)
    w.k.free_vma(vma)
    with pytest.raises(Violation) as ei:
        _ = vma.vm_start
    assert ei.value.check == "use_after_free"


def test_bad_page_flags_and_double_free_caught() -> None:
    w = World()
    _vma, _pages = base(w)
    m = w.monitor("bad_page")
    p = w.alloc()
    del_page_from_lru(w.k, p)
    p.flags.add(PG_lru)  # off its list, the flag left set
    w.free(p)
    assert "PG_lru" in caught(w, "bad_page", m).message
    w2 = World()
    m2 = w2.monitor("bad_page")
    p2 = w2.alloc()
    w2.free(p2)
    w2.free(p2)
    assert "double free" in caught(w2, "bad_page", m2).message


def test_clean_free_accepted() -> None:
    w = World()
    _vma, pages = base(w)
    m = Monitor(w.k)
    w.k.pte_clear(w.mm(0), 0)
    w.mm(0).rss -= 1
    pages[0].mapcount -= 1
    w.k.expected[0].pop(0)
    w.free(pages[0])
    quiet(w, m)


# =========================================================================== mlock / reserved
def test_reclaim_swapping_reserved_vma_caught() -> None:
    """Seed 004: try_to_unmap_one tested only VM_LOCKED, so a VM_RESERVED page was swapped."""
    w = World()
    vma = w.vma(w.mm(0), 0, 4, flags=VM_READ | VM_WRITE | VM_RESERVED)
    page = w.map(vma, 0)
    m = w.monitor("reserved_pte_cleared")
    w.add_to_swap_cache(page, 3)
    w.swap_out_pte(vma, 0)
    v = caught(w, "reserved_pte_cleared", m)
    assert "VM_RESERVED" in v.message and "mm0 page 0" in v.message


def test_reclaim_swapping_locked_vma_caught() -> None:
    w = World()
    vma = w.vma(w.mm(0), 0, 4, flags=VM_READ | VM_WRITE | VM_LOCKED)
    page = w.map(vma, 1)
    m = w.monitor("reserved_pte_cleared")
    w.add_to_swap_cache(page, 3)
    w.swap_out_pte(vma, 1)
    with pytest.raises(Violation) as ei:
        m.step()
    assert ei.value.check == "reserved_pte_cleared" and "VM_LOCKED" in ei.value.message


def test_reclaim_unmaps_hook_caught() -> None:
    w = World()
    vma = w.vma(w.mm(0), 0, 4, flags=VM_READ | VM_RESERVED)
    w.map(vma, 2)
    m = w.monitor("reserved_pte_cleared")
    w.k.reclaim_unmaps = [(0, 2)]  # type: ignore[attr-defined]
    with pytest.raises(Violation, match="reclaim cleared the pte at mm0 page 2"):
        m.step()
    assert w.k.reclaim_unmaps == []  # type: ignore[attr-defined]  (consumed by the monitor)


def test_migration_entry_in_reserved_vma_caught() -> None:
    """Seed 004's "reclaim or migration": compaction moving a VM_RESERVED (DMA) page."""
    w = World()
    vma = w.vma(w.mm(0), 0, 4, flags=VM_READ | VM_WRITE | VM_RESERVED)
    page = w.map(vma, 1)
    m = w.monitor("reserved_page_pinned")
    w.k.set_pte_at(w.mm(0), 1, MigrationPte(page.pfn, True))
    v = caught(w, "reserved_page_pinned", m)
    assert "mm0 page 1" in v.message and "VM_RESERVED" in v.message


def test_migration_entry_in_ordinary_or_locked_vma_accepted() -> None:
    """Migration may move an ordinary page, and an mlocked one (TTU_IGNORE_MLOCK)."""
    w = World()
    for addr, flags in ((0, VM_READ | VM_WRITE), (1, VM_READ | VM_WRITE | VM_LOCKED)):
        vma = w.vma(w.mm(addr), 0, 4, flags=flags)
        page = w.map(vma, 0)
        m = w.monitor("reserved_page_pinned")
        w.k.set_pte_at(w.mm(addr), 0, MigrationPte(page.pfn, True))
        m.step()  # (only this check: the page is not locked, as migration would hold it)
        check_all(w.k, ["reserved_page_pinned"])


def test_swap_ptes_in_vma_being_mlocked_accepted() -> None:
    """Swap ptes that predate mlock are not reclaim's doing; mlock_fixup sets VM_LOCKED and
    then faults them in, under mmap_sem held for write."""
    w = fresh()
    vma, pages = base(w)
    w.add_to_swap_cache(pages[0], 3)
    w.swap_out_pte(vma, 0)
    # (the path sets VM_LOCKED with no mlock call on record: mlock_state_promise's to judge)
    names = [c for c in CHECKS if c != "mlock_state_promise"]
    install(w.k, names)

    def mlock(k: Kernel) -> Iterator[object]:
        mm = w.mm(0)
        yield k.sched.down_write(mm.mmap_sem)
        vma.vm_flags |= VM_LOCKED
        k.touch_mm(mm)
        yield "mlock_fixup:flags"
        # a racing swap-out of pages[1] while VM_LOCKED is being set (mlock will fault it in),
        # under the pte lock as reclaim takes it
        w.add_to_swap_cache(pages[1], 4)
        yield k.sched.spin_lock(mm.page_table_lock)
        w.swap_out_pte(vma, 1)
        k.sched.spin_unlock(mm.page_table_lock)
        yield "mlock_fixup:populate"
        k.sched.up_write(mm.mmap_sem)

    run_paths(w.k, mlock)
    check_all(w.k, names)


def test_mlocked_page_on_evictable_list_caught() -> None:
    w = World()
    _vma, pages = base(w)
    m = w.monitor("mlocked_resident")
    p = pages[0]
    del_page_from_lru(w.k, p)
    p.flags |= {PG_mlocked, PG_lru}
    w.k.lru["inactive"].append(p)
    w.k.touch_page(p)
    assert "inactive" in caught(w, "mlocked_resident", m).message


def test_mlocked_page_unevictable_isolated_or_locked_accepted() -> None:
    w = fresh()
    _vma, pages = base(w)
    # (a page isolated with no task running is lru_at_rest's, and PG_mlocked pages of a vma
    # with no VM_LOCKED mlock_state_promise's: here no task runs at all, and no vma is locked)
    names = [c for c in CHECKS if c not in ("lru_at_rest", "mlock_state_promise")]
    m = install(w.k, names)
    for p in pages[:3]:
        del_page_from_lru(w.k, p)
    pages[0].flags |= {PG_mlocked, PG_lru}
    w.k.lru["unevictable"].append(pages[0])
    pages[1].flags.add(PG_mlocked)  # isolated: on no list
    w.k.touch_page(pages[0])
    w.k.touch_page(pages[1])
    m.step()
    p = pages[2]

    def mlock_vma_page(k: Kernel) -> Iterator[object]:
        yield k.sched.lock_page(p.lock)
        p.flags |= {PG_mlocked, PG_lru}
        k.lru["inactive"].append(p)
        k.touch_page(p)
        yield "mlock_vma_page:set"
        k.lru["inactive"].remove(p)
        k.lru["unevictable"].append(p)
        k.touch_page(p)
        k.sched.unlock_page(p.lock)

    run_paths(w.k, mlock_vma_page)
    check_all(w.k, names)


# =========================================================================== data integrity
def test_mapped_page_with_wrong_token_caught() -> None:
    w = World()
    _vma, pages = base(w)
    m = w.monitor("data_integrity")
    w.k.expected[0][1] = w.k.new_token()  # a write that went to another page
    w.k.touch_page(pages[1])
    v = caught(w, "data_integrity", m)
    assert "lost write" in v.message and "mm0 page 1" in v.message


def test_cow_write_into_shared_page_caught() -> None:
    """A write that lands in a page still shared with the child (COW not broken)."""
    w = World()
    vma, pages = base(w)
    child = w.fork_vma(vma, w.mm(1))
    for a, p in enumerate(pages):
        w.map(child, a, p, write=False)
    w.k.expected[1] = dict(w.k.expected[0])
    m = w.monitor("data_integrity")
    tok = w.k.new_token()
    pages[0].data = tok  # parent writes without COW
    w.k.expected[0][0] = tok
    w.k.touch_page(pages[0])
    v = caught(w, "data_integrity", m)
    assert "mm1 page 0" in v.message and "stale or foreign" in v.message


def test_read_of_wrong_token_caught() -> None:
    w = World()
    _vma, pages = base(w)
    with pytest.raises(Violation) as ei:
        w.k.check_read(w.mm(0), 0, pages[0].data + 1)
    assert ei.value.check == "data_integrity"
    w.k.check_read(w.mm(0), 0, pages[0].data)


def test_unsettled_fork_child_accepted() -> None:
    w = World()
    vma, pages = base(w)
    child = w.fork_vma(vma, w.mm(1))
    m = Monitor(w.k)
    w.k.expected_unsettled = {1}  # type: ignore[attr-defined]
    w.map(child, 0, pages[0], write=False)
    w.k.expected[1].clear()  # dup_mmap has not copied the expected view yet
    m.step()
    w.k.expected[1] = dict(w.k.expected[0])
    w.k.expected_unsettled = set()  # type: ignore[attr-defined]
    w.k.touch_mm(w.mm(1))
    quiet(w, m)


# =========================================================================== engine checks
def _prog(sched: Scheduler, *steps: object) -> Iterator[object]:
    for s in steps:
        if callable(s):
            s()
        else:
            yield s


def test_engine_checks_raise_their_registered_names(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = set()
    # sleep_in_atomic
    s = Scheduler()
    s.spawn(_prog(s, s.spin_lock(Spinlock("spin")), s.mutex_lock(Mutex("mutex"))))
    seen.add(s.run_to_outcome().check)
    # unlock_not_held
    s = Scheduler()
    s.spawn(_prog(s, "a", lambda: s.spin_unlock(Spinlock("spin"))))
    seen.add(s.run_to_outcome().check)
    # lock_not_held
    s = Scheduler()
    s.spawn(_prog(s, "a", lambda: s.assert_held(Spinlock("spin"))))
    seen.add(s.run_to_outcome().check)
    # lock_held_at_exit
    s = Scheduler()
    s.spawn(_prog(s, s.spin_lock(Spinlock("spin"))))
    seen.add(s.run_to_outcome().check)
    # deadlock: ABBA, preempted between the two acquisitions
    a, b = Mutex("A", "classA"), Mutex("B", "classB")
    for gap in range(6):
        s = Scheduler(PreemptionList([(gap, 0)]))
        s.spawn(_prog(s, s.mutex_lock(a), "ab:between", s.mutex_lock(b),
                      lambda s=s: s.mutex_unlock(b), lambda s=s: s.mutex_unlock(a)))
        s.spawn(_prog(s, s.mutex_lock(b), "ba:between", s.mutex_lock(a),
                      lambda s=s: s.mutex_unlock(a), lambda s=s: s.mutex_unlock(b)))
        out = s.run_to_outcome()
        if out.kind == "violation":
            seen.add(out.check)
            break
    # lock_order_inversion: A->B in one run, B->A in the next (one lockdep graph)
    dep = LockDep()
    a, b = Mutex("A", "classA"), Mutex("B", "classB")
    for first, second in ((a, b), (b, a)):
        s = Scheduler(lockdep=dep)
        s.spawn(_prog(s, s.mutex_lock(first), s.mutex_lock(second),
                      lambda s=s, x=second: s.mutex_unlock(x),
                      lambda s=s, x=first: s.mutex_unlock(x)))
        out = s.run_to_outcome()
    seen.add(out.check)
    # livelock
    s = Scheduler(RandomWalk(1), livelock_retries=3, max_steps=1000)
    for _ in range(2):  # a livelock takes two tasks retrying in lock step

        def spin(s: Scheduler = s) -> Iterator[object]:
            while True:
                yield s.retry("retry:top")

        s.spawn(spin())
    seen.add(s.run_to_outcome().check)
    # soft_lockup: a step whose loop never reaches a scheduling point
    monkeypatch.setattr(_watchdog, "SOFT_LOCKUP_CPU", 0.2)
    monkeypatch.setattr(_watchdog, "SOFT_LOCKUP_CPU_AGAIN", 0.2)
    s = Scheduler()

    def stuck(s: Scheduler = s) -> Iterator[object]:
        yield s.retry("stuck:top")
        t0 = time.process_time()
        while time.process_time() - t0 < 20:
            pass

    s.spawn(stuck())
    seen.add(s.run_to_outcome().check)
    engine = set(names("engine"))
    assert seen == engine, (seen, engine)


# =========================================================================== the monitor itself
def test_per_step_catches_a_transient_bad_state_the_end_state_hides() -> None:
    """A path breaks mapcount outside any lock and repairs it later: only per-step checking
    sees it.  The violation names the step, task and label."""
    w = fresh()
    _vma, pages = base(w)
    install(w.k)

    def sloppy(k: Kernel) -> Iterator[object]:
        yield "sloppy:start"
        pages[0].mapcount += 1
        k.touch_page(pages[0])
        yield "sloppy:window"
        pages[0].mapcount -= 1
        k.touch_page(pages[0])

    with pytest.raises(Violation) as ei:
        run_paths(w.k, sloppy)
    v = ei.value
    assert (v.check, v.task, v.label, v.step) == (
        "mapcount_matches_ptes", "T0", "sloppy:window", 1,
    )
    assert "step 1, task T0, at sloppy:window" in v.describe()


def test_monitor_is_incremental() -> None:
    """An untouched bad page is not looked at by the per-step monitor (the step costs
    O(touched)); the full scan finds it; touching it makes the monitor find it."""
    w = World()
    _vma, pages = base(w)
    m = Monitor(w.k)
    m.step()
    pages[0].mapcount = 5  # no touch_page: invisible to the incremental monitor
    m.step()
    with pytest.raises(Violation):
        check_all(w.k)
    w.k.touch_page(pages[0])
    with pytest.raises(Violation):
        m.step()


def test_monitor_clears_dirty_sets_and_pending() -> None:
    w = World()
    base(w)
    m = Monitor(w.k)
    assert w.k.dirty_pfns
    m.step()
    assert not (w.k.dirty_pfns or w.k.dirty_entries or w.k.dirty_mms)
    assert not any(m.pending.values())


def test_scaled_kernel_checks_quietly() -> None:
    w = World(KernelConfig().scaled(16))
    vmas = [w.vma(w.mm(i), 0, 64) for i in range(8)]
    m = Monitor(w.k)
    for i, vma in enumerate(vmas):
        for a in range(0, 64, 3):
            w.map(vma, a)
        if i % 2:
            child = w.fork_vma(vma, w.mm(i + 20))
            w.map(child, 1)
    quiet(w, m)


def test_reclaim_in_vma_being_mlocked_uses_the_mlocking_hook() -> None:
    """Between mlock_fixup (VM_LOCKED set) and the end of its populate, reclaim may unmap a page
    (the populate faults it back): accepted for mms in k.mlocking, caught for the others."""
    for mlocking, ok in (({0}, True), (set(), False)):
        w = World()
        vma = w.vma(w.mm(0), 0, 4, flags=VM_READ | VM_WRITE | VM_LOCKED)
        page = w.map(vma, 1)
        m = w.monitor("reserved_pte_cleared")
        w.k.mlocking = mlocking  # type: ignore[attr-defined]
        w.add_to_swap_cache(page, 3)
        w.swap_out_pte(vma, 1)
        if ok:
            m.step()
        else:
            with pytest.raises(Violation, match="VM_LOCKED"):
                m.step()


def test_cow_replacement_mid_flight_accepted() -> None:
    """do_wp_page in the child: under the pte lock, the new page's pte replaces the shared one
    before page_remove_rmap(old): the old page's mapcount is one too high for a moment."""
    w = fresh()
    vma, pages = base(w, mapped=1)
    child = w.fork_vma(vma, w.mm(1))
    old = w.map(child, 0, pages[0], write=False)
    w.k.expected[1][0] = old.data
    install(w.k)

    def do_wp_page(k: Kernel) -> Iterator[object]:
        mm = w.mm(1)
        yield k.sched.down_read(mm.mmap_sem)
        new = w.alloc()
        new.data = old.data  # cow_user_page
        yield k.sched.spin_lock(mm.page_table_lock)
        new.mapping, new.index = child.anon_vma, 0
        new.mapcount = 1
        k.set_pte_at(mm, 0, PresentPte(new.pfn, True))  # ptep_clear_flush + set_pte_at
        k.touch_page(new)
        yield "do_wp_page:replaced"
        old.mapcount -= 1  # page_remove_rmap(old_page)
        old.count -= 1
        k.touch_page(old)
        tok = k.new_token()  # the write that faulted
        new.data = tok
        k.expected[mm.id][0] = tok
        k.sched.spin_unlock(mm.page_table_lock)
        k.sched.up_read(mm.mmap_sem)

    run_paths(w.k, do_wp_page)
    check_all(w.k)
    assert w.k.expected[0][0] == pages[0].data != w.k.expected[1][0]
