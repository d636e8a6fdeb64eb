"""The soak report's search view, its live page and several runs merged; progress lines when
stderr is not a terminal.  State folders are written by hand as a run writes them (no fuzzing:
these tests cost a few process starts)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from vmfuzz.soak._report import findings_over_time, pairs_per_hour
from vmfuzz.soak._state import new_stats


def _state(root: Path, name: str, run_id: int, pairs: list[list[str]], findings: list[str],
           ended: bool = True) -> Path:
    st = root / name
    (st / "workers").mkdir(parents=True)
    (st / "findings").mkdir()
    (st / "pool").mkdir()
    run = {"format": "vmfuzz-soak", "version": 1, "created": "x", "run_id": run_id,
           "config": {"bugs": [], "plugins": [], "ops": None, "corpus": str(root / "c"),
                      "schedulers": ["pct"]},
           "sessions": [{"workers": 2, "stop": "duration" if ended else None,
                         "ended": "x" if ended else None, "elapsed": 100.0}]}
    (st / "run.json").write_text(json.dumps(run))
    stats = new_stats()
    stats["elapsed"] = 100.0
    stats["totals"].update(steps=1000, examples=10, campaigns=2, pairs=len(pairs), pool=1)
    stats["series"] = [{"t": 0.0, "pairs": 0, "pool": 0, "findings": 0},
                       {"t": 50.0, "pairs": len(pairs) // 2, "pool": 1, "findings": 0},
                       {"t": 100.0, "pairs": len(pairs), "pool": 1, "findings": len(findings)}]
    (st / "stats.json").write_text(json.dumps(stats))
    (st / "pairs.json").write_text(json.dumps({"pairs": pairs}))
    (st / "pool" / "pool-slot0.json").write_text(json.dumps(  # (the report reads cases only)
        {"format": "vmfuzz-pool", "version": 1, "entries": [{"case": {"tasks": []}}]}))
    for i, sig in enumerate(findings):
        (st / "findings" / f"00000000{i}000-w0-failure-{i}.json").write_text(json.dumps(
            {"kind": "failure", "signature": sig, "message": f"m {sig}", "elapsed": 10.0 * i,
             "worker": 0, "check": sig.split("|")[0]}))
    return st


def _report(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vmfuzz", "report", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_report_merges_several_runs(tmp_path: Path) -> None:
    a = _state(tmp_path, "a", 1, [["", "x"], ["x", "y"]], ["c1|l", "c2|l"])
    b = _state(tmp_path, "b", 1, [["x", "y"], ["y", "z"], ["", "z"]], ["c1|l"])
    res = _report(tmp_path, str(a), str(b), "--json", "--html", "all.html")
    assert res.returncode == 1, res.stderr
    m = json.loads(res.stdout)
    assert m["pairs"] == 4  # ("x", "y") met by both runs counts once
    assert m["pool"] == 1  # one program, in both pools
    assert m["steps"] == 2000 and m["campaigns"] == 4
    assert sorted((f["signature"], f["hits"], len(f["states"])) for f in m["findings"]) == [
        ("c1|l", 2, 2), ("c2|l", 1, 1)]
    assert m["shared_identities"] == {"1": [str(a), str(b)]}
    page = (tmp_path / "all.html").read_text()
    assert "interleaving pairs met" in page and "<script" not in page
    text = _report(tmp_path, str(a), str(b)).stdout
    assert "share the run identity 1" in text and "4 distinct interleaving pairs" in text
    assert _report(tmp_path, str(a), "--html", "x.html").returncode == 2


def test_report_shows_the_search_on_one_time_axis(tmp_path: Path) -> None:
    a = _state(tmp_path, "a", 7, [["", "x"], ["x", "y"]], ["c1|l"])
    res = _report(tmp_path, str(a), "--json")
    s = json.loads(res.stdout)
    assert s["run_id"] == 7 and s["pairs"] == 2 and s["pool"] == 1
    assert s["new_pairs_last_hour"] == 2
    page = (a / "report.html").read_text()
    for title in ("distinct findings (cumulative)", "new interleaving pairs per hour",
                  "the shared pool (programs)"):
        assert title in page
    assert 'http-equiv="refresh"' not in page
    assert "search: 2 distinct interleaving pairs met" in (a / "summary.txt").read_text()


def test_report_watch_rewrites_a_reloading_page_until_the_session_ends(tmp_path: Path) -> None:
    a = _state(tmp_path, "a", 3, [["", "x"]], [], ended=False)
    proc = subprocess.Popen([sys.executable, "-m", "vmfuzz", "report", str(a), "--watch", "0.3"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        end = time.monotonic() + 60
        page = a / "report.html"
        while time.monotonic() < end and not (
                page.exists() and 'http-equiv="refresh"' in page.read_text()):
            time.sleep(0.2)
        assert 'http-equiv="refresh"' in page.read_text()
        run = json.loads((a / "run.json").read_text())
        run["sessions"][-1].update(ended="y", stop="duration")
        (a / "run.json").write_text(json.dumps(run))
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "the session has ended" in err
    assert 'http-equiv="refresh"' not in page.read_text()


def test_curves() -> None:
    series: list[dict[str, Any]] = [{"t": float(t), "pairs": 10 * t} for t in range(0, 601, 60)]
    rates = pairs_per_hour(series)
    assert rates and all(r == 36000.0 for _, r in rates)
    pts = findings_over_time([{"elapsed": 5.0}, {"elapsed": 2.0}], 10.0)
    assert pts[0] == (0.0, 0.0) and pts[-1] == (10.0, 2.0) and (2.0, 1.0) in pts


def test_progress_lines_when_stderr_is_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    from vmfuzz._cmd_soak import _StatusLine
    from vmfuzz.soak import Snapshot

    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    ui = _StatusLine(terminal=False, every=30.0)
    snap = Snapshot(elapsed=5, session_elapsed=5, duration=60, workers=2, alive=2, examples=9,
                    steps=99, steps_per_second=20, campaigns=1, findings=0, coverage=None,
                    stopping=None, pairs=321, pool=4)
    ui.status(snap)
    ui.status(snap)  # within 30 s of the last line: nothing
    ui.event("new finding")
    lines = err.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in err.getvalue() and "\x1b" not in err.getvalue()
    assert "pairs 321" in lines[0] and "pool 4" in lines[0]
    assert lines[1] == "vmfuzz soak: new finding"
