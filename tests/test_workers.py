"""``vmfuzz fuzz --workers``: streams of one seed searched side by side, first failure wins."""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Callable
from subprocess import CompletedProcess
from typing import TYPE_CHECKING, Any

import pytest

from vmfuzz import campaign
from vmfuzz._budget import STANDARD, STANDARD_STEPS
from vmfuzz._workers import WorkerError, _worker, fuzz_workers
from vmfuzz.kernel import KernelConfig
from vmfuzz.violation import Violation

if TYPE_CHECKING:
    from conftest import Ahead

# A bug the world already shows at step 0: every stream finds it in its first examples.
AT_ONCE = "detach_vmas_outside_ptl"
# Pool mutants per chunk where a test counts work, not searches: a tenth of a campaign's
# (campaign.MUTANTS), so that the two rounds of a 200-example stream take 2 s, not 10.
MUTANTS = 40


def test_stream_zero_keeps_the_seed_numbering_and_other_streams_are_disjoint() -> None:
    assert campaign.chunk_seed(7, 0, 3) == 7 * 1_000_003 + 3
    seeds = {campaign.chunk_seed(s, w, i) for s in range(50) for w in range(4) for i in range(50)}
    assert len(seeds) == 50 * 4 * 50


def test_streams_of_one_seed_search_different_examples() -> None:
    def steps(**kw: int) -> int:
        r = campaign.fuzz(KernelConfig(), seed_value=3, budget=None, max_examples=12,
                          verify_minimal=False, **kw)
        return r.steps

    assert steps() == steps(stream=0)  # stream 0 is the campaign one worker always ran
    assert steps(stream=1) != steps(stream=0)
    with pytest.raises(ValueError, match="stream must be >= 0"):
        campaign.fuzz(KernelConfig(), max_examples=1, stream=-1)


def test_a_violation_survives_the_pipe_between_processes() -> None:
    v = Violation("use_after_free", "anon_vma1 used after free", pfn=3, mm=1)
    v.step, v.task, v.label = 12, "T0", "migrate_page:copy"
    back = pickle.loads(pickle.dumps(v))
    assert (back.check, back.message, back.objects) == (v.check, v.message, v.objects)
    assert back.describe() == v.describe() and str(back) == str(v)


def _stream1_never_reports(job: Any, conn: Any) -> None:
    """A worker entry point whose stream 1 searches on silently (a long, fruitless stream)."""
    if job.stream == 1:
        time.sleep(120)
    _worker(job, conn)


def test_the_first_failure_stops_the_other_workers_and_names_its_stream() -> None:
    """Under a CPU budget the streams race: the first failure in time wins.  (Under a step
    budget the parent would wait for stream 1's report: it might have found one sooner in
    steps.)"""
    t = time.monotonic()
    r, stream = fuzz_workers(KernelConfig(bugs=frozenset({AT_ONCE})), workers=2, budget=None,
                             cpu_budget=60.0, target=_stream1_never_reports)
    took = time.monotonic() - t
    assert r.found and stream == 0 and r.invariant == "lock_not_held"
    # Stream 1 was stopped, not waited for (it would sleep 120 s).
    assert took < 40, took
    assert r.first_failure_seconds is not None and r.first_failure_seconds <= r.seconds
    # The stream named finds the same failure again, alone, in this process.
    again = campaign.fuzz(KernelConfig(bugs=frozenset({AT_ONCE})), budget=None,
                          step_budget=STANDARD_STEPS, stream=stream)
    assert again.found and again.invariant == r.invariant and again.case == r.case


def _stream(w: int) -> tuple[str, ...]:
    """Stream ``w`` of the fixed kernel's seed-0 campaign alone, 200 examples, in a process of
    its own."""
    return ("fuzz", "--seed", "0", "--stream", str(w), "--max-examples", "200",
            "--mutants", str(MUTANTS), "--json", "--no-save")


@pytest.mark.long  # 20 s: two whole campaigns without a failure
@pytest.mark.run_ahead(*_stream(0))
@pytest.mark.run_ahead(*_stream(1))
def test_a_campaign_without_failure_counts_every_streams_work(ahead: Ahead) -> None:
    seen: list[int] = []
    r, stream = fuzz_workers(KernelConfig(), workers=2, budget=None, max_examples=200,
                             mutants=MUTANTS, progress=lambda p: seen.append(p.examples))
    assert not r.found and stream is None and r.failure is None
    # Bounded by examples, each stream's work is exact: the totals are their sums.  (200
    # examples: a campaign of 100 runs no pool mutants at all.)
    alone = []
    for w in (0, 1):
        res = ahead.result(*_stream(w))
        assert res.returncode == 0, res.stderr
        alone.append(json.loads(res.stdout))
    assert r.examples == sum(a["examples"] for a in alone) > 0
    assert r.steps == sum(a["steps"] for a in alone)
    assert r.stats is not None and r.stats.mutant_runs == sum(
        a["mutant_runs"] for a in alone) > 0
    assert seen and max(seen) <= r.examples


def test_a_worker_that_raises_is_an_error_that_names_its_stream() -> None:
    with pytest.raises(WorkerError, match=r"worker \d \(stream \d\): ") as info:
        fuzz_workers(KernelConfig(), workers=2, budget=None, step_budget=1000,
                     scheduler="no_such_scheduler")
    assert "\n" not in str(info.value)  # one line; the worker's traceback is kept apart
    assert "Traceback" in info.value.remote_traceback
    with pytest.raises(ValueError, match="workers must be >= 1"):
        fuzz_workers(KernelConfig(), workers=0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "--workers must be >= 1"),
        (["--workers", "2", "--max-examples", "5"], "drop --workers"),
        (["--workers", "2", "--stream", "1"], "drop --workers"),
        (["--stream", "-1"], "--stream must be >= 0"),
    ],
)
def test_bad_worker_options_are_usage_errors(
    args: list[str], message: str, vmfuzz_cli: Callable[..., CompletedProcess[str]]
) -> None:
    res = vmfuzz_cli("fuzz", *args)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr


def test_fuzz_json_says_how_many_workers_and_which_stream_found(
    vmfuzz_cli: Callable[..., CompletedProcess[str]],
) -> None:
    res = vmfuzz_cli("fuzz", "--bug", AT_ONCE, "--workers", "2", "--budget", STANDARD.text(),
                     "--json", "--no-save")
    assert res.returncode == 1, res.stderr
    out = json.loads(res.stdout)
    assert out["found"] and out["workers"] == 2 and out["stream"] in (0, 1)
    one = vmfuzz_cli("fuzz", "--seed", "2", "--stream", "1", "--max-examples", "3", "--json",
                     "--no-save")
    assert one.returncode == 0, one.stderr
    out = json.loads(one.stdout)
    assert (out["workers"], out["stream"], out["seed"]) == (1, 1, 2)


def _stream0_starts_late(job: Any, conn: Any) -> None:
    if job.stream == 0:
        time.sleep(3)
    _worker(job, conn)


def _stream1_starts_late(job: Any, conn: Any) -> None:
    if job.stream == 1:
        time.sleep(3)
    _worker(job, conn)


@pytest.mark.long
def test_under_a_step_budget_the_winner_is_counted_in_steps_not_seconds() -> None:
    """Whichever stream the clock favours, the same stream wins (the failure after the fewest
    steps), with the same case and the same totals."""
    runs = []
    for target in (_stream0_starts_late, _stream1_starts_late):
        r, stream = fuzz_workers(KernelConfig(bugs=frozenset({AT_ONCE})), workers=2,
                                 budget=None, step_budget=STANDARD_STEPS, target=target)
        assert r.found and stream is not None
        runs.append((stream, r.invariant, r.case, r.examples, r.steps, r.first_failure_steps))
    assert runs[0] == runs[1]
