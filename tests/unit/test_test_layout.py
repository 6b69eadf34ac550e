"""The layout of tests/ itself: test modules share code only through helpers/, and every helper is used.

Test modules are imported by pytest's default ("prepend") import mode with no ``__init__.py``
files (a ``tests/app`` package would shadow the project's ``app.py``), so every test module's
base name must be unique across the folders, and a test that imported another test module would
depend on collection order (and collect the other module's fixtures). Shared code lives in
tests/helpers/, which pytest.ini puts on the import path.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
HELPERS = TESTS / "helpers"


def all_test_modules() -> list[Path]:
    """Every test_*.py under tests/ (helpers/ holds none)."""
    return sorted(TESTS.rglob("test_*.py"))


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports, at any depth of its code (local imports too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_layout_has_tests_in_every_folder():
    folders = {path.parent.relative_to(TESTS).parts[0] for path in all_test_modules() if path.parent != TESTS}
    assert {"unit", "app", "browser"} <= folders
    assert not list(HELPERS.glob("test_*.py")), "helpers/ holds shared code, not tests"


def test_no_test_module_imports_another_test_module():
    offenders = {
        str(path.relative_to(TESTS)): sorted(name for name in imported_modules(path) if name.startswith("test_"))
        for path in all_test_modules()
    }
    assert {k: v for k, v in offenders.items() if v} == {}, "move what they share into tests/helpers/"


def test_helpers_do_not_import_test_modules():
    for path in sorted(HELPERS.glob("*.py")):
        assert not [n for n in imported_modules(path) if n.startswith("test_")], path.name


def test_every_helper_module_is_imported_by_a_test():
    used = set().union(*(imported_modules(path) for path in all_test_modules()))
    unused = sorted(path.stem for path in HELPERS.glob("*.py") if path.stem not in used)
    assert unused == [], f"helpers no test imports (delete them or use them): {unused}"


def test_test_module_names_are_unique_and_there_are_no_packages():
    counts = Counter(path.name for path in all_test_modules())
    assert [name for name, n in counts.items() if n > 1] == []
    project = {path.stem for path in TESTS.parent.glob("*.py")} | {path.name for path in TESTS.parent.iterdir()
                                                                    if (path / "__init__.py").is_file()}
    assert not {path.stem for path in HELPERS.glob("*.py")} & project, "a helper would shadow a project module"
    assert not list(TESTS.rglob("__init__.py")), "prepend import mode: a package would shadow app.py and helpers"
