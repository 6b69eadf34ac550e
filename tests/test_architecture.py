"""The shape of the import graph of ``mushcam/``: dependencies point one way.

Every ``.py`` under ``mushcam/`` is parsed with :mod:`ast` (nothing is imported), its imports
are resolved (absolute and relative, including those inside functions), and three rules are
checked:

(a) only ``mushcam/cli/`` and ``mushcam/__main__.py`` import the command line;
(b) no module imports another module's ``_private`` name (single underscore, not dunder);
(c) the module-level imports have no cycle (imports under ``if TYPE_CHECKING:`` and inside
    functions are not edges: they run later, when every module is loaded).

Plus: ``import mushcam`` stays cheap (no torch, no streamlit), and its lazy public names resolve.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mushcam"
CLI_ALLOWED = ("mushcam.cli", "mushcam.__main__")


@dataclass(frozen=True)
class Edge:
    """One import: ``source`` imports ``target`` (a module), and ``name`` from it when a from-import."""

    source: str
    target: str
    name: str | None
    line: int
    module_level: bool


def module_name(path: Path) -> str:
    """``mushcam/a/b.py`` -> ``mushcam.a.b``; ``mushcam/a/__init__.py`` -> ``mushcam.a``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_in(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement with whether it runs at import time (not in a function or TYPE_CHECKING)."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, module_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, module_level))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, False)
            elif isinstance(child, ast.If) and is_type_checking(child.test):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), False)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), module_level)
            else:
                visit(child, module_level)

    visit(tree, True)
    return found


def resolve_base(source: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a from-import reads from (relative levels resolved against ``source``)."""
    if node.level == 0:
        return node.module or ""
    package = source.split(".") if is_package else source.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, node.module] if node.module else package)


def edges_of(source: str, path: Path, modules: dict[str, Path]) -> list[Edge]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    edges = []
    for node, module_level in imports_in(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "mushcam":
                    edges.append(Edge(source, alias.name, None, node.lineno, module_level))
            continue
        base = resolve_base(source, is_package, node)
        if base.split(".")[0] != "mushcam":
            continue
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            if submodule in modules:  # ``from mushcam import cache``: the submodule itself
                edges.append(Edge(source, submodule, None, node.lineno, module_level))
            else:
                edges.append(Edge(source, base, alias.name, node.lineno, module_level))
    return edges


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, Path], list[Edge]]:
    modules = all_modules()
    edges = [edge for name, path in modules.items() for edge in edges_of(name, path, modules)]
    return modules, edges


def where(modules: dict[str, Path], edge: Edge) -> str:
    return f"{modules[edge.source].relative_to(ROOT)}:{edge.line}"


def in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_graph_is_not_empty(graph: tuple[dict[str, Path], list[Edge]]) -> None:
    modules, edges = graph
    assert len(modules) > 50, f"only {len(modules)} modules found under {PACKAGE}"
    assert len(edges) > 100


def test_only_the_command_line_imports_the_command_line(graph: tuple[dict[str, Path], list[Edge]]) -> None:
    modules, edges = graph
    bad = [
        f"{where(modules, e)} imports {e.target}"
        for e in edges
        if in_package(e.target, "mushcam.cli") and not any(in_package(e.source, p) for p in CLI_ALLOWED)
    ]
    assert not bad, "library modules import the command line:\n" + "\n".join(dict.fromkeys(bad))


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_private_name_is_imported_from_another_module(graph: tuple[dict[str, Path], list[Edge]]) -> None:
    modules, edges = graph
    bad = [
        f"{where(modules, e)} imports {e.name} from {e.target}"
        for e in edges
        if e.target != e.source and (
            (e.name is not None and is_private(e.name)) or any(is_private(part) for part in e.target.split("."))
        )
    ]
    assert not bad, "private names imported across modules (make them public or move them):\n" + "\n".join(bad)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, ..., a]``, or None (iterative depth-first search, colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_module_level_imports_have_no_cycle(graph: tuple[dict[str, Path], list[Edge]]) -> None:
    modules, edges = graph
    adjacency: dict[str, set[str]] = {name: set() for name in modules}
    for e in edges:
        if e.module_level and e.target in modules and e.target != e.source:
            adjacency[e.source].add(e.target)
    cycle = find_cycle(adjacency)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_find_cycle_reports_the_path() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"b"}}) is None


def test_import_mushcam_is_cheap() -> None:
    code = (
        "import sys, mushcam\n"
        "mushcam.__version__; mushcam.MushcamError; mushcam.UsageError\n"
        "print(sorted(m for m in ('torch', 'streamlit', 'torchvision', 'cv2') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"import mushcam imported {done.stdout.strip()}"


def test_the_public_surface_resolves() -> None:
    import mushcam

    assert mushcam.__all__
    for name in mushcam.__all__:
        assert getattr(mushcam, name) is not None, name
    assert set(mushcam.__all__) <= set(dir(mushcam))
    with pytest.raises(AttributeError):
        mushcam.no_such_name  # noqa: B018
