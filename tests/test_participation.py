"""optimizer.participation: the book answering its fees, the derived fee cost and the rate search."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import optimize

from fundguard.models import ScenarioSet
from fundguard.models.errors import ProblemError, ScenarioError
from fundguard.optimizer import Participation, PolicyProblem, certify, solve
from fundguard.optimizer.analysis import euler_allocation, near_optimal_set
from fundguard.optimizer.fund import worst_net_flow


def _scenarios(n=3000, horizon=10, seed=1):
    rng = np.random.default_rng(seed)
    by_market = rng.pareto(2.5, (n, horizon, 2)) * 1e5 * (rng.random((n, horizon, 2)) < 0.2)
    base = np.abs(rng.normal(5e6, 3e6, (n, horizon, 2)))
    return ScenarioSet(losses=by_market.sum(axis=2), premium_base=base, markets=("A", "B"),
                       losses_by_market=by_market)


def test_scaled_set_is_the_fund_equation_with_shares():
    scenarios = _scenarios()
    part = Participation(semi_elasticity=(4.0, 10.0), trading_revenue=(1e7, 5e6), reference_rates=0.002)
    rates = np.array([0.01, 0.0])
    shares = part.shares(rates)
    assert shares == pytest.approx([1 - 4.0 * 0.008, 1 + 10.0 * 0.002])  # more business below the reference
    scaled = part.scaled(scenarios, rates)
    # F[s,t] - F0 = sum_u sum_j pi_j (p_j B[s,u,j] - L_j[s,u]), by hand
    flow = (shares * (rates * scenarios.premium_base - scenarios.losses_by_market)).sum(axis=2)
    by_hand = np.cumsum(flow, axis=1).min(axis=1)
    assert np.allclose(worst_net_flow(scaled.losses, scaled.premium_base, rates), by_hand, rtol=1e-12, atol=1e-3)
    assert np.allclose(scaled.losses, scaled.losses_by_market.sum(axis=2))


def test_from_elasticity_is_e_base_over_trading_revenue():
    part = Participation.from_elasticity([2e7, 0.0], [6e10, 3e10], elasticity=1.2, trading_fee=0.0004)
    assert part.semi_elasticity == pytest.approx((1.2 * 2e7 / (0.0004 * 6e10), 0.0))
    assert part.trading_revenue == pytest.approx((0.0004 * 6e10, 0.0004 * 3e10))
    # the lost trading revenue of a fee p is e x the fees it would raise at full participation
    rates = np.array([0.01, 0.0])
    lost = np.asarray(part.trading_revenue) * np.asarray(part.semi_elasticity) * rates
    assert lost[0] == pytest.approx(1.2 * 0.01 * 2e7)


def test_a_vanishing_book_and_a_missing_market_split_are_one_clear_line():
    part = Participation(semi_elasticity=100.0, trading_revenue=1e6)
    with pytest.raises(ProblemError, match=r"market \[0\]'s book would vanish"):
        part.shares(np.array([0.02]))
    with pytest.raises(ProblemError, match="trader_weight must be in"):
        Participation(semi_elasticity=1.0, trader_weight=1.5)
    pooled = ScenarioSet(losses=np.ones((4, 3)), premium_base=np.ones((4, 3, 2)), markets=("A", "B"))
    with pytest.raises(ScenarioError, match="losses_by_market"):
        Participation(semi_elasticity=(1.0, 2.0)).scaled(pooled, np.array([0.01, 0.01]))
    with pytest.raises(ProblemError, match="participation must be a Participation"):
        PolicyProblem(alpha=0.01, cost_of_capital=0.01, participation={"semi_elasticity": 1.0})


def test_the_rate_search_finds_a_closed_form_optimum():
    """Identical scenarios with constant per-period loss l and base b: R(p) = T pi(p) (l - p b), so
    the cost c R(p) + C(p) is a smooth function of p whose minimum a scalar search finds exactly."""
    n, horizon, l, b = 200, 10, 1e5, 4e6
    scenarios = ScenarioSet(losses=np.full((n, horizon), l), premium_base=np.full((n, horizon, 1), b),
                            markets=("A",), losses_by_market=np.full((n, horizon, 1), l))
    eps, c, omega = 6.0, 0.05, 0.1
    revenue = 0.9 * horizon * b / eps  # an elasticity of 0.9: R eps = e E[B]
    part = Participation(semi_elasticity=eps, trading_revenue=revenue, trader_weight=omega)
    problem = PolicyProblem(alpha=0.05, cost_of_capital=c, premium_max=0.03, participation=part)

    def cost(p):
        share = 1 - eps * p
        need = max(0.0, horizon * share * (l - p * b))
        return c * need + revenue * eps * p - (1 - omega) * p * share * horizon * b + share * horizon * l

    best = optimize.minimize_scalar(cost, bounds=(0.0, 0.03), method="bounded", options={"xatol": 1e-10})
    assert 1e-3 < best.x < 0.029  # interior: the test means something
    policy = solve(problem, scenarios, method="exact")
    assert policy.premium_rates[0] == pytest.approx(best.x, abs=2e-5)
    assert policy.objective == pytest.approx(best.fun, rel=1e-6)
    assert policy.fund_target == pytest.approx(max(0.0, horizon * (1 - eps * best.x) * (l - best.x * b)), rel=1e-3)


def test_without_elasticity_the_search_matches_the_joint_solve():
    scenarios = _scenarios()
    problem = PolicyProblem(alpha=0.02, cost_of_capital=0.02, premium_weight=0.01, premium_max=0.0125)
    joint = solve(problem, scenarios, method="exact")
    flat = PolicyProblem(alpha=0.02, cost_of_capital=0.02, premium_weight=0.01, premium_max=0.0125,
                         participation=Participation(semi_elasticity=0.0, fee_cost="weight"))
    searched = solve(flat, scenarios, method="exact")
    # the cost is flat here (the near-optimal set spans most of the box): the search lands in it
    near = near_optimal_set(problem, scenarios, joint)
    assert near.flat
    assert joint.objective * (1 - 1e-9) <= searched.objective <= near.optimal_cost * (1 + near.tolerance)


def test_policies_with_participation_are_counted_on_their_scaled_book():
    scenarios = _scenarios()
    part = Participation.from_elasticity(scenarios.premium_base.sum(axis=1).mean(axis=0), [3e10, 2e10])
    problem = PolicyProblem(alpha=0.02, cost_of_capital=0.01, premium_max=0.0125, participation=part)
    policy = solve(problem, scenarios, method="exact")
    assert policy.participation is part
    assert 0.0 < policy.premium_rates.min() and policy.premium_rates.max() < 0.0125  # interior rates
    scaled = part.scaled(scenarios, policy.premium_rates)
    worst = worst_net_flow(scaled.losses, scaled.premium_base, policy.premium_rates)
    ruins = int(np.count_nonzero(policy.fund_target + worst < 0.0))
    assert certify(policy, scenarios).ruins == ruins <= math.floor(0.02 * scenarios.n_scenarios)
    assert policy.in_sample_ruin == pytest.approx(ruins / scenarios.n_scenarios)
    # the near-optimal set and the allocation read the same scaled book
    near = near_optimal_set(problem, scenarios, policy, n_samples=64)
    assert near.optimal_cost <= policy.objective * (1 + 1e-6) + 1e-6
    shares = euler_allocation(policy, scenarios)
    assert shares.sum() == pytest.approx(policy.fund_target, rel=1e-12)


def test_the_frontier_with_participation_searches_the_rates_at_every_level():
    from fundguard.optimizer import frontier

    scenarios = _scenarios(n=1500)
    part = Participation.from_elasticity(scenarios.premium_base.sum(axis=1).mean(axis=0), [3e10, 2e10])
    problem = PolicyProblem(alpha=0.02, cost_of_capital=0.01, premium_max=0.0125, participation=part)
    policies = frontier(problem, scenarios, [0.01, 0.05], method="exact")
    assert all(p.participation is part for p in policies)
    assert policies[0].fund_target >= policies[1].fund_target
    single = solve(dataclasses.replace(problem, alpha=0.05), scenarios, method="exact")
    assert policies[1].objective == pytest.approx(single.objective, rel=1e-9)


# -- the screened working set of the rate search (issue 20) ------------------------------------


def _with_stress(scenarios, shock=3e6):
    n, horizon, _ = scenarios.premium_base.shape
    by_market = np.zeros((1, horizon, 2))
    by_market[0, 0] = shock
    stress = ScenarioSet(losses=by_market.sum(axis=2), premium_base=np.zeros((1, horizon, 2)), markets=("A", "B"),
                         losses_by_market=by_market, is_stress=np.ones(1, dtype=bool))
    return ScenarioSet.concat([scenarios, stress])


@pytest.mark.parametrize("method", ["exact", "cvar", "scenario"])
@pytest.mark.parametrize("stress", [False, True])
def test_the_working_set_gives_each_methods_fixed_rate_fund_target(method, stress):
    """The screened fund target equals the method run on the whole scaled set S(p), anywhere in the box."""
    from fundguard.optimizer.fund.working import WorkingSet
    from fundguard.optimizer.methods import METHODS
    from fundguard.optimizer.participation import at_fixed_rates

    scenarios = _scenarios(n=4000, seed=3)
    scenarios = ScenarioSet(losses=scenarios.losses, premium_base=scenarios.premium_base * 0.2,
                            losses_by_market=scenarios.losses_by_market, markets=scenarios.markets)
    if stress:
        scenarios = _with_stress(scenarios, shock=2.5e6)
    part = Participation(semi_elasticity=(3.0, 8.0), trading_revenue=(1e7, 5e6), reference_rates=(0.002, 0.006))
    problem = PolicyProblem(alpha=0.02, cost_of_capital=0.01, premium_max=0.03, participation=part)
    low, high = problem.rate_box(2)
    eps, _, reference = part.arrays(2)
    rule, top = METHODS[method].fixed_rule(problem.alpha, 4000, {})
    screen = WorkingSet.build(scenarios, rule, top, problem.floor, eps, reference, low, high, True)
    assert screen is not None and top <= screen.size < 4000 / 2  # it screens (the test means something)
    rng = np.random.default_rng(7)
    for rates in [low, high, *(low + rng.random((6, 2)) * (high - low))]:
        whole = solve(at_fixed_rates(problem, rates), part.scaled(scenarios, rates), method=method)
        assert screen.fund(rates) == pytest.approx(whole.fund_target, rel=1e-11, abs=1e-6)


def test_a_bound_that_fails_to_screen_keeps_every_scenario():
    """Identical scenarios: every bound ties, nothing is dropped, and the answers still agree."""
    from fundguard.optimizer.fund import FundRule
    from fundguard.optimizer.fund.working import WorkingSet

    n, horizon = 50, 5
    scenarios = ScenarioSet(losses=np.full((n, horizon), 2.0), premium_base=np.full((n, horizon, 1), 10.0),
                            markets=("A",), losses_by_market=np.full((n, horizon, 1), 2.0))
    rule = FundRule.quantile(0.1, n)
    screen = WorkingSet.build(scenarios, rule, rule.allowed + 1, 0.0, np.array([2.0]), np.array([0.0]),
                              np.array([0.0]), np.array([0.05]), True)
    assert screen.size == n
    # R(p) = T pi(p) (l - p b) with pi = 1 - 2 p
    assert screen.fund(np.array([0.04])) == pytest.approx(horizon * (1 - 0.08) * (2.0 - 0.4))


@pytest.mark.parametrize("method", ["exact", "cvar"])
def test_the_screened_search_is_the_full_search(method):
    """The search on the working set lands where running the method at every candidate lands."""
    from fundguard.optimizer.fund.working import WorkingSet
    from fundguard.optimizer.methods import METHODS
    from fundguard.optimizer.participation import solve_with_participation

    scenarios = _with_stress(_scenarios(n=3000, seed=5), shock=2e6)
    part = Participation.from_elasticity(scenarios.premium_base[:-1].sum(axis=1).mean(axis=0), [3e10, 2e10])
    problem = PolicyProblem(alpha=0.02, cost_of_capital=0.01, premium_max=0.0125, participation=part)
    run = METHODS[method].run
    screen = WorkingSet.for_problem(problem, scenarios, METHODS[method].fixed_rule, {})
    fast = solve_with_participation(problem, scenarios, method, run, screen=screen)
    slow = solve_with_participation(problem, scenarios, method, run)
    working = fast.details["participation"]["working_set"]
    assert working["agrees"] and working["scenarios"] < 3000 / 2
    assert slow.details["participation"]["working_set"] == {"scenarios": None}
    assert np.allclose(fast.premium_rates, slow.premium_rates, rtol=0, atol=1e-12)
    assert fast.fund_target == pytest.approx(slow.fund_target, rel=1e-12)
    assert fast.objective == pytest.approx(slow.objective, rel=1e-12)
