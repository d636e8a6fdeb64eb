"""The historical bug zoo: every registered bug is rediscovered from scratch and shrunk.

Default run: the bugs of QUICK from scratch (seed 0, QUICK_EXAMPLES examples: deterministic),
the fixed kernel clean under the same campaign, and every registered bug's saved failure
(corpus/bugs/) replayed, with and without its fix.  ``pytest -m zoo``: seed 0 of every
registered bug from scratch at ZOO_EXAMPLES (390 s of CPU, 3 to 4 minutes on two idle cores);
bugs the fuzzer does not yet find within that budget are listed in NOT_YET_FOUND (strict
xfail: the test fails as soon as one is found, so the list cannot go stale).  The zoo's full
check (10 seeds x STANDARD_STEPS each, >= 9 found, shrunk no larger than the mail's drawing) is
opt-in: ``pytest -m slow tests/test_zoo.py``, or ``vmfuzz zoo`` (:mod:`vmfuzz._zoo`, tested
here on made-up campaigns and on tiny real ones), for the bugs of the zoo's bar: ``vmfuzz
bugs`` marks the one outside it, which ``vmfuzz zoo --all`` adds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from vmfuzz import _zoo, pool
from vmfuzz._budget import STANDARD
from vmfuzz._cores import available_cores
from vmfuzz.corpus import CorpusCase, replay
from vmfuzz.kernel import BUGS
from vmfuzz.kernel.bugs import zoo_bugs

if TYPE_CHECKING:
    from subprocess import CompletedProcess

    from conftest import Ahead

ZOO_EXAMPLES = 500  # pytest -m zoo

# The default run's from-scratch campaigns: bugs seed 0 finds within QUICK_EXAMPLES, each in
# a few seconds of CPU, search and shrink included (measured at 500 examples, the seed-0
# campaigns of the whole registry take 420 s of CPU; these and the fixed kernel's at 250, 40 s).
# Between them they take the paths of a campaign with a real bug: one the world shows at step 0
# (detach_vmas_outside_ptl), a Hypothesis example that lockdep catches, then Hypothesis's
# shrink (swapout_holds_vmlist_lock, example 55), a pool mutant (anon_vma_lock_not_root), and
# pool mutants and probes, then the post-Hypothesis shrink to the mail's two tasks and one
# switch (migrate_no_anon_vma_ref, 7 s of it).  Each is found before example 230, so at 250
# its campaign is the one it has at 500.
QUICK_EXAMPLES = 250
QUICK = (
    "anon_vma_lock_not_root",
    "detach_vmas_outside_ptl",
    "migrate_no_anon_vma_ref",
    "swapout_holds_vmlist_lock",
)
# Of QUICK, the campaigns whose Hypothesis shrink now takes 30-45 s: under the marker long
# (CI runs it), out of the default run's four minutes.
QUICK_LONG = ("swapout_holds_vmlist_lock",)

# Not found by seed 0 within ZOO_EXAMPLES: a single-seed lottery ticket, redrawn whenever
# generation changes (frames aimed and the world built by the kernel under test brought
# migrate_no_anon_vma_ref there; echoed random walks for programs that went round a retry
# loop, anon_vma_trylock_retry; partner probes, anon_vma_root_not_pinned, at 504 examples;
# ABA probes with a stalled reader, swapin_skip_swapcache_race, unuse_process_no_mmap_sem and
# vm_swap_full_delete_race).  `vmfuzz zoo` gives the 10-seed table.  Search quality, not the
# model, is what lacks: corpus/bugs/ replays each.  Redrawn when the world drew a sixth
# feature (shortage) and campaigns became load-independent (exact example counts, the first
# failure ends generation): swapout_vma_after_unlock and try_to_unmap_ignores_reserved are now
# found at seed 0, anon_vma_root_not_pinned, anon_vma_trylock_retry and
# unuse_process_no_mmap_sem no longer (11 of 15 found at seed 0, as 12 were).  Collision
# walks for every run that went round a retry loop (probes' runs too) brought
# anon_vma_trylock_retry back at seed 0 (found after 100 examples).
NOT_YET_FOUND = {
    "anon_vma_root_not_pinned",
    "swapin_no_swapcache_recheck",
    "unuse_process_no_mmap_sem",
}


def _from_scratch(name: str | None, examples: int) -> tuple[str, ...]:
    """The campaign, through the command users run, in a fresh process: a cold start in every
    sense (campaign results were seen to depend on what ran earlier in the same process).
    No name: the fixed kernel."""
    bug = ("--bug", name) if name is not None else ()
    return ("fuzz", *bug, "--seed", "0", "--max-examples", str(examples), "--json",
            "--no-save")


def _params() -> list[object]:
    """QUICK at QUICK_EXAMPLES; under the zoo marker, every registered bug, those outside the
    zoo's bar too (the whole registry), at ZOO_EXAMPLES."""
    out: list[object] = []
    for name in QUICK:
        marks = [pytest.mark.run_ahead(*_from_scratch(name, QUICK_EXAMPLES))]
        if name in QUICK_LONG:
            marks.append(pytest.mark.long)
        out.append(pytest.param(name, QUICK_EXAMPLES, id=name, marks=marks))
    for name in sorted(BUGS):
        marks = [pytest.mark.zoo, pytest.mark.run_ahead(*_from_scratch(name, ZOO_EXAMPLES))]
        if name in NOT_YET_FOUND:
            marks.append(pytest.mark.xfail(strict=True, reason="not found in the zoo's budget"))
        out.append(pytest.param(name, ZOO_EXAMPLES, id=f"zoo-{name}", marks=marks))
    return out


def test_registry_is_well_formed() -> None:
    from vmfuzz.invariants import CHECKS

    assert len(BUGS) >= 8
    for bug in BUGS.values():
        assert bug.summary and bug.seed
        for check in bug.caught_by():
            assert check in CHECKS, f"{bug.name}: unknown check {check}"
    assert NOT_YET_FOUND <= set(BUGS)
    assert set(QUICK) <= set(BUGS) - NOT_YET_FOUND


def test_zoo_bar_keeps_the_issues_minimum() -> None:
    """The zoo's bar covers every seed thread and at least three later races (a commit id as
    their seed); a bug may be left out of it (``zoo=False``) only beyond that minimum."""
    zoo = [BUGS[n] for n in zoo_bugs()]
    docs = {b.seed[:3] for b in zoo if b.seed.endswith(".txt")}
    assert docs == {"000", "001", "002", "003", "004"}
    assert len([b for b in zoo if not b.seed.endswith(".txt")]) >= 3
    assert all(not b.seed.endswith(".txt") for b in BUGS.values() if not b.zoo)


def test_zoo_command_runs_the_bar_by_default_and_all_with_all(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from vmfuzz.cli import main

    ran: list[list[tuple[str, int]]] = []

    def fake(jobs: list[tuple[str, int]], *args: object, **kw: object) -> list[_zoo.Campaign]:
        ran.append(jobs)
        return [_campaign(b, s, found=False) for b, s in jobs]

    monkeypatch.setattr(_zoo, "run_all", fake)
    outside = sorted(n for n, b in BUGS.items() if not b.zoo)
    assert main(["zoo", "--seeds", "0", "--json"]) == 1  # nothing found: no row met
    assert [b for b, _ in ran[-1]] == zoo_bugs()
    err = capsys.readouterr().err
    assert all(n in err for n in outside) and "--all" in err
    assert main(["zoo", "--seeds", "0", "--all", "--json"]) == 1
    assert [b for b, _ in ran[-1]] == sorted(BUGS)
    assert main(["zoo", "--seeds", "0", "--bug", outside[0], "--json"]) == 1
    assert [b for b, _ in ran[-1]] == outside[:1]


@pytest.mark.parametrize(("name", "examples"), _params())
def test_bug_found_from_scratch(name: str, examples: int, ahead: Ahead) -> None:
    """A cold ``vmfuzz fuzz --bug NAME --seed 0 --max-examples N`` finds the bug by one of its
    checks.  Default run: the bugs of QUICK; every other bug's search is under ``-m zoo``, and
    in the default run its saved failure replays (test_every_bug_replays_its_saved_failure)."""
    res = ahead.result(*_from_scratch(name, examples))
    assert res.returncode in (0, 1), res.stderr
    out = json.loads(res.stdout)
    assert out["found"], f"{name} not found in {out['examples']} examples"
    assert out["invariant"] in BUGS[name].caught_by()
    assert res.returncode == 1
    # Work to find: examples and steps up to the first failure, counted in the total.
    assert 0 <= out["first_failure_examples"] <= out["examples"]
    assert 0 <= out["first_failure_steps"] <= out["steps"] and out["ran_out"] is None
    assert out["found_by"] in {"a Hypothesis example", *pool._MECHANISMS.values()}


@pytest.mark.parametrize("examples", [
    pytest.param(QUICK_EXAMPLES, id="quick",
                 marks=pytest.mark.run_ahead(*_from_scratch(None, QUICK_EXAMPLES))),
    pytest.param(ZOO_EXAMPLES, id="zoo", marks=[
        pytest.mark.zoo, pytest.mark.run_ahead(*_from_scratch(None, ZOO_EXAMPLES))]),
])
def test_fixed_kernel_clean_under_the_same_campaign(examples: int, ahead: Ahead) -> None:
    """The fixed kernel under the campaign the bugs get, in the default run at QUICK_EXAMPLES
    (every check on, nothing may be found: the false-positive guard of the tests above)."""
    res = ahead.result(*_from_scratch(None, examples))
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(res.stdout)
    assert not out["found"] and out["examples"] >= examples


@pytest.mark.parametrize("name", sorted(BUGS))
def test_every_bug_replays_its_saved_failure(
    name: str, saved_case: Callable[[str], CorpusCase]
) -> None:
    """Each registered bug has its shrunk failure in corpus/bugs/NAME.json: with the bug's
    switch alone it fails by one of the bug's checks on its recorded trace, and the fixed
    kernel is clean on the same schedule (what ``pytest -m zoo`` searches for from scratch,
    replayed in a few milliseconds)."""
    cc = saved_case(f"corpus/bugs/{name}.json")
    assert cc.case.config.bugs == frozenset({name})
    assert cc.expected in BUGS[name].caught_by()
    result = replay(cc)
    assert result.ok, result.summary()
    assert result.observed == cc.expected
    assert result.fix is not None and result.fix.status == "holds", result.summary()


# ------------------------------------------------------------------ vmfuzz zoo
def _campaign(bug: str, seed: int, *, check: str | None = None, tasks: int = 2,
              pre: int = 1, found: bool = True) -> _zoo.Campaign:
    out = {"found": found, "invariant": check if found else None,
           "first_failure_seconds": 1.0 + seed if found else None,
           "first_failure_steps": 1000 * (1 + seed) if found else None,
           "first_failure_examples": 10 + seed if found else None,
           "shrunk": {"tasks": tasks, "threads": tasks, "ops": 3, "steps": 40,
                      "preemptions": pre} if found else None}
    return _zoo.Campaign(bug, seed, out)


def test_zoo_seed_lists() -> None:
    assert _zoo.parse_seeds("0-9") == list(range(10))
    assert _zoo.parse_seeds("3") == [3]
    assert _zoo.parse_seeds("5-7, 0,3,6") == [0, 3, 5, 6, 7]
    for bad in ("", "a", "3-1", "-2", "1-", "1,,2"):
        with pytest.raises(ValueError):
            _zoo.parse_seeds(bad)


def test_zoo_row_counts_only_proper_finds() -> None:
    """A seed is good only with a right check AND a case no larger than the mail's race
    (swapin_no_get_swap_device: use_after_free, 2 tasks / 1 switch in the mail)."""
    name = "swapin_no_get_swap_device"
    right = BUGS[name].invariant
    runs = [
        _campaign(name, 0, check=right),                   # good
        _campaign(name, 1, check=right, tasks=1, pre=0),   # good: smaller than the mail
        _campaign(name, 2, check="deadlock"),              # a wrong check
        _campaign(name, 3, check=right, pre=2),            # one switch more than the mail
        _campaign(name, 4, check=right, tasks=3),          # one task more
        _campaign(name, 5, found=False),
    ]
    row = _zoo.summarize(name, runs, need=2)
    assert (row.seeds, row.found, row.good, row.errors) == (6, 5, 2, 0)
    assert row.met
    assert (row.worst_tasks, row.worst_preemptions, row.median_seconds) == (3, 2, 3.0)
    # Work to find, median over the five that found something (seeds 0-4).
    assert (row.median_find_steps, row.median_find_examples) == (3000, 12)
    assert row.checks == ("deadlock", right)
    assert not _zoo.summarize(name, runs, need=3).met
    larger = "larger than the mail's 2 tasks / 1 switch"
    assert [c.why_not_good() for c in runs] == [
        "", "", "deadlock is not one of use_after_free", larger, larger, ""]
    # A campaign that did not run is an error: the row is not met, however many were good.
    broken = [*runs, _zoo.Campaign(name, 6, None, "Traceback ...")]
    assert not _zoo.summarize(name, broken, need=2).met


def test_zoo_counts_a_smaller_ending_of_the_shrunk_program_by_a_right_check() -> None:
    """A failure shrunk to one switch more than the mail counts when its program also fails
    one of the bug's checks within the mail (the campaign's other_failures); an ending by a
    wrong check, or one still too large, does not."""
    name = "read_swap_cache_async_unlocked_check"  # mail: 2 tasks / 1 switch
    right, wrong = BUGS[name].caught_by()[0], "use_after_free"

    def with_other(check: str, pre: int) -> _zoo.Campaign:
        c = _campaign(name, 0, check="data_integrity", pre=2)
        assert c.out is not None and not c.good()
        shrunk = {"tasks": 2, "threads": 2, "ops": 2, "steps": 20, "preemptions": pre}
        c.out["other_failures"] = [{"invariant": check, "message": "", "shrunk": shrunk,
                                    "case": None}]
        return c

    assert with_other(right, 1).good()
    assert not with_other(wrong, 1).good()
    assert not with_other(right, 2).good()
    assert with_other(wrong, 1).why_not_good() == "larger than the mail's 2 tasks / 1 switch"
    row = _zoo.summarize(name, [with_other(right, 1), with_other(wrong, 1)], need=1)
    assert (row.found, row.good) == (2, 1)


def test_zoo_fixed_kernel_row_is_met_only_if_nothing_found() -> None:
    clean = [_campaign("", s, found=False) for s in range(3)]
    assert _zoo.summarize("", clean, need=3).met
    dirty = [*clean, _campaign("", 3, check="use_after_free")]
    row = _zoo.summarize("", dirty, need=3)
    assert not row.met and row.found == 1 and row.bug == _zoo.FIXED
    assert dirty[-1].why_not_good() == "the fixed kernel must find nothing"


def test_zoo_tables() -> None:
    row = _zoo.summarize("detach_vmas_outside_ptl", [
        _campaign("detach_vmas_outside_ptl", 0, check="lock_not_held", tasks=0, pre=0)], 1)
    md = _zoo.markdown([row]).splitlines()
    assert md[0].startswith("| bug | seed | found | good | to find steps/examples |")
    assert len(md) == 3
    assert "| detach_vmas_outside_ptl | 004_b331e72d | 1/1 | 1/1 | 1,000 / 10 |" in md[2]
    assert md[2].endswith("| yes |")
    assert _zoo.text([row]).splitlines()[1].startswith("detach_vmas_outside_ptl")


def test_zoo_runs_campaigns_in_parallel_in_job_order() -> None:
    seen: list[int] = []

    def runner(bug: str, seed: int, budget: float, corpus: str | None,
               workers: int = 1) -> _zoo.Campaign:
        return _campaign(bug, seed, check="x")

    jobs = [("a", s) for s in range(6)]
    out = _zoo.run_all(jobs, 1.0, 3, None, lambda i, c: seen.append(i), runner=runner)
    assert [c.seed for c in out] == list(range(6))
    assert sorted(seen) == list(range(1, 7))


def test_zoo_interrupt_keeps_the_finished_campaigns() -> None:
    def runner(bug: str, seed: int, budget: float, corpus: str | None,
               workers: int = 1) -> _zoo.Campaign:
        if seed == 2:
            raise KeyboardInterrupt
        return _campaign(bug, seed, check="x")

    with pytest.raises(_zoo.Interrupted) as info:
        _zoo.run_all([("a", s) for s in range(5)], 1.0, 1, None, runner=runner)
    assert [c.seed for c in info.value.finished] == [0, 1]  # 3 and 4 are not waited for


def test_zoo_command_end_to_end(
    tmp_path: Path, vmfuzz_cli: Callable[..., CompletedProcess[str]]
) -> None:
    """Two real seeds of a bug the world already exposes at step 0, and the fixed kernel on
    the same seeds, each a fresh ``vmfuzz fuzz`` process; found cases saved per campaign."""
    res = vmfuzz_cli("zoo", "--bug", "detach_vmas_outside_ptl", "--seeds", "0-1",
                     "--budget", "5ksteps", "-j", "2", "--fixed", "--json",
                     "--corpus", str(tmp_path))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["met"] is True
    (bug_row, fixed_row) = out["rows"]
    assert (bug_row["bug"], bug_row["found"], bug_row["good"]) == ("detach_vmas_outside_ptl",
                                                                   2, 2)
    assert (fixed_row["bug"], fixed_row["found"], fixed_row["met"]) == (_zoo.FIXED, 0, True)
    assert len(out["campaigns"]) == 4
    # A step budget: one stream per campaign, the budget each campaign's.
    assert out["workers"] == 1 and out["budget"] == {"steps": 5000, "cpu_seconds": None,
                                                     "wall_seconds": None}
    assert {c["out"]["workers"] for c in out["campaigns"]} == {1}
    assert {c["out"]["ran_out"] for c in out["campaigns"] if c["bug"] is None} == {"steps"}
    assert "[4/4]" in res.stderr  # one progress line per campaign
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "detach_vmas_outside_ptl-s0", "detach_vmas_outside_ptl-s1"]


@pytest.mark.parametrize("argv", [
    ["--bug", "no_such_bug"], ["--seeds", "9-0"], ["--budget", "0"], ["-j", "0"],
    ["--seeds", "0-1", "--need", "3"], ["--json", "--markdown"], ["--workers", "0"],
    ["--all", "--bug", "detach_vmas_outside_ptl"], ["--budget", "0steps"],
    ["--budget", "5ksteps2"],
])
def test_zoo_command_rejects_bad_input(
    argv: list[str], vmfuzz_cli: Callable[..., CompletedProcess[str]]
) -> None:
    res = vmfuzz_cli("zoo", *argv, timeout=60)
    assert res.returncode == 2
    assert res.stderr.startswith("vmfuzz zoo: error:") and "Traceback" not in res.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", zoo_bugs())
def test_bug_found_in_9_of_10_seeds(name: str) -> None:
    """The zoo's check for one bug, as ``vmfuzz zoo --bug NAME`` runs it (STANDARD_STEPS per
    campaign, one stream each, a campaign on each core)."""
    runs = _zoo.run_all([(name, s) for s in range(10)], STANDARD.text(),
                        parallel=available_cores())
    row = _zoo.summarize(name, runs, need=9)
    assert row.met, _zoo.text([row])


@pytest.mark.slow
def test_fixed_kernel_clean_in_10_seeds() -> None:
    runs = _zoo.run_all([("", s) for s in range(10)], STANDARD.text(),
                        parallel=available_cores())
    row = _zoo.summarize("", runs, need=0)
    assert row.met, [c.out for c in runs if c.found]


def test_bugs_command_lists_the_registry_and_marks_the_zoo(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from vmfuzz.cli import main

    assert main(["bugs", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [b["name"] for b in listed] == sorted(BUGS)
    for b in listed:
        assert {"name", "seed", "summary", "invariant", "zoo"} <= set(b)
        assert b["zoo"] == BUGS[b["name"]].zoo
    assert main(["bugs"]) == 0
    text = capsys.readouterr().out
    assert text.count("not in the zoo's bar") == sum(not b.zoo for b in BUGS.values())


# The load test's campaigns: a bug that seed 1 finds by a pool mutant after 100 examples
# (67,185 steps, 3 CPU-s) and seed 0 does not find within the budget (it runs out of steps
# after its first pool round); a small step budget, the same work on any machine.
LOADED_BUG = "anon_vma_lock_not_root"
LOADED_BUDGET = "100ksteps"


def _work_table(out: dict[str, Any]) -> dict[str, Any]:
    """What a zoo's --json says that must not depend on the machine's load: its rows without
    the wall-clock column, and per campaign the work spent and what it found."""
    rows = [{k: v for k, v in r.items() if k != "median_seconds"} for r in out["rows"]]
    keys = ("found", "invariant", "examples", "steps", "ran_out", "first_failure_steps",
            "first_failure_examples", "shrunk", "clock_hit")
    campaigns = [(c["bug"], c["seed"], c["error"],
                  {k: c["out"].get(k) for k in keys} if c["out"] else None)
                 for c in out["campaigns"]]
    return {"rows": rows, "campaigns": campaigns}


def _shown(name: str, out: dict[str, Any]) -> str:
    """The zoo's table and each campaign's work, CPU and wall time (printed with -s)."""
    rows = [_zoo.Row(**r) for r in out["rows"]]
    lines = [f"{name}:", _zoo.text(rows)]
    for c in out["campaigns"]:
        o = c["out"] or {}
        lines.append(f"  seed {c['seed']}: {o.get('steps')} steps, {o.get('examples')} "
                     f"examples, {o.get('cpu_seconds')} CPU-s, {o.get('seconds')} s")
    return "\n".join(lines)


@pytest.mark.long
def test_zoo_table_is_the_same_on_a_loaded_machine(
    vmfuzz_cli: Callable[..., CompletedProcess[str]],
) -> None:
    """``vmfuzz zoo --budget STEPS`` twice: alone, then beside a busy process on every core.
    Found, work to find and shrunk sizes are the same (a wall-clock budget finds less under
    load, and its shrinks used to stop at a time limit); only the time taken differs."""
    argv = ("zoo", "--bug", LOADED_BUG, "--seeds", "0-1", "--budget", LOADED_BUDGET, "--json")
    alone = vmfuzz_cli(*argv, timeout=1800)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(available_cores())]
    try:
        loaded = vmfuzz_cli(*argv, timeout=1800)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    tables = []
    for name, res in (("alone", alone), ("beside a busy process per core", loaded)):
        assert res.returncode in (0, 1), res.stderr
        out = json.loads(res.stdout)
        print(_shown(name, out))
        tables.append(_work_table(out))
    assert tables[0]["rows"][0]["found"] >= 1, tables[0]  # a find to compare, not only misses
    assert tables[0] == tables[1]
