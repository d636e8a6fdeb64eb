"""The monitor's plan of each_step hooks: a step group's consecutive hooks run as one and answer
what the hooks one by one would; a kernel_flag guard is read as the attribute it names."""

from __future__ import annotations

from vmfuzz.invariants import CHECKS, promises
from vmfuzz.invariants._monitor import _grouped, _step_hooks
from vmfuzz.invariants._registry import kernel_flag

from vmfuzz.violation import Violation


def test_the_promise_hooks_run_as_one_group_in_registry_order() -> None:
    checks = [c for c in CHECKS.values() if c.each_step]
    plan = _step_hooks(checks, full=False)
    names = [name for name, _fn, _guard, _flag in plan]
    assert names == ["migration_pte_page_locked", "alloc_fails_with_free_frames",
                     "reserved_pte_cleared", "mprotect_promise"]
    _name, fn, guard, flag = plan[-1]
    assert guard is promises._active and flag is None
    assert "mprotect_promise, munmap_promise, mlock_promise, fork_promise, swapoff_promise" in (
        fn.__qualname__)
    # (an unguarded hook: one lookup of the allocator's failure count per step)
    assert [f for _n, _fn, _g, f in plan[:3]] == ["migration_ptes", None, "reclaim_unmaps"]
    # A selection groups what is left of it; one hook alone stays itself.
    some = [CHECKS[n] for n in ("munmap_promise", "fork_promise")]
    ((_n, fn2, _g, _f),) = _step_hooks(some, full=False)
    assert fn2.__qualname__ == "group(munmap_promise, fork_promise)"
    ((_n, fn3, _g, _f),) = _step_hooks([CHECKS["fork_promise"]], full=False)
    assert fn3 is CHECKS["fork_promise"].each_step
    # A full scan has no guards.
    assert all(g is None and f is None for _n, _fn, g, f in _step_hooks(checks, full=True))


def test_a_group_answers_what_its_hooks_one_by_one_answer() -> None:
    names = promises.CHECKS
    cases: list[list[Violation]] = [
        [],
        [Violation("fork_promise", "a"), Violation("munmap_promise", "b")],
        [Violation("swapoff_promise", "c"), Violation("swapoff_promise", "d")],
        [Violation("mlock_promise", "e"), Violation("mprotect_promise", "f")],
    ]
    for found in cases:
        def hooked(name: str, found: list[Violation] = found) -> Violation | None:
            return next((v for v in found if v.check == name), None)

        one_by_one = next((v for v in (hooked(n) for n in names) if v is not None), None)
        grouped = _grouped(lambda m, found=found: found, names)  # type: ignore[misc]
        assert grouped(None) is one_by_one
        if found:
            assert one_by_one is not None


def test_a_kernel_flag_guard_reads_its_attribute() -> None:
    guard = kernel_flag("migration_ptes", "doc")

    class K:
        migration_ptes: dict[int, int] = {}

    class M:
        k = K()

    assert guard(M()) is False  # type: ignore[arg-type]
    K.migration_ptes = {1: 2}
    assert guard(M()) is True  # type: ignore[arg-type]
    assert guard.__doc__ == "doc"
