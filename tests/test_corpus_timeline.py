"""The kernel-mail timeline (`vmfuzz show`): a column per task, a line per step, the check last."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_corpus_ops import RACE_STEPS, counter_case, race_json, registered

from vmfuzz._scheduler import TraceStep
from vmfuzz.case import execute
from vmfuzz.cli import main
from vmfuzz.corpus import attempt, load, save_failure
from vmfuzz.schedules import Explicit
from vmfuzz.timeline import render_attempt, render_timeline


@pytest.fixture(scope="module", autouse=True)
def _test_ops() -> Iterator[None]:
    with registered():
        yield


def saved_race(tmp_path: Path, extra: int = 0) -> Path:
    case = counter_case(extra=extra)
    return save_failure(case, execute(case, Explicit(RACE_STEPS)), tmp_path)


def diagram_rows(text: str) -> list[str]:
    """The lines between the column rule and the blank line before the footer."""
    lines = text.splitlines()
    start = next(
        i for i, line in enumerate(lines) if "---" in line and not line.strip(" -|")
    )
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].strip())
    return lines[start + 1 : end]


def step_numbers(rows: list[str]) -> list[int]:
    """Step numbers in the margin (continuation lines of wrapped cells have none)."""
    out = []
    for r in rows:
        m = re.match(r"^[* ] +(\d+) ", r)
        if m:
            out.append(int(m.group(1)))
    return out


def test_columns_steps_and_violation(tmp_path: Path) -> None:
    cc = load(saved_race(tmp_path))
    text = render_attempt(cc, attempt(cc), width=100)
    lines = text.splitlines()
    head = next(line for line in lines if line.strip().startswith("T1") and "| T2" in line)
    t2_col = head.index("T2")
    rows = [r for r in diagram_rows(text) if re.match(r"^[* ] +\d+ ", r)]
    # One line per step, steps 0..4 in order.
    assert step_numbers(rows) == [0, 1, 2, 3, 4]
    owners = ["T2" if len(r) > t2_col and r[t2_col:].strip() else "T1" for r in rows]
    assert owners == ["T1", "T2", "T2", "T2", "T1"]
    assert rows[1][t2_col:].startswith("test_counter_incr:after_read")
    assert rows[4].startswith("* 4")
    marked = diagram_rows(text).index(rows[4])
    assert "<<< test_lost_update" in " ".join(diagram_rows(text)[marked : marked + 2])
    # The check and its message at the bottom.
    assert lines[-3].startswith("*** test_lost_update at step 4 (T1 at")
    assert lines[-2].strip() == "counter is 1 after 2 increments"
    assert lines[-1] == "expected: test_lost_update (matches)"
    assert "T1: test_counter_incr()" in text and "bugs: test_racy_counter" in text


def test_lock_events_are_shown(tmp_path: Path) -> None:
    data = race_json(expected="clean", config={})
    path = tmp_path / "fixed.json"
    path.write_text(json.dumps(data))
    cc = load(path)
    text = render_attempt(cc, attempt(cc, strict=False), width=160)
    assert "[takes mmlist_lock]" in text
    assert "[blocks on mmlist_lock]" in text
    assert "wakes, takes mmlist_lock" in text


@pytest.mark.parametrize("width", [40, 57, 80, 133, 200])
def test_width_is_respected(tmp_path: Path, width: int) -> None:
    cc = load(saved_race(tmp_path, extra=2))
    text = render_attempt(cc, attempt(cc), width=width)
    assert max(len(line) for line in text.splitlines()) <= width
    assert "counter is 1 after 2 increments" in " ".join(text.split())


def test_long_labels_wrap_inside_their_column() -> None:
    label = "a_really_long_function_name_for_testing:" + "x" * 50
    trace = [
        TraceStep(0, "T1", label, "takes some->very_long_lock_name", ("l",)),
        TraceStep(1, "T2", "short:label", "", ()),
    ]
    text = render_timeline(trace, ["T1", "T2"], width=50)
    assert max(len(line) for line in text.splitlines()) <= 50
    t2_col = text.splitlines()[0].index("T2")
    first_cells = [line[:t2_col].strip() for line in text.splitlines()[2:] if line.strip()]
    joined = "".join(c.replace("|", "").split()[-1] if c else "" for c in first_cells)
    assert "x" * 20 in joined  # the label went on over several lines, nothing cut off
    assert "short:label" in text.splitlines()[-1]


def test_long_solo_prefix_is_elided_and_said_so(tmp_path: Path) -> None:
    cc = load(saved_race(tmp_path, extra=40))
    text = render_attempt(cc, attempt(cc), width=100)
    assert "only T1 ran" in text and "elided" in text
    shown = step_numbers(diagram_rows(text))
    total = cc.steps
    assert total is not None and total > 40
    assert len(shown) < 10 and shown[-1] == total - 1
    full = render_attempt(cc, attempt(cc), width=100, full=True)
    assert "elided" not in full
    assert step_numbers(diagram_rows(full)) == list(range(total))


def test_a_setup_task_that_never_runs_again_loses_its_column(tmp_path: Path) -> None:
    data = race_json()
    data["tasks"].insert(0, {"name": "setup", "ops": [{"op": "test_spin", "args": {"count": 30}}]})
    data["schedule"]["explicit"].insert(0, "run setup to completion")
    path = tmp_path / "setup.json"
    path.write_text(json.dumps(data))
    cc = load(path)
    text = render_attempt(cc, attempt(cc), width=100)
    assert "only setup ran" in text
    head = next(line for line in text.splitlines() if "| T2" in line)
    assert head.split() == ["T1", "|", "T2"]
    assert "test_spin" not in "".join(diagram_rows(text))
    full = render_attempt(cc, attempt(cc), width=100, full=True)
    assert "setup" in next(line for line in full.splitlines() if "| T2" in line)


def test_short_runs_are_not_elided(tmp_path: Path) -> None:
    cc = load(saved_race(tmp_path, extra=3))
    assert "elided" not in render_attempt(cc, attempt(cc), width=100)


def test_show_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = saved_race(tmp_path)
    assert main(["show", str(path), "--width", "60"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 60
    assert "*** test_lost_update" in out and "| T2" in out


def test_show_fix_draws_the_fixed_kernel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = saved_race(tmp_path)
    assert main(["show", str(path), "--fix", "--width", "100"]) == 0
    out = capsys.readouterr().out
    assert "bug switch off" in out and "--- clean" in out and "expected: clean (matches)" in out


def test_show_explicit_prints_steps_that_replay_the_case(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = saved_race(tmp_path, extra=2)
    assert main(["show", str(path), "--explicit"]) == 0
    steps = json.loads(capsys.readouterr().out)
    cc = load(path)
    again = execute(cc.case, Explicit(steps))
    assert again.outcome.trace_sha256 == cc.trace_sha256


def test_show_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "vmfuzz-case", "version": 3}')
    assert main(["show", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(bad) in err and "version 3" in err
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(race_json(expected="clean")))
    assert main(["show", str(wrong), "--width", "80"]) == 1
    assert "expected: clean, observed: test_lost_update (DIFFERS)" in capsys.readouterr().out


def test_a_diverged_run_shows_its_partial_trace(tmp_path: Path) -> None:
    data = race_json(expected="clean", config={})
    data["tasks"].append({"name": "T3", "ops": [{"op": "test_spin", "args": {"count": 2}}]})
    data["schedule"] = {"explicit": ["run T1 until test_counter_incr:nowhere", "run T2 until exit"]}
    path = tmp_path / "div.json"
    path.write_text(json.dumps(data))
    cc = load(path)
    att = attempt(cc)
    assert att.observed == "diverged"
    text = render_attempt(cc, att, width=100)
    assert "T1 exited" in text
    assert "T3: test_spin(count=2)" in text  # listed, though it never ran (so no column)
    assert "test_counter_incr:after_write" in text  # the steps run before the divergence
