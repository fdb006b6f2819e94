"""No import cycles inside ``imalys_stac``: the module graph is read from the source with :mod:`ast`
(nothing is imported), counting imports inside functions too — a function-level import is still a
dependency, it only moves the cycle from import time to call time.

An edge goes to the module an import names: ``from .grid import Grid`` → ``cube.grid``;
``from . import grid`` → ``cube.grid`` when ``grid`` is a module, else the package's ``__init__``.
Python also runs the parent packages' ``__init__`` on the way, so ``registry`` importing
``archives.container`` depends on ``archives`` too; but a module's own parent packages are not edges
(they are always imported before it, and a package's ``__init__`` that re-exports its submodules
would otherwise be a cycle with every one of them). Imports under ``if TYPE_CHECKING:`` are not
edges: they never run.
"""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

import pytest

PACKAGE = "imalys_stac"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE


def module_files(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for its ``__init__``)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join((package, *parts))] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """The Import/ImportFrom nodes anywhere in ``tree`` (functions, classes, try blocks), except the
    body of ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph(modules: dict[str, Path] | None = None, package: str = PACKAGE) -> dict[str, set[str]]:
    """``{module: {modules of the package it imports}}``, self-imports left out."""
    modules = module_files() if modules is None else modules
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        here = name if is_package else name.rpartition(".")[0]  # the package relative imports start from
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base_parts = here.split(".")
                    base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                # `from base import x`: x is a submodule when there is one, else a name of base
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                # `import imalys_stac.cube.tiles.something`-style names: the longest module prefix
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                # the target and the parent packages Python runs for it, except this module's own
                while target.startswith(package + ".") and not (name + ".").startswith(target + "."):
                    if target != name:
                        graph[name].add(target)
                    target = target.rpartition(".")[0]
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted, as a
    sorted list: every cycle of the graph lies inside one of them."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0

    def visit(root: str) -> None:  # iterative: the package is deep enough to matter for recursion
        nonlocal counter
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def shortest_cycle_through(graph: dict[str, set[str]], start: str) -> list[str]:
    """One shortest cycle ``start → … → start`` (breadth first), for the failure message."""
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if child not in parents:
                    parents[child] = node
                    following.append(child)
        frontier = following
    return []


@lru_cache(maxsize=1)
def package_graph() -> dict[str, set[str]]:
    """The graph of ``imalys_stac`` itself, read once per run (treat as read-only)."""
    return import_graph()


def _short(name: str) -> str:
    return name.removeprefix(PACKAGE + ".")


#: the cycles there were when this test was written (issue 18), each by two modules on it: all
#: broken since; each stays a case of its own so that the one that comes back is named
FORMER_CYCLES = {
    "products <-> workdir": ("products", "workdir"),
    "runtime.cluster -> runtime.plugins -> runtime.progress -> runtime.cluster": ("runtime.cluster", "runtime.plugins"),
    "archives -> registry -> archives": ("archives", "registry"),
}


def _component_of(graph, module: str) -> list[str]:
    for component in find_cycles(graph):
        if module in component:
            return component
    return []


def test_no_import_cycles():
    """No cycle in the package, function-level imports counted."""
    graph = package_graph()
    cycles = find_cycles(graph)
    messages = [" -> ".join(map(_short, shortest_cycle_through(graph, c[0]))) + f"  (component: {', '.join(map(_short, c))})"
                for c in cycles]
    assert not cycles, "import cycles in imalys_stac:\n" + "\n".join(messages)


@pytest.mark.parametrize("first, second", [pytest.param(*pair, id=name) for name, pair in FORMER_CYCLES.items()])
def test_former_cycle_stays_broken(first, second):
    graph = package_graph()
    component = _component_of(graph, f"{PACKAGE}.{first}")
    assert f"{PACKAGE}.{second}" not in component, (
        f"{_short(first)} and {_short(second)} are still on one cycle: "
        + " -> ".join(map(_short, shortest_cycle_through(graph, f"{PACKAGE}.{first}"))))


# ------------------------------------------------------------------ the graph builder itself
def _package(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    for relative, text in files.items():
        path = tmp_path / "pkg" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return module_files(tmp_path / "pkg", "pkg")


def test_graph_counts_function_level_relative_and_submodule_imports(tmp_path):
    modules = _package(tmp_path, {
        "__init__.py": "from .a import f\n",
        "a.py": "def f():\n    from .sub import b\n    return b\n",
        "sub/__init__.py": "",
        "sub/b.py": "from .. import a\nfrom ..sub import c as _c\nimport pkg.sub.c.x\n",
        "other/__init__.py": "",
        "other/d.py": "from ..sub.c import x\nfrom ..other import d\n",
        "sub/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\nelse:\n    import os\n",
    })
    graph = import_graph(modules, "pkg")
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.sub.b", "pkg.sub"}, "pkg.sub": set(),
                     "pkg.sub.b": {"pkg.a", "pkg.sub.c"}, "pkg.sub.c": set(),
                     "pkg.other": set(), "pkg.other.d": {"pkg.sub.c", "pkg.sub"}}
    assert find_cycles(graph) == [["pkg.a", "pkg.sub.b"]]
    assert shortest_cycle_through(graph, "pkg.a") == ["pkg.a", "pkg.sub.b", "pkg.a"]


def test_find_cycles_against_a_brute_force_reachability():
    """Tarjan's components equal the classes of mutual reachability computed by a plain closure."""
    import random

    rng = random.Random(18)
    for _ in range(50):
        nodes = [f"m{i}" for i in range(rng.randint(1, 9))]
        graph = {n: {m for m in nodes if m != n and rng.random() < 0.2} for n in nodes}
        reach = {n: set(graph[n]) for n in nodes}
        changed = True
        while changed:
            changed = False
            for n in nodes:
                more = set().union(*(reach[m] for m in reach[n])) - reach[n] if reach[n] else set()
                if more:
                    reach[n] |= more
                    changed = True
        expected = sorted({tuple(sorted({n} | {m for m in nodes if m in reach[n] and n in reach[m]}))
                           for n in nodes if n in reach[n]})
        assert [tuple(c) for c in find_cycles(graph)] == expected
