"""First contact with vmfuzz: a finding on the kernel under test replays red until it is
fixed, then green; ``vmfuzz fuzz`` draws and prints its seed with the command that repeats the
run, keeps its time budget, says what it fuzzed and what to try next, and reports progress on
any stderr."""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_corpus_ops import LOST_UPDATE, RACE_STEPS, RACY, counter_case, registered

from vmfuzz import Violation
from vmfuzz._duration import DurationError, parse_duration
from vmfuzz._progress import Heartbeat
from vmfuzz.case import Case, OpCall, Run, TaskSpec, execute
from vmfuzz.cli import main
from vmfuzz.corpus import CorpusError, from_json, load, replay, rerecord, save_failure
from vmfuzz.kernel import OPS, Kernel, KernelConfig
from vmfuzz.kernel.ops import operation
from vmfuzz.schedules import Explicit

pytest_plugins = ["pytester"]

Completed = subprocess.CompletedProcess


def vmfuzz_cli(*args: str, **kw: Any) -> Completed[str]:
    """``python -m vmfuzz ARGS`` in a fresh process (this interpreter), output as text."""
    return subprocess.run([sys.executable, "-m", "vmfuzz", *args], capture_output=True,
                          text=True, timeout=300, **kw)

# The model of one path, as a test changes it: "fixed" takes mmlist_lock around the
# read-modify-write (the fix), "label" renames the yield point after the read, "extra" adds a
# yield point in the middle.  No bug switch: a failure here is the kernel under test's.
MODEL: dict[str, Any] = {"fixed": False, "label": "after_read", "extra": False}
INCR = "test_model_incr"
RACE = (f"run T1 until {INCR}:after_read", "run T2 until exit", "run T1 to completion")


def _incr(k: Kernel) -> Generator[Any, None, None]:
    """counter++ as load/store: a lost update unless the model is fixed."""
    locked = MODEL["fixed"]
    if locked:
        yield k.sched.spin_lock(k.mmlist_lock)
    v = k.stats.get("test_model_counter", 0)
    yield f"{INCR}:{MODEL['label']}"
    if MODEL["extra"]:
        yield f"{INCR}:extra"
    k.stats["test_model_counter"] = v + 1
    k.count("test_model_incs")
    if k.stats["test_model_counter"] != k.stats["test_model_incs"]:
        raise Violation(LOST_UPDATE, f"counter is {k.stats['test_model_counter']} after "
                                     f"{k.stats['test_model_incs']} increments")
    yield f"{INCR}:after_write"
    if locked:
        k.sched.spin_unlock(k.mmlist_lock)


@pytest.fixture(scope="module", autouse=True)
def _test_ops() -> Iterator[None]:
    with registered():  # the lost-update check and the bug-switch counter of the corpus tests
        operation(INCR)(_incr)
        try:
            yield
        finally:
            OPS.pop(INCR, None)


@pytest.fixture(autouse=True)
def _model(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"fixed": False, "label": "after_read", "extra": False}.items():
        monkeypatch.setitem(MODEL, key, value)


def finding(steps: tuple[str, ...] = RACE) -> tuple[Case, Run]:
    """Two increments on the kernel under test (no bug switch), raced as ``steps`` say."""
    case = Case(KernelConfig(), (TaskSpec("T1", (OpCall(INCR),)), TaskSpec("T2", (OpCall(INCR),))))
    return case, execute(case, Explicit(steps))


# ============================================================ A: a finding is red until fixed
def test_a_finding_is_saved_expecting_clean_with_what_was_found(tmp_path: Path) -> None:
    case, run = finding()
    assert run.outcome.violation is not None and run.outcome.violation.check == LOST_UPDATE
    data = json.loads(save_failure(case, run, tmp_path).read_text())
    assert data["expected"] == "clean"
    assert data["found"]["check"] == LOST_UPDATE and data["found"]["step"] == 4
    assert data["found"]["task"] == "T1" and "violation" not in data
    # Kept as a race diagram in words: a fix that makes one side wait still follows it.
    assert data["schedule"] == {"explicit": [*RACE[:2], "run T1 until exit"]}


def test_a_finding_replays_red_while_the_bug_is_there_and_green_once_fixed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_failure(*finding(), tmp_path)
    result = replay(load(path))
    assert not result.ok and result.verdict == "still fails"
    assert result.summary().startswith(f"still fails (check {LOST_UPDATE} at step 4): counter")

    assert main(["replay", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL  {path}: still fails (check {LOST_UPDATE} at step 4)" in out
    assert "1 case: 0 ok, 1 differ; findings: 1 still failing" in out
    assert main(["replay", "--json", str(path)]) == 1
    line = json.loads(capsys.readouterr().out)
    assert (line["ok"], line["verdict"], line["expected"], line["observed"]) == (
        False, "still fails", "clean", LOST_UPDATE)
    assert line["found"]["check"] == LOST_UPDATE

    monkeypatch.setitem(MODEL, "fixed", True)  # the model takes the lock: T2 waits for T1
    result = replay(load(path))
    assert result.ok and result.verdict == "fixed"
    assert result.summary() == (f"fixed: clean after {result.attempt.steps} steps (found as "
                                f"{LOST_UPDATE} at step 4)")
    # The recorded trace is the failing run's: --strict-trace does not hold that against it.
    assert main(["replay", "--strict-trace", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"ok    {path}: fixed: clean after" in out and "findings: 1 fixed" in out
    assert main(["replay", "--json", str(path)]) == 0
    line = json.loads(capsys.readouterr().out)
    assert (line["ok"], line["verdict"], line["observed"]) == (True, "fixed", "clean")


def test_show_draws_a_finding_with_its_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``vmfuzz show`` of a finding says "still fails" under the race, then "fixed"."""
    path = save_failure(*finding(), tmp_path)
    assert main(["show", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"still fails (found as {LOST_UPDATE} at step 4)" in out and "DIFFERS" not in out
    monkeypatch.setitem(MODEL, "fixed", True)
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"fixed: clean (found as {LOST_UPDATE} at step 4)" in out and "DIFFERS" not in out


def test_the_pytest_item_of_a_finding_is_red_until_fixed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_failure(*finding(), pytester.path / "corpus")
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    assert f"still fails (check {LOST_UPDATE} at step 4)" in result.stdout.str()
    monkeypatch.setitem(MODEL, "fixed", True)
    pytester.runpytest().assert_outcomes(passed=1)


def test_a_finding_whose_schedule_no_longer_applies_is_never_read_as_fixed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The label the race stops at is renamed: followed as far as it goes the run is clean,
    # which cannot tell a fix from a changed model.
    path = save_failure(*finding(), tmp_path)
    monkeypatch.setitem(MODEL, "label", "after_load")
    result = replay(load(path))
    assert not result.ok and result.verdict == "diverged" and result.observed == "diverged"
    assert result.summary().startswith("cannot tell whether fixed: the recorded schedule no "
                                       "longer applies: explicit step 1")
    assert "then the default policy: clean after" in result.summary()

    # A yield point a (hand-written) step names is gone, but the race still loses the update
    # (T3 keeps a second task runnable, so the step is seen to fail before the race ends).
    monkeypatch.setitem(MODEL, "label", "after_read")
    data = json.loads(path.read_text())
    data["tasks"].append({"name": "T3", "ops": [{"op": "test_spin", "args": {"count": 3}}]})
    data["schedule"]["explicit"] = [RACE[0], f"run T2 until {INCR}:extra", *RACE[1:],
                                    "run T3 to completion"]
    path.write_text(json.dumps(data))
    monkeypatch.setitem(MODEL, "extra", True)
    assert replay(load(path)).verdict == "still fails"
    monkeypatch.setitem(MODEL, "extra", False)
    result = replay(load(path))
    assert not result.ok and result.verdict == "still fails"
    assert result.summary().startswith(f"still fails (check {LOST_UPDATE} at step")
    assert "no longer applies" in result.summary()


def test_rerecord_keeps_a_findings_record_and_leaves_a_fixed_one_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_failure(*finding(), tmp_path)
    before = load(path)
    monkeypatch.setitem(MODEL, "extra", True)  # one more yield point: the trace moves
    assert replay(before).trace_matches is False
    done = rerecord(before)
    assert done.action == "rerecorded", done.message
    after = load(path)
    assert after.found == before.found and after.explicit == before.explicit
    assert replay(after).verdict == "still fails" and replay(after).trace_matches
    monkeypatch.setitem(MODEL, "fixed", True)
    text = path.read_text()
    done = rerecord(load(path))
    assert done.action == "unchanged" and done.message.startswith("fixed")
    assert path.read_text() == text


def test_cases_of_bug_switches_and_old_findings_keep_their_meaning(tmp_path: Path) -> None:
    # A historical switch on: the check must keep firing, and the fix check replays it clean.
    case = counter_case()
    path = save_failure(case, execute(case, Explicit(RACE_STEPS)), tmp_path)
    data = json.loads(path.read_text())
    assert data["expected"] == LOST_UPDATE and "found" not in data and "violation" in data
    assert data["config"]["bugs"] == [RACY] and "decisions" in data["schedule"]
    result = replay(load(path))
    assert result.ok and result.verdict is None and result.fix is not None
    assert "verdict" not in result.to_json() and "found" not in result.to_json()
    # A finding saved before findings expected clean replays as it always did.
    old, run = finding()
    data = json.loads(save_failure(old, run, tmp_path / "new").read_text())
    data["expected"] = data.pop("found")["check"]
    legacy = from_json(data, tmp_path / "legacy.json")
    assert not legacy.is_finding and replay(legacy).ok and replay(legacy).verdict is None
    # "found" belongs to a case that expects the fix.
    data["found"] = {"check": LOST_UPDATE}
    with pytest.raises(CorpusError, match="found: a finding's case expects \"clean\""):
        from_json(data, tmp_path / "bad.json")


# ============================================================ B: vmfuzz fuzz, first contact
def test_durations() -> None:
    assert [parse_duration(t) for t in ("90s", "10m", "8h", "1h30m", "45", "2.5")] == [
        90, 600, 8 * 3600, 5400, 45, 2.5]
    for bad in ("", " ", "nan", "inf", "-5", "0", "0s", "10x", "1e3", "m"):
        with pytest.raises(DurationError):
            parse_duration(bad)


@pytest.mark.parametrize("value", ["nan", "inf", "-5", "", "0", "10x", "1e3", "0steps", "5kcpu"])
def test_fuzz_rejects_a_bad_budget_with_one_line(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fuzz", f"--budget={value}", "--no-save"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vmfuzz fuzz: error: --budget: ") and err.count("\n") == 1


def test_a_bad_progress_interval_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMFUZZ_PROGRESS_EVERY", "soon")
    assert main(["fuzz", "--max-examples", "1", "--no-save"]) == 2
    assert "VMFUZZ_PROGRESS_EVERY='soon'" in capsys.readouterr().err


def test_a_drawn_seed_is_printed_with_the_command_that_repeats_the_run() -> None:
    # (a work budget too: the drawn seed must not decide how long the default run takes)
    first = vmfuzz_cli("fuzz", "--max-examples", "30", "--budget", "30ksteps", "--json",
                       "--no-save")
    assert first.returncode == 0, first.stderr
    a = json.loads(first.stdout)
    assert a["seed_drawn"] is True and isinstance(a["seed"], int)
    assert a["repeat"] == (
        f"vmfuzz fuzz --seed {a['seed']} --budget 30ksteps --max-examples 30 --no-save")
    assert a["kernel"] == "the fixed kernel (no historical bug switch on)"
    again = vmfuzz_cli(*shlex.split(a["repeat"])[1:], "--json")
    b = json.loads(again.stdout)
    assert b["seed_drawn"] is False and b["repeat"] == a["repeat"]
    for key in ("seed", "examples", "mutant_runs", "probe_runs", "steps", "found"):
        assert a[key] == b[key], key
    # For people: the seed first (an interrupted run has printed it), then the summary.
    human = vmfuzz_cli("fuzz", "--max-examples", "3", "--mutants", "0", "--no-save")
    assert human.returncode == 0, human.stderr
    assert "vmfuzz fuzz: the fixed kernel (no historical bug switch on), seed " in human.stderr
    assert "(drawn), for 3 examples" in human.stderr
    assert "vmfuzz fuzz: repeat this run: vmfuzz fuzz --seed " in human.stderr
    out = human.stdout
    assert "kernel: the fixed kernel" in out and "no failure found" in out
    assert "repeat: vmfuzz fuzz --seed " in out and "another seed" in out


def test_a_budget_ends_the_search_within_seconds() -> None:
    """Not at the end of a chunk of 100 examples: at the first example after the budget.

    The overrun is measured in examples' time, so a loaded machine (slower examples) cannot
    fail it and a search that finished its chunk (dozens of examples late) cannot pass."""
    res = vmfuzz_cli("fuzz", "--budget", "2", "--workers", "1", "--seed", "0", "--json",
                     "--no-save")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["budget"] == {"steps": None, "cpu_seconds": None, "wall_seconds": 2}
    assert out["ran_out"] == "wall"
    per_example = out["seconds"] / out["examples"]
    assert out["seconds"] - 2 < 0.5 + 3 * per_example, (out["seconds"], out["examples"])


def test_progress_lines_on_a_stderr_that_is_no_terminal() -> None:
    env = {**os.environ, "VMFUZZ_PROGRESS_EVERY": "0.5"}
    res = vmfuzz_cli("fuzz", "--budget", "3", "--workers", "1", "--seed", "0", "--no-save",
                     env=env)
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.startswith("vmfuzz fuzz: [")]
    assert len(lines) >= 3, res.stderr
    assert "\r" not in res.stderr


def test_the_status_line_is_redrawn_only_on_a_terminal() -> None:
    for tty in (False, True):
        buf = io.StringIO()
        with Heartbeat(lambda: "status", every=0.05, stream=buf, tty=tty) as beat:
            time.sleep(0.3)
            beat.line("a line")
        text = buf.getvalue()
        assert "a line\n" in text and "status" in text
        assert ("\r" in text) == tty
        if not tty:
            assert set(text.splitlines()) == {"status", "a line"}


def test_a_finding_says_where_it_was_saved_and_what_to_try_next(tmp_path: Path) -> None:
    res = vmfuzz_cli("fuzz", "--bug", "detach_vmas_outside_ptl", "--seed", "0",
                     "--max-examples", "20", "--corpus", str(tmp_path))
    assert res.returncode == 1, res.stderr
    out = res.stdout
    assert "kernel: historical bug switch on: detach_vmas_outside_ptl" in out
    (case,) = tmp_path.glob("*.json")
    assert f"saved:  {case}" in out
    assert f"vmfuzz show {case}" in out and f"vmfuzz replay {case}" in out
    assert ("repeat: vmfuzz fuzz --bug detach_vmas_outside_ptl --seed 0 --max-examples 20 "
            f"--corpus {tmp_path}") in out
    shown = vmfuzz_cli("show", str(case))
    assert shown.returncode == 0, shown.stderr
