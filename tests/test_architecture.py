"""The house rules of the source tree, checked on the code itself (docs/architecture.md states them).

* no import circle between fundguard's modules, counting imports inside functions too (an import
  moved into a function to dodge a circle is still a circle);
* no private name (``_x``) imported from another module;
* ``fundguard.models`` never imports ``fundguard.optimizer``;
* imports run down the data flow: a module imports only from its own layer or the layers below it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"models": "fundguard.models", "optimizer": "fundguard.optimizer"}


def _modules() -> dict[str, Path]:
    modules = {}
    for folder, package in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


MODULES = _modules()


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not _is_package(module):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import in ``module``, functions included."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names if alias.name.startswith("fundguard.")]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            if not target.startswith("fundguard."):
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if submodule in MODULES:
                    found.append((submodule, None, node.lineno))
                else:
                    found.append((target, alias.name, node.lineno))
    return [(target, name, line) for target, name, line in found if target in MODULES]


GRAPH = {module: _imports(module) for module in MODULES}


def _owner(module: str) -> str:
    """The package a module belongs to (itself for a package): ``from .x import y`` inside a package's
    own ``__init__`` re-exports, and a package's modules may import from their package."""
    return module if _is_package(module) else module.rsplit(".", 1)[0]



#: Every module of the two packages, lowest layer first (names without the ``fundguard.`` prefix).
#: A module imports only from strictly lower layers, inside functions too; docs/architecture.md
#: says the job of each. The old module paths (one-release shims) sit at the top so that nothing
#: of the library can import them.
LAYERS = [
    ["models.errors", "models.serial", "models.lazy"],
    ["models.parallel", "models.seeds", "models.data"],
    ["models.volatility"],
    ["models.scenarios.copula", "models.scenarios.tails", "models.scenarios.excursions"],
    ["models.scenarios.paths", "models.scenarios.dynamics", "models.scenarios.innovations"],
    ["models.scenarios.simulate", "models.scenarios.stress", "models.scenarios.bounds"],
    ["models.scenarios"],
    ["models.scenarioset"],
    ["models.store", "models.venue.book", "models.venue.losses"],
    ["models.venue.gap", "models.venue.stateful"],
    ["models.venue.registry"],
    ["models.venue.build"],
    ["models.venue.replay"],
    ["models.venue"],
    ["models.chunked"],
    ["models"],
    ["optimizer.display"],
    ["optimizer.participation", "optimizer.ruin"],
    ["optimizer.problem", "optimizer.policy", "optimizer.solvers", "optimizer.guarantees"],
    ["optimizer.fund.equation"],
    ["optimizer.fund.model"],
    ["optimizer.fund.rule", "optimizer.fund.chunked"],
    ["optimizer.fund.working"],
    ["optimizer.fund"],
    ["optimizer.methods.shared"],
    ["optimizer.methods.cvar", "optimizer.methods.scenario"],
    ["optimizer.methods.exact"],
    ["optimizer.methods.certified"],
    ["optimizer.methods.registry"],
    ["optimizer.methods"],
    ["optimizer.distributed", "optimizer.certificates", "optimizer.analysis", "optimizer.waterfall",
     "optimizer.topology"],
    ["optimizer.api"],
    ["optimizer.job.outputs", "optimizer.job.html", "optimizer.job.history"],
    ["optimizer.job.config", "optimizer.job.losscheck"],
    ["optimizer.job.preset", "optimizer.job.compute", "optimizer.job.summaries", "optimizer.job.lossfit"],
    ["optimizer.job.build"],
    ["optimizer.job.sensitivity"],
    ["optimizer.job.calibrate"],
    ["optimizer.job.balance", "optimizer.job.report"],
    ["optimizer.job.cli"],
    ["optimizer.job"],
    ["optimizer.check", "optimizer.fast", "optimizer.cli", "optimizer.config", "optimizer.outputs",
     "optimizer.preset", "optimizer.report"],
    ["optimizer"],
]
RANK = {f"fundguard.{name}": rank for rank, names in enumerate(LAYERS) for name in names}
#: Modules that may import fundguard modules inside functions: the CLI's command handlers load the
#: work's modules only when a command runs, so that ``fundguard --help`` stays light.
LAZY = {"fundguard.optimizer.job.cli"}

def test_there_are_modules_to_check():
    assert "fundguard.models.data" in MODULES and "fundguard.optimizer" in MODULES


def test_no_private_name_is_imported_from_another_module():
    offences = [
        f"{MODULES[module].relative_to(REPO)}:{line}: imports {name} from {target}"
        for module, imports in GRAPH.items()
        for target, name, line in imports
        if name is not None and name.startswith("_") and not name.startswith("__") and target != module
    ]
    assert not offences, "\n".join(offences)


def test_models_never_imports_optimizer():
    offences = [
        f"{MODULES[module].relative_to(REPO)}:{line}: imports {target}"
        for module, imports in GRAPH.items() if module.startswith("fundguard.models")
        for target, _, line in imports if target.startswith("fundguard.optimizer")
    ]
    assert not offences, "\n".join(offences)


def _cycles() -> list[list[str]]:
    # Edges between modules, leaving out a package's own __init__ re-exporting its children and a
    # child importing names its package re-exports from elsewhere (both are the package's face, not
    # a dependency of the code).
    edges = {
        module: sorted({target for target, _, _ in imports
                        if target != module and not (_is_package(module) and target.startswith(module + "."))
                        and not (_is_package(target) and module.startswith(target + "."))})
        for module, imports in GRAPH.items()
    }
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in edges:
        if module not in index:
            visit(module)
    return found


def test_no_import_circle():
    cycles = _cycles()
    assert not cycles, "import circles (functions' imports included):\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_circle_finder_finds_a_circle(monkeypatch):
    """The check above could be vacuous; a planted circle must be found."""
    planted = dict(GRAPH)
    planted["fundguard.models.data"] = [*GRAPH["fundguard.models.data"], ("fundguard.models.volatility", None, 1)]
    monkeypatch.setitem(globals(), "GRAPH", planted)
    assert any("fundguard.models.data" in c and "fundguard.models.volatility" in c for c in _cycles())


def test_every_module_has_a_layer():
    assert sorted(MODULES) == sorted(RANK)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_down_the_layers(module):
    upward = [f"{MODULES[module].relative_to(REPO)}:{line}: imports {target} (layer {RANK[target]}) from layer {RANK[module]}"
              for target, _, line in GRAPH[module] if target != module and RANK[target] >= RANK[module]]
    assert not upward, "\n".join(upward)


def test_imports_inside_functions_only_where_stated():
    found = []
    for module, path in MODULES.items():
        for function in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)) and module not in LAZY:
                found += [f"{path.relative_to(REPO)}:{node.lineno} in {function.name}()" for node in ast.walk(function)
                          if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("fundguard"))]
    assert not found, "\n".join(found)


def test_no_module_is_named_like_a_function_the_package_exports():
    """``import fundguard.optimizer.calibrate as m`` is the function; no module hides behind it."""
    import importlib.util

    import fundguard.optimizer as optimizer
    import fundguard.optimizer.job.calibrate as module

    assert module.__name__ == "fundguard.optimizer.job.calibrate" and module.calibrate is optimizer.calibrate
    for name in optimizer.__all__:
        if callable(getattr(optimizer, name)) and not isinstance(getattr(optimizer, name), type):
            assert importlib.util.find_spec(f"fundguard.optimizer.{name}") is None, name


@pytest.mark.parametrize(("old", "new"), [
    ("optimizer.config", "optimizer.job.config"), ("optimizer.preset", "optimizer.job.preset"),
    ("optimizer.report", "optimizer.job.report"), ("optimizer.outputs", "optimizer.job.outputs"),
    ("optimizer.cli", "optimizer.job.cli"), ("optimizer.check", "optimizer.fund.rule"),
])
def test_old_module_paths_re_export_the_new_objects(old, new):
    import importlib

    shim, target = (importlib.import_module(f"fundguard.{m}") for m in (old, new))
    names = getattr(shim, "__all__", None) or target.__all__
    assert names and all(getattr(shim, n) is getattr(target, n) for n in names if hasattr(target, n))


def test_the_method_registry_is_the_one_list_of_methods(capsys):
    import fundguard.optimizer as optimizer
    from fundguard.optimizer import methods
    from fundguard.optimizer.job import cli, config

    assert optimizer.METHODS is methods.METHODS
    for name, method in methods.METHODS.items():
        assert method.name == name and "solver" in method.options and "engine" in method.options
    assert [m for m, method in methods.METHODS.items() if method.distributed] == ["cvar", "exact"]
    with pytest.raises(SystemExit) as info:  # the CLI's choices are the registry's names
        cli.main(["calibrate", "--method", "magic"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert all(f"'{name}'" in err for name in methods.METHODS), err
    # (the CLI spells the names out, so that --help loads no solver; they must be the registry's)
    assert config.METHODS is methods.METHODS and cli.METHOD_NAMES == tuple(methods.METHODS)


def test_every_package_is_installed():
    """pyproject.toml lists packages by hand (package-dir maps models/ and optimizer/ under fundguard):
    a subpackage missing there works in an editable install and is absent from a wheel."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    packages = {module for module, path in MODULES.items() if path.name == "__init__.py"}
    # data-only packages (no Python; listed so that setuptools installs their files without a warning)
    data = {"fundguard.optimizer.job.presets": REPO / "optimizer" / "job" / "presets"}
    for name, folder in data.items():
        assert folder.is_dir() and not list(folder.glob("*.py")) and list(folder.glob("*.json")), name
    assert listed == packages | set(data)


if __name__ == "__main__":  # pragma: no cover - a listing for docs/architecture.md
    for module, imports in GRAPH.items():
        print(module, "->", sorted({t for t, _, _ in imports if t != module}))
    pytest.main([__file__])
