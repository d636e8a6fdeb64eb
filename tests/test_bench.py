"""`vmfuzz bench` is a measurement, not a test: here we only check that the quick run works and
emits the documented JSON (figures are never asserted)."""

from __future__ import annotations

import json
from collections.abc import Callable
from subprocess import CompletedProcess
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Ahead


QUICK = ("bench", "--quick", "--reps", "1", "--json", "--bug", "detach_vmas_outside_ptl",
         "--strategy", "mixed",
         "--workers", "1")


@pytest.mark.long  # the whole of bench --quick: 15-20 s
@pytest.mark.run_ahead(*QUICK)
def test_bench_quick_emits_json(ahead: Ahead) -> None:
    """Started ahead at low priority (tests/conftest.py): nothing here depends on its speed."""
    res = ahead.result(*QUICK)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    for key in ("bare_generators", "bare_scheduler", "fuzzer_scheduler",
                "plain_machine_examples", "vmfuzz_machine_examples"):
        rate = out["limits"][key]
        assert 0 < rate["min"] <= rate["median"] <= rate["max"], key
    assert out["limits"]["machine_cost_ratio"] > 0
    model = out["model"]
    assert model["drifted_runs"] == 0  # the recorded workload replays as recorded
    assert model["checks_on"]["units"] == model["checks_off"]["units"] > 0
    assert [s["factor"] for s in out["scaling"]] == [1, 4, 16]
    assert out["fuzz"]["examples"]["units"] > 0
    (row,) = out["bugs"]
    assert row["bug"] == "detach_vmas_outside_ptl" and row["scheduler"] == "mixed"
    assert row["seeds"] == 1 and 0 <= row["found_rate"] <= 1
    (worker,) = out["rss"]
    assert worker["peak_mb"] > 0


def test_bench_rejects_unknown_bug(vmfuzz_cli: Callable[..., CompletedProcess[str]]) -> None:
    res = vmfuzz_cli("bench", "--bug", "nope", timeout=120)
    assert res.returncode == 2
    assert "unknown bug nope" in res.stderr and "Traceback" not in res.stderr


def test_bench_rejects_a_budget_that_is_not_work(
    vmfuzz_cli: Callable[..., CompletedProcess[str]],
) -> None:
    res = vmfuzz_cli("bench", "--budget", "lots", timeout=120)
    assert res.returncode == 2
    assert "--budget" in res.stderr and "Traceback" not in res.stderr
