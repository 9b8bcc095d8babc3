"""Tests of the optimizer core's import graph: imports run only down the data flow, no circle,
no import inside a function, no private name taken from another module.

The layers, lowest first (a module imports only from its own layer's package or lower ones):
problem, policy, solvers, guarantees -> fund/ -> methods/ -> distributed, certificates -> api.
``check.py`` and ``fast.py`` are re-export shims of the old module paths (one release). Private
names of third-party packages (highspy's bare solver) are not our modules' and are not checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

OPTIMIZER = Path(__file__).resolve().parents[1] / "optimizer"
MODELS = Path(__file__).resolve().parents[1] / "models"

# module (relative to optimizer/, without .py; a package by its folder) -> layer
LAYERS = {
    "problem": 0,
    "policy": 0,
    "solvers": 0,
    "guarantees": 0,
    "fund": 1,
    "methods": 2,
    "distributed": 3,
    "certificates": 3,
    "api": 4,
    # the shims sit above what they re-export, so no core module can import them
    "check": 2,
    "fast": 3,
}


def _unit(path: Path) -> str:
    """The layer unit of a file: its top-level module or package under optimizer/."""
    return path.relative_to(OPTIMIZER).parts[0].removesuffix(".py")


def _core_files() -> list[Path]:
    return sorted(p for p in OPTIMIZER.rglob("*.py") if _unit(p) in LAYERS)


def _imported_units(path: Path) -> list[tuple[str, ast.ImportFrom]]:
    """``(unit, node)`` for each relative import of another optimizer unit in ``path``."""
    tree = ast.parse(path.read_text())
    package_depth = len(path.relative_to(OPTIMIZER).parts) - 1  # 0 for optimizer/x.py
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            up = node.level - 1  # levels above the file's own package
            if up > package_depth:
                continue
            base = list(path.relative_to(OPTIMIZER).parts[: package_depth - up])
            target = base + (node.module.split(".") if node.module else [])
            if target:
                out.append((target[0], node))
            else:  # "from .. import x": x is a unit
                out.extend((alias.name, node) for alias in node.names)
    return out


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: str(p.relative_to(OPTIMIZER)))
def test_imports_run_down_the_layers(path):
    own = _unit(path)
    for unit, node in _imported_units(path):
        if unit == own or unit not in LAYERS:
            continue
        assert LAYERS[unit] < LAYERS[own], f"{path.name}:{node.lineno} imports {unit} (layer {LAYERS[unit]}) from layer {LAYERS[own]}"


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: str(p.relative_to(OPTIMIZER)))
def test_no_import_inside_a_function_and_no_private_name_across_modules(path):
    tree = ast.parse(path.read_text())
    for func in ast.walk(tree):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = [n.lineno for n in ast.walk(func) if isinstance(n, (ast.Import, ast.ImportFrom))]
            assert not lines, f"{path.name}:{lines} imports inside {func.name}()"
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("fundguard")):
            private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
            assert not private, f"{path.name}:{node.lineno} imports the private {private} from {node.module}"


def test_no_import_circle_in_the_optimizer_core():
    graph: dict[str, set[str]] = {unit: set() for unit in LAYERS}
    for path in _core_files():
        graph[_unit(path)] |= {u for u, _ in _imported_units(path) if u in LAYERS and u != _unit(path)}
    state: dict[str, int] = {}

    def visit(unit: str, trail: list[str]) -> None:
        state[unit] = 1
        for nxt in sorted(graph[unit]):
            assert state.get(nxt) != 1, f"import circle: {' -> '.join(trail + [unit, nxt])}"
            if nxt not in state:
                visit(nxt, trail + [unit])
        state[unit] = 2

    for unit in sorted(graph):
        if unit not in state:
            visit(unit, [])


def test_models_never_import_the_optimizer():
    for path in sorted(MODELS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.startswith("fundguard.optimizer") for n in names), f"{path.name}:{node.lineno} imports {names}"


def test_old_module_paths_and_the_registry():
    """The shims re-export the same objects; no module is named like a function the package exports."""
    import fundguard.optimizer as optimizer
    import fundguard.optimizer.check as check
    import fundguard.optimizer.fast as fast
    from fundguard.optimizer import fund, methods

    assert check.FundRule is fund.FundRule and fast.ExactBranchAndBound is methods.ExactBranchAndBound
    for name in ("solve", "certify", "frontier", "ruin_probability", "compare_methods"):
        assert not (OPTIMIZER / f"{name}.py").exists() and not (OPTIMIZER / name).exists()
    assert optimizer.METHODS is methods.METHODS
    for name, method in methods.METHODS.items():
        assert method.name == name and "solver" in method.options and "engine" in method.options
    assert [m for m, method in methods.METHODS.items() if method.distributed] == ["cvar", "exact"]
