"""A coverage-guided pool of programs, mutated and run outside Hypothesis.

A race of three or four operations on one page (a fork, a fault in the child, a migration, two
exits) is a rare draw from Hypothesis' generator: each example draws its whole program afresh.
Coverage-guided fuzzers (AFL, syzkaller) instead keep every input that reached something new and
mutate it, so a race is approached one operation at a time.  Here "something new" is an
*interleaving pair*: (the label where one task stood, the label of a step another task ran
meanwhile), in the spirit of KRACE's alias coverage (Xu et al., S&P 2020): a program that first
ran an exit while a migration stood between unmap and move is kept, and one more operation on
it is one mutation away.

Programs enter the pool from Hypothesis' examples (:class:`KernelMachine` offers each one) and
from mutants, minimised first: each operation the new pairs do not need is deleted.  A mutant
inserts, deletes, changes, moves or copies one operation, toggles a world feature, takes a
task from another entry, drops a task, or moves a task's start; it runs under PCT (change
points spread over its parent's run length) or an echoed random walk, and under
RETRY_SCHEDULES collision walks more if a run of it went round a retry loop (a trylock
collided: a livelock needs every round to collide again, which few schedules do; a collision
walk, :class:`vmfuzz.schedules.Collide`, steers the collision into a mutual back-off and
repeats it), and as many on the colliding tasks alone (a bystander still live hides a
livelock); so does a probe's run (below) that went round a retry loop, once per program.
Mutants cost no Hypothesis draws, and each changes one thing in a program already known to
interleave.
After each round, partner probes (:meth:`Pool.probe`) put the teardown of every mm an entry
aims at next to each entry the round added, on a random stream of their own; and a run (an
example's or a mutant's, kept or not) whose pte got back a value it had held before (an ABA,
which pte_same() cannot see) is probed with one more task that loads or stores that page; and a
run whose task held an object half-changed (a pte it changed twice) is probed with one more
task aimed at that object in between (:meth:`Pool._probe_windows`), or at the object's other
holder (a forked child's copy of the entry), and once more paused
inside its own half-change, if it makes one, while the others go on (:meth:`Pool._nested`);
and a run that changed an mm's vma list is probed with a reader of that list (a scan of
every mm, or an operation on the mm) stalled inside its walk just before the change
(:meth:`Pool._probe_readers`); and a run whose kernel path changed an object and went on
working later (reclaim asleep in a driver's ->swapout with the vma it unmapped from) is probed
with one more task aimed at that object, the path's task kept still while that task waits
(:meth:`Pool._probe_flights`).
Each kind of probe waits in a queue of its own, ranked so that every kind (whatever the world)
is probed once before any is probed twice (:func:`enqueue`).
The first violation becomes the campaign's failure (schedule = the recorded decisions), and
the campaign's own shrinker takes it from there.  Everything is seeded: no set or hash order
reaches a choice.  Nothing here knows about any kernel path.
"""

from __future__ import annotations

import bisect
import random
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from types import FrameType
from typing import Any

import attrs

from vmfuzz._alias import alias_pairs, reused
from vmfuzz._scheduler import Scheduler, ScheduleSource
from vmfuzz.case import Case, OpCall, Run, Schedule, TaskSpec, execute
from vmfuzz.failure import Failure
from vmfuzz.kernel import OPS, Kernel, KernelConfig
from vmfuzz.kernel.boot import WORLD_FEATURES
from vmfuzz.kernel.kernel import pte_value
from vmfuzz.program import (
    aim_frame,
    frames_at,
    kind_bounds,
    kind_hot,
    objects_of,
    retarget,
    takes_frame,
    target_of,
)
from vmfuzz.schedules import PCT, Collide, Echo, RandomWalk, Stall
from vmfuzz.violation import Violation

Pair = tuple[str, str]

MAX_OPS = 8  # a pool program has at most this many operations (the mails' races have 2-10)
# Collision walks (:class:`vmfuzz.schedules.Collide`) more for a program whose run went round
# a retry loop (a trylock collided and backed off): a livelock needs every round to collide
# again, which about 1 in 60 echoed random walks of the right program did (measured on the
# zoo's livelocks), and 1 in 2 collision walks do (the mail's program: 444 of 1,000, Echo 21).
RETRY_SCHEDULES = 16
# A probe's run (ABA, window, partner) that went round a retry loop gets those walks too, on
# its program and its colliding tasks alone, once per program (:meth:`Pool._loop_probe`): a
# probe's program is never offered, so no mutant's retry walks reach it.  At 1.5Msteps, seed
# 0 of the zoo's trylock livelock had its only livelock-capable programs there (window
# probes paused inside an mprotect, beside a migration); with these walks it was found after
# 248,623 steps, without them not at all.
RETRY_PROBES = True
# An ABA probe's reader is stalled after 1, 2, ... up to this many of its steps, one run each
# (:meth:`Pool._probe_aba`): a fault reads the pte and sleeps within its first few steps.
STALL_STEPS = 8
# ABA probes may take at most this share of the pool's steps, the rest waiting in a queue of
# at most ABA_QUEUE (:meth:`Pool._probe_aba`): they must not starve the mutants.
ABA_SHARE = 0.5
ABA_QUEUE = 256
# Alias pairs (two tasks' kernel paths met on one object) count as coverage next to the
# label pairs (:func:`interleavings`).  A/B at 400 examples (about 1M steps), interleaved, the
# zoo's four bugs missed at seed 0: anon_vma_root_not_pinned found at 2 of 2 seeds with them
# (examples 400 and 200) and 1 of 2 without (400); unuse_process_no_mmap_sem and
# anon_vma_trylock_retry at neither.  They cost about 4% of an offered run's CPU.
OBJECT_PAIRS = True
# Window probes (:meth:`Pool._probe_windows`) may take at most this share of the pool's steps,
# the rest waiting in a queue of at most WINDOW_QUEUE.  At 1.5Msteps, seeds 0 and 1, the
# mutant change_protection_skips_migration_entries (no other search finds it) was killed at
# both seeds with 0.15 (1.21M and 1.44M steps) and at neither with 0.1.
WINDOW_SHARE = 0.15
WINDOW_QUEUE = 256
# A window probe's new task is also paused inside its own half-change (:meth:`Pool._nested`):
# right after its first change of each of the first NESTED_POINTS objects it changes again
# later, for each length (in steps) of NESTED_HOLDS, None being as long as another task can run.
# These runs have a share of the pool's steps of their own, NESTED_SHARE (past it they are
# skipped), so that the single stalls run as many probes as without them: taken from
# WINDOW_SHARE, they cost the mutant change_protection_skips_migration_entries its kill at
# seed 0 (1.21M steps without them).
NESTED_POINTS = 2
NESTED_HOLDS: tuple[int | None, ...] = (None,)
NESTED_SHARE = 0.05
# A partner probe's run (:meth:`Pool.probe`) whose pte got back a value may queue an ABA probe,
# as an offered run's does: a teardown between a fault and a reclaim frees the slot or frame
# the restored value names, the ABA a sleeping reader's pte_same() cannot see.
PARTNER_ABA = True
# A window probe of a pte also sends its intruders at the other ptes that held the object the
# pte named when it was first changed (:func:`holders`: a forked child's copy of a swap entry,
# another mapping of the frame), at most HOLDERS of them, other mms first: the object is freed
# only when its other users let it go, while the recorded task still holds it half-changed.
# Those runs may queue ABA probes, as a partner probe's do, in a queue of their own; the runs
# and those probes take at most HOLDER_SHARE of the pool's steps, so that the window and ABA
# probes run as without them.  Measured at 1.5Msteps, consequence column, seeds 0-2 (see
# CONSEQUENCES in kernel/bugs.py): swapin_no_swapcache_recheck found at seed 1 (never before).
HOLDERS = 1
HOLDER_SHARE = 0.05
# Flight probes (:meth:`Pool._probe_flights`): an object a kernel path changed and then held
# while it went on (:func:`in_flight`), an intruder aimed at it started right after the change,
# the path's task kept still while the intruder waits.  At most FLIGHT_SHARE of the pool's
# steps, of their own (the window probes run as without them), from a queue of at most
# WINDOW_QUEUE, ranked as every probe queue is (:func:`enqueue`).
FLIGHT_SHARE = 0.05
# Reader probes (:meth:`Pool._probe_readers`): a task of a run changed an mm's vma list; a
# reader of that list (an operation aimed at the mm, or a scan of every mm) is put next to the
# run, stalled after 1 .. STALL_STEPS of its steps from the step before the change, while the
# run replays: a walk under a lock the writer skipped (page_table_lock alone, no mmap_sem)
# then holds a vma that is detached and freed under it.  At most READER_SHARE of the pool's
# steps, READERS readers per probe (the scans first, then operations on the mm, drawn).
READER_SHARE = 0.05
READER_QUEUE = 256
READERS = 6


def enqueue(queue: list[Any], probe: Any, cap: int) -> None:
    """Put ``probe`` in ``queue`` behind every probe of its rank or lower (``probe.rank``), and
    keep the first ``cap``.

    A probe's rank is how many probes of its kind, whatever the world, were queued before it:
    the queues fill far faster than their shares of the steps run them (at 300k steps of a
    fixed-kernel campaign, 207 reader probes queued and 7 run; 126 and 24 window probes), and
    a kind is counted per world (about five worlds to a kind), so a queue served in arrival
    order spends its runs on the kinds of the first examples, in world after world, while a
    kind first met later waits behind them.  Ranked, every kind is probed once before any
    is probed twice, in the order met."""
    at = bisect.bisect_right(queue, probe.rank, key=lambda p: p.rank)
    if at < cap:
        queue.insert(at, probe)
        del queue[cap:]


def colliders(case: Case, sched: Scheduler) -> Case | None:
    """``case`` cut down to the tasks of the first retry-loop collision of ``sched``'s run (the
    task that backed off and the holders of the lock its trylock wanted), at their own start
    steps; None if that leaves no task out.  A livelock needs every live task retrying in lock
    step, and a bystander dilutes the walk and, while live, hides the livelock: on a program
    of the zoo's trylock livelock with two bystanders, 0 of 300 echoed walks livelocked, and
    9 of 300 on the colliding pair alone."""
    names = set(sched.collided)
    keep = [t for t in case.tasks if t.name in names]
    if len(keep) < 2 or len(keep) != len(names) or len(keep) == len(case.tasks):
        return None
    return _program(case, [list(t.ops) for t in keep], [t.start for t in keep], case.config)


def interleavings(trace: Sequence[Any], events: Iterable[Any] = ()) -> set[Pair]:
    """The coverage of one run: ``("", label)`` for every step, and ``(stood, label)`` for
    every step and every other live task, ``stood`` being the label that task last stopped
    at (it stands there while this step runs); with OBJECT_PAIRS, also the alias pairs of
    the run's data events ``events`` (``Kernel.history``) and lock requests
    (:func:`vmfuzz._alias.alias_pairs`): two tasks' paths that met on one object."""
    last: dict[str, str] = {}
    out: set[Pair] = alias_pairs(trace, events) if OBJECT_PAIRS else set()
    add = out.add
    for s in trace:
        label = s.label
        task = s.task
        add(("", label))
        for other, stood in last.items():
            if other != task:
                add((stood, label))
        if label == "exit":
            last.pop(task, None)
        else:
            last[task] = label
    return out


@attrs.frozen
class Entry:
    """One program of the pool, and what its run that added it looked like."""

    case: Case
    length: int  # steps of that run (a mutant's PCT spreads its change points over it)
    targets: tuple[tuple[int, int | None], ...]  # (mm, addr) its operations aimed at
    new: tuple[Pair, ...]  # the pairs it was the first to meet
    frames: tuple[int, ...] = ()  # frames mapped at its targets, at boot and at the end
    size: int = attrs.field()  # operations

    @size.default
    def _size(self) -> int:
        return sum(len(t.ops) for t in self.case.tasks)


@attrs.frozen
class AbaProbe:
    """A queued ABA probe (:meth:`Pool._probe_aba`): a run of ``case`` gave the pte at
    (``mm``, ``addr``) back a value it had held, replaced at step ``since``."""

    case: Case
    mm: int
    addr: int
    since: int
    writers: tuple[str, ...]  # the tasks that replaced the value, then restored it
    rank: int = 0  # probes of its kind queued before it, whatever the world (:func:`enqueue`)


@attrs.frozen
class ReaderProbe:
    """A queued reader probe (:meth:`Pool._probe_readers`): in a run of ``case``, task ``task``
    began a write of ``mm``'s vma list at step ``at`` (:func:`layout_writes`)."""

    case: Case
    mm: int
    at: int
    task: str
    rank: int = 0  # probes of its kind queued before it, whatever the world (:func:`enqueue`)


@attrs.frozen
class WindowProbe:
    """A queued window probe (:meth:`Pool._probe_windows`): in a run of ``case``, task ``task``
    changed the object (``mm``, ``addr``) at step ``at`` (a pte; with ``addr`` None, the mm's
    vmas) and again later: between the two, the object was half-changed."""

    case: Case
    mm: int
    addr: int | None
    at: int
    task: str
    holders: tuple[tuple[int, int], ...] = ()  # other ptes naming the object (:func:`holders`)
    until: int = -1  # the step of the task's second change of the object
    rank: int = 0  # probes of its kind queued before it, whatever the world (:func:`enqueue`)


def holders(boot: dict[tuple[int, int], tuple[int, int, bool]], events: Iterable[Any],
            mm: int, addr: int, at: int) -> list[tuple[int, int]]:
    """The other ptes that named the object (swap entry, or frame) the pte at (``mm``,
    ``addr``) named just before step ``at``: ``boot`` is the world's ptes (pte values by (mm,
    addr)), ``events`` the run's data events (``Kernel.history``).  Ptes of other mms first
    (a forked child's copy), then of ``mm``, each in (mm, addr) order."""
    ptes = dict(boot)
    for e in events:
        if e[0] >= at:
            break
        if e[3] == "set_pte":
            ptes[e[4]] = e[5][1]
        elif e[3] == "pte_clear":
            ptes.pop(e[4], None)
    v = ptes.get((mm, addr))
    if v is None:
        return []
    obj = (v[0] == 1, v[1])
    out = sorted(key for key, w in ptes.items()
                 if key != (mm, addr) and (w[0] == 1, w[1]) == obj)
    return sorted(out, key=lambda key: key[0] == mm)


def windows(events: Iterable[Any]) -> list[tuple[tuple[int, int | None], int, str, str]]:
    """The objects one task of a run held half-changed, from its data events
    (``Kernel.history``): each pte (mm, addr), and each mm's vmas (mm, None), that a task
    changed at one step and again at a later one, once per task and object:
    (object, the step of the first change, the task, "FIRST>SECOND" the two kernel paths)."""
    first: dict[tuple[str, Any], tuple[int, str]] = {}
    out: dict[tuple[str, Any], tuple[tuple[int, int | None], int, str, str]] = {}
    for e in events:
        obj = _changed(e)
        if obj is None:
            continue
        key = (e[1], obj)
        seen = first.get(key)
        if seen is None:
            first[key] = (e[0], e[2][0])
        elif e[0] > seen[0] and key not in out:
            out[key] = (obj, seen[0], e[1], f"{seen[1]}>{e[2][0]}")
    return list(out.values())


def _changed(e: Any) -> tuple[int, int | None] | None:
    """The object data event ``e`` changed: a pte (mm, addr), an mm's vmas (mm, None), or
    None for any other event."""
    kind = e[3]
    if kind in ("set_pte", "pte_clear"):
        return e[4]
    if kind == "mm":
        return (e[4], None)
    return None


def in_flight(events: Sequence[Any]) -> list[tuple[tuple[int, int | None], int, str, str]]:
    """The objects a kernel path changed and then held while it went on, from a run's data
    events (``Kernel.history``): each pte (mm, addr), and each mm's vmas (mm, None), that a
    task's path changed at one step when the task's next event, at a later step, is the same
    path's (it yielded, slept or waited in between, still working on what it changed:
    reclaim's ->swapout with the vma it unmapped a page from), once per task, object and
    path, and not where :func:`windows` already names the object at that step: (object, the
    step of the change, the task, "PATH~LATER": the path and the function of its next
    event)."""
    seen = {(task, obj, at) for obj, at, task, _ in windows(events)}
    done: set[tuple[str, Any, str]] = set()
    waiting: dict[str, list[tuple[tuple[int, int | None], int, str]]] = {}
    out = []
    for e in events:
        step, task, path = e[0], e[1], e[2][0]
        held = waiting.get(task)
        if held and held[0][1] < step:
            del waiting[task]
            out += [(obj, at, task, f"{path}~{e[2][1]}") for obj, at, p in held if p == path]
        obj = _changed(e)
        if obj is None:
            continue
        key = (task, obj, path)
        if key in done or (task, obj, step) in seen:
            continue
        done.add(key)
        waiting.setdefault(task, []).append((obj, step, path))
    return out


def decision_names(case: Case) -> list[str]:
    """The names of the tasks ``case``'s recorded decisions picked (a task's id is its place
    in start order), for a :class:`vmfuzz.schedules.Stall` that replays them; [] for a case
    with no recorded decisions."""
    if case.schedule.kind != "decisions":
        return []
    order = [t.name for t in sorted(case.tasks, key=lambda t: t.start)]
    return [order[d] for d in case.schedule.decisions if 0 <= d < len(order)]


def layout_writes(events: Iterable[Any]) -> list[tuple[int, int, str, str, int]]:
    """The vma-list writes of a run, from its data events (``Kernel.history``): (mm, the step
    a task began changing the mm's vmas in one kernel path, the task, the path, how many
    vmas the mm had after that change); the world's building is left out.  A write goes on
    while the task's changes of the mm follow each other in one path (at most two steps
    apart)."""
    out = []
    last: dict[tuple[str, int], tuple[str, int]] = {}
    for e in events:
        if e[3] == "mm" and e[0] >= 0:
            key = (e[1], e[4])
            prev = last.get(key)
            if prev is None or prev[0] != e[2][0] or e[0] - prev[1] > 2:
                out.append((e[4], e[0], e[1], e[2][0], len(e[5])))
            last[key] = (e[2][0], e[0])
    return out


@attrs.define
class Pool:
    """The programs that met new interleaving pairs (at most ``capacity``, oldest out).

    (AFL-style favored entries, the smallest entry meeting each pair culled greedily, were
    tried: nearly every entry meets a pair of its own, so hundreds stay favored, and a short
    program one operation from a race was found in 3 of 8 seeds with them and without.)"""

    config: KernelConfig
    ops: list[str] | None = None  # operations a mutant may insert (None: all)
    max_threads: int = 4
    capacity: int = 512
    schedules: int = 2  # schedules each mutant runs under
    minimize: bool = True  # shrink each program entering the pool (:meth:`_minimize`)
    entries: list[Entry] = attrs.field(factory=list)
    hits: dict[Pair, int] = attrs.field(factory=dict)  # runs that met each pair
    added: int = 0
    runs: int = 0  # mutant runs so far
    probe_runs: int = 0  # runs of partner probes (:meth:`probe`), not counted in ``runs``
    steps: int = 0  # steps of those runs (and of the probes')
    _boot_frames: dict[KernelConfig, list[int]] = attrs.field(factory=dict)
    _boot_ptes: dict[KernelConfig, dict[tuple[int, int], Any]] = attrs.field(factory=dict)
    _retried: bool = False  # a run of the current mutant went round a retry loop
    _pair: Case | None = None  # the first such run's colliding tasks alone (:func:`colliders`)
    _unprobed: list[Entry] = attrs.field(factory=list)  # entries added since the last probes
    # programs run under retry walks (:meth:`_loop_probe`); True while one is
    _looped: set[tuple[KernelConfig, tuple[TaskSpec, ...]]] = attrs.field(factory=set)
    _looping: bool = False
    loop_steps: int = 0  # steps of a probe's retry walks (part of ``steps``)
    # pte ABAs met per (world, mm, addr, pte kind, reused): the 1st, 4th, 16th ... are probed
    aba_hits: dict[tuple[frozenset[str], int, int, int, bool], int] = attrs.field(factory=dict)
    _aba: list[AbaProbe] = attrs.field(factory=list)  # queued ABA probes
    aba_steps: int = 0  # steps of ABA probes (part of ``steps``)
    # the ABA probes queued by window probes aimed at holders, as ``aba_hits`` and ``_aba``
    held_hits: dict[tuple[frozenset[str], int, int, int, bool], int] = attrs.field(factory=dict)
    _held: list[AbaProbe] = attrs.field(factory=list)
    holder_steps: int = 0  # steps of those window probes and of their ABA probes
    # half-changed objects met per (world, object class, the two paths): probed as ABAs are
    window_hits: dict[tuple[frozenset[str], bool, str], int] = attrs.field(factory=dict)
    _windows: list[WindowProbe] = attrs.field(factory=list)  # queued window probes
    window_steps: int = 0  # steps of window probes' single stalls (part of ``steps``)
    # objects held by a path in flight, met per (world, object class, paths): probed as ABAs
    # are, from a queue of their own (:meth:`_probe_flights`)
    flight_hits: dict[tuple[frozenset[str], bool, str], int] = attrs.field(factory=dict)
    _flights: list[WindowProbe] = attrs.field(factory=list)
    flight_steps: int = 0  # steps of flight probes (part of ``steps``)
    # vma-list writes met per (world, path, vmas left up to 3): probed as ABAs are
    reader_hits: dict[tuple[frozenset[str], str, int], int] = attrs.field(factory=dict)
    _readers: list[ReaderProbe] = attrs.field(factory=list)  # queued reader probes
    reader_steps: int = 0  # steps of reader probes (part of ``steps``)
    # probes queued per (queue, kind without the world): a queued probe's rank (:func:`enqueue`)
    queued_kinds: dict[tuple[Any, ...], int] = attrs.field(factory=dict)
    nested_steps: int = 0  # steps of their paused runs (:meth:`_nested`; part of ``steps``)
    # the data events of the last clean run of :meth:`_run_one`
    _last_events: Sequence[Any] = attrs.field(default=(), init=False, repr=False)
    # ``steps`` at which a round stops, as at its deadline (a campaign's step budget: counted,
    # so the round ends at the same run on any machine); None: no limit
    step_limit: int | None = None
    unsaved: list[Entry] | None = None  # entries added, not yet stored (None: not kept)
    # what ran the last failure :meth:`_run_one` returned (:func:`_mechanism`)
    found_by: str | None = None

    def adopt(self, entry: Entry) -> bool:
        """Add ``entry``, met by another campaign or stream (:mod:`vmfuzz._poolstore`), if one
        of its pairs is new here; its pairs count as met once.  It is neither probed again nor
        stored again."""
        hits = self.hits
        if all(p in hits for p in entry.new):
            return False
        for p in entry.new:
            hits[p] = hits.get(p, 0) + 1
        self._keep(entry)
        return True

    def rerun(self, cases: Iterable[Case]) -> Failure | None:
        """Run each of ``cases`` (stored programs whose coverage is not trusted: another model,
        another kernel) on its recorded schedule, as far as it applies, and offer it as a
        mutant's run is offered; the first violation found, or None."""
        from vmfuzz.schedules import Replay

        for case in cases:
            src: ScheduleSource = (
                Replay(case.schedule.decisions, strict=False)
                if case.schedule.kind == "decisions" else case.schedule.source()
            )
            found = self._run_one(case, src)
            if found is not None:
                return found
        return None

    def _keep(self, entry: Entry) -> None:
        if len(self.entries) < self.capacity:
            self.entries.append(entry)
        else:
            self.entries[self.added % self.capacity] = entry
        self.added += 1

    def offer(
        self, case: Case, trace: Sequence[Any], length: int,
        targets: Iterable[tuple[int, int | None]] = (), frames: Iterable[int] = (),
        aba: Iterable[tuple[int, int, int, int, int]] = (), events: Sequence[Any] = (),
    ) -> bool:
        """Count the interleaving pairs of ``case``'s run (``trace``, and its data events
        ``events``: ``Kernel.history``); keep ``case`` if one of them was never met before
        (and it is no bigger than a mutant may grow).  A pte
        ABA of the run (``aba``: ``Kernel.pte_aba``) may queue an ABA probe (:meth:`probe`),
        whether the case is kept or not (:meth:`_note_aba`)."""
        if aba:
            self._note_aba(case, trace, aba, events)
        if events:
            self._note_windows(case, events)
            if READER_SHARE:
                self._note_readers(case, events)
        hits = self.hits
        new = []
        for pair in interleavings(trace, events):
            n = hits.get(pair, 0)
            if not n:
                new.append(pair)
            hits[pair] = n + 1
        if not new or sum(len(t.ops) for t in case.tasks) > MAX_OPS or (
            len(case.tasks) > self.max_threads
        ):
            return False
        if self.minimize and case.schedule.kind == "decisions":
            case, length = self._minimize(case, length, set(new))
        entry = Entry(case, length, tuple(dict.fromkeys(targets)), tuple(sorted(new)),
                      tuple(dict.fromkeys(frames)))
        self._keep(entry)
        self._unprobed.append(entry)
        if self.unsaved is not None:
            self.unsaved.append(entry)
        return True

    def _note_aba(self, case: Case, trace: Sequence[Any],
                  aba: Iterable[tuple[int, int, int, int, int]],
                  events: Sequence[Any] = (), held: bool = False) -> None:
        """Queue an ABA probe of ``case`` for a pte ABA whose (world, mm, page, pte kind,
        whether the value's frame or slot was freed and reused meanwhile: :func:`reused`,
        from the run's data ``events``) is met for the 1st, 4th, 16th, 64th ... time: every
        kind of ABA is probed, a common
        one about log4(times met) times, on different programs (the same ABA at another page
        may be the one a reader can race).  The reader may be one task more than a pool
        program has room for: most ABAs of a world come from Hypothesis' examples, which
        often have four tasks or more (about 4 in 5 of those met in 30 s campaigns), and
        the failure is shrunk anyway.  With ``held`` (a window probe's run aimed at a
        holder) the probe goes to a queue of its own, counted apart."""
        world = case.config.world
        hits = self.held_hits if held else self.aba_hits
        queue = self._held if held else self._aba
        aba = list(aba)
        for (step, mm, addr, kind, since), reuse in zip(aba, reused(events, aba), strict=False):
            if not 0 <= step < len(trace):
                continue
            key = (world, mm, addr, kind, reuse)
            n = hits.get(key, 0) + 1
            hits[key] = n
            if n & (n - 1) == 0 and n.bit_length() % 2:
                # the tasks that replaced the value, then restored it
                writers = [trace[i].task for i in (since, step) if 0 <= i < len(trace)]
                rank = self._rank(("held" if held else "aba", *key[1:]))
                enqueue(queue, AbaProbe(case, mm, addr, since, tuple(dict.fromkeys(writers)),
                                        rank), ABA_QUEUE)

    def _note_windows(self, case: Case, events: Sequence[Any]) -> None:
        """Queue a window probe of ``case`` for each object a task of its run held
        half-changed (:func:`windows`) whose (world, object class, two paths) is met for the
        1st, 4th, 16th, 64th ... time, as :meth:`_note_aba` does for ABAs."""
        world = case.config.world
        hits = self.window_hits
        for (mm, addr), at, task, paths in windows(events):
            key = (world, addr is None, paths)
            n = hits.get(key, 0) + 1
            hits[key] = n
            if n & (n - 1) == 0 and n.bit_length() % 2:
                until = next((e[0] for e in events if e[0] > at and e[1] == task
                              and e[3] in ("set_pte", "pte_clear") and e[4] == (mm, addr)), -1)
                held = () if addr is None or until < 0 or not HOLDERS else tuple(
                    holders(self.boot_ptes(case.config), events, mm, addr, at)[:HOLDERS])
                enqueue(self._windows, WindowProbe(case, mm, addr, at, task, held, until,
                                                   self._rank(("window", *key[1:]))),
                        WINDOW_QUEUE)
        if not FLIGHT_SHARE:
            return
        queue = self._flights
        for (mm, addr), at, task, paths in in_flight(events):
            key = (world, addr is None, paths)
            n = self.flight_hits.get(key, 0) + 1
            self.flight_hits[key] = n
            if n & (n - 1) == 0 and n.bit_length() % 2:
                enqueue(queue, WindowProbe(case, mm, addr, at, task,
                                           rank=self._rank(("flight", *key[1:]))), WINDOW_QUEUE)

    def _note_readers(self, case: Case, events: Sequence[Any]) -> None:
        """Queue a reader probe of ``case`` for each vma-list write of its run
        (:func:`layout_writes`) whose (world, path, vmas left: 0, 1, 2, more) is met for the
        1st, 4th, 16th, 64th ... time, as :meth:`_note_aba` does for ABAs."""
        world = case.config.world
        hits = self.reader_hits
        for mm, at, task, path, vmas in layout_writes(events):
            key = (world, path, min(vmas, 3))
            n = hits.get(key, 0) + 1
            hits[key] = n
            if n & (n - 1) == 0 and n.bit_length() % 2:
                enqueue(self._readers, ReaderProbe(case, mm, at, task,
                                                   self._rank(("reader", *key[1:]))),
                        READER_QUEUE)

    def _rank(self, kind: tuple[Any, ...]) -> int:
        """How many probes of ``kind`` (a queue's name and the kind without the world) were
        offered to its queue before this one, those a full queue dropped included
        (:func:`enqueue`)."""
        n = self.queued_kinds.get(kind, 0)
        self.queued_kinds[kind] = n + 1
        return n

    def _minimize(self, case: Case, length: int, new: set[Pair]) -> tuple[Case, int]:
        """Delete operations one at a time (last first) while the program, replayed on its
        recorded decisions (as far as they apply), still meets every one of its ``new`` pairs, as
        syzkaller minimises a program before it enters the corpus: a pool of short programs
        whose every operation counts, so that a mutant's one change is a change to the race.
        The replays run without the invariant monitor: they are judged by their pairs, and
        the checks were about half of their cost (no candidate of four buggy campaigns broke
        one, 0 of ~9,400)."""
        from vmfuzz.schedules import Replay

        tasks = [list(t.ops) for t in case.tasks]
        starts = [t.start for t in case.tasks]
        decisions = case.schedule.decisions
        for ti in reversed(range(len(tasks))):
            for oi in reversed(range(len(tasks[ti]))):
                if sum(map(len, tasks)) <= 1:
                    break
                trial = [list(t) for t in tasks]
                del trial[ti][oi]
                cand = _program(case, trial, starts, case.config)
                run = execute(cand, Replay(decisions, strict=False), invariants=False)
                self.steps += run.outcome.steps
                if run.outcome.kind != "clean":
                    continue
                if new <= interleavings(run.sched.trace, run.kernel.history):
                    tasks, case, length = trial, cand, run.outcome.steps
        return case, length

    def run(self, mutants: int, rng: random.Random, deadline: float) -> Failure | None:
        """Run up to ``mutants`` mutants of pool entries (or until ``deadline``); the first
        violation found, or None."""
        if not self.entries:
            return None
        for parent in self._parents(mutants, rng, deadline):
            case = mutate(parent, self, rng)
            if case is None:
                continue
            random_walk = rng.random() < 0.2
            self._retried, self._pair = False, None
            for _ in range(self.schedules):
                seed = rng.getrandbits(32)
                src: ScheduleSource = (
                    Echo(RandomWalk(seed)) if random_walk
                    else PCT(seed, rng.randint(2, 4), max(2, parent.length))
                )
                found = self._run_one(case, src)
                if found is not None:
                    return found
            if self._retried:
                self._looped.add((case.config, case.tasks))
                for prog in (case, self._pair) if self._pair is not None else (case,):
                    for _ in range(RETRY_SCHEDULES):
                        found = self._run_one(prog, Collide(RandomWalk(rng.getrandbits(32))))
                        if found is not None:
                            return found
        return self.probe(random.Random(rng.getrandbits(64)), deadline)

    def probe(self, rng: random.Random, deadline: float,
              parents: Iterable[Entry] | None = None) -> Failure | None:
        """Run the queued ABA probes (:meth:`_probe_aba`), then a partner probe
        (:func:`partner`) of every entry added since the last call (or of each of
        ``parents``), each under one PCT schedule and one echoed random walk, until
        ``deadline``; the first violation found, or None.

        A probe puts a *partner* next to a program already known to interleave: the teardown
        of every mm it touches.  A use after free is often exactly that one step from an
        entry (a migration, and the exits of a child and of the parent whose anon_vma is the
        root of the child's), and one several mutations away from the rest of the pool.
        Every new entry is probed once, when the round that added it ends: an entry one
        teardown from a race is rare (1 to 15 of the ~1,400 a 60 s campaign adds) and may
        be evicted before a tournament draws it, so probes of tournament parents reached
        it 1 to 6 times in 700 (anon_vma_root_not_pinned: 5 of 10 seeds with those, 9 of 10
        with these, and no more with both; a campaign does about 12% less other work for
        them, which costs seeds that found near the 60 s budget).  Probes run on their own
        random stream and are never offered to the pool, so the mutants of every round
        (parents, mutations, schedules) are exactly those of a pool without probes.  (Probes
        that also replaced one operation by another on the same object were measured: no
        campaign found more with those, 0 of 9 on the same-page swapin race.)"""
        found = (self._probe_aba(deadline) or self._probe_windows(deadline)
                 or self._probe_held(deadline) or self._probe_readers(deadline)
                 or self._probe_flights(deadline))
        if found is not None:
            return found
        if parents is None:
            parents, self._unprobed = self._unprobed, []
        for i, parent in enumerate(parents):
            if self._spent(deadline, i):
                return None
            case = partner(parent, self, rng)
            if case is None:
                continue
            for src in (PCT(rng.getrandbits(32), rng.randint(2, 4), max(2, parent.length)),
                        Echo(RandomWalk(rng.getrandbits(32)))):
                found = self._run_one(case, src, offer=False, aba=PARTNER_ABA)
                if found is not None:
                    return found
        return None

    def _probe_aba(self, deadline: float) -> Failure | None:
        """Run the queued ABA probes (:func:`aba_readers`); the first violation found, or None.

        A pte that went from A to B and back to A in one run is what pte_same() cannot tell
        from a pte that never changed: a task that read A before the change and checks it
        after the restore is fooled (seed 001's vm_swap_full deletion race; 4969c1192d15
        and 13ddaf26be32 later).  Such a program is rare and one task short of that race,
        so it is worth a probe where it occurs, not a pool entry it may never get (one
        task's ABA meets no new interleaving pair).  The adversary is one preemption: the
        reader runs a few steps, is stalled while the program replays the run that made
        the ABA, then goes on (:class:`vmfuzz.schedules.Stall`, after 1 to STALL_STEPS of
        its steps), starting at step 0 and again at the step the restored value was
        replaced at and the one before it (the pte may have held other values before; the
        task that replaced it held its locks a step ahead), every task that joins later
        delayed by the reader's steps (:func:`_delayed`).  Random walks and PCT
        rarely hit that window: on the ABA programs of a 40 s campaign that had any, 0 of
        20 walks did, and a stall after 5, 6 or 7 steps did.

        ABA probes get at most ABA_SHARE of the pool's steps (counted, not timed, so a
        campaign stays deterministic): probes left over wait in the queue (ranked by
        :func:`enqueue`, at most ABA_QUEUE of them) for the mutants to catch up."""
        while self._aba:
            if self._spent(deadline):
                return None
            if self.aba_steps > ABA_SHARE * self.steps:
                del self._aba[ABA_QUEUE:]
                return None
            before = self.steps
            found = self._stall_probe(self._aba.pop(0))
            self.aba_steps += self.steps - before
            if found is not None:
                return found
        return None

    def _probe_held(self, deadline: float) -> Failure | None:
        """Run the ABA probes queued by window probes aimed at holders, within HOLDER_SHARE
        of the pool's steps (with those window probes); the first violation found, or None."""
        while self._held:
            if self._spent(deadline):
                return None
            if self.holder_steps > HOLDER_SHARE * self.steps:
                del self._held[ABA_QUEUE:]
                return None
            before = self.steps
            found = self._stall_probe(self._held.pop(0))
            self.holder_steps += self.steps - before
            if found is not None:
                return found
        return None

    def _probe_windows(self, deadline: float) -> Failure | None:
        """Run the queued window probes (:func:`intruders`); the first violation found, or
        None.

        Where two subsystems meet, the race is often one operation aimed at the object
        another operation is working on, while it is working on it: an mprotect of the page
        a migration holds as a migration entry, a munmap of the range an mlock populates.  A
        mutant aims at the objects of a whole run, at a random start; a probe aims at the
        object a task of a recorded run held half-changed (:func:`windows`), and runs the
        new task from the step after the first change, ahead of the others (which replay
        their recorded decisions) whenever it can run; a new task that itself held an
        object half-changed in that run is run again, paused inside its change
        (:meth:`_nested`).  Window probes get at most
        WINDOW_SHARE of the pool's steps, as ABA probes get ABA_SHARE (and their paused
        runs NESTED_SHARE more), and draw from a
        stream of their own (seeded by the probe), so the partner probes draw as without
        them."""
        while self._windows:
            if self._spent(deadline):
                return None
            if self.window_steps > WINDOW_SHARE * self.steps:
                del self._windows[WINDOW_QUEUE:]
                return None
            before = self.steps
            nested = self.nested_steps
            probe = self._windows.pop(0)
            found = None
            case = probe.case
            decisions = decision_names(case)
            rng = random.Random(f"{probe.mm} {probe.addr} {probe.at} {self.window_steps}")
            progs = intruders(case, probe, self, rng)
            own = len(progs) // (1 + len(probe.holders))  # the rest aim at its holders
            held = self.holder_steps
            for i, prog in enumerate(progs):
                start = prog.tasks[-1].start
                stall = Stall(prog.tasks[-1].name, decisions, start, case.max_steps)
                if i >= own:
                    if self.holder_steps > HOLDER_SHARE * self.steps:
                        break
                    at = self.steps
                    found = self._run_one(prog, stall, offer=False, aba=True, held=True)
                    self.holder_steps += self.steps - at
                else:
                    found = self._run_one(prog, stall, offer=False)
                    if found is None and self.nested_steps <= NESTED_SHARE * self.steps:
                        found = self._nested(prog, decisions, start, self._last_events)
                if found is not None:
                    break
            self.window_steps += (self.steps - before - (self.nested_steps - nested)
                                  - (self.holder_steps - held))
            if found is not None:
                return found
        return None

    def _probe_readers(self, deadline: float) -> Failure | None:
        """Run the queued reader probes; the first violation found, or None.

        A writer of an mm's vma list takes mmap_sem for write and page_table_lock; a reader
        may take either (2.4 swap_out, 2.6 unuse_process and try_to_unmap_one: page_table_lock
        alone).  A writer that skips one (seed 004's detach outside page_table_lock) races
        the readers that take only that one: the reader has found a vma when the writer
        detaches and frees it.  A random schedule must stop the reader inside its walk just
        before the write; here each reader (:func:`list_readers`) runs 1 .. STALL_STEPS of
        its steps from the step before the recorded write and is held there while the run
        replays its decisions (:class:`vmfuzz.schedules.Stall`), then goes on."""
        while self._readers:
            if self._spent(deadline):
                return None
            if self.reader_steps > READER_SHARE * self.steps:
                del self._readers[READER_QUEUE:]
                return None
            before = self.steps
            probe = self._readers.pop(0)
            case = probe.case
            decisions = decision_names(case)
            rng = random.Random(f"{probe.mm} {probe.at} {probe.task} {self.reader_steps}")
            hit = self._stall_runs(list_readers(case, probe.mm, self, rng), decisions,
                                   {max(probe.at - 1, 0)})
            self.reader_steps += self.steps - before
            if hit is not None:
                return hit[1]
        return None

    def _probe_flights(self, deadline: float) -> Failure | None:
        """Run the queued flight probes; the first violation found, or None.

        A kernel path that changed an object and goes on later still works on it: reclaim
        has unmapped a page of a vma and sleeps in the driver's ->swapout with that vma.  Each
        operation on an mm, aimed at the object (:func:`intruders`), starts the step after
        the change and runs ahead of the others whenever it can, as a window probe's does;
        while it waits (for a lock a third task holds), the path's task is kept still
        (:class:`vmfuzz.schedules.Stall`'s hold) and the others go on: the path must not
        finish before the intruder gets in.  At most FLIGHT_SHARE of the pool's steps."""
        while self._flights:
            if self._spent(deadline):
                return None
            if self.flight_steps > FLIGHT_SHARE * self.steps:
                return None
            before = self.steps
            probe = self._flights.pop(0)
            case = probe.case
            decisions = decision_names(case)
            rng = random.Random(f"{probe.mm} {probe.addr} {probe.at} {self.flight_steps}")
            found = None
            for prog in intruders(case, probe, self, rng):
                stall = Stall(prog.tasks[-1].name, decisions, prog.tasks[-1].start,
                              case.max_steps, hold=probe.task)
                found = self._run_one(prog, stall, offer=False)
                if found is not None:
                    break
            self.flight_steps += self.steps - before
            if found is not None:
                return found
        return None

    def _nested(self, prog: Case, decisions: list[str], at: int,
                events: Sequence[Any]) -> Failure | None:
        """Window probe ``prog`` (its last task the intruder, run from step ``at``) again with
        a second preemption: the intruder paused right after its own first change of an object
        it changed again later in the probe's clean run (``events``, its data events:
        :func:`windows`), while the recorded tasks go on (:class:`vmfuzz.schedules.Stall`'s
        pause), then resumed.  The first failure, or None.

        The single stall lets the intruder finish its change before the recorded task
        resumes; a race that needs both sides half-done (a migration holding a page as
        migration entries resumes its rmap walk while an mprotect has moved the vma's
        vm_start and not yet its vm_pgoff) needs this second stall, which PCT of depth 2
        and a single stall can never make.  It works from the run's data events alone: the
        same events :func:`windows` reads."""
        name = prog.tasks[-1].name
        points = sorted({first for _, first, task, _ in windows(events) if task == name})
        for first in points[:NESTED_POINTS]:
            for hold in NESTED_HOLDS:
                stall = Stall(name, decisions, at, prog.max_steps, (first + 1, hold))
                before = self.steps
                found = self._run_one(prog, stall, offer=False)
                self.nested_steps += self.steps - before
                if found is not None:
                    return found
        return None

    def _stall_probe(self, probe: AbaProbe) -> Failure | None:
        """One ABA probe (:meth:`_probe_aba`): each reader of the page, stalled after 1 ..
        STALL_STEPS of its steps from step 0 and from the step the value was replaced at
        (and the one before).

        The reader is first put next to the probe's writers alone, their operations in one
        task (:meth:`_writers_alone`), when that task makes the ABA by itself: a shorter run,
        and the race as the mail draws it (the campaign's shrinker deletes operations but not
        the tasks a recorded schedule names, so a race two tasks can show was left at three in
        2 of 10 seeds of the skip-swapcache zoo row).  Only then the whole program, replaying
        its recorded decisions; a failure there is tried once more on the reader next to each
        of its tasks alone (:meth:`_reduce_aba`)."""
        case, mm, addr = probe.case, probe.mm, probe.addr
        if len(case.tasks) > 1:
            alone = self._writers_alone(case, probe.writers, mm, addr)
            if alone is not None:
                found = self._stall_pair(*alone, mm, addr)
                if found is not None:
                    return found
        order = [t.name for t in sorted(case.tasks, key=lambda t: t.start)]
        decisions = (
            [order[d] for d in case.schedule.decisions] if case.schedule.kind == "decisions" else []
        )
        hit = self._stalls(case, mm, addr, decisions,
                           {0, max(probe.since - 1, 0), max(probe.since, 0)})
        if hit is None:
            return None
        prog, found = hit
        return self._reduce_aba(prog, mm, addr, found)

    def _writers_alone(
        self, case: Case, names: Sequence[str], mm: int, addr: int
    ) -> tuple[Case, list[int]] | None:
        """The operations of ``case``'s tasks ``names``, in that order, as one task; with
        the steps at which its run replaced a value the pte at (``mm``, ``addr``) got back
        later, or None when the run makes no such ABA (or does not end clean)."""
        by_name = {t.name: t for t in case.tasks}
        ops = [c for n in names if n in by_name for c in by_name[n].ops]
        if not ops:
            return None
        one = _program(case, [ops], [0], case.config)
        run = execute(one)
        self.probe_runs += 1
        self.steps += run.outcome.steps
        sinces = [s for _, m, a, _, s in run.kernel.pte_aba if (m, a) == (mm, addr)]
        if run.outcome.kind != "clean" or not sinces:
            return None
        return one, sinces

    def _stall_pair(
        self, writer: Case, sinces: list[int], mm: int, addr: int, check: str | None = None
    ) -> Failure | None:
        """Each reader of the page next to one-task program ``writer`` (:meth:`_stalls`,
        from step 0 and from each of ``sinces``); the first failure (with check ``check``,
        if given), or None."""
        hit = self._stalls(writer, mm, addr, [], {0, *sinces, *(s - 1 for s in sinces if s)},
                           check)
        return hit[1] if hit is not None else None

    def _stalls(
        self, case: Case, mm: int, addr: int, decisions: list[str], ats: set[int],
        check: str | None = None,
    ) -> tuple[Case, Failure] | None:
        """Each reader of the page (:func:`aba_readers`) next to ``case``, as
        :meth:`_stall_runs` runs them."""
        return self._stall_runs(aba_readers(case, mm, addr, self), decisions, ats, check)

    def _stall_runs(
        self, progs: Iterable[Case], decisions: list[str], ats: set[int],
        check: str | None = None,
    ) -> tuple[Case, Failure] | None:
        """Each program of ``progs`` (its last task the reader), the reader stalled after 1 ..
        STALL_STEPS of its steps from each step of ``ats`` (lowest first) while the other
        tasks follow ``decisions``; the first program that failed (with check ``check``, if
        given) and its failure, or None."""
        for prog in progs:
            reader = prog.tasks[-1].name
            for at in sorted(ats):
                for k in range(1, STALL_STEPS + 1):
                    stall = Stall(reader, decisions, at, k)
                    run = _delayed(prog, at, k)
                    found = self._run_one(run, stall, offer=False)
                    if found is not None and (check is None or found.violation.check == check):
                        return run, found
                    if stall.ran < k:  # the reader ended (or slept) before its k-th step
                        break
        return None

    def _reduce_aba(self, prog: Case, mm: int, addr: int, found: Failure) -> Failure:
        """``found`` (a failure of ABA probe ``prog``, whose last task is the reader), or the
        same violation met by a reader next to one other task of ``prog`` alone, when that
        task makes the ABA by itself."""
        if len(prog.tasks) <= 2:
            return found
        for task in prog.tasks[:-1]:
            alone = self._writers_alone(prog, [task.name], mm, addr)
            small = alone and self._stall_pair(*alone, mm, addr, found.violation.check)
            if small:
                return small
        return found

    def _loop_probe(self, case: Case, sched: Scheduler) -> Failure | None:
        """``case`` (a probe's program whose run ``sched`` went round a retry loop) under
        RETRY_SCHEDULES collision walks (:class:`vmfuzz.schedules.Collide`), and as many on
        its colliding tasks alone (:func:`colliders`), once per program: a probe's program
        is never offered, so the mutants' retry runs never reach it.  The first failure, or
        None."""
        key = (case.config, case.tasks)
        if key in self._looped:
            return None
        self._looped.add(key)
        rng = random.Random(len(self._looped))
        pair = colliders(case, sched)
        self._looping = True
        try:
            for prog in (case, pair) if pair is not None else (case,):
                for _ in range(RETRY_SCHEDULES):
                    before = self.steps
                    found = self._run_one(prog, Collide(RandomWalk(rng.getrandbits(32))),
                                          offer=False)
                    self.loop_steps += self.steps - before
                    if found is not None:
                        return found
        finally:
            self._looping = False
        return None

    def _spent(self, deadline: float, i: int = 0) -> bool:
        """The round must stop: its step limit is reached (looked at every time), or the
        wall-clock ``deadline`` has passed (looked at every 16th ``i``, the clock being dear)."""
        if self.step_limit is not None and self.steps >= self.step_limit:
            return True
        return i % 16 == 0 and time.monotonic() >= deadline

    def _parents(self, n: int, rng: random.Random, deadline: float) -> Iterator[Entry]:
        """Up to ``n`` parents, each the lowest-energy of 3 entries drawn (a tournament),
        until ``deadline`` (looked at every 16th); none from an empty pool."""
        if not self.entries:
            return
        for i in range(n):
            if self._spent(deadline, i):
                return
            yield min((rng.choice(self.entries) for _ in range(3)), key=self._energy)

    def boot_frames(self, config: KernelConfig) -> list[int]:
        """The frames the world of ``config`` maps at its boot targets (one boot per world)."""
        got = self._boot_frames.get(config)
        if got is None:
            k = Kernel(config)
            got = self._boot_frames[config] = frames_at(k, k.boot_targets)
        return got

    def boot_ptes(self, config: KernelConfig) -> dict[tuple[int, int], Any]:
        """The world of ``config``'s ptes, as pte values by (mm, addr) (one boot per world)."""
        got = self._boot_ptes.get(config)
        if got is None:
            k = Kernel(config)
            got = self._boot_ptes[config] = {
                (mm.id, a): pte_value(p) for mm in k.mms.values() for a, p in mm.pgd.items()}
        return got

    def _energy(self, e: Entry) -> tuple[int, int]:
        """Tournament key, lowest first: entries whose own pairs are still rare (few runs
        have met them since: AFLFast's schedule, Böhme et al., CCS 2016), then the smaller
        (a smaller program races tighter)."""
        hits = self.hits
        return min((hits.get(p, 0) for p in e.new), default=0), e.size

    def _run_one(self, case: Case, src: ScheduleSource, offer: bool = True,
                 aba: bool = False, held: bool = False) -> Failure | None:
        """Run ``case`` under ``src``; the failure, or None.  A clean run is offered to the
        pool (``offer``), or, with ``aba`` alone, only its pte ABAs are noted
        (:meth:`_note_aba`, into the holders' queue with ``held``)."""
        from vmfuzz.corpus import _Watch  # keeps the scheduler: a crash still has decisions

        rec = _Watch(src)
        try:
            run: Run = execute(case, rec)
        except Exception as exc:  # a crash of the model itself is a finding too
            self.found_by = _mechanism(sys._getframe(1), src)
            sched = rec.sched
            decisions = tuple(sched.decisions) if sched else ()
            v = Violation("model_error", f"{type(exc).__name__}: {exc}")
            return Failure(
                attrs.evolve(case, schedule=Schedule("decisions", decisions=decisions)), v,
                sched.step_no if sched else 0, sched.preemptions if sched else 0,
                list(sched.trace) if sched else [],
            )
        self.steps += run.outcome.steps
        self._last_events = run.kernel.history if run.outcome.kind == "clean" else ()
        if not offer:
            self.probe_runs += 1
        else:
            self.runs += 1
        if offer and run.sched.retried and not self._retried:
            self._retried, self._pair = True, colliders(case, run.sched)
        if run.outcome.kind == "violation":
            assert run.outcome.violation is not None
            self.found_by = _mechanism(sys._getframe(1), src)
            return Failure(
                attrs.evolve(case, schedule=Schedule("decisions",
                                                     decisions=tuple(run.sched.decisions))),
                run.outcome.violation, run.outcome.steps, run.sched.preemptions,
                list(run.sched.trace),
            )
        if offer and run.outcome.kind == "clean":
            k = run.kernel
            targets = [t for t in (target_of(c) for ts in case.tasks for c in ts.ops) if t]
            touched, pages = objects_of(k.history)
            targets = list(k.boot_targets) + targets + touched
            recorded = Schedule("decisions", decisions=tuple(run.sched.decisions))
            self.offer(attrs.evolve(case, schedule=recorded), run.sched.trace,
                       run.outcome.steps, targets, self.boot_frames(case.config) +
                       frames_at(k, targets) + pages, k.pte_aba, k.history)
        elif aba and run.outcome.kind == "clean" and run.kernel.pte_aba:
            recorded = Schedule("decisions", decisions=tuple(run.sched.decisions))
            self._note_aba(attrs.evolve(case, schedule=recorded), run.sched.trace,
                           run.kernel.pte_aba, run.kernel.history, held)
        if not offer and run.sched.retried and RETRY_PROBES and not self._looping:
            events = self._last_events
            found = self._loop_probe(case, run.sched)
            self._last_events = events
            return found
        return None


# ------------------------------------------------------------------ mutations
# The pool's mechanisms, by the method that runs them (the innermost on the stack names it).
_MECHANISMS = {
    "rerun": "a stored pool program re-run",
    "run": "a pool mutant",
    "_loop_probe": "a collision walk",
    "probe": "a partner probe",
    "_probe_aba": "an ABA probe",
    "_probe_held": "a holder probe",
    "_probe_windows": "a window probe",
    "_nested": "a nested window probe",
    "_probe_readers": "a reader probe",
    "_probe_flights": "a flight probe",
}
_POOL_CODES = {getattr(Pool, name).__code__: what for name, what in _MECHANISMS.items()}


def _mechanism(frame: FrameType | None, src: ScheduleSource) -> str:
    """Which of the pool's mechanisms made the run that failed: the innermost of
    :data:`_MECHANISMS` on the stack above :meth:`Pool._run_one` (a mutant's collision walk
    is named by its source)."""
    while frame is not None:
        what = _POOL_CODES.get(frame.f_code)
        if what is not None:
            if what == "a pool mutant" and isinstance(src, Collide):
                return "a collision walk"
            return what
        frame = frame.f_back
    return "the pool"


def _value(kind: str, config: KernelConfig, rng: random.Random) -> int:
    """A value of one argument kind, half of them in the kind's hot range (as drawn by
    :func:`vmfuzz.strategies.operations.kind_values`)."""
    lo, hi = kind_bounds(kind, config)
    if rng.random() < 0.5:
        return rng.randint(lo, kind_hot(kind, config))
    return rng.randint(lo, hi)


def _call(ops: list[str], config: KernelConfig, rng: random.Random) -> OpCall:
    name = rng.choice(ops)
    return OpCall(name, {a: _value(kind, config, rng) for a, kind in OPS[name].params})


def _aim(call: OpCall, parent: Entry, rng: random.Random) -> OpCall:
    """Half the time, ``call`` aimed at one of ``parent``'s targets (its mm and addr
    arguments), or, for an operation on frames, at one of the frames mapped there."""
    if takes_frame(call):
        if not parent.frames or rng.random() < 0.5:
            return call
        return aim_frame(call, rng.choice(parent.frames))
    if not parent.targets or rng.random() < 0.5:
        return call
    return retarget(call, rng.choice(parent.targets))


def mutate(parent: Entry, pool: Pool, rng: random.Random) -> Case | None:
    """One to three mutations of ``parent``'s program; None if nothing is left of it."""
    case = parent.case
    config = case.config
    ops = sorted(pool.ops) if pool.ops is not None else sorted(OPS)
    tasks = [list(t.ops) for t in case.tasks]
    starts = [t.start for t in case.tasks]
    world = set(config.world)

    def some_task(new: bool) -> int:
        """A task index; with ``new``, possibly a new (empty) task."""
        if new and len(tasks) < pool.max_threads and (not tasks or rng.random() < 0.4):
            tasks.append([])
            starts.append(0 if rng.random() < 0.5 else rng.randint(0, parent.length))
        return rng.randrange(len(tasks))

    own = sorted({c.op for t in tasks for c in t})
    for _ in range(1 + (rng.random() < 0.3) + (rng.random() < 0.1)):
        kind = rng.choices(
            ("insert", "delete", "change", "move", "copy", "world", "splice", "start", "drop"),
            (4, 3, 3, 1, 2, 1, 1, 1, 1),
        )[0]
        nonempty = [i for i, t in enumerate(tasks) if t]
        if kind == "insert" and sum(map(len, tasks)) < MAX_OPS:
            t = some_task(new=True)
            # Half the time an operation the program already has (races are often two of
            # the same operation, or of the ones that reached this state), aimed anew.
            names = own if own and rng.random() < 0.5 else ops
            tasks[t].insert(rng.randint(0, len(tasks[t])),
                            _aim(_call(names, config, rng), parent, rng))
        elif kind == "delete" and nonempty:
            t = rng.choice(nonempty)
            del tasks[t][rng.randrange(len(tasks[t]))]
        elif kind == "change" and nonempty:
            t = rng.choice(nonempty)
            j = rng.randrange(len(tasks[t]))
            call = tasks[t][j]
            params = OPS[call.op].params
            if params:
                a, k = rng.choice(params)
                tasks[t][j] = OpCall(call.op, {**call.args, a: _value(k, config, rng)})
                if k in ("mm", "addr", "pfn"):
                    tasks[t][j] = _aim(tasks[t][j], parent, rng)
        elif kind in ("move", "copy") and nonempty:
            t = rng.choice(nonempty)
            call = tasks[t][rng.randrange(len(tasks[t]))]
            if kind == "move":
                tasks[t].remove(call)
            elif sum(map(len, tasks)) >= MAX_OPS:
                continue
            u = some_task(new=True)
            tasks[u].insert(rng.randint(0, len(tasks[u])), call)
        elif kind == "world":  # never one the campaign's own config asks for
            free = [f for f in WORLD_FEATURES if f not in pool.config.world]
            if free:
                world ^= {rng.choice(free)}
        elif kind == "splice" and len(tasks) < pool.max_threads:
            other = rng.choice(pool.entries).case.tasks
            if other:
                spec = rng.choice(other)
                if sum(map(len, tasks)) + len(spec.ops) <= MAX_OPS:
                    tasks.append(list(spec.ops))
                    starts.append(spec.start)
        elif kind == "drop" and len(tasks) > 1:
            t = rng.randrange(len(tasks))
            del tasks[t], starts[t]
        elif kind == "start" and tasks:
            t = rng.randrange(len(tasks))
            starts[t] = 0 if rng.random() < 0.3 else rng.randint(0, parent.length)
    if not any(tasks):
        return None
    w = frozenset(world)
    return _program(case, tasks, starts, attrs.evolve(config, world=w) if w != config.world
                    else config)


def partner(parent: Entry, pool: Pool, rng: random.Random) -> Case | None:
    """``parent``'s program with a partner (for :meth:`Pool.probe`): a new task that tears
    down every mm the program aims at, in a random order, with operations the table says
    destroy an mm (a teardown racing whatever the program holds: the anon_vma, the vma, the
    page).  None if there is no room for it (the most tasks, or operations)."""
    case = parent.case
    tasks = [list(t.ops) for t in case.tasks]
    starts = [t.start for t in case.tasks]
    room = MAX_OPS - sum(map(len, tasks))
    enders = [n for n in sorted(OPS) if OPS[n].destroys == "mm"
              and (pool.ops is None or n in pool.ops)]
    mms = sorted({mm for mm, _ in parent.targets})
    if not enders or not mms or len(tasks) >= pool.max_threads or room < 1:
        return None
    rng.shuffle(mms)
    tasks.append([_ender(rng.choice(enders), mm, case.config) for mm in mms[:room]])
    starts.append(0 if rng.random() < 0.5 else rng.randint(0, parent.length))
    return _program(case, tasks, starts, case.config)


def aba_readers(case: Case, mm: int, addr: int, pool: Pool) -> list[Case]:
    """``case`` with one more task, started with the others, that accesses page ``addr`` of
    ``mm``: one program per operation taking exactly an mm and an address (a load, a
    store), for :meth:`Pool._probe_aba`."""
    tasks = [list(t.ops) for t in case.tasks]
    starts = [t.start for t in case.tasks]
    out = []
    for name in sorted(OPS):
        if [k for _, k in OPS[name].params] != ["mm", "addr"] or (
            pool.ops is not None and name not in pool.ops
        ):
            continue
        (a, _), (b, _) = OPS[name].params
        out.append(_program(case, [*tasks, [OpCall(name, {a: mm, b: addr})]], [*starts, 0],
                            case.config))
    return out


def list_readers(case: Case, mm: int, pool: Pool, rng: random.Random) -> list[Case]:
    """``case`` with one more task, started with the others, that reads ``mm``'s vma list:
    one program per scan of every mm (an operation that takes neither an mm nor a frame),
    then operations aimed at ``mm`` (their other arguments drawn as a mutant's), READERS in
    all, for :meth:`Pool._probe_readers`."""
    tasks = [list(t.ops) for t in case.tasks]
    starts = [t.start for t in case.tasks]
    names = sorted(OPS) if pool.ops is None else sorted(pool.ops)
    scans = [n for n in names if not any(k in ("mm", "pfn") for _, k in OPS[n].params)]
    aimed = [n for n in names if OPS[n].params and OPS[n].params[0][1] == "mm"]
    picked = scans[:READERS]
    if len(picked) < READERS and aimed:
        picked += rng.sample(aimed, min(len(aimed), READERS - len(picked)))
    out = []
    for name in picked:
        params = OPS[name].params
        call = OpCall(name, {a: _value(kind, case.config, rng) for a, kind in params})
        if params and params[0][1] == "mm":
            call = retarget(call, (mm, None))
        out.append(_program(case, [*tasks, [call]], [*starts, 0], case.config))
    return out


def intruders(case: Case, probe: WindowProbe, pool: Pool, rng: random.Random) -> list[Case]:
    """``case`` with one more task, started the step after ``probe``'s first change, that
    runs one operation aimed at the probe's object (its mm and, for a pte, its page; the
    other arguments drawn as a mutant's): one program per operation that takes an mm, for
    :meth:`Pool._probe_windows`; then as many aimed at each of the probe's ``holders``,
    started the step after the task's second change of the object (``until``)."""
    tasks = [list(t.ops) for t in case.tasks]
    starts = [t.start for t in case.tasks]
    out = []
    for target in ((probe.mm, probe.addr), *probe.holders):
        start = probe.at + 1 if target == (probe.mm, probe.addr) else probe.until + 1
        for name in sorted(OPS) if pool.ops is None else sorted(pool.ops):
            params = OPS[name].params
            if not params or params[0][1] != "mm":
                continue
            call = OpCall(name, {a: _value(kind, case.config, rng) for a, kind in params})
            call = retarget(call, target)
            out.append(_program(case, [*tasks, [call]], [*starts, start], case.config))
    return out


def _delayed(prog: Case, at: int, k: int) -> Case:
    """ABA probe ``prog`` (its last task the stalled reader) for a reader run ``k`` steps from
    step ``at``: every other task that starts after ``at`` starts ``k`` steps later, so the
    others' run is the recorded one with the reader's steps put in (a task joins at a step
    number, and the reader's steps would otherwise move it ``k`` steps earlier in their run)."""
    *others, reader = prog.tasks
    if not any(t.start > at for t in others):
        return prog
    return attrs.evolve(prog, tasks=(
        *(attrs.evolve(t, start=t.start + k) if t.start > at else t for t in others), reader))


def _ender(name: str, mm: int, config: KernelConfig) -> OpCall:
    """Operation ``name`` (one that destroys an mm) aimed at ``mm``; any other argument at
    the smallest value of its kind."""
    return OpCall(name, {a: mm if kind == "mm" else kind_bounds(kind, config)[0]
                         for a, kind in OPS[name].params})


def _program(
    case: Case, tasks: list[list[OpCall]], starts: list[int], config: KernelConfig
) -> Case:
    """``case`` with these tasks (empty ones left out, the rest renamed T0, T1, ...)."""
    specs = tuple(
        TaskSpec(f"T{i}", tuple(t), s)
        for i, (t, s) in enumerate((t, s) for t, s in zip(tasks, starts, strict=True) if t)
    )
    return Case(config, specs, Schedule("none"), case.max_steps)
