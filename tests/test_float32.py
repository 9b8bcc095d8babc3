"""The opt-in float32 scenario store (issue 20): half the bytes, fund targets within 1e-5."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from fundguard.models import (
    Copula,
    Market,
    ScenarioError,
    ScenarioSet,
    VenueBook,
    VolModel,
    build_scenarios,
    simulate_returns,
)
from fundguard.optimizer import Participation, PolicyProblem, certify, solve


def _gjr(name: str, omega: float, alpha: float, gamma: float, beta: float, vol: float) -> VolModel:
    persistence = alpha + beta + gamma / 2
    variance = omega / (1 - persistence)
    return VolModel.from_dict({
        "name": name, "spec": {"vol": "GJR", "dist": "t", "mean": "zero"},
        "params": {"omega": omega, "alpha": alpha, "gamma": gamma, "beta": beta, "nu": 5.0},
        "last_variance": vol**2, "next_variance": vol**2, "last_residual": 0.0,
        "typical_volatility": variance**0.5, "loglikelihood": 0.0, "aic": 0.0, "bic": 0.0, "nobs": 3000,
        "scale": 1.0, "period_seconds": 86_400.0,
        "diagnostics": {"converged": True, "persistence": persistence, "half_life": 20.0,
                        "unconditional_variance": variance, "annualized_volatility": (365.25 * variance) ** 0.5,
                        "periods_per_year": 365.25, "ljung_box_pvalue": 0.5, "ljung_box_lags": 10},
    })


@pytest.fixture(scope="module")
def pair():
    """The same stateful-book scenarios stored as float64 and as float32 (built with dtype=)."""
    models = {"BTC": _gjr("BTC", 2e-5, 0.05, 0.08, 0.88, 0.04), "ETH": _gjr("ETH", 4e-5, 0.06, 0.08, 0.86, 0.05)}
    copula = Copula("t", np.array([[1.0, 0.8], [0.8, 1.0]]), 4.0, ("BTC", "ETH"))
    book = VenueBook([Market("BTC", open_interest=2e9, daily_volume=6e9),
                      Market("ETH", open_interest=1e9, daily_volume=3e9)])
    paths = simulate_returns(models, 30, 6000, innovations="parametric", seed=4, copula=copula)
    wide = build_scenarios(paths, book)
    narrow = build_scenarios(paths, book, dtype="float32")
    return wide, narrow


def test_a_float32_set_is_the_float64_set_rounded_in_half_the_bytes(pair):
    wide, narrow = pair
    assert narrow.dtype == "float32" and narrow.premium_base.dtype == np.float32
    assert narrow.losses_by_market.dtype == np.float32 and narrow.losses.dtype == np.float32
    assert np.array_equal(narrow.premium_base, wide.premium_base.astype(np.float32))
    assert np.array_equal(narrow.losses_by_market, wide.losses_by_market.astype(np.float32))
    # the pooled losses are the float32 sum of the markets' (within J float32 ulps of the float64 sum)
    assert np.allclose(narrow.losses, wide.losses, rtol=4 * 2 * np.finfo(np.float32).eps, atol=0)
    flags = wide.is_stress.nbytes
    assert narrow.nbytes - flags == (wide.nbytes - flags) // 2
    assert np.array_equal(wide.astype("float32").premium_base, narrow.premium_base)
    assert wide.astype(np.float64) is wide


def test_every_operation_keeps_the_store(pair, tmp_path):
    _, narrow = pair
    for derived in (narrow.subset([0, 5, 9]), narrow.split(0.5, seed=1)[1], narrow.random_part(),
                    narrow.scale_markets(np.array([0.9, 1.1])), ScenarioSet.concat([narrow, narrow]),
                    ScenarioSet.load(narrow.save(tmp_path / "s.npz")), pickle.loads(pickle.dumps(narrow))):
        assert derived.dtype == "float32"
        assert all(getattr(derived, f).dtype == np.float32 for f in ("losses", "premium_base", "losses_by_market"))


def test_a_bad_store_dtype_is_one_line():
    with pytest.raises(ScenarioError, match=r"dtype must be one of \['float64', 'float32'\], got 'float16'"):
        ScenarioSet(losses=np.ones((2, 3)), premium_base=np.ones((2, 3, 1)), markets=("A",), dtype="float16")
    # float32's rounding of the pooled sum is allowed, a real mismatch is still refused
    by_market = np.full((2, 3, 2), 0.1, dtype=np.float32)
    ScenarioSet(losses=by_market.sum(axis=2) * (1 + 1e-7), premium_base=np.ones((2, 3, 2)), markets=("A", "B"),
                losses_by_market=by_market, dtype="float32")
    with pytest.raises(ScenarioError, match="losses must equal losses_by_market summed"):
        ScenarioSet(losses=by_market.sum(axis=2) * 1.001, premium_base=np.ones((2, 3, 2)), markets=("A", "B"),
                    losses_by_market=by_market, dtype="float32")


@pytest.mark.parametrize("method", ["cvar", "exact", "scenario", "certified"])
@pytest.mark.parametrize("participation", [False, True])
def test_fund_targets_move_less_than_1e5_relative(pair, method, participation):
    wide, narrow = pair
    part = None
    if participation:
        part = Participation.from_elasticity(wide.premium_base.sum(axis=1).mean(axis=0), [1.8e11, 9e10],
                                             reference_rates=0.005)
    problem = PolicyProblem(alpha=0.01, cost_of_capital=0.0123, premium_max=0.0125, participation=part,
                            premium_weight=0.0 if participation else 0.004)
    a, b = solve(problem, wide, method), solve(problem, narrow, method)
    assert a.fund_target > 0
    assert abs(b.fund_target / a.fund_target - 1) < 1e-5
    assert np.allclose(a.premium_rates, b.premium_rates, rtol=0, atol=1e-4)
    # the float32 policy's certificate is counted on the float32 figures with float64 sums
    book = narrow if part is None else part.scaled(narrow, b.premium_rates)
    flows = book.premium_base.astype(np.float64) @ b.premium_rates - book.losses.astype(np.float64)
    by_hand = int(np.count_nonzero(b.fund_target + np.cumsum(flows, axis=1).min(axis=1) < 0.0))
    assert certify(b, narrow).ruins == by_hand
