"""page_refs_at_rest: with no task running, a page's count is exactly its users.

A leaked reference keeps a frame allocated for ever and no free-time check sees it (count above
mapcount + cache is accepted while paths run: they hold references in local variables).  The
check closes that gap: the mutant ``read_swap_cache_async_leaks_page`` (vmfuzz/_mutants/) is
caught by it and by nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from vmfuzz.invariants import check_all
from vmfuzz.invariants._monitor import Monitor

from vmfuzz.case import Case, OpCall, TaskSpec, execute
from vmfuzz.kernel import KernelConfig
from vmfuzz.violation import Violation


def _at_rest(*ops: tuple[str, dict[str, int]]) -> Case:
    calls = tuple(OpCall(name, args) for name, args in ops)
    return Case(KernelConfig(), (TaskSpec("T1", calls),))


SWAPPED_IN = _at_rest(("mmap", {"mm": 0, "addr": 0, "npages": 2}), ("write", {"mm": 0, "addr": 0}),
                      ("write", {"mm": 0, "addr": 1}), ("kswapd", {"count": 1}),
                      ("read", {"mm": 0, "addr": 0}), ("fork", {"mm": 0}))


def test_quiet_at_rest_on_mapped_shared_and_cached_pages() -> None:
    run = execute(SWAPPED_IN)
    assert run.outcome.kind == "clean", run.outcome
    k = run.kernel
    assert any(p.count == 0 for p in k.pages) and any(p.count >= 2 for p in k.pages)
    assert k.swap.cache, "a swapped-in page stays in the swap cache"
    check_all(k)


@pytest.mark.parametrize("delta", [1, -1])
def test_a_count_off_by_one_at_rest_is_caught(delta: int) -> None:
    run = execute(SWAPPED_IN)
    k = run.kernel
    page = next(p for p in k.pages if p.count)
    page.count += delta
    with pytest.raises(Violation) as ei:
        check_all(k, ["page_refs_at_rest"])
    assert ei.value.check == "page_refs_at_rest"
    assert f"pfn {page.pfn}" in ei.value.message
    assert ("never put" in ei.value.message) == (delta > 0)


def test_references_held_while_a_task_runs_are_not_leaks() -> None:
    run = execute(SWAPPED_IN)
    k = run.kernel
    next(p for p in k.pages if p.count).count += 1  # a path's get_page, still in flight

    def idle() -> Iterator[str]:
        yield "idle"

    k.sched.spawn(idle(), "T2")
    Monitor(k, ["page_refs_at_rest"]).step()
    check_all(k, ["page_refs_at_rest"])
