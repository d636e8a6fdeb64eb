"""The check registry: every check's name, one-line doc, the kernel check it mirrors, its family.

A check is run by :class:`vmfuzz.invariants._monitor.Monitor` through up to four hooks, each
given the monitor and one key and returning ``None`` (holds), :data:`DEFER` (does not hold, but
the state is a legitimate mid-flight one: re-check next step) or a :class:`vmfuzz.Violation`:

* ``page(m, pfn)``   - run for every frame the step touched (``k.dirty_pfns``),
* ``entry(m, e)``    - run for every swap entry the step touched (``k.dirty_entries``),
* ``mm(m, mm_id)``   - run for every mm the step touched (``k.dirty_mms``),
* ``each_step(m)``   - run after every step over a small global set (e.g. pages under migration).

Engine checks (deadlock, lock order, ...) have no hook: the scheduler and the model raise them
themselves; they are registered so that ``vmfuzz invariants`` lists every check by one name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    from vmfuzz.invariants._monitor import Monitor

    from vmfuzz.violation import Violation


class _Defer:
    """The state is a legitimate mid-flight one: keep the key pending, re-check next step."""

    _instance: _Defer | None = None

    def __repr__(self) -> str:
        return "DEFER"


DEFER: Final = _Defer()

# Families in run order (the order of CHECKS once the package is imported).
FAMILIES = (
    "migration",
    "swapcache",
    "freeing",
    "mapcount",
    "rmap",
    "vma",
    "mlock",
    "integrity",
    "engine",
)
KeyHook = Callable[["Monitor", int], "Violation | _Defer | None"]
StepHook = Callable[["Monitor"], "Violation | _Defer | None"]


@attrs.frozen
class Check:
    """One named check.  ``mirrors`` names the kernel check (function: assertion) it mirrors."""

    name: str
    family: str
    doc: str
    mirrors: str
    page: KeyHook | None = None
    entry: KeyHook | None = None
    mm: KeyHook | None = None
    each_step: StepHook | None = None

    @property
    def per_step(self) -> bool:
        """True for model invariants run by the monitor; False for engine checks."""
        return any(h is not None for h in (self.page, self.entry, self.mm, self.each_step))

    @property
    def scopes(self) -> tuple[str, ...]:
        out = []
        for scope in ("page", "entry", "mm", "each_step"):
            if getattr(self, scope) is not None:
                out.append(scope)
        return tuple(out) if out else ("engine",)

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "family": self.family,
            "doc": self.doc,
            "mirrors": self.mirrors,
            "scopes": list(self.scopes),
        }


CHECKS: dict[str, Check] = {}


def register(
    name: str,
    family: str,
    doc: str,
    mirrors: str,
    *,
    page: KeyHook | None = None,
    entry: KeyHook | None = None,
    mm: KeyHook | None = None,
    each_step: StepHook | None = None,
) -> Check:
    """Add a check to :data:`CHECKS` (names are unique and stable: corpus files refer to them)."""
    if name in CHECKS:
        raise ValueError(f"check {name} registered twice")
    if family not in FAMILIES:
        raise ValueError(f"check {name}: unknown family {family!r}")
    if "\n" in doc:
        raise ValueError(f"check {name}: the doc must be one line")
    check = Check(name, family, doc, mirrors, page, entry, mm, each_step)
    CHECKS[name] = check
    return check
