"""vmfuzz: property-based fuzzing of the Linux VM subsystem's concurrency.

The public engine API is small: a :class:`Scheduler` runs kernel paths (generators) one step at
a time under a schedule source from :mod:`vmfuzz.schedules`; every check reports a
:class:`Violation`.
"""

from vmfuzz._locks import READ, WRITE, BigKernelLock, Mutex, PageLock, RWSemaphore, Spinlock
from vmfuzz._scheduler import (
    Outcome,
    ScheduleDiverged,
    Scheduler,
    ScheduleSource,
    StepBudgetExceeded,
    Task,
    TraceStep,
)
from vmfuzz.lockdep import LockDep
from vmfuzz.violation import Violation

__version__ = "0.1.0"

__all__ = [
    "READ",
    "WRITE",
    "BigKernelLock",
    "LockDep",
    "Mutex",
    "Outcome",
    "PageLock",
    "RWSemaphore",
    "ScheduleDiverged",
    "ScheduleSource",
    "Scheduler",
    "Spinlock",
    "StepBudgetExceeded",
    "Task",
    "TraceStep",
    "Violation",
    "__version__",
]
