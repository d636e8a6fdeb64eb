"""Kernel configuration: model sizes and the historical bug switches that are turned on."""

from __future__ import annotations

from typing import Any

import attrs


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
    bugs: frozenset[str] = attrs.field(default=frozenset(), converter=frozenset)

    def scaled(self, factor: int) -> KernelConfig:
        """The same kernel with every size multiplied by ``factor`` (for scaling benchmarks)."""
        return attrs.evolve(
            self,
            nr_mms=self.nr_mms * factor,
            pages_per_mm=self.pages_per_mm * factor,
            nr_frames=self.nr_frames * factor,
            nr_swap=self.nr_swap * factor,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "nr_mms": self.nr_mms,
            "pages_per_mm": self.pages_per_mm,
            "nr_frames": self.nr_frames,
            "nr_swap": self.nr_swap,
            "bugs": sorted(self.bugs),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KernelConfig:
        return cls(**data)
