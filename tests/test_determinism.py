"""A campaign's result depends on its arguments alone: not on what ran before it in the
process (other Hypothesis tests, a loaded profile, the ``random`` module, earlier campaigns
and the worlds they booted), not on PYTHONHASHSEED, not on the machine's load; and
``max_examples`` is the exact number of examples."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmfuzz.campaign import fuzz
from vmfuzz.kernel import KernelConfig

HERE = Path(__file__).resolve().parent
# One campaign Hypothesis fails in (its shrink is part of the result) and one that finds
# nothing (its examples run to the end, a pool round after each chunk).
CAMPAIGNS: tuple[tuple[str | None, int, dict[str, int]], ...] = (
    ("detach_vmas_outside_ptl", 2, {"max_examples": 60}),
    (None, 5, {"max_examples": 30, "chunk": 15, "mutants": 20}),
)


def _canon(o: Any) -> Any:
    """``o`` as JSON data, sets sorted (independent of PYTHONHASHSEED)."""
    if attrs.has(type(o)):
        return {f.name: _canon(getattr(o, f.name)) for f in attrs.fields(type(o))}
    if isinstance(o, (frozenset, set)):
        return sorted((_canon(x) for x in o), key=repr)
    if isinstance(o, dict):
        return {str(k): _canon(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_canon(x) for x in o]
    return o


def summary() -> list[dict[str, Any]]:
    """The counters and the found case of each of CAMPAIGNS."""
    out = []
    for bug, seed, kw in CAMPAIGNS:
        cfg = KernelConfig(bugs=frozenset({bug} if bug else ()))
        r = fuzz(cfg, seed_value=seed, budget=None, **kw)  # type: ignore[arg-type]
        case = None
        if r.case is not None:
            data = json.dumps(_canon((r.case.tasks, r.case.schedule, r.case.config)),
                              sort_keys=True)
            case = hashlib.sha256(data.encode()).hexdigest()
        assert r.stats is not None
        out.append({
            "bug": bug, "examples": r.examples, "mutant_runs": r.stats.mutant_runs,
            "probe_runs": r.stats.probe_runs, "steps": r.steps, "found": r.invariant,
            "first_failure_example": r.stats.first_failure_example, "case": case,
            "shrunk": r.shrunk(), "clock_hit": list(getattr(r, "clock_hit", [])),
        })
    return out


def _fresh(hash_seed: str) -> list[dict[str, Any]]:
    """:func:`summary` in a fresh interpreter."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); "
            "from test_determinism import summary; print(json.dumps(summary()))")
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run([sys.executable, "-c", code, str(HERE)], capture_output=True,
                         text=True, timeout=300, env=env, check=True)
    result: list[dict[str, Any]] = json.loads(out.stdout)
    return result


def test_a_campaign_ignores_what_ran_before_it_in_the_process() -> None:
    """Measured the other way round before: a Hypothesis test drawing small integers run
    first filled Hypothesis's per-process cache of the constants a draw may take, and the
    campaign after it ran other examples (fewer, other steps and pool runs)."""

    @settings(max_examples=100, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.integers(0, 3), st.integers(1, 400), st.integers(0, 4), st.booleans())
    def a_users_test(slot: int, steps: int, pick: int, flag: bool) -> None:
        assert slot in range(4) and steps >= 1

    a_users_test()
    random.seed(12345)  # the random module's state is not a campaign's input
    settings.register_profile("vmfuzz-test-other", max_examples=7, derandomize=True,
                              stateful_step_count=5, report_multiple_bugs=True)
    previous = settings.get_current_profile_name()
    settings.load_profile("vmfuzz-test-other")
    try:
        # An earlier campaign of other worlds and bugs (the booted-world images it leaves).
        fuzz(KernelConfig(bugs=frozenset({"swapin_skip_swapcache_race"})), seed_value=9,
             max_examples=10, budget=None, verify_minimal=False)
        here = summary()
    finally:
        settings.load_profile(previous)
    assert here == _fresh("4242")


def test_max_examples_is_exact() -> None:
    """Hypothesis counts only valid examples against max_examples; examples whose data ran
    out ran too, and made a campaign of 300 run 316.  Every count is exact now, whatever the
    chunking."""
    for n, chunk in ((1, 100), (7, 100), (25, 10), (40, 100)):
        r = fuzz(KernelConfig(), seed_value=1, max_examples=n, chunk=chunk, budget=None,
                 mutants=0)
        assert (r.examples, r.found) == (n, False)


def test_every_shrink_limit_is_runs_and_a_safety_net_says_when_it_stopped() -> None:
    """Hypothesis's shrink was capped at 10 s and ours at 60 s and 10 s of wall time, so the
    shrunk case moved with the machine's load.  Now each is a number of runs; caps in CPU
    seconds are safety nets, and one that stops a shrink is named in ``clock_hit``."""
    cfg = KernelConfig(bugs=frozenset({"detach_vmas_outside_ptl"}))
    for runs in (1, 10):
        r = fuzz(cfg, seed_value=2, max_examples=60, budget=None, shrink_runs=runs)
        assert r.stats is not None and r.stats.first_failure_example == 3
        assert r.found_by == "a Hypothesis example"
        # The failing example, ``runs`` shrink runs, and Hypothesis's final replay.
        assert (r.found, r.examples, r.clock_hit) == (True, 3 + runs + 1, [])
    r = fuzz(cfg, seed_value=2, max_examples=60, budget=None, shrink_seconds=0.0,
             post_shrink_seconds=0.0)
    assert r.found and r.examples == 5 and r.clock_hit == ["hypothesis_shrink", "shrink"]
    assert "CPU-time safety net stopped hypothesis_shrink, shrink" in r.clock_note()


def test_a_shrink_budget_share_keeps_the_safety_net_and_reports_it() -> None:
    """A pass's share of the budget is a share of the runs left; the deadline stays the
    whole shrink's, and the caller learns when it was met."""
    import time

    from vmfuzz.shrink import Budget

    b = Budget(10, time.process_time() + 3600)
    sub = b.share(1, 2)
    assert (sub.runs, sub.deadline) == (5, b.deadline)
    while sub.take():
        pass
    b.absorb(sub)
    assert (b.used, b.clock_hit, b.spent) == (5, False, False)
    late = Budget(10, time.process_time() - 1)
    sub = late.share(1, 2)
    assert not sub.take() and sub.clock_hit
    late.absorb(sub)
    assert late.clock_hit and late.spent and late.used == 0
