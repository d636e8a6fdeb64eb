"""Candidate programs: smaller ones (a task, an operation or a world feature less, tasks
merged, operations moved), regrouped ones (the tasks a race serialises merged into one),
two-operation pairs, and near or grown ones (a feature, a sibling operation or an operation
more) for a race the failure reached through a detour.

Nothing here knows about any kernel path: only tasks, operations, their argument kinds and
the world features of the boot.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import attrs

from vmfuzz._scheduler import ran_steps
from vmfuzz.case import Case, OpCall, TaskSpec
from vmfuzz.kernel import OPS, Kernel, KernelConfig
from vmfuzz.kernel.boot import WORLD_FEATURES
from vmfuzz.program import kind_bounds, target_of

SIBLING_MERGE_OPS = 8  # merged-with-a-sibling programs only for failures this small
SERIALIZED_VICTIMS = 2  # serialized programs only for failures that preempt this few tasks


def serialized(case: Case, trace: Sequence[Any]) -> list[Case]:
    """Two-task programs from ``case`` and its failing run ``trace``: each task the run
    preempted, and every other task that ran a step (not only a blocked attempt) merged into
    one, in the order they first ran (then in the order they last ran).  The mails draw a
    race as two CPUs: the one that is preempted, and one that does what all the others did
    meanwhile; a failure whose other tasks ran one after the other shrinks to that, where
    deleting one task at a time changes whose turn comes next (a free departure the bounded
    search counts as a switch), or leaves a task blocked in flight."""
    by_name = {t.name: t for t in case.tasks}
    spans = ran_steps(trace)
    first = {n: a for n, (a, _) in spans.items()}
    last = {n: b for n, (_, b) in spans.items()}
    victims: list[str] = []
    for step, nxt in itertools.pairwise(trace):
        if (nxt.task != step.task and step.label != "exit" and not step.blocked
                and step.task not in victims):
            victims.append(step.task)
    out: list[Case] = []
    seen: set[tuple[tuple[str, ...], ...]] = set()
    if len(victims) > SERIALIZED_VICTIMS:
        return out  # a tangle of switches: not the one-window race this move is for
    for v in victims:
        if v not in by_name:
            continue
        for when in (first, last):
            others = sorted((n for n in when if n != v and n in by_name), key=when.__getitem__)
            if not others or (len(others) == 1 and len(case.tasks) == 2):
                continue
            one = TaskSpec(others[0], tuple(c for n in others for c in by_name[n].ops),
                           min(by_name[n].start for n in others))
            pair = (by_name[v], one) if first.get(v, 0) <= first[others[0]] else (one, by_name[v])
            key = tuple(tuple(c.describe() for c in t.ops) for t in pair)
            if key not in seen:
                seen.add(key)
                out.append(attrs.evolve(case, tasks=pair))
    return out


def _merged(tasks: Sequence[TaskSpec], i: int, j: int) -> list[TaskSpec]:
    """``tasks`` with task ``j``'s operations appended to task ``i``'s (in the place of the
    first of the two, from the earlier start)."""
    a, b = tasks[i], tasks[j]
    ts = list(tasks)
    ts[min(i, j)] = TaskSpec(a.name, a.ops + b.ops, min(a.start, b.start))
    del ts[max(i, j)]
    return ts


def regrouped_programs(case: Case, trace: Sequence[Any]) -> list[Case]:
    """Programs with fewer tasks that are not plain deletions or merges, tried after
    :func:`smaller_programs` (and not under sampled schedules: there are many, and they
    rarely beat the plain ones): each preempted task next to all the others merged
    (:func:`serialized`); for a small program, two tasks merged with one operation changed
    for a sibling (:func:`_siblings`): a race two tasks draw may need another entry point
    when one CPU does both tasks' work (kswapd's LRU scan reclaims the oldest page first,
    swap_out the biggest mm's in address order)."""
    out = serialized(case, trace)
    tasks = case.tasks
    if sum(len(t.ops) for t in tasks) > SIBLING_MERGE_OPS:
        return out
    for i in range(len(tasks)):
        for j in range(len(tasks)):
            if i == j:
                continue
            ts = _merged(tasks, i, j)
            k = min(i, j)
            m = ts[k]
            for x, call in enumerate(m.ops):
                for sib in _siblings(call):
                    ops = (*m.ops[:x], sib, *m.ops[x + 1 :])
                    out.append(attrs.evolve(case, tasks=(*ts[:k], attrs.evolve(m, ops=ops),
                                                         *ts[k + 1 :])))
    return out


def smaller_programs(case: Case) -> list[Case]:
    """Programs that are smaller than ``case``'s or run fewer tasks at once, most promising
    first: the same tasks in a world with fewer features (none, or one less); without one
    task; two tasks merged into one (one's operations after the other's, as if one CPU ran
    both); without a tail of operations; without one operation; one task's first (last)
    operation moved to the end (front) of another task; two tasks' last (first) operations
    exchanged; one task moved to the front (it runs first, to completion, under the default
    policy: a setup task serialised before the race); every task from the first one's start
    (a late start can cost the schedule a switch: it puts the task in where the race does
    not want it)."""
    tasks = case.tasks
    n = len(tasks)
    out: list[Case] = []

    def program(ts: list[TaskSpec]) -> None:
        out.append(attrs.evolve(case, tasks=tuple(ts)))

    world = case.config.world
    bare: list[frozenset[str]] = [frozenset()] if len(world) > 1 else []
    for w in bare + [world - {f} for f in sorted(world)]:
        out.append(attrs.evolve(case, config=attrs.evolve(case.config, world=w)))
    if n > 1:
        for i in range(n):
            program([t for k, t in enumerate(tasks) if k != i])
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            program(_merged(tasks, i, j))
    for i, t in enumerate(tasks):
        for m in range(1, len(t.ops) - 1):  # without a tail of operations, longest first
            program([*tasks[:i], attrs.evolve(t, ops=t.ops[:m]), *tasks[i + 1 :]])
    for i, t in enumerate(tasks):
        for j in range(len(t.ops) if len(t.ops) > 1 else 0):
            fewer = attrs.evolve(t, ops=t.ops[:j] + t.ops[j + 1 :])
            program([*tasks[:i], fewer, *tasks[i + 1 :]])
    for j, src in enumerate(tasks):
        if len(src.ops) < 2:
            continue
        for i, dst in enumerate(tasks):
            if i == j:
                continue
            ts = list(tasks)
            ts[j] = attrs.evolve(src, ops=src.ops[1:])
            ts[i] = attrs.evolve(dst, ops=dst.ops + src.ops[:1])
            program(ts)
            ts = list(tasks)
            ts[j] = attrs.evolve(src, ops=src.ops[:-1])
            ts[i] = attrs.evolve(dst, ops=src.ops[-1:] + dst.ops)
            program(ts)
    for i in range(n):
        for j in range(i + 1, n):
            a, b = tasks[i], tasks[j]
            for x, y in ((len(a.ops) - 1, 0), (len(a.ops) - 1, len(b.ops) - 1), (0, 0)):
                if a.ops[x] == b.ops[y]:
                    continue
                ts = list(tasks)
                ts[i] = attrs.evolve(a, ops=(*a.ops[:x], b.ops[y], *a.ops[x + 1 :]))
                ts[j] = attrs.evolve(b, ops=(*b.ops[:y], a.ops[x], *b.ops[y + 1 :]))
                program(ts)
    first = min((t.start for t in tasks), default=0)
    for i in range(1, n):
        program([attrs.evolve(tasks[i], start=first), *tasks[:i], *tasks[i + 1 :]])
    if any(t.start != first for t in tasks):
        program([attrs.evolve(t, start=first) for t in tasks])
    return out


def _fresh_name(tasks: Sequence[TaskSpec]) -> str:
    """The first of T0, T1 ... that no task of ``tasks`` is named (a neutral name: later
    passes may merge more into the task, setup or not)."""
    names = {t.name for t in tasks}
    return next(f"T{k}" for k in itertools.count() if f"T{k}" not in names)


def split_programs(case: Case) -> list[Case]:
    """Programs with a prefix of one task's operations split off into a setup task that runs
    first, to completion, under the default policy (first in the list, from the first
    start): the rest of that task and the others start from the world it set up.  A race
    whose setup (an mmap, a write) sits in the same task as its racing operation needs the
    other task switched in after the setup and out again; the mails do not draw setup as
    part of the race, and split, the race needs one switch fewer.  The rest of the task
    stays in its place, or goes after the others (then they run before it under the default
    policy: what a free departure would choose).  Shortest setup first; the same operations,
    one task more, so the shrink keeps one only when it saves a task in flight or a switch."""
    tasks = case.tasks
    first = min((t.start for t in tasks), default=0)
    name = _fresh_name(tasks)
    out: list[Case] = []
    longest = max((len(t.ops) for t in tasks), default=0)
    for m in range(1, longest):
        for i, t in enumerate(tasks):
            if len(t.ops) <= m:
                continue
            setup = TaskSpec(name, t.ops[:m], first)
            rest = attrs.evolve(t, ops=t.ops[m:])
            others = [*tasks[:i], *tasks[i + 1 :]]
            orders = [[*tasks[:i], rest, *tasks[i + 1 :]]]
            if i < len(tasks) - 1:
                orders.append([*others, rest])
            for ts in orders:
                out.append(attrs.evolve(case, tasks=(setup, *ts)))
    return out


def _smallest_call(op: str, mm: int, addr: int, config: KernelConfig) -> OpCall:
    """``op`` aimed at (``mm``, ``addr``) with every other argument at its smallest."""
    args = {}
    for a, kind in OPS[op].params:
        args[a] = mm if kind == "mm" else addr if kind == "addr" else kind_bounds(kind, config)[0]
    return OpCall(op, args)


def _variations(call: OpCall, config: KernelConfig) -> list[OpCall]:
    """``call`` with one argument set to the smallest or the largest value of its kind."""
    out = []
    for a, kind in OPS[call.op].params:
        for v in kind_bounds(kind, config):
            if call.args.get(a) != v:
                out.append(OpCall(call.op, {**call.args, a: v}))
    return out


def _nudges(call: OpCall, config: KernelConfig) -> list[OpCall]:
    """``call`` with one argument one more or one less (within its kind's bounds): a page
    more makes an mmap reach and merge with the next vma, where the largest value fails."""
    out = []
    for a, kind in OPS[call.op].params:
        lo, hi = kind_bounds(kind, config)
        for v in (call.args[a] - 1, call.args[a] + 1):
            if lo <= v <= hi and v not in (lo, hi):  # the bounds are _variations'
                out.append(OpCall(call.op, {**call.args, a: v}))
    return out


def _siblings(call: OpCall) -> list[OpCall]:
    """``call`` as each other operation that takes the same arguments (munmap for an mmap,
    a write for a read, an exit for a fork ...): a failure found through one operation may
    need fewer switches through its sibling."""
    if call.op not in OPS:
        return []
    params = OPS[call.op].params
    return [OpCall(op, dict(call.args)) for op in sorted(OPS)
            if op != call.op and OPS[op].params == params]


def calls_of(case: Case) -> frozenset[str]:
    """The distinct operations of ``case``'s program (as :meth:`OpCall.describe` spells them)."""
    return frozenset(c.describe() for t in case.tasks for c in t.ops)


def pair_programs(case: Case) -> tuple[list[Case], list[Case]]:
    """Two-task programs of one operation each, in ``case``'s world: pairs of its own
    operations, then pairs with one of their variations (:func:`_variations`).  A failure
    with many tasks and switches rarely shrinks one deletion at a time (every deletion moves
    every later switch), while the race inside it is often between two of its operations."""
    calls = list({c.describe(): c for t in case.tasks for c in t.ops}.values())
    varied = list({v.describe(): v for c in calls for v in _variations(c, case.config)}.values())
    names = [t.name for t in case.tasks[:2]] if len(case.tasks) >= 2 else ["T0", "T1"]

    def two(a: OpCall, b: OpCall) -> Case:
        return attrs.evolve(case, tasks=(TaskSpec(names[0], (a,)), TaskSpec(names[1], (b,))))

    own = [two(a, b) for a in calls for b in calls]
    more = [two(a, b) for a in calls for b in varied] + [two(b, a) for a in calls for b in varied]
    return own, more


def grown_programs(case: Case) -> tuple[list[Case], list[Case], list[Case]]:
    """Programs that are no smaller but may fail with fewer tasks in flight or fewer
    switches: a race the program reached through a detour (a fault taken inside another
    operation, a second task doing what a setup operation would do).  Deletion alone never
    reaches them.  Returns three lists:

    * near ones, as many operations: its world with one feature more (setup done at boot: a
      second vma, a swapped page), with each task first in turn; one operation changed for a
      sibling (:func:`_siblings`); one argument set to the smallest or largest value of its
      kind (a munmap of the whole address space frees a vma where a partial one only splits
      it);
    * for a program of at most two operations, both near moves at once: a world feature
      more and one operation changed or varied (or one argument one up or down);
    * grown ones, ONE operation more: a copy of one of its operations, or any operation of
      the table aimed at a page the program or its world uses (other arguments at their
      smallest), put at the front or the end of a task; each also with the tasks merged into
      one.
    """
    tasks = case.tasks
    world = case.config.world
    first = min((t.start for t in tasks), default=0)
    near: list[Case] = []
    bigger = [attrs.evolve(case.config, world=world | {f}) for f in WORLD_FEATURES
              if f not in world]
    for config in bigger:  # each task first in turn (a setup done at boot changes the race)
        for i in range(len(tasks)):
            ts = (attrs.evolve(tasks[i], start=first), *tasks[:i], *tasks[i + 1 :])
            near.append(attrs.evolve(case, config=config, tasks=ts))
    varied_tasks: list[tuple[TaskSpec, ...]] = []
    nudged_tasks: list[tuple[TaskSpec, ...]] = []
    for i, t in enumerate(tasks):
        for j, call in enumerate(t.ops):
            for into, calls in (
                (varied_tasks, _siblings(call) + _variations(call, case.config)),
                (nudged_tasks, _nudges(call, case.config)),
            ):
                for varied in calls:
                    ops = (*t.ops[:j], varied, *t.ops[j + 1 :])
                    into.append((*tasks[:i], attrs.evolve(t, ops=ops), *tasks[i + 1 :]))
    near += [attrs.evolve(case, tasks=ts) for ts in varied_tasks]
    out: list[Case] = []
    pages: list[tuple[int, int]] = []
    for t in case.tasks:
        for call in t.ops:
            tgt = target_of(call)
            if tgt is not None:
                pages.append((tgt[0], tgt[1] if tgt[1] is not None else 0))
    pages += Kernel(case.config).boot_targets
    extra: list[OpCall] = [c for t in case.tasks for c in t.ops]
    for op in sorted(OPS):
        params = OPS[op].params
        if params and params[0][1] == "mm":
            extra += [
                _smallest_call(op, mm, addr, case.config) for mm, addr in dict.fromkeys(pages)
            ]
        else:
            extra.append(_smallest_call(op, 0, 0, case.config))
    uniq = list({c.describe(): c for c in extra}.values())
    for call in uniq:
        for i, t in enumerate(tasks):
            for ops in ((call, *t.ops), (*t.ops, call)):
                grown = [*tasks[:i], attrs.evolve(t, ops=ops), *tasks[i + 1 :]]
                out.append(attrs.evolve(case, tasks=tuple(grown)))
                if len(grown) > 1:
                    for order in (grown, grown[::-1]):
                        one = TaskSpec(
                            order[0].name, tuple(c for x in order for c in x.ops),
                            min(x.start for x in order),
                        )
                        out.append(attrs.evolve(case, tasks=(one,)))
    # Both near moves at once, a feature more and an operation varied: the two-operation
    # program a greedy path reached may need both (swapoff against an mmap frees the vma its
    # walk stands on with one switch only when the mmap merges into a second vma: the split
    # world and npages >= 2).  Before the grown ones (no bigger, and far fewer: a campaign's
    # shrink spent its budget on those first); for small programs only (there are many).
    twice = [attrs.evolve(case, config=config, tasks=ts) for config in bigger
             for ts in varied_tasks + nudged_tasks] if sum(len(t.ops) for t in tasks) <= 2 else []
    return near, twice, out

