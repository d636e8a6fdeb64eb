"""The invariant overhead benchmark runs, its synthetic workload is clean, and it reports both
figures per scale (the figures themselves are measurements, not asserted)."""

from __future__ import annotations

import pytest

from vmfuzz import Violation
from vmfuzz._bench_invariants import bench_invariants, format_report, run_synthetic
from vmfuzz.kernel import KernelConfig
from vmfuzz.kernel.mm_types import PresentPte


@pytest.mark.parametrize("scale", [1, 16])
def test_synthetic_workload_is_clean_under_all_checks(scale: int) -> None:
    steps, secs = run_synthetic(KernelConfig().scaled(scale), True, seed=3, rounds=4)
    assert steps > 100 and secs > 0


def test_synthetic_workload_is_really_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Break the stand-in path (a fault that forgets the mapcount): the monitor catches it."""
    import vmfuzz._bench_invariants as b

    real = b.synthetic_path

    def broken(k, mm, vma, rounds):  # type: ignore[no-untyped-def]
        yield from real(k, mm, vma, rounds)
        yield "broken:extra_pte"
        pfn = next(iter(k.present_ptes))
        k.set_pte_at(mm, vma.vm_end - 1, PresentPte(pfn, True))

    monkeypatch.setattr(b, "synthetic_path", broken)
    with pytest.raises(Violation):
        run_synthetic(KernelConfig(), True, seed=0, rounds=1)


def test_bench_reports_both_scales() -> None:
    res = bench_invariants(quick=True)
    rows = res["synthetic"]
    assert set(rows) == {"1x", "16x"}
    for row in rows.values():
        assert row["all"] > 0 and row["none"] > 0 and row["overhead"] > 0
    assert "synthetic 16x" in format_report(res)
