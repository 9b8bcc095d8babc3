"""The import graph of fundguard.models: imports run only down the data flow, no private name crosses a module.

Read from the source with ``ast`` (nothing is imported): every module-level import inside
``models/`` must reach a module of a lower layer in ``LAYERS``; imports inside functions are
allowed only for the optional dask dependency; ``models`` never imports ``fundguard.optimizer``;
and no module of models/, tests/ or benchmarks/ imports an underscore name of a models module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"

# Lowest first. A module imports only modules of strictly lower layers.
LAYERS = [
    ["errors"],
    ["serial", "parallel", "seeds"],
    ["data"],
    ["volatility"],
    ["scenarios.paths"],
    ["scenarios.copula", "scenarios.tails"],
    ["scenarios.innovations", "scenarios.dynamics"],
    ["scenarios.simulate", "scenarios.stress"],
    ["scenarios"],
    ["scenarioset"],
    ["store"],
    ["venue.book"],
    ["venue.gap"],
    ["venue.registry"],
    ["venue.build"],
    ["venue"],
    ["chunked"],
    [""],  # the package itself
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
# Optional heavy dependencies may be imported where they are used (``fundguard`` imports without them).
LAZY_OK = {"distributed", "dask", "dask.utils", "distributed.comm"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(MODELS).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _targets(path: Path, node: ast.ImportFrom) -> list[str]:
    """The models modules ``node`` (a relative import) reaches, as names relative to models/."""
    here = _module_name(path).split(".") if _module_name(path) else []
    package = here if _is_package(path) else here[:-1]
    base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
    if node.module:
        return [".".join(base + node.module.split("."))]
    found = []
    for alias in node.names:
        candidate = ".".join(base + [alias.name])
        found.append(candidate if candidate in RANK else ".".join(base))
    return found


def _module_level_imports(tree: ast.Module):
    """Imports outside functions and outside ``if TYPE_CHECKING:`` blocks."""
    def walk(nodes):
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                yield node
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                yield from walk(ast.iter_child_nodes(node))
    yield from walk(tree.body)


def _function_imports(tree: ast.Module):
    for func in ast.walk(tree):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(func):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    yield func.name, node


MODULE_FILES = sorted(MODELS.rglob("*.py"))


def test_every_models_module_has_a_layer():
    assert sorted(_module_name(p) for p in MODULE_FILES) == sorted(RANK)


@pytest.mark.parametrize("path", MODULE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_run_down_the_layers(path):
    tree = ast.parse(path.read_text())
    me = _module_name(path)
    for node in _module_level_imports(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            for target in _targets(path, node):
                assert RANK[target] < RANK[me], f"{me} imports {target}, which is not below it"
        else:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                assert not name.startswith("fundguard"), f"{me}: import {name} (use a relative import; never optimizer)"
    for function, node in _function_imports(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        assert not getattr(node, "level", 0) and set(names) <= LAZY_OK, f"{me}.{function} imports {names} inside a function"


def _private_imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = node.module or ""
            reaches_models = source.startswith("fundguard.models") or (path.is_relative_to(MODELS) and node.level)
            if reaches_models:
                for alias in node.names:
                    if alias.name.startswith("_") and alias.name != "__all__":
                        yield source, alias.name


@pytest.mark.parametrize("folder", ["models", "tests", "benchmarks", "optimizer"])
def test_no_private_name_of_models_is_imported(folder):
    found = [(str(p.relative_to(ROOT)), source, name)
             for p in sorted((ROOT / folder).rglob("*.py")) for source, name in _private_imports(p)]
    assert not found
