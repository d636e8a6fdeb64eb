"""Tests of the fuzzer: it finds races in deliberately broken variants, shrinks them to
kernel-mail size, is deterministic for a seed, and its command line behaves."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from vmfuzz._budget import STANDARD_STEPS
from vmfuzz.campaign import fuzz
from vmfuzz.kernel import KernelConfig
from vmfuzz.kernel.ops import OPS, operation
from vmfuzz.violation import Violation


@pytest.fixture
def racy_counter() -> Iterator[str]:
    """A broken 'kernel path' built here, not shipped: counter++ as load/store, no lock."""

    @operation("test_racy_incr", mm="mm")
    def test_racy_incr(k, mm):  # type: ignore[no-untyped-def]
        """counter++ without a lock"""
        yield "test_racy_incr:load"
        v = k.stats.get("ctr", 0)
        yield "test_racy_incr:store"
        k.stats["ctr"] = v + 1
        k.stats["done"] = k.stats.get("done", 0) + 1
        if k.stats["ctr"] != k.stats["done"]:
            raise Violation("lost_update", f"counter {k.stats['ctr']} after {k.stats['done']}")

    yield "test_racy_incr"
    del OPS["test_racy_incr"]


@pytest.mark.parametrize("scheduler", ["preemptions", "pct", "random"])
def test_racy_variant_found_and_shrunk(racy_counter: str, scheduler: str) -> None:
    r = fuzz(KernelConfig(), scheduler=scheduler, seed_value=3, budget=None,
             step_budget=STANDARD_STEPS, ops=[racy_counter])
    assert r.found and r.invariant == "lost_update"
    # The mail-size interleaving: two tasks, one op each, one preemption.
    assert r.shrunk() == {"tasks": 2, "threads": 2, "ops": 2, "steps": 6, "preemptions": 1}
    assert r.minimal_preemptions is True


@pytest.mark.long
def test_same_seed_same_result(racy_counter: str) -> None:
    a = fuzz(KernelConfig(), seed_value=11, budget=None, max_examples=200, ops=[racy_counter])
    b = fuzz(KernelConfig(), seed_value=11, budget=None, max_examples=200, ops=[racy_counter])
    assert a.found == b.found
    # Same examples up to the first failure, same shrunk case.  (Hypothesis' shrink pass
    # count may vary between runs in one process; the result it shrinks to does not.)
    assert a.stats.first_failure_example == b.stats.first_failure_example
    assert a.case == b.case
    assert a.failure.trace == b.failure.trace


def test_budget_overrun_is_not_a_failure() -> None:
    @operation("test_spin_forever", mm="mm")
    def test_spin_forever(k, mm):  # type: ignore[no-untyped-def]
        """never finishes"""
        while True:
            yield "test_spin_forever:loop"

    try:
        r = fuzz(KernelConfig(), budget=None, max_examples=20, ops=["test_spin_forever"])
    finally:
        del OPS["test_spin_forever"]
    assert not r.found
    assert r.budget_hits > 0


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vmfuzz", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_rejects_unknown_bug_with_one_line() -> None:
    res = _cli("fuzz", "--bug", "no_such_bug", "--budget", "1")
    assert res.returncode == 2
    assert "unknown bug no_such_bug" in res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_cli_internal_error_is_one_line_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import vmfuzz.campaign
    from vmfuzz.cli import main

    def broken(*args: object, **kw: object) -> None:
        raise RuntimeError("engine on fire")

    monkeypatch.setattr(vmfuzz.campaign, "fuzz", broken)
    monkeypatch.delenv("VMFUZZ_TRACEBACK", raising=False)
    assert main(["fuzz", "--max-examples", "1", "--json", "--no-save"]) == 3
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: engine on fire" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_json_on_fixed_kernel() -> None:
    res = _cli("fuzz", "--seed", "1", "--max-examples", "15", "--json", "--no-save")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    for key in ("found", "invariant", "examples", "steps", "seconds", "case", "shrunk"):
        assert key in out
    assert out["found"] is False and out["invariant"] is None and out["shrunk"] is None
    assert out["examples"] >= 15 and out["steps"] > 0


@pytest.mark.long
def test_broken_model_variant_found_and_shrunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variant of the real fault path, built here: do_anonymous_page without the pte_none
    recheck under page_table_lock (two threads faulting one page both install theirs)."""
    from vmfuzz.kernel import kernel as kernel_mod
    from vmfuzz.kernel import memory
    from vmfuzz.kernel.mm_types import VM_WRITE, PresentPte
    from vmfuzz.kernel.page_alloc import alloc_page, lru_cache_add_active_or_unevictable
    from vmfuzz.kernel.rmap import anon_vma_prepare, page_add_new_anon_rmap

    def no_recheck(k, mm, vma, addr, write):  # type: ignore[no-untyped-def]
        yield from anon_vma_prepare(k, vma)
        page = yield from alloc_page(k)
        if page is None:
            return -12
        yield k.sched.spin_lock(mm.page_table_lock)
        mm.rss += 1
        page_add_new_anon_rmap(k, page, vma, addr)
        lru_cache_add_active_or_unevictable(k, page, vma)
        k.set_pte_at(mm, addr, PresentPte(page.pfn, bool(vma.vm_flags & VM_WRITE)))
        k.sched.spin_unlock(mm.page_table_lock)
        return 0

    monkeypatch.setattr(memory, "do_anonymous_page", no_recheck)
    monkeypatch.setattr(kernel_mod, "_BOOTED", {})  # worlds built by the variant, not cached
    r = fuzz(KernelConfig(), seed_value=0, budget=None, step_budget=4 * STANDARD_STEPS,
             ops=["read", "write"])
    assert r.found, "the missing pte_none recheck was not found"
    shrunk = r.shrunk()
    assert shrunk is not None
    assert shrunk["tasks"] == 2 and shrunk["preemptions"] == 1, shrunk
    assert r.minimal_preemptions is True



def test_a_failure_in_a_dropped_example_is_kept() -> None:
    """Hypothesis concludes an example whose data ran out (replaying a prefix) before teardown
    runs, and drops what teardown raises; a failure found there (draining the threads, an
    amplified schedule) is kept as the campaign's failure, not lost.  A failure in a live,
    non-final example is left to Hypothesis to shrink and replay."""
    from inspect import signature

    from hypothesis.control import BuildContext
    from hypothesis.internal.conjecture.data import ConjectureData
    from vmfuzz.strategies import KernelMachine

    from vmfuzz.context import CampaignContext
    from vmfuzz.kernel import Kernel

    v = Violation("use_after_free", "test")
    for frozen, kept in ((False, False), (True, True)):
        ctx = CampaignContext(KernelConfig())
        m = KernelMachine(ctx)
        m.k = Kernel(m.example_config, m.sched)
        data = ConjectureData.for_choices([])
        if frozen:
            data.freeze()
        params = signature(BuildContext).parameters
        extra = {"wrapped_test": None} if "wrapped_test" in params else {}
        with BuildContext(data, is_final=False, **extra):
            m._capture(v)
        assert (ctx.failure is not None) == kept
        assert ctx.stats.first_failure_example == 1


def test_campaigns_leave_nothing_behind_in_the_process() -> None:
    """A campaign's configuration, statistics, failure and pool live in its context, not on
    a class: twenty campaigns in one process leave no machine class, context or pool alive
    (Hypothesis keeps per-class state for every state-machine class it has run)."""
    import gc
    import weakref

    from hypothesis.stateful import RuleBasedStateMachine
    from vmfuzz.strategies import KernelMachine

    from vmfuzz.context import CampaignContext
    from vmfuzz.pool import Pool

    made: list[weakref.ref[object]] = []
    real_with_pool = CampaignContext.with_pool

    def spy(self: CampaignContext) -> CampaignContext:
        out = real_with_pool(self)
        made.append(weakref.ref(self))
        made.append(weakref.ref(out.pool))
        return out

    per_class = RuleBasedStateMachine._setup_state_per_class
    classes0 = len(KernelMachine.__subclasses__())
    CampaignContext.with_pool = spy  # type: ignore[method-assign]
    try:
        for i in range(20):
            fuzz(KernelConfig(), seed_value=i, budget=None, max_examples=2, chunk=2,
                 mutants=2, verify_minimal=False)
    finally:
        CampaignContext.with_pool = real_with_pool  # type: ignore[method-assign]
    gc.collect()
    assert len(made) == 40  # every campaign had a context with a pool
    alive = [r() for r in made if r() is not None]
    assert not alive, f"{len(alive)} contexts or pools still alive"
    assert Pool  # the type the refs above point to
    assert len(KernelMachine.__subclasses__()) == classes0
    assert [c for c in per_class if issubclass(c, KernelMachine)] in ([], [KernelMachine])


@pytest.mark.long  # 7-10 s of CPU: out of the default run
def test_a_campaign_depends_on_its_seed_not_on_what_was_imported() -> None:
    """Same seed, same campaign, whichever of our modules the caller imported first (the CLI
    imports more of them than the Python API, pytest more again): Hypothesis would otherwise
    mix literals of every loaded local module into its draws."""
    code = (
        "import sys\n"
        "if sys.argv[1] == 'cli': import vmfuzz.cli, vmfuzz._cmd_soak, vmfuzz._cmd_bench\n"
        "from vmfuzz.campaign import fuzz\n"
        "from vmfuzz.kernel import KernelConfig\n"
        "r = fuzz(KernelConfig(), seed_value=3, budget=None, max_examples=60)\n"
        "print(r.examples, r.steps)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, which], stdout=subprocess.PIPE,
                              text=True) for which in ("api", "cli")]  # side by side
    outs = set()
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0
        outs.add(out)
    assert len(outs) == 1, outs
