"""Kernel configuration: model sizes and the historical bug switches that are turned on."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs


def _names(value: Iterable[str]) -> frozenset[str]:
    """The converter of the name-set fields (``frozenset``, typed for mypy's attrs plugin)."""
    return frozenset(value)


def _positive(instance: Any, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be >= 1, got {value}")


@attrs.frozen
class KernelConfig:
    """Sizes (small by default so races collide often) and ``bugs``, the enabled switches.

    The fixed kernel is the default: with ``bugs`` empty every path is the corrected one.
    """

    nr_mms: int = attrs.field(default=3, validator=_positive)
    pages_per_mm: int = attrs.field(default=16, validator=_positive)
    nr_frames: int = attrs.field(default=12, validator=_positive)
    nr_swap: int = attrs.field(default=12, validator=_positive)
    bugs: frozenset[str] = attrs.field(default=frozenset(), converter=_names)
    # Each initial process boots with one anonymous read/write vma over its first boot_pages
    # pages (no page faulted in yet): a running system, not an empty one, so generated
    # operations act on memory from the start.  0 = empty address spaces.
    boot_pages: int = attrs.field(default=8)
    # World features the run starts from (see vmfuzz.kernel.boot: resident and swapped pages,
    # a forked child, a split vma, a synchronous swap device); empty = bare boot vmas.
    world: frozenset[str] = attrs.field(default=frozenset(), converter=_names)
    # The checks chosen for the run (``--check`` / ``--no-check``): ``checks`` None runs every
    # registered check, else only those named; ``no_checks`` are turned off.  Names only: the
    # invariants layer and the scheduler read them (``check_on``).
    checks: frozenset[str] | None = attrs.field(
        default=None, converter=attrs.converters.optional(_names)
    )
    no_checks: frozenset[str] = attrs.field(default=frozenset(), converter=_names)

    @world.validator
    def _check_world(
        self, attribute: attrs.Attribute[frozenset[str]], value: frozenset[str]
    ) -> None:
        from vmfuzz.kernel.boot import WORLD_FEATURES

        unknown = sorted(value - set(WORLD_FEATURES))
        if unknown:
            raise ValueError(
                f"unknown world feature(s) {', '.join(unknown)} "
                f"(known: {', '.join(WORLD_FEATURES)})"
            )

    @boot_pages.validator
    def _check_boot(self, attribute: attrs.Attribute[int], value: int) -> None:
        if not 0 <= value <= self.pages_per_mm:
            raise ValueError(f"boot_pages must be in [0, pages_per_mm], got {value}")

    def check_on(self, name: str) -> bool:
        """Whether check ``name`` runs under this config (all do unless checks were chosen)."""
        return name not in self.no_checks and (self.checks is None or name in self.checks)

    @property
    def checks_chosen(self) -> bool:
        """Some check was chosen on or off (the case then records its ``checks`` field)."""
        return self.checks is not None or bool(self.no_checks)

    def checks_json(self) -> dict[str, list[str]]:
        """The ``checks`` field of a case's config: ``{"only": [...], "off": [...]}``, each
        key present only when used."""
        out: dict[str, list[str]] = {}
        if self.checks is not None:
            out["only"] = sorted(self.checks)
        if self.no_checks:
            out["off"] = sorted(self.no_checks)
        return out

    def scaled(self, factor: int) -> KernelConfig:
        """The same kernel with every size multiplied by ``factor`` (for scaling benchmarks)."""
        return attrs.evolve(
            self,
            nr_mms=self.nr_mms * factor,
            pages_per_mm=self.pages_per_mm * factor,
            nr_frames=self.nr_frames * factor,
            nr_swap=self.nr_swap * factor,
            boot_pages=self.boot_pages * factor,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "nr_mms": self.nr_mms,
            "pages_per_mm": self.pages_per_mm,
            "nr_frames": self.nr_frames,
            "nr_swap": self.nr_swap,
            "bugs": sorted(self.bugs),
            "boot_pages": self.boot_pages,
            "world": sorted(self.world),
            **({"checks": self.checks_json()} if self.checks_chosen else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KernelConfig:
        data = dict(data)
        chosen = data.pop("checks", None) or {}
        return cls(**data, checks=chosen.get("only"), no_checks=chosen.get("off", ()))
