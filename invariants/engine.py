"""Locking and liveness checks built into the engine, listed here so every check has one name.

These are raised by the scheduler (:mod:`vmfuzz._scheduler`) and lockdep (:mod:`vmfuzz.lockdep`)
themselves, as the same :class:`vmfuzz.Violation` type; the monitor runs nothing for them.

A note on liveness: running out of the case's step budget is *not* a violation (it is the
outcome ``budget``, so shrinking never drifts towards slow cases).  A livelock is reported only
as "step budget without progress": every live task (two or more: a lone retrier waits for
nobody) has gone round its trylock/back-off loop (``yield sched.retry(label)``)
``livelock_retries`` times in a row without doing anything else.
"""

from __future__ import annotations

from vmfuzz.invariants._registry import register

FAMILY = "engine"

register(
    "deadlock",
    FAMILY,
    "no wait-for cycle among tasks, and never every live task blocked",
    "a real hang: the hung-task detector / kernel/lockdep.c on the actual cycle",
)
register(
    "lock_order_inversion",
    FAMILY,
    "lock classes are taken in one global order across the whole campaign (both chains shown)",
    "kernel/lockdep.c check_noncircular(): 'possible circular locking dependency detected'",
)
register(
    "sleep_in_atomic",
    FAMILY,
    "no task sleeps (sleeping lock, wait_event) while holding a spinlock",
    "kernel/sched.c __might_sleep(): 'BUG: sleeping function called from invalid context'",
)
register(
    "unlock_not_held",
    FAMILY,
    "a task releases only locks it holds",
    "kernel/lockdep.c print_unlock_imbalance_bug(): 'bad unlock balance detected'",
)
register(
    "lock_not_held",
    FAMILY,
    "a path that requires a lock (lockset assertion) runs holding it",
    "include/linux/lockdep.h lockdep_assert_held(); mm: BUG_ON(!PageLocked(page)) and friends",
)
register(
    "lock_held_at_exit",
    FAMILY,
    "a task finishes its operation holding no lock",
    "kernel/lockdep.c debug_check_no_locks_held(): 'lock held when returning to user space'",
)
register(
    "soft_lockup",
    FAMILY,
    "every step reaches a scheduling point: no loop spins inside one step (CPU-time watchdog)",
    "the soft-lockup watchdog (kernel/watchdog.c): 'BUG: soft lockup - CPU#N stuck for 22s!'",
)
register(
    "livelock",
    FAMILY,
    "step budget without progress: two or more tasks may not all spin in retry loops forever",
    "the soft-lockup watchdog (kernel/softlockup.c): CPUs spinning without progress",
)
