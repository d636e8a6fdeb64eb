"""The explicit schedule form: "run T1 until LABEL" steps driving the scheduler by yield labels."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_corpus_ops import RACE_STEPS, RACY, counter_case, race_json, registered

from vmfuzz import ScheduleDiverged, Scheduler
from vmfuzz.case import Case, OpCall, TaskSpec, execute
from vmfuzz.corpus import load, replay
from vmfuzz.kernel import KernelConfig
from vmfuzz.schedules import Explicit, RandomWalk
from vmfuzz.schedules._explicit import Step, explicit_from_trace, parse_step


@pytest.fixture(scope="module", autouse=True)
def _test_ops() -> Iterator[None]:
    with registered():
        yield


def tasks_of(trace: list) -> list[str]:  # type: ignore[type-arg]
    return [s.task for s in trace]


def case_of(*tasks: tuple[str, list[OpCall]], bugs: frozenset[str] = frozenset()) -> Case:
    return Case(KernelConfig(bugs=bugs), tuple(TaskSpec(n, tuple(ops)) for n, ops in tasks))


def spin(n: int) -> OpCall:
    return OpCall("test_spin", {"count": n})


# ----------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    ("text", "step"),
    [
        ("run T1 until try_to_swap_out:after_get_swap_page",
         Step("T1", "label", "try_to_swap_out:after_get_swap_page")),
        ("run T1 until T1:try_to_swap_out:after_get_swap_page",
         Step("T1", "label", "try_to_swap_out:after_get_swap_page")),
        ("run  T2   until  do_swap_page:wait(page unlocked) #3",
         Step("T2", "label", "do_swap_page:wait(page unlocked)", 3)),
        ("run T2 until exit", Step("T2", "exit", "exit")),
        ("run T1 to completion", Step("T1", "exit", "exit")),
        ("run T1 until blocked", Step("T1", "blocked")),
        ("run T1 for 4 steps", Step("T1", "steps", "", 4)),
        ("run T1 for 1 step", Step("T1", "steps", "", 1)),
    ],
)
def test_parse_step(text: str, step: Step) -> None:
    got = parse_step(text, ["T1", "T2"])
    assert attrs_tuple(got) == attrs_tuple(step)


def attrs_tuple(s: Step) -> tuple[str, str, str, int]:
    return (s.task, s.kind, s.label, s.count)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("walk T1 until exit", "cannot parse step"),
        ("run T1", "cannot parse step"),
        ("run T1 until", "cannot parse step"),
        ("run T1 for 0 steps", "at least 1"),
        ("run T1 until foo:bar #0", "#N counts from 1"),
        ("run T3 until exit", "names task 'T3'"),
        ("run T1 until T2:foo:bar", "runs T1 but waits for a label of task T2"),
    ],
)
def test_parse_errors_are_one_line(text: str, problem: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_step(text, ["T1", "T2"])
    assert problem in str(info.value) and "\n" not in str(info.value)


# ----------------------------------------------------------------------------- running
def test_the_race_as_drawn() -> None:
    run = execute(counter_case(), Explicit(RACE_STEPS))
    assert run.outcome.check == "test_lost_update"
    assert tasks_of(run.sched.trace) == ["T1", "T2", "T2", "T2", "T1"]
    # Without the schedule the default policy serialises the two increments.
    assert execute(counter_case()).outcome.kind == "clean"


def test_until_label_nth_time() -> None:
    case = case_of(("T1", [spin(5)]), ("T2", [spin(1)]))
    run = execute(case, Explicit(["run T1 until test_spin:loop #3", "run T2 until exit"]))
    assert tasks_of(run.sched.trace)[:6] == ["T1", "T1", "T1", "T2", "T2", "T2"]


def test_for_n_steps() -> None:
    case = case_of(("T1", [spin(5)]), ("T2", [spin(1)]))
    steps = ["run T2 for 2 steps", "run T1 for 1 step", "run T2 to completion"]
    run = execute(case, Explicit(steps))
    assert tasks_of(run.sched.trace)[:4] == ["T2", "T2", "T1", "T2"]


def test_until_blocked_and_labels_passed_while_running_alone() -> None:
    case = case_of(
        ("T1", [OpCall("test_hold", {"count": 2})]), ("T2", [OpCall("test_counter_incr")])
    )
    steps = [
        "run T1 until test_hold:held",
        "run T2 until blocked",  # T2 asks for mmlist_lock, which T1 holds
        # T1 is the only runnable task from here to its release: no decision point, the
        # source sees the labels in the trace.
        "run T1 until test_hold:released",
        "run T2 to completion",
    ]
    run = execute(case, Explicit(steps))
    trace = run.sched.trace
    assert run.outcome.kind == "clean"
    blocked = next(i for i, s in enumerate(trace) if s.event.startswith("blocks on"))
    assert trace[blocked].task == "T2" and trace[blocked - 1].label == "test_hold:held"
    released = next(i for i, s in enumerate(trace) if s.label == "test_hold:released")
    assert trace[released + 1].task == "T2"  # T2 runs as soon as T1 released, as drawn


def test_strict_divergence_raises() -> None:
    case = case_of(("T1", [spin(1)]), ("T2", [spin(2)]), ("T3", [spin(2)]))
    with pytest.raises(ScheduleDiverged, match=r"T1 exited at step \d+ without getting there"):
        execute(case, Explicit(["run T1 until test_spin:nowhere", "run T2 until exit"]))


def test_lenient_divergence_notes_and_goes_on() -> None:
    case = case_of(("T1", [spin(1)]), ("T2", [spin(2)]), ("T3", [spin(2)]))
    src = Explicit(["run T1 until test_spin:nowhere", "run T3 until exit"], strict=False)
    run = execute(case, src)
    assert run.outcome.kind == "clean"
    assert src.diverged is not None and "T1 exited" in src.diverged
    t = tasks_of(run.sched.trace)
    assert t.index("T3") < t.index("T2")  # the step after the dropped one was still followed


def test_finish_reports_steps_never_reached() -> None:
    case = case_of(("T1", [spin(1)]), ("T2", [spin(1)]))
    src = Explicit(["run T2 to completion", "run T1 until test_spin:nowhere"])
    run = execute(case, src)  # no decision point after T1 ends: nothing raised during the run
    why = src.finish(run.sched)
    assert why is not None and "test_spin:nowhere" in why
    done = Explicit(["run T2 to completion"])
    assert done.finish(execute(case, done).sched) is None


def test_until_exit_of_a_task_that_already_exited_is_satisfied() -> None:
    case = case_of(("T1", [spin(1)]), ("T2", [spin(1)]))
    src = Explicit(["run T1 to completion", "run T2 for 1 step", "run T1 to completion"])
    run = execute(case, src)
    assert src.finish(run.sched) is None


def test_explicit_gets_a_trace_when_none_was_asked_for() -> None:
    # The source reads the labels passed since its last decision from the trace: a scheduler
    # (or execute) told not to record one records it anyway, and the schedule is followed.
    sched = Scheduler(Explicit(["run T2 to completion"]), record_trace=False)

    def body() -> Iterator[str]:
        yield "a:b"
        yield "a:c"

    sched.spawn(body(), "T1")
    sched.spawn(body(), "T2")
    sched.run()
    assert tasks_of(sched.trace)[:2] == ["T2", "T2"]
    run = execute(counter_case(), Explicit(RACE_STEPS), record_trace=False)
    assert run.outcome.check == "test_lost_update"
    assert tasks_of(run.sched.trace) == ["T1", "T2", "T2", "T2", "T1"]
    assert not Scheduler(RandomWalk(1), record_trace=False).record_trace


@pytest.mark.parametrize("seed", range(12))
def test_explicit_from_trace_replays_exactly(seed: int) -> None:
    case = case_of(
        ("T1", [OpCall("test_counter_incr"), spin(2)]),
        ("T2", [OpCall("test_hold", {"count": 2}), OpCall("test_counter_incr")]),
        ("T3", [spin(3), OpCall("test_counter_incr")]),
        bugs=frozenset({RACY}) if seed % 2 else frozenset(),
    )
    run = execute(case, RandomWalk(seed))
    steps = explicit_from_trace(run.sched.trace)
    again = execute(case, Explicit(steps))
    assert again.outcome.trace_sha256 == run.outcome.trace_sha256
    assert again.outcome.check == run.outcome.check


def test_hand_written_explicit_case_file(tmp_path: Path) -> None:
    path = tmp_path / "lost_update.json"
    path.write_text(json.dumps(race_json(), indent=2))
    cc = load(path)
    assert cc.explicit == RACE_STEPS
    result = replay(cc)
    assert result.ok and result.observed == "test_lost_update"
    assert result.fix is not None and result.fix.status == "holds"
