"""Invariant modules, one family per module (installed as ``vmfuzz.invariants``).

Every check has a stable name, a one-line doc and the kernel check it mirrors (see
:data:`CHECKS`, or ``vmfuzz invariants``).  :func:`install` runs every model check after every
scheduler step, incrementally (a step costs O(what it touched)); :func:`check_all` is the full
scan, for the end of a run and for tests.  Families, in the order they run:

==============  =====================================================================
migration       migration_pte_page_locked
swapcache       swap_cache_unique, swap_map_counts
freeing         bad_page, use_after_free
mapcount        mapcount_matches_ptes, refcount_covers_users, page_refs_at_rest
rmap            rmap_reachable, anon_vma_leak
vma             vma_list_sane, pte_in_vma
mlock           reserved_pte_cleared, reserved_page_pinned, mlocked_resident
lru             lru_at_rest
integrity       data_integrity
promises        mprotect_promise, munmap_promise, mlock_promise, fork_promise,
                swapoff_promise, load_promise, mlock_state_promise (what a returned call
                promises user space: promises.py)
user            checks registered with ``vmfuzz.check`` (none by default; docs/api.md)
engine          deadlock, lock_order_inversion, sleep_in_atomic, unlock_not_held,
                lock_not_held, lock_held_at_exit, livelock (raised by the engine itself)
==============  =====================================================================

What the checks rely on from the model: every page-table write goes through ``k.set_pte_at`` /
``k.pte_clear``; ``k.touch_page`` when a page's count, mapcount, flags, mapping, index, private,
data or LRU list changes; ``k.touch_entry`` when ``swap_map[e]``, the swap-cache slot of ``e`` or
its in-flight count changes; ``k.touch_mm`` when a vma of the mm changes (list, vm_start, vm_end,
vm_pgoff, vm_flags, anon_vma chains) or the mm starts/stops being user-visible.  Hooks, declared
on :class:`~vmfuzz.kernel.Kernel` and None (not tracked) until the model code that keeps each one
first runs (see the family modules): ``k.swap_inflight`` (entry -> in-flight swap_map
references; None: swap_map_counts checks a lower bound only), ``k.reclaim_unmaps`` (ptes reclaim
cleared this step, consumed by the monitor), ``k.mlocking`` (mm ids with an mlock() in progress;
None: any mmap_sem holder counts as one), ``k.expected_unsettled`` (mm ids whose expected view
is not authoritative yet; empty by default).

Mid-flight states are accepted, never hidden: a check that fails inside the critical section that
legitimately breaks it (a spinlock section of the task that touched the object, the anon_vma
root lock, mmap_sem held for write, the page lock) is deferred and re-checked after every later
step until it holds or the excuse ends (see :mod:`vmfuzz.invariants._monitor`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from vmfuzz.invariants import (  # noqa: F401  (imported to register their checks)
    engine,
    freeing,
    integrity,
    lru,
    mapcount,
    migration,
    mlock,
    promises,
    rmap,
    swapcache,
    vma,
)
from vmfuzz.invariants._choice import choose as choose_checks
from vmfuzz.invariants._monitor import CheckView, Monitor
from vmfuzz.invariants._registry import (
    CHECKS,
    DEFER,
    FAMILIES,
    Check,
    register_user,
    unregister_user,
)

# Run order: the most specific kernel BUG first, data integrity last, engine checks listed last.
_order = {f: i for i, f in enumerate(FAMILIES)}
for _c in sorted(CHECKS.values(), key=lambda c: _order[c.family]):
    CHECKS[_c.name] = CHECKS.pop(_c.name)

if TYPE_CHECKING:
    from vmfuzz.kernel import Kernel

__all__ = [
    "CHECKS",
    "DEFER",
    "Check",
    "CheckView",
    "Monitor",
    "check_all",
    "choose_checks",
    "install",
    "names",
    "register_user",
    "unregister_user",
]


def names(family: str | None = None) -> list[str]:
    """Check names in run order (only ``family``'s if given)."""
    return [c.name for c in CHECKS.values() if family is None or c.family == family]


def install(k: Kernel, names: Iterable[str] | None = None) -> Monitor:
    """Run the enabled checks (``names``; None = all) after every scheduler step of ``k``.

    Engine check names in ``names`` are accepted and ignored (the engine always runs them).
    Returns the :class:`Monitor` (callers may ignore it).
    """
    monitor = Monitor(k, names)
    k.sched.checkers.append(monitor.on_step)
    return monitor


def check_all(k: Kernel, names: Iterable[str] | None = None) -> None:
    """Full scan of every page, swap entry and mm; raises the first :class:`Violation`.

    Without step history, a state inside some task's spinlock section is excused as a whole
    (at the end of a run no task is live, so nothing is excused)."""
    Monitor(k, names, full=True).scan_all()
