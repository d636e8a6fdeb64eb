"""The soft-lockup watchdog: a step whose loop never yields is reported, not a hang.

A test that fails without the watchdog ends on its own: each spinning loop gives up after
``GIVE_UP`` CPU seconds and the test then finds no ``soft_lockup``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmfuzz import _watchdog
from vmfuzz._scheduler import Retry, Scheduler
from vmfuzz.violation import Violation

GIVE_UP = 20.0  # CPU seconds a spinning test loop runs at most


@pytest.fixture
def quick_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_watchdog, "SOFT_LOCKUP_CPU", 0.2)
    monkeypatch.setattr(_watchdog, "SOFT_LOCKUP_CPU_AGAIN", 0.2)


def _spinner(label: str) -> Iterator[object]:
    yield Retry(label)
    t0 = time.process_time()
    while time.process_time() - t0 < GIVE_UP:  # never yields: a lockup
        pass


def _stepper(n: int) -> Iterator[object]:
    for i in range(n):
        yield Retry(f"step_{i}")


@pytest.mark.usefixtures("quick_watchdog")
def test_a_step_that_never_yields_is_a_soft_lockup_at_its_label() -> None:
    s = Scheduler()
    s.spawn(_stepper(3), "T0")
    s.spawn(_spinner("do_mmap_pgoff:munmap_back"), "T1")
    t0 = time.process_time()
    out = s.run_to_outcome()
    assert time.process_time() - t0 < GIVE_UP / 2
    assert out.kind == "violation" and out.violation is not None
    v = out.violation
    assert (v.check, v.task, v.label) == ("soft_lockup", "T1", "do_mmap_pgoff:munmap_back")
    # the scheduler and the next run are unharmed: nothing else is raised, and a run of the
    # same tasks without the spin is clean
    s2 = Scheduler()
    s2.spawn(_stepper(5), "T0")
    assert s2.run_to_outcome().kind == "clean"


@pytest.mark.usefixtures("quick_watchdog")
def test_a_soft_lockup_carries_nothing_of_where_the_watchdog_landed() -> None:
    """The watchdog's exception lands wherever the spinning code happens to be, a different
    line from run to run.  The violation must not keep it as its ``__context__``: Hypothesis
    keys a failure on the exception's context too, and takes two runs of one lockup for two
    failures (FlakyFailure: the campaign ends in an error instead of a finding)."""
    s = Scheduler()
    s.spawn(_spinner("do_mmap_pgoff:munmap_back"), "T1")
    with pytest.raises(Violation) as raised:
        while s.step():
            pass
    assert raised.value.check == "soft_lockup"
    assert raised.value.__context__ is None and raised.value.__cause__ is None


@pytest.mark.usefixtures("quick_watchdog")
def test_steps_between_runs_and_short_steps_never_trip_it() -> None:
    s = Scheduler()
    s.spawn(_stepper(2000), "T0")
    s.spawn(_stepper(2000), "T1")
    assert s.run_to_outcome().kind == "clean"
    # CPU spent outside any step (the fuzzer's own work between runs) is not a lockup
    t0 = time.process_time()
    while time.process_time() - t0 < 0.5:
        pass
    s.spawn(_stepper(1), "T2")
    assert s.run_to_outcome().kind == "clean"


@pytest.mark.long
def test_a_mutant_whose_mmap_spins_is_reported_by_replay(tmp_path: Path) -> None:
    """A real mistake in the model: do_munmap returning 0 for a range that starts in a hole
    makes do_mmap_pgoff's munmap_back loop spin forever without a scheduling point."""
    from vmfuzz import _bench_mutants as bm

    m = bm.load("munmap_from_hole_unmaps_nothing")
    case = json.loads(m.witness.read_text())
    case["description"] = "mmap over a range that starts in a hole and covers a mapped vma"
    case["tasks"][0]["ops"] = [
        {"op": "mmap", "args": {"mm": 0, "addr": 2, "npages": 2}},
        {"op": "mmap", "args": {"mm": 0, "addr": 0, "npages": 4}},
    ]
    case["found"] = {"check": "soft_lockup"}
    path = tmp_path / "spin.json"
    path.write_text(json.dumps(case))
    fixed = subprocess.run([sys.executable, "-m", "vmfuzz", "replay", "--json", str(path)],
                           capture_output=True, text=True, timeout=120)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    with bm.mutated(m) as copy:
        r = subprocess.run([sys.executable, "-m", "vmfuzz", "replay", "--json", str(path)],
                           cwd=copy, env=bm.copy_env(copy), capture_output=True, text=True,
                           timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "soft_lockup" in r.stdout and "vm_mmap:down_write(mmap_sem)" in r.stdout, r.stdout
