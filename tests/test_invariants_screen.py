"""The fused screen (invariants/_screen.py) clears a touched page, entry or mm only when every hook
it covers would answer None there: checked hook by hook on every committed case and mutant
witness and on a slice of the recorded workload, and a screen that clears too much is seen."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import vmfuzz.invariants._monitor as monitor_mod
from vmfuzz.invariants import CHECKS
from vmfuzz.invariants._screen import (
    ENTRY_HOOKS,
    MM_HOOKS,
    PAGE_HOOKS,
    quiet_entry,
    quiet_mm,
    quiet_page,
)

from vmfuzz import _workload
from vmfuzz.case import Case, execute
from vmfuzz.corpus import case_files, load

ROOT = Path(__file__).resolve().parents[1]


def _cases() -> list[Case]:
    """The committed cases and mutant witnesses, and a slice of the recorded workload (a
    campaign's own runs: their mid-flight states are deferred, which the screen must see)."""
    files, errors = case_files([ROOT / "corpus", ROOT / "vmfuzz" / "_mutants"])
    assert files and not errors
    runs = _workload.load().runs
    return [load(f).case for f in files] + [r.case for r in runs[:: len(runs) // 20]]


def _verified(
    screen: Callable[[Any, int], bool], scope: str, covered: frozenset[Any], cleared: list[int]
) -> Callable[[Any, int], bool]:
    """``screen``, asserting that each covered hook answers None wherever it clears a key."""

    def check(m: Any, key: int) -> bool:
        quiet = screen(m, key)
        if quiet:
            cleared.append(key)
            for c in CHECKS.values():
                hook = getattr(c, scope)
                if hook in covered and c.name in m.names:
                    assert hook(m, key) is None, (c.name, scope, key)
        return quiet

    return check


@pytest.fixture
def cleared(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[list[int], list[int], list[int]]]:
    pages: list[int] = []
    entries: list[int] = []
    mms: list[int] = []
    monkeypatch.setattr(monitor_mod, "quiet_page",
                        _verified(quiet_page, "page", PAGE_HOOKS, pages))
    monkeypatch.setattr(monitor_mod, "quiet_entry",
                        _verified(quiet_entry, "entry", ENTRY_HOOKS, entries))
    monkeypatch.setattr(monitor_mod, "quiet_mm", _verified(quiet_mm, "mm", MM_HOOKS, mms))
    yield pages, entries, mms


def test_the_screen_clears_only_what_every_covered_hook_clears(
    cleared: tuple[list[int], list[int], list[int]],
) -> None:
    kinds = set()
    for case in _cases():
        kinds.add(execute(case).outcome.kind)
    pages, entries, mms = cleared
    assert "violation" in kinds and "clean" in kinds
    assert len(pages) > 100 and len(entries) > 10 and len(mms) > 10  # the screen did clear keys


def test_a_screen_that_clears_too_much_is_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    cleared: list[int] = []
    lying = _verified(lambda m, pfn: True, "page", PAGE_HOOKS, cleared)
    monkeypatch.setattr(monitor_mod, "quiet_page", lying)
    with pytest.raises(AssertionError):
        for case in _cases():
            execute(case)


def test_the_mm_screen_does_not_clear_a_freed_vma_in_mmap_cache() -> None:
    """The run's own steps reach the mm screen only where the layout did not change (seed
    004's freed vma is reported at the step that changed it), so its one covered hook's
    violation is checked on the final state of that case."""
    cc = load(ROOT / "corpus" / "mail" / "seed004_mmap_cache_holds_detached_vma.json")
    run = execute(cc.case, cc.source())
    v = run.outcome.violation
    assert v is not None and v.check == "use_after_free" and "mmap_cache" in v.message
    m = monitor_mod.Monitor(run.kernel)
    m.__dict__["k"] = run.kernel
    (hook,) = MM_HOOKS
    reported = [mm_id for mm_id in sorted(run.kernel.mms) if hook(m, mm_id) is not None]
    assert reported
    assert not any(quiet_mm(m, mm_id) for mm_id in reported)


def test_every_screened_hook_is_a_registered_hook() -> None:
    assert PAGE_HOOKS <= {c.page for c in CHECKS.values()}
    assert ENTRY_HOOKS <= {c.entry for c in CHECKS.values()}
    assert MM_HOOKS <= {c.mm for c in CHECKS.values()}
