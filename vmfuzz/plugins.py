"""Plugins: code outside vmfuzz that adds operations, bug switches, checks and world features.

A plugin is named three ways, on every command (``vmfuzz COMMAND --plugin NAME``, repeatable),
in pytest (``--vmfuzz-plugin NAME``, ini ``vmfuzz_plugins``) and in code (:func:`load_plugins`):

* a ``.py`` file (a name ending in ``.py`` or holding a ``/``), imported as module
  ``vmfuzz_plugin_<stem>``;
* the name of an installed plugin: an entry point of group ``vmfuzz.plugins`` (in a
  package's ``pyproject.toml``: ``[project.entry-points."vmfuzz.plugins"] myname =
  "mypkg.vmfuzz_plugin"``; an entry point that names a callable, ``"mypkg.mod:setup"``, has
  it called once after the import).  Installed plugins load only when named, never by
  themselves: a plugin changes what a seed fuzzes, so a campaign runs only what it was asked to;
* otherwise a module name (``mypkg.vmfuzz_ops``), imported.

What a plugin does at import, with the registries vmfuzz has:

* an operation: ``@vmfuzz.kernel.ops.operation("name", mm="mm", ...)`` on a kernel path;
* a per-step check: ``vmfuzz.invariants._registry.register(name, family, doc, mirrors,
  page=/entry=/mm=/each_step=hook)``;
* a world feature: ``@vmfuzz.kernel.boot.world_feature("name")`` on ``build(boot)``;
* a bug switch with its old code: ``@switch("vmfuzz.kernel.MODULE.FUNCTION", bug=...,
  summary=..., invariant=...)`` on the alternative function (below); a switch tested inside
  the plugin's own operations needs only ``vmfuzz.kernel.bugs.register``.

Loading a plugin notes which names it registered (the registries before and after its
import), so a saved case records exactly the plugins it uses (:func:`refs_for`) with a sha256
of their code, and loading the case loads them again (:func:`require`).  Every process that
fuzzes or replays loads the same plugins: ``vmfuzz fuzz --workers``, the zoo's campaigns, the
bench's runs and a soak's workers are handed the parent's.  Errors are :class:`PluginError`,
one line for the user.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

if TYPE_CHECKING:
    from vmfuzz.case import Case

ENTRY_POINT_GROUP = "vmfuzz.plugins"

# The registries a plugin may add to, by the word their "registered twice" errors use.
KINDS = ("operation", "bug", "check", "world feature")

F = TypeVar("F", bound=Callable[..., Any])


class PluginError(Exception):
    """A plugin could not be loaded, or a case's plugin is missing or changed: ``str(e)`` is
    one line for the user."""


@attrs.frozen
class PluginRef:
    """A case's record of a plugin it needs: its name and the sha256 of its code."""

    name: str
    sha256: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "sha256": self.sha256}


@attrs.define(eq=False)
class _Switch:
    """An installed dispatcher: where it replaced ``original`` (to put it back on unload)."""

    bug: str
    original: Callable[..., Any]
    dispatch: Callable[..., Any]
    bindings: list[tuple[Any, str]] = attrs.field(factory=list)
    ops: list[str] = attrs.field(factory=list)

    def uninstall(self) -> None:
        from vmfuzz.kernel.boot import _forget_booted
        from vmfuzz.kernel.bugs import BUGS
        from vmfuzz.kernel.ops import OPS

        for owner, attr in self.bindings:
            if getattr(owner, attr, None) is self.dispatch:
                setattr(owner, attr, self.original)
        for name in self.ops:
            spec = OPS.get(name)
            if spec is not None and spec.fn is self.dispatch:
                OPS[name] = attrs.evolve(spec, fn=self.original)
        BUGS.pop(self.bug, None)
        _forget_booted()


@attrs.define(eq=False)
class Plugin:
    """A loaded plugin: how it was named, what it is, the digest of its code and what it
    registered (names per kind of :data:`KINDS`)."""

    spec: str  # as given
    kind: str  # "file", "module" or "entry point"
    module: str  # the module it was imported as
    sha256: str
    path: Path | None = None  # a file plugin's file (resolved)
    registered: dict[str, frozenset[str]] = attrs.field(factory=dict)
    switches: list[_Switch] = attrs.field(factory=list)

    @property
    def portable(self) -> str:
        """The name that loads this plugin in another process (a file: its absolute path)."""
        return str(self.path) if self.path is not None else self.spec

    def names(self, kind: str) -> frozenset[str]:
        return self.registered.get(kind, frozenset())

    def in_effect(self) -> bool:
        """Everything it registered is still registered (a test may have taken it out)."""
        regs = _registries()
        return all(n in regs[kind] for kind, names in self.registered.items() for n in names)

    def ref(self, case_dir: Path | None = None) -> PluginRef:
        """The case's record of this plugin; a file is named relative to ``case_dir``."""
        if self.path is None:
            return PluginRef(self.spec, self.sha256)
        name = str(self.path)
        if case_dir is not None:
            try:
                name = os.path.relpath(self.path, Path(case_dir).resolve())
            except ValueError:  # another drive: keep it absolute
                pass
        return PluginRef(Path(name).as_posix(), self.sha256)


# Loaded plugins in load order, by identity: a file's resolved path, a module's name.
LOADED: dict[str, Plugin] = {}
_loading: list[Plugin] = []  # the plugin being imported (switches register into it)


def _registries() -> dict[str, Mapping[str, Any]]:
    """Every registry a plugin may add to, by kind, with vmfuzz's own entries registered."""
    import vmfuzz.invariants  # registers the built-in checks
    import vmfuzz.kernel  # noqa: F401  (registers the built-in operations and bugs)
    from vmfuzz.invariants._registry import CHECKS
    from vmfuzz.kernel.boot import FEATURES
    from vmfuzz.kernel.bugs import BUGS
    from vmfuzz.kernel.ops import OPS

    return {"operation": OPS, "bug": BUGS, "check": CHECKS, "world feature": FEATURES}


def _snapshot() -> dict[str, set[str]]:
    return {kind: set(reg) for kind, reg in _registries().items()}


def _unregister(kind: str, name: str) -> None:
    from vmfuzz.kernel.boot import unregister_feature

    if kind == "world feature":
        unregister_feature(name)
    else:
        reg = _registries()[kind]
        assert isinstance(reg, dict)
        reg.pop(name, None)


# ======================================================================= naming and digests
def is_file_spec(spec: str) -> bool:
    """A plugin named by a path (ends in ``.py`` or holds a path separator)."""
    return spec.endswith(".py") or "/" in spec or os.sep in spec


def portable_spec(spec: str) -> str:
    """``spec`` as another process, maybe in another folder, must name it (files absolute)."""
    return str(Path(spec).resolve()) if is_file_spec(spec) else spec


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (what ``sha256sum`` prints)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def module_digest(name: str) -> tuple[str, str] | None:
    """(sha256, origin) of module ``name``'s source without importing it (its parent packages
    are imported): a single module's file bytes; a package's every ``*.py`` below its folder,
    as ``relative/path NUL sha256-of-the-file NEWLINE`` lines in path order.  None if there is
    no such module."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        h = hashlib.sha256()
        roots = [Path(p) for p in spec.submodule_search_locations]
        for root in roots:
            for f in sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()):
                if "__pycache__" in f.parts:
                    continue
                rel = f.relative_to(root).as_posix()
                h.update(f"{rel}\0{file_digest(f)}\n".encode())
        return h.hexdigest(), str(roots[0])
    origin = spec.origin
    if origin and Path(origin).is_file():
        return file_digest(Path(origin)), origin
    return hashlib.sha256(name.encode()).hexdigest(), origin or name


def _entry_point(name: str) -> importlib.metadata.EntryPoint | None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep
    return None


def installed() -> list[str]:
    """The names of the installed plugins (entry points of group ``vmfuzz.plugins``)."""
    return sorted({ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)})


# ======================================================================= loading
def load_plugins(plugins: Iterable[str]) -> list[Plugin]:
    """Load each plugin (see the module doc for the three ways to name one), once per process.

    Raises :class:`PluginError` (one line) for a plugin that is missing, fails to import, or
    registers a name that vmfuzz or another plugin already has; what that plugin registered
    before failing is taken out again."""
    return [load_plugin(spec) for spec in plugins]


def load_plugin(spec: str) -> Plugin:
    """Load one plugin (or return it, already loaded); :class:`PluginError` if it cannot be."""
    _registries()  # vmfuzz's own names first: a plugin's clash is the plugin's error
    if is_file_spec(spec):
        return _load_file(spec)
    ep = _entry_point(spec)
    if ep is not None:
        return _load_module(spec, ep.module, "entry point", ep)
    return _load_module(spec, spec, "module", None)


def _load_file(spec: str) -> Plugin:
    path = Path(spec)
    if not path.is_file():
        raise PluginError(f"plugin {spec}: no such file")
    path = path.resolve()
    key = str(path)
    if key in LOADED:
        return LOADED[key]
    try:
        digest = file_digest(path)
    except OSError as e:
        raise PluginError(f"plugin {spec}: cannot read: {e.strerror or e}") from None
    modname = "vmfuzz_plugin_" + re.sub(r"\W", "_", path.stem)
    if modname in sys.modules:  # another file of that name: keep both apart
        modname += "_" + hashlib.sha256(key.encode()).hexdigest()[:8]
    plugin = Plugin(spec, "file", modname, digest, path)

    def run() -> None:
        mspec = importlib.util.spec_from_file_location(modname, path)
        if mspec is None or mspec.loader is None:
            raise PluginError(f"plugin {spec}: cannot be imported")
        mod = importlib.util.module_from_spec(mspec)
        sys.modules[modname] = mod
        mspec.loader.exec_module(mod)

    return _register(key, plugin, run)


def _load_module(
    spec: str, module: str, kind: str, ep: importlib.metadata.EntryPoint | None
) -> Plugin:
    key = module if ep is None else f"{module}:{ep.attr or ''}"
    if key in LOADED:
        return LOADED[key]
    found = module_digest(module)
    if found is None:
        hint = "" if ep is not None else (
            f" (nor an installed plugin: entry point group {ENTRY_POINT_GROUP}"
            + (f" has {', '.join(installed())}" if installed() else " is empty")
            + "; a file must end in .py)"
        )
        raise PluginError(f"plugin {spec}: no module named {module}{hint}")
    plugin = Plugin(spec, kind, module, found[0])

    def run() -> None:
        if ep is None:
            importlib.import_module(module)
            return
        obj = ep.load()
        if ep.attr and callable(obj):
            obj()

    return _register(key, plugin, run)


# The registries' duplicate-name errors: "operation mmap registered twice", "check 'x' is
# already registered (...)".
_TWICE = re.compile(
    r"^(operation|bug|check|world feature) '?([^\s']+)'? (?:registered twice|is already regis)"
)


def _register(key: str, plugin: Plugin, run: Callable[[], None]) -> Plugin:
    """Import ``plugin`` with ``run``, noting what it registers; on failure, take it all out
    again and raise :class:`PluginError` with one line."""
    before = _snapshot()
    _loading.append(plugin)
    try:
        run()
    except (Exception, SystemExit) as e:
        _loading.pop()
        _rollback(plugin, before)
        raise PluginError(_failure(plugin.spec, e)) from None
    _loading.pop()
    after = _snapshot()
    plugin.registered = {
        kind: frozenset(after[kind] - before[kind]) for kind in KINDS if after[kind] - before[kind]
    }
    LOADED[key] = plugin
    return plugin


def _rollback(plugin: Plugin, before: dict[str, set[str]]) -> None:
    for sw in reversed(plugin.switches):
        sw.uninstall()
    plugin.switches.clear()
    now = _snapshot()
    for kind in KINDS:
        for name in sorted(now[kind] - before[kind]):
            _unregister(kind, name)
    if plugin.kind == "file":
        sys.modules.pop(plugin.module, None)


def _failure(spec: str, e: BaseException) -> str:
    """One line: what went wrong importing plugin ``spec``."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    m = _TWICE.match(text)
    if isinstance(e, ValueError) and m:
        kind, name = m.groups()
        owner = next(
            (f"plugin {p.spec}" for p in LOADED.values() if name in p.names(kind)), "vmfuzz"
        )
        return f"plugin {spec}: registers {kind} {name!r}, which {owner} already registers"
    if isinstance(e, PluginError):
        return f"plugin {spec}: {text}"
    if isinstance(e, SystemExit):
        return f"plugin {spec}: exits while being imported (SystemExit: {e.code})"
    return f"plugin {spec}: {type(e).__name__}: {text}" if text else \
        f"plugin {spec}: {type(e).__name__}"


def unload(plugin: Plugin) -> None:
    """Take out everything ``plugin`` registered and its switches, and forget it (tests)."""
    for key, p in list(LOADED.items()):
        if p is plugin:
            del LOADED[key]
    for sw in reversed(plugin.switches):
        sw.uninstall()
    plugin.switches.clear()
    regs = _registries()
    for kind, names in plugin.registered.items():
        for name in sorted(names):
            if name in regs[kind]:
                _unregister(kind, name)
    plugin.registered = {}
    sys.modules.pop(plugin.module, None)  # loading it again runs its registrations again


def loaded() -> list[Plugin]:
    """The plugins loaded in this process and still in effect, in load order."""
    return [p for p in LOADED.values() if p.in_effect()]


def loaded_specs() -> tuple[str, ...]:
    """What another process loads to have the plugins this one has (files absolute)."""
    return tuple(p.portable for p in loaded())


# ======================================================================= cases
def used_by(case: Case, check: str) -> list[Plugin]:
    """The loaded plugins whose registrations ``case`` uses: an operation in its tasks, a bug
    switched on in its config, a world feature of its world, or ``check``, the check it
    expects or was found failing."""
    ops = {c.op for t in case.tasks for c in t.ops}
    cfg = case.config
    return [
        p for p in loaded()
        if p.names("operation") & ops or p.names("bug") & cfg.bugs
        or p.names("world feature") & cfg.world or check in p.names("check")
    ]


def refs_for(
    case: Case, check: str, case_dir: str | os.PathLike[str] | None = None
) -> tuple[PluginRef, ...]:
    """The plugin records of a case saved in ``case_dir`` (see :func:`used_by`)."""
    base = Path(case_dir) if case_dir is not None else None
    return tuple(p.ref(base) for p in used_by(case, check))


def require(
    refs: Sequence[PluginRef], case_dir: str | os.PathLike[str], *, changed_ok: bool = False
) -> list[Plugin]:
    """Load the plugins a case records, each as its code was when the case was saved.

    A file is looked for relative to the case's folder, then to the current folder; a file
    plugin already loaded (``--plugin``) with the same file name and digest serves too.
    :class:`PluginError` (one line) names a plugin that is missing or whose code changed.

    With ``changed_ok`` (a finding: the plugin is the patch under test, and a fix changes it)
    a changed file plugin is loaded as it is now; :func:`changed` says which were."""
    return [_require_changed(ref, Path(case_dir)) if changed_ok else _require(ref, Path(case_dir))
            for ref in refs]


def changed(refs: Sequence[PluginRef]) -> list[str]:
    """The names among ``refs`` whose loaded code differs from the digest the case recorded."""
    out = []
    for ref in refs:
        p = next((q for q in loaded() if ref.name in (q.spec, q.module)
                  or (q.path is not None and q.path.name == Path(ref.name).name)), None)
        if p is not None and p.sha256 != ref.sha256:
            out.append(ref.name)
    return out


def _require_changed(ref: PluginRef, case_dir: Path) -> Plugin:
    try:
        return _require(ref, case_dir)
    except PluginError as e:
        if "has changed" not in str(e) or not is_file_spec(ref.name):
            raise
    rel = Path(ref.name)
    for p in loaded():
        if p.path is not None and p.path.name == rel.name:
            return p
    where = [rel] if rel.is_absolute() else [case_dir / rel, Path.cwd() / rel]
    found = [Path(os.path.normpath(w)) for w in where if Path(os.path.normpath(w)).is_file()]
    return load_plugin(str(found[0]))


def _short(digest: str) -> str:
    return digest[:12]


def _require(ref: PluginRef, case_dir: Path) -> Plugin:
    if is_file_spec(ref.name):
        return _require_file(ref, case_dir)
    for p in loaded():
        if ref.name in (p.spec, p.module):
            if p.sha256 != ref.sha256:
                raise PluginError(
                    f"plugin {ref.name} has changed since the case was saved: the loaded one "
                    f"has sha256 {_short(p.sha256)}, the case was saved with "
                    f"{_short(ref.sha256)}"
                )
            return p
    ep = _entry_point(ref.name)
    found = module_digest(ep.module if ep is not None else ref.name)
    if found is None:
        raise PluginError(
            f"plugin {ref.name} is missing: no module or installed plugin of that name "
            f"(the case was saved with sha256 {_short(ref.sha256)})"
        )
    if found[0] != ref.sha256:
        raise PluginError(
            f"plugin {ref.name} has changed since the case was saved: {found[1]} has sha256 "
            f"{_short(found[0])}, the case was saved with {_short(ref.sha256)}"
        )
    return load_plugin(ref.name)


def _require_file(ref: PluginRef, case_dir: Path) -> Plugin:
    rel = Path(ref.name)
    for p in loaded():
        if p.path is not None and p.path.name == rel.name and p.sha256 == ref.sha256:
            return p
    where = [rel] if rel.is_absolute() else [case_dir / rel, Path.cwd() / rel]
    where = [Path(os.path.normpath(w)) for w in where]
    found = [w for w in where if w.is_file()]
    if not found:
        looked = " or ".join(str(w) for w in dict.fromkeys(where))
        raise PluginError(
            f"plugin {ref.name} is missing: no file {looked} (the case was saved with sha256 "
            f"{_short(ref.sha256)}; give it with --plugin PATH)"
        )
    digests = []
    for w in found:
        try:
            d = file_digest(w)
        except OSError as e:
            raise PluginError(f"plugin {ref.name}: {w}: cannot read: {e.strerror or e}") from None
        if d == ref.sha256:
            p = load_plugin(str(w))
            if p.sha256 != ref.sha256:  # this process loaded the file before it changed
                raise PluginError(
                    f"plugin {ref.name}: {w} was loaded with sha256 {_short(p.sha256)} and has "
                    f"changed since; the case needs {_short(ref.sha256)}"
                )
            return p
        digests.append(f"{w} has sha256 {_short(d)}")
    raise PluginError(
        f"plugin {ref.name} has changed since the case was saved: {'; '.join(digests)}, the "
        f"case was saved with {_short(ref.sha256)}"
    )


# ======================================================================= bug switches
def switch(
    target: str,
    *,
    bug: str,
    summary: str,
    invariant: str,
    seed: str | None = None,
    also: tuple[str, ...] = (),
    mail_tasks: int | None = None,
    mail_preemptions: int | None = None,
    zoo: bool = True,
) -> Callable[[F], F]:
    """Register bug switch ``bug`` whose old code is the decorated function, run in place of
    the kernel function ``target`` while ``k.bug(bug)`` is on::

        @switch("vmfuzz.kernel.memory.do_anonymous_page", bug="anon_rss_before_recheck",
                summary="...", invariant="rss_counter")
        def do_anonymous_page(k, mm, vma, addr, write):
            ...  # the kernel path as the old kernel had it

    ``target`` is ``vmfuzz.kernel.MODULE.FUNCTION`` (its first parameter the kernel, ``k``) or
    ``vmfuzz.kernel.kernel.Kernel.METHOD``.  The alternative takes the same parameters, and is
    a generator function exactly when the original is.  Kernel modules call each other
    through names bound at import, so the switch puts a dispatcher in every binding of the
    function in ``vmfuzz.kernel.*`` and the operation table; the checks (``vmfuzz.invariants``)
    keep the original, as a check never runs the code it checks.  With the switch off the
    dispatcher calls the original, which runs as before (same steps, same trace).  Several
    switches on one function nest: the latest is asked first.  One bug may switch several
    functions: call ``switch`` once per site with the same ``bug`` (within one plugin; the
    first call registers it).  ``seed`` (default: the
    plugin's name), ``also``, ``mail_*`` and ``zoo`` are as for
    :func:`vmfuzz.kernel.bugs.register`.  Returns the alternative unchanged."""

    def install(alt: F) -> F:
        sw = _install(target, bug, alt, _Meta(summary, invariant, seed, also, mail_tasks,
                                              mail_preemptions, zoo))
        if _loading:
            _loading[-1].switches.append(sw)
        return alt

    return install


@attrs.frozen
class _Meta:
    summary: str
    invariant: str
    seed: str | None
    also: tuple[str, ...]
    mail_tasks: int | None
    mail_preemptions: int | None
    zoo: bool


def _resolve(target: str) -> tuple[Any, str, Callable[..., Any], bool]:
    """(owner, attribute, current function, is a Kernel method) for a switch target."""
    bad = f"switch {target}"
    parts = target.split(".")
    if parts[:2] != ["vmfuzz", "kernel"] or len(parts) < 4:
        raise PluginError(f"{bad}: the site must be a function of the kernel model, "
                          "vmfuzz.kernel.MODULE.FUNCTION (or vmfuzz.kernel.kernel.Kernel.METHOD)")
    module = None
    for i in range(len(parts) - 1, 2, -1):
        try:
            module = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        rest = parts[i:]
        break
    if module is None:
        raise PluginError(f"{bad}: no module {'.'.join(parts[:3])}")
    if len(rest) == 1:
        fn = getattr(module, rest[0], None)
        if not inspect.isfunction(fn):
            raise PluginError(f"{bad}: {module.__name__} has no function {rest[0]}")
        return module, rest[0], fn, False
    from vmfuzz.kernel.kernel import Kernel

    owner = getattr(module, rest[0], None)
    if len(rest) != 2 or not (isinstance(owner, type) and issubclass(owner, Kernel)):
        raise PluginError(f"{bad}: a method site must be vmfuzz.kernel.kernel.Kernel.METHOD")
    fn = owner.__dict__.get(rest[1])
    if not inspect.isfunction(fn):
        raise PluginError(f"{bad}: Kernel has no method {rest[1]}")
    return owner, rest[1], fn, True


def _params(fn: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(fn).parameters)


def _install(target: str, bug: str, alt: Callable[..., Any], meta: _Meta) -> _Switch:
    from vmfuzz.kernel.boot import _forget_booted
    from vmfuzz.kernel.bugs import register
    from vmfuzz.kernel.ops import OPS

    owner, attr, current, method = _resolve(target)
    want = _params(current)
    first = "self" if method else "k"
    if not want or want[0] != first:
        raise PluginError(f"switch {target}: its first parameter is not the kernel ({first}), "
                          "so the switch cannot tell whether it is on")
    if not callable(alt) or _params(alt) != want:
        got = ", ".join(_params(alt)) if callable(alt) else type(alt).__name__
        raise PluginError(f"switch {target}: the alternative takes ({got}), the original "
                          f"takes ({', '.join(want)})")
    yields = inspect.isgeneratorfunction(inspect.unwrap(current))
    if inspect.isgeneratorfunction(alt) != yields:
        gen, plain = "a generator function (a kernel path that yields)", "a plain function"
        raise PluginError(f"switch {target}: the original is {gen if yields else plain}, "
                          f"the alternative is {plain if yields else gen}")
    plugin = _loading[-1].spec if _loading else "code outside vmfuzz"
    # One bug may put old code at several functions: the plugin's first switch of it
    # registers it, the others at further sites reuse that registration.
    again = bool(_loading) and any(sw.bug == bug for sw in _loading[-1].switches)
    if not again:
        register(bug, meta.seed or f"plugin {plugin}", meta.summary, meta.invariant,
                 mail_tasks=meta.mail_tasks, mail_preemptions=meta.mail_preemptions,
                 also=meta.also, zoo=meta.zoo)

    def dispatch(*args: Any, **kwargs: Any) -> Any:
        k = args[0] if args else kwargs[first]
        return (alt if k.bug(bug) else current)(*args, **kwargs)

    functools.update_wrapper(dispatch, current)
    sw = _Switch(bug, current, dispatch)
    if method:
        setattr(owner, attr, dispatch)
        sw.bindings.append((owner, attr))
    else:
        for name, mod in sorted(sys.modules.items()):
            if mod is None or not (name == "vmfuzz.kernel" or name.startswith("vmfuzz.kernel.")):
                continue
            for a, v in list(vars(mod).items()):
                if v is current:
                    setattr(mod, a, dispatch)
                    sw.bindings.append((mod, a))
    for name, spec in list(OPS.items()):
        if spec.fn is current:
            OPS[name] = attrs.evolve(spec, fn=dispatch)
            sw.ops.append(name)
    _forget_booted()
    return sw
