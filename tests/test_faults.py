"""Faults: no unwritable corpus, full disk or damaged state file loses a finding or a count.

The full disk is the documented write fault hook (``VMFUZZ_WRITE_FAULT``, :mod:`vmfuzz._write`):
while its flag file exists, every write below the flag's folder fails with ENOSPC (or the errno
the flag names), in every process of a run.  The failure found comes from a plugin written here
whose one operation fails at once under its bug switch, so a campaign finds and shrinks it in a
few examples.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vmfuzz._write import FAULT_ENV, write_text

PLUGIN = '''
"""A failure on the first run of one operation (tests/test_faults.py; not shipped)."""
from vmfuzz.invariants._registry import register as register_check
from vmfuzz.kernel.bugs import register as register_bug
from vmfuzz.kernel.ops import operation
from vmfuzz.violation import Violation

register_check("faulttest_hit", "integrity", "the test operation ran", "test only")
register_bug("faulttest_bug", "tests/test_faults.py", "the operation fails", "faulttest_hit")


@operation("faulttest_op", mm="mm")
def faulttest_op(k, mm):
    """fails at once under faulttest_bug"""
    yield "faulttest_op:run"
    if k.bug("faulttest_bug"):
        raise Violation("faulttest_hit", "the test operation ran")
'''


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A run's environment: the fault hook's flag in tmp/disk, the fallback folder tmp/fallback."""
    (tmp_path / "faulttest_plugin.py").write_text(PLUGIN)
    (tmp_path / "disk").mkdir()
    e = dict(os.environ)
    e[FAULT_ENV] = str(tmp_path / "disk" / "FULL")
    e["VMFUZZ_FALLBACK_DIR"] = str(tmp_path / "fallback")
    e.pop("VMFUZZ_TRACEBACK", None)
    return e


def _run(tmp_path: Path, env: dict[str, str], *args: str,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vmfuzz", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


FUZZ = ("fuzz", "--plugin", "faulttest_plugin.py", "--bug", "faulttest_bug", "--seed", "0",
        "--max-examples", "50", "--json")


def _saved_elsewhere(tmp_path: Path, res: subprocess.CompletedProcess[str]) -> None:
    """The run found the failure, saved it to the fallback folder and said so: exit 4."""
    assert res.returncode == 4, res.stderr
    out = json.loads(res.stdout)
    assert out["found"] and out["saved"]["fallback"] and out["saved"]["corpus_error"]
    path = Path(out["case"])
    assert path.parent == tmp_path / "fallback" and path.is_file()
    assert str(path) in res.stderr and "Traceback" not in res.stderr
    from vmfuzz.corpus import load

    assert load(path).expected == "faulttest_hit"


@pytest.mark.faults
@pytest.mark.parametrize("kind", ["file", "read-only", "full"])
def test_fuzz_corpus_unwritable_loses_no_finding(
    kind: str, tmp_path: Path, env: dict[str, str]
) -> None:
    corpus = tmp_path / "disk" / "corpus"
    if kind == "file":
        corpus.write_text("not a folder")
    elif kind == "read-only":  # the hook: root ignores a folder's mode bits
        corpus.mkdir()
        (tmp_path / "disk" / "FULL").write_text("EROFS")
    else:
        (tmp_path / "disk" / "FULL").write_text("ENOSPC")
    res = _run(tmp_path, env, *FUZZ, "--corpus", str(corpus))
    assert "warning: cannot write the corpus" in res.stderr  # said before the search
    _saved_elsewhere(tmp_path, res)


@pytest.mark.faults
def test_fuzz_corpus_read_only_folder(tmp_path: Path, env: dict[str, str]) -> None:
    """A real read-only folder (mode 0555) when this user is bound by modes."""
    if os.geteuid() == 0:
        pytest.skip("root ignores a folder's mode bits (the hook's EROFS case covers it)")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    corpus.chmod(0o555)
    try:
        _saved_elsewhere(tmp_path, _run(tmp_path, env, *FUZZ, "--corpus", str(corpus)))
    finally:
        corpus.chmod(0o755)


def test_files_are_written_with_the_users_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.json", "{}\n")
        os.umask(0o077)
        write_text(tmp_path / "b.json", "{}\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o600


def test_fault_hook_fails_writes_below_its_folder_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAULT_ENV, str(tmp_path / "disk" / "FULL"))
    (tmp_path / "disk").mkdir()
    write_text(tmp_path / "disk" / "x", "ok")  # no flag yet
    (tmp_path / "disk" / "FULL").write_text("")
    with pytest.raises(OSError, match="No space left"):
        write_text(tmp_path / "disk" / "sub" / "y", "no")
    write_text(tmp_path / "elsewhere", "ok")
    assert not (tmp_path / "disk" / "sub" / "y").exists()
    assert [p.name for p in (tmp_path / "disk").iterdir()].count("x") == 1
    assert not [p for p in (tmp_path / "disk").iterdir() if p.name.endswith(".tmp")]


# ============================================================================ soak
SOAK = ("soak", "--plugin", "faulttest_plugin.py", "--bug", "faulttest_bug",
        "--op", "faulttest_op", "--scheduler", "random", "--coverage-every", "0",
        "--workers", "1", "--state", "disk/st", "--corpus", "disk/corpus", "--json")


def _summary(res: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = res.stdout.strip().splitlines()
    assert lines, res.stderr
    out: dict[str, Any] = json.loads(lines[-1])
    return out


@pytest.mark.faults
def test_soak_checks_it_can_write_before_it_starts(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "disk" / "FULL").write_text("")
    res = _run(tmp_path, env, *SOAK, "--duration", "5s")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "cannot write the state folder" in res.stderr
    (tmp_path / "disk" / "FULL").unlink()
    (tmp_path / "disk" / "corpus").write_text("a file")
    res = _run(tmp_path, env, *SOAK, "--duration", "5s")
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "cannot write the corpus" in res.stderr


@pytest.mark.faults
def test_soak_full_disk_stops_cleanly_loses_nothing_and_resumes(
    tmp_path: Path, env: dict[str, str]
) -> None:
    # The disk fills up when the first finding is in: the worker's next write fails.
    flag = tmp_path / "disk" / "FULL"
    # A watcher process beside the run creates the flag.
    watcher = subprocess.Popen([sys.executable, "-c", (
        "import pathlib, time, sys\n"
        f"f = pathlib.Path({str(tmp_path / 'disk' / 'st' / 'findings')!r})\n"
        "end = time.monotonic() + 100\n"
        "while not list(f.glob('*.json')) and time.monotonic() < end:\n"
        "    time.sleep(0.02)\n"
        f"pathlib.Path({str(flag)!r}).write_text('')\n"
    )])
    try:
        res = _run(tmp_path, env, *SOAK, "--duration", "60s")
    finally:
        watcher.kill()
        watcher.wait()
    assert res.returncode == 4, res.stderr
    assert "Traceback" not in res.stderr and "free space" in res.stderr
    s = _summary(res)
    assert s["stop"] == "disk" and s["write_error"]
    assert s["findings"], "the finding made before the disk filled is in the summary"
    for f in s["findings"]:  # each in the corpus or the fallback folder, or its text shown
        assert (f.get("corpus") and Path(f["corpus"]).is_file()) or f.get("case_text")
    saved = list((tmp_path / "disk" / "corpus").glob("*.json"))
    assert saved
    before = {p.name for p in (tmp_path / "disk" / "st" / "findings").glob("*.json")}
    flag.unlink()  # room again
    res = _run(tmp_path, env, *SOAK[:-7], "--resume", "--state", "disk/st", "--json",
               "--duration", "3s")
    assert res.returncode == 1, res.stderr
    s2 = _summary(res)
    assert s2["sessions"] == 2 and s2["campaigns"] > s["campaigns"]
    assert before <= {p.name for p in (tmp_path / "disk" / "st" / "findings").glob("*.json")}


def _state_with(tmp_path: Path) -> Path:
    """A small finished soak state folder, written by hand as a run writes it."""
    from vmfuzz.soak._state import new_stats

    st = tmp_path / "st"
    (st / "workers").mkdir(parents=True)
    (st / "findings").mkdir()
    run = {"format": "vmfuzz-soak", "version": 1, "created": "x",
           "config": {"bugs": [], "plugins": [], "ops": None, "corpus": str(tmp_path / "c"),
                      "schedulers": ["random"]},
           "sessions": [{"workers": 1, "stop": "duration", "ended": "x", "elapsed": 1.0}]}
    (st / "run.json").write_text(json.dumps(run))
    stats = new_stats()
    stats["elapsed"] = 1.0
    (st / "stats.json").write_text(json.dumps(stats))
    (st / "workers" / "slot0.json").write_text(json.dumps({"slot": 0, "next": 3,
                                                           "current": None}))
    (st / "findings" / "000000001000-w0-failure-1.json").write_text(json.dumps(
        {"kind": "failure", "signature": "x|y", "message": "m", "elapsed": 1.0, "worker": 0}))
    return st


def _truncate(p: Path) -> None:
    p.write_text(p.read_text()[: len(p.read_text()) // 2])


CORRUPT = {
    "run.json truncated": ("run.json", _truncate),
    "stats.json truncated": ("stats.json", _truncate),
    "stats.json empty": ("stats.json", lambda p: p.write_text("")),
    "stats.json steps a string": ("stats.json", lambda p: p.write_text(
        p.read_text().replace('"steps": 0', '"steps": "many"'))),
    "run.json sessions an object": ("run.json", lambda p: p.write_text(
        p.read_text().replace('"sessions": [', '"sessions": {"a": [').replace("}]}", "}]}}"))),
    "slot file truncated": ("workers/slot0.json", _truncate),
    "slot file cursor negative": ("workers/slot0.json", lambda p: p.write_text(
        '{"slot": 0, "next": -1, "current": null}')),
    "stats.json coverage lines a string": ("stats.json", lambda p: p.write_text(
        p.read_text().replace('"coverage": null', '"coverage": {"lines": "most"}'))),
    "finding shrink pass runs a string": ("findings/000000001000-w0-failure-1.json",
                                          lambda p: p.write_text(p.read_text().replace(
                                              '"worker": 0', '"worker": 0, "shrink_passes": '
                                              '[{"name": "a", "runs": "many"}]'))),
    "finding elapsed a string": ("findings/000000001000-w0-failure-1.json",
                                 lambda p: p.write_text(p.read_text().replace("1.0", '"1"'))),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_state_file_is_one_line_naming_it(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    st = _state_with(tmp_path)
    name, damage = CORRUPT[case]
    damage(st / name)
    from vmfuzz.soak import SoakConfig, SoakError, SoakOptions
    from vmfuzz.soak._report import summarize
    from vmfuzz.soak._state import open_run

    if not name.startswith("workers"):  # what vmfuzz report reads
        from vmfuzz._cmd_report import run as report

        assert report(argparse.Namespace(state=str(st), json=True)) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(st / name) in err, err
    if not name.startswith("workers"):
        with pytest.raises(SoakError, match=str(st / name)):
            summarize(st)
    opts = SoakOptions(state_dir=st, duration=1.0, workers=1,
                       config=SoakConfig(corpus=""), resume=True)
    with pytest.raises(SoakError, match=str(st / name)):
        open_run(opts)
    if name == "run.json":  # a fresh start does not point at --resume either
        opts = SoakOptions(state_dir=st, duration=1.0, workers=1, config=SoakConfig())
        with pytest.raises(SoakError, match="corrupt"):
            open_run(opts)


def test_resume_counts_campaigns_a_killed_session_logged_after_its_last_stats(
    tmp_path: Path,
) -> None:
    """What a worker orphaned by a kill -9 of the parent leaves: a log line the stats missed."""
    from vmfuzz.soak import SoakConfig, SoakOptions
    from vmfuzz.soak._state import open_run

    st = _state_with(tmp_path)
    stats = json.loads((st / "stats.json").read_text())
    stats["totals"].update(campaigns=2, examples=30, steps=300)
    # Counted: two logged campaigns, and 10 examples of the third, in flight at the last write.
    stats["slots"] = {"0": {"logged": 2, "examples": 10, "steps": 100}}
    (st / "stats.json").write_text(json.dumps(stats))
    log = [{"seed": i, "scheduler": "random", "profile": "p", "examples": 10 + 5 * (i == 2),
            "steps": 100 + 50 * (i == 2)} for i in range(3)]
    (st / "workers" / "slot0.log").write_text("".join(json.dumps(x) + "\n" for x in log))
    opts = SoakOptions(state_dir=st, duration=1.0, workers=1,
                       config=SoakConfig(corpus=""), resume=True)
    run = open_run(opts)
    os.close(run.lock_fd)
    t = run.stats["totals"]
    assert (t["campaigns"], t["examples"], t["steps"]) == (3, 35, 350)
    assert t["schedulers"] == {"random": 1} and run.stats["recovered_campaigns"] == 1
    assert run.stats["slots"]["0"] == {"logged": 3, "examples": 0, "steps": 0}


TMPFS_RUN = """
set -u
mount -t tmpfs -o size=1m none disk || exit 99
dd if=/dev/zero of=disk/filler bs=1k count=980 2>/dev/null
"$PY" -m vmfuzz {soak} --duration 60s > out1.json 2> err1.txt; echo $? > rc1
rm disk/filler
"$PY" -m vmfuzz soak --resume --state disk/st --duration 3s --json > out2.json 2> err2.txt
echo $? > rc2
cp -r disk/st disk/corpus .
"""


@pytest.mark.faults
def test_soak_on_a_full_1mb_tmpfs_loses_nothing_and_resumes(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """A real full disk: a 1 MB tmpfs (in a mount namespace of its own) with 44 KB free."""
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs none {tmp_path}"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (the fault hook test covers a full disk)")
    env.pop(FAULT_ENV)
    env["PY"] = sys.executable
    script = TMPFS_RUN.format(soak=" ".join(SOAK))
    subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=tmp_path, env=env, timeout=240,
                   check=True)
    rc1, rc2 = (int((tmp_path / n).read_text()) for n in ("rc1", "rc2"))
    err1 = (tmp_path / "err1.txt").read_text()
    assert rc1 == 4, err1
    assert "Traceback" not in err1 and "No space left on device" in err1
    s1 = json.loads((tmp_path / "out1.json").read_text().strip().splitlines()[-1])
    assert s1["stop"] == "disk" and s1["findings"]
    # Every finding is in the corpus (copied out of the tmpfs) or the fallback folder.
    for f in s1["findings"]:
        name = Path(f["corpus"]).name
        assert (tmp_path / "corpus" / name).is_file() or (tmp_path / "fallback" / name).is_file()
    assert rc2 == 1, (tmp_path / "err2.txt").read_text()
    s2 = json.loads((tmp_path / "out2.json").read_text().strip().splitlines()[-1])
    assert s2["sessions"] == 2 and s2["stop"] == "duration"
    assert s2["campaigns"] >= s1["campaigns"]
    assert {f["signature"] for f in s1["findings"]} <= {f["signature"] for f in s2["findings"]}


@pytest.mark.faults
def test_kill9_of_the_parent_leaves_no_campaign_out_of_the_stats(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """Only the parent is killed: its workers, orphaned, stop at their next chunk and log the
    campaign; --resume waits for them and counts every logged campaign."""
    import signal
    import time

    from vmfuzz.soak import read_jsonl

    env.pop(FAULT_ENV)
    args = [sys.executable, "-m", "vmfuzz", "soak", "--plugin", "faulttest_plugin.py",
            "--op", "faulttest_op", "--scheduler", "random", "--coverage-every", "0",
            "--workers", "2", "--state", "st", "--corpus", "corpus", "--duration", "120s"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    stats = tmp_path / "st" / "stats.json"
    end = time.monotonic() + 90
    try:
        while time.monotonic() < end:
            try:
                if json.loads(stats.read_text())["totals"]["examples"] > 0:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)  # the parent alone
    finally:
        proc.wait()
    res = _run(tmp_path, env, "soak", "--resume", "--state", "st", "--duration", "2s",
               "--json")
    assert res.returncode == 0, res.stderr
    s = _summary(res)
    logs = [line for p in sorted((tmp_path / "st" / "workers").glob("slot*.log"))
            for line in read_jsonl(p)]
    seeds = [c["seed"] for c in logs] + [c["seed"] for c in s["interrupted"]]
    assert len(seeds) == len(set(seeds))
    assert s["campaigns"] == len(logs) and s["campaigns"] >= 2


def test_rerecord_on_an_unwritable_corpus_is_one_line_and_keeps_the_case(
    tmp_path: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from vmfuzz.cli import main

    data = json.loads((repo_root / "corpus" / "bugs" / "detach_vmas_outside_ptl.json").read_text())
    del data["model"]  # an old case: --rerecord upgrades it (a write)
    (tmp_path / "disk").mkdir()
    case = tmp_path / "disk" / "old.json"
    case.write_text(json.dumps(data))
    before = case.read_text()
    monkeypatch.setenv(FAULT_ENV, str(tmp_path / "disk" / "FULL"))
    (tmp_path / "disk" / "FULL").write_text("EROFS")
    assert main(["replay", "--rerecord", str(case)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Read-only file system" in err and str(case) in err, err
    assert case.read_text() == before
