"""vmfuzz: property-based fuzzing of the Linux VM subsystem's concurrency.

Fuzzing your own property (docs/api.md):

* :func:`check` registers a check run after every scheduler step (a :class:`CheckView` is
  what its hooks see; :data:`DEFER` excuses a legitimately half-done state);
* :func:`fuzz_test` makes a pytest test that runs a campaign and fails with the race diagram;
* :func:`fuzz` runs one campaign (:func:`vmfuzz.campaign.fuzz`), :class:`KernelConfig` says
  which kernel (sizes, historical bugs switched on).

The engine API is small too: a :class:`Scheduler` runs kernel paths (generators) one step at a
time under a schedule source from :mod:`vmfuzz.schedules`; every check reports a
:class:`Violation`.

The fuzzing API is imported on first use (``vmfuzz.fuzz_test`` ...), so ``import vmfuzz`` loads
neither Hypothesis nor the kernel model.
"""

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from vmfuzz.api import DEFER, CheckView, check, fuzz_test
    from vmfuzz.campaign import CampaignResult, fuzz
    from vmfuzz.kernel import KernelConfig

__version__ = "0.1.0"

# Public names loaded on first use: name -> module.
_LAZY = {
    "DEFER": "vmfuzz.api",
    "CheckView": "vmfuzz.api",
    "check": "vmfuzz.api",
    "fuzz_test": "vmfuzz.api",
    "fuzz": "vmfuzz.campaign",
    "CampaignResult": "vmfuzz.campaign",
    "KernelConfig": "vmfuzz.kernel",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vmfuzz' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "DEFER",
    "READ",
    "WRITE",
    "BigKernelLock",
    "CampaignResult",
    "CheckView",
    "KernelConfig",
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
    "check",
    "fuzz",
    "fuzz_test",
]
