"""Tests of fundguard.optimizer.fast: the cutting-plane "cvar" equals the cvxpy reference."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fundguard.optimizer.methods as methods_module
from fundguard.models import ScenarioSet
from fundguard.models.errors import ProblemError
from fundguard.optimizer import PolicyProblem, frontier, solve
from fundguard.optimizer.fast import CvarCuttingPlane, MaxAffine
from fundguard.optimizer.fund import FundModel, ScreenedRows, allowed_ruins


def scenario_set(n: int, horizon: int, n_markets: int, seed: int, kind: str = "fat") -> ScenarioSet:
    rng = np.random.default_rng(seed)
    shock = np.abs(rng.standard_t(3.0, size=(n, horizon, n_markets)))
    losses = np.maximum(shock.sum(axis=2) - n_markets, 0.0) ** 2
    base = rng.gamma(2.0, 20.0, size=(n, horizon, n_markets)) * (1.0 + shock)
    if kind == "ties":
        losses = np.round(losses)  # many equal required funds
        base = np.round(base)
        losses[n // 2 :] = losses[: n - n // 2]
        base[n // 2 :] = base[: n - n // 2]
    elif kind == "zero":
        losses = np.zeros_like(losses)
    elif kind == "one-bad":
        losses = np.zeros_like(losses)
        losses[seed % n, horizon // 2] = 1000.0
    return ScenarioSet(losses=losses, premium_base=base, markets=[f"m{j}" for j in range(n_markets)])


def problem_for(n_markets: int, seed: int, alpha: float = 0.05, penalty: float = 0.0) -> PolicyProblem:
    rng = np.random.default_rng(seed + 1)
    return PolicyProblem(
        alpha=alpha,
        cost_of_capital=0.1,
        premium_weight=list(rng.uniform(0.0, 0.3, n_markets)),
        premium_max=list(rng.uniform(0.01, 0.08, n_markets)),
        rate_change_penalty=penalty,
        previous_rates=list(rng.uniform(0.0, 0.02, n_markets)) if penalty else None,
    )


def assert_same(fast, reference):
    assert fast.status == reference.status == "optimal"
    assert fast.objective == pytest.approx(reference.objective, rel=1e-6, abs=1e-9)
    np.testing.assert_allclose(fast.premium_rates, reference.premium_rates, atol=1e-5)
    assert fast.in_sample_ruin <= allowed_ruins(fast.alpha, fast.n_scenarios) / fast.n_scenarios


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_markets=st.integers(1, 5),
    kind=st.sampled_from(["fat", "ties", "zero", "one-bad"]),
    alpha=st.sampled_from([0.01, 0.05, 0.2]),
    penalty=st.sampled_from([0.0, 5e3]),
)
def test_cutting_planes_equal_the_cvxpy_reference(seed, n_markets, kind, alpha, penalty):
    scenarios = scenario_set(200, 6, n_markets, seed, kind)
    problem = problem_for(n_markets, seed, alpha, penalty)
    fast = solve(problem, scenarios, "cvar", engine="cutting-plane")
    reference = solve(problem, scenarios, "cvar", engine="cvxpy")
    assert_same(fast, reference)
    assert fast.solver.startswith("cutting planes") and reference.solver == "CLARABEL"


def test_rates_at_their_bounds_fund_max_and_stress():
    scenarios = scenario_set(400, 8, 3, 3)
    stress = ScenarioSet(
        losses=np.full((2, 8), 30.0), premium_base=np.full((2, 8, 3), 50.0), markets=scenarios.markets,
        is_stress=np.ones(2, dtype=bool),
    )
    combined = ScenarioSet.concat([scenarios, stress])
    problem = PolicyProblem(alpha=0.05, cost_of_capital=0.1, premium_weight=[0.0, 0.05, 5.0], premium_max=0.05)
    for candidate in (problem, dataclasses.replace(problem, premium_min=[0.0, 0.01, 0.02])):
        fast = solve(candidate, combined, "cvar", engine="cutting-plane")
        assert_same(fast, solve(candidate, combined, "cvar", engine="cvxpy"))
    free = solve(problem, combined, "cvar", engine="cvxpy")
    capped = dataclasses.replace(problem, fund_max=free.fund_target * 0.95)
    fast = solve(capped, combined, "cvar", engine="cutting-plane")
    assert fast.fund_target <= capped.fund_max
    assert_same(fast, solve(capped, combined, "cvar", engine="cvxpy"))


def test_auto_switches_to_cutting_planes_on_large_sets_and_frontier_reuses_them(monkeypatch):
    scenarios = scenario_set(3000, 10, 3, 4)
    problem = problem_for(3, 4, alpha=0.05)
    small = solve(problem, scenarios, "cvar")
    assert small.solver == "CLARABEL"
    rows = small.details["rows"]
    monkeypatch.setattr(methods_module, "CVXPY_MAX_ROWS", rows - 1)
    auto = solve(problem, scenarios, "cvar")
    assert auto.solver.startswith("cutting planes") and auto.details["rows"] == rows
    assert auto.objective == pytest.approx(small.objective, rel=1e-7)
    policies = frontier(problem, scenarios, [0.1, 0.05, 0.02])
    assert all(p.solver.startswith("cutting planes") for p in policies)
    assert policies[1].objective == pytest.approx(auto.objective, rel=1e-9)
    assert policies[0].objective <= policies[1].objective <= policies[2].objective


def test_cutting_plane_level_must_not_exceed_the_screened_level():
    model = FundModel.build(problem_for(2, 5), scenario_set(100, 4, 2, 5))
    solver = CvarCuttingPlane(model, 0.05)
    with pytest.raises(ValueError, match="above the level"):
        solver.solve(0.1)
    fixed = FundModel.build(dataclasses.replace(problem_for(2, 5), premium_max=0.0), scenario_set(100, 4, 2, 5))
    with pytest.raises(ValueError, match="at least one free premium rate"):
        CvarCuttingPlane(fixed, 0.05)


def test_max_affine_groups_rows_by_scenario():
    rows = ScreenedRows(
        scenario=np.array([0, 0, 1, 2, 2, 2]),
        required0=np.array([1.0, 2.0, 0.5, 3.0, 3.0, 1.0]),
        relief=np.array([[0.0], [2.0], [1.0], [1.0], [0.5], [0.0]]),
        candidates=np.array([7, 8, 9]),
    )
    grouped = MaxAffine.of(rows)
    values, active = grouped.evaluate(np.array([1.0]))
    np.testing.assert_array_equal(values, [1.0, -0.5, 2.5])
    np.testing.assert_array_equal(active, [0, 2, 4])
    values, active = grouped.evaluate(np.array([0.0]))
    np.testing.assert_array_equal(values, [2.0, 0.5, 3.0])
    np.testing.assert_array_equal(active, [1, 2, 3])


def test_engine_errors():
    scenarios = scenario_set(100, 4, 2, 6)
    with pytest.raises(ProblemError, match=r"engine must be one of \['auto', 'cvxpy', 'cutting-plane'\], got 'gpu'"):
        solve(problem_for(2, 6), scenarios, "cvar", engine="gpu")
