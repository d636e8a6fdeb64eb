"""The incremental per-step runner: which objects a step touched, what to re-check, what to excuse.

After every scheduler step :meth:`Monitor.step` runs each enabled check on the objects the step
touched (``k.dirty_pfns``, ``k.dirty_entries``, ``k.dirty_mms``, filled by ``k.set_pte_at``,
``k.pte_clear`` and ``k.touch_*``), plus the keys a check deferred, then clears the dirty sets.
A step therefore costs O(what it touched), not O(pages).  The built-in page and entry hooks run
only on the touched keys the fused screen (:mod:`vmfuzz.invariants._screen`) cannot clear.

Mid-flight states.  The kernel keeps an invariant only *outside* the critical section that
updates it, so a check may answer :data:`DEFER` ("not now, legitimately"): the key stays pending
and is re-checked after every later step until it holds (then forgotten) or its excuse ends
(then the violation fires).  A deferred violation is therefore reported late, never lost, as long
as the bad state persists.  The excuses, all read off the lock state the scheduler keeps:

* ``atomic(scope, key)``: the object was touched by a task that is still inside a spinlock
  section (page_table_lock, tree_lock, swap_lock, lru_lock ...): the update is in progress and
  no other CPU that takes the same lock can observe it;
* ``held(lock)``: e.g. ``anon_vma->root->lock`` for rmap (walkers take it), the page lock for
  mlock_vma_page;
* ``mm_writer(mm)``: ``mmap_sem`` held for write (the vma list and layout are being rewritten).

Shadows kept here (for checks whose objects the model does not index): which swap entry each
PG_swapcache page claims, which pages each swap-cache slot pointed to, the swap ptes of each
entry as of the previous step (to see *new* swap ptes), and each mm's layout signature (vmas,
their ranges and anon_vma chains) so that whole-mm re-scans run only when the layout changed.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Collection, Iterable, Set
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
from vmfuzz.invariants._registry import (
    CHECKS,
    DEFER,
    GUARD_FLAG,
    RESCAN_GATED,
    STEP_GROUP,
    STEP_GUARD,
    Check,
    _Defer,
)
from vmfuzz.invariants._screen import (
    ENTRY_HOOKS,
    MM_HOOKS,
    PAGE_HOOKS,
    quiet_entry,
    quiet_mm,
    quiet_page,
)
from vmfuzz.invariants._view import _FREED, MAX_VMAS, freed_desc

from vmfuzz.kernel.mm_types import PG_swapcache
from vmfuzz.violation import Violation

if TYPE_CHECKING:
    from vmfuzz._locks import Lock
    from vmfuzz.kernel import Kernel
    from vmfuzz.kernel.mm_types import MmStruct

SCOPES = ("page", "entry", "mm")
_SCOPE_INDEX = {scope: i for i, scope in enumerate(SCOPES)}
_EMPTY: frozenset[tuple[int, int]] = frozenset()
_NONE: frozenset[int] = frozenset()


def resolve(names: Iterable[str] | None) -> list[Check]:
    """The per-step checks selected by ``names`` (None = all), in registry order."""
    if names is None:
        return [c for c in CHECKS.values() if c.per_step]
    wanted = list(names)
    unknown = sorted(n for n in wanted if n not in CHECKS)
    if unknown:
        raise KeyError(f"unknown invariant check(s): {', '.join(unknown)}")
    chosen = set(wanted)
    return [c for c in CHECKS.values() if c.per_step and c.name in chosen]


class CheckView:
    """What a user check (:func:`vmfuzz.check`) sees after a scheduler step.

    ``k`` is the kernel under test (:class:`vmfuzz.kernel.Kernel`: ``k.mms``, ``k.pages``,
    ``k.swap``, the pte indexes ...): read it, never change it.  The excuses say whether a
    broken state is a legitimate mid-flight one, for the hook to answer :attr:`DEFER` ("not
    now": the key is checked again after every later step until the hook answers None or a
    violation)."""

    __slots__ = ("_monitor",)

    DEFER: ClassVar[_Defer] = DEFER

    def __init__(self, monitor: Monitor) -> None:
        self._monitor = monitor

    @property
    def k(self) -> Kernel:
        """The kernel under test."""
        return self._monitor.k

    @property
    def step(self) -> int:
        """The scheduler step just run (0 before the first)."""
        return self._monitor.k.sched.step_no

    def atomic(self, scope: str, key: int) -> bool:
        """``key`` (a pfn for ``"page"``, a swap entry for ``"entry"``, an mm id for ``"mm"``)
        was touched by a task that is still inside a spinlock section: its update is in
        progress, and no CPU taking the same lock can see it half done."""
        return self._monitor.atomic(scope, key)

    def held(self, lock: Lock) -> bool:
        """Some task holds ``lock`` (e.g. ``mm.page_table_lock``, ``page.lock``)."""
        return self._monitor.held(lock)

    def mm_writer(self, mm: MmStruct) -> bool:
        """``mm->mmap_sem`` is held for write (its vma list may be mid-update)."""
        return self._monitor.mm_writer(mm)


@attrs.frozen
class _Plan:
    """What a monitor runs, worked out once per registry, selection and config choice."""

    registry: tuple[Check, ...]  # the registry it was made for (kept: its ids are the key)
    checks: tuple[Check, ...]
    names: frozenset[str]
    hooks: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]  # scope -> (name, hook)s
    # (name, hook, its step guard or None, the kernel attribute the guard reads or None);
    # consecutive hooks of one step_group run as one
    step_hooks: list[tuple[str, Any, Any, str | None]]
    rest_hooks: list[tuple[str, Any]]
    gated_fns: frozenset[Any]
    screened_page: frozenset[Any]  # page hooks quiet_page() answers for (none in a full scan)
    screened_entry: frozenset[Any]  # entry hooks quiet_entry() answers for (idem)
    mm_screened_all: bool  # every mm hook is rescan-gated or answered for by quiet_mm()
    every_step: bool


_PLANS: dict[tuple[Any, ...], _Plan] = {}


def _plan(k: Kernel, names: Iterable[str] | None, full: bool) -> _Plan:
    """The checks and hooks of a monitor of ``k``: cached, as every run of a campaign asks for
    the same ones (keyed by the registry's contents, so a check registered later counts)."""
    wanted = None if names is None else tuple(names)
    cfg = k.config
    registry = tuple(CHECKS.values())
    key = (tuple(map(id, registry)), wanted, cfg.checks, cfg.no_checks, full)
    plan = _PLANS.get(key)
    if plan is not None:
        return plan
    # The run's own choice (KernelConfig.checks / no_checks) narrows ``names`` further.
    checks = tuple(c for c in resolve(wanted) if cfg.check_on(c.name))
    hooks = tuple(
        (scope, tuple((c.name, getattr(c, scope)) for c in checks
                      if getattr(c, scope) is not None))
        for scope in SCOPES
    )
    plan = _Plan(
        registry,
        checks,
        frozenset(c.name for c in checks),
        hooks,
        _step_hooks([c for c in checks if c.each_step], full),
        [(c.name, c.at_rest) for c in checks if c.at_rest],
        frozenset() if full else frozenset(
            c.mm for c in checks if c.mm is not None and getattr(c.mm, RESCAN_GATED, False)
        ),
        frozenset() if full else frozenset(
            c.page for c in checks if c.page is not None and c.page in PAGE_HOOKS
        ),
        frozenset() if full else frozenset(
            c.entry for c in checks if c.entry is not None and c.entry in ENTRY_HOOKS
        ),
        not full and all(
            c.mm in MM_HOOKS or getattr(c.mm, RESCAN_GATED, False)
            for c in checks if c.mm is not None
        ),
        # A user check's each_step hook runs after every step, even one that touched nothing
        # the model tracks (it may read what the dirty sets do not cover: locks, counters).
        any(c.user and c.each_step for c in checks),
    )
    if len(_PLANS) >= 64:
        _PLANS.pop(next(iter(_PLANS)))
    _PLANS[key] = plan
    return plan


def _step_hooks(checks: list[Check], full: bool) -> list[tuple[str, Any, Any, str | None]]:
    """The ``each_step`` hooks of ``checks`` in order, with their guards (none in a full scan)
    and the kernel attribute a :func:`kernel_flag` guard reads; a run of consecutive hooks of
    one :func:`step_group` (and one guard) becomes one hook."""
    out: list[tuple[str, Any, Any, str | None]] = []
    group: Any = None
    names: list[str] = []
    for c in checks:
        fn = c.each_step
        guard = None if full else getattr(fn, STEP_GUARD, None)
        found = getattr(fn, STEP_GROUP, None)
        if found is not None and found is group and guard is out[-1][2]:
            names.append(c.name)
            out[-1] = (out[-1][0], _grouped(found, tuple(names)), guard, out[-1][3])
            continue
        group, names = found, [c.name]
        out.append((c.name, fn, guard, getattr(guard, GUARD_FLAG, None)))
    return out


def _grouped(found: Callable[[Monitor], list[Violation]], names: tuple[str, ...]) -> Any:
    """One hook for the consecutive hooks ``names`` of a step group: the violation the first
    of them to answer one would answer."""

    def each_step(m: Monitor) -> Violation | None:
        violations = found(m)
        if violations:
            for name in names:
                for v in violations:
                    if v.check == name:
                        return v
        return None

    each_step.__qualname__ = f"group({', '.join(names)})"
    return each_step


class _KernelOf:
    """``Monitor.k`` between steps: the kernel, read through the monitor's weak reference.

    The kernel's scheduler holds the monitor (its checker), so a monitor holding its kernel
    would put every run in a reference cycle, freed (with its history, trace and world) only
    by the cyclic garbage collector: a tenth of a checked run's time.  During a step the
    monitor keeps the kernel in its own ``k`` attribute instead (an instance attribute hides
    this non-data descriptor), so the checks read it at full speed."""

    def __get__(self, m: Monitor | None, owner: type | None = None) -> Kernel:
        if m is None:
            raise AttributeError("k")
        k = m._kernel()
        if k is None:
            raise ReferenceError("the monitor's kernel is gone")
        return k


class Monitor:
    """Incremental checker for one kernel; ``full=True`` makes every hook a full scan."""

    k = _KernelOf()
    promise_spec: Any = None  # the promises family's record of the calls (promises.py)

    def __init__(self, k: Kernel, names: Iterable[str] | None = None, *, full: bool = False):
        self._kernel = weakref.ref(k)
        self.full = full
        plan = _plan(k, names, full)
        self.checks = list(plan.checks)
        self.names = plan.names
        # scope -> [(check name, hook, its pending keys)]; (check, scope) -> its pending keys
        self.pending: dict[tuple[str, str], dict[int, None]] = {}
        self.hooks: dict[str, list[tuple[str, Any, dict[int, None]]]] = {}
        for scope, scope_hooks in plan.hooks:
            lst = self.hooks[scope] = []
            for name, fn in scope_hooks:
                pend = self.pending[(name, scope)] = {}
                lst.append((name, fn, pend))
        self.step_hooks = list(plan.step_hooks)
        self.rest_hooks = list(plan.rest_hooks)
        # mm hooks that answer None unless rescan() (a full scan has no such shortcut).
        self.gated_fns = plan.gated_fns
        # page hooks run only on the touched pages quiet_page() cannot clear
        self.screened_page = plan.screened_page
        self.screened_entry = plan.screened_entry
        # Every page (entry) hook is screened: where the screen clears every touched key and
        # nothing is pending, the scope has nothing to run.
        self.page_screened_all = all(fn in plan.screened_page for _n, fn in plan.hooks[0][1])
        self.entry_screened_all = all(fn in plan.screened_entry for _n, fn in plan.hooks[1][1])
        # Every mm hook is rescan-gated or screened: with no layout change, nothing pending and
        # every touched mm cleared by quiet_mm(), the mm scope has nothing to run.
        self.mm_screened_all = plan.mm_screened_all
        # A user check's each_step hook runs after every step, even one that touched nothing
        # the model tracks (it may read what the dirty sets do not cover: locks, counters).
        self.every_step = plan.every_step
        self.view = CheckView(self)
        # task id -> the pfns, entries and mm ids (SCOPES order) it touched inside its current
        # spinlock section (atomic()).
        self.atomic_touch: dict[int, tuple[set[int], set[int], set[int]]] = {}
        # Shadows.
        self.claim_of: dict[int, int] = {}  # pfn -> entry its PG_swapcache/private claim
        self.claims: dict[int, set[int]] = {}  # entry -> pfns claiming it
        self.cache_pfn: dict[int, int] = {}  # entry -> pfn of its swap-cache page
        self.cache_of: dict[int, set[int]] = {}  # pfn -> entries whose slot held it
        self.swap_pos: dict[int, frozenset[tuple[int, int]]] = {}  # entry -> swap ptes
        self.sigs: dict[int, tuple[Any, ...]] = {}  # mm id -> layout signature
        self.deferred_addrs: dict[tuple[str, int], set[int]] = {}  # (check, mm) -> addrs
        # Per-step results of the shadow refresh.
        self.layout_changed: set[int] = set()
        self.new_swap_ptes: dict[int, list[tuple[int, int]]] = {}
        self.has_pending = False  # any key pending in any check (kept by step())
        self.steps = 0  # steps that touched something (the others cost one test)
        self.baseline()

    # ------------------------------------------------------------------ shadows
    def baseline(self) -> None:
        """(Re)build every shadow from the current state (install time, check_all)."""
        k = self.k
        self.claim_of.clear()
        self.claims.clear()
        for page in k.pages:
            self._claim(page.pfn)
        self.cache_pfn.clear()
        self.cache_of.clear()
        for e in sorted(k.swap.cache):
            self._cache_slot(e)
        self.swap_pos = {e: frozenset(u) for e, u in k.swap_ptes.items()}
        self.sigs = {mm_id: layout_signature(k, mm) for mm_id, mm in sorted(k.mms.items())}

    def _claim(self, pfn: int) -> tuple[int | None, int | None]:
        """Refresh the swap-entry claim of ``pfn``; returns (old, new) claimed entries."""
        page = self.k.pages[pfn]
        new = page.private if PG_swapcache in page.flags else None
        old = self.claim_of.get(pfn)
        if old != new:
            if old is not None:
                s = self.claims.get(old)
                if s is not None:
                    s.discard(pfn)
                    if not s:
                        del self.claims[old]
                del self.claim_of[pfn]
            if new is not None:
                self.claim_of[pfn] = new
                self.claims.setdefault(new, set()).add(pfn)
        return old, new

    def _cache_slot(self, e: int) -> tuple[int | None, int | None]:
        """Refresh which pfn the swap-cache slot of ``e`` holds; returns (old, new) pfns."""
        page = self.k.swap.cache.get(e)
        new = None if page is None else page.pfn
        old = self.cache_pfn.get(e)
        if old != new:
            if old is not None:
                s = self.cache_of.get(old)
                if s is not None:
                    s.discard(e)
                    if not s:
                        del self.cache_of[old]
                del self.cache_pfn[e]
            if new is not None:
                self.cache_pfn[e] = new
                self.cache_of.setdefault(new, set()).add(e)
        return old, new

    # ------------------------------------------------------------------ excuses
    def atomic(self, scope: str, key: int) -> bool:
        """``key`` was touched by a task still inside a spinlock section (update in progress).

        In a full scan (no history) any live task inside a spinlock section excuses."""
        sched = self.k.sched
        if self.full:
            return any(t.spins for t in sched.live)
        if not self.atomic_touch:
            return False
        i = _SCOPE_INDEX.get(scope)
        if i is None:
            return False
        return any(
            key in keys[i] and sched.tasks[tid].spins
            for tid, keys in self.atomic_touch.items()
        )

    @staticmethod
    def held(lock: Lock) -> bool:
        """Some task holds ``lock`` (in any mode)."""
        return bool(lock.holders())

    @staticmethod
    def mm_writer(mm: MmStruct) -> bool:
        """``mm->mmap_sem`` is held for write: the vma list/layout may be mid-update."""
        return mm.mmap_sem.owner is not None

    def rescan(self, name: str, mm_id: int) -> bool:
        """Should check ``name`` look at ``mm_id`` this step (its layout changed, or it is
        pending for this check)?"""
        return (
            self.full
            or mm_id in self.layout_changed
            or mm_id in self.pending.get((name, "mm"), ())
        )

    def mm_addrs(self, name: str, mm: MmStruct) -> list[int]:
        """The addresses of ``mm`` whose ptes check ``name`` must re-check this step: all of
        them when the layout changed (or in a full scan), else only those it deferred last
        time (new ptes are checked through their pages)."""
        if self.full or mm.id in self.layout_changed:
            return sorted(mm.pgd)
        pgd = mm.pgd
        return sorted(a for a in self.deferred_addrs.get((name, mm.id), ()) if a in pgd)

    def defer_addrs(self, name: str, mm_id: int, addrs: list[int]) -> _Defer | None:
        """Record the addresses a whole-mm check deferred; returns DEFER or None."""
        if addrs:
            self.deferred_addrs[(name, mm_id)] = set(addrs)
            return DEFER
        self.deferred_addrs.pop((name, mm_id), None)
        return None

    def unsettled(self) -> Collection[int]:
        """mm ids whose expected view is not yet authoritative (model hook, default none)."""
        return self.k.expected_unsettled

    # ------------------------------------------------------------------ running
    def step(self, _sched: object = None) -> None:
        """Run every enabled check on what the last step touched; raise the first violation.

        Also the scheduler's checker (``sched.checkers`` entry, given the scheduler)."""
        k = self._kernel()
        if k is None:
            raise ReferenceError("the monitor's kernel is gone")
        if not (
            self.every_step
            or k.dirty_pfns
            or k.dirty_entries
            or k.dirty_mms
            or self.has_pending
            or k.migration_ptes
            or k.reclaim_unmaps
            or (self.rest_hooks and not k.sched.live)
            or k.calls_new
        ):
            return
        self.steps += 1
        self.__dict__["k"] = k  # for the step (see _KernelOf)
        try:
            pages, entries, mms = self._prepare()
            try:
                last_guard: Any = None
                active = True
                for _name, fn, guard, flag in self.step_hooks:
                    if guard is not None:
                        if flag is not None:  # a kernel_flag guard, read here
                            if not getattr(k, flag):
                                continue
                        else:
                            if guard is not last_guard:
                                last_guard, active = guard, guard(self)
                            if not active:
                                continue
                    r = fn(self)
                    if r is not None and not isinstance(r, _Defer):  # (DEFER: its one instance)
                        raise r
                hooks = self.hooks
                has_pending = self.has_pending
                # (a scope with nothing touched and nothing pending anywhere is skipped here)
                if pages or has_pending:
                    screened = self.screened_page
                    if screened and pages:
                        # The screened hooks run on the pages the screen cannot clear (and on
                        # their pending keys): on the others each would answer None.
                        held: set[int] | frozenset[int] = _NONE
                        for pfn in pages:
                            if not quiet_page(self, pfn):
                                if held is _NONE:
                                    held = set()
                                held.add(pfn)  # type: ignore[union-attr]
                        if held or has_pending or not self.page_screened_all:
                            self._run_scope(hooks["page"], pages, held, screened)
                    else:
                        self._run_scope(hooks["page"], pages)
                if entries or self.has_pending:
                    screened = self.screened_entry
                    if screened and entries:
                        held = _NONE
                        for e in entries:
                            if not quiet_entry(self, e):
                                if held is _NONE:
                                    held = set()
                                held.add(e)  # type: ignore[union-attr]
                        if held or self.has_pending or not self.entry_screened_all:
                            self._run_scope(hooks["entry"], entries, held, screened)
                    else:
                        self._run_scope(hooks["entry"], entries)
                # A hook that looks at an mm only when rescan() says so is given the mms whose
                # layout changed (and its pending ones): on any other it would answer None.
                if mms or self.has_pending:
                    run = self.has_pending or self.layout_changed or not self.mm_screened_all
                    if not run:
                        for mm_id in mms:
                            if not quiet_mm(self, mm_id):
                                run = True
                                break
                    if run:
                        self._run_scope(hooks["mm"], mms, self.layout_changed, self.gated_fns)
                if not k.sched.live:
                    self._at_rest()
            finally:
                self._finish()
        finally:
            del self.__dict__["k"]

    def _at_rest(self) -> None:
        """The checks of a state with no task live (after every per-object hook)."""
        for _name, fn in self.rest_hooks:
            r = fn(self)
            if r is not None and not isinstance(r, _Defer):
                raise r

    def _run_scope(
        self,
        hooks: list[tuple[str, Any, dict[int, None]]],
        touched: set[int],
        gated: Set[int] | None = None,
        gated_fns: frozenset[Any] = frozenset(),
    ) -> None:
        """Run ``hooks`` on ``touched`` and on their pending keys, in key order (a hook in
        ``gated_fns`` on ``gated`` instead of ``touched`` when given: a :func:`rescan_gated`
        hook, a screened one); raise the first violation."""
        if not touched and not self.has_pending:
            return  # nothing touched in this scope, nothing pending anywhere
        ordered: list[int] | None = None
        ordered_gated: list[int] | None = None
        for _name, fn, pending in hooks:
            keys: Set[int] = touched
            if gated is not None and fn in gated_fns:
                keys = gated
            if pending:
                todo = sorted(keys | pending.keys()) if keys else sorted(pending)
            elif not keys:
                continue
            elif keys is touched:
                if ordered is None:
                    ordered = sorted(touched)
                todo = ordered
            else:
                if ordered_gated is None:
                    ordered_gated = sorted(keys)
                todo = ordered_gated
            for key in todo:
                r = fn(self, key)
                if r is None:
                    if pending:
                        pending.pop(key, None)
                elif r is DEFER:
                    pending[key] = None
                    self.has_pending = True
                else:
                    raise r

    on_step = step  # the scheduler checker (``sched.checkers`` entry)

    def _prepare(self) -> tuple[set[int], set[int], set[int]]:
        """Refresh the shadows for the touched objects; returns the (pages, entries, mms)
        to check (the touched ones and those whose swap-cache claims or slots moved).

        The kernel's dirty sets are returned as they are unless something must be added to
        them (then a copy): the hooks only read them, and ``_finish`` empties the kernel's."""
        k = self.k
        pages = k.dirty_pfns
        entries = k.dirty_entries
        mms = k.dirty_mms
        if pages:
            nr_frames = len(k.pages)
            if min(pages) < 0 or max(pages) >= nr_frames:
                for pfn in sorted(pages):
                    if not 0 <= pfn < nr_frames:
                        raise Violation(
                            "bad_page",
                            f"a pte or a touch names pfn {pfn}, outside mem_map [0, {nr_frames})",
                            pfn=pfn,
                        )
            kpages = k.pages
            claim_of = self.claim_of
            cache_of = self.cache_of
            copied = False
            for pfn in pages:
                page = kpages[pfn]
                new = page.private if PG_swapcache in page.flags else None
                old = claim_of.get(pfn)
                if old != new:
                    self._claim(pfn)
                    if not copied:
                        entries, copied = set(entries), True
                    if old is not None:
                        entries.add(old)
                    if new is not None:
                        entries.add(new)
                slots = cache_of.get(pfn)
                if slots:
                    if not copied:
                        entries, copied = set(entries), True
                    entries.update(slots)
        if self.new_swap_ptes:
            self.new_swap_ptes = {}
        if entries:
            nr_swap = len(k.swap.swap_map)
            for e in entries:
                if type(e) is not int or not 0 <= e < nr_swap:
                    for e in sorted(entries):
                        if not isinstance(e, int) or not 0 <= e < nr_swap:
                            raise Violation(
                                "swap_map_counts",
                                f"swap entry {e} is outside the swap device [0, {nr_swap})",
                                entry=e,
                            )
                    break
            cache = k.swap.cache
            cache_pfn = self.cache_pfn
            swap_ptes = k.swap_ptes
            swap_pos = self.swap_pos
            for e in sorted(entries) if len(entries) > 1 else entries:
                cached = cache.get(e)
                new_pfn = None if cached is None else cached.pfn
                old_pfn = cache_pfn.get(e)
                if old_pfn != new_pfn:
                    self._cache_slot(e)
                    if pages is k.dirty_pfns:
                        pages = set(pages)
                    if old_pfn is not None:
                        pages.add(old_pfn)
                    if new_pfn is not None:
                        pages.add(new_pfn)
                cur = swap_ptes.get(e)
                prev = swap_pos.get(e, _EMPTY)
                if cur:
                    if len(cur) != len(prev) or not cur <= prev:
                        new_ptes = cur - prev
                        if new_ptes:
                            self.new_swap_ptes[e] = sorted(new_ptes)
                        swap_pos[e] = frozenset(cur)
                elif prev:
                    del swap_pos[e]
        if mms:
            changed: set[int] = set()
            sigs = self.sigs
            kmms = k.mms
            for mm_id in mms:
                mm = kmms.get(mm_id)
                if mm is None:
                    continue
                sig = layout_signature(k, mm)
                if sig != sigs.get(mm_id):
                    sigs[mm_id] = sig
                    changed.add(mm_id)
            self.layout_changed = changed
        elif self.layout_changed:
            self.layout_changed = set()
        call_returns = k.call_returns
        atomic_touch = self.atomic_touch
        if call_returns and atomic_touch:  # an excuse never outlives the call that made it
            for tid in call_returns:
                atomic_touch.pop(tid, None)
        cur_task = k.sched.current
        if cur_task is not None and cur_task.spins and not (
                call_returns and cur_task.tid in call_returns):
            touched = atomic_touch.get(cur_task.tid)
            if touched is None:
                touched = atomic_touch[cur_task.tid] = (set(), set(), set())
            if pages:
                touched[0].update(pages)
            if entries:
                touched[1].update(entries)
            if mms:
                touched[2].update(mms)
        return pages, entries, mms

    def _finish(self) -> None:
        k = self.k
        if self.has_pending:
            self.has_pending = any(self.pending.values())
        if k.dirty_pfns:
            k.dirty_pfns.clear()
        if k.dirty_mms:
            k.dirty_mms.clear()
        if k.dirty_entries:
            k.dirty_entries.clear()
        k.calls_new = False
        if k.call_returns:
            k.call_returns.clear()
        if k.reclaim_unmaps:
            k.reclaim_unmaps.clear()
        atomic_touch = self.atomic_touch
        if atomic_touch:
            # A section ends when its task holds no spinlock any more: forget its touches.
            tasks = k.sched.tasks
            ended = None
            for tid in atomic_touch:
                if not tasks[tid].spins:
                    if ended is None:
                        ended = [tid]
                    else:
                        ended.append(tid)
            if ended is not None:
                for tid in ended:
                    del atomic_touch[tid]

    def scan_all(self) -> None:
        """Full scan of every page, entry and mm (``check_all``): raise the first violation."""
        k = self.k
        self.layout_changed = set(k.mms)
        self.new_swap_ptes = {}
        keys = {
            "page": range(len(k.pages)),
            "entry": range(len(k.swap.swap_map)),
            "mm": sorted(k.mms),
        }
        for _name, fn, _guard, _flag in self.step_hooks:
            r = fn(self)
            if r is not None and not isinstance(r, _Defer):
                raise r
        for scope in SCOPES:
            for _name, fn, _pending in self.hooks[scope]:
                for key in keys[scope]:
                    r = fn(self, key)
                    if r is not None and r is not DEFER:
                        raise r
        if not k.sched.live:
            self._at_rest()


def layout_signature(k: Kernel, mm: MmStruct) -> tuple[Any, ...]:
    """What rmap and data checks depend on in an mm's layout: vmas, ranges, chains, liveness."""
    out: list[Any] = [mm.map_count, mm.dead, mm.users > 0, mm.id in k.expected_unsettled]
    vma = mm.mmap
    n = 0
    freed_types = _FREED  # freed(x) is ``type(x) in _FREED``, inlined: this runs every step
    while vma is not None and n < MAX_VMAS:
        if type(vma) in freed_types:
            out.append(("freed", freed_desc(vma)))
            break
        chain: list[tuple[object, object]] = []
        for avc in vma.anon_vma_chain:
            av = avc.anon_vma
            if type(av) in freed_types:
                chain.append(("freed", freed_desc(av)))
            else:
                root = av.root
                chain.append((av.id, -1 if type(root) in freed_types else root.id))
        anon = vma.anon_vma
        out.append((
            vma.id,
            vma.vm_mm is mm,
            vma.vm_start,
            vma.vm_end,
            vma.vm_pgoff,
            vma.vm_flags,
            None if anon is None else (-1 if type(anon) in freed_types else anon.id),
            tuple(chain) if chain else (),
        ))
        vma = vma.vm_next
        n += 1
    return tuple(out)
