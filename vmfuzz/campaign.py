"""A fuzzing campaign: run the state machine until a budget is spent or a failure is found.

The campaign runs Hypothesis in chunks of examples (each chunk seeded from ``seed`` and its
index, so the same seed gives the same examples), stops at the first failure, takes the shrunk
case Hypothesis leaves behind, shrinks it further to the size of a race drawn in a mail (fewest
tasks in flight, then preemptions, operations and steps: :func:`_delta_shrink`), then confirms
its preemption count by bounded exhaustive exploration.  ``vmfuzz fuzz`` and ``vmfuzz soak``
are built on it.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs
from hypothesis import Verbosity, seed, settings
from hypothesis.stateful import get_state_machine_test

from vmfuzz._scheduler import ran_steps
from vmfuzz.case import Case, OpCall, Run, Schedule, TaskSpec, execute
from vmfuzz.context import CampaignContext, Stats
from vmfuzz.failure import Failure, concurrent_tasks
from vmfuzz.kernel import OPS, KernelConfig
from vmfuzz.kernel.boot import WORLD_FEATURES
from vmfuzz.schedules import PCT, Echo, PreemptionList, RandomWalk, Replay, explore, guided
from vmfuzz.strategies import KernelMachine, profile

Progress = Callable[["CampaignResult"], None]

SAMPLED_PER_CANDIDATE = 64  # sampled schedules per smaller program (:func:`_sampled`)
# Runs of the post-Hypothesis shrink (_delta_shrink).  Its greedy path can end one step short
# of the mail's race, and the last steps are the dear ones (two moves at once: a world feature
# and an argument): at 6,000 runs the zoo's unuse_process_no_mmap_sem seeds 2 and 7 stopped at
# 2 tasks / 2 switches and anon_vma_trylock_retry seed 1 at 3 tasks / 11; at 20,000 runs
# (20-30 s) all three reach the mail's 2 tasks (1 switch for unuse).  Most shrinks end sooner.
POST_SHRINK_RUNS = 20_000
SIBLING_MERGE_OPS = 8  # merged-with-a-sibling programs only for failures this small
SERIALIZED_VICTIMS = 2  # serialized programs only for failures that preempt this few tasks
MUTANTS = 400  # pool mutants per 100 Hypothesis examples (each runs under 2 schedules)


@attrs.define
class CampaignResult:
    """What a campaign did and found."""

    found: bool = False
    failure: Failure | None = None
    case: Case | None = None
    examples: int = 0
    steps: int = 0
    seconds: float = 0.0
    budget_hits: int = 0
    preemptions: int = 0
    minimal_preemptions: bool | None = None
    stats: Stats | None = None
    error: str | None = None
    first_failure_seconds: float | None = None  # time to the first (unshrunk) failure
    post_shrink_seconds: float = 0.0  # delta debugging + exhaustive preemption search

    @property
    def invariant(self) -> str | None:
        return self.failure.violation.check if self.failure else None

    def shrunk(self) -> dict[str, int] | None:
        """Size of the shrunk failure.  ``tasks`` counts the tasks that were in flight at the
        same time (the CPUs of a mail's race drawing: a setup task that finished before the
        others started does not count); ``threads`` counts every task of the case."""
        if self.case is None or self.failure is None:
            return None
        return {
            "tasks": concurrent_tasks(self.failure.trace),
            "threads": len(self.case.tasks),
            "ops": sum(len(t.ops) for t in self.case.tasks),
            "steps": self.failure.steps,
            "preemptions": self.preemptions,
        }


def fuzz(
    config: KernelConfig,
    *,
    scheduler: str = "mixed",
    seed_value: int = 0,
    budget: float | None = 60.0,
    max_examples: int | None = None,
    chunk: int = 100,
    ops: list[str] | None = None,
    base_profile: str = "dev",
    progress: Progress | None = None,
    collect_labels: bool = False,
    verify_minimal: bool = True,
    amplify: int | None = None,
    shrink_seconds: float = 10.0,
    post_shrink_seconds: float = 60.0,
    post_shrink_runs: int = POST_SHRINK_RUNS,
    mutants: int | None = None,
    stream: int = 0,
) -> CampaignResult:
    """Fuzz ``config`` until ``budget`` seconds or ``max_examples`` examples, or a failure.

    A failure is shrunk by Hypothesis (at most ``shrink_seconds``), then by
    :func:`_delta_shrink` (at most ``post_shrink_runs`` runs and ``post_shrink_seconds``), then,
    with ``verify_minimal``, its preemption count is checked by exhaustive search (at most 3000
    runs and 10 s).

    After each chunk of ``chunk`` Hypothesis examples, ``mutants`` mutants of the
    coverage-guided pool run (:mod:`vmfuzz.pool`; default MUTANTS per chunk of 100,
    none for the baseline schedulers); a violation there is the campaign's failure and goes
    straight to the post-Hypothesis shrink.

    ``stream`` picks one of a seed's independent random streams (:func:`chunk_seed`): stream 0
    is the seed's own, and ``vmfuzz fuzz --workers N`` runs streams 0..N-1 side by side.
    """
    if stream < 0:
        raise ValueError(f"stream must be >= 0, not {stream}")
    if amplify is None:  # extra schedules per program, except for the baselines
        amplify = 3 if guided(scheduler) else 0
    if mutants is None:
        mutants = MUTANTS * chunk // 100 if guided(scheduler) else 0
    ctx = CampaignContext(
        config, scheduler=scheduler, ops=ops, collect_labels=collect_labels, amplify=amplify,
    )
    if mutants > 0:
        ctx.with_pool()
    result = CampaignResult(stats=ctx.stats)
    t0 = time.monotonic()
    index = 0
    while True:
        done = ctx.stats.examples
        if max_examples is not None and done >= max_examples:
            break
        if budget is not None and time.monotonic() - t0 >= budget:
            break
        n = chunk if max_examples is None else max(1, min(chunk, max_examples - done))
        s = settings(profile(base_profile), max_examples=n, verbosity=Verbosity.quiet,
                     derandomize=False)
        machine = functools.partial(KernelMachine, ctx)
        test = seed(chunk_seed(seed_value, stream, index))(
            get_state_machine_test(machine, settings=s)  # type: ignore[arg-type]
        )
        index += 1
        try:
            with _shrink_deadline(shrink_seconds), _no_local_constants():
                test()
        except Exception as exc:  # the failure Hypothesis shrank and re-raised
            if ctx.failure is None:
                result.error = f"{type(exc).__name__}: {exc}"
                raise
            result.found = True
            break
        else:
            if ctx.failure is not None:  # found in an example Hypothesis dropped (overrun)
                result.found = True
                break
            if _run_pool(ctx, mutants, chunk_seed(seed_value, stream, index), t0, budget):
                result.found = True
                break
        finally:
            _update(result, ctx, t0)
            if progress is not None:
                progress(result)
    t_shrunk = time.monotonic()
    if result.found and ctx.failure is not None:
        result.failure = ctx.failure
        result.case = ctx.failure.case
        result.preemptions = ctx.failure.preemptions
        if result.case.schedule.kind == "decisions":
            _delta_shrink(result, _Budget(post_shrink_runs, t_shrunk + post_shrink_seconds))
        if verify_minimal:
            _minimise_preemptions(result, budget=_Budget(3000, time.monotonic() + 10.0))
    result.post_shrink_seconds = time.monotonic() - t_shrunk
    _update(result, ctx, t0)
    return result


def chunk_seed(seed_value: int, stream: int, index: int) -> int:
    """The random seed of chunk ``index`` of a campaign (its Hypothesis examples, then its
    pool round).  Stream 0 keeps the numbering campaigns have always had; stream ``s > 0`` is
    moved out by ``s * 2**48``, far beyond any seed * 1_000_003 + index a campaign reaches."""
    return seed_value * 1_000_003 + index + (stream << 48)


def _run_pool(
    ctx: CampaignContext, mutants: int, rng_seed: int, t0: float, budget: float | None
) -> bool:
    """One round of the pool's mutants (seeded by ``rng_seed``, the chunk's
    :func:`chunk_seed`); True if one failed (then ``ctx.failure`` holds it)."""
    pool = ctx.pool
    if pool is None or not mutants:
        return False
    rng = random.Random(rng_seed)
    runs0, probes0, steps0 = pool.runs, pool.probe_runs, pool.steps
    deadline = t0 + budget if budget is not None else float("inf")
    found = pool.run(mutants, rng, deadline)
    ctx.stats.mutant_runs += pool.runs - runs0
    ctx.stats.probe_runs += pool.probe_runs - probes0
    ctx.stats.steps += pool.steps - steps0
    if found is None:
        return False
    if ctx.stats.first_failure_at is None:
        ctx.stats.first_failure_example = ctx.stats.examples
        ctx.stats.first_failure_at = time.monotonic()
    ctx.failure = found
    return True


@contextlib.contextmanager
def _no_local_constants() -> Iterator[None]:
    """Hypothesis (6.13x on) mixes literals from every loaded *local* module (source outside
    site-packages) into its draws, so a campaign's examples would depend on which of our
    modules the caller happened to import: the CLI, the Python API and a pytest run gave
    three different campaigns for one seed.  A campaign depends on its seed alone: none."""
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:  # pragma: no cover - an older or newer layout: nothing to pin
        yield
        return
    orig = getattr(providers, "_get_local_constants", None)
    local = getattr(providers, "_local_constants", None)
    if orig is None or local is None:  # pragma: no cover
        yield
        return
    blank = type(local)(
        integers=type(local.integers)(),
        floats=type(local.floats)(key=local.floats.key),
        bytes=type(local.bytes)(),
        strings=type(local.strings)(),
    )
    providers._get_local_constants = lambda: blank
    try:
        yield
    finally:
        providers._get_local_constants = orig


@contextlib.contextmanager
def _shrink_deadline(seconds: float) -> Iterator[None]:
    """Cap Hypothesis' shrinking time (its engine stops shrinking at MAX_SHRINKING_SECONDS,
    300 by default).  Our own delta debugging and exhaustive preemption search run after it
    and finish the job far cheaper than more Hypothesis shrink passes over a stateful run."""
    from hypothesis.internal.conjecture import engine

    old = getattr(engine, "MAX_SHRINKING_SECONDS", None)
    if old is None:
        yield
        return
    engine.MAX_SHRINKING_SECONDS = seconds  # type: ignore[assignment]
    try:
        yield
    finally:
        engine.MAX_SHRINKING_SECONDS = old


def _update(result: CampaignResult, ctx: CampaignContext, t0: float) -> None:
    if ctx.stats.first_failure_at is not None:
        result.first_failure_seconds = ctx.stats.first_failure_at - t0
    result.examples = ctx.stats.examples
    result.steps = ctx.stats.steps
    result.budget_hits = ctx.stats.budget_hits
    result.seconds = time.monotonic() - t0


# ====================================================================== post-Hypothesis shrink
# Hypothesis shrinks the drawn data; what is left often still has more tasks and context
# switches than the race needs (a PCT schedule does not survive a deleted op, a setup op sits
# in a task of its own).  The pass below shrinks the program and its schedule directly, the
# way one trims a race by hand: fewer switches for this program, then a smaller program that
# fails the same check under some schedule with no more switches, and again.  Candidate
# schedules come from delay-bounded search (every schedule that departs from the default
# policy at most d times, fewest first), then CHESS-style preemption-bounded search.  Nothing
# here knows about any kernel path: only tasks, operations and scheduler decisions.

Key = tuple[int, int, int, int]


@attrs.define
class _Budget:
    """What the post-Hypothesis shrink may spend: ``runs`` program runs (deterministic) and
    a wall-clock cap (a safety net for slow machines; a cut short search may end elsewhere)."""

    runs: int
    deadline: float
    used: int = 0

    def take(self) -> bool:
        """Account for one run; False when the budget is spent."""
        if self.used >= self.runs or time.monotonic() >= self.deadline:
            return False
        self.used += 1
        return True

    def share(self, num: int, den: int) -> _Budget:
        """A budget of ``num/den`` of what is left (runs and wall-clock time); the caller
        adds its ``used`` back."""
        now = time.monotonic()
        return _Budget(
            max(0, (self.runs - self.used) * num // den),
            now + max(0.0, self.deadline - now) * num / den,
        )

    @property
    def spent(self) -> bool:
        return self.used >= self.runs or time.monotonic() >= self.deadline


Prog = tuple[tuple[TaskSpec, ...], frozenset[str]]


def _prog(case: Case) -> Prog:
    """A program as the shrinker tells programs apart: its tasks and its world."""
    return case.tasks, case.config.world


def _ops(case: Case) -> int:
    """Operations, counting each world feature as one (a feature is setup done at boot: a
    case that needs fewer of them is smaller)."""
    return sum(len(t.ops) for t in case.tasks) + len(case.config.world)


def _key(case: Case, run: Run) -> Key:
    """How big a failure is, in the order that matters: tasks in flight at once, preemptions,
    operations, scheduler steps."""
    return (
        concurrent_tasks(run.sched.trace), run.sched.preemptions, _ops(case), run.outcome.steps
    )


def _result_key(result: CampaignResult) -> Key:
    assert result.failure is not None and result.case is not None
    return (
        concurrent_tasks(result.failure.trace),
        result.preemptions,
        _ops(result.case),
        result.failure.steps,
    )


def _delays(
    case: Case,
    max_delays: int,
    limit: int,
    budget: _Budget,
    prefer: frozenset[str] = frozenset(),
    only_preferred: bool = False,
) -> Iterator[Run]:
    """Runs of ``case`` under every schedule that departs from the default policy at most
    ``max_delays`` times (delay bounding), by number of departures; at most ``limit`` runs.
    A departure where the running task could go on is a preemption, one where it blocked or
    ended is free: ``k`` departures make at most ``k`` preemptions.  Among schedules with as
    many departures, those that preempt a task standing at a label in ``prefer`` come first
    (where the failure being shrunk preempted: the race window); ``only_preferred`` tries
    nothing else but free departures (which task runs first, or after one blocks or ends).
    Each schedule is a sparse preemption list (positions turned into gaps).
    """
    frontier: list[tuple[tuple[int, int], ...]] = [()]
    runs = 0
    for level in range(max_delays + 1):
        deeper: list[tuple[tuple[int, int], ...]] = []
        later: list[tuple[tuple[int, int], ...]] = []
        for devs in frontier:
            if runs >= limit or not budget.take():
                return
            runs += 1
            rec = _Recorder(PreemptionList(_gaps(devs)))
            run = execute(case, rec)
            yield run
            if level == max_delays:
                continue
            after = devs[-1][0] + 1 if devs else 0
            for pos in range(after, len(rec.log)):
                n = rec.log[pos][0]
                if rec.where[pos] in prefer:
                    deeper.extend((*devs, (pos, off)) for off in range(n - 1))
                elif not only_preferred or not rec.where[pos]:
                    later.extend((*devs, (pos, off)) for off in range(n - 1))
        frontier = deeper + later
        if not frontier:
            return


def _gaps(devs: tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
    out = []
    prev = -1
    for pos, off in devs:
        out.append((pos - prev - 1, off))
        prev = pos
    return out


def _search(
    case: Case, check: str, bound: int, limit: int, budget: _Budget | None = None
) -> tuple[Run | None, bool]:
    """A run of ``case``'s tasks failing ``check`` with <= ``bound`` preemptions, if any
    (bounded exhaustive exploration, as CHESS does: the first hit has the fewest preemptions
    among the schedules explored).

    Returns (run or None, whether the search space was exhausted within ``limit`` runs).
    """
    hit: list[Run] = []

    def run_one(src: Any) -> bool:
        run = execute(case, src)
        if run.outcome.check == check:
            hit.append(run)
            return True
        return False

    runs = 0
    for found in explore(run_one, bound=bound, limit=limit):
        runs += 1
        if found:
            return hit[0], True
        if budget is not None and not budget.take():
            return None, False
    return None, runs < limit


def _reproduce(
    case: Case,
    check: str,
    better: Key,
    max_delays: int,
    budget: _Budget,
    *,
    hint: list[tuple[int, int]] | None = None,
    prefer: frozenset[str] = frozenset(),
    only_preferred: bool = False,
    limit: int = 300,
) -> Run | None:
    """A run of ``case`` that fails ``check`` and is smaller (by :func:`_key`) than ``better``:
    under ``hint`` first (a preemption list relative to the default policy), then by delay
    bounded search (:func:`_delays`) with up to ``max_delays`` departures, <= ``limit`` runs."""
    if hint is not None:
        if not budget.take():
            return None
        run = execute(case, PreemptionList(hint))
        if run.outcome.check == check and _key(case, run) < better:
            return run
    for run in _delays(case, max_delays, limit, budget, prefer, only_preferred):
        if run.outcome.check == check and _key(case, run) < better:
            return run
    return None


def _adopt(result: CampaignResult, run: Run, case: Case) -> None:
    assert result.failure is not None
    result.case = attrs.evolve(
        case, schedule=Schedule("decisions", decisions=tuple(run.sched.decisions))
    )
    result.failure = attrs.evolve(
        result.failure,
        case=result.case,
        violation=run.outcome.violation,
        steps=run.outcome.steps,
        preemptions=run.sched.preemptions,
        trace=list(run.sched.trace),
    )
    result.preemptions = run.sched.preemptions


def _serialized(case: Case, trace: Sequence[Any]) -> list[Case]:
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


def _regrouped(case: Case, trace: Sequence[Any]) -> list[Case]:
    """Programs with fewer tasks that are not plain deletions or merges, tried after
    :func:`_smaller_programs` (and not under sampled schedules: there are many, and they
    rarely beat the plain ones): each preempted task next to all the others merged
    (:func:`_serialized`); for a small program, two tasks merged with one operation changed
    for a sibling (:func:`_siblings`): a race two tasks draw may need another entry point
    when one CPU does both tasks' work (kswapd's LRU scan reclaims the oldest page first,
    swap_out the biggest mm's in address order)."""
    out = _serialized(case, trace)
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


def _smaller_programs(case: Case) -> list[Case]:
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
    for w in ([frozenset()] if len(world) > 1 else []) + [world - {f} for f in sorted(world)]:
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


def _smallest_call(op: str, mm: int, addr: int, config: KernelConfig) -> OpCall:
    """``op`` aimed at (``mm``, ``addr``) with every other argument at its smallest."""
    from vmfuzz.program import kind_bounds

    args = {}
    for a, kind in OPS[op].params:
        args[a] = mm if kind == "mm" else addr if kind == "addr" else kind_bounds(kind, config)[0]
    return OpCall(op, args)


def _variations(call: OpCall, config: KernelConfig) -> list[OpCall]:
    """``call`` with one argument set to the smallest or the largest value of its kind."""
    from vmfuzz.program import kind_bounds

    out = []
    for a, kind in OPS[call.op].params:
        for v in kind_bounds(kind, config):
            if call.args.get(a) != v:
                out.append(OpCall(call.op, {**call.args, a: v}))
    return out


def _nudges(call: OpCall, config: KernelConfig) -> list[OpCall]:
    """``call`` with one argument one more or one less (within its kind's bounds): a page
    more makes an mmap reach and merge with the next vma, where the largest value fails."""
    from vmfuzz.program import kind_bounds

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


def _calls(case: Case) -> frozenset[str]:
    """The distinct operations of ``case``'s program (as :meth:`OpCall.describe` spells them)."""
    return frozenset(c.describe() for t in case.tasks for c in t.ops)


def _pair_programs(case: Case) -> tuple[list[Case], list[Case]]:
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


def _grown_programs(case: Case) -> tuple[list[Case], list[Case], list[Case]]:
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
    from vmfuzz.kernel import Kernel
    from vmfuzz.program import target_of

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


class _Recorder:
    """Wraps a source and records, per decision, (runnable count, default index, chosen) and
    where the running task stands if it could go on (its label; "" at a free decision)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.log: list[tuple[int, int, int]] = []
        self.where: list[str] = []

    def choose(self, runnable: list[Any], default: int, sched: Any) -> int:
        chosen = self.inner.choose(runnable, default, sched) % len(runnable)
        self.log.append((len(runnable), default, chosen))
        cur = sched.current
        self.where.append(cur.label if cur is runnable[default] else "")
        return chosen


def to_preemptions(case: Case, decisions: tuple[int, ...]) -> list[tuple[int, int]]:
    """The recorded decisions as a sparse preemption list relative to the default policy
    (exact: replaying the list reproduces the decisions)."""
    return _preemptions_of(case, decisions)[0]


Anchor = tuple[str, str, int, str]  # (task, label it stands at, occurrence, task switched to)


def _anchors_of(case: Case, decisions: tuple[int, ...]) -> list[Anchor]:
    """The recorded decisions as label-anchored switches: "when task A stands at label L for
    the k-th time at a decision, run task B".  Unlike gaps counted in decisions, anchors
    survive deleting an unrelated task or operation (its decisions vanish, A's labels stay)."""
    rec = _AnchorRecorder(Replay(decisions, strict=False))
    execute(case, rec, record_trace=False)
    return rec.anchors


class _AnchorRecorder:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seen: dict[tuple[str, str], int] = {}
        self.anchors: list[Anchor] = []

    def choose(self, runnable: list[Any], default: int, sched: Any) -> int:
        chosen = self.inner.choose(runnable, default, sched) % len(runnable)
        cur = sched.current
        if cur is not None and cur is runnable[default]:
            key = (cur.name, cur.label)
            k = self.seen[key] = self.seen.get(key, 0) + 1
            if chosen != default:
                self.anchors.append((cur.name, cur.label, k, runnable[chosen].name))
        return chosen


class _Anchored:
    """Replays label-anchored switches (see :func:`_anchors_of`); the default policy
    elsewhere.  A switch whose target is not runnable is skipped."""

    def __init__(self, anchors: list[Anchor]) -> None:
        self.todo = {(a, lab, k): b for a, lab, k, b in anchors}
        self.seen: dict[tuple[str, str], int] = {}

    def choose(self, runnable: list[Any], default: int, sched: Any) -> int:
        cur = sched.current
        if cur is None or cur is not runnable[default]:
            return default
        key = (cur.name, cur.label)
        k = self.seen[key] = self.seen.get(key, 0) + 1
        want = self.todo.get((cur.name, cur.label, k))
        if want is not None:
            for i, t in enumerate(runnable):
                if t.name == want:
                    return i
        return default


def _preemptions_of(
    case: Case, decisions: tuple[int, ...]
) -> tuple[list[tuple[int, int]], set[str]]:
    """:func:`to_preemptions`, and the labels at which running tasks were preempted."""
    rec = _Recorder(Replay(decisions, strict=False))
    execute(case, rec, record_trace=False)
    labels = {
        w for (_n, d, c), w in zip(rec.log, rec.where, strict=True) if c != d and w
    }
    out = []
    gap = 0
    for n, default, chosen in rec.log:
        if chosen == default:
            gap += 1
            continue
        others = [k for k in range(n) if k != default]
        out.append((gap, others.index(chosen)))
        gap = 0
    return out, labels


def _delta_shrink(
    result: CampaignResult, budget: _Budget | None = None, *, per_candidate: int = 300
) -> None:
    """Shrink the failure in ``result`` after Hypothesis, within ``budget``.

    Each round (on a failure not seen before: ddmin over its switches,
    :func:`_ddmin_preemptions`; two-operation programs, :func:`_pair`) tries, cheapest first:
    every smaller program (:func:`_smaller_programs`, then :func:`_regrouped`) under the
    current schedule's preemption list (one run each); a schedule of the current program
    with fewer preemptions (delay-bounded search); for a failure with more than 2 tasks in
    flight or more than 1 switch, the smaller programs under sampled schedules
    (:func:`_sampled`); then the smaller programs again, searched (:func:`_smaller`); then
    near and grown programs (:func:`_grown`).
    What is kept must fail the same check and be smaller by :func:`_key` (tasks in flight, then
    preemptions, operations, steps).  The first one found is adopted and the round starts
    again; the pass ends when nothing is smaller or the budget is spent.
    A program searched in vain is not searched again with as many departures (the bound never
    grows and the bar only rises).
    """
    assert result.failure is not None and result.case is not None
    if budget is None:
        budget = _Budget(20_000, time.monotonic() + 20.0)
    check = result.failure.violation.check
    searched: dict[Prog, int] = {}  # program -> departures searched in vain
    dd_done: Key | None = None  # ddmin is run again only on a failure it has not seen
    # The searches of two-operation programs so far (world, calls, departures): a program
    # with fewer operations has no pair that one of them did not try (:func:`_pair`).
    pairs_done: list[tuple[frozenset[str], frozenset[str], int]] = []
    while not budget.spent:
        if result.preemptions > 8 and dd_done != _result_key(result):
            _ddmin_preemptions(result, check, budget)
            dd_done = _result_key(result)
        case = result.case
        better = _result_key(result)
        sig = (case.config.world, _calls(case), min(result.preemptions, 2))
        if (better[0] > 2 or better[1] > 2) and not any(
            sig[0] == w and sig[1] <= c and sig[2] <= d for w, c, d in pairs_done
        ):
            sub = budget.share(1, 3)
            pair = _pair(result, frozenset(_preemptions_of(case, case.schedule.decisions)[1]),
                         check, sub)
            budget.used += sub.used
            if pair is not None:
                _adopt(result, pair[1], pair[0])
                continue
            # Not again for a subset of these calls: a search cut short by its share would
            # start again from its first pairs (and take a third of what is left each round).
            pairs_done.append(sig)
        hint, labels = _preemptions_of(case, case.schedule.decisions)
        candidates = _smaller_programs(case)
        regrouped = _regrouped(case, result.failure.trace)
        found: tuple[Case, Run] | None = None
        anchors = _anchors_of(case, case.schedule.decisions)
        for c in candidates + regrouped:
            run = _reproduce(c, check, better, -1, budget, hint=hint)
            if run is None and anchors and budget.take():
                # The same switches, anchored at labels: they survive deleting a task.
                r = execute(c, _Anchored(anchors))
                if r.outcome.check == check and _key(c, r) < better:
                    run = r
            if run is not None:
                found = (c, run)
                break
        bound = result.preemptions
        if found is None and bound > 0 and searched.get(_prog(case), -1) < bound - 1:
            run = _reproduce(
                case, check, better, bound - 1, budget,
                prefer=frozenset(labels), limit=per_candidate,
            )
            if run is not None:
                found = (case, run)
            elif not budget.spent:
                searched[_prog(case)] = bound - 1
        if found is None and (better[0] > 2 or better[1] > 1):
            sub = budget.share(1, 4)
            found = _sampled(result, candidates, check, sub)
            budget.used += sub.used
        if found is None:
            # Two thirds of what is left for smaller programs, then at most half of the
            # rest for grown ones (delay-bounded search of a failure with many switches can
            # spend any budget).
            sub = budget.share(2, 3)
            found = _smaller(
                result, candidates + regrouped, frozenset(labels), check, searched, sub,
                per_candidate,
            )
            budget.used += sub.used
        if found is None and (result.preemptions > 0 or concurrent_tasks(result.failure.trace) > 1):
            sub = budget.share(1, 2)  # at most half: most failures have no grown form
            found = _grown(result, frozenset(labels), check, sub)
            budget.used += sub.used
        if found is None:
            return
        _adopt(result, found[1], found[0])


def _without(pre: list[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    """The preemption list without entries ``lo..hi-1``: their decisions become default ones,
    so the gap of the entry after them absorbs theirs (later switches stay where they were)."""
    carry = sum(g + 1 for g, _ in pre[lo:hi])
    rest = pre[hi:]
    if rest:
        rest = [(rest[0][0] + carry, rest[0][1]), *rest[1:]]
    return pre[:lo] + rest


def _ddmin_preemptions(result: CampaignResult, check: str, budget: _Budget) -> None:
    """Delta debugging (Zeller's ddmin) over the failure's context switches: drop halves,
    then quarters ... of the preemption list while the same check still fails.  A failure
    found by a random walk or PCT has tens or hundreds of switches of which one or two make
    the race; removing them one at a time would cost a run each, ddmin O(k log n)."""
    assert result.case is not None
    case = result.case
    pre = to_preemptions(case, case.schedule.decisions)
    n = 2
    while len(pre) >= 2 and not budget.spent:
        size = -(-len(pre) // n)
        reduced = False
        for lo in range(0, len(pre), size):
            if not budget.take():
                return
            cand = _without(pre, lo, lo + size)
            run = execute(case, PreemptionList(cand))
            if run.outcome.check == check and _key(case, run) < _result_key(result):
                _adopt(result, run, case)
                pre = to_preemptions(case, tuple(run.sched.decisions))
                n = max(n - 1, 2)
                reduced = True
                break
        if not reduced:
            if n >= len(pre):
                return
            n = min(len(pre), 2 * n)


def _smaller(
    result: CampaignResult,
    candidates: list[Case],
    prefer: frozenset[str],
    check: str,
    searched: dict[Prog, int],
    budget: _Budget,
    per_candidate: int,
) -> tuple[Case, Run] | None:
    """The first of ``candidates`` (and its run) that fails ``check`` smaller than the
    current failure, trying the cheap searches on every candidate before the dear ones: one
    departure where the current failure preempts (at a label in ``prefer``), then
    delay-bounded search, one departure more at a time, up to the current preemptions."""
    better = _result_key(result)
    if prefer and result.preemptions >= 1:
        for c in candidates:
            run = _reproduce(
                c, check, better, 1, budget, prefer=prefer, only_preferred=True, limit=24
            )
            if run is not None:
                return c, run
    for delays in range(result.preemptions + 1):
        for c in candidates:
            if searched.get(_prog(c), -1) >= delays:
                continue
            run = _reproduce(
                c, check, better, delays, budget, prefer=prefer, limit=per_candidate
            )
            if run is not None:
                return c, run
            if budget.spent:
                return None
            searched[_prog(c)] = delays
    return None


def _sampled(
    result: CampaignResult,
    candidates: list[Case],
    check: str,
    budget: _Budget,
    per_candidate: int = SAMPLED_PER_CANDIDATE,
) -> tuple[Case, Run] | None:
    """The first of ``candidates`` (and its run) that fails ``check`` smaller than the
    current failure under one of ``per_candidate`` sampled schedules: PCT over the failure's
    length and echoed random walks, the sources the fuzzer finds with.  For a failure with
    many switches (a livelock's lock-step retry rounds), where delay-bounded search of a
    smaller program cannot reach as many departures; seeded by the round, so deterministic."""
    assert result.failure is not None
    better = _result_key(result)
    length = max(2, result.failure.steps)
    rng = random.Random(f"sampled {better}")
    for c in sorted(candidates, key=lambda c: len(c.tasks)):  # fewer tasks first (stable)
        for i in range(per_candidate):
            if not budget.take():
                return None
            seed_i = rng.getrandbits(32)
            src = (PCT(seed_i, rng.randint(2, 4), length) if i % 2 == 0
                   else Echo(RandomWalk(seed_i)))
            run = execute(c, src)
            if run.outcome.check == check and _key(c, run) < better:
                return c, run
    return None


def _pair(
    result: CampaignResult, prefer: frozenset[str], check: str, budget: _Budget
) -> tuple[Case, Run] | None:
    """The first program of :func:`_pair_programs` (and its run) that fails ``check``
    smaller than the current failure: pairs of the failure's own operations with up to 2
    departures from the default policy, then pairs with a variation with up to 1; among as
    many departures, those at a label in ``prefer`` first (where the failure preempted)."""
    assert result.case is not None
    better = _result_key(result)
    own, more = _pair_programs(result.case)
    for pairs, most, limit in ((own, 2, 150), (more, 1, 30)):
        for delays in range(min(result.preemptions, most) + 1):
            for c in pairs:
                if budget.spent:
                    return None
                run = _reproduce(c, check, better, delays, budget, prefer=prefer, limit=limit)
                if run is not None:
                    return c, run
    return None


def _grown(
    result: CampaignResult, prefer: frozenset[str], check: str, budget: _Budget
) -> tuple[Case, Run] | None:
    """The first program of :func:`_grown_programs` (and its run) that fails ``check`` with
    fewer tasks in flight or fewer switches than the current failure: under the default
    policy first, then with one switch where the failure preempted, and so on up to the
    current count."""
    assert result.case is not None
    better = _result_key(result)
    cap = better[:2]
    for group in _grown_programs(result.case):  # the few near ones through every bound first
        for delays in range(result.preemptions + 1):
            for c in group:
                if budget.spent:
                    return None
                run = _reproduce(
                    c, check, better, delays, budget, prefer=prefer, only_preferred=delays > 0,
                    limit=24 if delays else 1,
                )
                if run is not None and _key(c, run)[:2] < cap:
                    return c, run
    return None


def _minimise_preemptions(
    result: CampaignResult, limit: int = 3000, budget: _Budget | None = None
) -> None:
    """Look for schedules of the shrunk program with fewer preemptions, by bounded
    exhaustive search (as CHESS does) over all schedules below the current count, at most
    ``limit`` runs per bound (and within ``budget``).  ``minimal_preemptions`` is True when
    every smaller bound was searched exhaustively, None when a search was cut short, False
    when fewer preemptions need more tasks in flight (the failure is kept as it is).
    """
    assert result.failure is not None and result.case is not None
    check = result.failure.violation.check
    for bound in range(result.preemptions):
        run, exhausted = _search(result.case, check, bound, limit, budget)
        if run is not None:
            if concurrent_tasks(run.sched.trace) > concurrent_tasks(result.failure.trace):
                # Fewer preemptions, but more tasks in flight: tasks count first.
                result.minimal_preemptions = False
                return
            _adopt(result, run, result.case)
            result.minimal_preemptions = True
            return
        if not exhausted:
            result.minimal_preemptions = None
            return
    result.minimal_preemptions = True
