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

User checks (family ``user``, :func:`register_user`, public as :func:`vmfuzz.check`) get a
:class:`~vmfuzz.invariants._monitor.CheckView` instead of the monitor, may also return a message
(reported as a violation of the check), and run after the built-in families.  Every registered
check runs in every run of the process (campaigns, the pool, the shrinker, replay), so a saved
case replays the same way wherever the same checks are registered.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, TypeVar

import attrs

from vmfuzz.violation import Violation

if TYPE_CHECKING:
    from vmfuzz.invariants._monitor import CheckView, Monitor


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
    "lru",
    "integrity",
    "promises",
    "user",  # checks registered with vmfuzz.check: after the built-in ones
    "engine",
)
USER_FAMILY = "user"
KeyHook = Callable[["Monitor", int], "Violation | _Defer | None"]
StepHook = Callable[["Monitor"], "Violation | _Defer | None"]
# A user check's hooks: given the view (and the key), a Violation, DEFER, a message or None.
Origin = tuple[str, str, str, int]  # a hook's module, file, qualname, first line
UserKeyHook = Callable[["CheckView", int], "Violation | _Defer | str | None"]
UserStepHook = Callable[["CheckView"], "Violation | _Defer | str | None"]


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
    # A user check: where each hook is defined (module, file, qualname, line), so that a
    # module imported twice (pytest's import of a test file, then a plugin import of the same
    # file) registers it once instead of failing, and a case says which file to load.
    origin: tuple[Origin | None, ...] | None = attrs.field(default=None, eq=False)
    # Run once no task is live (nothing held in flight), after every per-object hook.
    at_rest: StepHook | None = None

    @property
    def user(self) -> bool:
        """Registered with :func:`register_user` (``vmfuzz.check``)."""
        return self.family == USER_FAMILY

    @property
    def per_step(self) -> bool:
        """True for model invariants run by the monitor; False for engine checks."""
        return any(h is not None
                   for h in (self.page, self.entry, self.mm, self.each_step, self.at_rest))

    @property
    def scopes(self) -> tuple[str, ...]:
        out = []
        for scope in ("page", "entry", "mm", "each_step", "at_rest"):
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

RESCAN_GATED = "rescan_gated"


STEP_GUARD = "step_guard"
_F = TypeVar("_F", bound=Callable[..., object])


def step_guard(guard: Callable[[Monitor], bool]) -> Callable[[_F], _F]:
    """Mark an ``each_step`` hook that answers None whenever ``guard(m)`` is False: the monitor
    then calls it only after a step where the guard holds (hooks sharing one guard, one call
    of it per step)."""

    def mark(fn: _F) -> _F:
        setattr(fn, STEP_GUARD, guard)
        return fn

    return mark


GUARD_FLAG = "guard_flag"


def kernel_flag(attr: str, doc: str) -> Callable[[Monitor], bool]:
    """A step guard that holds when the kernel attribute ``attr`` is truthy (non-empty): the
    monitor reads the attribute itself instead of calling the guard."""

    def guard(m: Monitor) -> bool:
        return bool(getattr(m.k, attr))

    guard.__doc__ = doc
    guard.__qualname__ = guard.__name__ = f"kernel_flag_{attr}"
    setattr(guard, GUARD_FLAG, attr)
    return guard


STEP_GROUP = "step_group"


def step_group(found: Callable[[Monitor], list[Violation]]) -> Callable[[_F], _F]:
    """Mark an ``each_step`` hook that answers the first violation of ``found(m)`` (this
    step's list, worked out once whoever asks) whose check is its own name, or None.  The
    monitor runs consecutive hooks of one group as one: ``found`` once, then each hook's name
    in order (the same first violation as the hooks one by one)."""

    def mark(fn: _F) -> _F:
        setattr(fn, STEP_GROUP, found)
        return fn

    return mark


def rescan_gated(fn: KeyHook) -> KeyHook:
    """Mark an ``mm`` hook that answers None for an mm unless ``m.rescan(name, mm_id)``: the
    monitor then calls it only for the mms whose layout changed and its pending ones."""
    setattr(fn, RESCAN_GATED, True)
    return fn


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
    at_rest: StepHook | None = None,
) -> Check:
    """Add a check to :data:`CHECKS` (names are unique and stable: corpus files refer to them).

    ``at_rest`` runs after a step that leaves no task live, after every other hook."""
    if name in CHECKS:
        raise ValueError(_twice(name))
    if family not in FAMILIES:
        raise ValueError(f"check {name}: unknown family {family!r}")
    if "\n" in doc:
        raise ValueError(f"check {name}: the doc must be one line")
    check = Check(name, family, doc, mirrors, page, entry, mm, each_step, at_rest=at_rest)
    CHECKS[name] = check
    return check


_NAME = re.compile(r"[a-z][a-z0-9_]*")


def _twice(name: str) -> str:
    old = CHECKS[name]
    return (
        f"check {name!r} is already registered (family {old.family}: {old.doc}); check names "
        "are unique because a saved case names the check it failed: pick another name"
    )


def _origin(fn: Callable[..., object] | None) -> Origin | None:
    if fn is None:
        return None
    code = getattr(fn, "__code__", None)
    return (
        str(getattr(fn, "__module__", "") or ""),
        code.co_filename if code is not None else "",
        getattr(fn, "__qualname__", repr(fn)),
        code.co_firstlineno if code is not None else 0,
    )


def _same(a: tuple[Origin | None, ...] | None, b: tuple[Origin | None, ...]) -> bool:
    """The same hooks: same file, qualname and line each (the module name may differ: a file
    imported by pytest and again as a plugin)."""
    if a is None or len(a) != len(b):
        return False
    return all(
        (x is None and y is None) or (x is not None and y is not None and x[1:] == y[1:])
        for x, y in zip(a, b, strict=True)
    )


def user_result(name: str, r: object) -> Violation | _Defer | None:
    """A user hook's answer as the monitor takes it: a message becomes ``Violation(name, msg)``,
    a violation of another name is reported under ``name`` (the check that found it)."""
    if r is None or r is DEFER:
        return r
    if isinstance(r, str):
        return Violation(name, r)
    if isinstance(r, Violation):
        if r.check == name:
            return r
        return Violation(name, r.message, **r.objects)
    raise TypeError(
        f"check {name}: a hook returned {r!r}; expected None (holds), DEFER, a message or a "
        "Violation"
    )


def _wrap_key(name: str, fn: UserKeyHook | None) -> KeyHook | None:
    if fn is None:
        return None

    def hook(m: Monitor, key: int) -> Violation | _Defer | None:
        return user_result(name, fn(m.view, key))

    hook.__qualname__ = getattr(fn, "__qualname__", hook.__qualname__)
    return hook


def _wrap_step(name: str, fn: UserStepHook | None) -> StepHook | None:
    if fn is None:
        return None

    def hook(m: Monitor) -> Violation | _Defer | None:
        return user_result(name, fn(m.view))

    hook.__qualname__ = getattr(fn, "__qualname__", hook.__qualname__)
    return hook


def register_user(
    name: str,
    *,
    doc: str,
    mirrors: str,
    page: UserKeyHook | None = None,
    entry: UserKeyHook | None = None,
    mm: UserKeyHook | None = None,
    each_step: UserStepHook | None = None,
) -> Check:
    """Register a user check (family ``user``); see :func:`vmfuzz.check` for the rules.

    Registering the same definition again (same hooks at the same source lines, same doc) is a
    no-op returning the registered check; any other second registration of ``name`` raises."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"check name {name!r}: use lower-case letters, digits and _ (it names corpus files)"
        )
    hooks = (page, entry, mm, each_step)
    if all(h is None for h in hooks):
        raise ValueError(f"check {name}: give at least one hook (page=, entry=, mm=, each_step=)")
    for scope, h in zip(("page", "entry", "mm", "each_step"), hooks, strict=True):
        if h is not None and not callable(h):
            raise TypeError(f"check {name}: {scope}= must be callable, not {h!r}")
    origin = tuple(_origin(h) for h in hooks)
    old = CHECKS.get(name)
    if old is not None and old.user and _same(old.origin, origin) and old.doc == doc:
        return old
    if old is not None:
        raise ValueError(_twice(name))
    if not doc or "\n" in doc:
        raise ValueError(f"check {name}: doc must be one non-empty line")
    check = Check(
        name, USER_FAMILY, doc, mirrors, _wrap_key(name, page), _wrap_key(name, entry),
        _wrap_key(name, mm), _wrap_step(name, each_step), origin,
    )
    CHECKS[name] = check
    return check


def unregister_user(name: str) -> None:
    """Remove user check ``name`` (tests that register one for a while); KeyError if absent."""
    check = CHECKS.get(name)
    if check is None or not check.user:
        raise KeyError(f"no user check {name!r}")
    del CHECKS[name]
