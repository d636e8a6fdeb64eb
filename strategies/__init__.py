"""Hypothesis strategies and the rule-based state machine (installed as ``vmfuzz.strategies``).

``machine_for(config, scheduler=...)`` gives a configured :class:`KernelMachine`; profiles
``dev`` / ``ci`` / ``soak`` are registered on import.  The coverage-guided program
pool (:mod:`vmfuzz.pool`) is engine side.
"""

from vmfuzz.strategies.machine import SCHEDULERS, KernelMachine, machine_for
from vmfuzz.strategies.profiles import PROFILES, profile

from vmfuzz.context import Stats
from vmfuzz.failure import Failure

__all__ = ["PROFILES", "SCHEDULERS", "Failure", "KernelMachine", "Stats", "machine_for", "profile"]
