"""`vmfuzz bench` is a measurement, not a test: here we only check that the quick run works and
emits the documented JSON (figures are never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_quick_emits_json() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "vmfuzz", "bench", "--quick", "--json",
         "--bug", "detach_vmas_outside_ptl", "--strategy", "mixed", "--workers", "1"],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["engine"]["steps_per_second"] > 0
    model = out["model"]
    assert set(model) == {
        "steps_per_second_checks_on", "steps_per_second_checks_off", "overhead_ratio",
    }
    assert [s["factor"] for s in out["scaling"]] == [1, 4, 16]
    assert out["fuzz"]["examples"] > 0
    (row,) = out["bugs"]
    assert row["bug"] == "detach_vmas_outside_ptl" and row["scheduler"] == "mixed"
    assert row["seeds"] == 1 and 0 <= row["found_rate"] <= 1


def test_bench_rejects_unknown_bug() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "vmfuzz", "bench", "--bug", "nope"],
        capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 2
    assert "unknown bug nope" in res.stderr and "Traceback" not in res.stderr
