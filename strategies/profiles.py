"""Hypothesis settings profiles for vmfuzz: ``dev`` (seconds), ``ci`` (bounded, derandomized),
``soak`` (large budgets).  Load one with ``hypothesis.settings.load_profile(name)``."""

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
}

settings.register_profile("dev", max_examples=60, **_COMMON)
settings.register_profile("ci", max_examples=40, derandomize=True, **_COMMON)
settings.register_profile("soak", max_examples=10_000, **_COMMON)

PROFILES = ("dev", "ci", "soak")


def profile(name: str) -> settings:
    """The registered settings object of profile ``name``."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; one of {', '.join(PROFILES)}")
    return settings.get_profile(name)
