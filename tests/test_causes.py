"""Causal verdicts: each violation names the events behind it (who freed the object, the lost
write, the last count changes), as data and in `vmfuzz show`'s mail view."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import pytest

from vmfuzz.case import Case, OpCall, TaskSpec, execute
from vmfuzz.causes import Cause, explain
from vmfuzz.cli import main
from vmfuzz.corpus import attempt, load, save_failure
from vmfuzz.kernel import KernelConfig
from vmfuzz.violation import Violation

ROOT = Path(__file__).resolve().parent.parent
BUG_CASES = sorted((ROOT / "corpus" / "bugs").glob("*.json"))
BOOM = ROOT / "corpus" / "bugs" / "swapout_vma_after_unlock.json"


def diagram(text: str) -> list[str]:
    """The drawn rows: between the column rule and the blank line before the footer."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "---" in line and not line.strip(" -|"))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].strip())
    return lines[start + 1 : end]


@pytest.mark.parametrize("path", BUG_CASES, ids=[p.stem for p in BUG_CASES])
def test_show_names_the_step_and_task_behind_each_bug_case(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cc = load(path)
    assert main(["show", str(path), "--width", "120"]) == 0
    out = capsys.readouterr().out
    run = attempt(cc).run
    assert run is not None and run.outcome.violation is not None
    v = run.outcome.violation
    causes = run.explain()
    assert causes, f"{path.name}: no event named behind {v.check}"
    tasks = {t.name for t in cc.case.tasks}
    for c in causes:
        assert c.task in tasks and 0 <= c.step <= (v.step or 0)
        assert f"{c.role} {c.task} at step {c.step} (" in out  # the footer names it
        # ... and the diagram draws that step, in that task's column
        row = next(r for r in diagram(out) if re.match(rf"^[* ] +{c.step} ", r))
        head = next(line for line in out.splitlines() if re.match(r"^ +T\d", line))
        col = head.index(c.task)
        assert row[col:].strip(), f"step {c.step} is not in {c.task}'s column"


def test_the_boom_case_fits_in_about_ten_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """Seed 000: T0's ->swapout() sleeps holding a vma pointer, T1's munmap frees the vma."""
    assert main(["show", str(BOOM), "--width", "100"]) == 0
    out = capsys.readouterr().out
    rows = diagram(out)
    assert len(rows) <= 12
    drawn = "\n".join(rows)
    assert "do_munmap: frees vma1[0,1) of mm0" in drawn and "<<< use_after_free" in drawn
    assert "[takes" not in drawn  # lock events folded
    assert "freed by T1 at step 19 (do_munmap (free_vma)" in out
    assert main(["show", str(BOOM), "--width", "100", "--full"]) == 0
    full = diagram(capsys.readouterr().out)
    assert len(full) > 2 * len(rows) and "[takes" in "\n".join(full)


def test_a_one_task_finding_is_drawn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """vma_adjust rewrites vm_start before vm_pgoff without the anon_vma lock: the check fires
    inside one task, and the drawing still shows the steps that did it."""
    case = Case(
        KernelConfig(bugs=frozenset({"vma_adjust_no_anon_vma_lock"})),
        (TaskSpec("T0", (OpCall("mmap", {"mm": 0, "addr": 0, "npages": 2}),
                         OpCall("read", {"mm": 0, "addr": 1}),
                         OpCall("mprotect", {"mm": 0, "addr": 1, "npages": 1, "flag": 0}))),),
    )
    run = execute(case)
    assert run.outcome.check == "rmap_reachable"
    path = save_failure(case, run, tmp_path)
    assert main(["show", str(path), "--width", "100"]) == 0
    out = capsys.readouterr().out
    assert "only T0 ran" not in out
    drawn = "\n".join(diagram(out))
    assert "vma_adjust: mm0 vmas now vma1[1," in drawn
    assert "do_anonymous_page: set_pte mm0 page 1 = pfn 0" in drawn


def test_causes_are_data_in_to_json_pickles_and_case_files(tmp_path: Path) -> None:
    cc = load(BOOM)
    run = execute(cc.case, cc.source())
    causes = run.explain()
    v = run.outcome.violation
    assert v is not None and causes == v.causes
    assert v.to_json()["causes"] == [
        {"role": "freed by", "step": 19, "task": "T1", "where": "do_munmap (free_vma)",
         "what": "frees vma1[0,1) of mm0", "label": "exit"}
    ]
    again = pickle.loads(pickle.dumps(v))
    assert again.causes == causes
    assert [Cause.from_json(c) for c in v.to_json()["causes"]] == causes
    path = save_failure(cc.case, run, tmp_path)
    saved = json.loads(path.read_text())
    assert saved["violation"]["causes"][0]["task"] == "T1"
    assert load(path).violation == saved["violation"]  # the field is part of the format


def test_replay_json_carries_the_causes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--json", str(BOOM)]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["violation"]["causes"][0]["role"] == "freed by"


def test_a_count_mismatch_names_the_last_changes_of_the_count() -> None:
    """A count check names the steps that last changed the page's counts (here on a clean run:
    the selection alone)."""
    case = Case(KernelConfig(), (
        TaskSpec("T0", (OpCall("mmap", {"mm": 0, "addr": 0, "npages": 1}),
                        OpCall("write", {"mm": 0, "addr": 0}))),
        TaskSpec("T1", (OpCall("munmap", {"mm": 0, "addr": 0, "npages": 1}),)),
    ))
    run = execute(case)
    assert run.outcome.kind == "clean"
    v = Violation("mapcount_matches_ptes", "made up", pfn=0)
    causes = explain(v, run.kernel, run.sched.trace)
    assert 1 <= len(causes) <= 3 and all(c.role == "count changed by" for c in causes)
    assert causes[-1].task == "T1" and "mapcount 1 -> 0" in " ".join(c.what for c in causes)
    lost = Violation("data_integrity", "made up", mm="mm0", addr=0, expected=1, found=0)
    write = next(c for c in explain(lost, run.kernel, run.sched.trace)
                 if c.role == "lost write:")
    assert write.task == "T0" and "stores token 1 at mm0 page 0" in write.what


def test_the_history_is_the_same_in_every_run() -> None:
    cc = load(BOOM)
    first, second = execute(cc.case, cc.source()), execute(cc.case, cc.source())
    assert first.kernel.history == second.kernel.history and first.kernel.history
