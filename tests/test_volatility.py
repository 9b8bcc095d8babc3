"""Tests of fundguard.models.volatility against known generating models and real data."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from arch.univariate import EGARCH, GARCH, ConstantMean, Normal, StudentsT

import fundguard.models.volatility as volatility
from fundguard.models import (
    ConvergenceWarning,
    DataError,
    InsufficientHistoryError,
    NonStationaryWarning,
    SpecificationError,
    VolSpec,
    fit_volatility,
    load_prices,
    log_returns,
)
from fundguard.models.volatility import ljung_box

# GJR-t in percent units, arch's order: mu, omega, alpha, gamma, beta, nu.
GJR_T_TRUE = {"mu": 0.05, "omega": 0.05, "alpha": 0.05, "gamma": 0.10, "beta": 0.88, "nu": 5.0}


def simulate(vol, dist, params, n=4000, seed=0) -> pd.Series:
    """Returns (fractions, not percent) from an arch model with known parameters."""
    model = ConstantMean(None)
    model.volatility = vol
    model.distribution = dist(seed=np.random.default_rng(seed))
    data = model.simulate(params, n, burn=500).data / 100.0
    return pd.Series(data.to_numpy(), index=pd.date_range("2010-01-01", periods=n, freq="D", tz="UTC"), name="X")


@pytest.fixture(scope="module")
def gjr_t_series() -> pd.Series:
    return simulate(GARCH(1, 1, 1), StudentsT, list(GJR_T_TRUE.values()), seed=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gjr_t_parameter_recovery(seed):
    series = simulate(GARCH(1, 1, 1), StudentsT, list(GJR_T_TRUE.values()), seed=seed)
    model = fit_volatility(series, VolSpec("GJR", "t"))
    # Back to arch's percent units to compare with the truth and arch's standard errors.
    units = {"mu": 100.0, "omega": 1e4}
    std_err = dict(zip(GJR_T_TRUE, model.result.std_err))
    # Stated tolerances at n = 4000: within 4 standard errors, and within absolute bands.
    bands = {"mu": 0.05, "omega": 0.05, "alpha": 0.04, "gamma": 0.07, "beta": 0.05, "nu": 2.0}
    for name, true in GJR_T_TRUE.items():
        estimate = model.params[name] * units.get(name, 1.0)
        assert abs(estimate - true) < 4 * std_err[name], (name, estimate, true, std_err[name])
        assert abs(estimate - true) < bands[name], (name, estimate, true)
    assert model.diagnostics.converged
    assert model.diagnostics.persistence == pytest.approx(0.05 + 0.88 + 0.05, abs=0.03)


@pytest.mark.parametrize(
    ("vol", "dist", "params", "expected"),
    [
        (GARCH(1, 0, 1), Normal, [0.02, 0.05, 0.08, 0.90], "GARCH-normal"),
        (GARCH(1, 1, 1), StudentsT, list(GJR_T_TRUE.values()), "GJR-t"),
        (EGARCH(1, 1, 1), StudentsT, [0.0, 0.0, 0.15, -0.12, 0.97, 4.0], "EGARCH-t"),
    ],
    ids=["garch-normal", "gjr-t", "egarch-t"],
)
def test_bic_selects_generating_family(vol, dist, params, expected):
    model = fit_volatility(simulate(vol, dist, params, seed=7))
    assert str(model.spec) == expected, model.selection
    assert model.bic == min(model.selection.values())
    assert len(model.selection) + len(model.rejected) == 12


def test_scale_is_undone(gjr_t_series):
    model = fit_volatility(gjr_t_series, VolSpec("GJR", "t"))
    p = model.params
    # One-step forecast by hand, in the input's units.
    eps = model.last_residual
    by_hand = p["omega"] + (p["alpha"] + p["gamma"] * (eps < 0)) * eps**2 + p["beta"] * model.last_variance
    assert model.next_variance == pytest.approx(by_hand, rel=1e-8)
    assert model.forecast_variance(1)[0] == pytest.approx(by_hand, rel=1e-8)
    # Multi-step analytic forecast converges to the unconditional variance.
    far = model.forecast_variance(2000)[-1]
    assert far == pytest.approx(model.diagnostics.unconditional_variance, rel=1e-3)
    # The long-run variance is the data's variance (within sampling error of a fat-tailed series).
    assert model.diagnostics.unconditional_variance == pytest.approx(gjr_t_series.var(), rel=0.25)
    # Multiplying returns by 10 multiplies variances by 100 and leaves the shape alone (the
    # optimiser sees the same scaled numbers up to rounding, so agreement is to its tolerance).
    tenfold = fit_volatility(gjr_t_series * 10, VolSpec("GJR", "t"))
    assert tenfold.scale == model.scale / 10
    assert tenfold.next_variance == pytest.approx(100 * model.next_variance, rel=1e-5)
    assert tenfold.params["omega"] == pytest.approx(100 * p["omega"], rel=1e-5)
    assert tenfold.params["beta"] == pytest.approx(p["beta"], rel=1e-5)
    assert tenfold.loglikelihood == pytest.approx(model.loglikelihood - len(gjr_t_series) * math.log(10), rel=1e-9)
    np.testing.assert_allclose(model.conditional_volatility**2, model.result.conditional_volatility**2 / model.scale**2)


def test_egarch_scale_is_undone():
    series = simulate(EGARCH(1, 1, 1), StudentsT, [0.0, 0.0, 0.15, -0.12, 0.97, 4.0], seed=3)
    model = fit_volatility(series, VolSpec("EGARCH", "t"))
    p = model.params
    z = (model.last_residual) / math.sqrt(model.last_variance)
    log_next = p["omega"] + p["alpha"] * (abs(z) - math.sqrt(2 / math.pi)) + p["gamma"] * z + p["beta"] * math.log(model.last_variance)
    assert model.next_variance == pytest.approx(math.exp(log_next), rel=1e-6)
    assert model.diagnostics.unconditional_variance == pytest.approx(series.var(), rel=0.35)


def test_diagnostics_half_life_and_annualisation(gjr_t_series):
    d = fit_volatility(gjr_t_series, VolSpec("GJR", "t")).diagnostics
    assert d.half_life == pytest.approx(math.log(0.5) / math.log(d.persistence))
    assert d.periods_per_year == pytest.approx(365.25)
    assert d.annualized_volatility == pytest.approx(math.sqrt(d.unconditional_variance * 365.25))
    assert d.ljung_box_pvalue > 0.01  # the right model leaves no clustering behind


def test_ljung_box_detects_clustering():
    rng = np.random.default_rng(0)
    white = rng.normal(size=3000)
    _, p_white = ljung_box(white, 10)
    assert p_white > 0.01
    ar = np.empty(3000)
    ar[0] = 0
    for t in range(1, 3000):
        ar[t] = 0.5 * ar[t - 1] + white[t]
    q, p_ar = ljung_box(ar, 10)
    assert p_ar < 1e-10 and q > 500


def test_misfit_leaves_clustering_that_ljung_box_sees(gjr_t_series):
    # A constant-variance view of GARCH data: the squared returns are autocorrelated.
    _, p = ljung_box(((gjr_t_series - gjr_t_series.mean()) / gjr_t_series.std()) ** 2, 10)
    assert p < 1e-6


def test_nonstationary_fit_warns():
    series = simulate(GARCH(1, 0, 1), Normal, [0.0, 0.05, 0.15, 0.85], seed=0)
    with pytest.warns(NonStationaryWarning, match="persistence"):
        model = fit_volatility(series, VolSpec("GARCH", "normal"))
    assert math.isinf(model.diagnostics.half_life) and math.isinf(model.diagnostics.unconditional_variance)


def test_nonconvergence_warns(monkeypatch, gjr_t_series):
    real = volatility.arch_model

    def starved(*args, **kwargs):
        model = real(*args, **kwargs)
        fit = model.fit
        model.fit = lambda **kw: fit(**kw, options={"maxiter": 2})
        return model

    monkeypatch.setattr(volatility, "arch_model", starved)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        model = fit_volatility(gjr_t_series, VolSpec("GJR", "t"))
    assert not model.diagnostics.converged


def test_auto_skips_unconverged_candidates(monkeypatch, gjr_t_series):
    real = volatility.arch_model

    def starve_normal(*args, **kwargs):
        model = real(*args, **kwargs)
        if kwargs.get("dist") == "normal":
            fit = model.fit
            model.fit = lambda **kw: fit(**kw, options={"maxiter": 2})
        return model

    monkeypatch.setattr(volatility, "arch_model", starve_normal)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto mode rejects quietly and records why
        model = fit_volatility(gjr_t_series)
    assert all("normal" not in label for label in model.selection)
    assert all("did not converge" in model.rejected[label] for label in model.rejected if "normal" in label)


@pytest.mark.parametrize(
    ("returns", "error", "fragment"),
    [
        (pd.Series(np.random.default_rng(0).normal(0, 0.01, 100), name="BTC"), InsufficientHistoryError, "'BTC': 100 returns"),
        (pd.Series([0.01, -0.01] * 100 + [np.nan] + [0.01, -0.02] * 100, name="ETH"), DataError, "'ETH'"),
        (pd.Series([0.01, -0.01] * 200 + [np.inf], name="SOL"), DataError, "inf"),
        (pd.Series([0.0] * 400, name="STABLE"), DataError, "constant"),
        (pd.DataFrame({"A": [0.0] * 300, "B": [0.0] * 300}), DataError, "one market"),
    ],
    ids=["short", "nan", "inf", "constant", "two-columns"],
)
def test_bad_returns_rejected(returns, error, fragment):
    with pytest.raises(error, match=fragment):
        fit_volatility(returns, VolSpec("GARCH", "normal"))


def test_leading_nan_dropped(gjr_t_series):
    padded = pd.concat([pd.Series([np.nan] * 30), gjr_t_series.reset_index(drop=True)], ignore_index=True)
    assert fit_volatility(padded, VolSpec("GARCH", "t")).nobs == len(gjr_t_series)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [({"vol": "FIGARCH"}, "vol"), ({"dist": "cauchy"}, "dist"), ({"mean": "AR"}, "mean")],
)
def test_bad_spec(kwargs, fragment):
    with pytest.raises(SpecificationError, match=fragment):
        VolSpec(**kwargs)


def test_spec_aliases_and_bad_spec_argument(gjr_t_series):
    assert VolSpec("gjr-garch", "Student-t") == VolSpec("GJR", "t")
    with pytest.raises(SpecificationError, match="auto"):
        fit_volatility(gjr_t_series, "best")


def test_real_btc_daily(shared_data):
    returns = log_returns(load_prices(shared_data / "binance_BTCUSDT_daily.csv", name="BTC"))["BTC"]
    model = fit_volatility(returns)
    assert model.diagnostics.converged
    assert model.diagnostics.persistence < 1.0
    assert model.spec.dist in ("t", "skewt"), model.selection
    assert 2.5 < model.params["nu"] < 8.0
    # BTC's long-run volatility has been 60-80% a year.
    assert 0.4 < model.diagnostics.annualized_volatility < 1.0
    assert model.frequency.label == "daily"


def test_real_eth_daily_and_hourly(shared_data):
    daily = log_returns(load_prices(shared_data / "binance_ETHUSDT_daily.csv", name="ETH"))["ETH"]
    model = fit_volatility(daily)
    assert model.diagnostics.converged and model.diagnostics.persistence < 1.0
    assert model.spec.dist != "normal"  # fat tails win on BIC
    assert 0.5 < model.diagnostics.annualized_volatility < 1.3
    hourly = log_returns(load_prices(shared_data / "binance_ETHUSDT_hourly.csv", name="ETH"))["ETH"]
    h = fit_volatility(hourly)
    assert h.diagnostics.persistence < 1.0
    assert h.frequency.label == "hourly" and h.diagnostics.periods_per_year == pytest.approx(8766)
    # Hourly and daily annualised volatilities agree to within a factor of two.
    assert 0.5 < h.diagnostics.annualized_volatility / model.diagnostics.annualized_volatility < 2.0


def test_to_dict_from_dict_simulates_identically(gjr_t_series):
    import json

    from fundguard.models import VolModel, simulate_returns

    model = fit_volatility(gjr_t_series, VolSpec("GJR", "t"))
    rebuilt = VolModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert rebuilt.params == model.params and rebuilt.spec == model.spec
    assert rebuilt.frequency == model.frequency and rebuilt.result is None and rebuilt.std_resid.size == 0
    assert rebuilt.typical_volatility == pytest.approx(float(np.median(model.conditional_volatility)))
    a = simulate_returns({"X": model}, 20, 3000, innovations="parametric", seed=11)
    b = simulate_returns({"X": rebuilt}, 20, 3000, innovations="parametric", seed=11)
    np.testing.assert_array_equal(a.returns, b.returns)
    np.testing.assert_array_equal(a.volatility, b.volatility)
    with pytest.raises(SpecificationError, match="VolModel description"):
        VolModel.from_dict({"spec": {"vol": "GJR"}})


def test_vol_spec_parse_is_the_one_vol_dist_notation():
    assert VolSpec.parse("GJR-t") == VolSpec("GJR", "t")
    assert VolSpec.parse("egarch-ged") == VolSpec("EGARCH", "ged")
    for bad in ("GJR", "GJR-cauchy", "ARCH-t", "", "auto"):
        with pytest.raises(SpecificationError, match=f"VOL-DIST.*got {bad!r}"):
            VolSpec.parse(bad)


def test_egarch_long_run_level_beyond_float_range_is_infinite_not_an_overflow():
    """A fresh-user review found `fundguard fit` on 300 daily prices ending in OverflowError: an EGARCH
    candidate with beta near 1 puts the long-run log variance (omega + drift) / (1 - beta) past
    log(float max). That level is infinite, as for a non-stationary fit."""
    spec = VolSpec("EGARCH", "t")
    params = {"mu": 0.0, "omega": -0.05, "alpha": 0.1, "gamma": 0.0, "beta": 0.9999, "nu": 5.0}
    z = np.random.default_rng(0).standard_t(5, 300) / math.sqrt(5 / 3)
    calm = volatility._diagnostics({**params, "omega": -8.0, "beta": 0.95}, spec, z, None, converged=True)
    assert math.isfinite(calm.unconditional_variance)
    huge = volatility._diagnostics({**params, "omega": 1.0}, spec, z, None, converged=True)  # log level 1e4
    assert huge.unconditional_variance == math.inf


def test_auto_for_simulation_excludes_egarch_t_whose_multi_step_variance_is_infinite():
    """EGARCH-t data: "auto" for a fit keeps the generating family; for a parametric simulation it is
    excluded (E[exp(alpha |z|)] is infinite under the t) and recorded, and what is chosen is stationary."""
    series = simulate(EGARCH(1, 1, 1), StudentsT, [0.0, 0.0, 0.15, -0.12, 0.97, 4.0], seed=7)
    for_fit = fit_volatility(series, candidates=[VolSpec("EGARCH", "t"), VolSpec("GJR", "t")])
    assert str(for_fit.spec) == "EGARCH-t" and for_fit.diagnostics.stationary is False
    for_simulation = fit_volatility(series, candidates=[VolSpec("EGARCH", "t"), VolSpec("GJR", "t")],
                                    innovations="parametric")
    assert str(for_simulation.spec) == "GJR-t" and for_simulation.diagnostics.stationary
    assert "infinite under the t law" in for_simulation.rejected["EGARCH-t"]
    with pytest.warns(NonStationaryWarning, match="EGARCH-t E\\[exp"):  # ExplosiveVolatilityWarning is one
        fit_volatility(series, VolSpec("EGARCH", "t"), innovations="parametric")
