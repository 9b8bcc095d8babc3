"""Tests of optimizer/analysis.py: the near-optimal set and the Euler allocation.

Small exact examples (flat and sharply curved problems whose cost is known in closed form, losses
in exact proportion) and a brute-force yardstick: the exact sample fund target recomputed here
with plain numpy (cumsum, sort), independent of the module's streaming pass.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fundguard.models import ScenarioSet
from fundguard.models.errors import ProblemError, ScenarioError
from fundguard.optimizer import (
    NearOptimalSet,
    Policy,
    PolicyProblem,
    euler_allocation,
    near_optimal_set,
    solve,
)


def _policy(fund_target: float, rates, markets, *, floor: float = 0.0, alpha: float = 0.1, n: int = 100) -> Policy:
    return Policy(fund_target=fund_target, premium_rates=np.asarray(rates, dtype=float), objective=0.0,
                  method="exact", status="optimal", in_sample_ruin=0.0, solve_seconds=0.0, solver="closed form",
                  markets=tuple(markets), floor=floor, alpha=alpha, n_scenarios=n)


def _brute_cost(problem: PolicyProblem, scenarios: ScenarioSet, rates: np.ndarray) -> float:
    """The exact sample yardstick by brute force: cumsum over periods, sort, (k+1)-th largest."""
    random = ~scenarios.is_stress
    net = np.einsum("stj,j->st", scenarios.premium_base, rates) - scenarios.losses
    required = problem.floor - np.cumsum(net, axis=1).min(axis=1)
    n = int(random.sum())
    k = int(np.floor(problem.alpha * n * (1 + 1e-9)))
    fund = max(0.0, float(np.sort(required[random])[::-1][k]))
    if problem.survive_stress and (~random).any():
        fund = max(fund, float(required[~random].max()))
    mean_base = scenarios.premium_base[random].sum(axis=1).mean(axis=0)
    weight = np.broadcast_to(np.asarray(problem.premium_weight, dtype=float), rates.shape)
    cost = problem.cost_of_capital * fund + float(weight @ (rates * mean_base))
    if problem.rate_change_penalty:
        change = rates - np.broadcast_to(np.asarray(problem.previous_rates, dtype=float), rates.shape)
        cost += problem.rate_change_penalty * float(change @ change)
    return cost


def _linear_set(n: int = 50, base: float = 1000.0, n_markets: int = 1, seed: int = 1) -> ScenarioSet:
    """One period: ``R_s(p) = a_s - base * sum_j p_j`` with a_s in [2000, 3000) (so F0 > 0 on the box)."""
    rng = np.random.default_rng(seed)
    losses = rng.uniform(2000.0, 3000.0, size=(n, 1))
    premium_base = np.full((n, 1, n_markets), base)
    return ScenarioSet(losses=losses, premium_base=premium_base, markets=[f"M{j}" for j in range(n_markets)])


def _random_set(n: int = 120, horizon: int = 8, n_markets: int = 2, seed: int = 3) -> ScenarioSet:
    rng = np.random.default_rng(seed)
    by_market = rng.exponential(1.0, size=(n, horizon, n_markets)) ** 2 * rng.uniform(50, 150, n_markets)
    premium_base = rng.uniform(500.0, 1500.0, size=(n, horizon, n_markets))
    return ScenarioSet(losses=by_market.sum(axis=2), premium_base=premium_base,
                       markets=[f"M{j}" for j in range(n_markets)], losses_by_market=by_market)


# ---------------------------------------------------------------------------------------------
# near_optimal_set


def test_flat_problem_covers_the_whole_box():
    # R_s = a_s - b p, one period; cost = c (q - b p) + w b p is constant in p when c b == w b
    scenarios = _linear_set()
    problem = PolicyProblem(alpha=0.1, cost_of_capital=0.05, premium_weight=0.05, premium_max=0.5)
    result = near_optimal_set(problem, scenarios, n_samples=64)
    assert isinstance(result, NearOptimalSet)
    assert result.flat
    assert result.rate_ranges[0, 0] == 0.0 and result.rate_ranges[0, 1] == 0.5
    assert result.n_near == result.n_evaluated  # every point costs the same, to rounding
    q = np.sort(scenarios.losses[:, 0])[::-1][5]  # (k+1)-th largest, k = floor(0.1 * 50) = 5
    assert result.optimal_cost == pytest.approx(0.05 * q, rel=1e-12)
    assert result.fund_target_range == pytest.approx((q - 500.0, q), rel=1e-12)


def test_sharp_problem_is_narrow_and_holds_the_known_optimum():
    # as above plus a steep rate-change penalty: cost = c q + P ||p - (0.004, 0)||^2, optimum
    # (0.004, 0) (interior in market 0, a corner in market 1); within 1% of C* = c q means
    # ||p - p*|| <= sqrt(0.01 c q / P), about 1.2e-3, under a quarter of the 0.01-wide box
    scenarios = _linear_set(n_markets=2)
    problem = PolicyProblem(alpha=0.1, cost_of_capital=0.05, premium_weight=0.05, premium_max=0.01,
                            rate_change_penalty=1e6, previous_rates=(0.004, 0.0))
    result = near_optimal_set(problem, scenarios, n_samples=256)
    q = np.sort(scenarios.losses[:, 0])[::-1][5]
    radius = np.sqrt(0.01 * 0.05 * q / 1e6)
    assert not result.flat
    assert result.optimal_cost == pytest.approx(0.05 * q, rel=1e-6)
    assert np.allclose(result.optimal_rates, [0.004, 0.0], atol=1e-5)
    lows, highs = result.rate_ranges.T
    assert np.all(lows <= [0.004, 0.0]) and np.all(highs >= [0.004, 0.0])
    assert np.all(highs - lows <= 2 * radius + 1e-12)
    assert result.fund_target_range[1] - result.fund_target_range[0] <= 1000 * 2 * 2 * radius + 1e-9
    assert 1 <= result.n_near < result.n_evaluated


def test_optimal_cost_not_above_the_exact_policy():
    scenarios = _random_set()
    # premiums cheap enough that the optimum is off the corners: p* = (0.5, 0.395) here
    problem = PolicyProblem(alpha=0.1, cost_of_capital=0.1, premium_weight=(0.02, 0.03), premium_max=0.5)
    policy = solve(problem, scenarios, method="exact")
    assert 0.0 < policy.premium_rates[1] < 0.5
    exact_cost = _brute_cost(problem, scenarios, np.asarray(policy.premium_rates))
    with_policy = near_optimal_set(problem, scenarios, policy, n_samples=64)
    without = near_optimal_set(problem, scenarios, n_samples=64)
    assert with_policy.optimal_cost <= exact_cost * (1 + 1e-12)
    # the yardstick is the brute-force one at the point it reports
    assert with_policy.optimal_cost == pytest.approx(
        _brute_cost(problem, scenarios, with_policy.optimal_rates), rel=1e-12)
    # the policy's own objective carries the rounding lift only: a few ulps above the yardstick
    assert policy.objective == pytest.approx(exact_cost, rel=1e-9)
    # sampling alone gets within the tolerance of the proven optimum and, on the same yardstick,
    # never beats it by more than the MILP's optimality gap
    assert exact_cost * (1 - 1e-4) <= without.optimal_cost <= exact_cost * (1 + without.tolerance)
    lows, highs = with_policy.rate_ranges.T
    assert np.all(lows <= policy.premium_rates + 1e-15) and np.all(policy.premium_rates <= highs + 1e-15)


def test_stress_scenarios_and_fund_max_enter_the_yardstick():
    scenarios = _linear_set(n=40)
    stress = ScenarioSet(losses=np.array([[5000.0]]), premium_base=np.array([[[1000.0]]]), markets=["M0"],
                         is_stress=np.array([True]))
    both = ScenarioSet.concat([scenarios, stress])
    problem = PolicyProblem(alpha=0.1, cost_of_capital=0.05, premium_weight=0.0, premium_max=1.0)
    # free premiums: p -> 1, F0 = max(q - 1000, 5000 - 1000) = 4000 from the stress scenario
    assert near_optimal_set(problem, both, n_samples=16).optimal_cost == pytest.approx(0.05 * 4000.0)
    ignored = PolicyProblem(alpha=0.1, cost_of_capital=0.05, premium_max=1.0, survive_stress=False)
    q = np.sort(scenarios.losses[:, 0])[::-1][4]
    assert near_optimal_set(ignored, both, n_samples=16).optimal_cost == pytest.approx(0.05 * (q - 1000.0))
    # fund_max below what p = 0 needs: the low rates are excluded from the set
    capped = PolicyProblem(alpha=0.1, cost_of_capital=0.05, premium_weight=0.05, premium_max=1.0,
                           fund_max=q - 500.0, survive_stress=False)
    result = near_optimal_set(capped, both, n_samples=32)
    assert result.rate_ranges[0, 0] >= 0.5 - 1e-12 and result.fund_target_range[1] <= q - 500.0


def test_to_dict_is_json_safe():
    result = near_optimal_set(PolicyProblem(alpha=0.1, cost_of_capital=0.05, premium_weight=0.05),
                              _linear_set(n_markets=2), n_samples=8)
    view = json.loads(json.dumps(result.to_dict()))
    assert view["markets"] == ["M0", "M1"] and len(view["rate_ranges"]) == 2
    assert view["n_evaluated"] == result.n_evaluated and isinstance(view["flat"], bool)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"tolerance": -0.01}, "tolerance"),
    ({"tolerance": float("nan")}, "tolerance"),
    ({"n_samples": 0}, "n_samples"),
])
def test_near_optimal_set_rejects_bad_options(kwargs, field):
    problem = PolicyProblem(alpha=0.1, cost_of_capital=0.05)
    with pytest.raises(ProblemError, match=field):
        near_optimal_set(problem, _linear_set(), **kwargs)


def test_near_optimal_set_rejects_a_wrong_market_count():
    problem = PolicyProblem(alpha=0.1, cost_of_capital=0.05, premium_weight=(0.1, 0.2, 0.3))
    with pytest.raises(ProblemError, match="premium_weight"):
        near_optimal_set(problem, _linear_set(n_markets=2))
    with pytest.raises(ProblemError, match="premium_rates"):
        near_optimal_set(PolicyProblem(alpha=0.1, cost_of_capital=0.05), _linear_set(n_markets=2),
                         _policy(1.0, [0.0], ["M0"]))
    with pytest.raises(ProblemError, match="policy.markets"):
        near_optimal_set(PolicyProblem(alpha=0.1, cost_of_capital=0.05), _linear_set(n_markets=2),
                         _policy(1.0, [0.0, 0.0], ["M1", "M0"]))


# ---------------------------------------------------------------------------------------------
# euler_allocation


def test_allocation_sums_exactly_to_the_fund_above_the_floor():
    scenarios = _random_set(n_markets=3)
    problem = PolicyProblem(alpha=0.05, cost_of_capital=0.1, premium_weight=0.3, premium_max=0.02, floor=25.0)
    policy = solve(problem, scenarios, method="exact")
    shares = euler_allocation(policy, scenarios)
    assert isinstance(shares, pd.Series) and list(shares.index) == list(scenarios.markets)
    assert shares.sum() == pytest.approx(policy.fund_target - policy.floor, rel=1e-12)
    assert shares.attrs["floor"] == 25.0 and shares.attrs["basis"] == "window"
    assert shares.attrs["window"] == 10  # max(10, 2% of 120)


def test_allocation_matches_a_hand_window_average():
    scenarios = _random_set(n=60, n_markets=2)
    rates = np.array([0.001, 0.002])
    policy = _policy(500.0, rates, scenarios.markets, alpha=0.1, n=60)
    net = np.einsum("stj,j->st", scenarios.premium_base, rates) - scenarios.losses
    running = np.cumsum(net, axis=1)
    worst_t = running.argmin(axis=1)
    flows = np.cumsum(scenarios.losses_by_market - scenarios.premium_base * rates, axis=1)
    c = flows[np.arange(60), worst_t]
    order = np.argsort(-running.min(axis=1), kind="stable")
    # quantile rank: ascending position 60 - 6 - 1 = 53; a window of 4 centred there: 51..54
    means = c[order[51:55]].mean(axis=0)
    shares = euler_allocation(policy, scenarios, window=4)
    assert shares.to_numpy() == pytest.approx(means * 500.0 / means.sum(), rel=1e-12)


def test_proportional_losses_split_one_third_two_thirds():
    rng = np.random.default_rng(7)
    first = rng.exponential(10.0, size=(80, 5))
    by_market = np.stack([first, 2.0 * first], axis=2)
    scenarios = ScenarioSet(losses=by_market.sum(axis=2), premium_base=np.ones((80, 5, 2)), markets=["A", "B"],
                            losses_by_market=by_market)
    problem = PolicyProblem(alpha=0.05, cost_of_capital=0.1, premium_max=0.0)
    policy = solve(problem, scenarios, method="exact")
    shares = euler_allocation(policy, scenarios)
    amount = policy.fund_target - policy.floor
    assert shares["A"] == pytest.approx(amount / 3, rel=1e-12)
    assert shares["B"] == pytest.approx(2 * amount / 3, rel=1e-12)


def test_one_market_takes_the_whole_amount_without_a_split():
    scenarios = _linear_set()  # pooled losses only
    policy = _policy(1234.5, [0.001], scenarios.markets, floor=-100.0)
    shares = euler_allocation(policy, scenarios)
    assert shares.to_dict() == {"M0": 1334.5}


def test_falls_back_to_the_tail_when_the_window_needs_nothing():
    # 19 scenarios without losses and one with: the window at the 90% quantile needs nothing
    by_market = np.zeros((20, 2, 2))
    by_market[0] = [[3.0, 1.0], [0.0, 0.0]]
    scenarios = ScenarioSet(losses=by_market.sum(axis=2), premium_base=np.ones((20, 2, 2)), markets=["A", "B"],
                            losses_by_market=by_market)
    shares = euler_allocation(_policy(8.0, [0.0, 0.0], ["A", "B"], alpha=0.1, n=20), scenarios, window=3)
    assert shares.attrs["basis"] == "cvar tail"
    assert shares.to_numpy() == pytest.approx([6.0, 2.0], rel=1e-12)


def test_allocation_rejects_bad_input():
    scenarios = _random_set(n=30)
    policy = _policy(10.0, [0.0, 0.0], scenarios.markets, n=30)
    pooled = ScenarioSet(losses=scenarios.losses, premium_base=scenarios.premium_base, markets=scenarios.markets)
    with pytest.raises(ScenarioError, match="losses_by_market"):
        euler_allocation(policy, pooled)
    with pytest.raises(ProblemError, match="markets"):
        euler_allocation(_policy(10.0, [0.0], ["M0"]), scenarios)
    with pytest.raises(ProblemError, match="alpha"):
        euler_allocation(policy, scenarios, alpha=1.5)
    with pytest.raises(ProblemError, match="window"):
        euler_allocation(policy, scenarios, window=31)


def test_a_binding_stress_scenario_is_what_the_allocation_splits():
    """When a stress scenario needs more than the quantile, the fund target is made of it: its own
    contributions (here market B's loss alone) are the allocation."""
    rng = np.random.default_rng(4)
    n, horizon = 500, 5
    by_market = rng.exponential(1e4, (n + 1, horizon, 2))
    by_market[-1] = 0.0
    by_market[-1, 2, 1] = 5e7  # the stress scenario: market B alone loses 50m on day 3
    stress = np.zeros(n + 1, dtype=bool)
    stress[-1] = True
    scenarios = ScenarioSet(losses=by_market.sum(axis=2), premium_base=np.zeros((n + 1, horizon, 2)),
                            markets=("A", "B"), is_stress=stress, losses_by_market=by_market)
    policy = Policy(fund_target=5e7, premium_rates=np.zeros(2), objective=0.0, method="given", status="given",
                    in_sample_ruin=0.0, solve_seconds=0.0, solver="none", markets=("A", "B"), floor=0.0,
                    alpha=0.01, n_scenarios=n)
    shares = euler_allocation(policy, scenarios)
    assert shares["A"] == pytest.approx(0.0, abs=1e-6) and shares["B"] == pytest.approx(5e7)
    assert shares.attrs["basis"].startswith("stress scenario")


@pytest.mark.parametrize("participation", [False, True])
def test_the_yardstick_on_its_working_set_is_the_whole_sample_order_statistic(participation):
    """The near-optimal set reads fund targets from a screened working set (issue 20); at any
    rates they are the (floor(alpha N) + 1)-th largest required fund over every scenario."""
    from fundguard.optimizer import Participation
    from fundguard.optimizer.analysis import _Yardstick
    from fundguard.optimizer.fund import worst_net_flow

    rng = np.random.default_rng(11)
    n, horizon = 5000, 12
    by_market = rng.pareto(2.5, (n, horizon, 2)) * 1e5 * (rng.random((n, horizon, 2)) < 0.2)
    base = np.abs(rng.normal(1e6, 6e5, (n, horizon, 2)))
    scenarios = ScenarioSet(losses=by_market.sum(axis=2), premium_base=base, markets=("A", "B"),
                            losses_by_market=by_market if participation else None)
    part = Participation(semi_elasticity=(3.0, 6.0), trading_revenue=(1e7, 5e6)) if participation else None
    problem = PolicyProblem(alpha=0.01, cost_of_capital=0.02, premium_max=0.02, participation=part)
    yardstick = _Yardstick.of(problem, scenarios)
    assert yardstick.screen is not None and yardstick.screen.size < n / 4
    for rates in rng.random((5, 2)) * 0.02:
        book = scenarios if part is None else part.scaled(scenarios, rates)
        required = -worst_net_flow(book.losses, book.premium_base, rates)
        expected = max(0.0, float(np.sort(required)[-(int(0.01 * n) + 1)]))
        assert yardstick.fund_target(rates) == pytest.approx(expected, rel=1e-11)
