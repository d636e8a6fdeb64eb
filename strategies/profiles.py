"""Hypothesis settings profiles for vmfuzz: ``dev`` (seconds), ``ci`` (bounded, derandomized),
``soak`` (large budgets).

They are private settings objects: importing vmfuzz registers and changes no Hypothesis profile,
so other Hypothesis tests in the process keep their own settings (a ``ci`` registered here would
replace Hypothesis's own, which it loads itself when ``CI`` is set).  The pytest plugin
registers them as ``vmfuzz-dev`` / ``vmfuzz-ci`` / ``vmfuzz-soak`` for
``pytest --hypothesis-profile=vmfuzz-dev`` (:func:`register_profiles`: a conftest may call it too).
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, Phase, settings

# No "explain" phase: it re-runs the shrunk example hundreds of times to annotate lines, which
# costs far more than the shrink itself and tells nothing a race timeline doesn't.
_PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]

_COMMON: dict[str, Any] = {
    "deadline": None,
    "phases": _PHASES,
    "suppress_health_check": list(HealthCheck),
    "database": None,  # cold starts: the corpus, not Hypothesis' database, keeps failures
    "stateful_step_count": 30,
    # Stop generating at the first failure and shrink it.  With several bugs reported,
    # Hypothesis goes on generating for up to 10 s of wall time after the first: the examples
    # run, and which failure is shrunk, would depend on the machine's load.
    "report_multiple_bugs": False,
}

# Built on Hypothesis's own defaults, not on whichever profile is loaded (CI=1 loads its ``ci``):
# a campaign's settings do not depend on the environment.
_BASE = settings.get_profile("default")
_SETTINGS: dict[str, settings] = {
    "dev": settings(_BASE, max_examples=60, **_COMMON),
    "ci": settings(_BASE, max_examples=40, derandomize=True, **_COMMON),
    "soak": settings(_BASE, max_examples=10_000, **_COMMON),
}

PROFILES = tuple(_SETTINGS)
PREFIX = "vmfuzz-"  # registered names: vmfuzz-dev, vmfuzz-ci, vmfuzz-soak (no clash)


def profile(name: str) -> settings:
    """The settings object of profile ``name`` (``dev``, ``ci`` or ``soak``)."""
    if name not in _SETTINGS:
        raise ValueError(f"unknown profile {name!r}; one of {', '.join(PROFILES)}")
    return _SETTINGS[name]


def register_profiles() -> None:
    """Register the profiles with Hypothesis as ``vmfuzz-<name>`` (idempotent); loads none."""
    for name, s in _SETTINGS.items():
        settings.register_profile(PREFIX + name, s)
