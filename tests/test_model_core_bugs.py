"""The mm-core historical bug switches: each race replayed by hand, with the bug and without.

Every test runs the same operations twice under the same hand-written schedule: with the bug
switched on it must end in the expected violation, in the fixed kernel it must run clean.  The
schedules are written as "switch when task X reaches yield label L" (:class:`SwitchAt`), which
reads like the interleavings drawn in the seed mails; each race test also replays the run as the
fuzzer's own encoding, a sparse :class:`~vmfuzz.schedules.PreemptionList`, to show that the
fuzzer can express it with that many preemptions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from vmfuzz.invariants import install, names

from vmfuzz import LockDep, Outcome, Scheduler, ScheduleSource
from vmfuzz.case import OpCall, thread
from vmfuzz.kernel import BUGS, Kernel, KernelConfig
from vmfuzz.kernel.rmap import live_anon_vmas
from vmfuzz.schedules import PreemptionList

MINE = [
    "vma_adjust_no_anon_vma_lock",
    "anon_vma_lock_not_root",
    "anon_vma_trylock_retry",
    "try_to_unmap_ignores_reserved",
    "detach_vmas_outside_ptl",
    "migrate_no_anon_vma_ref",
    "anon_vma_root_not_pinned",
]


# --------------------------------------------------------------------------- helpers
def ops(*calls: tuple[str, dict[str, int]]) -> list[OpCall]:
    return [OpCall(name, args) for name, args in calls]


class SwitchAt:
    """The default (non-preemptive) policy, except: each trigger ``(task, label, to)`` switches
    from ``task`` to ``to`` at the first decision where ``task`` stands at yield ``label``.
    Records where it deviated, to re-express the run as a PreemptionList."""

    def __init__(self, triggers: Iterable[tuple[str, str, str]]) -> None:
        self.triggers = list(triggers)
        self.fired = 0
        self.decision = 0
        self.deviations: list[int] = []

    def choose(self, runnable: list[Any], default: int, sched: Scheduler) -> int:
        n = self.decision
        self.decision += 1
        cur = sched.current
        if self.fired < len(self.triggers) and cur is not None:
            who, label, to = self.triggers[self.fired]
            if cur.name == who and cur.label == label:
                for i, t in enumerate(runnable):
                    if t.name == to:
                        self.fired += 1
                        if i != default:
                            self.deviations.append(n)
                        return i
        return default

    def preemptions(self) -> list[tuple[int, int]]:
        """The same deviations as (gap, offset) pairs (two tasks: offset 0 is the other)."""
        out, last = [], -1
        for d in self.deviations:
            out.append((d - last - 1, 0))
            last = d
        return out


def run(
    bugs: Iterable[str],
    tasks: list[list[OpCall]],
    source: ScheduleSource | None = None,
    checks: Iterable[str] | None = None,
) -> tuple[Outcome, Kernel]:
    """Run ``tasks`` (T0, T1, ...) on a fresh kernel with ``checks`` installed (None: all)."""
    sched = Scheduler(source, lockdep=LockDep(), max_steps=5000)
    k = Kernel(KernelConfig(bugs=frozenset(bugs)), sched)
    install(k, checks)
    for i, calls in enumerate(tasks):
        sched.spawn(thread(k, calls), f"T{i}")
    return sched.run_to_outcome(), k


def all_but(*excluded: str) -> list[str]:
    return [n for n in names() if n not in excluded]


def assert_race(
    bug: str,
    tasks: list[list[OpCall]],
    triggers: list[tuple[str, str, str]],
    check: str,
    checks: Iterable[str] | None = None,
) -> tuple[SwitchAt, Kernel]:
    """The bug gives ``check`` under the hand schedule and under its PreemptionList form; the
    fixed kernel runs the same operations and schedule clean.  Returns the fixed run."""
    checks = list(checks) if checks is not None else None
    src = SwitchAt(triggers)
    outcome, _ = run([bug], tasks, src, checks)
    assert outcome.kind == "violation", f"{bug}: no violation"
    assert outcome.check == check, outcome.violation.describe()  # type: ignore[union-attr]
    assert src.fired == len(triggers)
    again, _ = run([bug], tasks, PreemptionList(src.preemptions()), checks)
    assert again.check == check
    fixed_src = SwitchAt(triggers)
    fixed, k = run([], tasks, fixed_src, checks)
    assert fixed.kind == "clean", fixed.violation.describe()  # type: ignore[union-attr]
    return fixed_src, k


def test_every_bug_is_registered_with_its_check() -> None:
    checks = set(names())
    for bug in MINE:
        assert bug in BUGS
        assert BUGS[bug].invariant in checks
        assert BUGS[bug].mail_tasks is not None


# --------------------------------------------------------------------------- seed 002
# Mel Gorman, 24 Apr 2010: migration has replaced the pte by a migration entry; mprotect
# splits the vma and vma_adjust moves vm_start before vm_pgoff; remove_migration_ptes'
# rmap_walk computes vma_address from the half-updated vma, gets -EFAULT, and the migration
# entry is left behind once the page is unlocked.
#
#     T0 (compaction)                      T1 (mprotect(2, 2, PROT_READ))
#     lock_page; try_to_unmap: pte 3 -> m
#                                          split_vma: vma_adjust
#                                            vma->vm_start = 2     (vm_pgoff still 0)
#     remove_migration_ptes: rmap_walk
#       vma_address(page 3) = 2 + 3 - 0 = 5: -EFAULT, skipped
#     unlock_page                          -> migration entry at 3, page unlocked
SEED002 = [
    ops(
        ("mmap", {"mm": 0, "addr": 0, "npages": 4}),
        ("write", {"mm": 0, "addr": 3}),
        ("migrate", {"pfn": 0}),
    ),
    ops(("mprotect", {"mm": 0, "addr": 2, "npages": 2, "flag": 0})),
]
SEED002_SWITCHES = [
    ("T0", "unmap_and_move:move_to_new_page", "T1"),
    ("T1", "vma_adjust:vm_start", "T0"),
]


def test_vma_adjust_no_anon_vma_lock_leaves_a_migration_pte() -> None:
    # The race as the kernel saw it: the stale migration entry outlives the page lock.
    assert_race(
        "vma_adjust_no_anon_vma_lock", SEED002, SEED002_SWITCHES,
        "migration_pte_page_locked", all_but("rmap_reachable"),
    )


def test_vma_adjust_no_anon_vma_lock_is_caught_by_rmap_reachable() -> None:
    # With every check on, the half-updated vma is reported before the walk even runs ...
    assert_race(
        "vma_adjust_no_anon_vma_lock", SEED002, SEED002_SWITCHES[:1], "rmap_reachable"
    )
    # ... and a lone mprotect is enough: no rmap walker excluded while vm_start moved.
    lone = [ops(*[(c.op, c.args) for c in SEED002[0][:2]], *[(c.op, c.args) for c in SEED002[1]])]
    assert run(["vma_adjust_no_anon_vma_lock"], lone)[0].check == "rmap_reachable"
    assert run([], lone)[0].kind == "clean"


def test_stale_migration_entry_trips_the_kernel_bug_on() -> None:
    """Without invariants, a later fault on the left-behind entry hits migration_entry_to_page's
    BUG_ON(!PageLocked(p)), raised by the model itself."""
    tasks = [SEED002[0] + ops(("read", {"mm": 0, "addr": 3})), SEED002[1]]
    bug, _ = run(["vma_adjust_no_anon_vma_lock"], tasks, SwitchAt(SEED002_SWITCHES), [])
    assert bug.check == "migration_pte_page_locked"
    assert bug.violation is not None and "BUG_ON" in bug.violation.message
    fixed, _ = run([], tasks, SwitchAt(SEED002_SWITCHES), [])
    assert fixed.kind == "clean"


# --------------------------------------------------------------------------- seed 003
# The same race through a fork: the page belongs to the parent's (root) anon_vma A, the
# child's vma has its own anon_vma B.  Locking the immediate anon_vma, vma_adjust on the child's
# vma takes B while rmap_walk takes A: no exclusion.  Linus: "always lock the deepest anon_vma".
SEED003 = [
    ops(
        ("mmap", {"mm": 0, "addr": 0, "npages": 4}),
        ("write", {"mm": 0, "addr": 3}),
        ("fork", {"mm": 0}),
        ("migrate", {"pfn": 0}),
    ),
    ops(("mprotect", {"mm": 3, "addr": 2, "npages": 2, "flag": 0})),
]


def test_anon_vma_lock_not_root_leaves_a_migration_pte_in_the_child() -> None:
    _, k = assert_race(
        "anon_vma_lock_not_root", SEED003, SEED002_SWITCHES,
        "migration_pte_page_locked", all_but("rmap_reachable"),
    )
    assert not k.migration_ptes
    assert run(["anon_vma_lock_not_root"], SEED003, SwitchAt(SEED002_SWITCHES[:1]))[0].check == (
        "rmap_reachable"
    )


class LockStep:
    """Two CPUs running the retry loops at the same speed: after ``start``, bring the task that
    is behind up to its trylock, let both try while the other still holds its first lock, and
    otherwise alternate."""

    def __init__(self, start: tuple[str, str, str]) -> None:
        self.start = start
        self.started = False

    def choose(self, runnable: list[Any], default: int, sched: Scheduler) -> int:
        cur = sched.current
        if not self.started:
            who, label, to = self.start
            if cur is not None and cur.name == who and cur.label == label:
                self.started = True
                return next(i for i, t in enumerate(runnable) if t.name == to)
            return default
        if len(runnable) == 2:
            at_try = [":trylock(" in t.label for t in runnable]
            failed = [t.label.endswith(":trylock_failed") for t in runnable]
            for i in (0, 1):
                other = 1 - i
                if at_try[i] and failed[other]:
                    return i
                if at_try[other] and not at_try[i] and not failed[i]:
                    return i
        return next((i for i, t in enumerate(runnable) if t is not cur), default)


def test_anon_vma_trylock_retry_livelocks() -> None:
    """Mel's trylock-and-retry: rmap_walk holds the page's anon_vma A and trylocks the child
    vma's B; vma_adjust holds B and trylocks A; both back off and retry, in lock step, forever
    (seed 003: "it would avoid livelocking")."""
    bug, _ = run(["anon_vma_trylock_retry"], SEED003, LockStep(SEED002_SWITCHES[0]))
    assert bug.check == "livelock"
    assert bug.violation is not None and "vma_adjust:retry" in bug.violation.message
    fixed, k = run([], SEED003, LockStep(SEED002_SWITCHES[0]))
    assert fixed.kind == "clean"
    assert not k.migration_ptes


def test_anon_vma_trylock_retry_is_correct_when_it_terminates() -> None:
    """The scheme does close the seed-002 race: under the seed-002 schedule the walk waits."""
    outcome, k = run(["anon_vma_trylock_retry"], SEED003, SwitchAt(SEED002_SWITCHES))
    assert outcome.kind == "clean"
    assert not k.migration_ptes


# --------------------------------------------------------------------------- seed 004
def test_try_to_unmap_ignores_reserved_swaps_out_a_dma_page() -> None:
    tasks = [
        ops(
            ("mmap_reserved", {"mm": 0, "addr": 0, "npages": 2}),
            ("write", {"mm": 0, "addr": 0}),
            ("kswapd", {"count": 2}),
        )
    ]
    bug, _ = run(["try_to_unmap_ignores_reserved"], tasks)
    assert bug.check == "reserved_pte_cleared"
    fixed, k = run([], tasks)
    assert fixed.kind == "clean"
    assert k.mms[0].pgd[0].__class__.__name__ == "PresentPte"


def test_try_to_unmap_ignores_reserved_migrates_a_dma_page() -> None:
    # The summary's other path: compaction moves the DMA page (a migration entry in the
    # VM_RESERVED vma), which reserved_page_pinned sees; the fixed try_to_unmap_one refuses.
    tasks = [
        ops(
            ("mmap_reserved", {"mm": 0, "addr": 0, "npages": 1}),
            ("write", {"mm": 0, "addr": 0}),
            ("migrate", {"pfn": 0}),
        )
    ]
    bug, _ = run(["try_to_unmap_ignores_reserved"], tasks)
    assert bug.check == "reserved_page_pinned"
    assert bug.violation is not None and "VM_RESERVED" in bug.violation.message
    fixed, k = run([], tasks)
    assert fixed.kind == "clean"
    pte = k.mms[0].pgd[0]
    assert pte.__class__.__name__ == "PresentPte" and getattr(pte, "pfn", None) == 0


def test_detach_vmas_outside_ptl_breaks_the_vma_list_writer_rule() -> None:
    tasks = [ops(("mmap", {"mm": 0, "addr": 0, "npages": 2}), ("munmap", {"mm": 0, "addr": 0,
                                                                          "npages": 2}))]
    bug, _ = run(["detach_vmas_outside_ptl"], tasks)
    assert bug.check == "lock_not_held"
    assert bug.violation is not None and bug.violation.label == (
        "do_munmap:detach_vmas_to_be_unmapped"
    )
    assert run([], tasks)[0].kind == "clean"


# --------------------------------------------------------------------------- later races
# 3f6c82728f4e "mm: migration: take a reference to the anon_vma before migrating": once
# try_to_unmap has replaced the last pte, nothing keeps the anon_vma alive.
#
#     T0 (compaction)                      T1
#     lock_page; try_to_unmap: pte -> m
#                                          exit: zap (m cleared), unlink_anon_vmas: empty,
#                                                anon_vma_free
#     remove_migration_ptes: rmap_walk(anon_vma)   -> use after free
NOREF = [
    ops(
        ("mmap", {"mm": 0, "addr": 0, "npages": 1}),
        ("write", {"mm": 0, "addr": 0}),
        ("migrate", {"pfn": 0}),
    ),
    ops(("exit", {"mm": 0})),
]
WINDOW = [("T0", "unmap_and_move:move_to_new_page", "T1")]


def test_migrate_no_anon_vma_ref_walks_a_freed_anon_vma() -> None:
    _, k = assert_race("migrate_no_anon_vma_ref", NOREF, WINDOW, "use_after_free")
    # Fixed: the reference kept the anon_vma until migration dropped it, then it was freed.
    assert not live_anon_vmas(k) and len(k.free_list) == k.config.nr_frames


# 76545066c852 "mm: extend KSM refcounts to the anon_vma root": migration holds the child's
# anon_vma B; the child exits (B survives: referenced), the parent exits (the root A has no chain
# left and, unpinned, is freed); B's lock lives in A.
ROOT = [
    ops(
        ("mmap", {"mm": 0, "addr": 0, "npages": 1}),
        ("write", {"mm": 0, "addr": 0}),
        ("fork", {"mm": 0}),
        ("write", {"mm": 3, "addr": 0}),
        ("migrate", {"pfn": 1}),
    ),
    ops(("exit", {"mm": 3}), ("exit", {"mm": 0})),
]


def test_anon_vma_root_not_pinned_uses_the_freed_roots_lock() -> None:
    _, k = assert_race("anon_vma_root_not_pinned", ROOT, WINDOW, "use_after_free")
    assert not live_anon_vmas(k) and len(k.free_list) == k.config.nr_frames


@pytest.mark.parametrize(
    ("bug", "tasks", "triggers"),
    [
        ("vma_adjust_no_anon_vma_lock", SEED002, SEED002_SWITCHES[:1]),
        ("anon_vma_lock_not_root", SEED003, SEED002_SWITCHES[:1]),
        ("migrate_no_anon_vma_ref", NOREF, WINDOW),
        ("anon_vma_root_not_pinned", ROOT, WINDOW),
    ],
)
def test_one_preemption_suffices(bug: str, tasks: list[list[OpCall]], triggers: Any) -> None:
    """With every check on, each race needs a single preemption (the mails draw one or two)."""
    src = SwitchAt(triggers)
    outcome, _ = run([bug], tasks, src)
    assert outcome.kind == "violation"
    assert len(src.preemptions()) == 1 <= (BUGS[bug].mail_preemptions or 1)
