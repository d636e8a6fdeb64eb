"""The soft-lockup watchdog: a model step that never reaches a scheduling point.

A kernel path is a generator that yields at every scheduling point (a lock, a sleep, a
``cond_resched``).  A loop that never yields -- a retry that makes no progress, a walk that
never advances -- runs forever inside one ``gen.send``: in the kernel, a CPU spinning with
preemption off until the watchdog prints "BUG: soft lockup - CPU#N stuck for 22s!"
(``kernel/watchdog.c``).  Without a watchdog the fuzzer would hang with it and lose the finding.

One daemon thread per process watches every thread that steps a :class:`Scheduler`: when one
``gen.send`` has used more than :data:`SOFT_LOCKUP_CPU` seconds of that thread's own CPU time
(``pthread_getcpuclockid``: CPU time, so a loaded machine does not trip it), it raises
:class:`SoftLockup` in that thread (``PyThreadState_SetAsyncExc``), and the scheduler turns it
into the ``soft_lockup`` violation at the step's label.  A model step takes tens of
microseconds, five orders of magnitude below the threshold, so the outcome is the same in any
process; after the first lockup a process waits :data:`SOFT_LOCKUP_CPU_AGAIN` only (replaying
and shrinking a spinning case pays the threshold once per run).
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
import weakref
from typing import Protocol

SOFT_LOCKUP_CPU = 2.0  # CPU seconds of one step before the first lockup of a process
SOFT_LOCKUP_CPU_AGAIN = 0.1  # ... and after it (a shrink replays the spin many times)
POLL = 0.05  # wall seconds between the watchdog's looks


class SoftLockup(Exception):
    """Raised asynchronously inside a step that spun past the threshold."""


class Stepping(Protocol):
    """What the watchdog reads of a scheduler: a counter bumped by every ``gen.send`` begun,
    and whether one is running now."""

    sends: int
    in_send: bool


# every live scheduler -> the thread that steps it (a thread may hold several: a run's and a
# replay's; only the one inside a send is looked at)
_watched: weakref.WeakKeyDictionary[Stepping, int] = weakref.WeakKeyDictionary()
_lock = threading.Lock()
_thread: threading.Thread | None = None
_fired = False  # a lockup was seen in this process


def watch(sched: Stepping) -> None:
    """Watch ``sched``, stepped by the calling thread, for as long as it lives."""
    global _thread
    _watched[sched] = threading.get_ident()
    if _thread is None:
        with _lock:
            if _thread is None:
                _thread = threading.Thread(target=_run, name="vmfuzz-watchdog", daemon=True)
                _thread.start()


def threshold() -> float:
    """CPU seconds one step may take in this process before it is a soft lockup."""
    return SOFT_LOCKUP_CPU_AGAIN if _fired else SOFT_LOCKUP_CPU


def _cpu(ident: int) -> float | None:
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident))
    except (OSError, AttributeError, OverflowError):
        return None  # the thread ended (or no per-thread clock here)


def _run() -> None:
    seen: dict[int, tuple[int, int, float]] = {}  # ident -> (sched id, sends, CPU then)
    while True:
        time.sleep(POLL)
        try:
            items = list(_watched.items())
        except RuntimeError:  # changed while copied: look again next time
            continue
        busy = {ident: sched for sched, ident in items if sched.in_send}
        for ident in list(seen):
            if ident not in busy:
                del seen[ident]
        for ident, sched in busy.items():
            now = _cpu(ident)
            if now is None:
                continue
            first = seen.get(ident)
            if first is None or first[:2] != (id(sched), sched.sends):
                seen[ident] = (id(sched), sched.sends, now)
                continue
            if now - first[2] > threshold() and sched.in_send and sched.sends == first[1]:
                _fire(ident)
                del seen[ident]
        del items, busy


def _fire(ident: int) -> None:
    global _fired
    _fired = True
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(SoftLockup))


def _after_fork() -> None:
    global _thread
    _thread = None
    _watched.clear()


os.register_at_fork(after_in_child=_after_fork)
