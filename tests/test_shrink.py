"""The post-Hypothesis shrink (vmfuzz.shrink): a failure with extra tasks, operations and
context switches comes out the size of the mail's drawing (2 tasks, 1 preemption), the same
check still fails, and the passes stay within their budget."""

from __future__ import annotations

import time
from pathlib import Path

import attrs
import pytest

from vmfuzz.campaign import size_of_failure
from vmfuzz.case import Case, OpCall, Run, Schedule, TaskSpec, execute
from vmfuzz.corpus import load
from vmfuzz.failure import Failure, concurrent_tasks
from vmfuzz.kernel import KernelConfig
from vmfuzz.schedules import PreemptionList, Replay, explore
from vmfuzz.shrink import (
    PASSES,
    Anchored,
    Budget,
    PassStats,
    ShrinkResult,
    anchors_of,
    delays,
    grown_programs,
    search,
    serialized,
    shrink,
    smaller_programs,
    split_programs,
    to_preemptions,
    without,
)
from vmfuzz.shrink._passes import Shrinking

ROOT = Path(__file__).resolve().parent.parent
BUGS = ROOT / "corpus" / "bugs"
DATA = Path(__file__).resolve().parent / "data"  # failures as campaigns found them
# The shrink's cap in CPU seconds, a safety net only: the run budgets decide what a test shrinks
# (a loaded machine must not cut a shrink short and change its result).
DEADLINE = 600.0
NOISE = (OpCall("read", {"mm": 1, "addr": 5}), OpCall("write", {"mm": 2, "addr": 3}))


def _failing(case: Case, check: str, preemptions: int, tasks: int) -> Run:
    """The first schedule (bounded exhaustive order, deterministic) under which ``case``
    fails ``check`` with at least ``preemptions`` preemptions and ``tasks`` tasks in flight."""
    for run in explore(lambda s: execute(case, s), bound=preemptions, limit=20_000):
        if (
            run.outcome.check == check
            and run.sched.preemptions >= preemptions
            and concurrent_tasks(run.sched.trace) >= tasks
        ):
            return run
    raise AssertionError(f"no schedule fails {check} with {preemptions} preemptions")


def _result(case: Case, run: Run) -> Failure:
    """A failure as Hypothesis would leave it: the case with its recorded decisions."""
    assert run.outcome.violation is not None
    case = attrs.evolve(case, schedule=Schedule("decisions", decisions=tuple(run.decisions)))
    return Failure(
        case, run.outcome.violation, run.outcome.steps, run.sched.preemptions,
        list(run.sched.trace),
    )


def _size(failure: Failure) -> dict[str, int]:
    """The size a campaign reports (CampaignResult.shrunk): tasks in flight, tasks, operations,
    steps, preemptions."""
    return size_of_failure(failure)


def _shrink(failure: Failure, runs: int = 20_000) -> ShrinkResult:
    return shrink(failure, Budget(runs, time.process_time() + DEADLINE))


def _replays(result: ShrinkResult, check: str) -> None:
    """The shrunk case replays on its own to the same check, trace and preemption count."""
    assert result.case is not None and result.failure is not None
    run = execute(result.case, Replay(result.case.schedule.decisions))
    assert run.outcome.check == check
    assert run.sched.preemptions == result.preemptions
    assert [s.line() for s in run.sched.trace] == [s.line() for s in result.failure.trace]


def test_race_spread_over_three_tasks_shrinks_to_two_tasks_one_preemption() -> None:
    """seed 000's race (swap_out's driver ->swapout() sleeps, munmap frees the vma), with its
    setup, racing op and victim spread over three tasks plus noise operations, under a
    schedule with three preemptions: operations have to move between tasks (an exchange),
    not just disappear."""
    cc = load(BUGS / "swapout_vma_after_unlock.json")
    t0, t1 = cc.case.tasks  # T0: mmap_driver, write, swap_out; T1: munmap
    case = attrs.evolve(cc.case, tasks=(
        TaskSpec("T0", (t0.ops[0], NOISE[0])),
        TaskSpec("T1", (NOISE[1], *t1.ops)),
        TaskSpec("T2", t0.ops[1:]),
    ))
    failure = _result(case, _failing(case, "use_after_free", 3, 3))
    before = _size(failure)
    assert before is not None and before["tasks"] == 3 and before["preemptions"] == 3
    result = _shrink(failure)
    shrunk = _size(result.failure)
    assert shrunk is not None
    assert shrunk["tasks"] == 2 and shrunk["threads"] == 2, shrunk
    assert shrunk["preemptions"] == 1, shrunk
    assert shrunk["ops"] <= 3, shrunk
    assert result.minimal_preemptions is True
    assert result.case is not None
    ops = sorted(c.op for t in result.case.tasks for c in t.ops)
    assert "read" not in ops and "write" not in ops  # the noise is gone (write is not needed)
    _replays(result, "use_after_free")


@pytest.mark.parametrize(
    "name", ["migrate_no_anon_vma_ref", "read_swap_cache_async_unlocked_check"]
)
def test_extra_task_and_preemption_are_shrunk_away(name: str) -> None:
    """A committed two-task, one-preemption bug case with a third (noise) task in flight and
    one preemption too many shrinks back to two tasks and one preemption."""
    cc = load(BUGS / f"{name}.json")
    first, *rest = cc.case.tasks
    case = attrs.evolve(cc.case, tasks=(first, TaskSpec("TN", NOISE), *rest))
    check = cc.expected
    result = _shrink(_result(case, _failing(case, check, 2, 3)))
    shrunk = _size(result.failure)
    assert shrunk is not None
    assert (shrunk["tasks"], shrunk["threads"], shrunk["preemptions"]) == (2, 2, 1), shrunk
    assert result.case is not None
    assert not any(op in NOISE for t in result.case.tasks for op in t.ops)  # noise is gone
    assert result.failure.violation.check == check
    _replays(result, check)


def test_shrink_respects_its_run_budget() -> None:
    cc = load(BUGS / "swapout_vma_after_unlock.json")
    first, *rest = cc.case.tasks
    case = attrs.evolve(cc.case, tasks=(first, TaskSpec("TN", NOISE), *rest))
    failure = _result(case, _failing(case, "use_after_free", 2, 3))
    budget = Budget(3, time.process_time() + DEADLINE)
    result = shrink(failure, budget, verify_minimal=False)
    assert budget.used == 3
    assert result.failure.violation.check == "use_after_free"
    _replays(result, "use_after_free")


def test_delay_bounded_search_counts() -> None:
    """Delay bounding on a two-task program: the default schedule, then one departure at each
    decision point (n - 1 = 1 alternative each); each departure is at most one preemption."""
    cc = load(BUGS / "swapout_vma_after_unlock.json")
    case = cc.case
    budget = Budget(10_000, time.process_time() + DEADLINE)
    default = execute(case, PreemptionList())
    decisions = len(default.sched.decisions)
    runs = list(delays(case, 1, 10_000, budget))
    assert len(runs) == 1 + decisions
    assert runs[0].sched.decisions == default.sched.decisions
    assert runs[0].sched.preemptions == 0
    assert all(r.sched.preemptions <= 1 for r in runs)
    assert any(r.sched.preemptions == 1 for r in runs)
    assert len({r.outcome.trace_sha256 for r in runs}) == len(runs)  # all distinct
    assert budget.used == len(runs)
    limited = list(delays(case, 1, 4, budget))
    assert len(limited) == 4


def test_preemption_list_round_trip() -> None:
    """to_preemptions gives the sparse list that replays the recorded decisions exactly."""
    cc = load(BUGS / "swapout_vma_after_unlock.json")
    run = execute(cc.case, cc.source())
    pre = to_preemptions(cc.case, tuple(run.decisions))
    assert len(pre) == run.sched.preemptions == 1
    again = execute(cc.case, PreemptionList(pre))
    assert again.decisions == run.decisions
    assert again.outcome.trace_sha256 == run.outcome.trace_sha256


def test_smaller_programs_merge_move_and_exchange() -> None:
    a, b, c, d = (OpCall(x, {}) for x in "abcd")
    case = Case(
        load(BUGS / "swapout_vma_after_unlock.json").case.config,
        (TaskSpec("T0", (a, b)), TaskSpec("T1", (c,), start=5), TaskSpec("T2", (d,))),
    )
    progs = [tuple((t.name, "".join(o.op for o in t.ops), t.start) for t in p.tasks)
             for p in smaller_programs(case)]
    assert (("T0", "ab", 0), ("T2", "d", 0)) in progs  # a task dropped
    assert (("T0", "abc", 0), ("T2", "d", 0)) in progs  # T1 appended to T0
    assert (("T1", "cab", 0), ("T2", "d", 0)) in progs  # T0 appended to T1, earliest start
    assert (("T0", "a", 0), ("T1", "c", 5), ("T2", "d", 0)) in progs  # an op dropped
    assert (("T0", "b", 0), ("T1", "ca", 5), ("T2", "d", 0)) in progs  # first op moved
    assert (("T0", "a", 0), ("T1", "bc", 5), ("T2", "d", 0)) in progs  # last op moved
    assert (("T0", "ad", 0), ("T1", "c", 5), ("T2", "b", 0)) in progs  # last ops exchanged
    assert (("T2", "d", 0), ("T0", "ab", 0), ("T1", "c", 5)) in progs  # T2 runs first
    # Every candidate is no bigger: no more tasks and no more operations.
    for p in smaller_programs(case):
        assert len(p.tasks) <= 3 and sum(len(t.ops) for t in p.tasks) <= 4


def test_random_walk_failure_with_many_switches_shrinks_to_one() -> None:
    """A random walk (or PCT) failure switches tasks tens of times, and one switch makes the
    race: ddmin over the switches gets there in few runs, where dropping them one at a time
    ran out of budget (a migrate_no_anon_vma_ref failure shrank to 142 preemptions)."""
    from vmfuzz.schedules import RandomWalk

    case = load(BUGS / "migrate_no_anon_vma_ref.json").case
    noise = tuple(OpCall("read", {"mm": 1, "addr": a}) for a in range(6))
    case = attrs.evolve(case, tasks=(*case.tasks, TaskSpec("T9", noise)))
    run = None
    for seed in range(1500):
        r = execute(case, RandomWalk(seed))
        if r.outcome.check == "use_after_free" and r.sched.preemptions >= 10:
            run = r
            break
    assert run is not None
    budget = Budget(300, time.process_time() + DEADLINE)
    result = shrink(_result(case, run), budget, verify_minimal=False)
    assert result.preemptions <= 1, result.preemptions
    assert budget.used < 300
    _replays(result, "use_after_free")


def test_without_keeps_later_switches_in_place() -> None:
    pre = [(3, 0), (0, 1), (5, 0), (2, 0)]
    assert without(pre, 1, 3) == [(3, 0), (2 + (0 + 1) + (5 + 1), 0)]
    assert without(pre, 3, 4) == [(3, 0), (0, 1), (5, 0)]
    assert without(pre, 0, 4) == []


@pytest.mark.parametrize(
    "name", ["migrate_no_anon_vma_ref", "swapout_vma_after_unlock", "unuse_process_no_mmap_sem"]
)
def test_label_anchored_switches_survive_deleting_a_task(name: str) -> None:
    """A noise task that runs first and is preempted: deleting it shifts every decision, so
    the gap-counted preemption list no longer hits the race; the same switches anchored at
    labels ("when T0 stands at migrate_page:copy the first time, run T1") still do."""
    from vmfuzz.schedules import PreemptionList

    cc = load(BUGS / f"{name}.json")
    noise = (*NOISE, OpCall("read", {"mm": 2, "addr": 1}))
    case = attrs.evolve(cc.case, tasks=(TaskSpec("TN", noise), *cc.case.tasks))
    decisions = tuple(_failing(case, cc.expected, 2, 3).decisions)
    smaller = attrs.evolve(case, tasks=case.tasks[1:])
    hint = to_preemptions(case, decisions)
    anchors = anchors_of(case, decisions)
    assert any(a[0] == "T0" and a[3] == "T1" for a in anchors), anchors
    assert execute(smaller, PreemptionList(hint)).outcome.check is None
    assert execute(smaller, Anchored(anchors)).outcome.check == cc.expected


def test_world_features_the_race_does_not_need_are_dropped() -> None:
    """The same program in a world with fewer features is a smaller case (a feature counts as
    an operation): seed 004's reserved-vma race, run in a world with swap and a split vma it
    does not need, comes out in the bare world."""
    cc = load(BUGS / "try_to_unmap_ignores_reserved.json")
    config = attrs.evolve(cc.case.config, world=frozenset({"split", "swap_sync"}))
    case = attrs.evolve(cc.case, config=config)
    failure = _result(case, _failing(case, "reserved_pte_cleared", 0, 1))
    assert failure.case is not None and failure.case.config.world == {"split", "swap_sync"}
    result = _shrink(failure)
    assert result.case.config.world == frozenset()
    assert result.failure.violation.check == "reserved_pte_cleared"
    _replays(result, "reserved_pte_cleared")


def test_an_operation_is_added_when_it_saves_a_context_switch() -> None:
    """Deleting never reaches a program with an operation more: here kswapd racing swapoff
    needs two switches to cache two pages for one entry, while with one operation added (an
    mlock that faults the page in again) one switch does; the shrinker adds it (a failure's
    size is tasks in flight, then switches, then operations)."""
    config = KernelConfig(bugs=["read_swap_cache_async_unlocked_check"], world={"resident"})
    case = Case(config, (
        TaskSpec("T0", (OpCall("kswapd", {"count": 1}),)),
        TaskSpec("T1", (OpCall("swapoff", {}),)),
    ))
    failure = _result(case, _failing(case, "swap_cache_unique", 2, 2))
    assert failure.preemptions == 2
    assert search(case, "swap_cache_unique", 1, 5_000)[1]  # exhausted: none with 1
    result = _shrink(failure)
    shrunk = _size(result.failure)
    assert shrunk is not None
    assert (shrunk["tasks"], shrunk["preemptions"]) == (2, 1)
    assert shrunk["ops"] == 3
    _replays(result, "swap_cache_unique")


def _shrunk_from_data(
    name: str, check: str, size: tuple[int, int], runs: int = 6000
) -> ShrinkResult:
    """The failure saved in tests/data/``name`` (it replays to ``check`` with ``size`` =
    (tasks in flight, preemptions)), after the post-Hypothesis shrink (``runs`` runs)."""
    case = load(DATA / name).case
    run = execute(case, Replay(case.schedule.decisions))
    assert run.outcome.check == check
    assert (concurrent_tasks(run.sched.trace), run.sched.preemptions) == size
    return shrink(_result(case, run), Budget(runs, time.process_time() + DEADLINE),
                  verify_minimal=False)


@pytest.mark.long
@pytest.mark.parametrize(
    ("name", "size"),
    [
        # campaign seed 8: four tasks, 13 switches.  Deleting one task at a time moves
        # every later switch and loses the race (the shrinker was stuck there for its whole
        # budget), while the pair (munmap, swapoff), each on a task of its own, fails with
        # two switches.
        ("unuse_process_four_tasks_13_switches.json", (4, 13)),
        # campaign seed 2: four tasks, 27 operations (world features counted), 48
        # switches.  The two-operation search ran again after every deleted operation, from
        # its first pairs, with a third of what was left each time: 6,000 runs went one
        # operation per round and it stayed at 4 tasks / 24 switches.  Now it runs again
        # only for operations it has not tried.
        ("unuse_process_four_tasks_27_operations.json", (4, 48)),
    ],
)
def test_a_race_inside_a_big_failure_is_found_between_two_of_its_operations(
    name: str, size: tuple[int, int]
) -> None:
    """seed 004's swapoff-vs-munmap race as campaigns found it, with bystander tasks."""
    result = _shrunk_from_data(name, "use_after_free", size)
    shrunk = _size(result.failure)
    assert shrunk is not None and shrunk["tasks"] == 2 and shrunk["preemptions"] <= 2, shrunk
    assert result.failure.violation.check == "use_after_free"
    _replays(result, "use_after_free")


@pytest.mark.long
def test_a_world_feature_more_saves_a_switch() -> None:
    """swapoff against an mmap whose vma merge frees the vma swapoff's walk goes to next: in
    a world of one vma per process it needs 2 switches; with the boot vma split in two
    (world feature ``split``, setup done at boot) 1, as seed 004 draws it.  Deletion never
    adds a feature: the near programs of the grown pass do."""
    tasks = (TaskSpec("T0", (OpCall("mmap", {"mm": 2, "addr": 1, "npages": 2}),)),
             TaskSpec("T1", (OpCall("swapoff", {}),)))
    config = KernelConfig(bugs=frozenset({"unuse_process_no_mmap_sem"}),
                          world=frozenset({"swapped"}))
    case = Case(config, tasks, Schedule("none"))
    result = _shrink(_result(case, _failing(case, "use_after_free", 2, 2)), runs=6000)
    shrunk = _size(result.failure)
    assert shrunk is not None and shrunk["tasks"] == 2 and shrunk["preemptions"] == 1, shrunk
    assert result.case is not None and "split" in result.case.config.world
    _replays(result, "use_after_free")


UNUSE_ONE_PAGE = Case(
    KernelConfig(bugs=frozenset({"unuse_process_no_mmap_sem"}), world=frozenset({"swapped"})),
    (TaskSpec("T0", (OpCall("mmap", {"mm": 2, "addr": 1, "npages": 1}),)),
     TaskSpec("T1", (OpCall("swapoff", {}),))),
    Schedule("none"),
)


@pytest.mark.long
def test_two_near_moves_at_once_save_a_switch() -> None:
    """Where campaign seed 2 once stopped: ``mmap(2,1,1) || swapoff``, one vma, 2
    switches.  No single near move saves a switch (one page never merges into the second
    vma); a world feature more *and* a page more (or the mmap one page up) do."""
    check = "use_after_free"
    assert search(UNUSE_ONE_PAGE, check, 1, 3000) == (None, True)
    near, twice, _ = grown_programs(UNUSE_ONE_PAGE)
    assert not [c for c in near if search(c, check, 1, 3000)[0] is not None]
    saving = []
    for c in twice:
        run = search(c, check, 1, 3000)[0]
        if run is not None:
            assert run.sched.preemptions == 1
            saving.append((sorted(c.config.world), c.tasks[0].ops[0].describe()))
    assert saving == [(["split", "swapped"], "mmap(mm=2, addr=2, npages=1)"),
                      (["split", "swapped"], "mmap(mm=2, addr=1, npages=2)")]


@pytest.mark.long
def test_a_livelock_with_a_bystander_task_shrinks_to_the_two_tasks_of_the_mail() -> None:
    """seed 003's trylock-and-retry livelock as a campaign found it (seed 0):
    migrate ‖ driver_ioctl; mlock ‖ driver_ioctl, 3 tasks in flight, 24 switches.  Deleting
    the bystander's task moves every switch, and delay-bounded search cannot reach a retry
    loop's dozens of lock-step departures; sampled schedules (PCT, echoed random walks) of
    the smaller program find it with 2 tasks, as the mail draws it (rmap_walk ‖ vma_adjust).
    Before the sampled pass this case stayed at 3 tasks for its whole budget."""
    result = _shrunk_from_data("trylock_retry_three_tasks_24_switches.json", "livelock",
                               (3, 24))
    shrunk = _size(result.failure)
    assert shrunk is not None and shrunk["tasks"] == 2, shrunk
    assert result.failure.violation.check == "livelock"
    ops = sorted(c.op for t in result.case.tasks for c in t.ops)
    assert "migrate" in ops and "mlock" in ops, ops
    _replays(result, "livelock")


@pytest.mark.slow  # ~30 s of CPU; the moves it needs are covered by the two near-move tests
def test_the_campaign_shrink_budget_reaches_the_mails_switch_count() -> None:
    """seed 004's swapoff-vs-mmap_driver race as campaign seed 7 found it: three
    tasks in flight, 15 switches.  Its greedy path reaches a 2-task, 2-switch program early;
    the 1-switch form takes a world feature and an argument more, tried last.  With 6,000
    runs (the campaign's former budget) it stopped at 2 tasks / 2 switches; the
    campaign's budget (POST_SHRINK_RUNS) takes it to the mail's 2 tasks / 1 switch."""
    from vmfuzz.campaign import POST_SHRINK_RUNS

    result = _shrunk_from_data("unuse_process_three_tasks_15_switches.json", "use_after_free",
                               (3, 15), runs=POST_SHRINK_RUNS)
    shrunk = _size(result.failure)
    assert shrunk is not None and (shrunk["tasks"], shrunk["preemptions"]) == (2, 1), shrunk
    _replays(result, "use_after_free")


def test_a_late_start_that_costs_a_switch_is_moved_to_the_first() -> None:
    """seed 001's vm_swap_full race as a campaign found it (a partner probe, then the shrink):
    read(0,3) starting at step 4 against read(0,3); swap_out(1), 2 switches, the fewest for
    that start (the bounded search says so).  With both tasks from step 0 one switch does,
    as in the mail."""
    cc = load(DATA / "vm_swap_full_late_start_two_switches.json")
    case = cc.case
    assert sorted(t.start for t in case.tasks) == [0, 4]
    run = execute(case, Replay(case.schedule.decisions))
    failure = _result(case, run)
    assert failure.preemptions == 2 and concurrent_tasks(run.sched.trace) == 2
    check = run.outcome.check
    assert check is not None and search(case, check, 1, 3000) == (None, True)
    result = _shrink(failure)
    shrunk = _size(result.failure)
    assert shrunk is not None and (shrunk["tasks"], shrunk["preemptions"]) == (2, 1), shrunk
    assert result.case is not None and {t.start for t in result.case.tasks} == {0}
    _replays(result, check)


@pytest.mark.long
def test_the_others_serialized_next_to_the_preempted_task_leave_two_in_flight() -> None:
    """seed 001's vm_swap_full race as campaign seed 9 found it: the reader T4
    is preempted once while swapoff (T3), swapon (T1) and a reclaiming mmap (T2) run one
    after the other, and T0's mmap waits on the reader's mmap_sem, in flight to the end: 3
    tasks in flight.  Without T0, whose turn comes after swapoff's exit changes (a free
    departure the bounded search counts); T3, T1 and T2 as one task next to the reader is
    the mail's 2 tasks / 1 switch."""
    result = _shrunk_from_data("vm_swap_full_swapoff_three_tasks.json", "data_integrity", (3, 1))
    shrunk = _size(result.failure)
    assert shrunk is not None and (shrunk["tasks"], shrunk["preemptions"]) == (2, 1), shrunk
    _replays(result, "data_integrity")


def test_the_serialized_move_keeps_the_preempted_task_and_merges_the_rest_in_order() -> None:
    case = load(DATA / "vm_swap_full_swapoff_three_tasks.json").case
    run = execute(case, Replay(case.schedule.decisions))
    progs = [[(t.name, [c.op for c in t.ops]) for t in p.tasks]
             for p in serialized(case, run.sched.trace)]
    # T0 only tried to take mmap_sem (blocked): it is left out
    assert progs == [[("T4", ["read"]), ("T3", ["swapoff", "swapon", "mmap_driver"])]]


def test_two_tasks_merged_with_a_sibling_reclaim_leave_two_in_flight() -> None:
    """13ddaf26be32 (skip-swapcache swapin) as campaign seed 2 found it: the
    writer's fault (T3) and kswapd (T0) interleave, T2 reads: 3 tasks in flight, 2
    switches.  Merged, the fault then kswapd makes no ABA (the LRU scan reclaims the oldest
    page first); merged with kswapd changed for its sibling swap_out (the biggest mm, in
    address order) it does: the mail's 2 tasks / 1 switch."""
    result = _shrunk_from_data("skip_swapcache_kswapd_three_tasks.json", "data_integrity", (3, 2))
    shrunk = _size(result.failure)
    assert shrunk is not None and (shrunk["tasks"], shrunk["preemptions"]) == (2, 1), shrunk
    assert result.case is not None
    assert sorted(c.op for t in result.case.tasks for c in t.ops) == ["read", "swap_out", "write"]
    _replays(result, "data_integrity")


def _setup_in_the_munmapping_task() -> Case:
    """seed 004's consequence (the reader under page_table_lock stores the vma munmap
    detached into mmap_cache; lock_not_held off) as campaigns find it: the setup mmaps and
    write in the same task as the munmap, the swap_out scan in the other."""
    cc = load(ROOT / "corpus" / "mail" / "seed004_mmap_cache_holds_detached_vma.json")
    setup, scan, unmapper = cc.case.tasks
    ops = (setup.ops[0], *setup.ops[2:], *unmapper.ops)
    return attrs.evolve(cc.case, tasks=(TaskSpec("T0", ops), TaskSpec("T1", scan.ops)))


def test_split_programs_put_a_task_prefix_first_as_a_setup_task() -> None:
    """Each split: a prefix of one task's operations as a new task first in the list, from
    the first start, under a name no task has; the rest of the task in its place or after
    the others; shortest prefix first; no operation lost or added."""
    base = _setup_in_the_munmapping_task()
    t0, t1 = attrs.evolve(base.tasks[0], start=3), base.tasks[1]
    case = attrs.evolve(base, tasks=(t0, t1))
    progs = split_programs(case)
    assert len(progs) == 2 * (len(t0.ops) - 1)
    calls = sorted(c.describe() for t in case.tasks for c in t.ops)
    for m, (in_place, after) in enumerate(zip(progs[::2], progs[1::2], strict=True), start=1):
        assert [t.name for t in in_place.tasks] == ["T2", "T0", "T1"]
        assert [t.name for t in after.tasks] == ["T2", "T1", "T0"]
        for p in (in_place, after):
            setup = p.tasks[0]
            assert setup.ops == t0.ops[:m] and setup.start == 0
            rest = next(t for t in p.tasks if t.name == "T0")
            assert rest.ops == t0.ops[m:] and rest.start == 3
            assert sorted(c.describe() for t in p.tasks for c in t.ops) == calls
    assert split_programs(attrs.evolve(case, tasks=(t1,))) == []  # one operation: no split


def test_a_setup_split_off_the_racing_task_saves_a_switch() -> None:
    """With its setup in the munmapping task, the race needs 2 switches (none of the
    schedules with at most 1 fails): the scan must run between the mmaps and the munmap.
    Split off into a task that runs first, the rest of the program starts from the set-up
    world and the mail's 1 switch does; the setup task ends before the race, so 2 tasks are
    in flight, as in the mail."""
    case = _setup_in_the_munmapping_task()
    failure = _result(case, _failing(case, "use_after_free", 2, 2))
    assert failure.preemptions == 2
    assert search(case, "use_after_free", 1, 3000) == (None, True)
    split = next(p for p in PASSES if p.name == "split_setup")
    s = Shrinking(failure, "use_after_free")
    assert split.applies(s)
    found = split.run(s, Budget(2000, time.process_time() + DEADLINE), PassStats(split.name))
    assert found is not None
    c, run = found
    assert run.outcome.check == "use_after_free"
    assert (concurrent_tasks(run.sched.trace), run.sched.preemptions) == (2, 1)
    assert len(c.tasks) == 3 and c.tasks[0].ops == case.tasks[0].ops[:3]  # the mmaps, the write
    first = run.sched.trace[0].task
    setup_steps = [i for i, st in enumerate(run.sched.trace) if st.task == first]
    assert setup_steps == list(range(len(setup_steps)))  # it ran first, to completion
    assert run.sched.trace[setup_steps[-1]].label == "exit"


@pytest.mark.long  # ~4 s of CPU
def test_the_shrink_takes_a_setup_in_the_racing_task_to_the_mails_size() -> None:
    """The whole shrink of that failure ends at the mail's 2 tasks in flight / 1 switch.  (Since
    the freed vma left in mmap_cache is reported at its free, the munmap needs no later
    access in its own task, and a regrouping that runs the scan after the setup's operations,
    in their task, gets there before split_setup does.)"""
    case = _setup_in_the_munmapping_task()
    result = _shrink(_result(case, _failing(case, "use_after_free", 2, 2)))
    shrunk = _size(result.failure)
    assert (shrunk["tasks"], shrunk["preemptions"]) == (2, 1), shrunk
    assert sum(p.kept for p in result.passes) >= 1
    _replays(result, "use_after_free")


def test_the_passes_are_named_ordered_and_shared_as_documented() -> None:
    """The pass list is the README's, in its order; each pass says in one line what it tries;
    the budget splits are the shrinker's (a share of what is left when the pass starts)."""
    names = [p.name for p in PASSES]
    assert names == ["ddmin_switches", "pairs", "same_switches", "fewer_switches", "sampled",
                     "smaller_searched", "split_setup", "grown", "shifted_switches",
                     "minimal_preemptions"]
    assert {p.name: p.share for p in PASSES if p.share is not None} == {
        "pairs": (1, 3), "sampled": (1, 4), "smaller_searched": (2, 3), "split_setup": (1, 3),
        "grown": (1, 2),
    }
    for p in PASSES:
        assert p.doc and "\n" not in p.doc, p.name
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## How a failure is shrunk", 1)[1].split("\n## ", 1)[0]
    where = [section.find(f"`{n}`") for n in names]
    assert -1 not in where and where == sorted(where), dict(zip(names, where, strict=True))


@pytest.mark.long  # 7-10 s of CPU: out of the default run
def test_pass_statistics_add_up_to_the_budget_spent() -> None:
    """On a saved failure (4 tasks, 13 switches): every run the shrink charged to its budget is
    one pass's, a pass keeps no more candidates than it tried and tries no more than it ran,
    and something was kept exactly when the failure got smaller."""
    case = load(DATA / "unuse_process_four_tasks_13_switches.json").case
    failure = _result(case, execute(case, Replay(case.schedule.decisions)))
    budget = Budget(3000, time.process_time() + DEADLINE)
    result = shrink(failure, budget)
    assert [p.name for p in result.passes] == [p.name for p in PASSES]
    *rounds, shifted, final = result.passes
    assert shifted.name == "shifted_switches" and shifted.runs <= 1000
    assert sum(p.runs for p in rounds) == budget.used > 0
    for p in (*rounds, shifted):
        assert 0 <= p.kept <= p.tried <= p.runs and p.seconds >= 0, p
    assert 0 < final.tried and final.runs <= 3000
    ddmin = rounds[0]
    assert ddmin.name == "ddmin_switches" and ddmin.tried == ddmin.runs > 0  # 13 switches > 8

    def size(f: Failure) -> tuple[int, ...]:
        s = _size(f)
        return s["tasks"], s["preemptions"], s["ops"] + len(f.case.config.world), s["steps"]

    smaller = size(result.failure) < size(failure)
    assert smaller and (sum(p.kept for p in result.passes) > 0) == smaller
    _replays(result, "use_after_free")


def test_fuzz_json_carries_the_pass_statistics() -> None:
    """``vmfuzz fuzz --json`` gives each pass's statistics under "shrink", in the pass order."""
    import argparse
    import json

    from vmfuzz._cmd_fuzz import _to_json
    from vmfuzz.campaign import CampaignResult

    stats = [PassStats(p.name, tried=3, kept=1, runs=7, seconds=0.12345) for p in PASSES]
    args = argparse.Namespace(seed=0, stream=0, workers=1, scheduler="mixed", bug=[])
    out = json.loads(json.dumps(_to_json(CampaignResult(shrink_passes=stats), None, args)))
    assert out["shrink"] == {"passes": [
        {"name": p.name, "tried": 3, "kept": 1, "runs": 7, "seconds": 0.123} for p in PASSES
    ]}


def test_pairs_spends_at_most_its_runs_over_a_whole_shrink(monkeypatch: pytest.MonkeyPatch) -> None:
    """``pairs`` starts again whenever the world or the calls change; over a whole shrink its
    searches together stop at PAIRS_RUNS runs (the passes after it get the rest)."""
    import vmfuzz.shrink._passes as passes

    monkeypatch.setattr(passes, "PAIRS_RUNS", 40)
    case = load(DATA / "unuse_process_three_tasks_15_switches.json").case
    s = Shrinking(_result(case, execute(case, Replay(case.schedule.decisions))), "use_after_free")
    pairs = next(p for p in PASSES if p.name == "pairs")
    assert pairs.applies(s)
    budget = Budget(1000, time.process_time() + DEADLINE)
    assert pairs.run(s, budget, PassStats(pairs.name)) is None
    assert s.pairs_runs == budget.used == 40
    s.pairs_done.clear()  # as if the calls had changed: still spent
    assert not pairs.applies(s)


def test_a_smaller_ending_by_another_check_is_reported_beside_the_failure() -> None:
    """Seed 001's race as a campaign found it (swapoff's readahead against a driver ioctl's
    direct reclaim): the stale page mapped (data_integrity) needs two switches, while one
    switch already leaves two pages cached for one entry (swap_cache_unique).  The failure
    keeps its check; the smaller ending is reported beside it and replays on its own."""
    case = load(DATA / "swapoff_readahead_vs_reclaim_two_switches.json").case
    run = execute(case, Replay(case.schedule.decisions))
    assert (run.outcome.check, run.sched.preemptions) == ("data_integrity", 2)
    result = _shrink(_result(case, run), runs=2000)
    assert result.failure.violation.check == "data_integrity"
    assert result.preemptions == 2 and result.minimal_preemptions is True
    [other] = result.others
    assert other.violation.check == "swap_cache_unique"
    assert (concurrent_tasks(other.trace), other.preemptions) == (2, 1)
    again = execute(other.case, Replay(other.case.schedule.decisions))
    assert again.outcome.check == "swap_cache_unique" and again.sched.preemptions == 1


def test_a_switch_to_spare_is_dropped_by_moving_another_a_few_decisions() -> None:
    """A campaign's real failure (seed 1 of the zoo's vm_swap_full_delete_race, 13 operations,
    2 preemptions) also fails with one, but the bounded search below its count meets that
    schedule only as its 7,286th of 11,687 (past its run limit): shifted_switches finds it by
    dropping a switch and moving another three decisions earlier."""
    from vmfuzz.shrink._passes import _shifted_switches

    case = load(DATA / "vm_swap_full_delete_two_switches_one_spare.json").case
    run = execute(case, Replay(case.schedule.decisions))
    assert (run.outcome.check, run.sched.preemptions) == ("data_integrity", 2)
    failure = _result(case, run)
    assert search(failure.case, "data_integrity", 1, 300) == (None, False)
    s = Shrinking(failure, "data_integrity")
    stats = PassStats("shifted_switches")
    budget = Budget(300, time.process_time() + DEADLINE)
    found = _shifted_switches(s, budget, stats)
    assert found is not None and stats.tried == budget.used < 300
    prog, smaller = found
    assert (smaller.outcome.check, smaller.sched.preemptions) == ("data_integrity", 1)
    again = execute(prog, PreemptionList(to_preemptions(prog, tuple(smaller.decisions))))
    assert again.outcome.check == "data_integrity" and again.sched.preemptions == 1


def test_a_soak_finding_carries_the_smaller_endings_as_cases() -> None:
    """The data a soak campaign sends back (:func:`vmfuzz.soak._task.failure_data`) holds
    each smaller ending as a corpus case that replays to its check."""
    import types

    from vmfuzz.corpus import from_json
    from vmfuzz.shrink._size import adopted
    from vmfuzz.soak._task import failure_data

    case = load(DATA / "swapoff_readahead_vs_reclaim_two_switches.json").case
    run = execute(case, Replay(case.schedule.decisions))
    main = _result(case, run)
    met: dict[str, Run] = {}
    assert search(case, "data_integrity", 1, 200, others=met) == (None, True)
    assert sorted(met) == ["swap_cache_unique"]
    other = adopted(main, met["swap_cache_unique"], case)
    result = types.SimpleNamespace(
        failure=main, case=main.case, others=[other], stats=None, minimal_preemptions=True,
        shrink_passes=[], clock_hit=[], known_hit=False, preemptions=main.preemptions,
        shrunk=lambda: _size(main))
    [data] = failure_data(result)["others"]
    assert data["check"] == "swap_cache_unique" and data["shrunk"]["preemptions"] == 1
    cc = from_json(data["case"])
    assert execute(cc.case, cc.source()).outcome.check == "swap_cache_unique"
