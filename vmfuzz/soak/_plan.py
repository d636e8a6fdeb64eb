"""The campaign plan: which seed, scheduler and profile each campaign of a soak run gets.

Every run has an identity ``R`` (``--seed``, or drawn when the run is created, kept in
``run.json``).  Campaign ``i`` of worker slot ``w`` has the seed
``R * RUN_STRIDE + w * SEED_STRIDE + i``: no two campaigns of a run share a seed, and two runs
with different identities (two machines, two state folders) share none either.  Slots below
``CLUSTER_SLOT`` are local worker processes; ``CLUSTER_SLOT`` numbers the campaigns a run
submits to a Dask cluster.  A campaign is reproducible from its recorded (seed, scheduler,
profile): see :func:`vmfuzz.soak.rerun_campaign`.
"""

from __future__ import annotations

import attrs

from vmfuzz.schedules import SOAK_SCHEDULERS

SEED_STRIDE = 10_000_000  # seeds of slot w: w * SEED_STRIDE + 0, 1, 2 ...
CLUSTER_SLOT = 256  # the slot of a run's Dask campaigns (local slots: 0 .. MAX_WORKERS - 1)
RUN_STRIDE = 512 * SEED_STRIDE  # seeds of run R: R * RUN_STRIDE + (slot, index) as above
MAX_RUN_ID = 2**30 - 1  # run identities are 0 .. MAX_RUN_ID (seeds stay below 2**63)
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
    slot: int, index: int, schedulers: tuple[str, ...] = SCHEDULERS, run_id: int = 0
) -> tuple[int, str, Profile]:
    """Seed, scheduler and profile of campaign ``index`` of worker slot ``slot`` of the run
    ``run_id``.

    Schedulers rotate fastest, profiles every ``len(schedulers)`` campaigns; slots start at
    different points of the rotation so that at any time the workers run different kinds of
    campaign.
    """
    if not (0 <= slot <= CLUSTER_SLOT and 0 <= index < SEED_STRIDE and 0 <= run_id <= MAX_RUN_ID):
        raise ValueError(f"no campaign {index} of slot {slot} in run {run_id}")
    seed = run_id * RUN_STRIDE + slot * SEED_STRIDE + index
    turn = index + slot
    n = len(schedulers)
    return seed, schedulers[turn % n], PROFILES[(turn // n) % len(PROFILES)]


def draw_run_id() -> int:
    """A fresh run identity (from ``os.urandom``): two drawn runs share one with odds of about
    one in a billion; ``--seed`` gives each run its own for certain."""
    import secrets

    return secrets.randbelow(MAX_RUN_ID + 1)


def seed_owner(seed: int) -> tuple[int, int, int]:
    """(run identity, slot, index) of a campaign seed: where it came from."""
    run_id, rest = divmod(seed, RUN_STRIDE)
    slot, index = divmod(rest, SEED_STRIDE)
    return run_id, slot, index
