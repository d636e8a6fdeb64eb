"""A campaign's budget as people type it: model steps (``500ksteps``, ``2Msteps``), CPU time
(``90cpu``, ``2mcpu``) or wall time (``60s``, ``10m``), for every command that takes one
(``vmfuzz fuzz``, ``vmfuzz zoo``, ``vmfuzz bench``, ``vmfuzz soak``).

Steps are work: the same seed and step budget run the same campaign on an idle and on a
loaded machine.  CPU time is nearly so (it does not count the time other processes take the
core, but a busy machine's caches still slow each step a little); wall time is not at all.
Kept apart from the commands so that each imports only this, not another command's module.
"""

from __future__ import annotations

import re

import attrs

from vmfuzz._duration import DurationError, parse_duration

# The work a 60-second campaign of the fixed kernel does on one core: steps per CPU-second of
# `vmfuzz fuzz --seed S --max-examples 300 --workers 1` (campaign.fuzz under
# time.process_time, search only), measured on the shared two-core machine under a load of
# about 3: 27,537 (seed 0: 739,204 steps in 26.8 CPU-s), 22,070 (seed 1: 593,270 in 26.9) and
# 23,363 (seed 2: 480,239 in 20.6); median 23.4k, so 60 CPU-s are about 1.4M steps (an idle
# core steps a little faster per CPU-second: caches are its own).  A faster model does more
# steps per second; a step budget stays the same work, which is the point.
STEPS_PER_CPU_SECOND = 23_400
STANDARD_STEPS = 1_500_000
MAX_STEPS = 10**12  # more than a year of one core: a typo, not a plan

_STEPS = re.compile(r"(\d+(?:\.\d+)?)([kmg]?)steps?")
_SCALE = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}
KINDS = ("steps", "cpu", "wall")


class BudgetError(DurationError):
    """A budget that cannot be used: ``str(e)`` is one line for the user."""


@attrs.frozen
class CampaignBudget:
    """How long a campaign searches: ``amount`` model steps (``kind`` "steps"), CPU seconds
    ("cpu") or seconds of wall time ("wall")."""

    kind: str = attrs.field(validator=attrs.validators.in_(KINDS))
    amount: float

    @property
    def steps(self) -> int | None:
        return int(self.amount) if self.kind == "steps" else None

    @property
    def cpu_seconds(self) -> float | None:
        return self.amount if self.kind == "cpu" else None

    @property
    def wall_seconds(self) -> float | None:
        return self.amount if self.kind == "wall" else None

    @property
    def deterministic(self) -> bool:
        """The same seed gives the same campaign under this budget on any machine."""
        return self.kind == "steps"

    def describe(self) -> str:
        """``"1,000,000 steps"``, ``"90 CPU-s"``, ``"60 s"``."""
        if self.kind == "steps":
            return f"{int(self.amount):,} step" + ("" if self.amount == 1 else "s")
        unit = " CPU-s" if self.kind == "cpu" else " s"
        return f"{self.amount:g}{unit}"

    def text(self) -> str:
        """The budget as an option value :func:`parse_budget` reads back (``1.5Msteps``,
        ``1234steps``, ``90cpu``, ``60``)."""
        if self.kind == "steps":
            n = int(self.amount)
            for unit in ("G", "M", "k"):
                short = f"{n / _SCALE[unit.lower()]:g}"
                if "e" not in short and round(float(short) * _SCALE[unit.lower()]) == n \
                        and float(short) >= 1 and len(short.replace(".", "")) <= 3:
                    return f"{short}{unit}steps"
            return f"{n}steps"
        return f"{self.amount:g}" + ("cpu" if self.kind == "cpu" else "")

    def to_json(self) -> dict[str, float | int | None]:
        return {"steps": self.steps, "cpu_seconds": self.cpu_seconds,
                "wall_seconds": self.wall_seconds}


STANDARD = CampaignBudget("steps", STANDARD_STEPS)

HELP = ("model steps (500ksteps, 2Msteps, 1000000steps: the same campaign on any machine), "
        "CPU time (90cpu, 2mcpu) or wall time (60s, 10m, 1h30m or seconds)")


def parse_budget(text: str) -> CampaignBudget:
    """The budget in ``text``: ``<n>[k|M|G]steps``, a duration followed by ``cpu`` (CPU
    seconds) or a duration (:func:`vmfuzz._duration.parse_duration`, wall seconds).  Raises
    :class:`BudgetError` (one line) for anything else, for zero and for absurd sizes."""
    shown = text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"
    # No commas: "1,5Msteps" must not be read as 15M.
    s = text.strip().lower().replace(" ", "").replace("_", "")
    m = _STEPS.fullmatch(s)
    if m is not None:
        if len(m.group(1)) > 16:  # beyond MAX_STEPS in any unit (and a float's precision)
            raise BudgetError(f"the step budget must be at most {MAX_STEPS:.0e} steps, "
                              f"not {shown!r}")
        steps = round(float(m.group(1)) * _SCALE[m.group(2)])
        if steps < 1:
            raise BudgetError(f"the step budget must be at least 1 step, not {shown!r}")
        if steps > MAX_STEPS:
            raise BudgetError(f"the step budget must be at most {MAX_STEPS:.0e} steps, "
                              f"not {shown!r}")
        return CampaignBudget("steps", steps)
    kind = "wall"
    if s.endswith("cpu"):
        kind, s = "cpu", s[:-3]
    try:
        return CampaignBudget(kind, parse_duration(s))
    except DurationError as e:
        if "must be" in str(e):
            raise BudgetError(str(e).replace(repr(s), repr(shown))) from None
        raise BudgetError(f"bad budget {shown!r}: use {HELP}") from None
