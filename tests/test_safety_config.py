"""Issue 13, config and sizes: the command line answers bad numbers, dates and sizes with one line and exit 2.

Every case runs ``fundguard.optimizer.cli.main`` in this process and checks the exit code, that
stderr is exactly one line naming the key or option (with ``file:line`` for a config key), and
that no traceback is printed. Configs are written under ``tmp_path`` and use the built-in preset
(no price files), so the refusals come before any heavy work.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fundguard.optimizer.cli import EXIT_INPUT, main

_MARKETS = "".join(f'[[markets]]\nname = "{m}"\nopen_interest = 1e9\ndaily_volume = 3e9\n' for m in ("BTC", "ETH"))


def _run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err.strip()


def _one_line(err: str) -> None:
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and err.startswith("fundguard: error: "), err


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fund.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ('[scenarios]\nstress_dates = ["2021-02-30"]\n' + _MARKETS, 2,
         "scenarios.stress_dates[0] is not a calendar date: '2021-02-30'"),
        ('[problem]\nalpha = 0.01\ncost_of_capital = inf\n' + _MARKETS, 3, "problem.cost_of_capital must be a finite number"),
        ('[problem]\npremium_max = 1.25\n' + _MARKETS, 2, "problem.premium_max must be a premium rate in [0, 1]"),
        (_MARKETS + "current_rate = inf\n", 9, "markets[1].current_rate must be a finite number, got inf"),
        (_MARKETS + "gap = nan\n", 9, "markets[1].gap must be a finite number, got nan"),
    ],
    ids=["feb-30", "cost-of-capital-inf", "premium-max-percent", "current-rate-inf", "gap-nan"],
)
@pytest.mark.parametrize("command", ["calibrate", "check"])
def test_bad_config_numbers_and_dates_are_one_line_with_file_and_line(tmp_path, capsys, command, text, line, fragment):
    path = _config(tmp_path, text)
    argv = [command, "--config", str(path), "--quiet"]
    argv += ["--out", str(tmp_path / "out")] if command == "calibrate" else ["--fund", "1e6"]
    code, err = _run(argv, capsys)
    assert code == EXIT_INPUT
    _one_line(err)
    assert f"{path}:{line}: " in err and fragment in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["calibrate", "frontier", "check"])
def test_negative_seed_is_one_line(tmp_path, capsys, command):
    argv = [command, "--seed", "-5", "--quiet"]
    argv += ["--fund", "1e6"] if command == "check" else []
    code, err = _run(argv, capsys)
    assert code == EXIT_INPUT
    _one_line(err)
    assert "--seed must be an integer >= 0, got -5" in err


def _result_file(tmp_path: Path, fund_target: str, markets=("BTC", "ETH", "SOL")) -> Path:
    path = tmp_path / "result.json"
    path.write_text('{"schema_version": 1, "markets": %s, "policy": {"fund_target": %s}}'
                    % (json.dumps(list(markets)), fund_target))
    return path


@pytest.mark.parametrize(("fund_target", "fragment"), [("NaN", "holds NaN"), ("Infinity", "holds Infinity"),
                                                       ("-Infinity", "holds -Infinity"), ("-3", "got -3")])
def test_check_result_with_non_finite_target_is_one_line(tmp_path, capsys, fund_target, fragment):
    path = _result_file(tmp_path, fund_target)
    code, err = _run(["check", "--fund", "1e6", "--result", str(path), "--quiet"], capsys)
    assert code == EXIT_INPUT
    _one_line(err)
    assert str(path) in err and fragment in err, err


def test_check_result_of_other_markets_is_one_line(tmp_path, capsys):
    path = _result_file(tmp_path, "1e7", markets=("BTC",))
    code, err = _run(["check", "--fund", "1e6", "--result", str(path), "--quiet"], capsys)
    assert code == EXIT_INPUT
    _one_line(err)
    assert "is for markets ['BTC'], the config has ['BTC', 'ETH', 'SOL']" in err
