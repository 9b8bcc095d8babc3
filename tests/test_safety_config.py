"""Issue 13, config and sizes: the command line answers bad numbers, dates and sizes with one line and exit 2.

Every case runs ``fundguard.optimizer.job.cli.main`` in this process and checks the exit code, that
stderr is exactly one line naming the key or option (with ``file:line`` for a config key), and
that no traceback is printed. Configs are written under ``tmp_path`` and use the built-in preset
(no price files), so the refusals come before any heavy work.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fundguard.optimizer.job.cli import EXIT_INPUT, main

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


# -- sizes ----------------------------------------------------------------------------------------


def _sized_config(tmp_path: Path, scenarios: str, compute: str = "") -> Path:
    return _config(tmp_path, f'[scenarios]\ninnovations = "parametric"\n{scenarios}\n'
                             f'[problem]\nmethod = "cvar"\n{compute}' + _MARKETS)


@pytest.mark.parametrize(("scenarios", "line", "key"), [
    ("n_scenarios = 1e9", 3, "scenarios.n_scenarios = 1,000,000,000 needs about"),
    ("certify_scenarios = 1_000_000_000_000", 3, "scenarios.certify_scenarios = 1,000,000,000,000 needs about"),
    ("horizon = 10_000_000", 3, "scenarios.horizon = 10,000,000 needs about"),
], ids=["n_scenarios", "certify_scenarios", "horizon"])
@pytest.mark.parametrize("command", ["calibrate", "check"])
def test_runs_too_large_for_memory_are_refused_up_front(tmp_path, capsys, command, scenarios, line, key):
    path = _sized_config(tmp_path, scenarios)
    argv = [command, "--config", str(path), "--quiet"]
    argv += ["--out", str(tmp_path / "out")] if command == "calibrate" else ["--fund", "1e6"]
    code, err = _run(argv, capsys)
    assert code == EXIT_INPUT
    _one_line(err)
    assert err.startswith(f"fundguard: error: {path}:{line}: {key}"), err
    assert " GB of memory " in err and " GB is available" in err
    assert not (tmp_path / "out").exists()


def test_library_and_cli_refuse_with_the_same_error(tmp_path, capsys):
    from fundguard.models.errors import ConfigError
    from fundguard.optimizer.job.calibrate import calibrate

    path = _sized_config(tmp_path, "n_scenarios = 1e9")
    with pytest.raises(ConfigError) as info:
        calibrate(path)
    code, err = _run(["calibrate", "--config", str(path), "--quiet", "--out", str(tmp_path / "out")], capsys)
    assert code == EXIT_INPUT and err == f"fundguard: error: {info.value}"


def test_the_refusal_points_to_chunked_mode_only_when_that_fits(tmp_path):
    import dataclasses

    from fundguard.models.errors import ConfigError
    from fundguard.optimizer.job.compute import check_memory, estimate_memory, usable_cpus
    from fundguard.optimizer.job.config import load_config

    cfg = load_config(_sized_config(tmp_path, "n_scenarios = 5_000_000"))
    in_memory = estimate_memory(cfg, "cvar")
    local_cfg = dataclasses.replace(cfg, compute=dataclasses.replace(cfg.compute, workers=usable_cpus()))
    local = estimate_memory(local_cfg, "cvar", mode="local")
    driver = estimate_memory(cfg, "cvar", mode="driver")
    assert driver < local < in_memory  # chunked: this process holds O(N) summaries, the workers the chunks
    check_memory(cfg, "cvar", available=in_memory)  # fits exactly: no error
    hints = {}
    for name, available in {"local": (local + in_memory) // 2, "remote": (driver + local) // 2,
                            "none": driver // 2}.items():
        with pytest.raises(ConfigError) as info:
            check_memory(cfg, "cvar", available=available)
        hints[name] = str(info.value)
    assert f"[compute] workers = {usable_cpus()} or --workers {usable_cpus()}" in hints["local"]
    assert "--scheduler" in hints["remote"] and "[compute] workers" not in hints["remote"]
    assert "chunked" not in hints["none"] and hints["none"].endswith("lower it")
    # "certified" cannot run chunked: the hint says which method would
    with pytest.raises(ConfigError, match="with method 'cvar'"):
        check_memory(cfg, "certified", available=(local + in_memory) // 2)


@pytest.mark.slow
def test_the_estimate_is_within_the_stated_factor_of_a_real_peak():
    # tracemalloc sees numpy's allocations; a moderate run (about 0.3 GB) of the in-memory path.
    # The preset's own 20,000 fit scenarios and 15,000 certificate scenarios (was 60,000 and
    # 40,000: 260 s in CI, the slowest test; the run's time is the participation solve, the
    # sensitivities and the decision analysis, all O(N)). The estimate's terms are all
    # proportional to the sizes and still make up most of the peak here (measured ratios 0.86 for
    # cvar and 1.11 for certified), so the same band still tests them.
    import dataclasses
    import tracemalloc

    from fundguard.optimizer.job.calibrate import calibrate
    from fundguard.optimizer.job.compute import estimate_memory
    from fundguard.optimizer.job.preset import default_config

    cfg = default_config()
    cfg = dataclasses.replace(cfg, scenarios=dataclasses.replace(cfg.scenarios, n_scenarios=20_000,
                                                                 certify_scenarios=15_000))
    for method in ("cvar", "certified"):
        tracemalloc.start()
        try:
            calibrate(cfg, method=method)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        ratio = estimate_memory(cfg, method) / peak
        assert 1 / 1.5 < ratio < 1.5, (method, ratio)


@pytest.mark.parametrize(("argv", "fragment"), [
    (["--workers", "0"], "--workers must be an integer >= 1, got 0"),
    (["--workers", "100000"], "--workers = 100000 would start 100000 worker processes"),
])
@pytest.mark.parametrize("command", ["calibrate", "frontier"])
def test_workers_out_of_range_is_one_line(tmp_path, capsys, command, argv, fragment):
    code, err = _run([command, *argv, "--method", "cvar", "--quiet"], capsys)
    assert code == EXIT_INPUT
    _one_line(err)
    assert fragment in err and ("--force-workers" in err or "0" in argv)


def test_config_workers_above_the_limit_cite_the_line(tmp_path, capsys):
    path = _sized_config(tmp_path, "", compute="[compute]\nworkers = 100000\n")
    code, err = _run(["calibrate", "--config", str(path), "--quiet", "--out", str(tmp_path / "out")], capsys)
    assert code == EXIT_INPUT
    _one_line(err)
    assert f"{path}:7: compute.workers = 100000 would start" in err and "force_workers" in err, err


def test_force_workers_lifts_only_the_worker_limit(tmp_path, capsys):
    # forced, the worker count passes; the size check still refuses (1e5 idle workers alone need
    # about 25 TB), so no cluster is started by this test
    path = _sized_config(tmp_path, "")
    code, err = _run(["calibrate", "--config", str(path), "--workers", "100000", "--force-workers", "--quiet",
                      "--out", str(tmp_path / "out")], capsys)
    assert code == EXIT_INPUT
    _one_line(err)
    assert "would start" not in err and "on this machine (a local Dask cluster and this process)" in err, err


# -- names ----------------------------------------------------------------------------------------


def test_preset_build_with_a_market_twice_is_one_line(tmp_path, capsys):
    (tmp_path / "a.csv").write_text("date,close\n2020-01-01,1\n")
    (tmp_path / "b.csv").write_text("date,close\n2020-01-01,2\n")
    out = tmp_path / "preset.json"
    code, err = _run(["preset", "build", "--out", str(out), "--prices", f"BTC={tmp_path / 'a.csv'}",
                      f"BTC={tmp_path / 'b.csv'}"], capsys)
    assert code == EXIT_INPUT
    _one_line(err)
    assert "market names must be unique; repeated: ['BTC']" in err
    assert not out.exists()


def test_market_name_with_a_newline_is_one_line(tmp_path, capsys):
    path = _config(tmp_path, '[[markets]]\nname = "BTC\\n| x |"\nopen_interest = 1e9\ndaily_volume = 3e9\n')
    code, err = _run(["calibrate", "--config", str(path), "--quiet", "--out", str(tmp_path / "out")], capsys)
    assert code == EXIT_INPUT
    _one_line(err)
    assert f"{path}:2: markets[0].name must not contain control characters" in err
