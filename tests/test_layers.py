"""Layering of the ``vmfuzz`` package: no import cycle at import time.

The graph has one node per module of the package (``vmfuzz/``, plus ``strategies/`` and
``invariants/``, mapped to ``vmfuzz.strategies`` and ``vmfuzz.invariants`` by pyproject's
``[tool.setuptools.package-dir]``) and an edge A -> B when A's module-level code imports B:
imports at the top level, in a module-level ``if``/``try``/``with`` or a class body count; those
inside a function (run later, if ever) and under ``if TYPE_CHECKING:`` (never run) do not.
``from P import name`` is an edge to ``P.name`` when that is a module of the package, else to
``P``.  The implicit import of a module's parent packages is not an edge (every package would
otherwise be in a cycle with its own submodules).

A cycle means neither module can be imported first without seeing the other half-initialised;
split by dependency instead (a module with what both need, imported by both).
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "vmfuzz"

def package_dirs() -> dict[str, Path]:
    """Package name -> folder: ``vmfuzz`` plus pyproject's ``package-dir`` entries under it."""
    dirs = {PACKAGE: ROOT / PACKAGE}
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    mapped: dict[str, str]
    if sys.version_info >= (3, 11):
        import tomllib

        mapped = tomllib.loads(text).get("tool", {}).get("setuptools", {}).get("package-dir", {})
    else:  # no tomllib: read the one table by hand
        m = re.search(r"^\[tool\.setuptools\.package-dir\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
        body = m.group(1) if m else ""
        mapped = dict(re.findall(r'^"?([\w.]+)"?\s*=\s*"([^"]*)"', body, re.M))
    for name, folder in mapped.items():
        if name == PACKAGE or name.startswith(PACKAGE + "."):
            dirs[name] = ROOT / folder
    return dirs


def modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    dirs = package_dirs()
    out: dict[str, Path] = {}
    for pkg, folder in sorted(dirs.items()):
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if any(not p.isidentifier() for p in parts):
                continue
            name = ".".join([pkg, *parts])
            # A subpackage that package-dir maps to another folder is read from there.
            if any(d.startswith(pkg + ".") and (name == d or name.startswith(d + "."))
                   for d in dirs):
                continue
            out[name] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _run_at_import(body: list[ast.stmt], lazy: bool = False) -> Iterator[ast.stmt]:
    """The statements of ``body`` that run when the module is imported (recursively); with
    ``lazy``, also those in function bodies (run when the function is called)."""
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if lazy:
                yield from _run_at_import(node.body, lazy)
            continue  # decorators run, but they are expressions, not imports
        yield node
        if isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _run_at_import(node.body, lazy)
            yield from _run_at_import(node.orelse, lazy)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _run_at_import(block, lazy)
            for handler in node.handlers:
                yield from _run_at_import(handler.body, lazy)
        elif isinstance(node, ast.With | ast.For | ast.While | ast.ClassDef):
            yield from _run_at_import(node.body, lazy)
            if isinstance(node, ast.For | ast.While):
                yield from _run_at_import(node.orelse, lazy)


def import_edges(name: str, path: Path, known: set[str], lazy: bool = False) -> dict[str, int]:
    """The modules of the package that ``name`` imports at import time -> first line (with
    ``lazy``, also those its functions import)."""
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    edges: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        if target in known and target != name:
            edges.setdefault(target, line)

    for node in _run_at_import(tree.body, lazy):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                add(sub if sub in known else module, node.lineno)
    return edges


def import_graph(lazy: bool = False) -> tuple[dict[str, dict[str, int]], dict[str, Path]]:
    """Module -> {module it imports: line}, and module -> file."""
    mods = modules()
    known = set(mods)
    return {m: import_edges(m, p, known, lazy) for m, p in mods.items()}, mods


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def describe(comp: list[str], graph: dict[str, dict[str, int]], mods: dict[str, Path]) -> str:
    """The imports that tie a cycle's modules together, one ``file:line: a -> b`` a line."""
    members = set(comp)
    lines = [f"cycle: {' <-> '.join(comp)}"]
    for a in comp:
        for b, line in sorted(graph[a].items()):
            if b in members:
                lines.append(f"  {mods[a].relative_to(ROOT)}:{line}: {a} -> {b}")
    return "\n".join(lines)


def test_graph_sees_the_whole_package() -> None:
    """The mapped folders are read, and edges are found (an empty graph has no cycle either)."""
    graph, mods = import_graph()
    assert "vmfuzz.strategies" in mods and "vmfuzz.invariants" in mods
    assert "vmfuzz.kernel" in mods and "vmfuzz.cli" in mods
    assert not any(m.startswith("vmfuzz.strategies.") and "strategies" not in str(p)
                   for m, p in mods.items())
    assert "vmfuzz.soak" in mods and "vmfuzz.soak._supervisor" in mods
    # The edges are real: the supervisor writes the report at the end of a session.
    assert "vmfuzz.soak._report" in graph["vmfuzz.soak._supervisor"]


def test_no_import_cycles() -> None:
    """Anywhere in the package: the failure lists each cycle with the imports that make it."""
    graph, mods = import_graph()
    found = cycles(graph)
    assert not found, "\n".join(describe(c, graph, mods) for c in found)


def test_soak_is_split_by_dependency() -> None:
    """No cycle through the soak even counting function-local imports: the soak's modules are
    layered, not tied together by imports deferred into functions."""
    graph, mods = import_graph(lazy=True)
    soak = [c for c in cycles(graph)
            if any(m == "vmfuzz.soak" or m.startswith("vmfuzz.soak.") for m in c)]
    assert not soak, "\n".join(describe(c, graph, mods) for c in soak)


def test_cycle_finder_finds_a_cycle() -> None:
    """Tarjan's components: the cycle, not the module that merely leads into it."""
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b": 1}, "b": {}}) == []
