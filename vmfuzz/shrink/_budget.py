"""What a shrink may spend: program runs, and a CPU-time safety net."""

from __future__ import annotations

import time

import attrs


@attrs.define
class Budget:
    """``runs`` program runs: the limit, so that a shrink ends at the same case on an idle
    and on a loaded machine.  ``deadline`` (``time.process_time()``: this process's CPU time,
    which other processes do not use up) is a generous safety net for a pathologically slow
    machine; ``clock_hit`` says it stopped the shrink (then the
    case may differ from another machine's, and the caller reports it)."""

    runs: int
    deadline: float  # time.process_time() at which the shrink stops, runs left or not
    used: int = 0
    clock_hit: bool = False

    def _past_deadline(self) -> bool:
        if time.process_time() >= self.deadline:
            self.clock_hit = True
            return True
        return False

    def take(self) -> bool:
        """Account for one run; False when the budget is spent."""
        if self.used >= self.runs or self._past_deadline():
            return False
        self.used += 1
        return True

    def share(self, num: int, den: int) -> Budget:
        """A budget of ``num/den`` of the runs left, under the same safety net; the caller
        adds its ``used`` and ``clock_hit`` back (:meth:`absorb`)."""
        return Budget(max(0, (self.runs - self.used) * num // den), self.deadline)

    def absorb(self, sub: Budget) -> None:
        """Account for what a :meth:`share` of this budget spent."""
        self.used += sub.used
        self.clock_hit |= sub.clock_hit

    @property
    def spent(self) -> bool:
        return self.used >= self.runs or self._past_deadline()
