"""The campaign plan: which seed, scheduler and profile each campaign of a soak run gets.

Campaign ``i`` of worker slot ``w`` has the seed ``w * SEED_STRIDE + i``, so no two campaigns
of a run share a seed.  A campaign is reproducible from its recorded (seed, scheduler, profile).
"""

from __future__ import annotations

import attrs

from vmfuzz.schedules import SOAK_SCHEDULERS

SEED_STRIDE = 10_000_000  # seeds of slot w: w * SEED_STRIDE + 0, 1, 2 ...
SCHEDULERS = SOAK_SCHEDULERS  # the modes table's rows a soak rotates through, in order


@attrs.frozen
class Profile:
    """A campaign shape: the Hypothesis settings profile, model size factor, examples per run.

    ``default`` is exactly what ``vmfuzz fuzz --seed S --scheduler X`` runs.
    """

    name: str
    base_profile: str
    scale: int
    chunk: int


PROFILES = (
    Profile("default", "dev", 1, 50),
    Profile("long", "soak", 1, 100),
    Profile("wide", "soak", 2, 50),
)
_PROFILE_BY_NAME = {p.name: p for p in PROFILES}


def profile_named(name: str) -> Profile:
    """The profile called ``name`` (``KeyError`` for an unknown one)."""
    return _PROFILE_BY_NAME[name]


def campaign_plan(
    slot: int, index: int, schedulers: tuple[str, ...] = SCHEDULERS
) -> tuple[int, str, Profile]:
    """Seed, scheduler and profile of campaign ``index`` of worker slot ``slot``.

    Schedulers rotate fastest, profiles every ``len(schedulers)`` campaigns; slots start at
    different points of the rotation so that at any time the workers run different kinds of
    campaign.
    """
    seed = slot * SEED_STRIDE + index
    turn = index + slot
    n = len(schedulers)
    return seed, schedulers[turn % n], PROFILES[(turn // n) % len(PROFILES)]
