"""The world a run starts from (vmfuzz.kernel.boot): each feature builds exactly the state its
documentation draws, with the real kernel paths, and the invariants accept it."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

from vmfuzz.case import Case, OpCall, Schedule, TaskSpec, execute
from vmfuzz.kernel import Kernel, KernelConfig
from vmfuzz.kernel.boot import WORLD_FEATURES
from vmfuzz.kernel.mm_types import PresentPte, SwapPte


def layout(k: Kernel, mm_id: int, width: int = 8) -> str:
    """``R`` present, ``S`` swap pte, ``.`` mapped but not faulted, `` `` no vma."""
    mm = k.mms[mm_id]
    row = ""
    for addr in range(width):
        pte = mm.pgd.get(addr)
        vma = mm.mmap
        while vma is not None and not vma.vm_start <= addr < vma.vm_end:
            vma = vma.vm_next
        if isinstance(pte, PresentPte):
            row += "R"
        elif isinstance(pte, SwapPte):
            row += "S"
        else:
            row += "." if vma is not None else " "
    return row


@pytest.mark.parametrize(
    ("world", "initial", "child"),
    [
        ((), "........", None),
        (("resident",), "RR......", None),
        (("swapped",), "...SS...", None),
        (("split",), ".. .....", None),
        (("forked",), "........", "R......."),
        (("swapped", "forked"), "...SS...", "R..SS..."),
        (WORLD_FEATURES, "RR SS...", "RR.SS..."),
    ],
)
def test_world_layout(world: tuple[str, ...], initial: str, child: str | None) -> None:
    k = Kernel(KernelConfig(world=world))
    for mm_id in range(3):
        assert layout(k, mm_id) == initial, mm_id
    if child is None:
        assert sorted(k.mms) == [0, 1, 2]
    else:
        assert layout(k, 3) == child


def test_world_accounting() -> None:
    k = Kernel(KernelConfig(world=WORLD_FEATURES))
    # 3 x 2 resident pages + the child's COW copy of page 0; swapped pages hold no frame.
    assert len(k.free_list) == 12 - 7
    used = [e for e, n in enumerate(k.swap.swap_map) if e and n]
    assert len(used) == 6
    # fork duplicated the parent's two swap entries: two users each.
    assert sorted(k.swap.swap_map[e] for e in used) == [1, 1, 1, 1, 2, 2]


def test_swap_sync_world_skips_the_swap_cache() -> None:
    from vmfuzz.kernel.swapfile import synchronous_io

    assert synchronous_io(Kernel(KernelConfig(world=("swap_sync",))))
    assert not synchronous_io(Kernel(KernelConfig()))


def test_every_world_runs_clean_and_reads_back() -> None:
    """Each feature alone and all together: reading every page returns what boot wrote, with
    all invariants checked, and exit frees everything."""
    from vmfuzz.case import OpCall

    for world in [(f,) for f in WORLD_FEATURES] + [WORLD_FEATURES]:
        ops = tuple(OpCall("read", {"mm": 0, "addr": a}) for a in range(8))
        ops += (OpCall("swapoff", {}), OpCall("exit", {"mm": 0}))
        case = Case(KernelConfig(world=world), (TaskSpec("T0", ops),), Schedule("none"))
        run = execute(case)
        assert run.outcome.kind == "clean", (world, run.outcome)


def test_unknown_world_feature_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown world feature"):
        KernelConfig(world=("hugepages",))


def test_world_round_trips_through_the_corpus(tmp_path: Path, repo_root: Path) -> None:
    from vmfuzz.corpus import CorpusError, load

    cfg = KernelConfig(world=("forked", "swapped"))
    assert KernelConfig.from_json(json.loads(json.dumps(cfg.to_json()))) == cfg
    src = json.loads((repo_root / "corpus/bugs/migrate_no_anon_vma_ref.json").read_text())
    src["config"]["world"] = ["resident", "teleport"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(src))
    with pytest.raises(CorpusError, match=r"config\.world\[1\].*unknown world feature 'teleport'"):
        load(bad)


def test_boot_targets_name_the_populated_pages() -> None:
    k = Kernel(KernelConfig(world=("swapped", "forked")))
    assert k.boot_targets == [(0, 3), (0, 4), (1, 3), (1, 4), (2, 3), (2, 4),
                              (3, 0), (3, 3), (3, 4)]
    for mm, addr in k.boot_targets:
        assert addr in k.mms[mm].pgd  # every target is a page with a pte
    assert Kernel(KernelConfig()).boot_targets == []


def test_world_is_built_by_the_kernel_under_test() -> None:
    """The bug switches act on the world's building too: an old fork (76545066c852) leaves the
    child's anon_vma without a pin on its root, as it would at run time.  Every switch but one
    still builds the whole world (page 2 a hole, 3 and 4 swapped)."""
    from vmfuzz.kernel import BUGS

    def root_pins(k: Kernel) -> int:
        child = k.mms[3].mmap
        assert child is not None and child.anon_vma is not None
        root = child.anon_vma.root
        assert root is not child.anon_vma  # the parent's anon_vma: the world forked after R R
        return root.refcount

    world = ("resident", "forked")
    assert root_pins(Kernel(KernelConfig(world=world))) == 1
    assert root_pins(Kernel(KernelConfig(bugs=["anon_vma_root_not_pinned"], world=world))) == 0
    for name in sorted(BUGS):
        k = Kernel(KernelConfig(bugs=[name], world=WORLD_FEATURES))
        assert k.config.bugs == {name}
        if name == "detach_vmas_outside_ptl":
            continue  # breaks the split (next test)
        assert k.boot_violation is None, name
        assert layout(k, 0) == "RR SS..."


def test_a_check_failed_while_building_the_world_is_the_runs_finding() -> None:
    """The old munmap (seed 004) detaches vmas outside page_table_lock in the world's own split:
    the run reports lock_not_held at step 0, before any task, and says it was the world."""
    config = KernelConfig(bugs=["detach_vmas_outside_ptl"], world=["split"])
    run = execute(Case(config, ()))
    assert run.outcome.kind == "violation" and run.outcome.steps == 0
    v = run.outcome.violation
    assert v is not None and v.check == "lock_not_held"
    assert v.message.startswith("while building the world (split): ")
    assert (v.step, v.task, v.label) == (0, "boot", "do_munmap:detach_vmas_to_be_unmapped")
    assert execute(Case(attrs.evolve(config, bugs=[]), ())).outcome.kind == "clean"
    assert execute(Case(attrs.evolve(config, world=["resident"]), ())).outcome.kind == "clean"


def _same(a: object, b: object, pairs: dict[int, int]) -> bool:
    """``a`` and ``b`` are the same object graph: equal values, and aliased where the other is
    (``pairs`` maps each object of ``a`` met so far to its counterpart in ``b``)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (int, float, str, bytes, bool, type(None), frozenset, tuple)) and not (
        isinstance(a, tuple) and any(not isinstance(x, (int, str)) for x in a)
    ):
        return a == b
    if id(a) in pairs:
        return pairs[id(a)] == id(b)
    pairs[id(a)] = id(b)
    if isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple))
        return len(a) == len(b) and all(_same(x, y, pairs) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return list(a) == list(b) and all(_same(a[x], b[x], pairs) for x in a)
    if isinstance(a, (set, frozenset)):
        return a == b  # sets of ints and names only (a set of objects would not compare)
    if callable(a) and not hasattr(a, "__dict__") and not hasattr(a, "__slots__"):
        return a is b
    slots = [s for c in type(a).__mro__ for s in getattr(c, "__slots__", ())]
    va = {s: getattr(a, s) for s in slots if hasattr(a, s)} | getattr(a, "__dict__", {})
    vb = {s: getattr(b, s) for s in slots if hasattr(b, s)} | getattr(b, "__dict__", {})
    return list(va) == list(vb) and all(_same(va[x], vb[x], pairs) for x in va)


def _state(k: Kernel) -> dict[str, object]:
    return {a: v for a, v in vars(k).items() if a != "sched"}


@pytest.mark.parametrize("bugs", [(), ("anon_vma_root_not_pinned",), ("vm_swap_full_delete_race",)])
def test_a_world_restored_from_its_snapshot_is_the_world_booted(
    bugs: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every run boots its world from a snapshot of the first boot of its config: object for
    object (aliases included) what a boot builds, and a copy of its own: what one run does to
    its kernel never reaches the next run's."""
    from itertools import combinations

    from vmfuzz.kernel import kernel as kernel_mod

    monkeypatch.setattr(kernel_mod, "_BOOTED", {})
    for n in range(len(WORLD_FEATURES) + 1):
        for world in combinations(WORLD_FEATURES, n):
            config = KernelConfig(bugs=bugs, world=world)
            kernel_mod._BOOTED.clear()
            booted = Kernel(config)
            assert config in kernel_mod._BOOTED  # the first boot left its snapshot
            run = execute(
                Case(
                    config,
                    (
                        TaskSpec(
                            "T0",
                            (
                                OpCall("write", {"mm": 0, "addr": 0}),
                                OpCall("fork", {"mm": 0}),
                                OpCall("write", {"mm": 0, "addr": 3}),
                                OpCall("exit", {"mm": 0}),
                            ),
                        ),
                    ),
                )
            )  # changes the state of its (restored) kernel a lot
            assert run.outcome.kind == "clean"
            restored = Kernel(config)
            assert _same(_state(booted), _state(restored), {}), world
            assert restored.pages is not booted.pages and restored.mms is not booted.mms


def test_a_world_whose_building_failed_is_built_anew_each_time() -> None:
    """No snapshot of a world that failed a check on the way (its boot stopped mid-path): each
    run builds it and reports the finding itself."""
    config = KernelConfig(bugs=["detach_vmas_outside_ptl"], world=["split"])
    first, second = Kernel(config), Kernel(config)
    assert first.boot_violation is not None and second.boot_violation is not None
    assert first.boot_violation is not second.boot_violation


def test_shortage_reclaims_in_the_allocating_task() -> None:
    """At or below the min watermark an allocation reclaims first, in its own task: the write
    that finds only pages_min frames free swaps out a page of the biggest mm (its own), then
    maps its new page."""
    cfg = KernelConfig(world=frozenset({"shortage", "resident"}))
    k = Kernel(cfg)
    assert k.pages_min == cfg.nr_frames // 4
    assert layout(k, 0) == "RR......"  # built as without the feature
    writes = [OpCall("write", {"mm": 0, "addr": a}) for a in (2, 3, 4, 5)]
    case = Case(cfg, (TaskSpec("T0", tuple(writes)),), Schedule("none"))
    run = execute(case)
    assert run.outcome.kind == "clean"
    assert run.kernel.stats.get("allocstall") == 1  # the last write, with 3 frames free
    assert layout(run.kernel, 0) == "SRRRRR.."  # its own page 0 went to swap
    without = execute(attrs.evolve(case, config=attrs.evolve(cfg, world=frozenset({"resident"}))))
    assert layout(without.kernel, 0) == "RRRRRR.." and "allocstall" not in without.kernel.stats
