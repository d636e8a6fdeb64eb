"""The historical bug zoo: every registered bug is rediscovered from scratch and shrunk.

Default run: every bug, seed 0, a bounded number of examples (deterministic).  Bugs the fuzzer
does not yet find within that budget are listed in NOT_YET_FOUND (strict xfail: the test fails
as soon as one is found, so the list cannot go stale).  The full check of issue 6 (10 seeds x
60 s each, >= 9 found, shrunk no larger than the mail's drawing) is opt-in:
``pytest -m slow tests/test_zoo.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vmfuzz.campaign import fuzz
from vmfuzz.kernel import BUGS, KernelConfig

DEFAULT_EXAMPLES = 500

# Not found by seed 0 within DEFAULT_EXAMPLES: a single-seed lottery ticket, redrawn whenever
# generation changes (session 5, frames aimed and the world built by the kernel under test:
# migrate_no_anon_vma_ref now found there; swapout_vma_after_unlock, try_to_unmap_ignores_
# reserved, unuse_process_no_mmap_sem and vm_swap_full_delete_race, found in most seeds of
# 60 s, are not at seed 0 within 500 examples; session 7, echoed random walks for programs
# that went round a retry loop: anon_vma_trylock_retry found there).  The issue-6 notes have
# the 10-seed table.  Search quality, not the model, is what lacks: corpus/bugs/ replays each.
NOT_YET_FOUND = {
    "anon_vma_root_not_pinned",
    "swapin_no_swapcache_recheck",
    "swapin_skip_swapcache_race",
    "swapout_vma_after_unlock",
    "try_to_unmap_ignores_reserved",
    "unuse_process_no_mmap_sem",
    "vm_swap_full_delete_race",
}


def _params() -> list[object]:
    out: list[object] = []
    for name in sorted(BUGS):
        marks = []
        if name in NOT_YET_FOUND:
            marks.append(pytest.mark.xfail(strict=True, reason="not found in the default budget"))
        out.append(pytest.param(name, marks=marks))
    return out


def _within_mail(name: str, shrunk: dict[str, int] | None) -> None:
    bug = BUGS[name]
    assert shrunk is not None
    if bug.mail_tasks is not None:
        assert shrunk["tasks"] <= bug.mail_tasks, (name, shrunk)
    if bug.mail_preemptions is not None:
        assert shrunk["preemptions"] <= bug.mail_preemptions, (name, shrunk)


def test_registry_is_well_formed() -> None:
    from vmfuzz.invariants import CHECKS

    assert len(BUGS) >= 8
    for bug in BUGS.values():
        assert bug.summary and bug.seed
        for check in bug.caught_by():
            assert check in CHECKS, f"{bug.name}: unknown check {check}"
    assert NOT_YET_FOUND <= set(BUGS)


@pytest.mark.parametrize("name", _params())
def test_bug_found_from_scratch(name: str) -> None:
    # A fresh process per campaign, through the command users run: a cold start in every sense
    # (campaign results were seen to depend on what ran earlier in the same process).
    res = subprocess.run(
        [sys.executable, "-m", "vmfuzz", "fuzz", "--bug", name, "--seed", "0",
         "--max-examples", str(DEFAULT_EXAMPLES), "--json", "--no-save"],
        capture_output=True, text=True, timeout=600,
    )
    assert res.returncode in (0, 1), res.stderr
    out = json.loads(res.stdout)
    assert out["found"], f"{name} not found in {out['examples']} examples"
    assert out["invariant"] in BUGS[name].caught_by()
    assert res.returncode == 1


def test_fixed_kernel_clean_under_the_same_campaign() -> None:
    r = fuzz(KernelConfig(), seed_value=0, budget=None, max_examples=DEFAULT_EXAMPLES)
    assert not r.found, r.failure.violation.describe() if r.failure else ""


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BUGS))
def test_bug_found_in_9_of_10_seeds(name: str) -> None:
    found = 0
    for seed in range(10):
        r = fuzz(KernelConfig(bugs=frozenset([name])), seed_value=seed, budget=60)
        if r.found:
            found += 1
            _within_mail(name, r.shrunk())
    assert found >= 9, f"{name}: found in {found}/10 seeds"
