"""The corpus: case <-> JSON, saving failures, replay, the fix check, bad input, `vmfuzz replay`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from test_corpus_ops import (
    RACE_STEPS,
    RACY,
    counter_case,
    race_json,
    registered,
    run_vmfuzz,
)

from vmfuzz.case import Case, OpCall, Run, Schedule, TaskSpec, execute
from vmfuzz.cli import main
from vmfuzz.corpus import (
    CorpusError,
    NotReproducible,
    case_files,
    from_json,
    load,
    replay,
    save_failure,
    to_json,
    write_case,
)
from vmfuzz.kernel import KernelConfig
from vmfuzz.schedules import Explicit


@pytest.fixture(scope="module", autouse=True)
def _test_ops() -> Iterator[None]:
    with registered():
        yield


def race(extra: int = 0) -> tuple[Case, Run]:
    case = counter_case(extra=extra)
    return case, execute(case, Explicit(RACE_STEPS))


def leak_case() -> Case:
    """A bug case whose failure has nothing to do with the bug: the fix check must fail."""
    return Case(KernelConfig(bugs=frozenset({RACY})), (TaskSpec("T1", (OpCall("test_leak"),)),))


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2))
    return path


# ----------------------------------------------------------------------------- round trip
def test_round_trip_fail_save_load_replay_same_trace(tmp_path: Path) -> None:
    case, run = race()
    assert run.outcome.check == "test_lost_update"
    path = save_failure(case, run, tmp_path, {"found_by": "test", "seed": 7})
    assert path.parent == tmp_path and path.suffix == ".json"
    cc = load(path)
    assert cc.expected == "test_lost_update"
    assert cc.trace_sha256 == run.outcome.trace_sha256
    assert cc.steps == run.outcome.steps
    assert cc.case.schedule == Schedule("decisions", decisions=tuple(run.decisions))
    assert cc.metadata["found_by"] == "test" and cc.metadata["seed"] == 7
    assert cc.violation is not None and cc.violation["check"] == "test_lost_update"
    result = replay(cc)
    assert result.ok and result.observed == "test_lost_update"
    assert result.trace_sha256 == run.outcome.trace_sha256
    assert result.trace_matches is True


def test_to_json_is_the_inverse_of_from_json(tmp_path: Path) -> None:
    case, run = race(extra=3)
    path = save_failure(case, run, tmp_path, {"created": "2024-01-01T00:00:00+00:00"})
    data = json.loads(path.read_text())
    assert data["format"] == "vmfuzz-case" and data["version"] == 1
    cc = from_json(data, path)
    assert to_json(cc) == data
    assert cc.case.tasks == case.tasks and cc.case.config == case.config
    # Hand-written explicit cases survive the trip too.
    hand = from_json(race_json(), tmp_path / "hand.json")
    assert from_json(to_json(hand)) == hand


@pytest.mark.parametrize("hashseed", ["0", "4242"])
def test_replay_in_subprocess_with_other_hash_seed_gives_same_trace(
    tmp_path: Path, hashseed: str
) -> None:
    case, run = race(extra=2)
    path = save_failure(case, run, tmp_path)
    proc = run_vmfuzz("replay", "--json", str(path), hashseed=hashseed)
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    got = json.loads(line)
    assert got["ok"] is True
    assert got["trace_sha256"] == run.outcome.trace_sha256 == got["recorded_trace_sha256"]
    assert got["trace_matches"] is True


def test_corpus_replay_does_not_import_hypothesis(tmp_path: Path) -> None:
    path = write_json(tmp_path / "race.json", race_json())
    import subprocess
    import sys

    from test_corpus_ops import TESTS_DIR

    code = (
        f"import sys; sys.path.insert(0, {str(TESTS_DIR)!r}); import test_corpus_ops; "
        "test_corpus_ops.register(); from vmfuzz.corpus import load, replay; "
        f"r = replay(load({str(path)!r})); assert r.ok, r.summary(); "
        "print('hypothesis' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False", "replaying a case imported Hypothesis"


def _who_imports_hypothesis(importtime: str) -> str:
    """From ``-X importtime`` output: the chain of modules that first imported hypothesis."""
    lines = [ln.split("|")[-1] for ln in importtime.splitlines() if ln.startswith("import time:")]
    names = [(len(ln) - len(ln.lstrip()), ln.strip()) for ln in lines]
    at = next((i for i, (_, n) in enumerate(names) if n == "hypothesis"), None)
    if at is None:
        return "?"
    chain = ["hypothesis"]
    depth = names[at][0]
    for d, n in names[at + 1 :]:
        if d < depth:
            chain.append(n)
            depth = d
    return " <- ".join(chain)


def test_vmfuzz_replay_command_does_not_import_hypothesis(tmp_path: Path) -> None:
    path = write_json(tmp_path / "race.json", race_json())
    proc = run_vmfuzz("replay", str(path), report_hypothesis=True, importtime=True)
    assert proc.returncode == 0, proc.stderr
    clean = proc.stderr.strip().endswith("hypothesis imported: False")
    assert clean, (
        "`vmfuzz replay` imports Hypothesis (vmfuzz/cli.py imports every vmfuzz/_cmd_*.py to "
        "build its parser; a command module that needs Hypothesis must import it inside "
        f"run()): {_who_imports_hypothesis(proc.stderr)}"
    )


# ----------------------------------------------------------------------------- saving
def test_saving_the_same_failure_twice_keeps_one_file(tmp_path: Path) -> None:
    case, run = race()
    first = save_failure(case, run, tmp_path, {"created": "2024-01-01T00:00:00+00:00"})
    before = first.read_text()
    second = save_failure(case, run, tmp_path, {"created": "2025-05-05T00:00:00+00:00"})
    assert second == first
    assert first.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]


def test_names_are_stable_and_come_from_the_failure_signature(tmp_path: Path) -> None:
    case, run = race()
    path = save_failure(case, run, tmp_path / "a")
    again = save_failure(case, run, tmp_path / "b")
    assert path.name == again.name
    assert path.name.startswith("test_lost_update-test_counter_incr-")
    other = save_failure(leak_case(), execute(leak_case()), tmp_path / "a")
    assert other.name.startswith("lock_held_at_exit-")
    assert other != path


def test_a_shorter_run_of_the_same_failure_replaces_a_longer_one(tmp_path: Path) -> None:
    long_case, long_run = race(extra=6)
    short_case, short_run = race(extra=0)
    assert long_run.outcome.steps > short_run.outcome.steps
    path = save_failure(long_case, long_run, tmp_path)
    assert save_failure(short_case, short_run, tmp_path) == path
    assert load(path).steps == short_run.outcome.steps
    assert save_failure(long_case, long_run, tmp_path) == path
    assert load(path).steps == short_run.outcome.steps
    assert len(list(tmp_path.iterdir())) == 1


def test_an_unreadable_file_in_the_way_is_never_overwritten(tmp_path: Path) -> None:
    case, run = race()
    path = save_failure(case, run, tmp_path / "x")
    blocker = tmp_path / path.name
    blocker.write_text("{ not json")
    saved = save_failure(case, run, tmp_path)
    assert saved.name == path.stem + "-2.json"
    assert blocker.read_text() == "{ not json"
    assert load(saved).expected == "test_lost_update"


def test_save_failure_from_an_outcome_re_runs_the_case_schedule(tmp_path: Path) -> None:
    # T1 reads (decision 0, default), then one switch to T2 (decision 1).
    case = counter_case(schedule=Schedule("preemptions", preemptions=((1, 0),)))
    run = execute(case)
    assert run.outcome.check == "test_lost_update"
    path = save_failure(case, run.outcome, tmp_path)
    cc = load(path)
    assert cc.case.schedule.kind == "decisions"  # always stored as the exact record
    assert cc.trace_sha256 == run.outcome.trace_sha256
    assert replay(cc).ok


def test_save_failure_from_a_violation_as_the_fuzzer_calls_it(tmp_path: Path) -> None:
    _, run = race()
    case = counter_case(schedule=Schedule("decisions", decisions=tuple(run.decisions)))
    assert run.outcome.violation is not None
    meta = {"found_by": "vmfuzz fuzz --scheduler pct", "seed": 3}
    path = save_failure(case, run.outcome.violation, tmp_path, meta)
    cc = load(path)
    assert cc.metadata["found_by"] == meta["found_by"] and cc.metadata["seed"] == 3
    assert cc.metadata["signature"].startswith("test_lost_update|")
    assert replay(cc).ok and cc.trace_sha256 == run.outcome.trace_sha256


def test_save_failure_refuses_what_does_not_reproduce(tmp_path: Path) -> None:
    case, run = race()
    # The outcome alone, with a case whose own schedule (non-preemptive) is clean.
    with pytest.raises(NotReproducible, match="gives clean, not test_lost_update"):
        save_failure(case, run.outcome, tmp_path)
    with pytest.raises(ValueError, match="clean"):
        save_failure(case, execute(case), tmp_path)
    assert not tmp_path.exists() or not list(tmp_path.iterdir())


def test_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case, run = race()
    path = save_failure(case, run, tmp_path)
    before = path.read_text()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_case(load(path), path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


# ----------------------------------------------------------------------------- bad input
def _good() -> dict[str, Any]:
    return race_json()


def _set(path: str, value: Any) -> Any:
    def edit(d: dict[str, Any]) -> dict[str, Any]:
        keys = path.split(".")
        cur: Any = d
        for k in keys[:-1]:
            cur = cur[int(k)] if isinstance(cur, list) else cur[k]
        last = keys[-1]
        if value is _DELETE:
            del cur[last]
        elif isinstance(cur, list):
            cur[int(last)] = value
        else:
            cur[last] = value
        return d

    return edit


_DELETE = object()

BAD_DATA = [
    ("wrong format", _set("format", "something-else"), "not a vmfuzz case"),
    ("newer version", _set("version", 2), "unsupported case format version 2"),
    ("version as string", _set("version", "1"), "version: expected the integer 1"),
    ("missing version", _set("version", _DELETE), "version"),
    ("unknown op", _set("tasks.0.ops.0.op", "frobnicate"), "unknown operation 'frobnicate'"),
    ("missing arg", _set("tasks.0.ops", [{"op": "test_spin"}]), "missing count"),
    ("extra arg", _set("tasks.0.ops", [{"op": "test_spin", "args": {"count": 1, "x": 2}}]),
     "unknown field 'x'"),
    ("arg not int", _set("tasks.0.ops", [{"op": "test_spin", "args": {"count": "3"}}]),
     "tasks[0].ops[0].args.count: expected an integer"),
    ("unknown bug", _set("config.bugs", ["no_such_bug"]), "unknown bug switch 'no_such_bug'"),
    ("bad size", _set("config.nr_frames", 0), "config.nr_frames: must be >= 1"),
    ("no tasks", _set("tasks", []), "at least one task (or a world to build)"),
    ("duplicate task", _set("tasks.1.name", "T1"), "two tasks are named 'T1'"),
    ("two schedules", _set("schedule", {"explicit": [], "decisions": [0]}), "give one schedule"),
    ("bad step", _set("schedule.explicit.0", "walk T1 home"), "cannot parse step"),
    ("unknown task", _set("schedule.explicit.0", "run T9 until exit"), "names task 'T9'"),
    ("decision out of range", _set("schedule", {"decisions": [0, 5]}), "task index 5"),
    ("bad preemption", _set("schedule", {"preemptions": [[1]]}), "expected [gap, offset]"),
    ("unknown field", _set("schedul", {}), "unknown field 'schedul'"),
    ("missing expected", _set("expected", _DELETE), "missing field 'expected'"),
    ("bad expected", _set("expected", "no such thing!"), "expected \"clean\" or a check name"),
    ("unknown check", _set("expected", "data_integrty"), "unknown check 'data_integrty'"),
    ("bad hash", _set("trace_sha256", "abc"), "trace_sha256"),
    ("not an object", lambda d: [d], "not a vmfuzz case"),
]


@pytest.mark.parametrize(("mutate", "problem"), [(m, p) for _, m, p in BAD_DATA],
                         ids=[n for n, _, _ in BAD_DATA])
def test_bad_files_give_one_line_naming_file_and_problem(
    tmp_path: Path, mutate: Any, problem: str
) -> None:
    path = write_json(tmp_path / "bad.json", mutate(_good()))
    with pytest.raises(CorpusError) as info:
        load(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: ")
    assert "\n" not in msg
    assert problem in msg


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty file"),
        (b'{"format": "vmfuzz-case", "version": 1, "tasks": [', "malformed JSON (truncated?)"),
        (b'{"format": "vmfuzz-case",, }', "malformed JSON: Expecting"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b'{"format": "vmfuzz-case", "version": 1, "version": 2}', "'version' given twice"),
    ],
    ids=["empty", "truncated", "malformed", "binary", "duplicate"],
)
def test_unreadable_files(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(CorpusError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}: ") and problem in str(info.value)
    assert "\n" not in str(info.value)


def test_a_byte_order_mark_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(race_json()).encode())
    assert load(path).expected == "test_lost_update"


def test_a_truncated_saved_case_is_reported(tmp_path: Path) -> None:
    case, run = race()
    path = save_failure(case, run, tmp_path)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(CorpusError, match="truncated"):
        load(path)


def test_case_files_walks_folders_in_order_and_reports_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / ".hidden").mkdir()
    for rel in ("b/z.json", "a.json", "b/c.json", ".hidden/x.json", "notes.txt"):
        (tmp_path / rel).write_text("{}")
    files, errors = case_files([tmp_path, tmp_path / "missing.json"])
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["a.json", "b/c.json", "b/z.json"]
    assert len(errors) == 1 and "no such file or directory" in str(errors[0])


# ----------------------------------------------------------------------------- replay
def test_replay_command_reports_every_file_despite_bad_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_json(tmp_path / "a_good.json", race_json())
    (tmp_path / "b_truncated.json").write_text(json.dumps(race_json())[:40])
    write_json(tmp_path / "c_version.json", race_json(version=7))
    write_json(tmp_path / "d_unknown_op.json", _set("tasks.0.ops.0.op", "nope")(race_json()))
    write_json(tmp_path / "e_good.json", race_json())
    rc = main(["replay", str(tmp_path), str(tmp_path / "missing.json")])
    out, err = capsys.readouterr()
    assert rc == 2
    assert out.count("ok    ") == 2  # both good files replayed, before and after the bad ones
    bad_lines = err.strip().splitlines()
    assert len(bad_lines) == 4
    for name in ("b_truncated", "c_version", "d_unknown_op", "missing"):
        assert sum(name in line for line in bad_lines) == 1
    assert "6 cases: 2 ok, 4 unusable" in out


def test_replay_json_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_json(tmp_path / "a.json", race_json())
    (tmp_path / "b.json").write_text("[")
    rc = main(["replay", "--json", str(tmp_path)])
    out, _ = capsys.readouterr()
    assert rc == 2
    a, b = (json.loads(line) for line in out.splitlines())
    assert {"path", "ok", "expected", "observed", "trace_sha256"} <= set(a)
    assert a["ok"] is True and a["expected"] == a["observed"] == "test_lost_update"
    assert len(a["trace_sha256"]) == 64
    assert a["fix_check"]["status"] == "holds"
    assert b["ok"] is False and b["path"].endswith("b.json") and "malformed JSON" in b["error"]


def test_replay_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_json(tmp_path / "good.json", race_json())
    assert main(["replay", str(good)]) == 0
    wrong = write_json(tmp_path / "wrong.json", race_json(expected="clean"))
    assert main(["replay", str(good), str(wrong), "--timeline", "--width", "80"]) == 1
    out, _ = capsys.readouterr()
    assert "FAIL  " in out and "expected clean, observed test_lost_update" in out
    assert "*** test_lost_update at step" in out  # the timeline of the differing case


def test_replay_reports_a_changed_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case, run = race()
    path = save_failure(case, run, tmp_path)
    data = json.loads(path.read_text())
    data["trace_sha256"] = "0" * 64
    write_json(path, data)
    assert main(["replay", str(path)]) == 0
    assert "trace differs" in capsys.readouterr().out
    assert main(["replay", "--strict-trace", str(path)]) == 1


def test_fix_check_holds_when_the_fixed_kernel_is_clean(tmp_path: Path) -> None:
    case, run = race()
    result = replay(load(save_failure(case, run, tmp_path)))
    assert result.ok
    fix = result.fix
    assert fix is not None and fix.status == "holds" and fix.observed == "clean"
    # The fixed kernel takes mmlist_lock, so T2 blocks and the recorded decisions run out.
    assert fix.schedule_applies is False
    assert "decision" in (fix.divergence or "")
    assert "no longer applies" in result.summary()


def test_fix_check_fails_when_the_failure_is_not_the_bugs(tmp_path: Path) -> None:
    case = leak_case()
    result = replay(load(save_failure(case, execute(case), tmp_path)))
    assert result.ok and result.observed == "lock_held_at_exit"
    assert result.fix is not None and result.fix.status == "fails"
    assert result.fix.observed == "lock_held_at_exit" and result.fix.schedule_applies
    assert "FIX DOES NOT HOLD" in result.summary()


def test_no_fix_check_for_fixed_kernel_cases_or_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fixed = write_json(tmp_path / "fixed.json", race_json(expected="clean", config={}))
    assert replay(load(fixed)).fix is None
    bug = write_json(tmp_path / "bug.json", race_json())
    assert main(["replay", "--json", "--no-fix-check", str(bug)]) == 0
    assert json.loads(capsys.readouterr().out)["fix_check"] is None


def test_a_schedule_that_no_longer_applies_is_a_difference(tmp_path: Path) -> None:
    data = race_json(expected="clean", config={})
    data["schedule"] = {"explicit": ["run T1 until test_counter_incr:never_there"]}
    result = replay(load(write_json(tmp_path / "d.json", data)))
    assert not result.ok and result.observed == "diverged"
    assert "no longer applies" in result.attempt.message and "T1" in result.attempt.message


def test_a_model_crash_is_an_outcome_and_does_not_stop_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crash = race_json(expected="clean", config={})
    crash["tasks"][0]["ops"] = [{"op": "test_crash", "args": {"flag": 1}}]
    write_json(tmp_path / "a_crash.json", crash)
    write_json(tmp_path / "b_good.json", race_json())
    assert main(["replay", "--json", str(tmp_path)]) == 1
    a, b = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert a["observed"] == "error" and "KeyError" in a["message"] and not a["ok"]
    assert b["ok"]


def test_budget_outcome(tmp_path: Path) -> None:
    data = race_json(expected="budget", config={}, max_steps=3)
    data["schedule"] = {}
    data["tasks"][0]["ops"] = [{"op": "test_spin", "args": {"count": 4}}]
    result = replay(load(write_json(tmp_path / "b.json", data)))
    assert result.ok and result.observed == "budget"


def test_every_schedule_form_round_trips(tmp_path: Path) -> None:
    for sched in (
        {},
        {"decisions": [1, 0]},
        {"preemptions": [[0, 0], [2, 1]]},
        {"pct": {"seed": 3, "depth": 2, "k": 10}},
        {"random": {"seed": 5}},
        {"explicit": list(RACE_STEPS)},
    ):
        data = race_json(expected="clean", config={}, schedule=sched)
        cc = from_json(data, tmp_path / "x.json")
        assert to_json(cc)["schedule"] == sched
        assert replay(cc).observed in ("clean", "diverged")
        if "decisions" not in sched and "explicit" not in sched:
            assert replay(cc).ok
    # Replaying a pct/random case is deterministic (its own seeded RNG).
    pct = from_json(race_json(schedule={"random": {"seed": 11}}), tmp_path / "r.json")
    assert len({replay(pct).trace_sha256 for _ in range(3)}) == 1


def test_a_task_listed_first_but_started_later_saves_and_loads(tmp_path: Path) -> None:
    """A decision names a task by spawn order (start step, then file order), not by its place
    in the file: a finding whose first-listed task starts late must load and replay."""
    base = counter_case()
    late = attrs.evolve(base.tasks[0], start=1)
    case = attrs.evolve(base, tasks=(late, attrs.evolve(base.tasks[1], start=0)))
    steps = ("run T2 until test_counter_incr:after_read", "run T1 until exit",
             "run T2 to completion")
    run = execute(case, Explicit(steps))
    assert run.outcome.check == "test_lost_update"
    path = save_failure(case, run, tmp_path)
    saved = json.loads(path.read_text())
    assert saved["tasks"][0]["name"] == "T1" and saved["tasks"][0]["start"] == 1
    assert any(a["run"] == "T1" for a in saved["schedule"]["anchors"])
    result = replay(load(path))
    assert result.ok and result.observed == "test_lost_update"
    assert result.trace_matches is True
