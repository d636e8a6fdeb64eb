"""Hypothesis strategies and the rule-based state machine (installed as ``vmfuzz.strategies``).

``machine_for(config, scheduler=...)`` gives a configured :class:`KernelMachine`; profiles
``dev`` / ``ci`` / ``soak`` are registered on import.  ``_pool`` is the coverage-guided program
pool a campaign mutates between chunks of examples.
"""

from vmfuzz.strategies.machine import SCHEDULERS, Failure, KernelMachine, Stats, machine_for
from vmfuzz.strategies.profiles import PROFILES, profile

__all__ = ["PROFILES", "SCHEDULERS", "Failure", "KernelMachine", "Stats", "machine_for", "profile"]
