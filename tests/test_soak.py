"""Tests of soak runs: many workers, one saved file per failure, kill -9 + --resume loses nothing,
worker crashes are restarted and reported, Ctrl-C stops cleanly, the morning report comes out.

The racy and crashing operations live in a plugin module written here (``--plugin PATH``), so
that the spawned worker processes register them too.  Durations are tiny; a bug run costs what
finding and shrinking one failure costs (the random scheduler finds this one in a few examples).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vmfuzz.plugins import load_plugins
from vmfuzz.soak import (
    SEED_STRIDE,
    SoakConfig,
    SoakError,
    campaign_plan,
    parse_duration,
    read_jsonl,
    rerun_campaign,
)

PLUGIN = '''
"""Test operations for tests/test_soak.py (not shipped): a racy counter and a dying worker."""
import os

from vmfuzz._locks import Spinlock
from vmfuzz.invariants._registry import register as register_check
from vmfuzz.kernel.bugs import register as register_bug
from vmfuzz.kernel.ops import operation
from vmfuzz.violation import Violation

register_check("soaktest_lost_update", "integrity", "a counter lost an increment", "test only")
register_bug("soaktest_racy", "tests/test_soak.py", "counter++ without the lock",
             "soaktest_lost_update")
register_bug("soaktest_crash", "tests/test_soak.py", "the worker process dies", "worker_crash")


def _lock(k):
    lock = getattr(k, "_soaktest_lock", None)
    if lock is None:
        lock = k._soaktest_lock = Spinlock("soaktest_lock")
    return lock


@operation("soaktest_incr", mm="mm")
def soaktest_incr(k, mm):
    """counter++ under a spinlock (load/store without it under soaktest_racy)"""
    locked = not k.bug("soaktest_racy")
    if locked:
        yield k.sched.spin_lock(_lock(k))
    yield "soaktest_incr:load"
    v = k.stats.get("ctr", 0)
    yield "soaktest_incr:store"
    k.stats["ctr"] = v + 1
    if locked:
        k.sched.spin_unlock(_lock(k))
    k.stats["done"] = k.stats.get("done", 0) + 1
    if k.stats["ctr"] != k.stats["done"]:
        raise Violation("soaktest_lost_update", f"counter {k.stats['ctr']} after {k.stats['done']}")


@operation("soaktest_noop", mm="mm")
def soaktest_noop(k, mm):
    """a few scheduling points (the process dies under soaktest_crash)"""
    for _ in range(mm + 1):
        yield "soaktest_noop:loop"
    if k.bug("soaktest_crash") and mm == 2:
        os._exit(7)
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("plugin") / "soaktest_plugin.py"
    path.write_text(PLUGIN)
    yield path
    # The plugin may have been imported into this process: unregister what it added, so
    # later tests (the bug zoo, swarm over every operation) see only the real kernel.
    import sys

    from vmfuzz.invariants import CHECKS

    from vmfuzz.kernel import BUGS, OPS

    for name in ("soaktest_incr", "soaktest_noop"):
        OPS.pop(name, None)
    for name in ("soaktest_racy", "soaktest_crash"):
        BUGS.pop(name, None)
    CHECKS.pop("soaktest_lost_update", None)
    sys.modules.pop("soaktest_plugin", None)


def _soak(cwd: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vmfuzz", "soak", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )


def _json(res: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = res.stdout.strip().splitlines()
    assert lines, res.stderr
    return json.loads(lines[-1])


def _wait_for(pred: Any, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


def _logged_campaigns(state: Path) -> list[dict[str, Any]]:
    out = []
    for log in sorted((state / "workers").glob("slot*.log")):
        out.extend(read_jsonl(log))
    return out


# ============================================================================ units
def test_parse_duration() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("2m") == 120
    assert parse_duration("8h") == 8 * 3600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("45") == 45
    for bad in ("", "8x", "h", "-5s", "0s", "2m x"):
        with pytest.raises(SoakError):
            parse_duration(bad)


def test_campaign_plan_never_repeats_a_seed_and_rotates() -> None:
    seeds = {campaign_plan(w, i)[0] for w in range(8) for i in range(500)}
    assert len(seeds) == 8 * 500
    assert campaign_plan(1, 2)[0] == SEED_STRIDE + 2
    kinds = {(campaign_plan(0, i)[1], campaign_plan(0, i)[2].name) for i in range(9)}
    assert len(kinds) == 9  # every scheduler x profile within nine campaigns
    assert campaign_plan(0, 0)[1] != campaign_plan(1, 0)[1]


def test_svg_chart_is_self_contained() -> None:
    from vmfuzz.soak import svg_chart

    svg = svg_chart("t", [("a", [(0.0, 1.0), (10.0, 3.0)]), ("b", [])], markers=[(5.0, "x")])
    assert svg.startswith("<svg") and "<polyline" in svg and "<script" not in svg
    assert "http" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_usage_errors_are_one_line_exit_2(
    plugin: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vmfuzz.cli import main

    cases = [
        (["soak", "--duration", "8x"], "bad duration"),
        (["soak", "--workers", "0", "--duration", "1s"], "--workers"),
        (["soak", "--duration", "1s", "--plugin", str(plugin), "--bug", "nope",
          "--state", str(tmp_path / "a")], "unknown bug nope"),
        (["soak", "--duration", "1s", "--plugin", str(plugin), "--op", "nope",
          "--state", str(tmp_path / "b")], "unknown operation nope"),
        (["soak", "--duration", "1s", "--plugin", str(tmp_path / "missing.py"),
          "--state", str(tmp_path / "c")], "no such file"),
        (["soak", "--resume", "--duration", "1s", "--state", str(tmp_path / "d")],
         "holds no soak run"),
        (["report", str(tmp_path / "e")], "not a soak state directory"),
    ]
    for argv, msg in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "a").exists()  # nothing written on bad input


# ============================================================================ runs
@pytest.fixture(scope="module")
def bug_run(plugin: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Any]:
    d = tmp_path_factory.mktemp("bugrun")
    res = _soak(
        d, "--duration", "6s", "--workers", "2", "--plugin", str(plugin),
        "--bug", "soaktest_racy", "--op", "soaktest_incr", "--scheduler", "random",
        "--state", "st", "--corpus", "corpus", "--json",
    )
    return d, res, _json(res)


def test_bug_is_found_and_saved_once_across_workers(bug_run: tuple[Path, Any, Any]) -> None:
    d, res, summary = bug_run
    assert res.returncode == 1, res.stderr
    assert len(summary["findings"]) == 1
    f = summary["findings"][0]
    assert f["check"] == "soaktest_lost_update" and f["kind"] == "failure"
    assert sorted(f["workers"]) == [0, 1] and f["hits"] >= 2  # both workers found it ...
    files = sorted((d / "corpus").glob("*.json"))
    assert [str(p) for p in files] == [f["corpus"]]  # ... and it was saved once
    assert f["shrunk"] == {"tasks": 2, "threads": 2, "ops": 2, "steps": 6, "preemptions": 1}
    records = list((d / "st" / "findings").glob("*.json"))
    assert len(records) == f["hits"]
    timeline = Path(f["timeline"]).read_text()
    assert "soaktest_lost_update" in timeline and "soaktest_incr:store" in timeline


def test_saved_finding_replays_and_campaign_reruns(
    plugin: Path, bug_run: tuple[Path, Any, Any], tmp_path: Path
) -> None:
    from vmfuzz.corpus import load, replay, save_failure

    d, _, summary = bug_run
    f = summary["findings"][0]
    load_plugins([str(plugin)])
    assert replay(load(f["corpus"])).ok
    run = json.loads((d / "st" / "run.json").read_text())
    r = rerun_campaign(SoakConfig.from_json(run["config"]), f["seed"], f["scheduler"],
                       f["profile"], budget=60)
    assert r.found
    again = save_failure(r.case, r.failure.violation, tmp_path)
    assert again.name == Path(f["corpus"]).name  # the same failure, from seed + scheduler


def test_unshrunk_hit_of_a_saved_finding_is_counted_under_it(
    plugin: Path, bug_run: tuple[Path, Any, Any], tmp_path: Path
) -> None:
    """A campaign that met a failure the run had shrunk already keeps it unshrunk: the hit
    goes under the saved finding, its case to STATE/hits/, and the corpus gains no file."""
    from vmfuzz.case import execute
    from vmfuzz.corpus import load
    from vmfuzz.soak._findings import group_findings, known_like
    from vmfuzz.soak._worker import save_finding

    _, _, summary = bug_run
    f = summary["findings"][0]
    load_plugins([str(plugin)])
    cc = load(f["corpus"])
    v = execute(cc.case, cc.source()).outcome.violation
    assert v is not None
    state, corpus = tmp_path / "st", tmp_path / "corpus"
    (state / "findings").mkdir(parents=True)
    first: dict[str, Any] = {"kind": "failure", "worker": 0, "check": v.check,
                             "label": v.label}
    save_finding(state, str(corpus), cc.case, v, {}, first)
    like = known_like([first], v.check, v.label)
    assert like is first
    hit: dict[str, Any] = {"kind": "failure", "worker": 1,
                           "shrunk": {"steps": 1}}  # smaller than the saved one: not shown
    assert save_finding(state, str(corpus), cc.case, v, {}, hit, like) is None
    assert hit["signature"] == first["signature"] and hit["corpus"] == first["corpus"]
    assert len(list(corpus.glob("*.json"))) == 1
    assert Path(hit["hit_case"]).parent == (state / "hits").resolve()
    assert load(hit["hit_case"]).case == cc.case  # the hit's case is kept, as data
    first["shrunk"] = {"steps": 6}
    (g,) = group_findings([first, hit])
    assert g["hits"] == 2 and g["workers"] == [0, 1] and g["shrunk"] == {"steps": 6}
    assert known_like([first], v.check, "elsewhere") is None


def test_report_prints_the_summary_again(bug_run: tuple[Path, Any, Any]) -> None:
    d, _, summary = bug_run
    timeline = Path(summary["findings"][0]["timeline"])
    drawn = timeline.read_text()
    timeline.unlink()  # e.g. killed between saving the case and drawing it: drawn again
    res = subprocess.run([sys.executable, "-m", "vmfuzz", "report", "st"], cwd=d,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    assert res.stdout == (d / "st" / "summary.txt").read_text()
    assert "findings: 1 distinct" in res.stdout and "timeline:" in res.stdout
    assert timeline.read_text() == drawn
    res = subprocess.run([sys.executable, "-m", "vmfuzz", "report", "st", "--json"], cwd=d,
                         capture_output=True, text=True, timeout=120)
    again = _json(res)
    assert again["steps"] == summary["steps"] and again["findings"] == summary["findings"]
    page = (d / "st" / "report.html").read_text()
    assert page.count("<svg") >= 3 and "<script" not in page
    assert "soaktest_incr:store" in page  # the finding's timeline is on the page


def test_report_sums_the_shrink_passes(bug_run: tuple[Path, Any, Any]) -> None:
    """Every shrunk failure's per-pass statistics are in its record, and the report sums
    them per pass, in the shrinker's order.  A failure like one the run had already shrunk
    (same check and label) is not shrunk again: its record has no passes."""
    from vmfuzz.shrink import PASSES

    d, _, summary = bug_run
    found = [json.loads(p.read_text()) for p in (d / "st" / "findings").glob("*.json")]
    records = [r for r in found if r["shrink_passes"]]
    shrunk = {(r["check"], r["label"]) for r in records}
    assert all((r["check"], r["label"]) in shrunk for r in found if not r["shrink_passes"])
    per_record = [[p["name"] for p in r["shrink_passes"]] for r in records]
    names = [p.name for p in PASSES]
    assert per_record and all(n == [x for x in names if x in n] and n for n in per_record)
    passes = summary["shrink_passes"]
    assert [p["name"] for p in passes] == per_record[0]
    for p in passes:
        assert p["runs"] == sum(q["runs"] for r in records for q in r["shrink_passes"]
                                if q["name"] == p["name"])
        assert p["failures"] == len(records)
    text = (d / "st" / "summary.txt").read_text()
    assert "shrink passes" in text and passes[0]["name"] in text
    assert "Shrink passes" in (d / "st" / "report.html").read_text()


def test_worker_crash_is_restarted_and_reported(plugin: Path, tmp_path: Path) -> None:
    res = _soak(
        tmp_path, "--duration", "6s", "--workers", "1", "--plugin", str(plugin),
        "--bug", "soaktest_crash", "--op", "soaktest_noop", "--scheduler", "random",
        "--coverage-every", "0", "--state", "st", "--json", "--seed", "0",
    )
    assert res.returncode == 1, res.stderr
    summary = _json(res)
    crashes = [f for f in summary["findings"] if f["kind"] == "crash"]
    assert [c["signature"] for c in crashes] == ["worker_crash|exit status 7"]
    assert crashes[0]["seed"] == 0 and crashes[0]["scheduler"] == "random"
    stats = json.loads((tmp_path / "st" / "stats.json").read_text())
    assert stats["worker_status"][0]["restarts"] >= 1
    # The restarted worker went on with fresh seeds (and died again on some of them).
    slot = json.loads((tmp_path / "st" / "workers" / "slot0.json").read_text())
    assert slot["next"] >= 2 and slot["current"] is None
    seeds = [json.loads(p.read_text())["seed"] for p in (tmp_path / "st" / "findings").iterdir()]
    assert len(seeds) == crashes[0]["hits"] == len(set(seeds))


def test_kill9_then_resume_keeps_every_finding(plugin: Path, tmp_path: Path) -> None:
    args = [
        sys.executable, "-m", "vmfuzz", "soak", "--duration", "120s", "--workers", "2",
        "--plugin", str(plugin), "--bug", "soaktest_racy", "--op", "soaktest_incr",
        "--scheduler", "random", "--coverage-every", "0", "--state", "st", "--corpus", "corpus",
    ]
    proc = subprocess.Popen(args, cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    findings = tmp_path / "st" / "findings"
    try:
        _wait_for(lambda: any(findings.glob("*.json")), 90)
        time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole run: parent and workers
        proc.wait()
    before = {p.name: p.read_text() for p in findings.glob("*.json")}
    corpus_before = sorted(p.name for p in (tmp_path / "corpus").glob("*.json"))
    assert before and corpus_before
    res = _soak(tmp_path, "--resume", "--duration", "2s", "--state", "st", "--json")
    assert res.returncode == 1, res.stderr
    summary = _json(res)
    for name, text in before.items():
        assert (findings / name).read_text() == text
    assert set(corpus_before) <= {p.name for p in (tmp_path / "corpus").glob("*.json")}
    sigs = {json.loads(t)["signature"] for t in before.values()}
    assert sigs <= {f["signature"] for f in summary["findings"]}
    assert summary["sessions"] == 2
    assert summary["interrupted"]  # the campaigns in flight at the kill are recorded
    logged = [c["seed"] for c in _logged_campaigns(tmp_path / "st")]
    started = logged + [c["seed"] for c in summary["interrupted"]]
    assert len(started) == len(set(started))  # no seed ran twice, across the kill and resume


def test_ctrl_c_stops_cleanly_and_fixed_kernel_finds_nothing(
    plugin: Path, tmp_path: Path
) -> None:
    args = [
        sys.executable, "-m", "vmfuzz", "soak", "--duration", "120s", "--workers", "2",
        "--plugin", str(plugin), "--op", "soaktest_incr", "--op", "soaktest_noop",
        "--coverage-every", "1", "--state", "st", "--json",
    ]
    proc = subprocess.Popen(args, cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stats_file = tmp_path / "st" / "stats.json"

    def going() -> bool:
        try:
            st = json.loads(stats_file.read_text())
        except (OSError, ValueError):
            return False
        return st["totals"]["examples"] > 0 and bool(st.get("coverage"))

    try:
        _wait_for(going, 90)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["stop"] == "interrupted" and summary["findings"] == []
    assert summary["examples"] > 0 and summary["steps"] > 0
    assert summary["coverage"]["lines"] > 0 and summary["coverage"]["sampled_chunks"] >= 1
    stats = json.loads(stats_file.read_text())
    assert set(stats["totals"]["ops"]) == {"soaktest_incr", "soaktest_noop"}
    assert "soaktest_incr:store" in stats["totals"]["labels"]
    assert stats["series"] and all(s["pid"] is None for s in stats["worker_status"])
    # A short run's workers stay small (long runs are bounded by recycling the workers).
    rss = [v for s in stats["series"] for v in s["rss_mb"].values()]
    assert rss and max(rss) < 400


def test_fixed_kernel_soak_finds_nothing(tmp_path: Path) -> None:
    from vmfuzz.kernel import OPS

    model_ops = [n for n, spec in OPS.items() if spec.fn.__module__.startswith("vmfuzz.kernel")]
    if not model_ops:
        pytest.skip("no kernel operations registered yet")
    res = _soak(tmp_path, "--duration", "5s", "--workers", "2", "--coverage-every", "2",
                "--state", "st", "--corpus", "corpus", "--json")
    summary = _json(res)
    assert summary["findings"] == [], summary["findings"]
    assert res.returncode == 0, res.stderr
    assert summary["campaigns"] >= 2 and summary["steps"] > 0
    assert not (tmp_path / "corpus").exists()
    assert (tmp_path / "st" / "report.html").exists()


@pytest.mark.long
def test_workers_are_recycled_without_repeating_seeds(plugin: Path, tmp_path: Path) -> None:
    from vmfuzz.soak import SoakOptions, run_soak

    config = SoakConfig(plugins=(str(plugin),), ops=("soaktest_incr", "soaktest_noop"),
                        corpus=str(tmp_path / "corpus"), schedulers=("random",))
    opts = SoakOptions(state_dir=tmp_path / "st", duration=8.0, workers=1, config=config,
                       campaign_seconds=0.5, sample_every=0, recycle_campaigns=1)
    summary = run_soak(opts)
    assert summary["findings"] == []
    stats = json.loads((tmp_path / "st" / "stats.json").read_text())
    assert stats["worker_status"][0]["restarts"] >= 1  # a fresh process after each campaign
    seeds = [c["seed"] for c in _logged_campaigns(tmp_path / "st")]
    assert len(seeds) >= 2 and seeds == sorted(set(seeds))


def _worker_done_before_the_deadline(args: Any, conn: Any) -> None:
    """A worker that leaves as a real one does when too little time is left for a campaign."""
    time.sleep(max(0.0, args.deadline - time.monotonic() - 1.0))
    conn.close()


def test_workers_leaving_at_the_deadline_end_the_session_by_duration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session ends before its deadline when every worker has left: the stop is the
    duration (before, it was left null, and ``--resume`` summaries read ``stop: null``)."""
    from vmfuzz.soak import SoakOptions, _supervisor, run_soak

    monkeypatch.setattr(_supervisor, "worker_entry", _worker_done_before_the_deadline)
    opts = SoakOptions(state_dir=tmp_path / "st", duration=2.0, workers=1,
                       config=SoakConfig(corpus=""), sample_every=0)
    summary = run_soak(opts)
    assert summary["stop"] == "duration", summary
    run = json.loads((tmp_path / "st" / "run.json").read_text())
    assert run["sessions"][-1]["stop"] == "duration"
