"""Object-sensitive coverage (vmfuzz/_alias.py) and the objects a run worked on
(vmfuzz.program.objects_of): two tasks meet on an object, not merely side by side."""

from __future__ import annotations

import random

from vmfuzz._alias import PREFIX, alias_pairs, reused
from vmfuzz._scheduler import TraceStep
from vmfuzz.case import Case, OpCall, Schedule, TaskSpec, execute
from vmfuzz.kernel import KernelConfig
from vmfuzz.pool import Pool, interleavings
from vmfuzz.program import objects_of
from vmfuzz.schedules import PCT, RandomWalk


def _two(mm1: int) -> Case:
    """Two tasks faulting page 0 of mm 0 and of ``mm1``, interleaved by a recorded walk."""
    return Case(KernelConfig(), (
        TaskSpec("T0", (OpCall("write", {"mm": 0, "addr": 0}),)),
        TaskSpec("T1", (OpCall("write", {"mm": mm1, "addr": 0}),)),
    ), Schedule("none"))


def _pairs(case: Case, seed: int) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(label pairs, alias pairs) of ``case`` under random walk ``seed``."""
    run = execute(case, RandomWalk(seed))
    every = interleavings(run.sched.trace, run.kernel.history)
    alias = alias_pairs(run.sched.trace, run.kernel.history)
    return every - alias, alias


def test_tasks_on_one_mm_meet_on_its_objects_and_on_unrelated_mms_do_not() -> None:
    one_labels: set[tuple[str, str]] = set()
    one_alias: set[tuple[str, str]] = set()
    two_labels: set[tuple[str, str]] = set()
    two_alias: set[tuple[str, str]] = set()
    for seed in range(4):
        labels, alias = _pairs(_two(0), seed)
        one_labels |= labels
        one_alias |= alias
        labels, alias = _pairs(_two(1), seed)
        two_labels |= labels
        two_alias |= alias
    # both meet label pairs (the tasks ran side by side) ...
    assert any(stood for stood, _ in one_labels) and any(stood for stood, _ in two_labels)
    # ... but only the tasks on one mm met on an object: its mmap_sem, page_table_lock, pte
    assert one_alias and all(a.startswith(PREFIX) for a, _ in one_alias)
    assert any(a.startswith(f"{PREFIX}pte ") for a, _ in one_alias)
    assert not any(a.startswith(f"{PREFIX}pte ") for a, _ in two_alias)


def test_alias_pairs_need_two_tasks_and_a_write() -> None:
    def st(n: int, task: str, label: str, event: str) -> TraceStep:
        return TraceStep(n, task, label, event, ())

    trace = [st(0, "T0", "f:down_read(mmap_sem)", "takes mm0->mmap_sem"),
             st(1, "T1", "g:down_read(mmap_sem)", "takes mm0->mmap_sem"),
             st(2, "T1", "g:spin_lock(page_table_lock)", "takes mm0->page_table_lock"),
             st(3, "T0", "f:spin_lock(page_table_lock)", "blocks on mm0->page_table_lock")]
    events = [(2, "T1", ("g", "g"), "set_pte", (0, 0), None),
              (2, "T1", ("g", "g"), "set_pte", (0, 0), None),
              (3, "T0", ("f", "f"), "pte_clear", (0, 0), None)]
    assert alias_pairs(trace, events) == {
        # two readers of one mmap_sem meet nothing; one task's two writes meet nothing
        (f"{PREFIX}lock g:spin_lock(page_table_lock) w", "f:spin_lock(page_table_lock) w"),
        (f"{PREFIX}pte g w", "f w"),
    }


def test_objects_of_a_fork_include_the_child_it_fills() -> None:
    case = Case(KernelConfig(world=frozenset({"resident"})), (
        TaskSpec("T0", (OpCall("fork", {"mm": 0}),)),), Schedule("none"))
    run = execute(case)
    targets, frames = objects_of(run.kernel.history)
    child = max(run.kernel.mms)
    assert (child, 0) in targets and (child, None) in targets  # its ptes, its vmas
    assert frames  # the pages the copy shares
    assert targets == list(dict.fromkeys(targets))  # each once, in order of first touch


def test_an_aba_whose_slot_was_freed_and_reused_is_told_from_a_swap_cache_one() -> None:
    """In a world of swapped pages shared with a forked child: a read swaps page 3 in (the
    page stays in the swap cache) and swap_out puts back the same entry, never freed; a write
    copies it, the child's exit frees the entry, and swap_out gives that slot to the copy."""
    world = KernelConfig(world=frozenset({"swapped", "forked"}))

    def aba(*ops: OpCall) -> list[bool]:
        run = execute(Case(world, (TaskSpec("T0", ops),), Schedule("none")))
        assert run.kernel.pte_aba
        return reused(run.kernel.history, run.kernel.pte_aba)

    swap_out = OpCall("swap_out", {"count": 1})
    assert aba(OpCall("read", {"mm": 0, "addr": 3}), swap_out) == [False]
    assert aba(OpCall("write", {"mm": 0, "addr": 3}), OpCall("exit", {"mm": 3}),
               swap_out) == [True]


def test_a_partner_probe_that_frees_a_slot_between_swapin_and_swap_out_gets_an_aba_probe() -> None:
    """4969c1192d15's race, one partner and one stalled reader away: a pool entry swaps in
    page 3 (shared with the forked child) by writing it and runs swap_out; its partner's
    teardown of the child, landing between the two, frees the slot and swap_out gives it to
    the copy (an ABA whose slot was reused); the ABA probe of that partner run stalls a reader
    in the window and pte_same() is fooled."""
    config = KernelConfig(bugs=frozenset({"swapin_no_swapcache_recheck"}),
                          world=frozenset({"swapped", "forked"}))
    entry = Case(config, (TaskSpec("T0", (OpCall("write", {"mm": 0, "addr": 3}),
                                          OpCall("swap_out", {"count": 1}))),),
                 Schedule("none"))
    pool = Pool(config)
    assert pool._run_one(entry, PCT(0, 2, 10)) is None and pool.entries
    pool._unprobed = []
    found = pool.probe(random.Random(3), float("inf"), parents=list(pool.entries))
    assert found is None and pool._aba  # the partner run made the ABA: a probe is queued
    assert next(iter(pool.aba_hits))[-1]  # its slot was reused
    found = pool.probe(random.Random(3), float("inf"), parents=[])
    assert found is not None and found.violation.check == "data_integrity"
