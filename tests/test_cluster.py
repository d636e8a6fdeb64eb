"""Soak runs on a real Dask cluster (a scheduler and two workers, each its own process on this
machine), and run identities that keep the campaigns of different runs apart.

The cluster test (marker ``cluster``: about a minute of CPU) needs Dask distributed, the
``cluster`` extra (``pip install -e ".[dev,cluster]"``); without it, it is skipped and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vmfuzz.soak import read_jsonl
from vmfuzz.soak._plan import CLUSTER_SLOT, MAX_RUN_ID, RUN_STRIDE, campaign_plan, seed_owner

BUG = "swapout_holds_vmlist_lock"  # the ABBA of seed thread 000: the random walk finds it fast


def _soak(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vmfuzz", "soak", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def _campaigns(state: Path) -> list[dict[str, Any]]:
    out = []
    for log in sorted((state / "workers").glob("slot*.log")):
        out.extend(read_jsonl(log))
    return out


# ============================================================================ run identities
def test_run_identities_never_share_a_seed() -> None:
    runs = (0, 1, 7, MAX_RUN_ID)
    seen: dict[int, tuple[int, int, int]] = {}
    for run in runs:
        for slot in (0, 1, 255, CLUSTER_SLOT):
            for index in (0, 1, 9_999_999):
                seed, _, _ = campaign_plan(slot, index, run_id=run)
                assert seed not in seen
                assert seed_owner(seed) == (run, slot, index)
                assert 0 <= seed < 2**63
                seen[seed] = (run, slot, index)
    assert campaign_plan(0, 5) == campaign_plan(0, 5, run_id=0)  # a run without an identity
    with pytest.raises(ValueError):
        campaign_plan(0, 0, run_id=MAX_RUN_ID + 1)
    assert RUN_STRIDE > CLUSTER_SLOT * 10_000_000


@pytest.mark.long
def test_two_soaks_with_different_identities_share_no_campaign(tmp_path: Path) -> None:
    keys = []
    for run in ("1", "2"):
        res = _soak(tmp_path, "--duration", "12s", "--workers", "1", "--seed", run,
                    "--campaign-budget", "2ksteps", "--coverage-every", "0",
                    "--state", f"st{run}", "--corpus", "corpus", "--json")
        assert res.returncode == 0, res.stderr
        assert json.loads((tmp_path / f"st{run}" / "run.json").read_text())["run_id"] == int(run)
        logged = _campaigns(tmp_path / f"st{run}")
        assert len(logged) >= 2
        keys.append({(c["seed"], c["scheduler"], c["profile"]) for c in logged})
    assert not keys[0] & keys[1]
    # A drawn identity is recorded, and a --resume keeps it (--seed must then agree).
    res = _soak(tmp_path, "--resume", "--duration", "1s", "--seed", "3", "--state", "st1")
    assert res.returncode == 2 and "differs from the run's 1" in res.stderr


def test_without_dask_the_option_says_which_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vmfuzz.soak import SoakConfig, SoakError, SoakOptions, run_soak

    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    opts = SoakOptions(state_dir=tmp_path / "st", duration=5.0, workers=1, config=SoakConfig(),
                       dask="tcp://127.0.0.1:8786")
    with pytest.raises(SoakError, match=r'pip install "vmfuzz\[cluster\]"'):
        run_soak(opts)
    assert not (tmp_path / "st").exists()  # nothing started


# ============================================================================ the cluster
def _dask() -> str:
    pytest.importorskip("distributed", reason='Dask distributed is not installed: '
                        'pip install -e ".[dev,cluster]" runs this test')
    exe = shutil.which("dask", path=os.path.dirname(sys.executable)) or shutil.which("dask")
    if exe is None:
        pytest.skip("the dask command is not installed (pip install -e \".[dev,cluster]\")")
    return exe


def _wait_for(pred: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A Dask scheduler and two single-thread workers on localhost, each a process."""
    dask = _dask()
    sched_file = tmp_path / "scheduler.json"
    procs: list[subprocess.Popen[bytes]] = []
    logs = tmp_path / "dask-logs"
    logs.mkdir()

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        with open(logs / f"{name}.log", "wb") as out:  # the process keeps its own copy
            p = subprocess.Popen([dask, *args], stdout=out, stderr=subprocess.STDOUT,
                                 cwd=tmp_path, start_new_session=True)
        procs.append(p)
        return p

    try:
        start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0",
              "--no-dashboard", "--scheduler-file", str(sched_file))
        _wait_for(sched_file.exists, 60, "the Dask scheduler")
        address = json.loads(sched_file.read_text())["address"]
        workers = [start(f"worker{i}", "worker", address, "--nthreads", "1", "--no-nanny",
                         "--no-dashboard", "--host", "127.0.0.1", "--name", f"w{i}")
                   for i in range(2)]
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=120)
        yield address, workers
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.mark.cluster
def test_soak_on_a_dask_cluster_survives_a_lost_worker(
    tmp_path: Path, cluster: tuple[str, list[subprocess.Popen[bytes]]]
) -> None:
    address, workers = cluster
    state = tmp_path / "st"
    args = [sys.executable, "-m", "vmfuzz", "soak", "--dask", address, "--duration", "40s",
            "--bug", BUG, "--scheduler", "random", "--campaign-budget", "15ksteps", "--seed", "11",
            "--state", "st", "--corpus", "corpus", "--json"]
    soak = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        slot = state / "workers" / f"slot{CLUSTER_SLOT}.json"

        def running() -> bool:
            try:
                return len(json.loads(slot.read_text())["in_flight"]) >= 2
            except (OSError, ValueError):
                return False

        _wait_for(running, 120, "campaigns in flight")
        time.sleep(3)  # both workers are inside a campaign
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait()
        out, err = soak.communicate(timeout=900)
    finally:
        if soak.poll() is None:
            soak.kill()
            soak.wait()
    assert soak.returncode == 1, err
    summary = json.loads(out.strip().splitlines()[-1])
    found = [f for f in summary["findings"] if f["kind"] == "failure"]
    # lockdep's ABBA report, and the hang itself (the bug's consequence) when a schedule ran
    # both tasks into it before lockdep saw both orders
    assert "lock_order_inversion" in {f["check"] for f in found}, summary["findings"]
    assert {f["check"] for f in found} <= {"lock_order_inversion", "deadlock"}
    assert not [f for f in summary["findings"] if f["kind"] == "crash"]
    # Every campaign submitted came back once: the lost worker's was run again elsewhere.
    logged = _campaigns(state)
    cursor = json.loads(slot.read_text())
    assert cursor["in_flight"] == []
    assert sorted(c["index"] for c in logged) == list(range(cursor["next"]))
    assert not [c for c in logged if c.get("stopped")]  # each did its whole step budget
    assert all(seed_owner(c["seed"])[:2] == (11, CLUSTER_SLOT) for c in logged)
    stats = json.loads((state / "stats.json").read_text())
    assert stats["totals"]["workers_lost"] >= 1
    assert "left" in err
    # Every finding record's case is in the corpus; none was lost.
    records = [json.loads(p.read_text()) for p in (state / "findings").glob("*.json")]
    assert records and all(Path(r["corpus"]).is_file() for r in records)
    assert summary["campaigns"] == len(logged)


@pytest.mark.cluster
def test_resume_on_the_cluster_submits_the_campaigns_a_killed_session_had_in_flight(
    tmp_path: Path, cluster: tuple[str, list[subprocess.Popen[bytes]]]
) -> None:
    address, _ = cluster
    state = tmp_path / "st"
    slot = state / "workers" / f"slot{CLUSTER_SLOT}.json"
    args = [sys.executable, "-m", "vmfuzz", "soak", "--dask", address, "--duration", "300s",
            "--scheduler", "random", "--campaign-budget", "8ksteps", "--seed", "12",
            "--state", "st", "--corpus", "corpus"]
    soak = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        def running() -> bool:
            try:
                return len(json.loads(slot.read_text())["in_flight"]) >= 2
            except (OSError, ValueError):
                return False

        _wait_for(running, 120, "campaigns in flight")
    finally:
        soak.kill()  # kill -9 of the session: its campaigns in flight never come back
        soak.wait()
    left = json.loads(slot.read_text())
    in_flight = {c["seed"] for c in left["in_flight"]}
    assert len(in_flight) >= 2
    res = _soak(tmp_path, "--resume", "--dask", address, "--duration", "1s", "--state", "st",
                "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["sessions"] == 2 and summary["interrupted"] == []
    logged = _campaigns(state)
    assert in_flight <= {c["seed"] for c in logged}  # submitted again, and done
    cursor = json.loads(slot.read_text())
    assert cursor["in_flight"] == []
    assert sorted(c["index"] for c in logged) == list(range(cursor["next"]))
    assert summary["campaigns"] == len(logged)


# ============================================================================ the shared search
@pytest.mark.long
def test_a_known_failure_is_not_shrunk_again() -> None:
    from vmfuzz.campaign import fuzz
    from vmfuzz.kernel import KernelConfig

    config = KernelConfig(bugs=frozenset({BUG}))
    seen: list[str] = []

    def known(failure: Any) -> bool:
        seen.append(failure.violation.check)
        return True

    args: dict[str, Any] = {"scheduler": "random", "seed_value": 3, "budget": None,
                            "step_budget": 200_000}
    fresh = fuzz(config, **args)
    again = fuzz(config, **args, known=known)
    assert fresh.found and again.found and seen == [again.failure.violation.check]
    assert fresh.shrink_passes and not again.shrink_passes  # no post-Hypothesis shrink
    assert again.case is not None and again.failure.violation.check == fresh.invariant


@pytest.mark.long
def test_campaigns_share_the_runs_pool_through_the_state_folder(tmp_path: Path) -> None:
    """What a soak worker does around each campaign that keeps a pool (and a cluster session
    around each task): load the run's pool, start from it, store what the campaign added."""
    from vmfuzz.campaign import fuzz
    from vmfuzz.kernel import KernelConfig
    from vmfuzz.pool import Pool
    from vmfuzz.soak._pool import (
        add_entries,
        entries_for,
        entries_json,
        loaded_from_entries,
        open_store,
        pool_size,
        start_pool,
    )

    config = KernelConfig()
    first = Pool(config)
    start_pool(first, open_store(tmp_path, "read").load(config))  # nothing stored yet
    assert not first.entries
    fuzz(config, scheduler="pct", seed_value=0, budget=None, step_budget=100_000, pool=first)
    assert first.unsaved
    stored = open_store(tmp_path, "slot0").add(first.unsaved)  # equal programs once
    assert 0 < stored <= len(first.unsaved) and pool_size(tmp_path) == stored
    # The next campaign, here or on a Dask worker (entries as data), starts from them.
    local = Pool(config)
    assert start_pool(local, open_store(tmp_path, "read").load(config)) == 0  # adopted
    handed = entries_for(tmp_path, config)
    assert len(handed) == stored
    remote = Pool(config)
    start_pool(remote, loaded_from_entries(handed, config))
    assert local.entries and len(local.entries) == len(remote.entries)
    assert set(local.hits) == set(remote.hits) and set(local.hits) <= set(first.hits)
    fuzz(config, scheduler="pct", seed_value=2, budget=None, step_budget=20_000, pool=remote)
    added = add_entries(tmp_path, "cluster", entries_json(remote.unsaved or []))
    assert added and stored < pool_size(tmp_path) <= stored + added  # (equal programs once)
