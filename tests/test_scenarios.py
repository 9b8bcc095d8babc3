"""Tests of models.scenarios: simulated and stress return paths.

Statistical checks use fixed seeds and state their tolerance in Monte-Carlo standard errors (SE);
models are fitted to synthetic GARCH data generated here, so no external data is needed.
"""

from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from fundguard.models import (
    DEFAULT_EXCURSIONS,
    Copula,
    ExcursionModel,
    HeavyTailWarning,
    ReturnPaths,
    ScenarioError,
    SpecificationError,
    VolSpec,
    fit_copula,
    fit_tails,
    fit_volatility,
    plan_simulation,
    simulate_returns,
    stress_paths,
)
from fundguard.models.scenarios.innovations import Marginal, Score, ScoreTransform, exact_transform

N_HISTORY = 2500


def synthetic_returns(
    vol: str = "GJR",
    dist: str = "t",
    *,
    n: int = N_HISTORY,
    n_markets: int = 1,
    correlation: float = 0.7,
    nu: float = 8.0,
    seed: int = 0,
    start: str = "2016-01-01",
) -> pd.DataFrame:
    """Daily returns of GARCH-family markets with correlated innovations (multivariate t or normal)."""
    rng = np.random.default_rng(seed)
    corr = np.full((n_markets, n_markets), correlation)
    np.fill_diagonal(corr, 1.0)
    y = rng.standard_normal((n, n_markets)) @ np.linalg.cholesky(corr).T
    if dist == "t":
        z = y / np.sqrt(rng.chisquare(nu, size=(n, 1)) / nu) * math.sqrt((nu - 2) / nu)
    else:
        z = y
    mu, omega, alpha, gamma, beta = 5e-4, 2e-5, 0.08, 0.06, 0.86
    r = np.empty((n, n_markets))
    if vol == "EGARCH":
        e_omega, e_alpha, e_gamma, e_beta = -0.35, 0.2, -0.05, 0.95
        log_s2 = np.full(n_markets, e_omega / (1 - e_beta))
        for t in range(n):
            r[t] = mu + np.exp(0.5 * log_s2) * z[t]
            log_s2 = e_omega + e_alpha * (np.abs(z[t]) - math.sqrt(2 / math.pi)) + e_gamma * z[t] + e_beta * log_s2
    else:
        g = gamma if vol == "GJR" else 0.0
        s2 = np.full(n_markets, omega / (1 - alpha - beta - g / 2))
        for t in range(n):
            eps = np.sqrt(s2) * z[t]
            r[t] = mu + eps
            s2 = omega + (alpha + g * (eps < 0)) * eps**2 + beta * s2
    index = pd.date_range(start, periods=n, freq="D", tz="UTC", name="time")
    return pd.DataFrame(r, index=index, columns=[f"M{j}" for j in range(n_markets)])


def fit(returns: pd.Series, vol: str, dist: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_volatility(returns, VolSpec(vol, dist))


def innovations_of(paths: ReturnPaths, models: dict) -> np.ndarray:
    """z = (r - mu) / sigma, the innovations a simulation used, (N, T, J)."""
    mu = np.array([m.params.get("mu", 0.0) for m in models.values()])
    return (paths.returns - mu) / paths.volatility


@pytest.fixture(scope="module")
def gjr_t():
    returns = synthetic_returns("GJR", "t", seed=1)["M0"]
    return {"M0": fit(returns, "GJR", "t")}


@pytest.fixture(scope="module")
def pair():
    returns = synthetic_returns("GJR", "t", n_markets=2, seed=2)
    return {m: fit(returns[m], "GJR", "t") for m in returns}


def test_progress_counts_every_scenario_once_and_changes_nothing(pair):
    calls = []
    counted = simulate_returns(pair, 7, 5_000, seed=3, chunk_size=1_000, threads=2,
                               progress=lambda done, total: calls.append((done, total)))
    plain = simulate_returns(pair, 7, 5_000, seed=3)
    np.testing.assert_array_equal(counted.returns, plain.returns)
    np.testing.assert_array_equal(counted.low, plain.low)
    assert {total for _, total in calls} == {5_000} and len(calls) >= 2
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == 5_000 and len(set(done)) == len(done)


# ---------------------------------------------------------------------------------------------
# Starting point and recursion
# ---------------------------------------------------------------------------------------------


def test_paths_start_from_todays_variance(gjr_t):
    model = gjr_t["M0"]
    p = model.params
    eps = model.last_residual
    by_hand = p["omega"] + (p["alpha"] + p["gamma"] * (eps < 0)) * eps**2 + p["beta"] * model.last_variance
    assert model.next_variance == pytest.approx(by_hand, rel=1e-6)
    paths = simulate_returns(gjr_t, 5, 100, seed=0)
    np.testing.assert_allclose(paths.volatility[:, 0, 0], math.sqrt(model.next_variance), rtol=1e-15)


def test_calm_and_stormy_days_give_different_scenarios():
    returns = synthetic_returns("GJR", "t", seed=3)["M0"]
    shock = int(np.argmin(returns.to_numpy()[300:])) + 300  # the worst day after a burn-in
    stormy = fit(returns.iloc[: shock + 1], "GJR", "t")
    calm_end = shock - 60
    calm = fit(returns.iloc[: calm_end + 1], "GJR", "t")
    start_stormy = simulate_returns({"X": stormy}, 10, 2000, seed=0).volatility[:, 0, 0]
    start_calm = simulate_returns({"X": calm}, 10, 2000, seed=0).volatility[:, 0, 0]
    assert start_stormy[0] == pytest.approx(math.sqrt(stormy.next_variance))
    assert start_stormy[0] > 1.5 * start_calm[0]


def test_recursion_of_mixed_families_by_hand():
    returns = synthetic_returns("GJR", "t", n_markets=2, seed=4)
    models = {"G": fit(returns["M0"], "GJR", "t"), "E": fit(returns["M1"], "EGARCH", "t")}
    paths = simulate_returns(models, 6, 50, seed=11)
    z = innovations_of(paths, models)
    g, e = models["G"].params, models["E"].params
    for s in range(0, 50, 7):
        s2, log_s2 = models["G"].next_variance, math.log(models["E"].next_variance)
        for t in range(6):
            assert paths.volatility[s, t, 0] == pytest.approx(math.sqrt(s2), rel=1e-12)
            assert paths.volatility[s, t, 1] == pytest.approx(math.exp(0.5 * log_s2), rel=1e-12)
            eps = paths.volatility[s, t, 0] * z[s, t, 0]
            s2 = g["omega"] + (g["alpha"] + g["gamma"] * (eps < 0)) * eps**2 + g["beta"] * s2
            zt = z[s, t, 1]
            log_s2 = e["omega"] + e["alpha"] * (abs(zt) - math.sqrt(2 / math.pi)) + e["gamma"] * zt + e["beta"] * log_s2


# ---------------------------------------------------------------------------------------------
# Variance term structure against the fitted model's own forecast
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("vol", "dist"), [("GJR", "t"), ("GARCH", "normal"), ("GJR", "ged")])
def test_simulated_variance_matches_arch_analytic_forecast(vol, dist):
    """Mean simulated sigma^2_{T+h}, h = 1..20, equals arch's analytic forecast within 5 SE.

    Innovations are t(8) (finite fourth moment, so the SE exists). The mean return per period
    equals mu within 5 SE as well.
    """
    returns = synthetic_returns(vol, "t" if dist != "normal" else "normal", seed=5)["M0"]
    # end the history on a large shock, so the forecast decays visibly towards the long run
    shock = int(np.argmax(np.abs(returns.to_numpy()[1500:]))) + 1500
    model = fit(returns.iloc[: shock + 1], vol, dist)
    horizon, n = 20, 40_000
    paths = simulate_returns({"X": model}, horizon, n, seed=7)
    variance = paths.volatility[:, :, 0] ** 2
    se = variance.std(axis=0) / math.sqrt(n)  # 0 at h = 1, where sigma^2 is known today
    forecast = model.forecast_variance(horizon)
    error = np.abs(variance.mean(axis=0) - forecast)
    assert np.all(error <= 5 * se + 1e-12 * forecast), error / np.maximum(se, 1e-300)
    # the term structure is far from flat, so the comparison has power
    assert abs(forecast[-1] - forecast[0]) > 20 * se[-1]
    r = paths.returns[:, :, 0]
    assert np.all(np.abs(r.mean(axis=0) - model.params["mu"]) < 5 * r.std(axis=0) / math.sqrt(n))


def test_egarch_normal_variance_matches_closed_form():
    """EGARCH-normal: E[sigma^2_{T+h}] has a closed form (arch only simulates it).

    ln s2_{T+h} = omega sum_{i<h-1} beta^i + beta^{h-1} ln s2_{T+1} + sum_i beta^{h-1-i} g(z_i),
    g(z) = alpha(|z| - sqrt(2/pi)) + gamma z, and for z ~ N(0, 1)
    E exp(a|z| + b z) = exp((a+b)^2/2) Phi(a+b) + exp((a-b)^2/2) Phi(a-b).
    """
    model = fit(synthetic_returns("EGARCH", "normal", seed=6)["M0"], "EGARCH", "normal")
    p = model.params
    horizon, n = 15, 40_000
    expected = []
    for h in range(1, horizon + 1):
        log_mean = p["omega"] * sum(p["beta"] ** i for i in range(h - 1))
        log_mean += p["beta"] ** (h - 1) * math.log(model.next_variance)
        for i in range(1, h):
            c = p["beta"] ** (h - 1 - i)
            a, b = c * p["alpha"], c * p["gamma"]
            mgf = math.exp((a + b) ** 2 / 2) * special.ndtr(a + b) + math.exp((a - b) ** 2 / 2) * special.ndtr(a - b)
            log_mean += math.log(mgf) - a * math.sqrt(2 / math.pi)
        expected.append(math.exp(log_mean))
    variance = simulate_returns({"X": model}, horizon, n, seed=8).volatility[:, :, 0] ** 2
    se = variance.std(axis=0) / math.sqrt(n)
    assert np.all(np.abs(variance.mean(axis=0) - np.array(expected)) <= 5 * se + 1e-12 * np.array(expected))
    # arch's own (simulated) forecast agrees too, within both Monte-Carlo errors
    np.testing.assert_allclose(model.forecast_variance(horizon, simulations=20_000), expected, rtol=0.03)


# ---------------------------------------------------------------------------------------------
# Innovation schemes
# ---------------------------------------------------------------------------------------------


def _common_residuals(models: dict) -> np.ndarray:
    frames = [pd.Series(m.std_resid, index=m.index) for m in models.values()]
    return pd.concat(frames, axis=1, join="inner").to_numpy()


def test_fhs_draws_whole_observed_dates(pair):
    paths = simulate_returns(pair, 10, 3000, innovations="fhs", seed=1)
    z = innovations_of(paths, pair).reshape(-1, 2)
    residuals = _common_residuals(pair)
    residuals = residuals / np.sqrt(np.mean(residuals**2, axis=0))  # FHS rescales to unit mean square
    order = np.argsort(residuals[:, 0])
    pos = np.clip(np.searchsorted(residuals[order, 0], z[:, 0]), 1, len(order) - 1)
    nearest = np.where(np.abs(residuals[order[pos], 0] - z[:, 0]) < np.abs(residuals[order[pos - 1], 0] - z[:, 0]),
                       order[pos], order[pos - 1])
    np.testing.assert_allclose(z[:, 0], residuals[nearest, 0], rtol=1e-10, atol=1e-12)
    # the second market's innovation is from the same date
    np.testing.assert_allclose(z[:, 1], residuals[nearest, 1], rtol=1e-10, atol=1e-12)
    # and the bootstrap visits most dates (30,000 draws of 2,500 dates)
    assert np.unique(nearest).size > 0.99 * len(residuals)


def test_evt_draws_beyond_history_with_fitted_tail_probability(gjr_t):
    """Below the most extreme observed residual with probability (k/n) S_GPD(u - z_min), within 4.5 SE."""
    n, horizon = 20_000, 10
    paths = simulate_returns(gjr_t, horizon, n, innovations="evt", seed=2)
    tails = paths.tails["M0"]
    z = innovations_of(paths, gjr_t).ravel()
    observed = np.asarray(gjr_t["M0"].std_resid)
    observed = np.sort(observed / np.sqrt(np.mean(observed**2)))  # rescaled to unit mean square
    draws = z.size
    for side, extreme, beyond in (("lower", observed[0], z < observed[0]), ("upper", observed[-1], z > observed[-1])):
        tail = getattr(tails, side)
        p = tail.tail_probability(extreme)
        assert 1e-5 < p < 1e-2
        se = math.sqrt(p * (1 - p) / draws)
        assert abs(beyond.mean() - p) < 4.5 * se, (side, beyond.mean(), p)
        past_threshold = (z < tail.threshold) if side == "lower" else (z > tail.threshold)
        assert abs(past_threshold.mean() - tail.probability) < 4.5 * math.sqrt(tail.probability / draws)
    # the body is the observed residuals themselves
    body = z[(z > tails.lower.threshold) & (z < tails.upper.threshold)]
    pos = np.clip(np.searchsorted(observed, body), 1, observed.size - 1)
    gap = np.minimum(np.abs(observed[pos] - body), np.abs(observed[pos - 1] - body))
    assert gap.max() < 1e-9
    assert tails.lower.n_exceedances == int(0.1 * observed.size)
    assert paths.metadata["tails"]["M0"]["lower"]["shape"] == tails.lower.shape


def test_fit_tails_reports_index_and_warns_on_heavy_tail():
    rng = np.random.default_rng(3)
    u = rng.random(4000)
    heavy = np.sign(rng.random(4000) - 0.5) * (u ** -0.8 - 1.0)  # GPD tails with xi = 0.8
    with pytest.warns(HeavyTailWarning, match="tail index"):
        tails = fit_tails(heavy, market="ALT")
    assert 0.6 < tails.lower.shape < 1.0 and 0.6 < tails.upper.shape < 1.0
    light = rng.standard_normal(4000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", HeavyTailWarning)
        normal_tails = fit_tails(light)
    assert normal_tails.lower.shape < 0.2
    with pytest.raises(SpecificationError, match="tail_fraction"):
        fit_tails(light, tail_fraction=0.6)


def test_simulate_evt_reports_tail_index_and_warns_on_heavy_tail():
    rng = np.random.default_rng(7)
    u = rng.random(3000)
    z = np.sign(rng.random(3000) - 0.5) * (u ** -0.6 - 1.0)  # tail index 0.6
    returns = pd.Series(0.02 * z / z.std(), index=pd.date_range("2015-01-01", periods=3000, freq="D", tz="UTC"))
    model = fit(returns, "GARCH", "t")
    with pytest.warns(HeavyTailWarning, match="'X': (lower|upper)-tail index") as record:
        paths = simulate_returns({"X": model}, 5, 100, innovations="evt", seed=0)
    assert record[0].filename == __file__  # points at the caller
    assert paths.tails["X"].lower.shape >= 0.5


@pytest.mark.parametrize("family", ["t", "gaussian"])
def test_parametric_copula_keeps_rank_correlation(pair, family):
    residuals = _common_residuals(pair)
    tau_history = stats.kendalltau(residuals[:, 0], residuals[:, 1]).statistic
    paths = simulate_returns(pair, 5, 8000, seed=4, copula=family)
    assert paths.copula.family == family
    z = innovations_of(paths, pair).reshape(-1, 2)
    tau_sim = stats.kendalltau(z[:, 0], z[:, 1]).statistic
    # SE of Kendall's tau on 40,000 pairs is about 0.003; the fitted R reproduces tau exactly
    assert abs(tau_sim - tau_history) < 0.015
    assert 0.4 < tau_history < 0.6


def test_t_copula_fit_recovers_degrees_of_freedom():
    rng = np.random.default_rng(5)
    corr = np.array([[1.0, 0.5, 0.3], [0.5, 1.0, 0.4], [0.3, 0.4, 1.0]])
    y = rng.standard_normal((4000, 3)) @ np.linalg.cholesky(corr).T
    x = y / np.sqrt(rng.chisquare(4.0, size=(4000, 1)) / 4.0)
    copula = fit_copula(x, "t", markets=["a", "b", "c"])
    assert 3.0 < copula.nu < 5.5
    np.testing.assert_allclose(copula.correlation, corr, atol=0.05)
    with pytest.raises(SpecificationError, match="two or more"):
        fit_copula(x[:, :1])


def test_fhs_keeps_linear_correlation(pair):
    residuals = _common_residuals(pair)
    paths = simulate_returns(pair, 10, 10_000, innovations="fhs", seed=5)
    z = innovations_of(paths, pair).reshape(-1, 2)
    assert abs(np.corrcoef(z.T)[0, 1] - np.corrcoef(residuals.T)[0, 1]) < 0.02


@pytest.mark.parametrize("dist", ["t", "skewt", "ged", "normal"])
def test_parametric_innovations_follow_fitted_distribution(dist):
    """One market: simulated innovations pass a KS test against arch's own fitted distribution."""
    model = fit(synthetic_returns("GJR", "t", seed=9)["M0"], "GJR", dist)
    paths = simulate_returns({"X": model}, 4, 10_000, seed=6)
    z = innovations_of(paths, {"X": model}).ravel()
    distribution = model.result.model.distribution
    shape = [v for k, v in model.result.params.items() if k in ("nu", "eta", "lambda")]
    assert stats.kstest(z, lambda v: distribution.cdf(v, shape)).pvalue > 1e-3


@pytest.mark.parametrize(
    ("dist", "nu", "lam"), [("t", 3.3, 0.0), ("skewt", 4.5, -0.2), ("ged", 1.2, 0.0), ("normal", math.nan, 0.0)]
)
def test_quantiles_and_table_match_arch_ppf(dist, nu, lam):
    from arch.univariate import GeneralizedError, Normal, SkewStudent, StudentsT

    arch_dist, params = {"t": (StudentsT(), [nu]), "skewt": (SkewStudent(), [nu, lam]),
                         "ged": (GeneralizedError(), [nu]), "normal": (Normal(), [])}[dist]
    marginal = Marginal(dist, nu, lam)
    p = np.array([1e-9, 1e-4, 0.01, 0.2, 0.5, 0.7, 0.99, 1 - 1e-6])
    np.testing.assert_allclose(marginal.lower(p), arch_dist.ppf(p, params), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(marginal.upper(1 - p), arch_dist.ppf(p, params), rtol=1e-6, atol=1e-8)
    # the tabulated score -> innovation map is within its documented 1e-8 of the exact one in
    # asinh(z) (relative 1e-8 in the tails, absolute near 0), in the body and beyond the grid
    transform = ScoreTransform(Score(4.0), [marginal], None)
    x = np.concatenate([np.linspace(-60, 60, 20_001), [-1e7, 3e6]])[:, None]
    exact = exact_transform(x, Score(4.0), marginal)
    assert np.max(np.abs(np.arcsinh(transform(x.copy())) - np.arcsinh(exact))) < 1e-8


# ---------------------------------------------------------------------------------------------
# Seeds and chunking
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("innovations", ["parametric", "fhs", "evt"])
def test_same_seed_same_paths_whatever_the_chunking(pair, innovations):
    run = lambda n, **kw: simulate_returns(pair, 7, n, innovations=innovations, seed=123, **kw)  # noqa: E731
    whole = run(2600)
    for chunk in (1024, 1500, 100_000):
        chunked = run(2600, chunk_size=chunk)
        assert np.array_equal(whole.returns, chunked.returns)
        assert np.array_equal(whole.volatility, chunked.volatility)
        assert np.array_equal(whole.low, chunked.low) and np.array_equal(whole.high, chunked.high)
    shorter = run(1500)  # a shorter run is a prefix
    assert np.array_equal(shorter.returns, whole.returns[:1500]) and np.array_equal(shorter.low, whole.low[:1500])
    for threads in (1, 3):  # chunks worked on by several threads land in their own rows
        threaded = run(2600, chunk_size=1024, threads=threads)
        assert np.array_equal(whole.returns, threaded.returns)
        assert np.array_equal(whole.volatility, threaded.volatility)
        assert np.array_equal(whole.low, threaded.low) and np.array_equal(whole.high, threaded.high)
    other = simulate_returns(pair, 7, 2600, innovations=innovations, seed=124)
    assert not np.array_equal(other.returns, whole.returns) and not np.array_equal(other.low, whole.low)
    # the excursions come from their own stream: the returns of a seed do not depend on them
    bare = run(2600, excursions=None)
    assert bare.low is None and bare.high is None and np.array_equal(bare.returns, whole.returns)
    assert np.array_equal(run(2600, excursions="bridge").returns, whole.returns)


@pytest.mark.parametrize("innovations", ["parametric", "fhs", "evt"])
def test_a_pickled_plan_draws_any_block_range_of_the_full_run(pair, innovations):
    # What the Dask workers rely on: a plan sent to another process draws its blocks exactly.
    whole = simulate_returns(pair, 7, 2600, innovations=innovations, seed=123)
    plan = pickle.loads(pickle.dumps(plan_simulation(pair, 7, 2600, innovations=innovations, seed=123)))
    assert plan.n_blocks == 3
    parts = [plan.simulate(0, 1), plan.simulate(1, 3)]
    assert parts[1].metadata["rows"] == [1024, 2600]
    assert np.array_equal(np.concatenate([p.returns for p in parts]), whole.returns)
    assert np.array_equal(np.concatenate([p.volatility for p in parts]), whole.volatility)
    assert np.array_equal(np.concatenate([p.low for p in parts]), whole.low)
    assert np.array_equal(np.concatenate([p.high for p in parts]), whole.high)
    with pytest.raises(SpecificationError, match=r"block range \[2, 4\)"):
        plan.simulate(2, 4)


def test_seed_none_is_recorded_and_seed_sequence_untouched(gjr_t):
    first = simulate_returns(gjr_t, 3, 200, seed=None)
    entropy = first.metadata["seed"]["entropy"]
    again = simulate_returns(gjr_t, 3, 200, seed=np.random.SeedSequence(entropy))
    assert np.array_equal(first.returns, again.returns)
    seq = np.random.SeedSequence(99)
    a = simulate_returns(gjr_t, 3, 200, seed=seq)
    b = simulate_returns(gjr_t, 3, 200, seed=seq)
    assert np.array_equal(a.returns, b.returns) and seq.n_children_spawned == 0


def test_excursions_per_market_and_their_law(pair):
    # one market on the shipped law, the other on a law whose wicks are exactly 0.5 sigma below, 0.2 above
    levels = DEFAULT_EXCURSIONS.levels
    fixed = ExcursionModel(z_edges=[0.0], levels=levels, down=np.full((2, levels.size), 0.5),
                           up=np.full((2, levels.size), 0.2), correlation=[0.0, 0.0], counts=[1, 1])
    paths = simulate_returns(pair, 5, 3000, seed=7, excursions={"M0": "default", "M1": fixed})
    r, sigma = paths.returns, paths.volatility
    np.testing.assert_allclose(paths.low[..., 1], np.minimum(r[..., 1], 0) - 0.5 * sigma[..., 1], rtol=1e-12)
    np.testing.assert_allclose(paths.high[..., 1], np.maximum(r[..., 1], 0) + 0.2 * sigma[..., 1], rtol=1e-12)
    assert paths.metadata["excursions"]["M0"]["law"] == "empirical"
    # market 0's drawn wicks follow the shipped law: the median of w_down for z in (-0.5, 0]
    z = r[..., 0] / sigma[..., 0]
    w_down = (np.minimum(r[..., 0], 0) - paths.low[..., 0]) / sigma[..., 0]
    chosen = (z > -0.5) & (z <= 0)
    median = DEFAULT_EXCURSIONS.down[3, list(levels).index(0.5)]
    n = int(chosen.sum())
    assert np.mean(w_down[chosen] <= median) == pytest.approx(0.5, abs=4 * 0.5 / math.sqrt(n))
    with pytest.raises(SpecificationError, match=r"missing \['M1'\]"):
        simulate_returns(pair, 5, 10, excursions={"M0": fixed})
    with pytest.raises(SpecificationError, match="excursions must be 'default'"):
        simulate_returns(pair, 5, 10, excursions="brownian")


# ---------------------------------------------------------------------------------------------
# Stress paths
# ---------------------------------------------------------------------------------------------


def test_stress_paths_carry_median_wicks_and_still_periods_do_not_move(pair):
    paths = stress_paths(pair, 4, dates=[pair["M0"].index[1000]], shocks=[-0.3])
    r, sigma = paths.returns, paths.volatility
    assert np.all(paths.low <= np.minimum(r, 0)) and np.all(paths.high >= np.maximum(r, 0))
    # the shock period: the shocked return minus the median extra wick of its z bucket (the lowest)
    median = list(DEFAULT_EXCURSIONS.levels).index(0.5)
    assert paths.low[1, 0, 0] == pytest.approx(math.log(0.7) - sigma[1, 0, 0] * DEFAULT_EXCURSIONS.down[0, median])
    assert np.all(paths.low[1, 1:] == 0.0) and np.all(paths.high[1, 1:] == 0.0)  # still afterwards
    assert np.all(paths.low[0] < np.minimum(r[0], 0))  # four replayed periods, each with a wick
    assert stress_paths(pair, 4, shocks=[-0.3], excursions=None).low is None



def test_stress_replay_as_it_was_and_scaled_to_today(pair):
    model = pair["M0"]
    history = model.conditional_volatility * model.std_resid + model.params["mu"]
    crash = history.idxmin()
    raw = stress_paths(pair, 5, dates=[crash], scale_to_today=False)
    assert raw.is_stress.all() and raw.labels[0].startswith(f"replay {crash.date()}")
    np.testing.assert_allclose(raw.returns[0, :, 0], history.loc[crash:].iloc[:5], rtol=1e-12)
    np.testing.assert_allclose(raw.volatility[0, :, 0], model.conditional_volatility.loc[crash:].iloc[:5], rtol=1e-12)

    scaled = stress_paths(pair, 5, dates=[crash], scale_to_today=True)
    z_crash = pd.Series(model.std_resid, index=model.index)[crash]
    sigma = math.sqrt(model.next_variance)
    assert scaled.volatility[0, 0, 0] == pytest.approx(sigma)
    assert scaled.returns[0, 0, 0] == pytest.approx(model.params["mu"] + sigma * z_crash)
    assert scaled.volatility[0, 1, 0] > scaled.volatility[0, 0, 0]  # the shock feeds the variance


def test_stress_window_then_still_prices_and_shocks(pair):
    day = pair["M0"].index[1000]
    paths = stress_paths(pair, 6, dates=[(day, day + pd.Timedelta(days=1))], shocks=[-0.3, {"M1": 0.25}])
    assert paths.n_scenarios == 3 and paths.horizon == 6
    assert np.all(paths.returns[0, 2:] == 0.0)  # two replayed periods, then no move
    np.testing.assert_allclose(paths.returns[1, 0], np.log(0.7))
    assert np.all(paths.returns[1, 1:] == 0.0)
    np.testing.assert_allclose(paths.returns[2, 0], [0.0, np.log(1.25)])
    assert paths.volatility[1, 0, 0] == pytest.approx(math.sqrt(pair["M0"].next_variance))
    assert paths.volatility[1, 1, 0] > 2 * paths.volatility[1, 0, 0]
    assert paths.labels[1] == "shock M0 -30%, M1 -30%"


def test_stress_errors_name_the_culprit(pair):
    with pytest.raises(ScenarioError, match="1999-01-01"):
        stress_paths(pair, 5, dates=["1999-01-01"])
    with pytest.raises(ScenarioError, match="'M1'.*-1.2"):
        stress_paths(pair, 5, shocks=[{"M1": -1.2}])
    with pytest.raises(ScenarioError, match="unknown market"):
        stress_paths(pair, 5, shocks=[{"BTC": -0.2}])
    with pytest.raises(ScenarioError, match="at least one"):
        stress_paths(pair, 5)


# ---------------------------------------------------------------------------------------------
# Validation at the boundary
# ---------------------------------------------------------------------------------------------


def test_simulate_returns_validates_arguments(gjr_t, pair):
    with pytest.raises(SpecificationError, match="innovations"):
        simulate_returns(gjr_t, 5, 10, innovations="bootstrap")
    with pytest.raises(SpecificationError, match="horizon"):
        simulate_returns(gjr_t, 0, 10)
    with pytest.raises(SpecificationError, match="n_scenarios"):
        simulate_returns(gjr_t, 5, -1)
    with pytest.raises(SpecificationError, match="mapping"):
        simulate_returns([gjr_t["M0"]], 5, 10)
    with pytest.raises(SpecificationError, match="seed"):
        simulate_returns(gjr_t, 5, 10, seed=-3)
    with pytest.raises(SpecificationError, match="threads"):
        simulate_returns(gjr_t, 5, 10, threads=0)
    wrong = Copula("t", np.eye(2), 5.0, ("a", "b"))
    with pytest.raises(SpecificationError, match="copula markets"):
        simulate_returns(pair, 5, 10, copula=wrong)
    hourly = synthetic_returns("GJR", "t", seed=1)["M0"]
    hourly.index = pd.date_range("2020-01-01", periods=len(hourly), freq="h", tz="UTC")
    with pytest.raises(SpecificationError, match="frequency"):
        simulate_returns({"D": gjr_t["M0"], "H": fit(hourly, "GJR", "t")}, 5, 10)


def test_return_paths_validate_shapes_and_values():
    ok = np.zeros((2, 3, 1))
    with pytest.raises(ScenarioError, match="volatility must have the shape"):
        ReturnPaths(ok, np.ones((2, 3, 2)), ("A",))
    with pytest.raises(ScenarioError, match=r"volatility must be > 0; volatility\[1, 2, 0\]"):
        vol = np.ones((2, 3, 1))
        vol[1, 2, 0] = 0.0
        ReturnPaths(ok, vol, ("A",))
    with pytest.raises(ScenarioError, match=r"returns must be finite; returns\[0, 1, 0\] = nan"):
        bad = ok.copy()
        bad[0, 1, 0] = np.nan
        ReturnPaths(bad, np.ones((2, 3, 1)), ("A",))
    with pytest.raises(ScenarioError, match="markets"):
        ReturnPaths(ok, np.ones((2, 3, 1)), ("A", "B"))


def test_return_paths_validate_low_and_high():
    returns = np.array([0.01, -0.02, 0.0]).reshape(1, 3, 1)
    vol = np.full((1, 3, 1), 0.02)
    low = np.array([-0.001, -0.03, 0.0]).reshape(1, 3, 1)
    high = np.array([0.02, 0.001, 0.0]).reshape(1, 3, 1)
    paths = ReturnPaths(returns, vol, ("A",), low=low, high=high)
    assert paths.low.dtype == np.float64 and paths.high[0, 0, 0] == 0.02
    ReturnPaths(returns, vol, ("A",), low=np.minimum(returns, 0) + 5e-13)  # within the 1e-12 slack
    with pytest.raises(ScenarioError, match=r"low must be <= min\(0, returns\).*low\[0, 1, 0\] = -0.01"):
        ReturnPaths(returns, vol, ("A",), low=np.array([-0.001, -0.01, 0.0]).reshape(1, 3, 1))
    with pytest.raises(ScenarioError, match=r"high must be >= max\(0, returns\).*high\[0, 0, 0\]"):
        ReturnPaths(returns, vol, ("A",), high=np.array([0.005, 0.0, 0.0]).reshape(1, 3, 1))
    with pytest.raises(ScenarioError, match=r"high must have the shape of returns \(1, 3, 1\)"):
        ReturnPaths(returns, vol, ("A",), high=np.zeros((1, 3)))
    with pytest.raises(ScenarioError, match=r"low must be finite; low\[0, 2, 0\] = nan"):
        ReturnPaths(returns, vol, ("A",), low=np.array([-0.001, -0.03, np.nan]).reshape(1, 3, 1))
