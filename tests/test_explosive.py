"""Explosive volatility paths (issue 15, item 6): selection for simulation, the stated path bound, the exit code.

A reviewer fitted DOGE daily as GARCH-ged, simulated it with filtered historical simulation and
got daily log returns of +46 and a fund target of 7x the book, reported as "meets alpha". The
cause: the GED fit sits at its shape bound (nu = 1.01) and leaves standardized residuals with
mean(z^2) = 1.31, so the bootstrap runs the variance recursion at persistence 1.067 although the
fitted law's is 0.960.
"""

from __future__ import annotations

import json
import math
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from arch.univariate import SkewStudent

from fundguard.models import FitError, ReturnPaths, ScenarioError, VolModel, VolSpec, fit_volatility, load_prices, log_returns
from fundguard.models import SIMULATION_CANDIDATES, simulate_returns
from fundguard.models.scenarios.bounds import MAX_DAILY_LOG_RETURN, PathCheck, check_paths, period_bound
from fundguard.models.volatility import ExplosiveVolatilityWarning, _residual_variance_ratio


def _explosive_garch(n: int = 800, seed: int = 3) -> pd.Series:
    """Returns of a GARCH(1,1)-normal with alpha + beta = 1.04: the variance grows 4% a day on average."""
    rng = np.random.default_rng(seed)
    omega, alpha, beta = 1e-5, 0.12, 0.92
    returns, variance = np.empty(n), 1e-4
    for t in range(n):
        returns[t] = math.sqrt(variance) * rng.standard_normal()
        variance = omega + alpha * returns[t] ** 2 + beta * variance
    return pd.Series(returns, index=pd.date_range("2020-01-01", periods=n, freq="D", tz="UTC"), name="BOOM")


def _numbers(spec: VolSpec, params: dict[str, float]) -> VolModel:
    """A model rebuilt from numbers with the given parameters (no residuals)."""
    persistence = params["beta"] if spec.vol == "EGARCH" else params["alpha"] + params["beta"] + params.get("gamma", 0) / 2
    return VolModel.from_dict({
        "spec": {"vol": spec.vol, "dist": spec.dist, "mean": spec.mean}, "params": params,
        "last_variance": 4e-4, "next_variance": 4e-4, "last_residual": 0.0, "loglikelihood": 0.0, "aic": 0.0,
        "bic": 0.0, "nobs": 1000, "scale": 100.0, "period_seconds": 86400.0, "name": "X",
        "diagnostics": {"converged": True, "persistence": persistence, "half_life": None,
                        "unconditional_variance": None, "annualized_volatility": None, "periods_per_year": 365.25,
                        "ljung_box_pvalue": 0.5, "ljung_box_lags": 10}})


# -- selection for simulation --------------------------------------------------------------------

def test_a_known_explosive_garch_is_excluded_by_auto_selection():
    series = _explosive_garch()
    # Fitted under arch's persistence bound, GARCH-normal lands on it. GARCH-t lands on it too with
    # some releases of arch/scipy; with others (arch 8.0, scipy 1.15 and 1.17, measured 2026-12-02)
    # it escapes to a stationary law with nu = 2.4 whose residuals have mean z^2 = 2.0, so their
    # own persistence is 1.87: the bootstrap excludes it on that. Either way both are excluded for
    # "fhs", and with nothing left the error is one line naming the market and both reasons.
    with pytest.raises(FitError) as info:
        fit_volatility(series, candidates=[VolSpec("GARCH", "normal"), VolSpec("GARCH", "t")], innovations="fhs")
    message = str(info.value)
    assert "market 'BOOM'" in message and "\n" not in message
    assert "GARCH-normal: non-stationary: persistence 1.000000 >= 1" in message
    assert re.search(r"GARCH-t: non-stationary: persistence (1\.000000|with the residuals' own moments \d+\.\d+) >= 1",
                     message)
    with pytest.warns(ExplosiveVolatilityWarning, match="GARCH-normal persistence 1.000000 >= 1"):
        fit_volatility(series, VolSpec("GARCH", "normal"), innovations="parametric")
    # The generating model itself, alpha + beta = 1.04: explosive under every innovation.
    true = _numbers(VolSpec("GARCH", "normal"), {"mu": 0.0, "omega": 1e-5, "alpha": 0.12, "beta": 0.92})
    assert true.diagnostics.stationary is False
    for innovations in ("parametric", "fhs", "evt"):
        assert "persistence 1.040000 >= 1" in true.explosive_reason(innovations)


def test_an_explicit_explosive_spec_is_fitted_but_warned_about():
    with pytest.warns(ExplosiveVolatilityWarning, match="'BOOM': GARCH-normal persistence"):
        model = fit_volatility(_explosive_garch(), VolSpec("GARCH", "normal"))
    assert model.diagnostics.stationary is False and math.isinf(model.diagnostics.half_life)


def test_residual_persistence_is_the_residuals_own_moments():
    rng = np.random.default_rng(2)
    series = pd.Series(rng.standard_t(4, 1000) * 0.02 / math.sqrt(2), name="X",
                       index=pd.date_range("2020-01-01", periods=1000, freq="D", tz="UTC"))
    model = fit_volatility(series, VolSpec("GJR", "normal"))
    z, p = model.std_resid, model.params
    by_hand = p["alpha"] * np.mean(z**2) + p["gamma"] * np.mean(z**2 * (z < 0)) + p["beta"]
    assert model.diagnostics.residual_persistence == pytest.approx(by_hand, rel=1e-12)
    assert model.diagnostics.residual_stationary is bool(by_hand < 1 - 1e-6)


def test_gjr_skewt_persistence_uses_the_laws_negative_share():
    params = {"mu": 0.0, "omega": 1e-5, "alpha": 0.05, "gamma": 0.2, "beta": 0.8, "nu": 5.0, "lambda": 0.3}
    from fundguard.models.volatility import _persistence  # noqa: PLC0415 - the formula itself

    share = SkewStudent().partial_moment(2, 0.0, [5.0, 0.3])
    assert share == pytest.approx(0.38338642537952106)  # right-skewed: less than half the variance below 0
    assert _persistence(params, VolSpec("GJR", "skewt")) == pytest.approx(0.85 + 0.2 * share, rel=1e-12)
    assert _persistence(params, VolSpec("GJR", "t")) == pytest.approx(0.95, rel=1e-12)


@pytest.mark.parametrize(
    ("dist", "extra", "alpha", "finite"),
    [("normal", {}, 0.5, True), ("t", {"nu": 5.0}, 0.1, False), ("skewt", {"nu": 5.0, "lambda": 0.1}, 0.1, False),
     ("ged", {"nu": 1.5}, 3.0, True), ("ged", {"nu": 1.0}, 1.40, True), ("ged", {"nu": 1.0}, 1.43, False),
     ("ged", {"nu": 0.8}, 0.1, False), ("t", {"nu": 5.0}, 0.0, True)],
    ids=["normal", "t", "skewt", "ged-1.5", "laplace-below-sqrt2", "laplace-above-sqrt2", "ged-0.8", "t-alpha-0"],
)
def test_egarch_needs_the_exponential_moment_of_its_law(dist, extra, alpha, finite):
    """E[exp(c |z|)] under the unit-variance law: Laplace (GED nu = 1) has density exp(-sqrt(2) |z|)."""
    model = _numbers(VolSpec("EGARCH", dist), {"mu": 0.0, "omega": -0.3, "alpha": alpha, "gamma": 0.0, "beta": 0.9, **extra})
    reason = model.explosive_reason("parametric")
    assert (reason is None) is finite, reason
    assert model.diagnostics.stationary is finite
    # 'evt' bootstraps generalized Pareto tails: no exponential moment, whatever the law.
    assert model.explosive_reason("evt") is not None


def test_rebuilt_model_keeps_its_diagnostics_through_json():
    model = _numbers(VolSpec("EGARCH", "t"), {"mu": 0.0, "omega": -0.3, "alpha": 0.1, "gamma": 0.0, "beta": 0.9, "nu": 5.0})
    again = VolModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert again.diagnostics.stationary is False and math.isnan(again.diagnostics.residual_persistence)


def test_bad_innovations_is_one_line():
    from fundguard.models import SpecificationError

    with pytest.raises(SpecificationError, match="innovations must be one of"):
        fit_volatility(_explosive_garch(), VolSpec("GARCH", "normal"), innovations="bootstrap")


@pytest.fixture(scope="module")
def doge(shared_data) -> pd.Series:
    path = shared_data / "binance_DOGEUSDT_daily.csv"
    if not path.is_file():
        pytest.skip(f"DOGE daily prices not found at {path}")
    return log_returns(load_prices(path, name="DOGE"))["DOGE"].dropna()


def test_doge_fhs_selects_a_stationary_spec_or_is_flagged(doge):
    """Real data: the reviewer's GARCH-ged is refused for 'fhs' (residual persistence 1.0665), what is
    chosen is stationary both ways, and the paths of either are counted against the bound."""
    model = fit_volatility(doge, candidates=SIMULATION_CANDIDATES, innovations="fhs")
    assert model.diagnostics.stationary and model.diagnostics.residual_stationary
    assert "residuals' own moments 1.0665" in model.rejected["GARCH-ged"]
    # The same spec passes for parametric innovations: the law's persistence is 0.960.
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExplosiveVolatilityWarning)
        garch = fit_volatility(doge, VolSpec("GARCH", "ged"), innovations="parametric")
    assert garch.diagnostics.persistence == pytest.approx(0.9597, abs=1e-3)
    with pytest.warns(ExplosiveVolatilityWarning, match="'fhs' draws those"):
        fit_volatility(doge, VolSpec("GARCH", "ged"), innovations="fhs")
    # The reviewer's paths: GARCH-ged under fhs exceeded the bound (+46 at 20,000 paths, seed 1);
    # FHS now rescales the residuals to unit mean square, but DOGE's z = 22 days still break it.
    check = check_paths(simulate_returns({"DOGE": garch}, 30, 5000, innovations="fhs", seed=1))
    assert check.exceeded and check.largest > MAX_DAILY_LOG_RETURN
    # EGARCH-ged is stationary but bootstraps z = 20 through exp(alpha |z|), alpha = 0.50: its
    # residuals imply 18.8x the data's variance, so it is refused too; what is chosen stays in bounds.
    ratio = re.search(r"long-run variance with the residuals' own moments is ([\d.]+)x", model.rejected["EGARCH-ged"])
    assert ratio and 15.0 < float(ratio.group(1)) < 23.0  # 18.8x or 18.7x by release (the fit's last digits)
    assert model.diagnostics.residual_variance_ratio <= 4.0
    # Measured at 20,000 paths, seed 1: EGARCH-ged 144 beyond the bound (largest 17.8), the chosen
    # EGARCH-normal 3 (largest 3.2: DOGE's own history has a 1.59 day in 2,371).
    egarch = fit_volatility(doge, VolSpec("EGARCH", "ged"), innovations="parametric")
    refused = check_paths(simulate_returns({"DOGE": egarch}, 30, 5000, innovations="fhs", seed=1))
    chosen = check_paths(simulate_returns({"DOGE": model}, 30, 5000, innovations="fhs", seed=1))
    assert refused.n_exceeding >= 20 * max(chosen.n_exceeding, 1) and chosen.largest < 4.0


def test_residual_variance_ratio_matches_a_simulated_recursion():
    """EGARCH's long-run variance under bootstrapped residuals, by the product formula, against the
    recursion run for 400,000 steps on draws from the same residuals (an independent estimate)."""
    rng = np.random.default_rng(11)
    z = rng.standard_t(6, 3000) / math.sqrt(1.5)
    params = {"mu": 0.0, "omega": -0.4, "alpha": 0.25, "gamma": -0.05, "beta": 0.95}
    ratio = _residual_variance_ratio(params, VolSpec("EGARCH", "t"), z, 1.0)
    zs = z / math.sqrt(np.mean(z * z))
    draws = zs[rng.integers(0, zs.size, 400_000)]
    g = params["alpha"] * (np.abs(draws) - math.sqrt(2 / math.pi)) + params["gamma"] * draws
    log_v = params["omega"] / (1 - params["beta"])
    values = np.empty(draws.size)
    for t in range(draws.size):
        log_v = params["omega"] + g[t] + params["beta"] * log_v
        values[t] = log_v
    simulated = float(np.mean(np.exp(values[1000:])))
    assert ratio == pytest.approx(simulated, rel=0.05)
    # GARCH: the closed form omega / (1 - alpha - beta - gamma E[z^2 1{z<0}]) on unit-mean-square residuals.
    garch = {"mu": 0.0, "omega": 2e-5, "alpha": 0.1, "gamma": 0.04, "beta": 0.8}
    expected = 2e-5 / (1 - 0.1 - 0.8 - 0.04 * np.mean(zs * zs * (zs < 0))) / 4e-4
    assert _residual_variance_ratio(garch, VolSpec("GJR", "t"), z, 4e-4) == pytest.approx(expected, rel=1e-12)


# -- the stated bound on paths --------------------------------------------------------------------

def _paths(n: int = 50, t: int = 7) -> np.ndarray:
    return np.random.default_rng(0).normal(0.0, 0.05, (n, t, 2))


def test_check_paths_counts_exactly_the_paths_built_to_exceed():
    returns = _paths()
    returns[3, 2, 0] = 2.0          # at the bound: not beyond it
    returns[5, 0, 0] = 2.0001       # just above, market A
    returns[8, 6, 1] = -2.5         # a fall, market B
    returns[9, 1, 0] = returns[9, 4, 1] = 3.0   # both markets: one path, counted once in total
    returns[11, 3, 1] = 46.2        # the reviewer's DOGE day
    paths = ReturnPaths(returns, np.full_like(returns, 0.05), ["A", "B"], period=pd.Timedelta("1D"))
    check = check_paths(paths)
    assert (check.n_paths, check.n_exceeding) == (50, 4)
    assert dict(check.exceeding_by_market) == {"A": 2, "B": 3}
    assert check.bound == 2.0 and check.largest == 46.2
    # Halves checked apart and merged are the whole.
    halves = [check_paths(ReturnPaths(returns[s], np.full_like(returns[s], 0.05), ["A", "B"], period=pd.Timedelta("1D")))
              for s in (slice(0, 25), slice(25, 50))]
    assert PathCheck.merge(halves) == check


def test_bound_scales_with_the_square_root_of_periods_longer_than_a_day():
    assert period_bound(pd.Timedelta("7D")) == pytest.approx(2.0 * math.sqrt(7))
    assert period_bound(pd.Timedelta("1h")) == period_bound(pd.Timedelta("1D")) == period_bound(None) == 2.0
    returns = np.zeros((4, 3, 1))
    returns[1, 0, 0] = 4.0          # beyond a day's bound, within a week's (5.29)
    volatility = np.full_like(returns, 0.01)
    assert check_paths(ReturnPaths(returns, volatility, ["A"], period=pd.Timedelta("1D"))).n_exceeding == 1
    assert check_paths(ReturnPaths(returns, volatility, ["A"], period=pd.Timedelta("7D"))).n_exceeding == 0
    assert check_paths(ReturnPaths(returns, volatility, ["A"], period=pd.Timedelta("1h"))).n_exceeding == 1


def test_the_bound_is_above_every_real_daily_move(shared_data):
    """The number's justification, on the data: the largest daily |log return| is DOGE's 1.594; the
    largest hourly one (Bitstamp BTC, 0.206) is 42% of BTC's largest daily move, above the 20% that
    square-root scaling allows, which is why periods shorter than a day keep the daily bound."""
    largest = {}
    for path in sorted(shared_data.glob("binance_*USDT_daily.csv")):
        returns = log_returns(load_prices(path, name="X"))["X"].dropna()
        largest[path.name] = float(returns.abs().max())
    assert max(largest.values()) == pytest.approx(math.log(4.9236), abs=2e-3)  # DOGE, 2021-01-28
    assert max(largest.values()) < MAX_DAILY_LOG_RETURN
    hourly = log_returns(load_prices(shared_data / "bitstamp_BTCUSD_hourly.csv", name="X"))["X"].dropna().abs().max()
    daily = log_returns(load_prices(shared_data / "bitstamp_BTCUSD_daily.csv", name="X"))["X"].dropna().abs().max()
    assert hourly == pytest.approx(0.2055, abs=1e-3) and hourly / daily > 2 / math.sqrt(24)


@pytest.mark.parametrize(
    ("call", "fragment"),
    [(lambda: check_paths(np.zeros((2, 2, 1))), "needs a ReturnPaths"),
     (lambda: period_bound(pd.Timedelta("1D"), 0.0), "max_daily_log_return"),
     (lambda: PathCheck.merge([]), "at least one")],
)
def test_bad_bound_inputs_are_one_line(call, fragment):
    with pytest.raises(ScenarioError, match=fragment):
        call()


# -- the job: notes, result.json, exit code ------------------------------------------------------

_PRESET_TOML = """
[scenarios]
n_scenarios = 1000
certify_scenarios = 2000
horizon = 5
innovations = "parametric"
seed = 3

[problem]
alpha = 0.05
method = "cvar"

[[markets]]
name = "BTC"
open_interest = 1e9
daily_volume = 3e9
"""


def test_cli_run_with_paths_beyond_the_bound_exits_6_with_a_note(tmp_path, monkeypatch, capsys):
    """The plumbing on the built-in preset: a bound of 0.05 a day, which BTC's paths do cross."""
    import functools

    import fundguard.optimizer.job.calibrate as calibrate_module
    from fundguard.optimizer.job.cli import EXIT_IMPLAUSIBLE_PATHS, EXIT_OK, main

    config = tmp_path / "fund.toml"
    config.write_text(_PRESET_TOML)
    assert main(["calibrate", "--config", str(config), "--out", str(tmp_path / "ok"), "--no-frontier"]) == EXIT_OK
    document = json.loads((tmp_path / "ok" / "result.json").read_text())
    assert document["tail"]["path_check"]["fit"]["n_exceeding"] == 0
    assert document["tail"]["path_check"]["certify"]["n_paths"] == 2000
    capsys.readouterr()

    tight = functools.partial(check_paths, max_daily_log_return=0.05)
    monkeypatch.setattr(calibrate_module, "check_paths", tight)
    code = main(["calibrate", "--config", str(config), "--out", str(tmp_path / "flagged"), "--no-frontier"])
    assert code == EXIT_IMPLAUSIBLE_PATHS == 6
    out = capsys.readouterr().out
    document = json.loads((tmp_path / "flagged" / "result.json").read_text())
    fit = document["tail"]["path_check"]["fit"]
    assert 0 < fit["n_exceeding"] <= 1000 and fit["bound_per_period"] == 0.05
    note = next(n for n in document["notes"] if "fit paths hold a one-period" in n)
    assert note.startswith(f"{fit['n_exceeding']:,} of 1,000 fit paths") and note in out
    assert document["meets_target"] in (True, False)  # the certificate is still reported


def test_cli_reviewer_doge_case_exits_6(doge, shared_data, tmp_path, capsys):
    """The reviewer's run, smaller: DOGE, GARCH-ged, fhs. It used to exit 0 ("meets alpha")."""
    from fundguard.optimizer.job.cli import EXIT_IMPLAUSIBLE_PATHS, main

    config = tmp_path / "doge.toml"
    config.write_text(f"""
[volatility]
spec = "GARCH-ged"

[scenarios]
n_scenarios = 5000
certify_scenarios = 20000
horizon = 30
innovations = "fhs"
seed = 1

[problem]
alpha = 0.01
method = "cvar"

[[markets]]
name = "DOGE"
prices = "{shared_data / 'binance_DOGEUSDT_daily.csv'}"
open_interest = 1e9
daily_volume = 3e9
""")
    assert main(["calibrate", "--config", str(config), "--out", str(tmp_path / "out"), "--no-frontier"]) \
        == EXIT_IMPLAUSIBLE_PATHS
    document = json.loads((tmp_path / "out" / "result.json").read_text())
    assert document["tail"]["path_check"]["certify"]["n_exceeding"] > 0
    assert any("residuals' own moments 1.0665" in n for n in document["notes"])
    assert document["models"]["DOGE"]["residual_stationary"] is False
