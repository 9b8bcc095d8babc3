"""The API reference (docs/api): it builds with warnings as errors, names every public object, and
a broken cross reference fails the build."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api"


def _build(source: Path, out: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("sphinx", reason="Sphinx is not installed (pip install -e '.[test]' installs it)")
    pytest.importorskip("numpydoc", reason="numpydoc is not installed (pip install -e '.[test]' installs it)")
    return subprocess.run([sys.executable, "-m", "sphinx", "-q", "-W", "--keep-going", "-b", "html",
                           "-d", str(out / ".doctrees"), str(source), str(out / "html")],
                          capture_output=True, text=True, timeout=600)


def _documented() -> set[str]:
    """Names documented in index.rst, as module.name."""
    names, module = set(), ""
    for line in (DOCS / "index.rst").read_text(encoding="utf-8").splitlines():
        if m := re.match(r"\.\. currentmodule:: (\S+)", line):
            module = m.group(1)
        elif m := re.match(r"\.\. auto(?:function|class|data|exception):: (\S+)", line):
            names.add(f"{module}.{m.group(1)}")
    return names


@pytest.mark.parametrize("package", ["fundguard.optimizer", "fundguard.models"])
def test_every_public_name_is_in_the_reference(package):
    import importlib

    exported = {f"{package}.{name}" for name in importlib.import_module(package).__all__}
    missing = sorted(exported - _documented())
    assert not missing, f"add to docs/api/index.rst: {missing}"


def test_the_reference_builds_with_warnings_as_errors(tmp_path):
    done = _build(DOCS, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    page = (tmp_path / "html" / "index.html").read_text(encoding="utf-8")
    for name in ("calibrate", "solve", "ScenarioSet", "fit_volatility", "record_run"):
        assert f'id="fundguard.' in page and f".{name}\"" in page, name


def test_a_broken_reference_fails_the_build(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(DOCS, source)
    index = source / "index.rst"
    index.write_text(index.read_text(encoding="utf-8")
                     + "\n\nSee :func:`fundguard.optimizer.no_such_function`.\n", encoding="utf-8")
    done = _build(source, tmp_path / "out")
    assert done.returncode != 0 and "no_such_function" in done.stderr
