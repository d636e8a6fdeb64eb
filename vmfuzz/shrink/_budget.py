"""What a shrink may spend: program runs and a wall-clock deadline."""

from __future__ import annotations

import time

import attrs


@attrs.define
class Budget:
    """``runs`` program runs (deterministic) and a wall-clock deadline (a safety net for slow
    machines; a search cut short by it may end elsewhere)."""

    runs: int
    deadline: float  # time.monotonic() at which the shrink stops
    used: int = 0

    def take(self) -> bool:
        """Account for one run; False when the budget is spent."""
        if self.used >= self.runs or time.monotonic() >= self.deadline:
            return False
        self.used += 1
        return True

    def share(self, num: int, den: int) -> Budget:
        """A budget of ``num/den`` of what is left (runs and wall-clock time); the caller
        adds its ``used`` back."""
        now = time.monotonic()
        return Budget(
            max(0, (self.runs - self.used) * num // den),
            now + max(0.0, self.deadline - now) * num / den,
        )

    @property
    def spent(self) -> bool:
        return self.used >= self.runs or time.monotonic() >= self.deadline
