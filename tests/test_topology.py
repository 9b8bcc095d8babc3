"""Fund topologies (issue 17, item 4): pooled, per market and grouped funds for the same solvency."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fundguard.models import ScenarioSet
from fundguard.models.errors import ProblemError
from fundguard.optimizer import PolicyProblem, RuinRule, solve
from fundguard.optimizer.fund import allowed_ruins, kth_largest, worst_net_flow
from fundguard.optimizer.topology import (compare_topologies, group_needs, size_topology, suggest_groups,
                                          tail_dependence)

MARKETS = ("A", "B", "C")


def _book(n: int = 2000, horizon: int = 8, seed: int = 0, stress: int = 0, common: float = 0.5) -> ScenarioSet:
    """Losses with a common shock (share ``common``) and an own one per market."""
    rng = np.random.default_rng(seed)
    shock = rng.pareto(2.0, (n, horizon, 1)) * (rng.random((n, horizon, 1)) < 0.1)
    own = rng.pareto(2.0, (n, horizon, 3)) * (rng.random((n, horizon, 3)) < 0.1)
    by_market = 10.0 * (common * shock + (1 - common) * own)
    flags = np.arange(n) < stress
    by_market[flags] *= 3.0
    return ScenarioSet(by_market.sum(axis=2), rng.exponential(50.0, (n, horizon, 3)), MARKETS, is_stress=flags,
                       losses_by_market=by_market)


PER_MARKET = [["A"], ["B"], ["C"]]
POOLED = [["A", "B", "C"]]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), alpha=st.sampled_from([0.01, 0.05, 0.2]), common=st.floats(0.0, 1.0),
       stress=st.integers(0, 3))
def test_pooled_never_needs_more_than_per_market_for_any_fund(seed, alpha, common, stress):
    book = _book(n=400, seed=seed, stress=stress, common=common)
    rates = np.random.default_rng(seed).uniform(0.0, 0.02, 3)
    pooled = size_topology(group_needs(book, rates, POOLED), alpha, "any", is_stress=book.is_stress)
    for groups in (PER_MARKET, [["A", "B"], ["C"]]):
        split = size_topology(group_needs(book, rates, groups), alpha, "any", is_stress=book.is_stress)
        assert pooled.total <= split.total * (1 + 1e-12)
        assert split.total >= split.lower_bound * (1 - 1e-12)
        n = book.n_random
        assert split.ruin_any <= allowed_ruins(alpha, n) / n + 1e-12


def test_needs_and_order_statistics_by_hand():
    book = _book(seed=3)
    rates = np.array([0.01, 0.0, 0.02])
    needs = group_needs(book, rates, PER_MARKET)
    pooled = group_needs(book, rates, POOLED)[:, 0]
    assert np.allclose(pooled, -worst_net_flow(book.losses, book.premium_base, rates), rtol=0, atol=0)
    assert np.all(pooled <= needs.sum(axis=1) + 1e-9)  # the max of a sum is at most the sum of the maxima
    k = allowed_ruins(0.05, book.n_scenarios)
    per_fund = size_topology(needs, 0.05, "per_fund")
    for g in range(3):
        assert per_fund.funds[g] == max(kth_largest(needs[:, g], k + 1), 0.0)


def test_single_pooled_fund_equals_exact_at_fixed_rates():
    """One group under "any" is the exact method's fund target at the same (fixed) rates."""
    book = _book(seed=5, stress=2)
    rates = (0.004, 0.01, 0.0)
    policy = solve(PolicyProblem(alpha=0.03, cost_of_capital=0.01, premium_min=rates, premium_max=rates), book, "exact")
    sizing = compare_topologies(policy, book, {"pooled": POOLED})["pooled"]
    assert sizing.total == pytest.approx(policy.fund_target, rel=1e-12)
    # and under a drawdown rule: the rule's rows per group
    rule = RuinRule("drawdown", fraction=0.3, window=2)
    policy = solve(PolicyProblem(alpha=0.03, cost_of_capital=0.01, premium_min=rates, premium_max=rates, ruin=rule),
                   book, "exact")
    assert compare_topologies(policy, book, {"pooled": POOLED})["pooled"].total == pytest.approx(policy.fund_target,
                                                                                               rel=1e-9)


def test_any_rule_costs_more_than_per_fund_and_meets_the_union():
    book = _book(seed=8, common=0.1)
    needs = group_needs(book, np.zeros(3), PER_MARKET)
    any_rule = size_topology(needs, 0.05, "any")
    per_fund = size_topology(needs, 0.05, "per_fund")
    assert any_rule.total >= per_fund.total and any_rule.lower_bound == pytest.approx(per_fund.total)
    assert per_fund.ruin_any > 0.05  # each fund at alpha leaves the venue ruined more often
    assert any_rule.ruin_any <= 0.05 + 1e-12
    assert np.all(any_rule.ruin_per_fund <= 0.05 + 1e-12)


def test_tail_dependence_and_suggested_groups():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(20_000), rng.standard_normal(20_000)
    needs = np.column_stack([x, np.exp(x), y, y + 1e-3 * rng.standard_normal(20_000)])
    lam = tail_dependence(needs, tail=0.05)
    assert lam[0, 1] == 1.0  # comonotone
    assert lam[2, 3] > 0.9
    # independent columns: about the tail level (binomial sampling error of 1,000 exceedances: sd 0.007)
    assert abs(lam[0, 2] - 0.05) < 0.03
    assert suggest_groups(needs, ["BTC", "ETH", "SOL", "DOGE"]) == (("BTC", "ETH"), ("SOL", "DOGE"))


@pytest.mark.parametrize(("groups", "fragment"), [
    ([["A", "B"]], "missing ['C']"),
    ([["A", "B"], ["B", "C"]], "repeated ['B']"),
    ([["A"], ["B"], ["Z"]], "unknown market(s) ['Z']"),
    ([], "non-empty sequence"),
    (["ABC"], "non-empty list of market names"),
])
def test_bad_groups_are_one_line(groups, fragment, bad_input_cases):
    bad_input_cases.add(f"topology groups {groups}")
    with pytest.raises(ProblemError) as info:
        group_needs(_book(n=50), np.zeros(3), groups)
    assert fragment in str(info.value) and "\n" not in str(info.value)
