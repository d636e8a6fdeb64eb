"""The world a run starts from (vmfuzz.kernel.boot): each feature builds exactly the state its
documentation draws, with the real kernel paths, and the invariants accept it."""

from __future__ import annotations

import json

import attrs
import pytest

from vmfuzz.case import Case, Schedule, TaskSpec, execute
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


def test_world_round_trips_through_the_corpus(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from vmfuzz.corpus import CorpusError, load

    cfg = KernelConfig(world=("forked", "swapped"))
    assert KernelConfig.from_json(json.loads(json.dumps(cfg.to_json()))) == cfg
    src = json.load(open("corpus/bugs/migrate_no_anon_vma_ref.json"))
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
