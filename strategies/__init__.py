"""Hypothesis strategies and the rule-based state machine (installed as ``vmfuzz.strategies``).

``machine_for(config, scheduler=...)`` gives a configured :class:`KernelMachine`; profiles
``dev`` / ``ci`` / ``soak`` are registered on import.  The coverage-guided program
pool (:mod:`vmfuzz.pool`) is engine side.
"""

from vmfuzz.strategies.machine import SCHEDULERS, KernelMachine, machine_for
from vmfuzz.strategies.profiles import PROFILES, profile

__all__ = ["PROFILES", "SCHEDULERS", "KernelMachine", "machine_for", "profile"]
