"""The corpus with the real kernel model: the hand-written example case, round trips of model
failures and of busy clean runs across interpreters with other PYTHONHASHSEEDs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_corpus_ops import run_vmfuzz

from vmfuzz.case import Case, OpCall, Schedule, TaskSpec, execute
from vmfuzz.corpus import CorpusCase, load, replay, save_failure, write_case
from vmfuzz.kernel import KernelConfig

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "corpus/examples/seed001_readahead_vs_try_to_swap_out.json"


def test_the_documented_example_case() -> None:
    cc = load(EXAMPLE)
    assert cc.explicit is not None and cc.expected == "swap_cache_unique"
    result = replay(cc)
    assert result.ok, result.summary()
    assert result.fix is not None and result.fix.status == "holds" and result.fix.schedule_applies


def test_a_model_failure_round_trips_across_hash_seeds(tmp_path: Path) -> None:
    cc = load(EXAMPLE)
    run = execute(cc.case, cc.source())
    assert run.outcome.check == "swap_cache_unique"
    path = save_failure(cc.case, run, tmp_path, {"found_by": "test"})
    saved = load(path)
    assert saved.case.schedule.kind == "decisions"
    assert saved.trace_sha256 == run.outcome.trace_sha256
    for seed in ("1", "987654"):
        proc = run_vmfuzz("replay", "--json", str(path), hashseed=seed)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        got = json.loads(proc.stdout)
        assert got["ok"] and got["trace_sha256"] == run.outcome.trace_sha256
        assert got["fix_check"]["status"] == "holds"


def busy_case(seed: int) -> Case:
    """Every kind of operation, three threads, a random schedule: the fixed kernel is clean."""
    def op(name: str, **args: int) -> OpCall:
        return OpCall(name, args)

    t1 = [op("mmap", mm=0, addr=0, npages=6), *(op("write", mm=0, addr=a) for a in range(6)),
          op("fork", mm=0), op("mprotect", mm=0, addr=1, npages=2, flag=0),
          op("write", mm=0, addr=4), op("munmap", mm=0, addr=2, npages=2)]
    t2 = [op("kswapd", count=3), op("migrate", pfn=1), op("read", mm=3, addr=4),
          op("swap_out", count=2)]
    t3 = [op("mlock", mm=0, addr=0, npages=2), op("read", mm=0, addr=5), op("exit", mm=3),
          op("swapoff"), op("swapon", flag=0)]
    return Case(
        KernelConfig(),
        (
            TaskSpec("T1", tuple(t1)),
            TaskSpec("T2", tuple(t2), start=20),
            TaskSpec("T3", tuple(t3), start=30),
        ),
        Schedule("random", seed=seed),
    )


@pytest.mark.parametrize("seed", [3, 11])
def test_busy_clean_runs_have_the_same_trace_in_other_processes(tmp_path: Path, seed: int) -> None:
    case = busy_case(seed)
    run = execute(case)
    assert run.outcome.kind == "clean", run.outcome.violation and run.outcome.violation.describe()
    assert run.outcome.steps > 100  # a real workout, not a trivial run
    path = write_case(
        CorpusCase(case, "clean", trace_sha256=run.outcome.trace_sha256), tmp_path / "busy.json"
    )
    for hashseed in ("0", "31337"):
        proc = run_vmfuzz("replay", "--json", "--strict-trace", str(path), hashseed=hashseed)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert json.loads(proc.stdout)["trace_sha256"] == run.outcome.trace_sha256
