"""Hypothesis strategies and the rule-based state machine (installed as ``vmfuzz.strategies``).

``machine_for(config, scheduler=...)`` gives a configured :class:`KernelMachine`;
``profile("dev" | "ci" | "soak")`` the settings campaigns build on (private: importing this
registers no Hypothesis profile).  The coverage-guided program pool (:mod:`vmfuzz.pool`) is
engine side.
"""

from vmfuzz.strategies.machine import SCHEDULERS, KernelMachine, machine_for
from vmfuzz.strategies.profiles import PROFILES, profile

__all__ = ["PROFILES", "SCHEDULERS", "KernelMachine", "machine_for", "profile"]
