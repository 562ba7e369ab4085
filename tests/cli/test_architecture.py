"""The import rules in pyproject.toml hold (the same check `.ci/run` makes),
so the README's test command catches a broken layer too."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_import_linter_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


# ---------------------------------------------------------------------- the shape of the package

PACKAGE = ROOT / "ar_tui"
MAX_FILE_LINES = 600
MAX_CORE_MODULES = 12  # files directly in ar_tui/core/, __init__ included: the rest lives in its subsystems


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported(path: Path, package: str, known: set[str]) -> set[str]:
    """Every ar_tui module `path` imports, at the top or inside a function;
    what a TYPE_CHECKING block imports is for the type checker only."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit_one(other)
                continue
            visit_one(child)

    def visit_one(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
        visit(node)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {name for name in found if name in known}


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    paths = {_module_name(path, root): path for path in root.rglob("*.py")}
    known = set(paths)
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = _imported(path, package, known) - {name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in sorted(graph.get(module, ())):
            if other not in index:
                connect(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            connect(module)
    return cycles


def test_the_cycle_finder_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    package = tmp_path / "ar_tui"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from ar_tui.b import thing\n")
    (package / "b.py").write_text("def thing():\n    from ar_tui import a\n    return a\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ar_tui.a import x\n")
    (package / "d.py").write_text("from .c import y\n")
    graph = import_graph(package)
    assert graph["ar_tui.c"] == set() and graph["ar_tui.d"] == {"ar_tui.c"}
    assert import_cycles(graph) == [["ar_tui.a", "ar_tui.b"]]


def test_no_module_imports_itself_round_a_circle_not_even_inside_a_function() -> None:
    assert import_cycles(import_graph()) == []


def test_no_file_in_the_package_is_over_the_line_limit() -> None:
    long = {str(path.relative_to(ROOT)): n for path in PACKAGE.rglob("*.py")
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES}
    assert long == {}


def test_the_core_shows_its_subsystems_as_folders() -> None:
    core = PACKAGE / "core"
    flat = sorted(path.name for path in core.glob("*.py"))
    assert len(flat) <= MAX_CORE_MODULES, flat
    assert {"engine", "executors", "sandbox", "control", "records", "money"} <= {
        path.name for path in core.iterdir() if (path / "__init__.py").exists()}
