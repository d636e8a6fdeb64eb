"""Measure what the invariant monitor costs: steps/s with every check vs none, at 1x and 16x.

Two workloads, both on the fixed kernel, both run with lockdep on (as ``case.execute`` does) so
that only the invariants differ:

* ``model``: each task runs the registered kernel operations (mmap, write, read, fork, reclaim,
  migration, ...: whichever exist, see :data:`MODEL_OPS`) under a random schedule, through
  :func:`vmfuzz.case.execute`.  Skipped while no operation is registered.
* ``synthetic``: a stand-in kernel path written here that needs no model code: every task
  cycles the pages of its own mm through fault-in (alloc + write), swap-out (swap cache + swap
  pte), swap-in and zap, under mmap_sem and page_table_lock, touching what it changes.  It
  exercises the page, entry and mm scopes of every check at a known rate.

``scaled(16)`` multiplies frames, swap slots, mms and pages per mm by 16 and the workloads touch
16x more memory; an incremental monitor's per-step cost should not grow with it.
Benchmarks are measurements, not tests: figures vary by machine.
"""

from __future__ import annotations

import time
from typing import Any

import attrs

from vmfuzz._scheduler import TaskGen
from vmfuzz.kernel import OPS, Kernel, KernelConfig
from vmfuzz.kernel.mm_types import (
    VM_READ,
    VM_WRITE,
    AnonVma,
    AnonVmaChain,
    MmStruct,
    PG_swapcache,
    PresentPte,
    SwapPte,
    VmAreaStruct,
)
from vmfuzz.kernel.page_alloc import LRU_ACTIVE, add_page_to_lru_list, del_page_from_lru
from vmfuzz.lockdep import LockDep
from vmfuzz.schedules import RandomWalk

# Operations the model workload uses, in the order a task runs them (missing ones are skipped).
MODEL_OPS = (
    "mmap",
    "write",
    "read",
    "fork",
    "write",
    "kswapd",
    "swap_out",
    "read",
    "migrate",
    "mprotect",
    "mlock",
    "write",
    "munlock",
    "read",
    "munmap",
)


# --------------------------------------------------------------------------- synthetic
def _setup_mm(k: Kernel, mm: MmStruct, npages: int) -> VmAreaStruct:
    """mmap + anon_vma_prepare: one anonymous vma [0, npages) with its own anon_vma."""
    vid = k.new_id("vma")
    vma = VmAreaStruct(vid, mm, 0, npages, 0, VM_READ | VM_WRITE)
    av = AnonVma(k.new_id("anon_vma"))
    avc = AnonVmaChain(vma, av)
    vma.anon_vma_chain.append(avc)
    av.head.append(avc)
    vma.anon_vma = av
    mm.mmap = vma
    mm.map_count = 1
    k.touch_mm(mm)
    return vma


def _free_slot(k: Kernel) -> int:
    sm = k.swap.swap_map
    for e in range(1, len(sm)):
        if sm[e] == 0:
            return e
    return 0


def synthetic_path(k: Kernel, mm: MmStruct, vma: VmAreaStruct, rounds: int) -> TaskGen:
    """Cycle each page of ``vma``: none -> present -> swapped -> present -> none."""
    sched = k.sched
    ptl = mm.page_table_lock
    for _ in range(rounds):
        for addr in range(vma.vm_start, vma.vm_end):
            yield "synthetic:fault"
            yield sched.down_read(mm.mmap_sem)
            yield sched.spin_lock(ptl)
            pte = mm.pgd.get(addr)
            if pte is None:
                yield sched.spin_lock(k.zone_lock)
                pfn = k.free_list.pop(0) if k.free_list else None
                sched.spin_unlock(k.zone_lock)
                if pfn is not None:
                    page = k.pages[pfn]
                    page.count, page.mapcount = 1, 1
                    page.mapping, page.index = vma.anon_vma, addr - vma.vm_start + vma.vm_pgoff
                    page.data = k.new_token()
                    k.expected[mm.id][addr] = page.data
                    k.set_pte_at(mm, addr, PresentPte(pfn, True))
                    mm.rss += 1
                    add_page_to_lru_list(k, page, LRU_ACTIVE)  # (touches the page)
            elif isinstance(pte, PresentPte):
                page = k.pages[pte.pfn]
                e = _free_slot(k) if PG_swapcache not in page.flags else 0
                if e:
                    # add_to_swap + try_to_unmap_one
                    page.flags.add(PG_swapcache)
                    page.private = e
                    page.count += 1
                    k.swap.cache[e] = page
                    k.swap.swap_map[e] = 2
                    k.set_pte_at(mm, addr, SwapPte(e))
                    mm.rss -= 1
                    page.mapcount -= 1
                    page.count -= 1
                    k.touch_page(page)
                    k.touch_entry(e)
                else:
                    # zap_pte_range + free
                    k.pte_clear(mm, addr)
                    mm.rss -= 1
                    k.expected[mm.id].pop(addr, None)
                    page.mapcount -= 1
                    if PG_swapcache in page.flags:
                        _delete_from_swap_cache(k, page)
                    page.count -= 1
                    page.mapping = None
                    del_page_from_lru(k, page)  # (touches the page)
                    yield "synthetic:zapped"
                    yield sched.spin_lock(k.zone_lock)
                    k.free_list.append(page.pfn)
                    k.touch_page(page)
                    sched.spin_unlock(k.zone_lock)
            else:
                # do_swap_page: the page is still in the swap cache
                assert isinstance(pte, SwapPte)
                page = k.swap.cache[pte.entry]
                page.count += 1
                page.mapcount += 1
                k.set_pte_at(mm, addr, PresentPte(page.pfn, True))
                mm.rss += 1
                k.swap.swap_map[pte.entry] -= 1
                _delete_from_swap_cache(k, page)
                k.touch_page(page)
            sched.spin_unlock(ptl)
            sched.up_read(mm.mmap_sem)


def _delete_from_swap_cache(k: Kernel, page: Any) -> None:
    e = page.private
    del k.swap.cache[e]
    page.flags.discard(PG_swapcache)
    page.private = None
    page.count -= 1
    k.swap.swap_map[e] -= 1
    k.touch_page(page)
    k.touch_entry(e)


def run_synthetic(config: KernelConfig, checks: bool, seed: int, rounds: int) -> tuple[int, float]:
    """One synthetic run: (steps, seconds)."""
    from vmfuzz import Scheduler
    from vmfuzz.invariants import check_all, install

    sched = Scheduler(RandomWalk(seed), max_steps=10**9, lockdep=LockDep(), record_trace=False)
    if config.boot_pages:
        config = attrs.evolve(config, boot_pages=0)  # the workload maps its own vmas
    k = Kernel(config, sched)
    ntasks = min(4, config.nr_mms)
    # Each task cycles as many pages as it has frames, so that most faults do something.
    npages = max(1, min(config.pages_per_mm, config.nr_frames // ntasks))
    for i in range(ntasks):
        mm = k.mms[i]
        vma = _setup_mm(k, mm, npages)
        sched.spawn(synthetic_path(k, mm, vma, rounds), f"T{i}")
    if checks:
        install(k)
    t0 = time.perf_counter()
    sched.run()
    dt = time.perf_counter() - t0
    if checks:
        check_all(k)
    return sched.step_no, dt


# --------------------------------------------------------------------------- model
def model_case(config: KernelConfig, seed: int, ntasks: int = 3, span: int | None = None) -> Any:
    """A case where each task runs :data:`MODEL_OPS` over ``span`` pages (default: half an mm,
    so the touched memory grows with the sizes)."""
    from vmfuzz.case import Case, OpCall, Schedule, TaskSpec

    ppm = config.pages_per_mm
    span = max(1, ppm // 2) if span is None else max(1, min(span, ppm))
    tasks = []
    for t in range(ntasks):
        mm = t % config.nr_mms
        calls = []
        for op in MODEL_OPS:
            spec = OPS.get(op)
            if spec is None:
                continue
            reps = span if op in ("write", "read") else 1
            for r in range(reps):
                args = {}
                for name, kind in spec.params:
                    args[name] = {
                        "mm": mm,
                        "addr": r % ppm,
                        "npages": span,
                        "pfn": (seed + r) % config.nr_frames,
                        "entry": 1 + (seed + r) % max(1, config.nr_swap - 1),
                        "flag": 1,
                        "count": 1,
                    }[kind]
                calls.append(OpCall(op, args))
        tasks.append(TaskSpec(f"T{t}", tuple(calls)))
    return Case(config, tuple(tasks), Schedule(kind="random", seed=seed), max_steps=10**7)


def run_model(
    config: KernelConfig, checks: bool, seed: int, span: int | None = None
) -> tuple[int, float, str]:
    """One model run: (steps, seconds, outcome kind)."""
    from vmfuzz.case import execute

    case = model_case(config, seed, span=span)
    t0 = time.perf_counter()
    run = execute(case, invariants=checks, record_trace=False)
    dt = time.perf_counter() - t0
    return run.outcome.steps, dt, run.outcome.kind


# --------------------------------------------------------------------------- report
def _best(rates: list[float]) -> int:
    """The best of several repetitions: the machine's noise only ever slows a run down."""
    return round(max(rates)) if rates else 0


def bench_invariants(quick: bool = False, scales: tuple[int, ...] = (1, 16)) -> dict[str, Any]:
    """steps/s with all checks vs none, per workload and scale (best of interleaved repeats);
    ``overhead`` = none/all, ``us_per_step`` = the checks' cost per scheduler step."""
    out: dict[str, Any] = {}
    reps = 2 if quick else 5
    for scale in scales:
        config = KernelConfig().scaled(scale)
        rounds = max(1, (8 if quick else 64) // scale)
        rates: dict[str, list[float]] = {"all": [], "none": []}
        steps = 0
        for rep in range(reps):
            for label, checks in (("all", True), ("none", False)):
                n, secs = run_synthetic(config, checks, rep, rounds)
                rates[label].append(n / secs)
                steps = n
        out.setdefault("synthetic", {})[f"{scale}x"] = _row(rates, steps)
        if any(op in OPS for op in MODEL_OPS):
            span = 8 if quick else None
            out.setdefault("model", {})[f"{scale}x"] = _model_row(config, reps, span)
    return out


def _row(rates: dict[str, list[float]], steps: int) -> dict[str, Any]:
    a, n = _best(rates["all"]), _best(rates["none"])
    return {
        "all": a,
        "none": n,
        "overhead": round(n / a, 2) if a else None,
        "us_per_step": round(1e6 / a - 1e6 / n, 2) if a and n else None,
        "steps": steps,
    }


def _model_row(config: KernelConfig, reps: int, span: int | None) -> dict[str, Any]:
    rates: dict[str, list[float]] = {"all": [], "none": []}
    kinds: set[str] = set()
    steps = 0
    try:
        for rep in range(reps):
            for label, checks in (("all", True), ("none", False)):
                n, secs, kind = run_model(config, checks, rep, span)
                rates[label].append(n / secs if secs > 0 else 0.0)
                kinds.add(kind)
                steps = n
    except Exception as exc:  # the model is someone else's work in progress
        return {"error": f"{type(exc).__name__}: {exc}"}
    row = _row(rates, steps)
    row["outcomes"] = sorted(kinds)
    return row


def format_report(result: dict[str, Any]) -> str:
    lines = []
    for workload, rows in result.items():
        for scale, row in rows.items():
            if "error" in row:
                lines.append(f"invariants {workload} {scale}: not measured ({row['error']})")
                continue
            extra = f", outcomes {','.join(row['outcomes'])}" if "outcomes" in row else ""
            lines.append(
                f"invariants {workload} {scale}: {row['all']:,} steps/s with all checks, "
                f"{row['none']:,} with none (x{row['overhead']}, +{row['us_per_step']} us/step;"
                f" {row['steps']:,} steps/run{extra})"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    import json
    import sys

    res = bench_invariants(quick="--quick" in sys.argv)
    print(json.dumps(res) if "--json" in sys.argv else format_report(res))
