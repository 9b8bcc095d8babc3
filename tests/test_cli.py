"""Tests of the fundguard command line (fundguard.optimizer.job.cli)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from arch.univariate import GARCH, ConstantMean, StudentsT

from fundguard.optimizer.job.cli import EXIT_INPUT, EXIT_OK, main


@pytest.fixture(scope="module")
def price_file(tmp_path_factory):
    model = ConstantMean(None)
    model.volatility = GARCH(1, 1, 1)
    model.distribution = StudentsT(seed=np.random.default_rng(5))
    returns = model.simulate([0.0, 0.05, 0.05, 0.10, 0.88, 5.0], 1500, burn=500).data.to_numpy() / 100
    prices = 100 * np.exp(np.cumsum(returns))
    path = tmp_path_factory.mktemp("cli") / "prices.csv"
    pd.DataFrame({"date": pd.date_range("2020-01-01", periods=1500, freq="D").strftime("%Y-%m-%d"), "close": prices}).to_csv(path, index=False)
    return path


def test_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "fit" in capsys.readouterr().out


def test_help_loads_no_solver_and_lists_every_method():
    """`fundguard --help` imports the command line only (fast); its --method choices are the registry's."""
    import subprocess
    import sys

    code = ("import sys, fundguard.optimizer.job.cli as cli\n"
            "heavy = [m for m in ('cvxpy', 'arch', 'scipy', 'pandas', 'matplotlib', 'fundguard.optimizer.api') "
            "if m in sys.modules]\nprint(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    from fundguard.optimizer import METHODS
    from fundguard.optimizer.job.cli import METHOD_NAMES

    assert METHOD_NAMES == tuple(METHODS)


def test_fit_json_is_strict_and_recovers_the_model(price_file, capsys):
    assert main(["fit", "--spec", "GJR-t", "--json", f"SIM={price_file}"]) == EXIT_OK
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0]["market"] == "SIM" and rows[0]["spec"] == "GJR-t"
    assert rows[0]["frequency"] == "daily" and rows[0]["n_returns"] == 1499
    assert rows[0]["params"]["beta"] == pytest.approx(0.88, abs=0.06)


def test_fit_table(price_file, capsys):
    assert main(["fit", str(price_file)]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:2] == ["market", "freq"]
    assert "prices" in out  # market named after the file


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["fit", "missing.csv"], "missing.csv"),
        (["fit", "--spec", "GJR", "x.csv"], "--spec"),
        (["fit", "--spec", "FIGARCH-t", "x.csv"], "VolSpec.vol"),
    ],
)
def test_bad_input_exit_code_and_message(argv, fragment, capsys):
    assert main(argv) == EXIT_INPUT
    captured = capsys.readouterr()
    assert fragment in captured.err and captured.out == ""


@pytest.mark.parametrize(
    ("raised", "code", "fragment"),
    [
        (KeyboardInterrupt(), 130, "interrupted"),
        (OSError(28, "No space left on device", "/data/out/result.json"), EXIT_INPUT,
         "No space left on device: '/data/out/result.json'"),
        (PermissionError(13, "Permission denied", "/etc/prices.csv"), EXIT_INPUT, "Permission denied: '/etc/prices.csv'"),
        (OSError(18, "Invalid cross-device link", "a", None, "b"), EXIT_INPUT, "Invalid cross-device link: 'a' -> 'b'"),
        (MemoryError(), EXIT_INPUT, "out of memory"),
    ],
    ids=["ctrl-c", "disk-full", "permission", "two-paths", "memory"],
)
def test_system_failures_are_one_line_with_their_exit_code(monkeypatch, capsys, raised, code, fragment):
    import fundguard.optimizer.job.cli as cli

    def fail(args):
        raise raised

    monkeypatch.setattr(cli, "_cmd_fit", fail)
    assert main(["fit", "x.csv"]) == code
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("argv", [["calibrate", "--method", "magic"], ["check", "--fund", "abc"], ["nosuch"]])
def test_usage_errors_are_one_line(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == EXIT_INPUT
    assert len(err.strip().splitlines()) == 1 and err.startswith("fundguard: error: ") and "--help" in err, err
