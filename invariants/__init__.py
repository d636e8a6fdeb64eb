"""Invariant modules, one family per module (installed as ``vmfuzz.invariants``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vmfuzz.kernel import Kernel


def install(k: Kernel) -> None:
    """Run every invariant check after every scheduler step of ``k`` (being written)."""
