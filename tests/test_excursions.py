"""Intraday excursions (models/scenarios/excursions.py): the empirical law, its fit, the bridge, real data."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fundguard.models import (
    DEFAULT_EXCURSIONS,
    BridgeExcursions,
    ExcursionModel,
    ReturnPaths,
    ScenarioError,
    SpecificationError,
    VolSpec,
    bridge_excursions,
    fit_excursions,
    fit_market_excursions,
    fit_volatility,
    load_ohlc,
    ohlc_paths,
)
from fundguard.models.scenarios.excursions import HOURLY_VS_DAILY

FIVE_PERCENT_DOWN = math.log(0.95)


def _bars_from(returns: np.ndarray, w_down: np.ndarray, w_up: np.ndarray, sigma: np.ndarray) -> pd.DataFrame:
    """OHLC bars whose close-to-close returns, open = previous close, and wicks (in sigma) are the given ones."""
    close = 100.0 * np.exp(np.r_[0.0, np.cumsum(returns)])
    prev = close[:-1]
    low = prev * np.exp(np.minimum(returns, 0.0) - sigma * w_down)
    high = prev * np.exp(np.maximum(returns, 0.0) + sigma * w_up)
    index = pd.date_range("2020-01-01", periods=len(close), freq="D", tz="UTC", name="time")
    frame = pd.DataFrame({"open": np.r_[close[0], prev], "high": np.r_[close[0], high],
                          "low": np.r_[close[0], low], "close": close}, index=index)
    return frame


def _ks(x: np.ndarray, cdf: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance of sorted draws ``x`` to a law's CDF at them (right limits: the law has atoms at 0)."""
    return float(np.max(np.abs(np.searchsorted(x, x, side="right") / x.size - cdf)))


def _wicks(model: ExcursionModel, z: float, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n draws of (w_down, w_up) of ``model`` at standardized return z (sigma 0.02)."""
    sigma = np.full(n, 0.02)
    r = z * sigma
    low, high = model.draw(r, sigma, np.random.default_rng(seed))
    return (np.minimum(r, 0) - low) / sigma, (high - np.maximum(r, 0)) / sigma


# ---------------------------------------------------------------------------------------------
# The law: draws, inequalities, fit on a known generating model
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("z", [-3.0, -1.5, -0.2, 0.7, 2.5])
def test_draws_reproduce_the_stored_quantiles(z):
    model = DEFAULT_EXCURSIONS
    n = 200_000
    w_down, w_up = _wicks(model, z, n)
    bucket = int(model.bucket_of(np.array([z]))[0])
    critical = 1.95 / math.sqrt(n)  # Kolmogorov-Smirnov at 0.1% (1.95 / sqrt(n))
    for name, w in (("down", w_down), ("up", w_up)):
        x = np.sort(w)
        ks = _ks(x, model.cdf(name, np.full(n, bucket), x))
        assert ks < critical, (name, ks, critical)
        table = model.down if name == "down" else model.up
        inner = (model.levels > 0.05) & (model.levels < 0.99)
        np.testing.assert_allclose(np.quantile(w, model.levels[inner]), table[bucket, inner], rtol=0.02, atol=0.003)
    # the copula's rank correlation: Spearman of a Gaussian copula is (6 / pi) asin(rho / 2)
    expected = 6 / math.pi * math.asin(model.correlation[bucket] / 2)
    assert stats.spearmanr(w_down, w_up).statistic == pytest.approx(expected, abs=0.01)


def test_quantile_is_linear_between_levels_on_and_off_the_look_up_grid():
    u = np.random.default_rng(5).random(20_000)
    off_grid = ExcursionModel(z_edges=[0.0], levels=[0.0, 1 / 3, 0.9995, 1.0], down=[[0, 0.2, 1.0, 3.0]] * 2,
                              up=[[0, 0.1, 0.5, 2.0], [0, 0.3, 0.6, 0.7]], correlation=[0.0, 0.0], counts=[1, 1])
    for model in (DEFAULT_EXCURSIONS, off_grid):
        for b in range(model.n_buckets):
            for name, table in (("down", model.down), ("up", model.up)):
                np.testing.assert_allclose(model.quantile(name, np.full(u.size, b), u),
                                           np.interp(u, model.levels, table[b]), rtol=1e-12, atol=1e-12)


def test_low_and_high_bound_the_close_and_paths_accept_them():
    rng = np.random.default_rng(1)
    sigma = rng.uniform(0.005, 0.2, (300, 20))
    returns = sigma * rng.standard_t(3, (300, 20)) * 3  # z far beyond the fitted range too
    returns[0] = 0.0
    for law in (DEFAULT_EXCURSIONS, BridgeExcursions()):
        low, high = law.draw(returns, sigma, rng)
        assert np.all(low <= np.minimum(returns, 0)) and np.all(high >= np.maximum(returns, 0))
        paths = ReturnPaths(returns[..., None], sigma[..., None], ("X",), low=low[..., None], high=high[..., None])
        assert paths.low.shape == (300, 20, 1)
        mid_low, mid_high = law.at_level(returns, sigma)
        assert np.all(mid_low <= np.minimum(returns, 0)) and np.all(mid_high >= np.maximum(returns, 0))


def test_fit_recovers_a_known_generating_law():
    # w_down ~ Exp(mean 0.4) when z < 0, Exp(0.2) otherwise; w_up ~ Exp(0.3), independent of each other
    rng = np.random.default_rng(2)
    n = 6000
    sigma = rng.uniform(0.01, 0.05, n)
    z = rng.standard_normal(n)
    w_down = rng.exponential(np.where(z < 0, 0.4, 0.2))
    w_up = rng.exponential(0.3, n)
    bars = _bars_from(z * sigma, w_down, w_up, sigma)
    model = fit_excursions(bars, pd.Series(sigma, index=bars.index[1:]))
    assert model.counts.sum() == n and model.counts.min() >= 100
    levels = model.levels[(model.levels >= 0.1) & (model.levels <= 0.9)]
    for b in range(model.n_buckets):
        scale_down = 0.4 if b < 4 else 0.2  # buckets 0-3 are z <= 0
        exact = -np.log1p(-levels)
        count = model.counts[b]
        # 4 standard errors of an exponential quantile: scale sqrt(p / ((1 - p) n))
        tolerance = 4 * np.sqrt(levels / (1 - levels) / count) + 0.01
        for name, scale in (("down", scale_down), ("up", 0.3)):
            fitted = model.quantile(name, np.full(levels.size, b), levels)
            assert np.all(np.abs(fitted - scale * exact) <= scale * tolerance), (name, b, fitted, scale * exact)
    assert np.all(np.abs(model.correlation) < 4 / np.sqrt(model.counts))  # independent: rho within noise
    # the tails pool inward: 300 periods leave too few beyond 2 sigma for a bucket of their own
    small = fit_excursions(bars.iloc[:301], pd.Series(sigma[:300], index=bars.index[1:301]))
    assert small.counts.min() >= 100 and small.n_buckets < model.n_buckets


def test_bridge_minimum_has_the_reflection_law():
    n, r, sigma = 400_000, -0.01, 0.03
    low, high = bridge_excursions(np.full(n, r), np.full(n, sigma), np.random.default_rng(3))
    for m in (-0.02, -0.04, -0.08):
        exact = math.exp(-2 * m * (m - r) / sigma**2)
        assert np.mean(low <= m) == pytest.approx(exact, abs=4 * math.sqrt(exact * (1 - exact) / n) + 1e-5)
    for m in (0.01, 0.03, 0.06):
        exact = math.exp(-2 * m * (m - r) / sigma**2)
        assert np.mean(high >= m) == pytest.approx(exact, abs=4 * math.sqrt(exact * (1 - exact) / n) + 1e-5)


def test_model_numbers_round_trip_and_bad_numbers_are_named():
    again = ExcursionModel.from_dict(DEFAULT_EXCURSIONS.to_dict())
    assert np.array_equal(again.down, DEFAULT_EXCURSIONS.down) and again.source == DEFAULT_EXCURSIONS.source
    numbers = DEFAULT_EXCURSIONS.to_dict()
    numbers["down"][2][5] = -0.1
    with pytest.raises(SpecificationError, match=r"ExcursionModel.down\[2\]"):
        ExcursionModel.from_dict(numbers)
    with pytest.raises(SpecificationError, match="levels must increase strictly from 0 to 1"):
        ExcursionModel.from_dict({**DEFAULT_EXCURSIONS.to_dict(), "levels": [0.1] + numbers["levels"][1:]})
    with pytest.raises(ScenarioError, match="volatility must be finite and > 0"):
        DEFAULT_EXCURSIONS.draw(np.zeros(3), np.array([0.01, 0.0, 0.01]), np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------
# Real data (skipped without shared/data)
# ---------------------------------------------------------------------------------------------


def _daily(shared_data, *markets):
    bars = load_ohlc({m: shared_data / f"binance_{m}USDT_daily.csv" for m in markets})
    return {m: b.loc["2017-09-01":] for m, b in bars.items()}


def _standardized(bars):
    """(returns, low, sigma) per market: close-to-close, low from the previous close, GARCH(1,1)-t sigma."""
    out = {}
    for m, b in bars.items():
        returns, low, _ = (x[m] for x in ohlc_paths({m: b}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sigma = fit_volatility(returns, VolSpec("GARCH", "t"), name=m).conditional_volatility
        out[m] = (returns.to_numpy(), low.to_numpy(), sigma.to_numpy())
    return out


def test_shipped_default_is_what_the_data_gives(shared_data):
    refit = fit_market_excursions(_daily(shared_data, "BTC", "ETH"))
    shipped = DEFAULT_EXCURSIONS
    assert np.array_equal(refit.z_edges, shipped.z_edges) and np.array_equal(refit.counts, shipped.counts)
    # shipped numbers are rounded to 4 decimals; the rest is the GARCH optimiser's last digits
    np.testing.assert_allclose(refit.down, shipped.down, atol=2e-3)
    np.testing.assert_allclose(refit.up, shipped.up, atol=2e-3)
    np.testing.assert_allclose(refit.correlation, shipped.correlation, atol=2e-3)


def test_default_law_reproduces_btc_daily_lows_the_close_misses(shared_data):
    returns, low, sigma = _standardized(_daily(shared_data, "BTC"))["BTC"]
    n = returns.size
    observed = np.mean(low <= FIVE_PERCENT_DOWN)
    close_only = np.mean(returns <= FIVE_PERCENT_DOWN)
    assert 0.12 < observed < 0.145 and 0.4 < close_only / observed < 0.5  # the close misses about half
    draws = 50
    drawn_low, _ = DEFAULT_EXCURSIONS.draw(np.tile(returns, draws), np.tile(sigma, draws), np.random.default_rng(4))
    predicted = np.mean(drawn_low <= FIVE_PERCENT_DOWN)
    standard_error = math.sqrt(observed * (1 - observed) / n)  # of the observed frequency, 0.6 points
    assert abs(predicted - observed) < 3 * standard_error, (predicted, observed, standard_error)


def test_bridge_is_too_thin_beyond_ten_percent(shared_data):
    counts = {}
    for returns, low, sigma in _standardized(_daily(shared_data, "BTC", "ETH")).values():
        for move in (0.05, 0.10, 0.15):
            m = math.log(1 - move)
            # closed form of the bridge: P(min <= m | r, sigma) = exp(-2 m (m - r) / sigma^2) below min(0, r)
            bridge = np.where(m >= np.minimum(returns, 0), 1.0, np.exp(-2 * m * (m - returns) / sigma**2)).sum()
            empirical = DEFAULT_EXCURSIONS.cdf("down", DEFAULT_EXCURSIONS.bucket_of(returns / sigma),
                                               np.maximum((np.minimum(returns, 0) - m) / sigma, 0))
            old = counts.get(move, (0, 0.0, 0.0))
            counts[move] = (old[0] + int(np.sum(low <= m)), old[1] + bridge,
                            old[2] + np.sum(np.where(m >= np.minimum(returns, 0), 1.0, 1 - empirical)))
    observed, bridge, empirical = counts[0.05]
    assert bridge == pytest.approx(observed, rel=0.12)  # 1,070 expected vs 1,041 days: fine at 5%
    for move in (0.10, 0.15):
        observed, bridge, empirical = counts[move]
        assert bridge < 0.65 * observed and (observed - bridge) / math.sqrt(bridge) > 5  # 166 vs 267 days, 36 vs 95
        # the empirical law: 246 and 77 expected (a draw never exceeds a bucket's largest wick)
        assert abs(empirical - observed) < 3 * math.sqrt(observed), (move, empirical, observed)


def test_hourly_wicks_are_close_to_the_daily_law(shared_data):
    model = DEFAULT_EXCURSIONS
    bars = load_ohlc({m: shared_data / f"binance_{m}USDT_hourly.csv" for m in ("BTC", "ETH")})
    parts = list(_standardized(bars).values())
    returns, low, sigma = (np.concatenate([p[i] for p in parts]) for i in range(3))
    z = returns / sigma
    bucket = model.bucket_of(z)
    for k, ratio in HOURLY_VS_DAILY["low_ratio"].items():
        threshold = np.minimum(z, 0) + k
        predicted = np.where(threshold <= 0, 1.0, 1 - model.cdf("down", bucket, np.maximum(threshold, 0))).sum()
        assert np.sum(low <= -k * sigma) / predicted == pytest.approx(ratio, abs=0.02)
    w_down = (np.minimum(returns, 0) - low) / sigma
    ks = []
    for b in range(model.n_buckets):
        x = np.sort(w_down[bucket == b])
        ks.append(_ks(x, model.cdf("down", np.full(x.size, b), x)))
    assert max(ks) == pytest.approx(HOURLY_VS_DAILY["ks_down"], abs=0.01)
