"""Tests of the engine itself: tiny programs written here, run under every schedule source.

Each test would fail if the checker it exercises were removed (deadlock detection, lockdep,
preemption, exhaustive enumeration, BKL release on sleep, determinism).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from vmfuzz import (
    LockDep,
    Mutex,
    RWSemaphore,
    ScheduleDiverged,
    Scheduler,
    Spinlock,
    StepBudgetExceeded,
    Violation,
)
from vmfuzz.schedules import (
    PCT,
    NonPreemptive,
    PreemptionList,
    RandomWalk,
    Replay,
    Stall,
    explore,
)


# --------------------------------------------------------------------------- tiny programs
def abba(sched: Scheduler, first: Mutex, second: Mutex, name: str) -> Iterator[object]:
    yield f"{name}:start"
    yield sched.mutex_lock(first)
    yield f"{name}:between"
    yield sched.mutex_lock(second)
    sched.mutex_unlock(second)
    sched.mutex_unlock(first)


def make_abba(source: object, lockdep: LockDep | None = None) -> Scheduler:
    sched = Scheduler(source, lockdep=lockdep)  # type: ignore[arg-type]
    a, b = Mutex("A"), Mutex("B")
    sched.spawn(abba(sched, a, b, "ab"), "T0")
    sched.spawn(abba(sched, b, a, "ba"), "T1")
    return sched


class Counter:
    value = 0


def incr(sched: Scheduler, c: Counter) -> Iterator[object]:
    """counter++ done as load / store with a window between (a lost-update race)."""
    yield "incr:load"
    v = c.value
    yield "incr:store"
    c.value = v + 1


def make_lost_update(source: object) -> tuple[Scheduler, Counter]:
    c = Counter()
    sched = Scheduler(source)  # type: ignore[arg-type]
    sched.spawn(incr(sched, c))
    sched.spawn(incr(sched, c))

    def check(s: Scheduler) -> None:
        if s.finished and c.value != 2:
            raise Violation("lost_update", f"counter is {c.value}, expected 2")

    sched.checkers.append(check)
    return sched, c


def locked(sched: Scheduler, m: Mutex, name: str, n: int) -> Iterator[object]:
    """Take ``m``, run ``n`` steps holding it, let it go."""
    yield sched.mutex_lock(m)
    for i in range(n):
        yield f"{name}:{i}"
    sched.mutex_unlock(m)


def steps(name: str, n: int) -> Iterator[object]:
    for i in range(n - 1):
        yield f"{name}:{i}"


# --------------------------------------------------------------------------- ABBA deadlock
def test_abba_is_clean_without_preemption() -> None:
    assert make_abba(NonPreemptive()).run_to_outcome().kind == "clean"


def test_abba_deadlock_found_by_preemption_list() -> None:
    found = []
    for gap in range(6):
        out = make_abba(PreemptionList([(gap, 0)])).run_to_outcome()
        if out.kind == "violation":
            assert out.check == "deadlock"
            assert "T0" in out.violation.message and "T1" in out.violation.message
            found.append(gap)
    assert found, "no single preemption produced the ABBA deadlock"


def test_abba_deadlock_found_by_pct() -> None:
    hits = [
        seed
        for seed in range(40)
        if make_abba(PCT(seed, depth=2, k=8)).run_to_outcome().check == "deadlock"
    ]
    assert hits, "PCT never found the ABBA deadlock in 40 seeds"


def test_deadlock_reported_while_other_tasks_still_run() -> None:
    sched = make_abba(PreemptionList([(2, 0)]))
    bystander = sched.spawn(steps("bystander", 1000), "T2")
    out = sched.run_to_outcome()
    assert out.check == "deadlock"
    assert "wait-for cycle" in out.violation.message
    assert not bystander.done  # reported as the cycle formed, not when everything stopped


# --------------------------------------------------------------------------- lockdep
def test_lockdep_reports_inversion_from_two_clean_runs() -> None:
    dep = LockDep()
    a, b = Mutex("A", "classA"), Mutex("B", "classB")
    s1 = Scheduler(lockdep=dep)
    s1.spawn(abba(s1, a, b, "ab"), "T0")
    assert s1.run_to_outcome().kind == "clean"
    s2 = Scheduler(lockdep=dep)
    s2.spawn(abba(s2, b, a, "ba"), "T1")
    out = s2.run_to_outcome()
    assert out.check == "lock_order_inversion"
    msg = out.violation.message
    assert "classA" in msg and "classB" in msg
    assert "T0" in msg and "T1" in msg  # both witness chains


def test_no_lockdep_no_inversion_report() -> None:
    a, b = Mutex("A", "classA"), Mutex("B", "classB")
    for first, second in ((a, b), (b, a)):
        s = Scheduler()
        s.spawn(abba(s, first, second, "x"))
        assert s.run_to_outcome().kind == "clean"


# --------------------------------------------------------------------------- lost update
def test_lost_update_needs_a_preemption() -> None:
    assert make_lost_update(NonPreemptive())[0].run_to_outcome().kind == "clean"
    found = [
        g for g in range(4)
        if make_lost_update(PreemptionList([(g, 0)]))[0].run_to_outcome().check == "lost_update"
    ]
    assert found


def test_stall_holds_one_task_after_its_kth_step_while_the_others_run() -> None:
    """T1 runs 2 steps (to incr:load, then the load itself), is held while T0 runs to its
    end, then stores: the lost update.  Held before its load (1 step) or after its store
    (3), nothing is lost."""
    found = {}
    for k in (1, 2, 3):
        sched, _c = make_lost_update(Stall("T1", [], 0, k))
        out = sched.run_to_outcome()
        found[k] = out.check
        order = [s.task for s in sched.trace]
        if k == 2:
            assert order == ["T1", "T1", "T0", "T0", "T0", "T1"]
    assert found == {1: None, 2: "lost_update", 3: None}


def test_stall_replays_the_other_tasks_decisions_by_name() -> None:
    """The held task's steps do not shift the others' recorded decisions: three tasks, T2
    held after one step, T0 and T1 alternate as the list of names says, then (past it) the
    default policy keeps T0 to its end; T2 goes on when nobody else can run."""
    sched = Scheduler(Stall("T2", ["T1", "T0", "T1", "T0"], 0, 1))
    for name in ("a", "b", "c"):
        sched.spawn(steps(name, 3))
    assert sched.run_to_outcome().kind == "clean"
    assert [s.task for s in sched.trace] == ["T2", "T1", "T0", "T1", "T0", "T0", "T1", "T2",
                                             "T2"]


def test_stall_pauses_the_held_task_inside_its_own_steps() -> None:
    """A pause is a second preemption in the held task's own path: T2 runs from step 0, is
    held again from step 1 for 3 steps (T0 and T1 follow their names meanwhile), then runs
    ahead of them to its end; with no length it waits until nobody else can run (past
    the names, the default policy keeps T1, then T0, to its end)."""
    def order(pause: tuple[int, int | None]) -> list[str]:
        sched = Scheduler(Stall("T2", ["T1", "T0", "T1"], 0, 99, pause))
        for name in ("a", "b", "c"):
            sched.spawn(steps(name, 3))
        assert sched.run_to_outcome().kind == "clean"
        return [s.task for s in sched.trace]

    assert order((1, 3)) == ["T2", "T1", "T0", "T1", "T2", "T2", "T0", "T0", "T1"]
    assert order((1, None)) == ["T2", "T1", "T0", "T1", "T1", "T0", "T0", "T2", "T2"]


def test_stall_holds_a_task_still_while_the_stalled_one_waits() -> None:
    """A hold keeps a task inside its path while the stalled task waits for a lock a third
    task holds: T2 (stalled from step 2) waits for M, which T0 took; the recorded names
    would run T1 on meanwhile, the hold runs T0 until it lets M go, then T2, then T1."""
    def order(hold: str | None) -> list[str]:
        m = Mutex("M")
        sched = Scheduler(Stall("T2", ["T0", "T0", "T1", "T1", "T1", "T0"], 2, 99, hold=hold))
        sched.spawn(locked(sched, m, "a", 3))
        sched.spawn(steps("b", 4))
        sched.spawn(locked(sched, m, "c", 1))
        assert sched.run_to_outcome().kind == "clean"
        return [s.task for s in sched.trace]

    assert order(None) == ["T0", "T0", "T2", "T1", "T1", "T1", "T0", "T0", "T0", "T2", "T2",
                           "T1"]
    assert order("T1") == ["T0", "T0", "T2", "T0", "T0", "T0", "T2", "T2", "T1", "T1", "T1",
                           "T1"]


def test_lost_update_exhaustive_bounds() -> None:
    def run_one(src: object) -> str:
        return make_lost_update(src)[0].run_to_outcome().kind

    assert set(explore(run_one, bound=0)) == {"clean"}
    assert "violation" in set(explore(run_one, bound=1))


# --------------------------------------------------------------------------- exhaustive
@pytest.mark.parametrize(("bound", "expected"), [(0, 2), (1, 6), (2, 14), (9, 20)])
def test_exhaustive_counts_interleavings_exactly(bound: int, expected: int) -> None:
    # Two tasks of 3 steps each (2 yields + exit).  An interleaving with m alternating blocks
    # has m-2 preemptions (the last switch happens after a task finished, so it is free).
    # Starting with A: m=2: 1, m=3: 2, m=4: 4, m=5: 2, m=6: 1 (compositions of 3 into parts);
    # doubled for starting with B.  Bound 0: 2, bound 1: 6, bound 2: 14, unbounded: C(6,3)=20.
    def run_one(src: object) -> str:
        sched = Scheduler(src)  # type: ignore[arg-type]
        sched.spawn(steps("a", 3), "A")
        sched.spawn(steps("b", 3), "B")
        sched.run()
        return " ".join(s.task for s in sched.trace)

    runs = list(explore(run_one, bound=bound))
    assert len(runs) == expected
    assert len(set(runs)) == expected


# --------------------------------------------------------------------------- BKL
def test_bkl_dropped_when_holder_sleeps_and_retaken_on_wake() -> None:
    sched = Scheduler()
    m = Mutex("sem")

    def sleeper() -> Iterator[object]:
        yield sched.lock_kernel()
        yield sched.lock_kernel()  # recursive: depth 2
        yield "sleeper:before_down"
        yield sched.mutex_lock(m)  # m is held by T1: sleeps, BKL released
        assert sched.bkl.owner is sched.current and sched.bkl.depth == 2
        sched.mutex_unlock(m)
        sched.unlock_kernel()
        sched.unlock_kernel()

    def holder() -> Iterator[object]:
        yield sched.mutex_lock(m)
        yield "holder:has_sem"
        yield sched.lock_kernel()  # only possible because the sleeper dropped the BKL
        yield "holder:has_bkl"
        sched.unlock_kernel()
        sched.mutex_unlock(m)

    sched.spawn(holder(), "T1")  # tid 0 runs first and takes m
    sched.spawn(sleeper(), "T0")
    out_src = PreemptionList([(1, 0)])  # switch to the sleeper once the holder has m
    sched.source = out_src
    out = sched.run_to_outcome()
    assert out.kind == "clean", out.violation
    events = [(s.task, s.event) for s in sched.trace]
    assert ("T0", "blocks on sem; drops BKL") in events
    assert any(t == "T1" and e == "takes kernel_flag" for t, e in events)
    assert any(t == "T0" and "retakes BKL" in e for t, e in events)


def test_spinlock_waiter_keeps_bkl() -> None:
    sched = Scheduler(PreemptionList([(1, 0)]))
    spin = Spinlock("s")

    def a() -> Iterator[object]:
        yield sched.spin_lock(spin)
        yield "a:locked"
        yield sched.lock_kernel()  # BKL held by b, which spins on s: a real deadlock
        sched.unlock_kernel()
        sched.spin_unlock(spin)

    def b() -> Iterator[object]:
        yield sched.lock_kernel()
        yield sched.spin_lock(spin)
        sched.spin_unlock(spin)
        sched.unlock_kernel()

    sched.spawn(a(), "A")
    sched.spawn(b(), "B")
    assert sched.run_to_outcome().check == "deadlock"


# --------------------------------------------------------------------------- other checks
def test_sleep_while_holding_spinlock() -> None:
    sched = Scheduler()
    spin, m = Spinlock("page_table_lock"), Mutex("sem")

    def bad() -> Iterator[object]:
        yield sched.spin_lock(spin)
        yield sched.mutex_lock(m)

    sched.spawn(bad())
    out = sched.run_to_outcome()
    assert out.check == "sleep_in_atomic"
    assert "page_table_lock" in out.violation.message


def test_unlock_not_held_and_assert_held() -> None:
    sched = Scheduler()
    spin = Spinlock("l")

    def bad_unlock() -> Iterator[object]:
        yield "x"
        sched.spin_unlock(spin)

    sched.spawn(bad_unlock())
    assert sched.run_to_outcome().check == "unlock_not_held"

    sched = Scheduler()

    def needs_lock() -> Iterator[object]:
        yield "y"
        sched.assert_held(spin)

    sched.spawn(needs_lock())
    out = sched.run_to_outcome()
    assert out.check == "lock_not_held"
    assert out.violation.label == "y" and out.violation.task == "T0"


def test_lock_held_at_exit() -> None:
    sched = Scheduler()
    spin = Spinlock("l")

    def leak() -> Iterator[object]:
        yield sched.spin_lock(spin)

    sched.spawn(leak())
    assert sched.run_to_outcome().check == "lock_held_at_exit"


def test_rwsem_recursive_read_deadlocks_behind_queued_writer() -> None:
    sched = Scheduler(PreemptionList([(1, 0)]))
    sem = RWSemaphore("mm->mmap_sem", "mmap_sem")

    def reader() -> Iterator[object]:
        yield sched.down_read(sem)
        yield "reader:holds"
        yield sched.down_read(sem)  # recursive read: blocks behind the queued writer
        sched.up_read(sem)
        sched.up_read(sem)

    def writer() -> Iterator[object]:
        yield sched.down_write(sem)
        sched.up_write(sem)

    sched.spawn(reader(), "R")
    sched.spawn(writer(), "W")
    out = sched.run_to_outcome()
    assert out.check == "deadlock", out


def test_livelock_detected() -> None:
    """The retry count alone (no shared-state version, so no cycle check): two tasks
    alternating strictly retry in lock step until both pass ``livelock_retries``."""
    sched = Scheduler(_RoundRobin(), livelock_retries=5)
    _polite_pair(sched, [0])
    sched.state_version = None
    out = sched.run_to_outcome()
    assert out.check == "livelock"
    assert "retried 5+ times" in out.violation.message


class _RoundRobin:
    def choose(self, runnable: list, default: int, sched: Scheduler) -> int:
        cur = sched.current
        others = [i for i, t in enumerate(runnable) if t is not cur]
        return others[0] if others else default


def test_step_budget_is_its_own_outcome() -> None:
    sched = Scheduler(max_steps=50)
    sched.spawn(steps("long", 1000))
    assert sched.run_to_outcome().kind == "budget"
    with pytest.raises(StepBudgetExceeded):
        sched.step()


# --------------------------------------------------------------------------- replay
def test_replay_reproduces_trace_and_detects_divergence() -> None:
    s1 = make_abba(RandomWalk(7))
    o1 = s1.run_to_outcome()
    s2 = make_abba(Replay(s1.decisions))
    o2 = s2.run_to_outcome()
    assert o1.trace_sha256 == o2.trace_sha256
    assert o1.kind == o2.kind

    sched = Scheduler(Replay([5]))
    sched.spawn(steps("a", 3))
    sched.spawn(steps("b", 3))
    with pytest.raises(ScheduleDiverged):
        sched.run()


def test_preemption_list_offsets_wrap() -> None:
    outs = {
        make_abba(PreemptionList([(1, off)])).run_to_outcome().trace_sha256 for off in (0, 1, 5)
    }
    assert len(outs) == 1  # with two tasks every offset names the one other task


# --------------------------------------------------------------------------- determinism
_PROGRAM = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {testdir!r})
    from test_engine import make_abba, make_lost_update
    from vmfuzz.schedules import PCT
    hashes = []
    for seed in range(10):
        hashes.append(make_abba(PCT(seed, 3, 20)).run_to_outcome().trace_sha256)
        hashes.append(make_lost_update(PCT(seed, 2, 10))[0].run_to_outcome().trace_sha256)
    print(",".join(hashes))
    """
)


def test_same_program_same_trace_in_other_processes() -> None:
    code = _PROGRAM.format(testdir=os.path.dirname(__file__))
    outs = []
    for hashseed in ("0", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=hashseed)
        res = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outs.append(res.stdout.strip())
    assert outs[0] == outs[1]
    assert len(set(outs[0].split(","))) > 2  # the seeds really produce different schedules


def _polite_pair(sched: Scheduler, written: list[int]) -> None:
    """Two tasks taking a and b in opposite orders with trylock-and-back-off (seed 003's
    scheme in miniature); ``written`` is the shared state's version."""
    a, b = Spinlock("a"), Spinlock("b")

    def polite(first: Spinlock, second: Spinlock) -> Iterator[object]:
        while True:
            yield sched.spin_lock(first)
            yield "polite:try_second"
            if sched.trylock(second):
                break
            yield "polite:backoff"
            sched.spin_unlock(first)
            yield sched.retry("polite:retry")
        written[0] += 1
        sched.spin_unlock(second)
        sched.spin_unlock(first)

    sched.state_version = lambda: written[0]
    sched.spawn(polite(a, b))
    sched.spawn(polite(b, a))


def test_livelock_found_as_a_cycle_after_two_rounds() -> None:
    """With the shared state's version known, one repeated round is enough: no need to wait
    for ``livelock_retries`` rounds."""
    sched = Scheduler(_RoundRobin(), livelock_retries=1000)
    _polite_pair(sched, [0])
    out = sched.run_to_outcome()
    assert out.check == "livelock", out
    assert "came back to the same state" in out.violation.message
    assert max(t.retries for t in sched.tasks) <= 3


def test_no_cycle_when_the_state_changes_between_rounds() -> None:
    """The same lock-step rounds, but something is written each round (progress somewhere):
    not a cycle, so only the retry count can report it."""
    written = [0]
    sched = Scheduler(_RoundRobin(), livelock_retries=1000, max_steps=400)
    _polite_pair(sched, written)
    real = sched.state_version
    ticks = iter(range(10**6))
    sched.state_version = lambda: real() + next(ticks)  # a new version at every look
    out = sched.run_to_outcome()
    assert out.kind == "budget", out


@pytest.mark.long  # 7-10 s of CPU: out of the default run
def test_echo_repeats_a_retry_round() -> None:
    """A random walk alone rarely keeps the two back-off loops colliding; Echo, which repeats
    the interleaving of the last round once a task has retried twice, finds the livelock in
    more seeds (the engine's plain retry count, no cycle check, so that only the schedules
    differ)."""
    from vmfuzz.schedules import Echo

    def livelocks(make: object) -> int:
        n = 0
        for seed in range(200):
            sched = Scheduler(make(seed), livelock_retries=6)  # type: ignore[operator]
            _polite_pair(sched, [0])
            sched.state_version = None
            n += sched.run_to_outcome().check == "livelock"
        return n

    plain = livelocks(RandomWalk)
    echoed = livelocks(lambda s: Echo(RandomWalk(s)))
    assert echoed > 2 * plain + 5, (plain, echoed)


def test_the_first_collision_names_its_tasks() -> None:
    """``collided``: the task of the first retry-loop round, then the holder of the lock its
    failed trylock wanted (the fuzzer cuts a program down to these: see
    ``strategies._pool.colliders``); empty when nothing backed off."""
    sched = Scheduler(_RoundRobin(), livelock_retries=1000)
    _polite_pair(sched, [0])
    sched.run_to_outcome()
    assert sched.retried
    assert sched.collided in (("T0", "T1"), ("T1", "T0"))
    quiet = Scheduler(NonPreemptive())
    _polite_pair(quiet, [0])
    quiet.run_to_outcome()
    assert not quiet.retried and quiet.collided == ()
