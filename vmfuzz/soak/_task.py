"""One soak campaign as plain data in and plain data out: what a Dask worker runs.

:func:`run_campaign` takes a spec (the run's configuration, the campaign's seed, scheduler,
profile and step budget, the pool entries it starts from, the failures the run already has)
and returns what the campaign did: its counts, the interleaving pairs it met, the pool entries
it added, and its failure as a case in the corpus's JSON format.  Nothing is written where it
runs: the submitting machine saves everything into the run's state folder.  Given the same spec
it does the same work (a step budget, seeded chunks, the pool it is handed), so a campaign
resubmitted after its worker was lost does what the lost one would have done.

Campaigns of one process run one at a time (a lock): a Dask worker started with more threads
than one runs them in turn rather than side by side in one interpreter.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

from vmfuzz.soak._config import SoakConfig, validate
from vmfuzz.soak._plan import Profile, profile_named
from vmfuzz.soak._pool import (
    entries_json,
    loaded_from_entries,
    pool_digest,
    pool_pairs,
    start_pool,
)

_ONE_AT_A_TIME = threading.Lock()


def campaign_spec(
    config: SoakConfig, index: int, seed: int, scheduler: str, profile: str, *,
    steps: int, pool: list[dict[str, Any]] | None = None,
    known: list[list[str | None]] | None = None,
) -> dict[str, Any]:
    """The spec :func:`run_campaign` takes (JSON data): ``pool``, pool-file entries
    (:func:`vmfuzz.soak._pool.entries_for`); ``known``, the (check, label) of the failures
    the run has shrunk."""
    return {
        "config": config.to_json(), "index": index, "seed": seed, "scheduler": scheduler,
        "profile": profile, "steps": steps, "pool": pool or [],
        "known": known or [],
    }


def kernel_config(config: SoakConfig, profile: Profile) -> Any:
    """The ``vmfuzz.kernel.KernelConfig`` of a campaign: the run's bugs at the profile's scale."""
    from vmfuzz.kernel import KernelConfig

    c = KernelConfig(bugs=frozenset(config.bugs), checks=config.checks,
                     no_checks=config.no_checks)
    return c.scaled(profile.scale) if profile.scale != 1 else c


def known_test(known: list[list[str | None]]) -> Any:
    """The campaign's test of a failure already found (its check and label)."""
    keys = {(k[0], k[1]) for k in known if len(k) == 2}

    def test(failure: Any) -> bool:
        v = failure.violation
        return (v.check, v.label) in keys

    return test


def failure_data(result: Any) -> dict[str, Any]:
    """A campaign's failure as JSON data: the case (corpus format) and what the report shows."""
    from vmfuzz._scheduler import Outcome
    from vmfuzz.campaign import size_of_failure
    from vmfuzz.corpus import CorpusCase, outcome_label, to_json

    v = result.failure.violation
    case = to_json(CorpusCase(result.case, outcome_label(Outcome("violation", 0, v))))
    others = [{"case": to_json(CorpusCase(o.case, outcome_label(Outcome("violation", 0,
                                                                        o.violation)))),
               "check": o.violation.check, "message": o.violation.describe(),
               "label": o.violation.label, "shrunk": size_of_failure(o)}
              for o in getattr(result, "others", ())]
    return {
        "others": others,  # the shrunk program failing other checks on smaller schedules
        "case": case,
        "check": v.check,
        "message": v.describe(),
        "label": v.label,
        "first_failure_example": getattr(result.stats, "first_failure_example", None),
        "shrunk": result.shrunk(),
        "minimal_preemptions": result.minimal_preemptions,
        "shrink_passes": [p.to_json() for p in getattr(result, "shrink_passes", [])],
        "clock_hit": list(getattr(result, "clock_hit", [])),
        "known": bool(getattr(result, "known_hit", False)),
    }


def run_campaign(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the campaign ``spec`` describes (:func:`campaign_spec`); what it did, as data."""
    with _ONE_AT_A_TIME:
        return _run(spec)


def _run(spec: dict[str, Any]) -> dict[str, Any]:
    from vmfuzz.campaign import fuzz
    from vmfuzz.pool import Pool
    from vmfuzz.schedules import guided
    cpu0, t0 = time.thread_time(), time.monotonic()
    config = SoakConfig.from_json(spec["config"])
    validate(config)  # imports the model and loads the run's plugins in this process
    prof = profile_named(spec["profile"])
    kconfig = kernel_config(config, prof)
    ops = list(config.ops) if config.ops is not None else None
    pool = None
    seeded_steps = 0
    if guided(spec["scheduler"]):
        pool = Pool(kconfig, ops)
        seeded_steps = start_pool(pool, loaded_from_entries(spec["pool"], kconfig))
    result = fuzz(
        kconfig, scheduler=spec["scheduler"], seed_value=int(spec["seed"]), budget=None,
        step_budget=int(spec["steps"]), chunk=prof.chunk, ops=ops,
        base_profile=prof.base_profile, collect_labels=True, pool=pool,
        known=known_test(spec.get("known") or []),
    )
    st = result.stats
    out: dict[str, Any] = {
        "index": spec["index"], "seed": spec["seed"], "scheduler": spec["scheduler"],
        "profile": spec["profile"],
        "examples": result.examples, "steps": result.steps + seeded_steps,
        "pool_seed_steps": seeded_steps, "budget_hits": result.budget_hits,
        "ops": dict(getattr(st, "ops", None) or {}),
        "labels": dict(getattr(st, "labels", None) or {}),
        "found": result.found,
        "cut": not result.found and result.steps < int(spec["steps"]),
        "seconds": round(time.monotonic() - t0, 3),
        "cpu_seconds": round(time.thread_time() - cpu0, 3),
        "pool_in": len(spec["pool"]), "pool_in_digest": pool_digest(spec["pool"]),
        "pool_out": entries_json(pool.unsaved or []) if pool is not None else [],
        "pairs": pool_pairs(pool) if pool is not None else [],
        "host": socket.gethostname(), "pid": os.getpid(),
        "failure": None,
    }
    if result.found and result.failure is not None and result.case is not None:
        out["failure"] = failure_data(result)
    return out
