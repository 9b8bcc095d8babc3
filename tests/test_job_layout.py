"""The job subpackage (fundguard.optimizer.job) keeps its layout: imports run down its own layers
and into the library only, no private name crosses a module, and the old module paths still work."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

JOB = Path(__file__).resolve().parents[1] / "optimizer" / "job"
#: The job's modules, lowest first: each may import only modules before it in this list.
LAYERS = ("outputs", "config", "preset", "compute", "summaries", "build", "calibrate", "balance", "report", "cli")
#: What the job may import of the optimizer above it (the library it drives).
LIBRARY = {"certify", "fund", "policy", "problem", "solve"}
#: Imports inside functions allowed: matplotlib (heavy, only when plotting) and the CLI's
#: command handlers (lazy, so that the parser is built before the work's modules are needed).
LAZY = {"report": {"matplotlib", "matplotlib.figure"}, "cli": set(LAYERS)}


def _imports(name: str) -> list[tuple[ast.ImportFrom | ast.Import, bool]]:
    tree = ast.parse((JOB / f"{name}.py").read_text())
    top = {id(node) for node in tree.body}
    return [(node, id(node) in top) for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


@pytest.mark.parametrize("name", LAYERS)
def test_imports_run_down_the_layers_and_name_nothing_private(name):
    below = set(LAYERS[:LAYERS.index(name)])
    for node, at_top in _imports(name):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            assert node.module in below, f"{name} imports .{node.module}, which is not below it"
        elif isinstance(node, ast.ImportFrom) and node.level == 2:
            assert node.module in LIBRARY, f"{name} imports ..{node.module}"
        else:
            module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            assert not module.startswith("fundguard.optimizer"), f"{name} imports {module} by its absolute name"
        if isinstance(node, ast.ImportFrom):
            private = [a.name for a in node.names if a.name.startswith("_") and a.name != "__all__"]
            assert not private, f"{name} imports private names {private} from {node.module}"
        if not at_top:
            module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            assert module in LAZY.get(name, set()), f"{name} imports {module} inside a function"


def test_the_calibrate_module_is_a_module_and_the_function_a_function():
    import fundguard.optimizer as optimizer
    import fundguard.optimizer.job.calibrate as module

    assert callable(optimizer.calibrate) and not hasattr(optimizer.calibrate, "__path__")
    assert module.__name__ == "fundguard.optimizer.job.calibrate" and module.calibrate is optimizer.calibrate
    assert importlib.util.find_spec("fundguard.optimizer.calibrate") is None  # no module at the function's path


@pytest.mark.parametrize("old", ["config", "preset", "report", "outputs", "cli"])
def test_old_module_paths_re_export_the_new_ones(old):
    shim = importlib.import_module(f"fundguard.optimizer.{old}")
    new = importlib.import_module(f"fundguard.optimizer.job.{old}")
    for name in new.__all__:
        assert getattr(shim, name) is getattr(new, name), f"fundguard.optimizer.{old}.{name}"
