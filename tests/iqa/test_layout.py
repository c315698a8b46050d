"""The application's layout: every module imports, no two modules import each other (directly or round a
loop), and no source file outgrows one job."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import metalearn_iqa

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(metalearn_iqa.__file__).parent
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    """Every module of `metalearn_iqa` by dotted name (packages as their `__init__.py`)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(("metalearn_iqa", *parts))] = path
    return found


def _runtime_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run (at module level or in a function), not those under `if TYPE_CHECKING:`."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(child) for stmt in node.body for child in ast.walk(stmt)}
    return [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) and id(n) not in skipped]


def import_graph() -> dict[str, set[str]]:
    """Module -> the `metalearn_iqa` modules it imports when it runs (`from pkg import module` included)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                assert node.level == 0, f"{path}: relative import (write metalearn_iqa.{node.module})"
                base = node.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop of `graph` (its modules in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_every_module_imports() -> None:
    names = [m.name for m in pkgutil.walk_packages(metalearn_iqa.__path__, "metalearn_iqa.")]
    assert set(names) | {"metalearn_iqa"} == set(_modules())
    for name in names:
        importlib.import_module(name)


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert graph["metalearn_iqa.images.loader"] >= {"metalearn_iqa.images.transforms"}  # the graph sees edges
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_a_loop() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_layers_point_one_way() -> None:
    """Data and pixels know nothing of training; training and evaluation nothing of protocols or the CLI."""
    graph = import_graph()
    below = {
        "data": {"images", "model", "training", "evaluation", "protocols", "qpt", "cli"},
        "images": {"training", "evaluation", "protocols", "qpt", "cli"},
        "model": {"images", "training", "evaluation", "protocols", "qpt", "cli"},
        "training": {"protocols", "cli"},
        "evaluation": {"training", "protocols", "qpt", "cli"},
        "protocols": {"cli"},
    }
    for module, imported in graph.items():
        layer = module.split(".")[1] if module.count(".") else ""
        for target in imported:
            assert target.split(".")[1] not in below.get(layer, set()), f"{module} imports {target}"


@pytest.mark.parametrize("folder", ["metalearn", "applications", "benchmarks"])
def test_no_source_file_over_the_limit(folder: str) -> None:
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for path in (ROOT / folder).rglob("*.py")
    }
    over = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not over, f"over {MAX_LINES} lines: {over}"
