"""Issue 13, price inputs at the command line: a bad price file is one line on stderr and exit 2.

Each bad file is built in ``tmp_path`` and run through ``fundguard fit`` (the shortest command that
reads prices) in-process; one case runs a real process, and ``calibrate`` is checked for the
``strict_prices`` config key.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fundguard.optimizer.job.cli import EXIT_INPUT, EXIT_OK, main
from fundguard.optimizer.job.config import parse_config

DAYS = pd.date_range("2021-01-01", periods=300, freq="D", tz="UTC")


def _frame(stamps=None, close=None) -> pd.DataFrame:
    rng = np.random.default_rng(13)
    if close is None:
        close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.03, len(DAYS))))
    return pd.DataFrame({"timestamp": DAYS.strftime("%Y-%m-%d") if stamps is None else stamps, "close": close})


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("fundguard: error: ") and "Traceback" not in captured.err
    assert captured.out == ""
    return lines[0]


def test_binance_millisecond_timestamps_fit_as_daily(tmp_path, capsys):
    path = tmp_path / "BTCUSDT-1d.csv"
    _frame(DAYS.as_unit("ms").asi8).rename(columns={"timestamp": "open_time"}).to_csv(path, index=False)
    assert main(["fit", "--spec", "GARCH-normal", "--json", f"BTC={path}"]) == EXIT_OK
    (row,) = json.loads(capsys.readouterr().out)
    assert row["frequency"] == "daily" and row["n_returns"] == 299
    assert row["first"].startswith("2021-01-02") and row["last"].startswith("2021-10-27")


def _parquet(path: Path, frame: pd.DataFrame) -> None:
    pytest.importorskip("pyarrow")
    frame.to_parquet(path)


def _text_prices(path: Path) -> None:
    frame = _frame()
    _parquet(path, frame.assign(close=frame["close"].map(repr).where(frame.index != 9, "12,5")))


BAD_FILES = {
    # name: (file name, writer, fragment of the one line)
    "corrupt parquet": ("p.parquet", lambda p: p.write_bytes(b"PAR1 garbage"), "is not a readable Parquet file"),
    "corrupt csv.gz": ("p.csv.gz", lambda p: p.write_bytes(b"\x1f\x8b\x08 garbage"), "is not a readable CSV file"),
    "truncated csv.gz": ("p.csv.gz", lambda p: p.write_bytes(gzip.compress(_frame().to_csv(index=False).encode())[:300]),
                         "is not a readable CSV file"),
    "directory": ("p.csv", lambda p: p.mkdir(), "is a directory, not a file"),
    "parquet text price": ("p.parquet", _text_prices, "market 'p': price '12,5' at 2021-01-10"),
    "date past 2262": ("p.csv", lambda p: _frame(pd.date_range("2300-01-01", periods=300, freq="D", unit="s").strftime(
        "%Y-%m-%d")).to_csv(p, index=False), "date 2300-01-01 00:00:00+00:00 in row 0 of column 'timestamp'"),
    "epoch days": ("p.csv", lambda p: _frame(np.arange(18628, 18928)).to_csv(p, index=False),
                   "timestamp 18628 in row 0 of column 'timestamp'"),
    "mixed units": ("p.csv", lambda p: _frame(np.r_[DAYS.as_unit("ms").asi8[:5], DAYS.as_unit("s").asi8[5:]]).to_csv(
        p, index=False), "row 5 (1609891200) as epoch seconds"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_price_file_is_one_line_and_exit_2(case, tmp_path, capsys):
    name, write, fragment = BAD_FILES[case]
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow", reason="Parquet needs the parquet extra (pyarrow); without it the line says so")
    path = tmp_path / name
    write(path)
    assert main(["fit", "--spec", "GARCH-normal", str(path)]) == EXIT_INPUT
    line = _one_error_line(capsys)
    assert str(path) in line and fragment in line, line


def test_unreadable_price_file_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    path = tmp_path / "locked.csv"
    _frame().to_csv(path, index=False)

    def refuse(*args, **kwargs):  # root reads through chmod 000, so the refusal is simulated
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(pd, "read_csv", refuse)
    assert main(["fit", str(path)]) == EXIT_INPUT
    assert _one_error_line(capsys) == f"fundguard: error: price file {str(path)!r} cannot be read: Permission denied"


def test_corrupt_file_in_a_real_process(tmp_path):
    path = tmp_path / "p.parquet"
    path.write_bytes(b"PAR1 garbage")
    run = _run("fit", str(path), cwd=tmp_path)
    assert run.returncode == EXIT_INPUT, run.stderr
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr and str(path) in run.stderr


def _fat_finger(path: Path) -> None:
    close = _frame()["close"].to_numpy().copy()
    close[200] *= 1e6
    _frame(close=close).to_csv(path, index=False)


def _run(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fundguard.optimizer.job.cli", *argv], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_fat_finger_print_warns_on_stderr_naming_the_date(tmp_path):
    # A real process: under pytest the warning would be captured by pytest, not printed.
    path = tmp_path / "BTC.csv"
    _fat_finger(path)
    run = _run("fit", "--spec", "GARCH-normal", "--json", str(path), cwd=tmp_path)
    assert run.returncode == EXIT_OK, run.stderr
    assert "PriceJumpWarning" in run.stderr and "market 'BTC'" in run.stderr and "2021-07-20" in run.stderr
    warning = [line for line in run.stderr.splitlines() if "PriceJumpWarning" in line]
    assert len(run.stderr.splitlines()) == 1 and warning[0].startswith("fundguard: warning: "), run.stderr
    assert json.loads(run.stdout)[0]["market"] == "BTC"  # a warning, not a failure


def _config(tmp_path: Path, strict: str) -> Path:
    path = tmp_path / "fund.toml"
    path.write_text(
        "[[markets]]\n"
        'name = "BTC"\n'
        'prices = "BTC.csv"\n'
        f"strict_prices = {strict}\n"
        "open_interest = 1e9\n"
        "daily_volume = 3e9\n",
        encoding="utf-8",
    )
    return path


def test_strict_prices_config_key(tmp_path):
    market = {"name": "X", "open_interest": 1, "daily_volume": 1}
    assert parse_config({"markets": [market]}).markets[0].strict_prices is False
    assert parse_config({"markets": [{**market, "strict_prices": True}]}).markets[0].strict_prices is True


def test_calibrate_with_strict_prices_stops_at_the_fat_finger(tmp_path, capsys):
    _fat_finger(tmp_path / "BTC.csv")
    config = _config(tmp_path, "true")
    out = tmp_path / "out"
    assert main(["calibrate", "--quiet", "--config", str(config), "--out", str(out)]) == EXIT_INPUT
    line = _one_error_line(capsys)
    assert "BTC.csv: market 'BTC': price moved" in line and "2021-07-20" in line, line


def test_strict_prices_must_be_true_or_false(tmp_path, capsys):
    _fat_finger(tmp_path / "BTC.csv")
    config = _config(tmp_path, '"yes"')
    assert main(["calibrate", "--quiet", "--config", str(config), "--out", str(tmp_path / "out")]) == EXIT_INPUT
    line = _one_error_line(capsys)
    assert f"{config}:4: markets[0].strict_prices must be true or false" in line, line


def test_parquet_without_pyarrow_is_one_line_naming_the_extra(tmp_path, capsys, monkeypatch):
    # pandas' ImportError is five lines (both engines it tried); the user gets one, with the fix
    def missing(*args, **kwargs):
        raise ImportError("Unable to find a usable engine; tried using: 'pyarrow', 'fastparquet'.\nA suitable ...\n- x")

    monkeypatch.setattr(pd, "read_parquet", missing)
    path = tmp_path / "p.parquet"
    path.write_bytes(b"PAR1 whatever")
    assert main(["fit", "--spec", "GARCH-normal", str(path)]) == EXIT_INPUT
    line = _one_error_line(capsys)
    assert str(path) in line and "needs pyarrow" in line and "pip install 'fundguard[parquet]'" in line, line
