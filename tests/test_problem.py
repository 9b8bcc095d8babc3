"""Tests of fundguard.optimizer.problem: PolicyProblem validation and broadcasting."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fundguard.models import ScenarioSet
from fundguard.models.errors import ProblemError
from fundguard.optimizer import PolicyProblem, solve
from fundguard.optimizer.problem import DEFAULT_PREMIUM_MAX


def _scenarios(n_markets: int = 2) -> ScenarioSet:
    rng = np.random.default_rng(0)
    return ScenarioSet(
        losses=rng.gamma(1.0, 1.0, size=(40, 5)),
        premium_base=rng.gamma(2.0, 10.0, size=(40, 5, n_markets)),
        markets=[f"m{j}" for j in range(n_markets)],
    )


def test_defaults_match_the_design_contract():
    problem = PolicyProblem(alpha=0.01, cost_of_capital=0.1)
    assert problem.premium_weight == 0.0
    assert problem.premium_min == 0.0
    assert problem.premium_max == DEFAULT_PREMIUM_MAX == 0.01
    assert problem.fund_max is None
    assert problem.floor == 0.0
    assert problem.rate_change_penalty == 0.0
    assert problem.previous_rates is None
    assert problem.survive_stress is True


def test_is_frozen():
    problem = PolicyProblem(alpha=0.01, cost_of_capital=0.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        problem.alpha = 0.02  # type: ignore[misc]


def test_scalars_broadcast_and_sequences_are_kept_per_market():
    problem = PolicyProblem(alpha=0.05, cost_of_capital=0.1, premium_weight=[0.1, 0.2, 0.3], premium_max=0.02)
    assert problem.premium_weight == (0.1, 0.2, 0.3)
    np.testing.assert_array_equal(problem.per_market("premium_max", 3), [0.02, 0.02, 0.02])
    np.testing.assert_array_equal(problem.per_market("premium_weight", 3), [0.1, 0.2, 0.3])
    assert problem.n_markets() == 3
    assert PolicyProblem(alpha=0.05, cost_of_capital=0.1).n_markets() is None


def test_numpy_inputs_are_normalised():
    problem = PolicyProblem(alpha=np.float32(0.25), cost_of_capital=np.int64(1), premium_max=np.array([0.01, 0.02]))
    assert isinstance(problem.alpha, float) and problem.alpha == 0.25
    assert problem.premium_max == (0.01, 0.02)
    assert problem.to_dict()["premium_max"] == [0.01, 0.02]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"alpha": 0.0}, "alpha must be in (0, 1), got 0.0"),
        ({"alpha": 1.0}, "alpha must be in (0, 1), got 1.0"),
        ({"alpha": float("nan")}, "alpha must be finite"),
        ({"alpha": "0.1"}, "alpha must be a real number, got '0.1'"),
        ({"alpha": True}, "alpha must be a real number, got True"),
        ({"cost_of_capital": -0.1}, "cost_of_capital must be >= 0, got -0.1"),
        ({"cost_of_capital": float("inf")}, "cost_of_capital must be finite"),
        ({"premium_weight": -1.0}, "premium_weight must be >= 0"),
        ({"premium_weight": [0.1, -0.2]}, "premium_weight must be >= 0"),
        ({"premium_min": -0.01}, "premium_min must be >= 0"),
        ({"premium_min": 0.02, "premium_max": 0.01}, "premium_min = 0.02 is above premium_max = 0.01"),
        ({"premium_min": [0.0, 0.03], "premium_max": 0.01}, "premium_min[1] = 0.03 is above premium_max[1] = 0.01"),
        ({"premium_max": [0.01, float("nan")]}, "premium_max[1] must be finite"),
        ({"premium_max": [[0.01]]}, "premium_max must be a number or a 1-d sequence"),
        ({"premium_max": []}, "premium_max must be a number or a 1-d sequence"),
        ({"premium_max": "0.01"}, "premium_max must be a number or a sequence"),
        ({"premium_weight": [1.0, 2.0], "premium_max": [0.01, 0.01, 0.01]}, "premium_weight has 2, premium_max has 3"),
        ({"fund_max": -5.0}, "fund_max must be >= 0, got -5.0"),
        ({"floor": float("-inf")}, "floor must be finite"),
        ({"rate_change_penalty": -1.0}, "rate_change_penalty must be >= 0, got -1.0"),
        ({"rate_change_penalty": 1.0}, "rate_change_penalty = 1.0 > 0 needs previous_rates"),
        ({"previous_rates": ["a"]}, "previous_rates[0] must be a real number, got 'a'"),
        ({"survive_stress": "yes"}, "survive_stress must be True or False, got 'yes'"),
    ],
)
def test_invalid_values_raise_problem_error_naming_field_and_value(kwargs, fragment):
    arguments = {"alpha": 0.01, "cost_of_capital": 0.1, **kwargs}
    with pytest.raises(ProblemError) as info:
        PolicyProblem(**arguments)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_per_market_length_is_checked_against_the_scenarios_at_solve_time():
    problem = PolicyProblem(alpha=0.1, cost_of_capital=0.1, premium_max=[0.01, 0.02, 0.03])
    with pytest.raises(ProblemError, match=r"premium_max has 3 values but the scenarios have 2 markets"):
        solve(problem, _scenarios(2), "cvar")
    with pytest.raises(ProblemError, match=r"previous_rates has 1 values but the scenarios have 2 markets"):
        problem = PolicyProblem(alpha=0.1, cost_of_capital=0.1, rate_change_penalty=1.0, previous_rates=[0.01])
        solve(problem, _scenarios(2), "cvar")


def test_per_market_of_an_unset_field_is_an_error():
    with pytest.raises(ProblemError, match="previous_rates is not set"):
        PolicyProblem(alpha=0.1, cost_of_capital=0.1).per_market("previous_rates", 2)


def test_replace_revalidates():
    problem = PolicyProblem(alpha=0.1, cost_of_capital=0.1)
    assert dataclasses.replace(problem, alpha=0.2).alpha == 0.2
    with pytest.raises(ProblemError, match="alpha must be in"):
        dataclasses.replace(problem, alpha=2.0)
