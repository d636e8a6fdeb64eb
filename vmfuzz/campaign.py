"""A fuzzing campaign: run the state machine until a budget is spent or a failure is found.

The campaign runs Hypothesis in chunks of examples (each chunk seeded from ``seed`` and its
index, so the same seed gives the same examples), stops at the first failure, takes the shrunk
case Hypothesis leaves behind and shrinks it further to the size of a race drawn in a mail
(fewest tasks in flight, then preemptions, operations and steps) with :func:`vmfuzz.shrink.shrink`,
which then confirms its preemption count by bounded exhaustive exploration.  ``vmfuzz fuzz``
and ``vmfuzz soak`` are built on it, and so is the public API (:mod:`vmfuzz.api`).

Every registered check runs, the user checks (:func:`vmfuzz.check`) included: ``checks`` names
those a campaign relies on, so that a missing one (a plugin not loaded) is an error up front
rather than a campaign that cannot fail.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence

import attrs
from hypothesis import Verbosity, seed, settings
from hypothesis.stateful import get_state_machine_test

from vmfuzz._poolstore import PoolStore
from vmfuzz.case import Case
from vmfuzz.context import CampaignContext, Stats, StepBudgetSpent
from vmfuzz.failure import Failure, concurrent_tasks
from vmfuzz.kernel import KernelConfig
from vmfuzz.pool import Pool
from vmfuzz.schedules import guided
from vmfuzz.shrink import Budget, PassStats, shrink
from vmfuzz.strategies import KernelMachine, profile

Progress = Callable[["CampaignResult"], None]

# Runs of the post-Hypothesis shrink (vmfuzz.shrink).  Its greedy path can end one step short
# of the mail's race, and the last steps are the dear ones (two moves at once: a world feature
# and an argument): at 6,000 runs the zoo's unuse_process_no_mmap_sem seeds 2 and 7 stopped at
# 2 tasks / 2 switches and anon_vma_trylock_retry seed 1 at 3 tasks / 11; at 20,000 runs
# (20-30 s) all three reach the mail's 2 tasks (1 switch for unuse).  Most shrinks end sooner.
POST_SHRINK_RUNS = 20_000
# Runs of Hypothesis's own shrink (its examples after the first failure, before its final
# replay).  It was capped at 10 s of wall time: about 700 runs of a long stateful example.
# Measured at seed 0, 200 examples: detach_vmas_outside_ptl's shrink ends by itself after 83
# runs, swapout_holds_vmlist_lock's after 548; vma_adjust_no_anon_vma_lock's would take
# 1,886 runs (29 CPU-s) and reaches the same size (2 operations, 16 steps) at 1,000 (12 s;
# 39 steps at 500).
HYPOTHESIS_SHRINK_RUNS = 1_000
# CPU-time safety nets of the shrinks (this process's CPU seconds, so a loaded machine does
# not trip them), far above what their run limits take: a shrink that hits one says so
# (CampaignResult.clock_hit).
SHRINK_SAFETY_SECONDS = 300.0
POST_SHRINK_SAFETY_SECONDS = 600.0
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
    shrink_passes: list[PassStats] = attrs.Factory(list)  # per pass of vmfuzz.shrink.PASSES
    checks: tuple[str, ...] = ()  # the user checks (vmfuzz.check) registered: all of them ran
    # The shrinks a CPU-time safety net stopped before their run limit ("hypothesis_shrink",
    # "shrink", "shifted_switches", "minimal_preemptions"): only then may the case differ on
    # another machine.
    clock_hit: list[str] = attrs.Factory(list)
    # The pool folder (fuzz's pool_dir): entries taken from it at the start and from the
    # other writers later, and one line per file or entry skipped or write that failed.
    pool_loaded: int = 0
    pool_picked: int = 0
    pool_warnings: list[str] = attrs.Factory(list)
    cpu_seconds: float = 0.0  # CPU time of the campaign's process(es), search and shrink
    first_failure_steps: int | None = None  # steps run up to the first (unshrunk) failure
    # What ran the first failure: "a Hypothesis example" or the pool's mechanism (a pool
    # mutant, a window probe, ...: Pool.found_by)
    found_by: str | None = None
    # The budget that ended a search that found nothing: "steps", "cpu", "wall" (seconds) or
    # "examples"; None when a failure ended it.
    ran_out: str | None = None
    # The failure is like one found and shrunk before (``known``): kept as Hypothesis shrank it.
    known_hit: bool = False
    # The shrunk program failing other checks, smaller (ShrinkResult.others): reported and
    # saved beside the failure.
    others: list[Failure] = attrs.Factory(list)

    @property
    def invariant(self) -> str | None:
        return self.failure.violation.check if self.failure else None

    def clock_note(self) -> str:
        """The line that says which shrinks a CPU-time safety net stopped."""
        return (f"note: a CPU-time safety net stopped {', '.join(self.clock_hit)} before "
                "its run limit (a very slow or overloaded machine): the same command may "
                "shrink to another case elsewhere")

    def shrunk(self) -> dict[str, int] | None:
        """Size of the shrunk failure.  ``tasks`` counts the tasks that were in flight at the
        same time (the CPUs of a mail's race drawing: a setup task that finished before the
        others started does not count); ``threads`` counts every task of the case."""
        if self.case is None or self.failure is None:
            return None
        return dict(size_of_failure(self.failure), preemptions=self.preemptions)


def size_of_failure(failure: Failure) -> dict[str, int]:
    """A failure's size as campaigns report it: tasks in flight at once, threads, operations,
    steps and preemptions (:meth:`CampaignResult.shrunk`)."""
    return {
        "tasks": concurrent_tasks(failure.trace),
        "threads": len(failure.case.tasks),
        "ops": sum(len(t.ops) for t in failure.case.tasks),
        "steps": failure.steps,
        "preemptions": failure.preemptions,
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
    shrink_runs: int = HYPOTHESIS_SHRINK_RUNS,
    shrink_seconds: float = SHRINK_SAFETY_SECONDS,
    post_shrink_seconds: float = POST_SHRINK_SAFETY_SECONDS,
    post_shrink_runs: int = POST_SHRINK_RUNS,
    mutants: int | None = None,
    stream: int = 0,
    checks: Sequence[str] = (),
    step_budget: int | None = None,
    pool_dir: str | os.PathLike[str] | None = None,
    cpu_budget: float | None = None,
    pool: Pool | None = None,
    known: Callable[[Failure], bool] | None = None,
) -> CampaignResult:
    """Fuzz ``config`` until ``budget`` seconds (wall time), ``max_examples`` examples,
    ``step_budget`` scheduler steps or ``cpu_budget`` CPU seconds of this process, or a
    failure; ``ran_out`` says which budget ended a search that found nothing.

    Without ``budget`` the result depends on the arguments alone: not on the machine's load,
    not on what ran before in the process (Hypothesis's caches are set aside while it runs).
    ``max_examples`` is the exact number of examples generated (state machine runs) when
    nothing is found; a failure stops the generation, and Hypothesis's shrink runs add to
    ``examples``.  The step and CPU budgets are checked before each Hypothesis example and
    before each round of the pool's mutants, so a campaign stops at the first of those past
    them (the pool's rounds are not cut): with ``budget=None`` and a step budget the campaign
    is the same on any machine.

    Every registered check runs, user checks included (registered with :func:`vmfuzz.check`,
    by the caller or a plugin it loaded); ``checks`` names checks this campaign relies on, and
    an unknown one raises ``ValueError`` before anything runs.

    A failure is shrunk by Hypothesis (at most ``shrink_runs`` runs), then by the passes of
    :func:`vmfuzz.shrink.shrink` (at most ``post_shrink_runs`` runs), then, with
    ``verify_minimal``, its preemption count is checked by exhaustive search (at most 3000
    runs); ``shrink_passes`` says what each pass did.  ``shrink_seconds`` and
    ``post_shrink_seconds`` are safety nets in CPU seconds only (the second also bounds the
    exhaustive search); ``clock_hit`` names any that stopped a shrink.

    After each chunk of ``chunk`` Hypothesis examples, ``mutants`` mutants of the
    coverage-guided pool run (:mod:`vmfuzz.pool`; default MUTANTS per chunk of 100,
    none for the baseline schedulers); a violation there is the campaign's failure and goes
    straight to the post-Hypothesis shrink.

    ``stream`` picks one of a seed's independent random streams (:func:`chunk_seed`): stream 0
    is the seed's own, and ``vmfuzz fuzz --workers N`` runs streams 0..N-1 side by side.

    With ``pool_dir`` (:mod:`vmfuzz._poolstore`), the pool starts with the programs stored in
    that folder (those of another model or kernel are re-run first; a violation there is the
    campaign's failure), stores the entries it adds after every chunk (as writer
    ``s<stream>``) and at the end, and takes in, after every chunk, the entries other writers
    (the campaign's other streams) stored meanwhile.  ``pool_warnings`` lists the files and
    entries skipped and a failed write (the campaign goes on without storing).

    ``pool``, for a campaign that keeps one, is the pool it starts from and grows (a soak
    hands every campaign the run's pool, and reads the entries it added back).  A failure
    ``known`` says yes to (one like it was found and shrunk before) is kept as Hypothesis shrank
    it: the post-Hypothesis shrink and the exhaustive preemption search are skipped.
    """
    if stream < 0:
        raise ValueError(f"stream must be >= 0, not {stream}")
    if step_budget is not None and step_budget < 1:
        raise ValueError(f"step_budget must be >= 1, not {step_budget}")
    if cpu_budget is not None and not cpu_budget > 0:
        raise ValueError(f"cpu_budget must be > 0, not {cpu_budget}")
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"max_examples must be >= 1, not {max_examples}")
    if shrink_runs < 1 or post_shrink_runs < 0:
        raise ValueError("shrink_runs must be >= 1 and post_shrink_runs >= 0")
    registered = user_checks(checks)
    if amplify is None:  # extra schedules per program, except for the baselines
        amplify = 3 if guided(scheduler) else 0
    if mutants is None:
        mutants = MUTANTS * chunk // 100 if guided(scheduler) else 0
    ctx = CampaignContext(
        config, scheduler=scheduler, ops=ops, collect_labels=collect_labels, amplify=amplify,
        step_budget=step_budget,
    )
    if mutants > 0:
        if pool is None:
            ctx.with_pool()
        else:
            ctx.pool = pool
    result = CampaignResult(stats=ctx.stats, checks=registered)
    t0 = time.monotonic()
    cpu0 = time.process_time()
    limits = _Limits(ctx, t0 + budget if budget is not None else None,
                     cpu0 + cpu_budget if cpu_budget is not None else None)
    opened = _open_store(ctx, pool_dir, stream, result)
    store = opened[0] if opened is not None else None
    if opened is not None and _rerun_stored(ctx, opened[1]):
        result.found = True
    index = 0
    while not result.found:
        done = ctx.stats.examples
        if max_examples is not None and done >= max_examples:
            result.ran_out = "examples"
            break
        result.ran_out = limits.spent()
        if result.ran_out is not None:
            break
        n = chunk if max_examples is None else max(1, min(chunk, max_examples - done))
        s = settings(profile(base_profile), max_examples=n, verbosity=Verbosity.quiet,
                     derandomize=False)
        machine = _machine(ctx, done + n, limits)
        test = seed(chunk_seed(seed_value, stream, index))(
            get_state_machine_test(machine, settings=s)  # type: ignore[arg-type]
        )
        index += 1
        clock = _ShrinkClock(ctx, shrink_seconds)
        try:
            with _shrink_limit(clock, shrink_runs), _sealed_hypothesis():
                try:
                    test()
                except _ChunkDone:  # the chunk ran its n examples: as if it had ended itself
                    pass
        except _OutOfTime:  # the wall or CPU budget ran out in the middle of the chunk
            result.ran_out = limits.spent()
            break
        except StepBudgetSpent:  # the step budget ran out in the middle of the chunk
            result.ran_out = "steps"
            break
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
            if limits.spent() is not None:
                continue  # (the loop's test ends the campaign)
            if _run_pool(ctx, mutants, chunk_seed(seed_value, stream, index), t0, budget):
                result.found = True
                break
        finally:
            if clock.hit:
                result.clock_hit.append("hypothesis_shrink")
            if store is not None and not result.found:
                _sync_store(ctx, store, result, pickup=True)
            _update(result, ctx, t0, cpu0)
            if progress is not None:
                progress(result)
    if store is not None:
        _sync_store(ctx, store, result, pickup=False, fsync=True)
    if result.found:
        result.ran_out = None
    t_shrunk = time.monotonic()
    if result.found and ctx.failure is not None and known is not None and known(ctx.failure):
        result.failure = ctx.failure
        result.case = ctx.failure.case
        result.preemptions = ctx.failure.preemptions
        result.known_hit = True
    elif result.found and ctx.failure is not None:
        net = time.process_time() + post_shrink_seconds
        shrunk = shrink(ctx.failure, Budget(post_shrink_runs, net),
                        verify_minimal=verify_minimal, verify_seconds=post_shrink_seconds)
        result.failure = shrunk.failure
        result.case = shrunk.case
        result.preemptions = shrunk.preemptions
        result.minimal_preemptions = shrunk.minimal_preemptions
        result.shrink_passes = shrunk.passes
        result.clock_hit += shrunk.clock_hit
        result.others = list(shrunk.others)
    result.post_shrink_seconds = time.monotonic() - t_shrunk
    _update(result, ctx, t0, cpu0)
    return result


@attrs.frozen
class _Limits:
    """A campaign's budgets other than examples: its steps (``ctx.step_budget``), a wall-clock
    ``deadline`` (``time.monotonic()``) and a CPU ``cpu_deadline`` (``time.process_time()``)."""

    ctx: CampaignContext
    deadline: float | None
    cpu_deadline: float | None

    def spent(self) -> str | None:
        """The budget spent ("steps", "cpu", "wall"), or None while every one has some left."""
        if self.ctx.step_budget_spent():
            return "steps"
        if self.cpu_deadline is not None and time.process_time() >= self.cpu_deadline:
            return "cpu"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "wall"
        return None


class _OutOfTime(KeyboardInterrupt):
    """Raised as an example would start after the wall or CPU budget.  Hypothesis treats a
    KeyboardInterrupt as "stop now": it ends the chunk's run at once, neither counted as a
    failure nor shrunk nor checked for flakiness; :func:`fuzz` catches this one alone."""


class _ChunkDone(KeyboardInterrupt):
    """Raised as an example would start once the chunk has run its examples.  Hypothesis
    counts only valid examples against ``max_examples`` (an example that overran its data
    does not count), so it would run a few more: this keeps the count exact."""


def _machine(
    ctx: CampaignContext, last: int, limits: _Limits
) -> Callable[[], KernelMachine]:
    """The chunk's machine factory.  Once the campaign has run ``last`` examples, the next
    one ends the chunk instead (:class:`_ChunkDone`); an example that would start after the
    wall or CPU budget ends the run (:class:`_OutOfTime`; the step budget is the machine's
    own check).  Neither applies once a failure has been met: shrinking it is not part of
    the budget."""

    def bounded() -> KernelMachine:
        if ctx.stats.first_failure_at is None:
            if ctx.stats.examples >= last:
                raise _ChunkDone
            if limits.spent() in ("cpu", "wall"):
                raise _OutOfTime
        return KernelMachine(ctx)

    return bounded


def user_checks(names: Sequence[str] = ()) -> tuple[str, ...]:
    """The registered user checks (all of them run); ValueError if a name in ``names`` is not
    a registered check."""
    from vmfuzz.invariants import CHECKS

    if isinstance(names, str):
        raise TypeError(f"checks must be a list of check names, not the string {names!r}")
    unknown = sorted(n for n in names if n not in CHECKS)
    user = tuple(c.name for c in CHECKS.values() if c.user)
    if unknown:
        raise ValueError(
            f"unknown check(s): {', '.join(unknown)} (user checks registered: "
            f"{', '.join(user) or 'none'}; register one with vmfuzz.check, in the test or a "
            "plugin loaded first)"
        )
    return user


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
    pool.step_limit = (
        pool.steps + max(0, ctx.step_budget - ctx.stats.steps)
        if ctx.step_budget is not None and ctx.stats.first_failure_at is None else None
    )
    found = pool.run(mutants, rng, deadline)
    ctx.stats.mutant_runs += pool.runs - runs0
    ctx.stats.probe_runs += pool.probe_runs - probes0
    ctx.stats.steps += pool.steps - steps0
    return _pool_failure(ctx, found)


def _pool_failure(ctx: CampaignContext, found: Failure | None) -> bool:
    """Record a failure a pool run met as the campaign's (its first failure, if it is);
    True if there was one."""
    if found is None:
        return False
    if ctx.stats.first_failure_at is None:
        ctx.stats.first_failure_example = ctx.stats.examples
        ctx.stats.first_failure_steps = ctx.stats.steps
        ctx.stats.first_failure_at = time.monotonic()
        ctx.stats.found_by = ctx.pool.found_by if ctx.pool is not None else None
    ctx.failure = found
    return True


def _open_store(
    ctx: CampaignContext, pool_dir: str | os.PathLike[str] | None, stream: int,
    result: CampaignResult,
) -> tuple[PoolStore, list[Case]] | None:
    """The campaign's pool folder, its trusted entries already in the pool; with the stored
    programs to re-run.  None without a folder or a pool."""
    pool = ctx.pool
    if pool_dir is None or pool is None:
        return None
    store = PoolStore(pool_dir, writer=f"s{stream}")
    got = store.load(ctx.config)
    result.pool_warnings += got.warnings
    result.pool_loaded = sum(pool.adopt(e) for e in got.entries)
    pool.unsaved = []
    return store, got.rerun


def _rerun_stored(ctx: CampaignContext, cases: list[Case]) -> bool:
    """Re-run stored programs into the pool (:meth:`Pool.rerun`); True if one failed."""
    pool = ctx.pool
    if pool is None or not cases:
        return False
    runs0, steps0 = pool.runs, pool.steps
    found = pool.rerun(cases)
    ctx.stats.mutant_runs += pool.runs - runs0
    ctx.stats.steps += pool.steps - steps0
    return _pool_failure(ctx, found)


def _sync_store(ctx: CampaignContext, store: PoolStore, result: CampaignResult, *,
                pickup: bool, fsync: bool = False) -> None:
    """Store the pool's new entries; with ``pickup``, adopt the other writers' new ones
    (those of another model or kernel are re-run, and a failure there is the campaign's)."""
    pool = ctx.pool
    if pool is None or pool.unsaved is None:
        return
    try:
        store.add(pool.unsaved, fsync=fsync)
    except OSError as e:  # kept in memory: the next sync tries again
        note = f"pool folder not written: {e}"
        if note not in result.pool_warnings:
            result.pool_warnings.append(note)
    else:
        pool.unsaved.clear()
    if not pickup:
        return
    got = store.pickup(ctx.config)
    result.pool_warnings += [w for w in got.warnings if w not in result.pool_warnings]
    result.pool_picked += sum(pool.adopt(e) for e in got.entries)
    if _rerun_stored(ctx, got.rerun):
        result.found = True


@contextlib.contextmanager
def _sealed_hypothesis() -> Iterator[None]:
    """Hypothesis (6.13x on) mixes literals from every loaded *local* module (source outside
    site-packages) into its draws, so a campaign's examples would depend on which of our
    modules the caller happened to import: the CLI, the Python API and a pytest run gave
    three different campaigns for one seed.  It also caches, per process, the constants each
    kind of draw may take (``CONSTANTS_CACHE``): a Hypothesis test run earlier in the process
    fills it with its local constants, and a campaign after it drew others.  A campaign
    depends on its seed alone: no local constants, and a cache of its own, set aside again
    afterwards so that later Hypothesis tests find theirs as they left it."""
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:  # pragma: no cover - an older or newer layout: nothing to pin
        yield
        return
    orig = getattr(providers, "_get_local_constants", None)
    local = getattr(providers, "_local_constants", None)
    cache = getattr(providers, "CONSTANTS_CACHE", None)
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
    if cache is not None:
        providers.CONSTANTS_CACHE = type(cache)(cache.max_size)
    try:
        yield
    finally:
        providers._get_local_constants = orig
        if cache is not None:
            providers.CONSTANTS_CACHE = cache


class _ShrinkClock:
    """The clock Hypothesis's engine reads while a chunk runs, in place of the ``time``
    module.  The engine stops shrinking once ``time.perf_counter()`` passes the value it read
    when the shrink began plus MAX_SHRINKING_SECONDS; this ``perf_counter`` counts the
    campaign's examples instead of seconds, so that limit becomes a number of runs, the same
    on an idle and on a loaded machine.  Past ``safety`` seconds of CPU time (from the first
    read after the first failure) every read jumps far past any limit set before it: the
    shrink stops and ``hit`` says so.  Everything else is the real ``time`` module (the
    engine's 10-second rule for reporting several bugs is off: our profiles set
    ``report_multiple_bugs=False``)."""

    def __init__(self, ctx: CampaignContext, safety: float) -> None:
        self.ctx = ctx
        self.safety = safety
        self.hit = False
        self.jump = 0.0
        self.cpu0: float | None = None  # time.process_time() when the shrink began

    def perf_counter(self) -> float:
        if self.ctx.stats.first_failure_at is not None:
            now = time.process_time()
            if self.cpu0 is None:
                self.cpu0 = now
            if now - self.cpu0 >= self.safety:
                self.hit = True
                self.jump += 1e12
        return self.ctx.stats.examples + self.jump

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


@contextlib.contextmanager
def _shrink_limit(clock: _ShrinkClock, runs: int) -> Iterator[None]:
    """Limit Hypothesis's shrink to ``runs`` examples (its engine stops shrinking at
    MAX_SHRINKING_SECONDS, 300 s by default, read off ``clock``).  Our own shrink passes and
    exhaustive preemption search run after it and finish the job far cheaper than more
    Hypothesis shrink passes over a stateful run."""
    from hypothesis.internal.conjecture import engine

    old = getattr(engine, "MAX_SHRINKING_SECONDS", None)
    old_time = getattr(engine, "time", None)
    if old is None or old_time is not time:  # pragma: no cover - another engine layout
        yield
        return
    # The engine stops after the run that takes the clock past the limit: runs - 1.
    engine.MAX_SHRINKING_SECONDS = runs - 1
    engine.time = clock  # type: ignore[assignment]
    try:
        yield
    finally:
        engine.MAX_SHRINKING_SECONDS = old
        engine.time = old_time


def _update(result: CampaignResult, ctx: CampaignContext, t0: float, cpu0: float) -> None:
    if ctx.stats.first_failure_at is not None:
        result.first_failure_seconds = ctx.stats.first_failure_at - t0
    result.first_failure_steps = ctx.stats.first_failure_steps
    result.found_by = ctx.stats.found_by
    result.examples = ctx.stats.examples
    result.steps = ctx.stats.steps
    result.budget_hits = ctx.stats.budget_hits
    result.seconds = time.monotonic() - t0
    result.cpu_seconds = time.process_time() - cpu0
