"""Sequential semantics of the swap & reclaim model (swapfile, swap_state, swapin, vmscan).

Each test drives the real operations (mmap, write, read, swap_out, kswapd, swapoff ...) one at
a time on a Kernel with every invariant installed, then checks the state the kernel would be in:
what the user reads, where each pte points, swap_map counts, the swap cache.  :class:`Sim` is
also the harness of the race tests in ``test_model_swap_races.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from vmfuzz.invariants import check_all, install

from vmfuzz import LockDep, Scheduler, Violation
from vmfuzz._scheduler import Outcome
from vmfuzz.case import thread
from vmfuzz.kernel import BUGS, OPS, Kernel, KernelConfig
from vmfuzz.kernel.mm_types import (
    SWAP_MAP_BAD,
    PG_mlocked,
    PG_swapcache,
    PresentPte,
    SwapPte,
)
from vmfuzz.kernel.swapfile import valid_swaphandles, vm_swap_full
from vmfuzz.kernel.vmscan import driver_store
from vmfuzz.schedules import NonPreemptive
from vmfuzz.schedules._explicit import Explicit

Op = tuple[str, dict[str, int]]


def o(name: str, **args: int) -> Op:
    return (name, args)


class Sim:
    """A kernel with all invariants and lockdep installed; ``op`` runs one operation to its end
    (alone), ``race`` runs several tasks under an explicit schedule."""

    def __init__(self, bugs: Iterable[str] = (), **cfg: int) -> None:
        cfg.setdefault("boot_pages", 0)  # the scenarios map exactly what they use
        self.sched = Scheduler(NonPreemptive(), lockdep=LockDep())
        self.k = Kernel(KernelConfig(bugs=frozenset(bugs), **cfg), self.sched)
        install(self.k)
        self.n = 0

    def op(self, name: str, **args: int) -> Any:
        self.n += 1
        task = self.k.spawn(name, f"setup{self.n}", **args)
        self.sched.run()
        return task.result

    def ops(self, calls: Iterable[Op]) -> None:
        for name, args in calls:
            self.op(name, **args)

    def race(
        self, tasks: dict[str, list[Op]], steps: Iterable[str] = (), *, strict: bool = True
    ) -> Outcome:
        from vmfuzz.case import OpCall

        self.sched.source = Explicit(list(steps), strict=strict)
        for name, calls in tasks.items():
            self.sched.spawn(thread(self.k, [OpCall(n, a) for n, a in calls]), name)
        return self.sched.run_to_outcome()

    # views
    def pte(self, mm: int, addr: int) -> Any:
        return self.k.mms[mm].pgd.get(addr)

    @property
    def swap_map(self) -> list[int]:
        return self.k.swap.swap_map

    def full_check(self) -> None:
        check_all(self.k)


def fill(mm: int, addrs: Iterable[int]) -> list[Op]:
    """mmap nothing, write each address (the vma must exist)."""
    return [o("write", mm=mm, addr=a) for a in addrs]


def mapped(sim: Sim, mm: int = 0, start: int = 0, npages: int = 8) -> None:
    sim.op("mmap", mm=mm, addr=start, npages=npages)
    sim.ops(fill(mm, range(start, start + npages)))


def read_all(sim: Sim, mm: int, addrs: Iterable[int]) -> None:
    """Read back every address: ``k.check_read`` raises data_integrity on a wrong token."""
    for a in addrs:
        assert sim.op("read", mm=mm, addr=a) == 0


# --------------------------------------------------------------------------- registry
def test_operations_and_bugs_registered() -> None:
    for name in ("swap_out", "kswapd", "swapoff", "swapon", "mmap_driver", "driver_ioctl"):
        assert name in OPS
    mine = {
        "swapout_vma_after_unlock": "000_41ea98ac7be5309c.txt",
        "swapout_holds_vmlist_lock": "000_41ea98ac7be5309c.txt",
        "read_swap_cache_async_unlocked_check": "001_7c293cf58bcd9bf3.txt",
        "vm_swap_full_delete_race": "001_7c293cf58bcd9bf3.txt",
        "unuse_process_no_mmap_sem": "004_b331e72de9ba5495.txt",
        "swapin_no_swapcache_recheck": "4969c1192d15afa3389e7ae3302096ff684ba655",
        "swapin_skip_swapcache_race": "13ddaf26be32",
        "swapin_no_get_swap_device": "eb085574a752",
    }
    for name, seed in mine.items():
        assert BUGS[name].seed == seed


# --------------------------------------------------------------------------- swap out / in
def test_swap_out_24_then_fault_in_keeps_data() -> None:
    """2.4 virtual scan: the first pages of the biggest mm go to swap; reads fault them back."""
    sim = Sim()
    mapped(sim, 0, 0, 8)
    assert sim.op("swap_out", count=3) == 3
    for a in range(3):
        pte = sim.pte(0, a)
        assert isinstance(pte, SwapPte)
        page = sim.k.swap.cache[pte.entry]
        # in the swap cache, no longer mapped: count = the cache's reference only
        assert PG_swapcache in page.flags and page.mapcount == 0 and page.count == 1
        assert sim.swap_map[pte.entry] == 2  # the pte + the cache
    assert sim.k.swap_inflight == {}  # type: ignore[attr-defined]
    read_all(sim, 0, range(8))
    for a in range(3):
        assert isinstance(sim.pte(0, a), PresentPte)
    sim.full_check()


def test_kswapd_26_reclaims_and_data_survives() -> None:
    """2.6 LRU scan: add_to_swap + try_to_unmap + pageout + free; the data comes back from disk."""
    sim = Sim()
    mapped(sim, 0, 0, 8)
    free_before = len(sim.k.free_list)
    assert sim.op("kswapd", count=4) == 4
    assert len(sim.k.free_list) == free_before + 4
    swapped = [a for a in range(8) if isinstance(sim.pte(0, a), SwapPte)]
    assert len(swapped) == 4
    for a in swapped:
        e = sim.pte(0, a).entry
        assert e not in sim.k.swap.cache and sim.swap_map[e] == 1  # written, freed: pte only
    read_all(sim, 0, range(8))
    sim.full_check()


def test_write_after_swapin_is_private_and_frees_the_slot() -> None:
    """A write fault on an exclusive swap page takes it over (reuse_swap_page): the slot is
    freed at once and the page leaves the swap cache."""
    sim = Sim()
    mapped(sim, 0, 0, 2)
    sim.op("kswapd", count=2)
    e = sim.pte(0, 0).entry
    assert sim.op("write", mm=0, addr=0) == 0
    pte = sim.pte(0, 0)
    assert isinstance(pte, PresentPte) and pte.write
    assert sim.swap_map[e] == 0 and e not in sim.k.swap.cache
    read_all(sim, 0, range(2))


def test_readahead_brings_the_window_into_the_swap_cache() -> None:
    """swapin_readahead: the in-use slots of the aligned window (1 << page_cluster, slot 0 the
    header skipped) are read into the swap cache, each holding one count for the cache."""
    sim = Sim()
    mapped(sim, 0, 0, 8)
    sim.op("kswapd", count=4)  # slots 1..4, all freed from memory
    entries = {a: sim.pte(0, a).entry for a in range(8) if isinstance(sim.pte(0, a), SwapPte)}
    assert sorted(entries.values()) == [1, 2, 3, 4]
    assert valid_swaphandles(sim.k, 2) == [1, 2, 3]
    assert valid_swaphandles(sim.k, 4) == [4]  # 4..7: 5 is free, the window stops there
    assert sim.swap_map[0] == SWAP_MAP_BAD
    addr_of = {e: a for a, e in entries.items()}
    sim.op("read", mm=0, addr=addr_of[2])
    # entry 2 is mapped again (its pte reference freed); 1 and 3 came in by readahead
    assert set(sim.k.swap.cache) == {1, 2, 3}
    assert sim.swap_map[1] == 2 and sim.swap_map[3] == 2  # swap pte + cache
    assert sim.swap_map[2] == 1  # the cache only: the pte now maps the page
    for e in (1, 3):
        page = sim.k.swap.cache[e]
        assert page.count == 1 and page.mapcount == 0 and not page.locked
    assert sim.swap_map[4] == 1 and 4 not in sim.k.swap.cache
    read_all(sim, 0, range(8))
    sim.full_check()


def test_swapoff_brings_every_page_back() -> None:
    """swapoff: every swap pte (in every mm, shared ones after fork too) is replaced by the
    page, swap_map ends all zero, the swap cache empty, and the data is intact."""
    sim = Sim()
    mapped(sim, 0, 0, 6)
    child = sim.op("fork", mm=0)
    sim.op("kswapd", count=4)
    sim.op("swap_out", count=2)
    assert any(isinstance(p, SwapPte) for p in sim.k.mms[child].pgd.values())
    assert sim.op("swapoff") == 0
    assert sim.swap_map[1:] == [0] * (len(sim.swap_map) - 1)
    assert sim.k.swap.cache == {}
    for mm in (0, child):
        assert not any(isinstance(p, SwapPte) for p in sim.k.mms[mm].pgd.values())
        read_all(sim, mm, range(6))
    assert sim.op("swapoff") < 0  # already off
    assert sim.op("kswapd", count=2) == 0  # nothing can go to swap now
    assert sim.op("swapon", flag=0) == 0
    assert sim.op("kswapd", count=2) == 2
    read_all(sim, 0, range(6))
    sim.full_check()


def test_swapoff_without_memory_fails_and_reenables() -> None:
    """try_to_unuse -ENOMEM (no frame to read into): the area is writable again."""
    sim = Sim(nr_frames=4, nr_swap=8)
    mapped(sim, 0, 0, 4)
    sim.op("mmap", mm=1, addr=0, npages=4)
    sim.ops(fill(1, range(4)))  # mm1's writes push mm0's pages out through direct reclaim
    assert any(isinstance(p, SwapPte) for p in sim.k.mms[0].pgd.values())
    sim.op("mlock", mm=1, addr=0, npages=4)
    assert sim.op("swapoff") < 0
    assert sim.k.swap.enabled
    sim.full_check()


def test_direct_reclaim_when_frames_run_out() -> None:
    """alloc_page with no free frame enters try_to_free_pages: the 2.4 virtual scan unmaps a
    page of the biggest mm into swap and the LRU pass frees it; all data survives."""
    sim = Sim(nr_frames=6)
    mapped(sim, 0, 0, 6)
    assert sim.k.free_list == []
    sim.op("mmap", mm=1, addr=0, npages=4)
    sim.ops(fill(1, range(4)))
    assert sum(isinstance(p, SwapPte) for p in sim.k.mms[0].pgd.values()) >= 4
    read_all(sim, 1, range(4))
    read_all(sim, 0, range(6))
    sim.full_check()


def test_mlocked_and_reserved_pages_are_never_reclaimed() -> None:
    sim = Sim()
    sim.op("mmap_reserved", mm=0, addr=0, npages=2)
    sim.ops(fill(0, range(2)))
    sim.op("mmap", mm=0, addr=4, npages=2)
    sim.ops(fill(0, range(4, 6)))
    sim.op("mlock", mm=0, addr=4, npages=2)
    sim.op("mmap", mm=1, addr=0, npages=1)
    sim.ops(fill(1, [0]))
    for _ in range(3):
        sim.op("swap_out", count=4)
        sim.op("kswapd", count=4)
    for a in (0, 1, 4, 5):
        assert isinstance(sim.pte(0, a), PresentPte)
    for a in (4, 5):
        assert PG_mlocked in sim.k.pages[sim.pte(0, a).pfn].flags
    assert isinstance(sim.pte(1, 0), SwapPte)  # the ordinary page did go
    read_all(sim, 0, [0, 1, 4, 5])
    sim.full_check()


def test_munmap_and_exit_free_swap_slots() -> None:
    sim = Sim()
    mapped(sim, 0, 0, 4)
    sim.op("swap_out", count=2)  # two pages in the swap cache, unmapped
    sim.op("kswapd", count=4)
    assert any(sim.swap_map[1:])
    sim.op("munmap", mm=0, addr=0, npages=2)
    sim.op("exit", mm=0)
    assert sim.swap_map[1:] == [0] * (len(sim.swap_map) - 1)
    assert sim.k.swap.cache == {}
    assert len(sim.k.free_list) == sim.k.config.nr_frames
    sim.full_check()


def test_vm_swap_full_deletes_from_swap_cache_on_fault() -> None:
    """With more than half of swap in use, do_swap_page frees the slot of a page it maps."""
    sim = Sim(nr_swap=6)  # 5 usable slots
    mapped(sim, 0, 0, 4)
    sim.op("kswapd", count=3)
    assert vm_swap_full(sim.k)
    a = next(a for a in range(4) if isinstance(sim.pte(0, a), SwapPte))
    e = sim.pte(0, a).entry
    sim.op("read", mm=0, addr=a)
    assert e not in sim.k.swap.cache and sim.swap_map[e] == 0
    read_all(sim, 0, range(4))


def test_skip_swapcache_swapin_on_a_synchronous_device() -> None:
    """swapon(flag=1): a zram-like device; a singly-used entry is read straight into a new
    private page, never entering the swap cache."""
    sim = Sim()
    assert sim.op("swapoff") == 0 and sim.op("swapon", flag=1) == 0
    mapped(sim, 0, 0, 4)
    sim.op("kswapd", count=2)
    a = next(a for a in range(4) if isinstance(sim.pte(0, a), SwapPte))
    e = sim.pte(0, a).entry
    sim.op("read", mm=0, addr=a)
    assert isinstance(sim.pte(0, a), PresentPte)
    assert e not in sim.k.swap.cache and sim.swap_map[e] == 0
    read_all(sim, 0, range(4))
    sim.full_check()


def test_driver_swapout_writes_to_the_device_and_data_survives() -> None:
    """The seed-000 driver: the 2.4 scan calls its ->swapout (fixed: with a file reference) and
    the page still goes to swap, so the data comes back."""
    sim = Sim()
    sim.op("mmap_driver", mm=0, addr=2, npages=2)
    sim.ops(fill(0, [2, 3]))
    assert sim.op("swap_out", count=4) == 1  # ->swapout slept: the scan stops
    assert isinstance(sim.pte(0, 2), SwapPte)
    store = driver_store(sim.k.drivers["drv"])
    assert list(store) == [(0, 2)]
    assert store[(0, 2)] == sim.k.expected[0][2]
    read_all(sim, 0, [2, 3])
    assert sim.op("driver_ioctl", mm=1) == 0
    assert not sim.k.drivers["drv"].lock.owner
    sim.full_check()


def test_driver_ioctl_reclaims_without_driver_io() -> None:
    """driver_ioctl holds the driver lock and reclaims with I/O disabled: no ->swapout (which
    would take the lock it holds), and dirty swap pages are not written."""
    sim = Sim(nr_frames=4)
    sim.op("mmap_driver", mm=0, addr=0, npages=4)
    sim.ops(fill(0, range(4)))
    assert sim.op("driver_ioctl", mm=1) < 0  # nothing could be freed: -ENOMEM
    assert driver_store(sim.k.drivers["drv"]) == {}
    read_all(sim, 0, range(4))
    sim.full_check()


def test_swap_free_of_a_free_slot_is_reported() -> None:
    sim = Sim()
    from vmfuzz.kernel.swapfile import swap_free

    with pytest.raises(Violation) as v:
        swap_free(sim.k, 3)
    assert v.value.check == "swap_map_counts"


def test_swap_free_of_a_free_slot_goes_on_with_its_check_off() -> None:
    """The kernel only prints "swap_free: Unused swap offset entry": with swap_map_counts
    off, the path goes on and the slot's count is left as it was."""
    from vmfuzz.kernel.swapfile import swap_free

    k = Kernel(KernelConfig(boot_pages=0, no_checks=frozenset({"swap_map_counts"})),
               Scheduler(NonPreemptive()))
    swap_free(k, 3)
    swap_free(k, 10_000)  # a bad offset: also only printed
    assert k.swap.swap_map[3] == 0
