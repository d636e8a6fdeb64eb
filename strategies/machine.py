"""The rule-based state machine: operations *and* thread schedules, shrunk together.

Rules spawn kernel operations onto simulated threads (up to ``max_threads`` in flight, threads
of one mm and of separate mms), add a batch of preemptions to the schedule, and advance the
scheduler; teardown drains every thread.  The invariants run after every scheduler step.  Every
example is also recorded as a :class:`vmfuzz.case.Case`, so a failure can be saved and replayed
without Hypothesis, and offered to the campaign's program pool (:mod:`vmfuzz.pool`).  Nothing here
knows about any specific kernel path or bug.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import attrs
from hypothesis import strategies as st
from hypothesis.control import current_build_context
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule
from vmfuzz.strategies.operations import op_calls, swarm, worlds
from vmfuzz.strategies.schedules import pct_params, preemption_batches

from vmfuzz._scheduler import Scheduler, ScheduleSource, StepBudgetExceeded, Task
from vmfuzz.case import DEFAULT_MAX_STEPS, Case, OpCall, Run, Schedule, TaskSpec
from vmfuzz.context import CampaignContext, StepBudgetSpent
from vmfuzz.failure import Failure
from vmfuzz.kernel import Kernel, KernelConfig
from vmfuzz.lockdep import LockDep
from vmfuzz.pool import RETRY_SCHEDULES
from vmfuzz.program import (
    aim_frame,
    frames_at,
    objects_of,
    retarget,
    takes_frame,
    target_of,
)
from vmfuzz.schedules import (
    FUZZ_SCHEDULERS,
    MIXED_PICKS,
    MODE_BY_NAME,
    Collide,
    PreemptionList,
    RandomWalk,
)
from vmfuzz.violation import Violation

SCHEDULERS = FUZZ_SCHEDULERS


@functools.cache
def _below(n: int) -> st.SearchStrategy[int]:
    """``st.integers(0, n - 1)``, built once per bound (not per draw)."""
    return st.integers(0, n - 1)


@attrs.define
class _Thread:
    name: str
    start: int
    ops: list[OpCall]
    task: Task


def _thread_body(k: Kernel, ops: list[OpCall]) -> Any:
    """Like :func:`vmfuzz.case.thread`, but ops may be appended while the thread runs."""
    from vmfuzz.kernel import OPS

    i = 0
    while i < len(ops):
        call = ops[i]
        i += 1
        k.call_begin(call.op, call.args)
        ret = yield from OPS[call.op].fn(k, **call.args)
        k.call_return(call.op, call.args, ret)
        k.sched.note_progress()


class _Source:
    """Delegates to the example's schedule source (set once at initialisation)."""

    def __init__(self) -> None:
        self.inner: ScheduleSource = PreemptionList()

    def choose(self, runnable: list[Task], default: int, sched: Scheduler) -> int:
        return self.inner.choose(runnable, default, sched)


class KernelMachine(RuleBasedStateMachine):
    """Fuzz the kernel model of a campaign's :class:`CampaignContext`.

    Hypothesis builds one machine per example; a campaign passes its context in through a
    factory (``functools.partial(KernelMachine, ctx)``), so the examples' statistics, failure
    and pool land in the context, never on the class."""

    def __init__(self, ctx: CampaignContext | None = None) -> None:
        if ctx is not None and ctx.step_budget_spent():
            raise StepBudgetSpent  # ends the chunk's run: the campaign's steps are spent
        super().__init__()
        from vmfuzz.invariants import install

        self.ctx = ctx if ctx is not None else CampaignContext()
        self.config = self.ctx.config
        self.scheduler = self.ctx.scheduler
        self.ops = self.ctx.ops
        self.max_threads = self.ctx.max_threads
        self.max_steps = self.ctx.max_steps
        self.source = _Source()
        self.sched = Scheduler(self.source, max_steps=self.max_steps, lockdep=LockDep())
        self.example_config = self.config
        self.k: Kernel  # built by setup(), in the drawn world
        self._install = install
        self.threads: list[_Thread] = []
        self.slots: dict[int, _Thread] = {}
        self.enabled: list[str] = []
        self.targets: list[tuple[int, int | None]] = []  # (mm, addr) of earlier operations
        self.boot_frames: list[int] = []  # frames the world mapped at its targets
        self.mode = self.scheduler  # "mixed" is resolved per example in setup()
        self.pct_seed = 0
        self.stopped = False
        self.ctx.stats.examples += 1

    # -------------------------------------------------------------- rules
    @initialize(
        enabled=swarm(), sched_seed=pct_params(), pick=st.integers(0, len(MIXED_PICKS) - 1),
        world=worlds(),
    )
    def setup(
        self,
        enabled: list[str],
        sched_seed: tuple[int, int, int],
        pick: int,
        world: frozenset[str],
    ) -> None:
        if self.ctx.draw_world:
            self.example_config = attrs.evolve(self.config, world=self.config.world | world)
        try:
            self.k = Kernel(self.example_config, self.sched)
        except Exception as exc:  # building the world crashed the model: a finding too
            self.stopped = True
            v = Violation("model_error", f"while building the world: {type(exc).__name__}: {exc}")
            self._capture(v)
            raise v from exc
        if self.k.boot_violation is not None:  # the kernel under test broke building it
            self.stopped = True
            self._capture(self.k.boot_violation)
            raise self.k.boot_violation
        self._install(self.k)
        # Operations may be aimed at the pages the world populated, as at earlier ones'.
        self.targets = list(dict.fromkeys(self.k.boot_targets))
        self.boot_frames = frames_at(self.k, self.targets)
        ops = self.ops
        self.enabled = [op for op in enabled if ops is None or op in ops] or sorted(
            ops or enabled
        )
        seed, depth, k = sched_seed
        self.pct_seed = seed
        if self.scheduler == "mixed":
            # 2/5 PCT (deep races), 2/5 preemption lists (shrink best), 1/5 random walk with
            # echo (many switches: the only one that keeps retry loops colliding, livelocks).
            self.mode = MIXED_PICKS[pick]
        self.source.inner = MODE_BY_NAME[self.mode].source(seed, depth, k)

    @rule(slot=st.integers(0, 3), data=st.data())
    def spawn(self, slot: int, data: st.DataObject) -> None:
        """Queue one operation on thread ``slot`` (a new thread if that one has finished)."""
        call = data.draw(op_calls(self.config, self.enabled), label="op")
        if target_of(call) is not None and self.targets:
            # Half the time, aim at the (mm, addr) of an earlier operation of this example.
            n = len(self.targets)
            pick = data.draw(_below(2 * n), label="reuse")
            if pick < n:
                call = retarget(call, self.targets[pick])
        elif takes_frame(call):
            # Half the time, the frame mapped now at one of those pages (a free frame is
            # a no-op for an operation on frames).
            frames = frames_at(self.k, self.targets)
            if frames:
                pick = data.draw(_below(2 * len(frames)), label="frame")
                if pick < len(frames):
                    call = aim_frame(call, frames[pick])
        tgt = target_of(call)
        if tgt is not None and tgt not in self.targets:
            self.targets.append(tgt)
        slot %= self.max_threads
        th = self.slots.get(slot)
        if th is not None and not th.task.done:
            th.ops.append(call)
        else:
            ops = [call]
            task = self.sched.spawn(_thread_body(self.k, ops))
            th = _Thread(task.name, self.sched.step_no, ops, task)
            self.threads.append(th)
            self.slots[slot] = th
        c = self.ctx.stats.ops
        c[call.op] = c.get(call.op, 0) + 1

    @precondition(lambda self: MODE_BY_NAME[self.mode].preempt_rule)
    @rule(batch=preemption_batches())
    def preempt(self, batch: list[tuple[int, int]]) -> None:
        """Add context switches to the schedule (consumed as decision points come)."""
        assert isinstance(self.source.inner, PreemptionList)
        self.source.inner.extend(batch)

    @rule(steps=st.integers(1, 400))
    def advance(self, steps: int) -> None:
        """Run the scheduler for up to ``steps`` steps."""
        self._run(steps)

    def teardown(self) -> None:
        try:
            self._run(None)
            pool = self.ctx.pool
            if pool is not None and not self.stopped and self.threads:
                touched, pages = objects_of(self.k.history)
                targets = self.targets + touched
                pool.offer(self.case(), self.sched.trace, self.sched.step_no, targets,
                           self.boot_frames + frames_at(self.k, targets) + pages,
                           self.k.pte_aba, self.k.history)
            # No target() here: Hypothesis' target phase (hill-climbing on distinct labels)
            # was measured to cost ~30% of the examples per second and to find fewer of the
            # bugs in the zoo (A/B over 4 bugs x 3 seeds: 3/12 with it, 5/12 without).
            if not self.stopped and self.threads:
                self._amplify()
        finally:
            st_ = self.ctx.stats
            st_.steps += self.sched.step_no
            if self.ctx.collect_labels:
                for s in self.sched.trace:
                    st_.labels[s.label] = st_.labels.get(s.label, 0) + 1

    def _amplify(self) -> None:
        """Schedule amplification: re-run this example's program (same tasks, same start
        steps) under ``amplify`` more schedules of its kind (PCT or random walk) derived from
        the drawn seed, and under RETRY_SCHEDULES echoed random walks if a run of it went
        round a retry loop (a livelock candidate: see :mod:`vmfuzz.pool`).

        Hypothesis draws cost more than a short model run, so trying several schedules per
        drawn program is the cheapest way to cover schedules; the seeds are derived from the
        drawn data, so a failure here reproduces and shrinks like any other.
        """
        from vmfuzz.case import execute

        amplify = self.ctx.amplify
        if not amplify:
            return
        case = self.case()
        st_ = self.ctx.stats
        length = self.sched.step_no
        retried = self.sched.retried > 0
        rerun = MODE_BY_NAME[self.mode].rerun
        kinds = amplify if rerun is not None else 0
        i = 0
        while i < kinds + (RETRY_SCHEDULES if retried else 0):
            seed = self.pct_seed * 7919 + i
            if rerun is None or i >= kinds:  # echoed walks for a retry loop
                src: ScheduleSource = Collide(RandomWalk(seed))
            else:
                # PCT's k is this program's run length: PCT spreads its change points over k
                # steps, so a k far above the run wastes them past its end and one far below
                # bunches them at its start.  On the zoo's mail programs k = run length hit
                # about 1.5x as often as a 16/64/256 cycle; in 40 s campaigns (4 bugs x 5
                # seeds) it found 7 of 20 against 4 of 20.
                src = rerun(seed, 2 + (self.pct_seed + i) % 3, max(2, length))
            i += 1
            run = execute(case, src)
            retried |= run.sched.retried > 0
            st_.steps += run.outcome.steps
            if run.outcome.kind == "violation":
                assert run.outcome.violation is not None
                self.stopped = True
                self._capture(run.outcome.violation, run)
                raise run.outcome.violation

    # -------------------------------------------------------------- helpers
    def _run(self, steps: int | None) -> None:
        if self.stopped:
            return
        try:
            self.sched.run(steps)
        except StepBudgetExceeded:
            self.stopped = True  # a budget overrun is not a failure: shrinking never drifts here
            self.ctx.stats.budget_hits += 1
        except Violation as v:
            self.stopped = True
            self._capture(v)
            raise
        except Exception as exc:  # a crash of the model itself is a finding too
            self.stopped = True
            self._capture(Violation("model_error", f"{type(exc).__name__}: {exc}"))
            raise

    def _capture(self, v: Violation, run: Run | None = None) -> None:
        st_ = self.ctx.stats
        if st_.first_failure_example is None:
            st_.first_failure_example = st_.examples
            st_.first_failure_steps = st_.steps + (
                run.outcome.steps if run is not None else self.sched.step_no)
            st_.first_failure_at = time.monotonic()
            st_.found_by = "a Hypothesis example"
        try:
            ctx = current_build_context()
            final = ctx.is_final
            # An example whose data ran out (Hypothesis replaying a prefix) is concluded
            # before teardown runs: Hypothesis drops whatever teardown raises.  A failure
            # found there (draining the threads, an amplified schedule) would be lost, so
            # it is kept as found; the post-Hypothesis shrink takes it from there.
            final = final or (ctx.data.frozen and self.ctx.failure is None)
        except Exception:
            final = True
        if final and run is not None:
            case = attrs.evolve(
                self.case(), schedule=Schedule("decisions", decisions=tuple(run.sched.decisions))
            )
            self.ctx.failure = Failure(
                case, v, run.outcome.steps, run.sched.preemptions, list(run.sched.trace)
            )
        elif final:
            self.ctx.failure = Failure(
                self.case(), v, self.sched.step_no, self.sched.preemptions, list(self.sched.trace)
            )

    def case(self) -> Case:
        """This example as a replayable case (schedule = the recorded decisions)."""
        tasks = tuple(TaskSpec(t.name, tuple(t.ops), t.start) for t in self.threads)
        return Case(
            self.example_config,
            tasks,
            Schedule("decisions", decisions=tuple(self.sched.decisions)),
            self.max_steps,
        )


def machine_for(
    config: KernelConfig | None = None,
    *,
    scheduler: str = "mixed",
    ops: list[str] | None = None,
    max_threads: int = 4,
    max_steps: int = DEFAULT_MAX_STEPS,
    collect_labels: bool = False,
    amplify: int = 0,
    draw_world: bool = True,
    pool: bool = False,
) -> type[KernelMachine]:
    """A machine class bound to a fresh :class:`CampaignContext`, for a plain Hypothesis test
    (``machine_for(config).TestCase``).  Campaigns do not use it: they pass their context to
    :class:`KernelMachine` through a factory.  The context is the class's ``context``."""
    ctx = CampaignContext(
        config or KernelConfig(), scheduler=scheduler, ops=ops, max_threads=max_threads,
        max_steps=max_steps, collect_labels=collect_labels, amplify=amplify,
        draw_world=draw_world,
    )
    if pool:
        ctx.with_pool()

    class BoundKernelMachine(KernelMachine):
        context = ctx

        def __init__(self) -> None:
            super().__init__(ctx)

    return BoundKernelMachine
