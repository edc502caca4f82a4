"""Layering rules of upd_core, checked on its import graph (read with `ast`, nothing imported).

Every import counts, also those inside functions; relative imports are resolved to module names.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "upd_core"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
MAX_LINES = 500
LONG_ALLOWED = {"upd_core/imaging.py"}
UI = ("streamlit", "gradio")


def module_name(path: Path, root: Path = ROOT) -> str:
    """'upd_core/methods/vae.py' -> 'upd_core.methods.vae'; a package's __init__ is the package."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(tree: ast.AST, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """Absolute names of everything a module imports.

    `from a import b` gives a.b when that is one of `modules`, else a (a name defined in a)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                names.add(sub if sub in modules else target)
    return names


def import_graph(root: Path = ROOT) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(edges between the package's own modules, every imported name) per module."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    internal: dict[str, set[str]] = {}
    external: dict[str, set[str]] = {}
    for mod, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        names = imported_names(tree, mod, path.name == "__init__.py", set(files))
        external[mod] = names
        internal[mod] = {n for n in names if n in files and n != mod}
    return internal, external


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module, as one cycle through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_through(comp, graph) for comp in components]


def _cycle_through(comp: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest cycle from the component's first module back to itself (breadth-first)."""
    start = min(comp)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & comp):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle in component {sorted(comp)}")


def test_find_cycles_reports_a_cycle_and_ignores_a_chain() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_relative_imports_are_resolved(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import x\n")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from ..a import f\nfrom . import c\nimport streamlit as st\n")
    (pkg / "sub" / "c.py").write_text("")
    internal, external = import_graph(pkg)
    assert internal == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.sub.b"}, "pkg.sub": set(),
                        "pkg.sub.b": {"pkg.a", "pkg.sub.c"}, "pkg.sub.c": set()}
    assert "streamlit" in external["pkg.sub.b"]
    assert find_cycles(internal) == [["pkg.a", "pkg.sub.b", "pkg.a"]]


GRAPH, IMPORTS = import_graph()


def test_no_import_cycles() -> None:
    cycles = find_cycles(GRAPH)
    assert not cycles, "import cycles in upd_core:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_core_never_imports_a_ui_framework() -> None:
    bad = {mod: sorted(n for n in names if n.split(".")[0] in UI) for mod, names in IMPORTS.items()}
    bad = {mod: names for mod, names in bad.items() if names}
    assert not bad, f"upd_core modules importing streamlit/gradio: {bad}"


def test_methods_never_import_the_cli() -> None:
    bad = sorted(mod for mod, names in IMPORTS.items()
                 if mod.startswith(f"{PACKAGE}.methods") and any(n == f"{PACKAGE}.cli" or n.startswith(f"{PACKAGE}.cli.")
                                                                  for n in names))
    assert not bad, f"method modules importing upd_core.cli: {bad}"


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT.parent).as_posix() for p in ROOT.rglob("*.py")))
def test_module_is_short(path: str) -> None:
    if path in LONG_ALLOWED:
        return
    n = len((ROOT.parent / path).read_text().splitlines())
    assert n <= MAX_LINES, f"{path} has {n} lines (limit {MAX_LINES}): split it"
