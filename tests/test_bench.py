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


QUICK = ("bench", "--quick", "--json", "--bug", "detach_vmas_outside_ptl", "--strategy", "mixed",
         "--workers", "1")


@pytest.mark.run_ahead(*QUICK)
def test_bench_quick_emits_json(ahead: Ahead) -> None:
    """Started ahead at low priority (tests/conftest.py): nothing here depends on its speed."""
    res = ahead.result(*QUICK)
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


def test_bench_rejects_unknown_bug(vmfuzz_cli: Callable[..., CompletedProcess[str]]) -> None:
    res = vmfuzz_cli("bench", "--bug", "nope", timeout=120)
    assert res.returncode == 2
    assert "unknown bug nope" in res.stderr and "Traceback" not in res.stderr
