"""Property-based checks (hypothesis) on the optimizer and the loss model, plus degenerate cases.

For random valid problems: the returned policy meets its own promise on an independent numpy
re-check; more risk never buys a cheaper policy; the only exceptions are documented ones.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fundguard.models import LeverageTier, Market, ReturnPaths, ScenarioSet, VenueBook, build_scenarios
from fundguard.models.errors import FundguardError, FundguardWarning
from fundguard.optimizer import PolicyProblem, ruin_probability, solve

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def scenario_sets(draw, max_n: int = 300):
    n = draw(st.integers(50, max_n))
    t = draw(st.integers(1, 6))
    j = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    money = 10.0 ** draw(st.integers(3, 11))  # 1e3 .. 1e11 currency units
    tail = draw(st.floats(1.5, 6.0))
    rng = np.random.default_rng(seed)
    losses = money * rng.pareto(tail, (n, t)) * (rng.random((n, t)) < draw(st.floats(0.0, 0.5)))
    base = money * 20 * rng.gamma(2.0, 1.0, (n, t, j))
    return ScenarioSet(losses, base, [f"m{i}" for i in range(j)])


def numpy_ruin_rate(policy, scenarios: ScenarioSet) -> float:
    """Independent re-check: F[s,t] = F0 + cumsum(p.B - L) < floor anywhere."""
    income = np.einsum("stj,j->st", scenarios.premium_base, policy.premium_rates)
    fund = policy.fund_target + np.cumsum(income - scenarios.losses, axis=1)
    return float((fund.min(axis=1) < policy.floor).mean())


@SETTINGS
@given(scenarios=scenario_sets(), alpha=st.sampled_from([0.01, 0.05, 0.2]),
       method=st.sampled_from(["cvar", "exact"]), weight=st.floats(0.0, 0.05), coc=st.floats(0.001, 0.2))
def test_policy_keeps_its_promise_on_a_numpy_recheck(scenarios, alpha, method, weight, coc):
    problem = PolicyProblem(alpha=alpha, cost_of_capital=coc, premium_weight=weight, premium_max=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FundguardWarning)
        policy = solve(problem, scenarios, method=method)
    ruin = numpy_ruin_rate(policy, scenarios)
    assert ruin == pytest.approx(policy.in_sample_ruin, abs=1e-12)
    assert ruin == pytest.approx(ruin_probability(policy, scenarios), abs=1e-12)
    assert ruin <= math.floor(alpha * scenarios.n_scenarios) / scenarios.n_scenarios + 1e-12
    assert policy.fund_target >= 0 and np.all(policy.premium_rates >= 0) and np.all(policy.premium_rates <= 0.01 + 1e-12)


@SETTINGS
@given(scenarios=scenario_sets(), factor=st.floats(1.0, 3.0), method=st.sampled_from(["cvar", "exact"]))
def test_larger_losses_never_need_less_fund(scenarios, factor, method):
    problem = PolicyProblem(alpha=0.05, cost_of_capital=0.1, premium_max=0.0)  # rates fixed at zero
    worse = ScenarioSet(scenarios.losses * factor, scenarios.premium_base, scenarios.markets)
    a = solve(problem, scenarios, method=method).fund_target
    b = solve(problem, worse, method=method).fund_target
    assert b >= a * (1 - 1e-9)
    assert b == pytest.approx(a * factor, rel=1e-9, abs=1e-6)  # rates at zero: F0 scales exactly


@SETTINGS
@given(scenarios=scenario_sets(max_n=200), alpha=st.floats(0.001, 0.5), weight=st.floats(-1.0, 1.0),
       pmax=st.floats(-0.01, 0.05), fund_max=st.one_of(st.none(), st.floats(0.0, 1e12)),
       method=st.sampled_from(["cvar", "exact", "scenario", "certified"]))
def test_only_documented_exceptions(scenarios, alpha, weight, pmax, fund_max, method):
    try:
        problem = PolicyProblem(alpha=alpha, cost_of_capital=0.05, premium_weight=weight, premium_max=pmax,
                                fund_max=fund_max)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FundguardWarning)
            policy = solve(problem, scenarios, method=method)
    except FundguardError:
        return
    assert policy.fund_target >= 0
    if fund_max is not None:
        assert policy.fund_target <= fund_max * (1 + 1e-9) + 1e-9


@pytest.mark.parametrize("method", ["cvar", "exact", "scenario", "certified"])
def test_all_zero_losses_need_no_fund_and_minimum_rates(method):
    n = 20_000 if method == "certified" else 3000
    scenarios = ScenarioSet(np.zeros((n, 5)), np.ones((n, 5, 2)) * 1e6, ["A", "B"])
    problem = PolicyProblem(alpha=0.01, cost_of_capital=0.1, premium_weight=0.5, premium_min=[0.001, 0.0],
                            premium_max=0.01)
    policy = solve(problem, scenarios, method=method)
    assert policy.fund_target == 0.0
    np.testing.assert_allclose(policy.premium_rates, [0.001, 0.0], atol=1e-12)
    assert policy.in_sample_ruin == 0.0


# The loss model: monotone in open interest and leverage, on random paths.


@st.composite
def return_paths(draw):
    n, t = draw(st.integers(1, 40)), draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    vol = draw(st.floats(0.005, 0.15))
    returns = rng.standard_t(3, (n, t, 1)) * vol
    return ReturnPaths(returns=returns, volatility=np.full((n, t, 1), vol), markets=("X",))


@SETTINGS
@given(paths=return_paths(), oi=st.floats(1e6, 1e11), factor=st.floats(1.0, 10.0))
def test_loss_model_monotone_in_open_interest(paths, oi, factor):
    small = build_scenarios(paths, VenueBook([Market("X", oi, 3 * oi)]))
    large = build_scenarios(paths, VenueBook([Market("X", oi * factor, 3 * oi)]))
    assert np.all(large.losses >= small.losses * (1 - 1e-12))


@SETTINGS
@given(paths=return_paths(), low=st.floats(1.0, 20.0), extra=st.floats(0.0, 80.0))
def test_loss_model_monotone_in_leverage(paths, low, extra):
    high = low + extra
    assume(0.004 < 1.0 / high)
    book = lambda lev: VenueBook([Market("X", 1e9, 3e9, tiers=(LeverageTier(1.0, lev, 0.004),))])  # noqa: E731
    calm = build_scenarios(paths, book(low), loss_model="liquidation_gap")
    levered = build_scenarios(paths, book(high), loss_model="liquidation_gap")
    assert np.all(levered.losses >= calm.losses * (1 - 1e-12) - 1e-6)
    # the stateful book remembers: a levered book loses earlier, not every period, but it
    # liquidates at least as much by every date
    calm = build_scenarios(paths, book(low))
    levered = build_scenarios(paths, book(high))
    assert np.all(np.cumsum(levered.liquidated, axis=1) >= np.cumsum(calm.liquidated, axis=1) * (1 - 1e-9) - 1e-3)
