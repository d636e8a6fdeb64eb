"""The simulated kernel: all mm state of one run, plus the scheduler its paths run on.

One :class:`Kernel` holds the frames (``pages``), the free list, the LRU lists, the swap device
and swap cache, the mm_structs, the drivers, the data-integrity bookkeeping (each mm's
expected view of its memory) and the enabled historical-bug switches.  Kernel paths are
generator functions in the sibling modules taking ``k`` first; operations (``ops.OPS``) are
spawned as tasks with :meth:`Kernel.spawn`.
"""

from __future__ import annotations

import pickle
import sys
import weakref
from collections.abc import Callable, Collection, Iterable
from types import CodeType, FrameType
from typing import Any

from vmfuzz._locks import Spinlock
from vmfuzz._scheduler import Scheduler, Task
from vmfuzz.kernel.config import KernelConfig
from vmfuzz.kernel.mm_types import (
    AnonVma,
    Driver,
    FreedAnonVma,
    FreedVma,
    MigrationPte,
    MmStruct,
    Page,
    PresentPte,
    Pte,
    SwapInfo,
    SwapPte,
    VmAreaStruct,
    poison,
)
from vmfuzz.kernel.ops import OPS
from vmfuzz.violation import Violation

# The booted state of each recent config (:meth:`Kernel._snapshot`), oldest first.  An
# in-process image of this run's own objects only: never written to disk, never read from
# anywhere else (corpus files are JSON).  Code that changes a kernel path in place (a test's
# monkeypatch) must empty it, or it restores worlds its old code built.
# Each holds the image and, apart (only read or copied: pickling them would cost every run), the
# world's building's events (``Kernel.boot_history``) and ``Kernel.seen``.
_BOOTED: dict[KernelConfig, tuple[bytes, tuple[Event, ...], dict[str, dict[Any, Any]]]] = {}
_BOOTED_MAX = 64


class Kernel:
    """State of the modelled mm subsystem for one run."""

    # Hooks the invariants read (see vmfuzz.invariants), None until the model code that keeps
    # each one first runs: a check reads an absent hook as "not tracked" (swap_map_counts then
    # checks a lower bound; reserved_pte_cleared takes any mmap_sem holder for an mlock in
    # progress).  Class-level defaults, so a hook a test deletes reads as absent again.
    #: entry -> swap_map counts held in a local variable by a running path (get_swap_page
    #: until add_to_swap_cache or the pte takes it, swapcache_prepare's pin); swapfile keeps it
    swap_inflight: dict[int, int] | None = None
    #: (mm id, addr) of every pte reclaim cleared or replaced this step (try_to_unmap,
    #: try_to_swap_out); the invariant monitor empties it after each step
    reclaim_unmaps: list[tuple[int, int]] | None = None
    #: ids of the mms with an mlock() in progress (VM_LOCKED set, the populate not done)
    mlocking: set[int] | None = None
    #: ids of the mms whose ``expected`` view is not authoritative yet (data_integrity skips
    #: them); the model sets none today, tests do
    expected_unsettled: Collection[int] = ()
    #: bumped by every write the invariants are told about (set in __init__)
    version: int
    #: every system call of the run so far, in order, as the task bodies (``case.thread``) make
    #: them: (task id, operation, arguments, None) when one begins and (..., its return value)
    #: when it returns; what the checks of a call's promise to user space read
    calls: list[tuple[int, str, dict[str, int], int | None]] | None = None
    #: a call began or returned since the invariant monitor last ran (it clears it)
    calls_new = False
    #: ids of the tasks that returned from a call since the monitor last ran (it empties it):
    #: their critical sections are over, whatever lock the next call takes in the same step
    call_returns: set[int] | None = None

    def __init__(self, config: KernelConfig | None = None, sched: Scheduler | None = None) -> None:
        self.config = config or KernelConfig()
        self.sched = sched or Scheduler()
        c = self.config
        self.sched.checks_only, self.sched.checks_off = c.checks, c.no_checks
        booted = _BOOTED.get(c)
        if booted is not None and booted[0]:
            # The world of this config was built before: restore a fresh copy of it, its
            # attributes in the order a boot sets them.
            state = pickle.loads(booted[0])
            state["sched"] = self.sched
            state["history"] = []
            state["boot_history"] = booted[1]
            state["seen"] = {kind: dict(d) for kind, d in booted[2].items()}
            self.__dict__ = state
            self.sched.state_version = _version_of(self)
            return
        # Frames: struct page array, free list (lowest pfn first), zone LRU lists.
        self.pages: list[Page] = [Page(pfn) for pfn in range(c.nr_frames)]
        self.free_list: list[int] = list(range(c.nr_frames))
        self.zone_lock = Spinlock("zone->lock", "zone->lock")
        self.lru_lock = Spinlock("zone->lru_lock", "lru_lock")
        self.lru: dict[str, list[Page]] = {"active": [], "inactive": [], "unevictable": []}
        # Swap device and swap cache.
        self.swap = SwapInfo(c.nr_swap)
        # Processes.  mm ids are stable small integers; fork adds new ones.
        self.mms: dict[int, MmStruct] = {}
        for i in range(c.nr_mms):
            self.mms[i] = MmStruct(i)
        self.mmlist_lock = Spinlock("mmlist_lock")
        self.drivers: dict[str, Driver] = {"drv": Driver("drv")}
        # Data integrity: the token each mm should read at each page (absent: never written or
        # unmapped, reads as 0 = a fresh zero page).
        self.expected: dict[int, dict[int, int]] = {i: {} for i in self.mms}
        self._next_token = 1
        self._next_id = {"vma": 0, "anon_vma": 0, "mm": c.nr_mms}
        # anon_vma id -> every anon_vma allocated and not yet freed (for leak checks); on the
        # kernel, so that a world restored from its booted image has its own as well.
        self.anon_vmas_live: dict[int, AnonVma] = {}
        # Objects touched by the current step, for incremental invariant checks.
        self.dirty_pfns: set[int] = set()
        self.dirty_mms: set[int] = set()
        self.dirty_entries: set[int] = set()
        self.stats: dict[str, int] = {}
        # Reverse indexes of every pte, kept by set_pte_at/pte_clear, so that invariants need
        # not scan page tables: pfn -> {(mm id, addr)} for present and for migration ptes,
        # swap entry -> {(mm id, addr)} for swap ptes.
        self.present_ptes: dict[int, set[tuple[int, int]]] = {}
        self.migration_ptes: dict[int, set[tuple[int, int]]] = {}
        self.swap_ptes: dict[int, set[tuple[int, int]]] = {}
        # entry -> swap ptes of it ever set or cleared: a count that never repeats, for
        # waits on "this entry's users changed" (the users may change and change back).
        self.swap_pte_writes: dict[int, int] = {}
        # Bumped by every write the invariants are told about (touch_*, set_pte_at,
        # pte_clear): the scheduler's livelock check compares it across retry rounds.
        self.version = 0
        # pte ABA, for the fuzzer (never for a check): the values each pte held in this run
        # (each with the step it was last replaced at), and (step, mm id, addr, kind, since)
        # of every set_pte_at that put back a value the pte had held before, after another
        # one (kind: 0 present, 1 swap, 2 migration; since: the step that value was replaced
        # at).  pte_same() cannot tell such a pte from one that never changed, so a task that
        # read the first value and checks it again is fooled.
        self.pte_seen: dict[tuple[int, int], dict[tuple[int, int, bool], int]] = {}
        self.pte_aba: list[tuple[int, int, int, int, int]] = []
        self.boot_targets: list[tuple[int, int]] = []  # (mm, addr) the world populated
        # The world's system calls, in order: (operation, arguments, return value, token a
        # store stored): what they promise user space holds in the run too
        self.boot_calls: list[tuple[str, dict[str, int], Any, int | None]] = []
        # task id -> the token of its last user load and store (what the "hardware" moved)
        self.loaded: dict[int, int] = {}
        self.stored: dict[int, int] = {}
        # zone->pages_min: an allocation that finds this many free frames or fewer first
        # reclaims in the allocating task (direct reclaim); 0: only when none is free.  Set by
        # the "shortage" world feature.
        self.pages_min = 0
        # Task ids running with PF_MEMALLOC_NOIO (memalloc_noio_save): reclaim does no I/O.
        self.memalloc_noio: set[int] = set()
        # Task ids in direct reclaim (PF_MEMALLOC): their own allocations do not reclaim.
        self.memalloc: set[int] = set()
        # mm id -> sys_mlock calls in progress on it (nested ones counted): ``mlocking``.
        self.mlock_nesting: dict[int, int] = {}
        # What happened to each object, step by step: the record a verdict cites ("freed by
        # T1 at step 19").  One tuple per event (see ``note``); boot's events have step -1.
        self.history: list[Event] = []
        self.boot_history: tuple[Event, ...] = ()  # the world's building's (shared, read-only)
        # kind -> key -> the detail last recorded (PAGE, ENTRY and MM touches)
        self.seen: dict[str, dict[Any, Any]] = {PAGE: {}, ENTRY: {}, MM: {}}
        self.boot_violation: Violation | None = None  # a check the world's building failed
        self._boot()
        if booted is None:
            if len(_BOOTED) >= _BOOTED_MAX:
                _BOOTED.pop(next(iter(_BOOTED)))
            _BOOTED[c] = (self._snapshot(), self.boot_history,
                          {kind: dict(d) for kind, d in self.seen.items()})
        self.sched.state_version = _version_of(self)

    def _snapshot(self) -> bytes:
        """The booted state, all but the scheduler, as an in-memory image that restores a
        fresh copy of it (b"" when the world's building failed a check: that run keeps its
        own half-built state and live tasks, and such a config boots every time).  Every run
        of a program starts from its world: building the full world costs about 1 ms, its
        restore 0.1-0.3 ms, object for object (a campaign runs 1.1-1.2x faster)."""
        if self.boot_violation is not None:
            return b""
        # (Those not copied keep their place, as None: a restore sets them in boot's order.)
        state = {a: None if a in ("sched", "history", "boot_history", "seen") else v
                 for a, v in self.__dict__.items()}
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    def _boot(self) -> None:
        """The boot vmas and world features (:mod:`vmfuzz.kernel.boot`), before any task runs
        (on a private scheduler, so the run's trace and step count start at the first task).
        The kernel under test builds it: a check its bug switches fail on the way is kept in
        ``boot_violation``, and the run reports it before any task steps."""
        from vmfuzz.kernel.boot import boot

        try:
            boot(self)
        except Violation as v:
            world = ", ".join(sorted(self.config.world)) or "boot vmas only"
            v.message = f"while building the world ({world}): {v.message}"
            v.step, v.task = 0, "boot"  # not a step of the run: before its first
            self.boot_violation = v
        self.boot_history = tuple(
            (BOOT_STEP, "boot", e[2], e[3], e[4], e[5]) for e in self.history
        )
        self.history = []
        self.pte_seen, self.pte_aba = {}, []  # the run's pte history starts at its first step

    # ------------------------------------------------------------------ switches
    def bug(self, name: str) -> bool:
        """True when historical bug ``name`` is switched on (the old code runs)."""
        return name in self.config.bugs

    # ------------------------------------------------------------------ identities
    def new_id(self, what: str) -> int:
        self._next_id[what] += 1
        return self._next_id[what]

    def new_token(self) -> int:
        tok = self._next_token
        self._next_token += 1
        return tok

    def new_mm(self) -> MmStruct:
        ident = self._next_id["mm"]
        self._next_id["mm"] += 1
        mm = MmStruct(ident)
        self.mms[ident] = mm
        self.expected[ident] = {}
        return mm

    def free_vma(self, vma: VmAreaStruct) -> None:
        """kmem_cache_free(vm_area_cachep, vma): poison it.  Its mm is checked this step: a
        freed vma must not stay reachable from it (``mm->mmap_cache``)."""
        desc = vma.describe()
        mm = vma.vm_mm
        poison(vma, FreedVma, desc)
        self.note_free(desc)
        if mm is not None:
            self.dirty_mms.add(mm.id)

    def free_anon_vma(self, anon_vma: AnonVma) -> None:
        """anon_vma_free(): poison it."""
        desc = repr(anon_vma)
        poison(anon_vma, FreedAnonVma, desc)
        self.note_free(desc)

    # ------------------------------------------------------------------ history
    def note(self, kind: str, key: Any, detail: Any) -> None:
        """Record an event of the running step in ``history``: (step, task, where, kind, key,
        detail).  ``where`` is the kernel path doing it, as KASAN's stack names the freeing
        function: (the innermost generator, a path that may sleep; the function that called
        the hook, maybe a plain helper of it), each a kernel function: the model's own Python
        helpers (``_name``; ``__name`` is the kernel's) are skipped; ``where_text`` words it."""
        f = sys._getframe(2)
        where = _PATH_WHERE.get(id(f.f_code))  # (a path calling a hook itself: most events)
        if where is None:
            where = _where(f)
        sched = self.sched
        cur = sched.current
        self.history.append((
            sched.step_no, cur.name if cur is not None else "-", where, kind, key, detail,
        ))

    def events(self) -> list[Event]:
        """Every event of the run: the world's building's (step -1), then the run's."""
        return [*self.boot_history, *self.history]

    def note_free(self, desc: str) -> None:
        """An object freed (poisoned): ``desc`` is how its use after free names it."""
        self.note(FREE, desc, None)

    def note_slot(self, entry: int, token: int, pfn: int) -> None:
        """swap_writepage wrote ``token``, frame ``pfn``'s data, to the device slot ``entry``."""
        self.note(SLOT, entry, (token, pfn))

    def note_write(self, mm: MmStruct, addr: int, token: int, pfn: int) -> None:
        """A user store of ``token`` at ``addr`` of ``mm`` into frame ``pfn``."""
        self.note(WRITE, (mm.id, addr), (token, pfn))
        cur = self.sched.current
        if cur is not None:
            self.stored[cur.tid] = token

    def call_begin(self, op: str, args: dict[str, int]) -> None:
        """The running task begins system call ``op`` (recorded in ``calls``)."""
        self._call(op, args, None)

    def call_return(self, op: str, args: dict[str, int], ret: int) -> None:
        """The running task's system call ``op`` returns ``ret`` (recorded in ``calls``)."""
        self._call(op, args, ret)

    def _call(self, op: str, args: dict[str, int], ret: int | None) -> None:
        cur = self.sched.current
        log = self.calls
        if log is None:
            log = self.calls = []
        log.append((-1 if cur is None else cur.tid, op, args, ret))
        self.calls_new = True
        if ret is None or cur is None:
            return
        # Back to user space: no lock held (lockdep's debug_check_no_locks_held() on return
        # to user), and what the call touched inside its critical sections is done.
        held = [lock for lock, _ in cur.held if lock is not self.sched.bkl]
        if held and self.sched.check_on("lock_held_at_exit"):
            raise Violation(
                "lock_held_at_exit",
                f"{cur.name} returned from {op} holding "
                f"{', '.join(lock.name for lock in held)}",
            )
        returned = self.call_returns
        if returned is None:
            returned = self.call_returns = set()
        returned.add(cur.tid)

    # ------------------------------------------------------------------ page tables
    def _index_for(self, pte: Pte) -> tuple[dict[int, set[tuple[int, int]]], int]:
        if isinstance(pte, PresentPte):
            return self.present_ptes, pte.pfn
        if isinstance(pte, MigrationPte):
            return self.migration_ptes, pte.pfn
        return self.swap_ptes, pte.entry

    def set_pte_at(self, mm: MmStruct, addr: int, pte: Pte) -> None:
        """set_pte_at(): install ``pte`` (replacing any old one); keeps the reverse indexes
        and the pte's history (``pte_aba``)."""
        sched = self.sched
        if sched.in_send and mm.page_table_lock.owner is not sched.current:
            self.pte_writer(mm)
        old = self._pte_clear(mm, addr)
        mm.pgd[addr] = pte
        v = pte_value(pte)
        seen = self.pte_seen.setdefault((mm.id, addr), {})
        since = seen.get(v)
        if since is None:
            seen[v] = -1  # held, not replaced yet
        elif old is None or pte_value(old) != v:
            self.pte_aba.append((self.sched.step_no, mm.id, addr, v[0], since))
        index, key = self._index_for(pte)
        index.setdefault(key, set()).add((mm.id, addr))
        self._touch_pte(pte)
        self.dirty_mms.add(mm.id)
        self.version += 1
        self.note(SET_PTE, (mm.id, addr), (None if old is None else pte_value(old), v))

    def pte_clear(self, mm: MmStruct, addr: int) -> Pte | None:
        """pte_clear() / ptep_get_and_clear(): remove and return the pte at ``addr``."""
        sched = self.sched
        if sched.in_send and mm.page_table_lock.owner is not sched.current:
            self.pte_writer(mm)
        old = self._pte_clear(mm, addr)
        if old is not None:
            self.note(PTE_CLEAR, (mm.id, addr), (pte_value(old), None))
        return old

    def pte_writer(self, mm: MmStruct) -> None:
        """Assert that the running task holds ``mm``'s pte lock: every pte write of a task is
        made under it (mm/memory.c takes pte_offset_map_lock() around each), so a path that
        writes a pte without it fails ``lock_not_held`` at the write, as lockdep_assert_held
        would, whether or not a racing writer shows up.  Writes outside a task's step (boot,
        a test's hand-built state) are not checked."""
        self.sched.assert_held(
            mm.page_table_lock, why="a pte is written under its pte lock (page_table_lock)"
        )

    def _pte_clear(self, mm: MmStruct, addr: int) -> Pte | None:
        old = mm.pgd.pop(addr, None)
        if old is not None:
            self.pte_seen.setdefault((mm.id, addr), {})[pte_value(old)] = self.sched.step_no
            index, key = self._index_for(old)
            users = index.get(key)
            if users is not None:
                users.discard((mm.id, addr))
                if not users:
                    del index[key]
            self._touch_pte(old)
            self.dirty_mms.add(mm.id)
            self.version += 1
        return old

    def _touch_pte(self, pte: Pte) -> None:
        if isinstance(pte, SwapPte):
            self.dirty_entries.add(pte.entry)
            self.swap_pte_writes[pte.entry] = self.swap_pte_writes.get(pte.entry, 0) + 1
        else:
            self.dirty_pfns.add(pte.pfn)

    # ------------------------------------------------------------------ bookkeeping
    # A touch is recorded in ``history`` only when what it records changed (a page's counts and
    # token, an entry's swap_map count and cache slot, an mm's vmas): a flag or mm_users change
    # costs one comparison.
    def touch_page(self, page: Page) -> None:
        pfn = page.pfn
        self.dirty_pfns.add(pfn)
        self.version += 1
        now = (page.count, page.mapcount, page.data)
        seen = self.seen[PAGE]
        if seen.get(pfn) != now:
            seen[pfn] = now
            # (note(), inlined: the most frequent event)
            f = sys._getframe(1)
            where = _PATH_WHERE.get(id(f.f_code))
            if where is None:
                where = _where(f)
            sched = self.sched
            cur = sched.current
            self.history.append((
                sched.step_no, cur.name if cur is not None else "-", where, PAGE, pfn, now,
            ))

    def touch_mm(self, mm: MmStruct) -> None:
        self.dirty_mms.add(mm.id)
        self.version += 1
        now = vma_layout(mm)
        if self.seen[MM].get(mm.id) != now:
            self.seen[MM][mm.id] = now
            self.note(MM, mm.id, now)

    def touch_entry(self, entry: int) -> None:
        self.dirty_entries.add(entry)
        self.version += 1
        if type(entry) is not int:
            return  # (the monitor reports it)
        swap_map = self.swap.swap_map
        cached = self.swap.cache.get(entry)
        now = (swap_map[entry] if 0 <= entry < len(swap_map) else None,
               None if cached is None else cached.pfn)
        if self.seen[ENTRY].get(entry) != now:
            self.seen[ENTRY][entry] = now
            self.note(ENTRY, entry, now)

    def count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1

    def check_read(self, mm: MmStruct, addr: int, found: int, pfn: int | None = None) -> None:
        """Data integrity: a user read of ``addr`` in ``mm`` (of frame ``pfn``) must return the
        expected token."""
        cur = self.sched.current
        if cur is not None:
            self.loaded[cur.tid] = found
        want = self.expected.get(mm.id, {}).get(addr, 0)
        if found != want:
            raise Violation(
                "data_integrity",
                f"{mm.name} reads token {found} at page {addr}, expected {want}"
                + (" (lost write)" if found < want else " (stale or foreign data)"),
                mm=mm.name,
                addr=addr,
                expected=want,
                found=found,
                **({} if pfn is None else {"pfn": pfn}),
            )

    # ------------------------------------------------------------------ tasks
    def spawn(self, op: str, name: str | None = None, **args: Any) -> Task:
        """Start operation ``op`` (see ``ops.OPS``) as a new task."""
        spec = OPS.get(op)
        if spec is None:
            raise KeyError(f"unknown operation {op!r}")
        want = [a for a, _ in spec.params]
        if sorted(args) != sorted(want):
            raise TypeError(f"operation {op} takes {want}, got {sorted(args)}")
        return self.sched.spawn(spec.fn(self, **args), name)

    def add_checker(self, check: Callable[[Kernel], None]) -> None:
        """Run ``check(self)`` after every scheduler step."""
        self.sched.checkers.append(lambda _s: check(self))

    def clear_dirty(self) -> None:
        self.dirty_pfns.clear()
        self.dirty_mms.clear()
        self.dirty_entries.clear()

    def live_mms(self) -> Iterable[MmStruct]:
        return (mm for mm in self.mms.values() if not mm.dead)


def _version_of(k: Kernel) -> Callable[[], int]:
    """``k.version`` as the scheduler's livelock check reads it, holding ``k`` weakly: the
    scheduler is the kernel's, and a reference back would put every run's kernel in a cycle
    that only the cyclic garbage collector frees (with its history, trace and world: a
    campaign's runs would cost a tenth more)."""
    ref = weakref.ref(k)

    def version() -> int:
        kernel = ref()
        return 0 if kernel is None else kernel.version

    return version


# Event kinds of ``Kernel.history`` (key; detail):
SET_PTE = "set_pte"  # (mm id, addr); (old pte_value or None, new pte_value)
PTE_CLEAR = "pte_clear"  # (mm id, addr); (old pte_value, None)
PAGE = "page"  # pfn; (count, mapcount, data token) after the change
ENTRY = "entry"  # swap entry; (swap_map count, pfn of its swap-cache page or None) after
MM = "mm"  # mm id; its vmas (``vma_layout``) after the change
FREE = "free"  # the freed object's description (as its use-after-free names it); None
WRITE = "write"  # (mm id, addr); (token, pfn)
SLOT = "slot"  # swap entry; (token written to its device slot, pfn it came from)
Event = tuple[int, str, tuple[str, str], str, Any, Any]
BOOT_STEP = -1  # the step of an event of the world's building
_CO_GENERATOR = 0x20  # inspect.CO_GENERATOR


# What a frame's function is to ``note``'s walk, cached per code object (one dict read a frame),
# keyed by id (a code object's own hash reads its whole contents); the code objects are kept in
# _CODES, so an id is never reused by another while it is a key.
_HELPER, _PATH, _OTHER = 0, 1, 2  # a Python helper; a kernel generator (a path); anything else
_CODE_KIND: dict[int, int] = {}
_CODES: list[CodeType] = []


# id of a kernel path's code -> its ``where`` when it calls a hook itself (both names its own);
# (id of a function's code, id of its caller's) -> ``where``, when the caller is a path
_PATH_WHERE: dict[int, tuple[str, str]] = {}
_PAIR_WHERE: dict[tuple[int, int], tuple[str, str]] = {}


def _code_kind(code: CodeType) -> int:
    if _python_helper(code.co_name):
        kind = _HELPER
    elif code.co_flags & _CO_GENERATOR:
        kind = _PATH
        _PATH_WHERE[id(code)] = (code.co_name, code.co_name)
    else:
        kind = _OTHER
    _CODES.append(code)
    _CODE_KIND[id(code)] = kind
    return kind


def _where(frame: FrameType) -> tuple[str, str]:
    """``Kernel.note``'s (path, helper) for a hook called from ``frame``: the innermost
    generator (a path that may sleep) and the first frame that is no Python helper, walking
    out from ``frame``."""
    back = frame.f_back
    pair = None if back is None else (id(frame.f_code), id(back.f_code))
    if pair is not None:
        where = _PAIR_WHERE.get(pair)
        if where is not None:
            return where
    kinds = _CODE_KIND
    f: FrameType | None = frame
    helper = path = None  # the first frame that is no helper; the first path (one walk)
    depth = 0
    while f is not None:
        code = f.f_code
        what = kinds.get(id(code))
        if what is None:
            what = _code_kind(code)
        if what != _HELPER:
            if helper is None:
                helper = code.co_name
            if what == _PATH:
                path = code.co_name
                break
        f = f.f_back
        depth += 1
    if helper is None:
        helper = "-"
    where = (helper if path is None else path, helper)
    if pair is not None and path is not None and depth <= 1:
        _PAIR_WHERE[pair] = where  # the two frames decided it: so they do every time
    return where


def _python_helper(name: str) -> bool:
    """A function of the model's own (``_map_swap_page``), not a kernel one (``__vma_link``)."""
    return name.startswith("_") and not name.startswith("__")


def where_text(where: tuple[str, str]) -> str:
    """``zap_pte_range (put_page)``: an event's kernel path, and its helper if another."""
    path, helper = where
    return path if path == helper else f"{path} ({helper})"


def vma_layout(mm: MmStruct) -> tuple[tuple[int, int, int, int, int], ...]:
    """(id, vm_start, vm_end, vm_pgoff, vm_flags) of each vma on ``mm``'s list, up to the first
    freed one (read without tripping its poison)."""
    out: list[tuple[int, int, int, int, int]] = []
    vma = mm.mmap
    while type(vma) is VmAreaStruct and len(out) < 64:
        out.append((vma.id, vma.vm_start, vma.vm_end, vma.vm_pgoff, vma.vm_flags))
        vma = vma.vm_next
    return tuple(out)


def pte_value(pte: Pte) -> tuple[int, int, bool]:
    """A pte's value as pte_same() compares it: (kind, pfn or swap entry, write bit)."""
    if isinstance(pte, SwapPte):
        return (1, pte.entry, False)
    if isinstance(pte, MigrationPte):
        return (2, pte.pfn, False)
    return (0, pte.pfn, pte.write)
