"""Deterministic cooperative scheduler: simulated kernel paths interleave only where they yield.

A task is a generator (``do_munmap``, ``try_to_unmap`` ...).  It yields a *label* string at each
point where another CPU could interleave, or a request object made by one of the lock helpers
(``yield sched.spin_lock(mm.page_table_lock)``).  One scheduler *step* resumes one task and runs
it to its next yield.  Whenever two or more tasks are runnable, a pluggable schedule source
(:mod:`vmfuzz.schedules`) picks one; everything else is fixed, so the same program and the same
source decisions always give the same trace.

The kernel's lock checks live here too: real deadlock (a wait-for cycle, reported when it forms),
lockdep's potential deadlock (via :class:`vmfuzz.lockdep.LockDep`), sleeping while holding a
spinlock, releasing a lock not held, lock held at task exit, and ``assert_held``.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Generator, Iterable, Sequence
from types import CodeType
from typing import Any, Protocol

import attrs

from vmfuzz._locks import READ, WRITE, BigKernelLock, Lock, Mutex, PageLock, RWSemaphore, Spinlock
from vmfuzz._watchdog import SoftLockup, watch
from vmfuzz.lockdep import LockDep
from vmfuzz.violation import Violation

TaskGen = Generator[Any, None, Any]
Checker = Callable[["Scheduler"], None]


def kernel_function(depth: int) -> str:
    """The name of the kernel function ``depth`` frames above the caller (as
    ``sys._getframe(depth)`` there), for a label.

    A Python helper (a name with one leading underscore, ``_do_swap_page``) is not a kernel
    function: the label names the function of the same module it works for, its nearest caller
    there that is not a helper (``__add_to_swap_cache`` is a kernel name).  A helper called
    from another module (an operation's own body) keeps its name."""
    f = sys._getframe(depth + 1)
    helper = _HELPER_CODE
    while True:
        code = f.f_code
        h = helper.get(id(code))
        if h is None:
            h = helper[id(code)] = _helper(code.co_name)
            _CODES.append(code)
        back = f.f_back
        if not h or back is None or back.f_globals is not f.f_globals:
            return code.co_name
        f = back


def _helper(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


# id of a code object -> whether its function is a Python helper (``_helper`` of its name), so
# that a label's frame walk reads one dict per frame (keyed by id: a code object's own hash
# reads its whole contents; the code objects are kept in _CODES, so an id is never reused).
_HELPER_CODE: dict[int, bool] = {}
_CODES: list[CodeType] = []


# The lock types whose available/grant/release are the base Lock's (one owner): the scheduler
# reads and writes their owner itself on its hot paths.
_EXCLUSIVE: frozenset[type] = frozenset({Lock, Spinlock, Mutex, PageLock})


class StepBudgetExceeded(Exception):
    """The run used its whole step budget: an outcome of its own, never a failure."""


class ScheduleDiverged(Exception):
    """A recorded schedule asked for a task that is not runnable at that decision."""


class Acquire:
    """A request for a lock, made by :meth:`Scheduler.spin_lock` and friends."""

    __slots__ = ("label", "lock", "mode")

    def __init__(self, lock: Lock, mode: str, label: str) -> None:
        self.lock = lock
        self.mode = mode
        self.label = label


class WaitEvent:
    """Sleep until ``cond()`` holds (wait_event / wait_on_page_locked / schedule())."""

    __slots__ = ("cond", "force", "label", "what")

    def __init__(self, cond: Callable[[], bool], label: str, what: str, force: bool) -> None:
        self.cond = cond
        self.label = label
        self.what = what
        self.force = force


class Retry:
    """A label at the top of a retry loop (trylock failed, back off): feeds livelock detection."""

    __slots__ = ("label",)

    def __init__(self, label: str) -> None:
        self.label = label


class Task:
    """One simulated kernel thread running one kernel path."""

    __slots__ = (
        "bkl_saved",
        "blocked",
        "done",
        "gen",
        "held",
        "label",
        "name",
        "refused_by",
        "result",
        "retries",
        "spins",
        "tid",
    )

    def __init__(self, tid: int, name: str, gen: TaskGen) -> None:
        self.tid = tid
        self.name = name
        self.gen = gen
        self.blocked: Acquire | WaitEvent | None = None
        self.held: list[tuple[Lock, str]] = []
        self.bkl_saved = 0
        self.label = "start"
        self.done = False
        self.result: Any = None
        self.retries = 0
        self.refused_by: tuple[str, ...] = ()  # holders of the lock its last trylock wanted
        self.spins = 0  # spinlocks among ``held`` (kept by the scheduler: an O(1) atomic test)

    def held_names(self) -> tuple[str, ...]:
        return tuple(lock.name for lock, _ in self.held)

    def holds_spinlock(self) -> Lock | None:
        if not self.spins:
            return None
        for lock, _ in self.held:
            if isinstance(lock, Spinlock):
                return lock
        return None

    def __repr__(self) -> str:
        return f"<Task {self.name} at {self.label}>"


class ScheduleSource(Protocol):
    """Decides which runnable task runs next; consulted only when two or more are runnable.

    ``runnable`` is in task-id order; ``default`` is the index the non-preemptive policy would
    pick (the task that ran last if it can still run, else the lowest task id).  Return an index
    into ``runnable``.  A source that reads the trace as the run goes (``Explicit``) says so
    with a class attribute ``needs_trace = True``: its scheduler then records the trace even
    when asked not to.
    """

    def choose(self, runnable: list[Task], default: int, sched: Scheduler) -> int: ...


@attrs.define
class TraceStep:
    """One scheduler step: who ran, where it stopped, what happened to locks, what it held."""

    step: int
    task: str
    label: str
    event: str
    held: tuple[str, ...]

    def line(self) -> str:
        return f"{self.step} {self.task} {self.label} {self.event} [{','.join(self.held)}]"

    @property
    def blocked(self) -> bool:
        """The step was an attempt that blocked on a lock (the task did not get past it)."""
        return "blocks on " in self.event


def ran_steps(trace: Sequence[TraceStep]) -> dict[str, tuple[int, int]]:
    """The first and the last step each task of ``trace`` ran that was not a blocked attempt,
    in the order the tasks first ran: who did work, and in which order, as one CPU would."""
    out: dict[str, tuple[int, int]] = {}
    for i, step in enumerate(trace):
        if not step.blocked:
            out[step.task] = (out[step.task][0] if step.task in out else i, i)
    return out


@attrs.define
class Outcome:
    """How a run ended: ``clean``, ``violation``, ``budget`` (step budget used up)."""

    kind: str
    steps: int
    violation: Violation | None = None
    trace_sha256: str = ""

    @property
    def check(self) -> str | None:
        return self.violation.check if self.violation else None


class _NonPreemptive:
    def choose(self, runnable: list[Task], default: int, sched: Scheduler) -> int:
        return default


class Scheduler:
    """Runs tasks one step at a time under a schedule source, checking locks and invariants."""

    def __init__(
        self,
        source: ScheduleSource | None = None,
        *,
        max_steps: int = 100_000,
        lockdep: LockDep | None = None,
        checkers: Iterable[Checker] = (),
        record_trace: bool = True,
        livelock_retries: int = 8,
    ) -> None:
        self.source: ScheduleSource = source if source is not None else _NonPreemptive()
        self.max_steps = max_steps
        self.lockdep = lockdep
        self.checkers: list[Checker] = list(checkers)
        # (a source that follows the trace gets one whatever the caller asked)
        self.record_trace = record_trace or getattr(self.source, "needs_trace", False)
        self.livelock_retries = livelock_retries
        self.tasks: list[Task] = []
        self.live: list[Task] = []
        self.current: Task | None = None
        self.step_no = 0
        # One row per step, (step, task, label, event, held), made into TraceSteps only when
        # the trace is read (``trace``): a run that only hashes its trace never builds them.
        self._rows: list[tuple[int, str, str, str, tuple[str, ...]]] = []
        self._trace: list[TraceStep] = []
        self.decisions: list[int] = []
        self.preemptions = 0
        self.switches = 0
        self.retried = 0  # retry-loop rounds run by any task (a trylock collided and backed off)
        self.collided: tuple[str, ...] = ()  # the first round's task, then the holders it met
        self.bkl = BigKernelLock()
        self._events: list[str] = []
        self.sends = 0  # steps begun: the soft-lockup watchdog's view (vmfuzz._watchdog)
        self.in_send = False
        watch(self)
        # Livelock as a cycle: the shared state's version (the kernel bumps it on every write;
        # None = unknown, then only the retry count decides) and, per task, the state seen at
        # its last retry (see _check_cycle).
        self.state_version: Callable[[], int] | None = None
        self._at_retry: dict[int, tuple[Any, int, dict[int, int]]] = {}
        # The run's check selection (KernelConfig.checks / no_checks; the kernel sets them):
        # an engine check turned off is not raised (see check_on).
        self._checks_only: frozenset[str] | None = None
        self._checks_off: frozenset[str] = frozenset()
        self._lockdep_on = True  # lock_order_inversion is on (kept by the two setters)

    @property
    def checks_only(self) -> frozenset[str] | None:
        """The only checks on in this run (None: every check not in ``checks_off``)."""
        return self._checks_only

    @checks_only.setter
    def checks_only(self, names: frozenset[str] | None) -> None:
        self._checks_only = names
        self._lockdep_on = self.check_on("lock_order_inversion")

    @property
    def checks_off(self) -> frozenset[str]:
        """The checks turned off in this run."""
        return self._checks_off

    @checks_off.setter
    def checks_off(self, names: frozenset[str]) -> None:
        self._checks_off = names
        self._lockdep_on = self.check_on("lock_order_inversion")

    @property
    def trace(self) -> list[TraceStep]:
        """The steps run so far (the same list object on every read, extended as steps run)."""
        made = self._trace
        rows = self._rows
        if len(made) < len(rows):
            made.extend([TraceStep(*row) for row in rows[len(made):]])
        return made

    def check_on(self, name: str) -> bool:
        """Whether check ``name`` is on in this run (every check is, unless chosen otherwise)."""
        return name not in self._checks_off and (
            self._checks_only is None or name in self._checks_only
        )

    # ------------------------------------------------------------------ tasks
    def spawn(self, gen: TaskGen, name: str | None = None) -> Task:
        """Add a task; it becomes runnable at once.  Names default to ``T<tid>``."""
        tid = len(self.tasks)
        task = Task(tid, name or f"T{tid}", gen)
        self.tasks.append(task)
        self.live.append(task)
        return task

    @property
    def finished(self) -> bool:
        return not self.live

    # ------------------------------------------------------------ lock calls
    # Requests are yielded by the task: ``yield sched.spin_lock(lock)``.  Releases are plain
    # calls.  The label of a request is "<calling function>:<primitive>(<lock class>)", the
    # calling function being the kernel function the request is made in (kernel_function).
    def _req(self, lock: Lock, mode: str, prim: str, at: str | None) -> Acquire:
        if at is None:
            at = kernel_function(2)
        return Acquire(lock, mode, f"{at}:{prim}({lock.cls})")

    def spin_lock(self, lock: Lock, at: str | None = None) -> Acquire:
        # (the most frequent request: _req inlined)
        if at is None:
            at = kernel_function(1)
        return Acquire(lock, WRITE, f"{at}:spin_lock({lock.cls})")

    def mutex_lock(self, lock: Lock, at: str | None = None) -> Acquire:
        return self._req(lock, WRITE, "down", at)

    def lock_page(self, lock: Lock, at: str | None = None) -> Acquire:
        return self._req(lock, WRITE, "lock_page", at)

    def down_read(self, lock: Lock, at: str | None = None) -> Acquire:
        return self._req(lock, READ, "down_read", at)

    def down_write(self, lock: Lock, at: str | None = None) -> Acquire:
        return self._req(lock, WRITE, "down_write", at)

    def lock_kernel(self, at: str | None = None) -> Acquire:
        return self._req(self.bkl, WRITE, "lock_kernel", at)

    def wait_event(
        self, cond: Callable[[], bool], what: str, at: str | None = None, *, force: bool = False
    ) -> WaitEvent:
        """Sleep until ``cond()``; ``force`` sleeps even if it already holds (schedule())."""
        if at is None:
            at = kernel_function(1)
        return WaitEvent(cond, f"{at}:wait({what})", what, force)

    def retry(self, label: str) -> Retry:
        """A retry-loop label: all live tasks retrying ``livelock_retries`` times is a livelock."""
        return Retry(label)

    def note_progress(self) -> None:
        """The running task completed a unit of work (an operation): reset its retry count."""
        self._cur().retries = 0

    def trylock(self, lock: Lock, mode: str = WRITE) -> bool:
        """spin_trylock / trylock_page / down_read_trylock: take it now or return False."""
        task = self.current
        if task is None:
            raise RuntimeError("lock call outside a running task")
        exclusive = type(lock) in _EXCLUSIVE
        if lock.owner is None if exclusive else lock.available(task, mode):
            if exclusive:
                lock.owner = task
            else:
                lock.grant(task, mode)
            task.held.append((lock, mode))
            if lock.kind == "spinlock":
                task.spins += 1
            self._events.append(f"trylock {lock.name}")
            return True
        self._events.append(f"trylock {lock.name} failed")
        task.refused_by = tuple(h.name for h in lock.holders())
        return False

    def unlock(self, lock: Lock, mode: str | None = None) -> None:
        """spin_unlock / up / unlock_page / up_write / unlock_kernel (mode found from the hold)."""
        task = self.current
        if task is None:
            raise RuntimeError("lock call outside a running task")
        held = task.held
        if held:  # the lock taken last, released first: the usual case
            held_lock, held_mode = held[-1]
            if held_lock is lock and (mode is None or mode == held_mode):
                if type(lock) in _EXCLUSIVE:
                    if lock.owner is task:
                        lock.owner = None
                else:
                    lock.release(task, held_mode)
                held.pop()
                if lock.kind == "spinlock":
                    task.spins -= 1
                self._events.append(f"unlock {lock.name}")
                return
        for i in range(len(held) - 2, -1, -1):
            held_lock, held_mode = held[i]
            if held_lock is lock and (mode is None or mode == held_mode):
                lock.release(task, held_mode)
                del task.held[i]
                if lock.kind == "spinlock":
                    task.spins -= 1
                self._events.append(f"unlock {lock.name}")
                return
        if not self.check_on("unlock_not_held"):
            return
        raise Violation(
            "unlock_not_held",
            f"task {task.name} releases {lock.name} which it does not hold",
            lock=lock.name,
        )

    up_read = unlock
    up_write = unlock
    spin_unlock = unlock
    unlock_page = unlock
    mutex_unlock = unlock

    def unlock_kernel(self) -> None:
        self.unlock(self.bkl)

    def holds(self, lock: Lock, mode: str | None = None) -> bool:
        return lock.held_by(self._cur(), mode)

    def assert_held(self, lock: Lock, mode: str | None = None, why: str = "") -> None:
        """lockdep_assert_held: the running task must hold ``lock`` (in ``mode`` if given)."""
        task = self._cur()
        if not lock.held_by(task, mode) and self.check_on("lock_not_held"):
            need = {READ: " for read", WRITE: " for write"}.get(mode or "", "")
            raise Violation(
                "lock_not_held",
                f"{task.name} at {task.label} must hold {lock.name}{need}"
                + (f" ({why})" if why else ""),
                lock=lock.name,
            )

    def _cur(self) -> Task:
        if self.current is None:
            raise RuntimeError("lock call outside a running task")
        return self.current

    # ------------------------------------------------------------- stepping
    def _can_wake(self, task: Task) -> bool:
        req = task.blocked
        if task.bkl_saved and not self.bkl.available(task, WRITE):
            return False
        if isinstance(req, Acquire):
            return req.lock.available(task, req.mode)
        assert req is not None
        return bool(req.cond())

    def runnable(self) -> list[Task]:
        out = []
        for t in self.live:
            if t.blocked is None or self._can_wake(t):
                out.append(t)
        return out

    def step(self) -> bool:
        """Run one step; False when every task has finished.

        Raises :class:`Violation` (annotated with step, task and label) or
        :class:`StepBudgetExceeded`.
        """
        if not self.live:
            return False
        if self.step_no >= self.max_steps:
            raise StepBudgetExceeded(f"step budget of {self.max_steps} used up")
        live = self.live
        cur = self.current
        if len(live) == 1 and live[0].blocked is None:
            task = live[0]  # the one live task runs: no decision
        else:
            runnable = [t for t in live if t.blocked is None or self._can_wake(t)]
            if not runnable:
                raise self._annotate(self._deadlock_all(), live[0])
            if len(runnable) == 1:
                task = runnable[0]
            else:
                default = runnable.index(cur) if cur in runnable else 0
                idx = self.source.choose(runnable, default, self)
                task = runnable[idx % len(runnable)]
                self.decisions.append(task.tid)
                if idx != default and cur in runnable:
                    self.preemptions += 1
        if task is not cur and cur is not None:
            self.switches += 1
        self.current = task
        events = self._events
        if events:
            events.clear()
        self.sends += 1
        self.in_send = True
        lockup = False
        try:
            try:
                if task.blocked is not None:
                    self._wake(task)
                req = task.gen.send(None)
            finally:
                self.in_send = False
            kind = type(req)
            if kind is str:  # a label: most steps
                task.label = req
            elif kind is Acquire:  # a lock request: most of the others
                task.label = req.label
                self._acquire(task, req)
            elif kind is WaitEvent:  # might_sleep() at every allocation: most of the rest
                task.label = req.label
                self._wait(task, req)
            else:
                self._handle(task, req)
        except StopIteration as stop:
            task.result = stop.value
            self._exit(task)
        except Violation as v:
            self._record(task)
            raise self._annotate(v, task) from None
        except SoftLockup:
            lockup = True
        if lockup:
            # Raised outside the handler: as its __context__ the violation would keep where
            # the watchdog's exception landed, a different line from run to run, and
            # Hypothesis (which keys a failure on it) would call one lockup flaky.
            self._record(task)
            raise self._annotate(self._soft_lockup(task), task)
        if self.record_trace:  # (_record, inlined: every step)
            held = task.held
            self._rows.append((
                self.step_no, task.name, task.label, "; ".join(events) if events else "",
                tuple([lock.name for lock, _ in held]) if held else (),
            ))
        self.step_no += 1
        if self.checkers:
            try:
                for check in self.checkers:
                    check(self)
            except Violation as v:
                raise self._annotate(v, task) from None
        if self.livelock_retries and task.retries >= self.livelock_retries:
            try:
                self._check_livelock()
            except Violation as v:
                raise self._annotate(v, task) from None
        return bool(self.live)

    def run(self, max_steps: int | None = None) -> None:
        """Step until all tasks finish (or ``max_steps`` more steps ran); raises like step()."""
        limit = None if max_steps is None else self.step_no + max_steps
        while self.live and (limit is None or self.step_no < limit):
            self.step()

    def run_to_outcome(self) -> Outcome:
        """Run to the end and report how it ended, never raising for a violation or budget."""
        try:
            self.run()
        except Violation as v:
            return Outcome("violation", self.step_no, v, self.trace_sha256())
        except StepBudgetExceeded:
            return Outcome("budget", self.step_no, None, self.trace_sha256())
        return Outcome("clean", self.step_no, None, self.trace_sha256())

    def _record(self, task: Task) -> None:
        if self.record_trace:
            events = self._events
            held = task.held
            self._rows.append((
                self.step_no, task.name, task.label, "; ".join(events) if events else "",
                tuple([lock.name for lock, _ in held]) if held else (),
            ))
        self.step_no += 1

    def _wake(self, task: Task) -> None:
        req = task.blocked
        task.blocked = None
        if isinstance(req, Acquire):
            if req.mode == WRITE and isinstance(req.lock, RWSemaphore):
                req.lock.waiting_writers -= 1
            self._grant(task, req.lock, req.mode)
            self._events.append(f"wakes, takes {req.lock.name}")
        else:
            self._events.append("wakes")
        if task.bkl_saved:
            self.bkl.owner = task
            self.bkl.depth = task.bkl_saved
            task.held.extend([(self.bkl, WRITE)] * task.bkl_saved)
            task.bkl_saved = 0
            self._events.append("retakes BKL")

    def _grant(self, task: Task, lock: Lock, mode: str) -> None:
        lock.grant(task, mode)
        task.held.append((lock, mode))
        if lock.kind == "spinlock":
            task.spins += 1

    def _handle(self, task: Task, req: Any) -> None:
        if isinstance(req, str):
            task.label = req
            return
        if isinstance(req, Retry):
            task.label = req.label
            task.retries += 1
            if not self.retried:
                self.collided = tuple(dict.fromkeys((task.name, *task.refused_by)))
            self.retried += 1
            if self.state_version is not None:
                self._check_cycle(task)
            return
        task.label = req.label
        if isinstance(req, Acquire):
            self._acquire(task, req)
        elif isinstance(req, WaitEvent):
            self._wait(task, req)
        else:
            raise TypeError(f"task {task.name} yielded {req!r}: expected a label or a lock request")

    def _wait(self, task: Task, req: WaitEvent) -> None:
        if task.spins:
            self._might_sleep(task, req.what)
        if req.force or not req.cond():
            task.blocked = req
            self._events.append(f"sleeps ({req.what})")
            self._drop_bkl(task)

    def _acquire(self, task: Task, req: Acquire) -> None:
        lock = req.lock
        if lock.sleeping and task.spins:
            self._might_sleep(task, lock.name)
        if self._lockdep_on and self.lockdep is not None and lock is not self.bkl:
            self.lockdep.acquire(task, lock, req.label)
        if type(lock) in _EXCLUSIVE:  # (_grant, inlined for the plain exclusive locks)
            if lock.owner is None:
                lock.owner = task
                task.held.append((lock, req.mode))
                if lock.kind == "spinlock":
                    task.spins += 1
                self._events.append(f"takes {lock.name}")
                return
        elif lock.available(task, req.mode):
            self._grant(task, lock, req.mode)
            self._events.append(f"takes {lock.name}")
            return
        task.blocked = req
        if req.mode == WRITE and isinstance(lock, RWSemaphore):
            lock.waiting_writers += 1
        self._events.append(f"blocks on {lock.name}")
        if lock.sleeping:
            self._drop_bkl(task)
        cycle = self._wait_cycle(task)
        if cycle:
            raise Violation(
                "deadlock",
                "wait-for cycle: " + " -> ".join(cycle),
                tasks=[c for c in cycle],
            )

    def _might_sleep(self, task: Task, what: str) -> None:
        spin = task.holds_spinlock()
        if spin is not None and self.check_on("sleep_in_atomic"):
            raise Violation(
                "sleep_in_atomic",
                f"{task.name} may sleep on {what} while holding spinlock {spin.name}",
                lock=spin.name,
            )

    def _drop_bkl(self, task: Task) -> None:
        if self.bkl.owner is task:
            task.bkl_saved = self.bkl.depth
            self.bkl.owner = None
            self.bkl.depth = 0
            task.held = [(lk, m) for lk, m in task.held if lk is not self.bkl]
            self._events.append("drops BKL")

    def _exit(self, task: Task) -> None:
        task.done = True
        task.label = "exit"
        self.live.remove(task)
        self._events.append("exits")
        if task.held and self.check_on("lock_held_at_exit"):
            raise Violation(
                "lock_held_at_exit",
                f"{task.name} finished holding {', '.join(task.held_names())}",
            )

    # ------------------------------------------------------------- checks
    def _waits_for(self, task: Task) -> list[Task]:
        req = task.blocked
        out: list[Task] = []
        if isinstance(req, Acquire):
            out.extend(h for h in req.lock.holders() if h is not task)
            if req.mode == READ and req.lock.kind == "rwsem" and req.lock.owner is None:
                # A queued reader waits behind a queued writer: fairness edges.
                out.extend(
                    t for t in self.live
                    if t is not task and isinstance(t.blocked, Acquire)
                    and t.blocked.lock is req.lock and t.blocked.mode == WRITE
                )
        if task.bkl_saved and self.bkl.owner is not None and self.bkl.owner is not task:
            out.append(self.bkl.owner)
        return out

    def _wait_cycle(self, start: Task) -> list[str]:
        """Names along a wait-for cycle through ``start``, or [] (depth-first, task-id order)."""
        path: list[Task] = [start]
        if not self._cycle_from(start, start, path, {start.tid}):
            return []
        names = []
        for t in path:
            req = t.blocked
            if isinstance(req, Acquire):
                what = req.lock.name
            elif isinstance(req, WaitEvent):
                what = req.what
            else:
                what = "BKL"
            names.append(f"{t.name} (waits for {what} at {t.label})")
        names.append(start.name)
        return names

    def _cycle_from(self, t: Task, start: Task, path: list[Task], seen: set[int]) -> bool:
        """Depth-first from ``t``: whether a wait-for path leads back to ``start`` (``path``
        then holds it).  A method, not a nested function: a closure that calls itself is a
        reference cycle, and would keep the whole run alive until the cyclic collector."""
        for h in self._waits_for(t):
            if h is start:
                return True
            if h.tid not in seen and h.blocked is not None:
                seen.add(h.tid)
                path.append(h)
                if self._cycle_from(h, start, path, seen):
                    return True
                path.pop()
        return False

    def _soft_lockup(self, task: Task) -> Violation:
        return Violation(
            "soft_lockup",
            f"{task.name} spun in one step past the watchdog's threshold without reaching a "
            f"scheduling point (a loop that never yields), from {task.label}",
            task=task.name,
        )

    def _deadlock_all(self) -> Violation:
        lines = []
        for t in self.live:
            req = t.blocked
            if isinstance(req, Acquire):
                holders = ", ".join(h.name for h in req.lock.holders()) or "nobody"
                lines.append(f"{t.name} waits for {req.lock.name} (held by {holders})")
            elif isinstance(req, WaitEvent):
                lines.append(f"{t.name} sleeps on {req.what}")
            else:
                lines.append(f"{t.name} waits for BKL")
        return Violation("deadlock", "no task can run: " + "; ".join(lines))

    def _check_livelock(self) -> None:
        # A livelock takes two: a lone task that retries is waiting for nobody (and one whose
        # partner already got through and exited is making progress).
        if len(self.live) >= 2 and all(t.retries >= self.livelock_retries for t in self.live):
            raise Violation(
                "livelock",
                f"every task has retried {self.livelock_retries}+ times without progress: "
                + ", ".join(f"{t.name} at {t.label}" for t in self.live),
            )

    def _check_cycle(self, task: Task) -> None:
        """A livelock found as a cycle, without waiting for ``livelock_retries`` rounds.

        At each retry of ``task``, the configuration (every live task's label, whether it is
        blocked, the locks it holds) and the shared state's version are recorded.  If they are
        the same as at ``task``'s previous retry and every other live task has retried in
        between, the round just run returned to where it began with nothing written: the
        schedule that repeats it forever is a valid one, and no task ever gets through.
        (``retry()`` marks the head of an unbounded retry loop: its round keeps no state of
        its own, which is what makes the repetition exact.)"""
        assert self.state_version is not None
        key = tuple(
            (t.tid, t.label, t.blocked is not None, tuple((id(lk), m) for lk, m in t.held))
            for t in self.live
        )
        version = self.state_version()
        retries = {t.tid: t.retries for t in self.live}
        last = self._at_retry.get(task.tid)
        self._at_retry[task.tid] = (key, version, retries)
        if last is None or len(self.live) < 2:
            return
        last_key, last_version, last_retries = last
        if key != last_key or version != last_version:
            return
        if all(t.retries > last_retries.get(t.tid, t.retries) for t in self.live):
            raise Violation(
                "livelock",
                "every task went round its retry loop and came back to the same state with "
                "nothing written (a schedule repeating that round never ends): "
                + ", ".join(f"{t.name} at {t.label}" for t in self.live),
            )

    def _annotate(self, v: Violation, task: Task) -> Violation:
        if v.step is None:
            v.step = self.step_no - 1 if self.step_no else 0
            v.task = task.name
            v.label = task.label
        return v

    # -------------------------------------------------------------- output
    def trace_sha256(self) -> str:
        """The digest of the trace's lines (``TraceStep.line``), one per step."""
        text = "".join([
            f"{step} {task} {label} {event} [{','.join(held)}]\n"
            for step, task, label, event, held in self._rows
        ])
        return hashlib.sha256(text.encode()).hexdigest()
