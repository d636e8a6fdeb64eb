"""Campaign budgets: model steps, CPU time or wall time (``--budget``), and what a campaign
reports about the work it spent."""

from __future__ import annotations

import json
from collections.abc import Callable
from subprocess import CompletedProcess

import pytest

from vmfuzz._budget import (
    STANDARD,
    STANDARD_STEPS,
    BudgetError,
    CampaignBudget,
    parse_budget,
)
from vmfuzz.campaign import fuzz
from vmfuzz.kernel import KernelConfig


@pytest.mark.parametrize(("text", "kind", "amount"), [
    ("500ksteps", "steps", 500_000),
    ("2Msteps", "steps", 2_000_000),
    ("2msteps", "steps", 2_000_000),  # steps have no milli: m is mega
    ("1000000steps", "steps", 1_000_000),
    ("1.5M steps", "steps", 1_500_000),
    ("1_000_000steps", "steps", 1_000_000),
    ("1step", "steps", 1),
    ("90cpu", "cpu", 90.0),
    ("2mcpu", "cpu", 120.0),
    ("1h30mcpu", "cpu", 5400.0),
    ("60s", "wall", 60.0),
    ("10m", "wall", 600.0),
    ("45", "wall", 45.0),
])
def test_budgets_as_typed(text: str, kind: str, amount: float) -> None:
    b = parse_budget(text)
    assert (b.kind, b.amount) == (kind, amount)
    assert parse_budget(b.text()) == b  # what the zoo passes on to its campaigns
    assert b.deterministic == (kind == "steps")


@pytest.mark.parametrize("bad", [
    "", "steps", "0steps", "0.0001steps", "1e6steps", "-5steps", "5ksteps2", "5xsteps",
    "5kcpu", "0cpu", "cpu", "nan", "inf", "-5", "0", "400d", "1" + "0" * 13 + "steps",
    "9" * 400 + "steps", "1,5Msteps", "1,000steps",
])
def test_bad_budgets_are_one_line(bad: str) -> None:
    with pytest.raises(BudgetError) as info:
        parse_budget(bad)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


def test_budget_words_and_json() -> None:
    assert STANDARD == CampaignBudget("steps", STANDARD_STEPS)
    assert STANDARD.describe() == f"{STANDARD_STEPS:,} steps"
    assert parse_budget("90cpu").describe() == "90 CPU-s"
    assert parse_budget("60").describe() == "60 s"
    assert parse_budget("2ksteps").to_json() == {"steps": 2000, "cpu_seconds": None,
                                                 "wall_seconds": None}


def test_a_step_budget_says_it_ran_out_and_repeats() -> None:
    def run() -> tuple[int, int, str | None, int | None]:
        r = fuzz(KernelConfig(), seed_value=4, budget=None, step_budget=1500, mutants=0)
        return r.examples, r.steps, r.ran_out, r.first_failure_steps

    first = run()
    assert first[1] >= 1500 and first[2] == "steps" and first[3] is None
    assert run() == first


def test_a_cpu_budget_counts_this_process_cpu() -> None:
    r = fuzz(KernelConfig(), seed_value=4, budget=None, cpu_budget=0.3, mutants=0)
    assert r.ran_out == "cpu" and not r.found
    # Checked before each example: one example past the budget at most.
    assert 0.3 <= r.cpu_seconds < 3.0
    with pytest.raises(ValueError, match="cpu_budget"):
        fuzz(KernelConfig(), budget=None, cpu_budget=0.0)


def test_max_examples_is_the_budget_that_ran_out() -> None:
    r = fuzz(KernelConfig(), seed_value=4, budget=None, max_examples=2, mutants=0)
    assert r.ran_out == "examples" and r.examples == 2 and r.cpu_seconds > 0


@pytest.mark.long
def test_fuzz_step_budget_is_each_workers(
    vmfuzz_cli: Callable[..., CompletedProcess[str]],
) -> None:
    """With --workers 2, a step budget is each stream's: the same two streams, alone, spend
    the same steps as the campaign's total."""
    res = vmfuzz_cli("fuzz", "--seed", "5", "--workers", "2", "--budget", "3ksteps",
                     "--mutants", "0", "--json", "--no-save")
    assert res.returncode == 0, res.stderr
    both = json.loads(res.stdout)
    assert both["ran_out"] == "steps" and both["budget"]["steps"] == 3000
    assert both["cpu_seconds"] > 0 and both["seconds"] > 0
    alone = []
    for w in (0, 1):
        one = vmfuzz_cli("fuzz", "--seed", "5", "--stream", str(w), "--budget", "3ksteps",
                         "--mutants", "0", "--json", "--no-save")
        assert one.returncode == 0, one.stderr
        alone.append(json.loads(one.stdout))
        assert alone[-1]["steps"] >= 3000 and alone[-1]["ran_out"] == "steps"
    assert both["steps"] == sum(a["steps"] for a in alone)
    assert both["examples"] == sum(a["examples"] for a in alone)
    human = vmfuzz_cli("fuzz", "--seed", "5", "--workers", "2", "--budget", "3ksteps",
                       "--mutants", "0", "--no-save")
    assert "3,000 steps per worker" in human.stderr
    assert "no failure found (the step budget ran out)" in human.stdout
    assert "--budget 12ksteps" in human.stdout  # a longer budget: four times the work
