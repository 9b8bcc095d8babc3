"""Tests of fundguard.optimizer.methods and .solve: the methods, their promises, frontier, comparison.

Scenario sets are built here from numpy (Student-t losses, gamma premium bases), never from
models.scenarios / models.venue, so these tests pin the optimizer alone.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import textwrap
import warnings

import cvxpy as cp
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fundguard.optimizer.solvers as solvers_module
import fundguard.optimizer.methods as methods_module
from fundguard.models import ScenarioSet
from fundguard.models.errors import (
    ConvergenceWarning,
    InfeasibleError,
    ProblemError,
    ScenarioError,
    SolverError,
)
from fundguard.optimizer import (
    Policy,
    PolicyProblem,
    certify,
    compare_methods,
    frontier,
    ruin_probability,
    scenario_sample_size,
    solve,
)
from fundguard.optimizer.fund import allowed_ruins


def fat_tailed(n: int, horizon: int = 8, n_markets: int = 3, seed: int = 0, scale: float = 1.0) -> ScenarioSet:
    """Losses from squared excesses of Student-t(3) shocks; premium bases gamma, rising with the shock."""
    rng = np.random.default_rng(seed)
    shock = np.abs(rng.standard_t(3.0, size=(n, horizon, n_markets)))
    losses = scale * np.maximum(shock.sum(axis=2) - n_markets, 0.0) ** 2
    base = scale * rng.gamma(2.0, 20.0, size=(n, horizon, n_markets)) * (1.0 + shock)
    return ScenarioSet(losses=losses, premium_base=base, markets=[f"m{j}" for j in range(n_markets)])


def with_stress(scenarios: ScenarioSet, stress_losses: np.ndarray) -> ScenarioSet:
    """Append stress scenarios with the given (Ns, T) losses and zero premium base."""
    n_stress, horizon = stress_losses.shape
    stress = ScenarioSet(
        losses=stress_losses,
        premium_base=np.zeros((n_stress, horizon, scenarios.n_markets)),
        markets=scenarios.markets,
        is_stress=np.ones(n_stress, dtype=bool),
    )
    return ScenarioSet.concat([scenarios, stress])


PROBLEM = PolicyProblem(alpha=0.05, cost_of_capital=0.1, premium_weight=[0.02, 0.06, 0.3], premium_max=0.05)


def objective_by_hand(problem: PolicyProblem, policy: Policy, scenarios: ScenarioSet) -> float:
    random_part = scenarios.random_part()
    n_markets = scenarios.n_markets
    mean_base = random_part.premium_base.sum(axis=1).mean(axis=0)
    value = problem.cost_of_capital * policy.fund_target
    value += float(problem.per_market("premium_weight", n_markets) @ (policy.premium_rates * mean_base))
    if problem.rate_change_penalty:
        change = policy.premium_rates - problem.per_market("previous_rates", n_markets)
        value += problem.rate_change_penalty * float(change @ change)
    return value


def ruined_by_hand(policy: Policy, scenarios: ScenarioSet) -> np.ndarray:
    """F[s, t] recomputed from the design's equation; True where min_t F < floor."""
    flow = scenarios.premium_base @ policy.premium_rates - scenarios.losses
    fund = policy.fund_target + np.cumsum(flow, axis=1)
    return fund.min(axis=1) < policy.floor


# --------------------------------------------------------------------------------------------
# closed forms with the rates fixed at zero
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("alpha", "n"), [(0.013, 1000), (0.01, 1000), (0.29, 100), (0.5, 7)])
def test_exact_with_rates_fixed_at_zero_is_the_order_statistic(alpha, n):
    scenarios = fat_tailed(n, seed=1)
    problem = PolicyProblem(alpha=alpha, cost_of_capital=0.1, premium_max=0.0)
    policy = solve(problem, scenarios, "exact")
    k = math.floor(alpha * n + 1e-9)
    worst_cumulative = np.cumsum(scenarios.losses, axis=1).max(axis=1)
    expected = np.sort(worst_cumulative)[::-1][k]  # the (k + 1)-th largest
    assert policy.fund_target == expected
    assert policy.solver == "closed form" and policy.status == "optimal"
    np.testing.assert_array_equal(policy.premium_rates, np.zeros(3))
    assert policy.in_sample_ruin == k / n
    assert policy.objective == pytest.approx(0.1 * expected, rel=1e-15)


@pytest.mark.parametrize(("alpha", "n"), [(0.013, 1000), (0.01, 1000), (0.05, 333), (0.001, 500)])
def test_cvar_with_rates_fixed_at_zero_is_the_sample_cvar(alpha, n):
    scenarios = fat_tailed(n, seed=2)
    problem = PolicyProblem(alpha=alpha, cost_of_capital=0.1, premium_max=0.0)
    policy = solve(problem, scenarios, "cvar")
    worst = np.sort(np.cumsum(scenarios.losses, axis=1).max(axis=1))[::-1]
    m = alpha * n
    k = math.floor(m + 1e-9)
    closed_form = (worst[:k].sum() + (m - k) * worst[k]) / m
    # Rockafellar–Uryasev: min over eta of eta + E[(X - eta)+] / alpha, attained at a sample point.
    ru = min(eta + np.maximum(worst - eta, 0.0).sum() / m for eta in worst[: k + 2])
    assert closed_form == pytest.approx(ru, rel=1e-12)
    assert policy.fund_target == pytest.approx(closed_form, rel=1e-12)
    assert policy.in_sample_ruin <= k / n


def test_fixed_nonzero_rates_are_honoured_with_a_floor():
    scenarios = fat_tailed(300, seed=3)
    fixed = [0.01, 0.0, 0.02]
    problem = PolicyProblem(alpha=0.1, cost_of_capital=0.1, premium_min=fixed, premium_max=fixed, floor=25.0)
    policy = solve(problem, scenarios, "exact")
    np.testing.assert_array_equal(policy.premium_rates, [0.01, 0.0, 0.02])
    ruined = ruined_by_hand(policy, scenarios)
    assert ruined.sum() <= 30
    # Minimal: a fund target one part in 1e9 lower ruins more than allowed.
    lower = dataclasses.replace(policy, fund_target=policy.fund_target * (1 - 1e-9) - 1e-9)
    assert ruined_by_hand(lower, scenarios).sum() > 30


# --------------------------------------------------------------------------------------------
# J = 3: the reference formulation, the ordering of methods, their promises
# --------------------------------------------------------------------------------------------


def plain_cvar(problem: PolicyProblem, scenarios: ScenarioSet) -> tuple[float, np.ndarray, float]:
    """The textbook one-row-per-(scenario, period) Rockafellar–Uryasev program, written independently."""
    n, horizon, n_markets = scenarios.premium_base.shape
    cum_base = np.cumsum(scenarios.premium_base, axis=1).reshape(n * horizon, n_markets)
    cum_loss = np.cumsum(scenarios.losses, axis=1).reshape(n * horizon)
    mean_base = scenarios.premium_base.sum(axis=1).mean(axis=0)
    fund0 = cp.Variable()
    rates = cp.Variable(n_markets)
    eta = cp.Variable()
    excess = cp.Variable(n, nonneg=True)
    shortfall = problem.floor - (fund0 + cum_base @ rates - cum_loss)  # floor - F[s, t]
    constraints = [
        excess[np.repeat(np.arange(n), horizon)] >= shortfall - eta,
        eta + cp.sum(excess) / (problem.alpha * n) <= 0,
        rates >= problem.per_market("premium_min", n_markets),
        rates <= problem.per_market("premium_max", n_markets),
        fund0 >= 0,
    ]
    cost = problem.cost_of_capital * fund0 + (problem.per_market("premium_weight", n_markets) * mean_base) @ rates
    if problem.rate_change_penalty:
        cost = cost + problem.rate_change_penalty * cp.sum_squares(rates - problem.per_market("previous_rates", n_markets))
    reference = cp.Problem(cp.Minimize(cost), constraints)
    reference.solve(solver=cp.CLARABEL)
    assert reference.status == cp.OPTIMAL
    return float(reference.value), np.asarray(rates.value), float(fund0.value)


@pytest.mark.parametrize(
    "problem",
    [
        PROBLEM,
        dataclasses.replace(PROBLEM, floor=20.0, premium_min=[0.0, 0.01, 0.0]),
        dataclasses.replace(PROBLEM, rate_change_penalty=2e4, previous_rates=[0.02, 0.01, 0.0]),
    ],
    ids=["linear", "floor-and-min", "rate-penalty"],
)
def test_cvar_equals_an_independent_plain_cvxpy_formulation(problem):
    scenarios = fat_tailed(300, seed=4)
    policy = solve(problem, scenarios, "cvar")
    value, rates, fund0 = plain_cvar(problem, scenarios)
    assert policy.status == "optimal"
    assert policy.objective == pytest.approx(value, rel=1e-6)
    assert policy.objective == pytest.approx(objective_by_hand(problem, policy, scenarios), rel=1e-12)
    np.testing.assert_allclose(policy.premium_rates, rates, atol=1e-5)
    assert policy.fund_target == pytest.approx(fund0, rel=1e-5)


def test_every_method_keeps_its_promise_and_exact_is_never_dearer_than_cvar():
    n = 600
    scenarios = fat_tailed(n, seed=5)
    alpha = PROBLEM.alpha
    k = allowed_ruins(alpha, n)
    assert n >= scenario_sample_size(alpha, 1e-6, 4)
    policies = {method: solve(PROBLEM, scenarios, method) for method in ("cvar", "exact", "scenario")}
    for method, policy in policies.items():
        assert policy.method == method
        assert policy.status == "optimal", (method, policy.details)
        assert policy.premium_rates.shape == (3,)
        assert np.all(policy.premium_rates >= 0.0) and np.all(policy.premium_rates <= 0.05)
        ruined = ruined_by_hand(policy, scenarios)
        assert policy.in_sample_ruin == ruined.mean() == ruin_probability(policy, scenarios)
        assert policy.objective == pytest.approx(objective_by_hand(PROBLEM, policy, scenarios), rel=1e-12)
        assert policy.solve_seconds > 0.0
    assert policies["cvar"].in_sample_ruin <= k / n
    assert policies["exact"].in_sample_ruin <= k / n
    scenario = policies["scenario"]
    assert scenario.in_sample_ruin <= scenario.details["planned_discards"] / n
    assert scenario.discarded == round(scenario.in_sample_ruin * n)
    assert scenario.epsilon <= alpha and scenario.beta == 1e-6
    assert policies["exact"].objective <= policies["cvar"].objective * (1 + 1e-12)
    # CVaR is the conservative stand-in: it needs at least the exact method's fund.
    assert policies["cvar"].fund_target >= policies["exact"].fund_target * (1 - 1e-9)


def test_exact_is_the_global_optimum_on_a_fine_grid_for_one_market():
    # One free rate: the exact optimum can be bracketed by brute force over a grid of rates.
    scenarios = fat_tailed(200, horizon=5, n_markets=1, seed=6)
    for penalty in (0.0, 3e4):
        problem = PolicyProblem(
            alpha=0.05, cost_of_capital=0.1, premium_weight=0.05, premium_max=0.05,
            rate_change_penalty=penalty, previous_rates=0.01 if penalty else None,
        )
        policy = solve(problem, scenarios, "exact")
        assert policy.status == "optimal"
        k = allowed_ruins(0.05, 200)
        grid_best = math.inf
        cum_loss = np.cumsum(scenarios.losses, axis=1)
        cum_base = np.cumsum(scenarios.premium_base[..., 0], axis=1)
        mean_base = scenarios.premium_base.sum(axis=1).mean(axis=0)[0]
        for rate in np.linspace(0.0, 0.05, 2001):
            required = (cum_loss - rate * cum_base).max(axis=1)
            fund0 = max(0.0, np.sort(required)[::-1][k])
            value = 0.1 * fund0 + 0.05 * rate * mean_base + penalty * (rate - 0.01) ** 2 * bool(penalty)
            grid_best = min(grid_best, value)
        assert policy.objective <= grid_best * (1 + 1e-7)
        assert policy.objective >= grid_best * (1 - 1e-3)


def test_scenario_discards_by_the_greedy_rule_and_reports_the_guarantee():
    scenarios = fat_tailed(1200, seed=7)
    policy = solve(PROBLEM, scenarios, "scenario", beta=1e-3)
    k = policy.details["planned_discards"]
    assert k > 0
    ruined = ruined_by_hand(policy, scenarios)
    assert ruined.sum() == policy.discarded <= k
    # robust over the kept scenarios: the fund target is the largest kept required fund
    flow = np.cumsum(scenarios.premium_base @ policy.premium_rates - scenarios.losses, axis=1)
    required = policy.floor - flow.min(axis=1)
    assert policy.fund_target == pytest.approx(required[~ruined].max(), rel=1e-12)
    # one discard per round (the pure greedy rule) keeps the same promise
    pure = solve(PROBLEM, scenarios, "scenario", beta=1e-3, batch_fraction=0.0)
    assert pure.details["solves"] >= pure.discarded
    assert ruined_by_hand(pure, scenarios).sum() == pure.discarded <= k
    # an explicit k is honoured
    explicit = solve(PROBLEM, scenarios, "scenario", discarded=3)
    assert explicit.details["planned_discards"] == 3 and explicit.discarded <= 3
    assert explicit.epsilon < policy.epsilon


@pytest.mark.parametrize(
    ("seed", "penalty", "stress", "batch_fraction"),
    [(30, 0.0, False, 0.125), (31, 2e4, False, 0.125), (32, 0.0, True, 0.0), (33, 2e4, True, 0.25)],
)
def test_scenario_working_set_equals_the_cvxpy_reference(seed, penalty, stress, batch_fraction):
    """The working set gives the same robust optima and multipliers, hence the same discards."""
    scenarios = fat_tailed(1500, seed=seed)
    if stress:
        stress_losses = np.zeros((2, 8))
        stress_losses[0, 3] = 400.0
        scenarios = with_stress(scenarios, stress_losses)
    problem = dataclasses.replace(
        PROBLEM, rate_change_penalty=penalty, previous_rates=[0.02, 0.01, 0.0] if penalty else None
    )
    fast = solve(problem, scenarios, "scenario", beta=1e-3, batch_fraction=batch_fraction)
    reference = solve(problem, scenarios, "scenario", beta=1e-3, batch_fraction=batch_fraction, engine="cvxpy")
    assert fast.solver == "CLARABEL (working set)" and reference.solver == "CLARABEL"
    assert fast.status == reference.status == "optimal"
    assert fast.discarded == reference.discarded and fast.details["solves"] == reference.details["solves"]
    assert fast.objective == pytest.approx(reference.objective, rel=1e-6)
    np.testing.assert_allclose(fast.premium_rates, reference.premium_rates, atol=1e-5)
    assert ruined_by_hand(fast, scenarios.random_part()).sum() == fast.discarded
    with pytest.raises(ProblemError, match=r"engine must be one of \['auto', 'working-set', 'cvxpy'\], got 'gpu'"):
        solve(problem, scenarios, "scenario", engine="gpu")


def test_scenario_working_set_with_no_scenario_that_can_bind():
    scenarios = fat_tailed(2500, seed=34)
    zero = ScenarioSet(losses=np.zeros_like(scenarios.losses), premium_base=scenarios.premium_base, markets=scenarios.markets)
    for engine in ("working-set", "cvxpy"):
        policy = solve(PROBLEM, zero, "scenario", engine=engine)
        assert policy.fund_target == 0.0 and policy.discarded == 0
        np.testing.assert_array_equal(policy.premium_rates, np.zeros(3))


def test_scenario_with_no_discards_is_the_robust_policy():
    scenarios = fat_tailed(300, seed=8)
    problem = dataclasses.replace(PROBLEM, premium_max=0.0)
    policy = solve(problem, scenarios, "scenario", discarded=0)
    assert policy.fund_target == np.cumsum(scenarios.losses, axis=1).max()
    assert policy.in_sample_ruin == 0.0 and policy.discarded == 0


def test_scenario_needs_enough_scenarios():
    scenarios = fat_tailed(200, seed=9)
    need = scenario_sample_size(0.05, 1e-6, 4)
    with pytest.raises(ProblemError, match=rf"needs at least {need} random scenarios .* has 200"):
        solve(PROBLEM, scenarios, "scenario")
    with pytest.raises(ProblemError, match="discarded must be an integer in"):
        solve(PROBLEM, scenarios, "scenario", discarded=-1)
    with pytest.raises(ProblemError, match="beta must be in"):
        solve(PROBLEM, scenarios, "scenario", beta=1.5)
    with pytest.raises(ProblemError, match=r"batch_fraction must be a number in \[0, 1\), got 1.0"):
        solve(PROBLEM, scenarios, "scenario", discarded=2, batch_fraction=1.0)


# --------------------------------------------------------------------------------------------
# monotonicity and scaling (hypothesis)
# --------------------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    alphas=st.tuples(st.floats(0.01, 0.4), st.floats(0.01, 0.4)),
    method=st.sampled_from(["cvar", "exact"]),
)
def test_smaller_alpha_never_gives_a_cheaper_policy(seed, alphas, method):
    scenarios = fat_tailed(120, horizon=4, n_markets=2, seed=seed)
    small, large = sorted(alphas)
    problem = PolicyProblem(alpha=small, cost_of_capital=0.1, premium_weight=[0.03, 0.2], premium_max=0.05)
    strict = solve(problem, scenarios, method)
    loose = solve(dataclasses.replace(problem, alpha=large), scenarios, method)
    assert strict.objective >= loose.objective * (1 - 1e-7) - 1e-12


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), factor=st.floats(1e-3, 1e3), method=st.sampled_from(["cvar", "exact"]))
def test_scaling_losses_scales_the_fund_target(seed, factor, method):
    scenarios = fat_tailed(150, horizon=4, n_markets=2, seed=seed)
    scaled = ScenarioSet(losses=scenarios.losses * factor, premium_base=scenarios.premium_base, markets=scenarios.markets)
    problem = PolicyProblem(alpha=0.07, cost_of_capital=0.1, premium_max=0.0)
    base = solve(problem, scenarios, method)
    other = solve(problem, scaled, method)
    assert other.fund_target == pytest.approx(factor * base.fund_target, rel=1e-12)


@pytest.mark.parametrize("method", ["cvar", "exact", "scenario"])
def test_money_is_rescaled_internally(method):
    # The same venue in currency units 1e3 and 1e12: identical rates, fund target scaled.
    scenarios = fat_tailed(700, seed=10)
    answers = []
    for unit in (1e3, 1e12):
        big = ScenarioSet(losses=scenarios.losses * unit, premium_base=scenarios.premium_base * unit, markets=scenarios.markets)
        policy = solve(PROBLEM, big, method)
        assert policy.status == "optimal"
        answers.append((policy.fund_target / unit, policy.premium_rates, policy.objective / unit))
    (f_small, p_small, o_small), (f_big, p_big, o_big) = answers
    assert f_big == pytest.approx(f_small, rel=1e-6)
    assert o_big == pytest.approx(o_small, rel=1e-6)
    np.testing.assert_allclose(p_big, p_small, atol=1e-6)


# --------------------------------------------------------------------------------------------
# stress scenarios, fund_max, infeasibility
# --------------------------------------------------------------------------------------------


def test_stress_scenarios_are_survived_and_never_counted():
    scenarios = fat_tailed(400, seed=11)
    stress_losses = np.zeros((2, 8))
    stress_losses[0, 2] = 5_000.0
    stress_losses[1, :] = 100.0
    combined = with_stress(scenarios, stress_losses)
    for method in ("cvar", "exact"):
        policy = solve(PROBLEM, combined, method)
        stress = combined.subset(combined.is_stress)
        assert not ruined_by_hand(policy, stress).any()
        assert policy.fund_target >= 5_000.0
        assert policy.n_scenarios == 400
        assert ruin_probability(policy, combined) == ruin_probability(policy, scenarios) == policy.in_sample_ruin
        ignored = solve(dataclasses.replace(PROBLEM, survive_stress=False), combined, method)
        plain = solve(PROBLEM, scenarios, method)
        assert ignored.fund_target == pytest.approx(plain.fund_target, rel=1e-9)
        assert ignored.fund_target < 5_000.0


@pytest.mark.parametrize("method", ["cvar", "exact"])
def test_fund_max_that_binds_moves_the_rates_up(method):
    scenarios = fat_tailed(400, seed=12)
    free = solve(PROBLEM, scenarios, method)
    cap = free.fund_target * 0.9
    capped = solve(dataclasses.replace(PROBLEM, fund_max=cap), scenarios, method)
    assert capped.status == "optimal"
    assert capped.fund_target <= cap
    if method == "cvar":  # convex: the cap binds (the exact optimum may jump below it)
        assert capped.fund_target == pytest.approx(cap, rel=1e-5)
    assert capped.in_sample_ruin <= allowed_ruins(0.05, 400) / 400
    assert capped.premium_rates.sum() > free.premium_rates.sum()
    assert capped.objective >= free.objective


@pytest.mark.parametrize("method", ["cvar", "exact", "scenario"])
def test_infeasible_fund_max_names_the_binding_constraint_and_the_shortfall(method):
    scenarios = fat_tailed(1200, seed=13)
    problem = dataclasses.replace(PROBLEM, fund_max=1.0)
    with pytest.raises(InfeasibleError) as info:
        solve(problem, scenarios, method)
    message = str(info.value)
    assert "fund_max = 1 is below the smallest fund target" in message
    assert "short by" in message
    assert {"cvar": "CVaR_0.05", "exact": "at most floor(alpha N) = 60 of 1200", "scenario": "all but"}[method] in message


def test_infeasible_because_of_a_stress_scenario_names_it():
    scenarios = fat_tailed(300, seed=14)
    stress = np.zeros((3, 8))
    stress[2, 0] = 1e6
    problem = dataclasses.replace(PROBLEM, fund_max=1e5)
    with pytest.raises(InfeasibleError, match=r"survival of stress scenario 2 \(of 3\).*short by 900000"):
        solve(problem, with_stress(scenarios, stress), "exact")


# --------------------------------------------------------------------------------------------
# the numpy check: ties, floors, solvers, printing
# --------------------------------------------------------------------------------------------


def test_ties_at_the_order_statistic_never_leave_a_scenario_below_the_floor():
    rng = np.random.default_rng(15)
    block = rng.gamma(1.0, 0.1, size=(25, 6))
    losses = np.concatenate([block] * 8)  # every scenario eight times: ties everywhere
    base = np.concatenate([rng.gamma(2.0, 1.0, size=(25, 6, 2))] * 8)
    scenarios = ScenarioSet(losses=losses, premium_base=base, markets=["a", "b"])
    problem = PolicyProblem(alpha=0.1, cost_of_capital=0.1, premium_weight=[0.01, 0.5], premium_max=0.1, floor=0.3)
    for method in ("cvar", "exact"):
        policy = solve(problem, scenarios, method)
        assert ruined_by_hand(policy, scenarios).sum() <= 20


def _fail_clarabel(original):
    def solve_once(problem, name):
        if name == "CLARABEL":
            raise cp.error.SolverError("simulated Clarabel failure")
        return original(problem, name)

    return solve_once


def test_solver_fallback_says_which_solver_answered(monkeypatch):
    scenarios = fat_tailed(300, seed=16)
    reference = solve(PROBLEM, scenarios, "cvar")
    monkeypatch.setattr(solvers_module, "_solve_once", _fail_clarabel(solvers_module._solve_once))
    policy = solve(PROBLEM, scenarios, "cvar")
    assert reference.solver == "CLARABEL"
    assert policy.solver == "HIGHS"
    assert policy.details["attempts"][0][0] == "CLARABEL" and "failed" in policy.details["attempts"][0][1]
    assert policy.objective == pytest.approx(reference.objective, rel=1e-6)
    penalised = dataclasses.replace(PROBLEM, rate_change_penalty=2e4, previous_rates=0.01)
    assert solve(penalised, scenarios, "cvar").solver == "HIGHS"
    if solvers_module.scs_installed():
        assert solve(PROBLEM, scenarios, "cvar", solver="SCS").solver == "SCS"
    else:  # a plain install: SCS is the optional scs extra, and naming it says so
        with pytest.raises(ProblemError, match=r"solver 'SCS' is not installed; pip install 'fundguard\[scs\]'"):
            solve(PROBLEM, scenarios, "cvar", solver="SCS")


def test_an_inaccurate_answer_is_rejected_and_the_next_solver_tried(monkeypatch):
    scenarios = fat_tailed(300, seed=17)
    original = solvers_module._solve_once

    def inaccurate(problem, name):
        status = original(problem, name)
        return cp.OPTIMAL_INACCURATE if name == "CLARABEL" else status

    monkeypatch.setattr(solvers_module, "_solve_once", inaccurate)
    policy = solve(PROBLEM, scenarios, "cvar")
    assert policy.solver == "HIGHS"
    assert policy.details["attempts"][0] == ("CLARABEL", "optimal_inaccurate, rejected by the numpy check")


def test_every_solver_failing_raises_solver_error(monkeypatch):
    def broken(problem, name):
        raise cp.error.SolverError(f"{name} is broken")

    monkeypatch.setattr(solvers_module, "_solve_once", broken)
    with pytest.raises(SolverError, match="every solver failed on the cvar problem"):
        solve(PROBLEM, fat_tailed(100, seed=18), "cvar")


def test_only_inaccurate_answers_give_a_feasible_policy_with_a_warning(monkeypatch):
    original = solvers_module._solve_once

    def inaccurate(problem, name):
        original(problem, name)
        return cp.OPTIMAL_INACCURATE

    monkeypatch.setattr(solvers_module, "_solve_once", inaccurate)
    scenarios = fat_tailed(200, seed=19)
    with pytest.warns(ConvergenceWarning, match="optimality not confirmed"):
        policy = solve(PROBLEM, scenarios, "cvar")
    assert policy.status == "feasible"
    assert policy.in_sample_ruin <= allowed_ruins(0.05, 200) / 200


def test_exact_time_limit_returns_a_policy_that_keeps_the_promise():
    scenarios = fat_tailed(800, seed=20)
    with pytest.warns(ConvergenceWarning):
        policy = solve(PROBLEM, scenarios, "exact", time_limit=1e-3)
    assert policy.status == "feasible"
    assert policy.in_sample_ruin <= allowed_ruins(0.05, 800) / 800
    with pytest.raises(ProblemError, match="time_limit must be a positive finite number, got 0"):
        solve(PROBLEM, scenarios, "exact", time_limit=0)


def test_the_library_never_prints(capfd):
    scenarios = fat_tailed(1200, seed=21)
    penalised = dataclasses.replace(PROBLEM, rate_change_penalty=2e4, previous_rates=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for problem in (PROBLEM, penalised):
            for method in ("cvar", "exact", "scenario"):
                solve(problem, scenarios, method)
            # HiGHS through cvxpy (the quadratic program) prints a banner unless silenced
            solve(problem, scenarios, "cvar", solver="HIGHS")
            solve(problem, scenarios, "scenario", solver=["HIGHS"])
        frontier(PROBLEM, scenarios, [0.1, 0.05])
        compare_methods(PROBLEM, scenarios, ["cvar", "exact"])
    captured = capfd.readouterr()
    assert captured.out == ""


def test_highs_banner_is_silenced_in_a_fresh_process():
    # highspy prints its banner once per process, at the first Highs(): only a fresh process
    # shows whether the quadratic-program path through cvxpy's HiGHS interface is silenced.
    code = textwrap.dedent(
        """
        import sys, numpy as np
        from fundguard.models import ScenarioSet
        from fundguard.optimizer import PolicyProblem, solve
        rng = np.random.default_rng(0)
        scenarios = ScenarioSet(losses=rng.gamma(1.0, 1.0, (300, 5)), premium_base=rng.gamma(2.0, 5.0, (300, 5, 2)),
                                markets=["a", "b"])
        problem = PolicyProblem(alpha=0.05, cost_of_capital=0.1, premium_weight=0.05, premium_max=0.05,
                                rate_change_penalty=10.0, previous_rates=0.01)
        policy = solve(problem, scenarios, "cvar", solver="HIGHS")
        sys.stderr.write(policy.solver)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stderr.strip().endswith("HIGHS")
    assert done.stdout == ""


# --------------------------------------------------------------------------------------------
# frontier and compare_methods
# --------------------------------------------------------------------------------------------


def test_frontier_reuses_one_compiled_cvar_problem(monkeypatch):
    scenarios = fat_tailed(500, seed=22)
    built = []
    original_init = methods_module.CvarFormulation.__init__

    def counting_init(self, *args, **kwargs):
        built.append(1)
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(methods_module.CvarFormulation, "__init__", counting_init)
    alphas = [0.02, 0.1, 0.05, 0.2]
    counts = []
    policies = frontier(PROBLEM, scenarios, alphas, progress=lambda done, total: counts.append((done, total)))
    assert len(built) == 1 and counts == [(1, 4), (2, 4), (3, 4), (4, 4)]  # one count per level, shared engine
    assert [p.alpha for p in policies] == alphas
    by_alpha = {p.alpha: p.objective for p in policies}
    assert by_alpha[0.02] >= by_alpha[0.05] >= by_alpha[0.1] >= by_alpha[0.2]
    for policy in policies:
        single = solve(dataclasses.replace(PROBLEM, alpha=policy.alpha), scenarios, "cvar")
        assert policy.objective == pytest.approx(single.objective, rel=1e-6)
        assert policy.in_sample_ruin <= allowed_ruins(policy.alpha, 500) / 500


def test_frontier_other_methods_and_errors():
    scenarios = fat_tailed(200, seed=23)
    counts = []
    policies = frontier(PROBLEM, scenarios, [0.1, 0.05], method="exact", progress=lambda *c: counts.append(c))
    assert [p.method for p in policies] == ["exact", "exact"] and counts == [(1, 2), (2, 2)]
    with pytest.raises(ProblemError, match="progress must be a callable"):
        frontier(PROBLEM, scenarios, [0.1], progress=3)
    scenario = frontier(PROBLEM, fat_tailed(1_000, seed=23), [0.2, 0.1], method="scenario",
                        progress=lambda *c: counts.append(c))
    assert counts[-2:] == [(1, 2), (2, 2)] and len(scenario) == 2  # the per-level path counts too
    assert policies[1].objective >= policies[0].objective
    with pytest.raises(ProblemError, match="alphas must be a non-empty sequence"):
        frontier(PROBLEM, scenarios, [])
    with pytest.raises(ProblemError, match="alpha must be in"):
        frontier(PROBLEM, scenarios, [0.1, 1.5])
    with pytest.raises(ProblemError, match="unknown method"):
        frontier(PROBLEM, scenarios, [0.1], method="magic")


def test_compare_methods_puts_cost_ruin_certificate_and_time_side_by_side():
    scenarios = fat_tailed(1200, seed=24)
    fresh = fat_tailed(5000, seed=25)
    table = compare_methods(PROBLEM, scenarios, ["cvar", "exact", "scenario"], certify_on=fresh, confidence=0.95)
    assert isinstance(table, pd.DataFrame)
    assert list(table.index) == ["cvar", "exact", "scenario"]
    for column in ("fund_target", "rate[m0]", "rate[m2]", "objective", "in_sample_ruin", "cert_upper_bound", "solve_seconds"):
        assert column in table.columns
    exact = solve(PROBLEM, scenarios, "exact")
    certificate = certify(exact, fresh, 0.95)
    assert table.loc["exact", "objective"] == pytest.approx(exact.objective, rel=1e-9)
    assert table.loc["exact", "cert_ruins"] == certificate.ruins
    assert table.loc["exact", "cert_upper_bound"] == certificate.upper_bound
    assert table.loc["scenario", "epsilon"] <= 0.05
    assert table.loc["exact", "objective"] <= table.loc["cvar", "objective"]
    uncertified = compare_methods(PROBLEM, scenarios, ["cvar"])
    assert math.isnan(uncertified.loc["cvar", "cert_upper_bound"])


def test_compare_methods_can_record_errors():
    scenarios = fat_tailed(100, seed=26)
    table = compare_methods(PROBLEM, scenarios, ["cvar", "scenario"], errors="record")
    assert table.loc["cvar", "status"] == "optimal"
    assert table.loc["scenario", "status"].startswith("error: ProblemError: the scenario approach needs at least")
    with pytest.raises(ProblemError):
        compare_methods(PROBLEM, scenarios, ["scenario"])
    with pytest.raises(ProblemError, match="errors must be"):
        compare_methods(PROBLEM, scenarios, ["cvar"], errors="ignore")
    with pytest.raises(ProblemError, match="options given for method 'exact'"):
        compare_methods(PROBLEM, scenarios, ["cvar"], options={"exact": {"time_limit": 1.0}})
    with pytest.raises(ScenarioError, match="certify_on must be a ScenarioSet"):
        compare_methods(PROBLEM, scenarios, ["cvar"], certify_on=np.zeros(3))


# --------------------------------------------------------------------------------------------
# input errors at the public entry
# --------------------------------------------------------------------------------------------


def test_input_errors():
    scenarios = fat_tailed(50, seed=27)
    with pytest.raises(ProblemError, match=r"unknown method 'magic'; choose from \['certified', 'cvar', 'exact', 'scenario'\]"):
        solve(PROBLEM, scenarios, "magic")
    with pytest.raises(ProblemError, match=r"method 'cvar' has no option 'beta'"):
        solve(PROBLEM, scenarios, "cvar", beta=0.1)
    with pytest.raises(ProblemError, match="problem must be a PolicyProblem, got dict"):
        solve({"alpha": 0.1}, scenarios)
    with pytest.raises(ScenarioError, match="scenarios must be a ScenarioSet, got ndarray"):
        solve(PROBLEM, np.zeros((3, 3)))
    with pytest.raises(ProblemError, match=r"solver 'GUROBI' is not supported"):
        solve(PROBLEM, scenarios, "cvar", solver="GUROBI")
    all_stress = ScenarioSet(
        losses=scenarios.losses, premium_base=scenarios.premium_base, markets=scenarios.markets,
        is_stress=np.ones(50, dtype=bool),
    )
    with pytest.raises(ScenarioError, match="all 50 scenarios are stress scenarios"):
        solve(PROBLEM, all_stress)
    with pytest.raises(ProblemError, match=r"mip_rel_gap must be a positive"):
        solve(PROBLEM, scenarios, "exact", mip_rel_gap=-1.0)
