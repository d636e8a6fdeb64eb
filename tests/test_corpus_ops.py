"""Operations and a bug switch used only by the corpus tests (all named ``test_*``).

They make small races whose outcome does not depend on the kernel model being written, so the
corpus, replay, timeline and plugin can be tested on their own.  ``registered()`` adds them to
the operation/bug registries for the duration of a test module and removes them afterwards
(other test modules, e.g. the fuzzer's, never see them); ``register()`` adds them for good (in
subprocesses).  No tests live here.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

from vmfuzz.invariants import CHECKS
from vmfuzz.invariants._registry import register as register_check

from vmfuzz import Violation
from vmfuzz.case import Case, OpCall, Schedule, TaskSpec
from vmfuzz.kernel import BUGS, OPS, Kernel, KernelConfig
from vmfuzz.kernel.bugs import register as register_bug
from vmfuzz.kernel.ops import operation

RACY = "test_racy_counter"
LOST_UPDATE = "test_lost_update"


def _counter_incr(k: Kernel) -> Generator[Any, None, None]:
    """Read-modify-write of a shared counter under mmlist_lock (no lock with the bug on)."""
    locked = not k.bug(RACY)
    if locked:
        yield k.sched.spin_lock(k.mmlist_lock)
    v = k.stats.get("test_counter", 0)
    yield "test_counter_incr:after_read"
    k.stats["test_counter"] = v + 1
    k.count("test_counter_incs")
    if k.stats["test_counter"] != k.stats["test_counter_incs"]:
        raise Violation(
            LOST_UPDATE,
            f"counter is {k.stats['test_counter']} after {k.stats['test_counter_incs']} "
            "increments",
        )
    yield "test_counter_incr:after_write"
    if locked:
        k.sched.spin_unlock(k.mmlist_lock)


def _spin(k: Kernel, count: int) -> Generator[Any, None, None]:
    """Yield ``count`` times at the same label (loops, #N)."""
    for _ in range(max(0, count)):
        yield "test_spin:loop"
    yield "test_spin:done"


def _hold(k: Kernel, count: int) -> Generator[Any, None, None]:
    """Hold mmlist_lock across ``count`` yields."""
    yield k.sched.spin_lock(k.mmlist_lock)
    for _ in range(max(0, count)):
        yield "test_hold:held"
    k.sched.spin_unlock(k.mmlist_lock)
    yield "test_hold:released"


def _crash(k: Kernel, flag: int) -> Generator[Any, None, None]:
    """A broken model path: raises a plain exception when ``flag`` is set."""
    yield "test_crash:before"
    if flag:
        raise KeyError("broken model")
    yield "test_crash:after"


def _leak(k: Kernel) -> Generator[Any, None, None]:
    """Take mmlist_lock and never release it (lock_held_at_exit, bug switch or not)."""
    yield k.sched.spin_lock(k.mmlist_lock)
    yield "test_leak:locked"


_OPS = {
    "test_leak": (_leak, {}),
    "test_counter_incr": (_counter_incr, {}),
    "test_spin": (_spin, {"count": "count"}),
    "test_hold": (_hold, {"count": "count"}),
    "test_crash": (_crash, {"flag": "flag"}),
}


def register() -> list[str]:
    """Register whatever is missing; returns what this call added."""
    added = []
    for name, (fn, params) in _OPS.items():
        if name not in OPS:
            operation(name, **params)(fn)
            added.append(name)
    if RACY not in BUGS:
        register_bug(RACY, "tests", "counter increment without mmlist_lock", "test_lost_update")
        added.append(RACY)
    if LOST_UPDATE not in CHECKS:
        register_check(LOST_UPDATE, "engine", "the test counter lost an increment", "tests")
        added.append(LOST_UPDATE)
    return added


@contextlib.contextmanager
def registered() -> Iterator[None]:
    added = register()
    try:
        yield
    finally:
        for name in added:
            OPS.pop(name, None)
            BUGS.pop(name, None)
            CHECKS.pop(name, None)


def counter_case(bug: bool = True, schedule: Schedule | None = None, extra: int = 0) -> Case:
    """Two tasks incrementing the counter; T1 first spins ``extra`` steps (a long solo prefix)."""
    ops1 = ((OpCall("test_spin", {"count": extra}),) if extra else ()) + (
        OpCall("test_counter_incr"),
    )
    return Case(
        KernelConfig(bugs=frozenset({RACY}) if bug else frozenset()),
        (TaskSpec("T1", ops1), TaskSpec("T2", (OpCall("test_counter_incr"),))),
        schedule or Schedule(),
    )


# The lost update: T1 reads, T2 runs to the end, T1 writes its stale value... T2 writes first
# in this order, so the check fires in T1's write step.
RACE_STEPS = (
    "run T1 until test_counter_incr:after_read",
    "run T2 until exit",
    "run T1 to completion",
)


def race_json(expected: str = "test_lost_update", **over: Any) -> dict[str, Any]:
    """A hand-written case file (as decoded JSON): the lost update, drawn as explicit steps."""
    data: dict[str, Any] = {
        "format": "vmfuzz-case",
        "version": 1,
        "description": "lost update of the test counter",
        "config": {"bugs": [RACY]},
        "tasks": [
            {"name": "T1", "ops": [{"op": "test_counter_incr"}]},
            {"name": "T2", "ops": [{"op": "test_counter_incr"}]},
        ],
        "schedule": {"explicit": list(RACE_STEPS)},
        "expected": expected,
    }
    data.update(over)
    return data


TESTS_DIR = Path(__file__).resolve().parent


def run_vmfuzz(
    *args: str,
    hashseed: str | None = None,
    report_hypothesis: bool = False,
    importtime: bool = False,
) -> subprocess.CompletedProcess[str]:
    """``vmfuzz ARGS`` in a fresh interpreter that has these test operations registered.

    With ``report_hypothesis``, the last stderr line says whether Hypothesis got imported.
    """
    code = (
        f"import sys; sys.path.insert(0, {str(TESTS_DIR)!r}); import test_corpus_ops; "
        "test_corpus_ops.register(); from vmfuzz.cli import main; rc = main(sys.argv[1:]); "
    )
    if report_hypothesis:
        code += "sys.stderr.write(f'hypothesis imported: {\"hypothesis\" in sys.modules}\\n'); "
    code += "sys.exit(rc)"
    env = dict(os.environ)
    if hashseed is not None:
        env["PYTHONHASHSEED"] = hashseed
    return subprocess.run(
        [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
