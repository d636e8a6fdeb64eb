"""The one error type every check raises: which check, what objects, expected vs found, when.

Engine checks (deadlock, lock order, sleeping in atomic ...), model checks (use after free) and
the invariant modules all report through :class:`Violation`, so a failure always names its check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vmfuzz.causes import Cause


class Violation(Exception):
    """A violated check.

    ``check`` is the stable check name (e.g. ``"migration_pte_page_locked"``); ``message`` names
    the objects involved (pfn, mm, vma range, swap entry, task, yield label) and what was
    expected vs found.  The scheduler fills in ``step``, ``task`` and ``label`` when the
    violation fires inside a run; ``causes`` (:mod:`vmfuzz.causes`) are the events behind it,
    filled in by ``Run.explain()`` for whoever shows or saves the violation.
    """

    def __init__(self, check: str, message: str, **objects: Any) -> None:
        super().__init__(f"{check}: {message}")
        self.check = check
        self.message = message
        self.objects: dict[str, Any] = objects
        self.step: int | None = None
        self.task: str | None = None
        self.label: str | None = None
        self.causes: list[Cause] = []

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle by fields (``vmfuzz fuzz --workers`` hands failures between processes):
        the default would call ``Violation(str(self))`` and fail."""
        return (_rebuild, (self.check, self.message, self.objects, self.step, self.task,
                           self.label, self.causes))

    def describe(self) -> str:
        """One human line: check, message, and where in the run it fired."""
        where = ""
        if self.step is not None:
            where = f" [step {self.step}, task {self.task}, at {self.label}]"
        return f"{self.check}: {self.message}{where}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "check": self.check,
            "message": self.message,
            "step": self.step,
            "task": self.task,
            "label": self.label,
        }
        if self.causes:
            out["causes"] = [c.to_json() for c in self.causes]
        return out


def _rebuild(check: str, message: str, objects: dict[str, Any], step: int | None,
             task: str | None, label: str | None, causes: list[Cause] | None = None) -> Violation:
    v = Violation(check, message, **objects)
    v.step, v.task, v.label = step, task, label
    v.causes = list(causes or ())
    return v
