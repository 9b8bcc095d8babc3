"""Tests of fundguard.optimizer.certificates and .guarantees and the "certified" method: bounds, guarantees, certificates."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from fundguard.models import ScenarioSet
from fundguard.models.errors import ProblemError, ScenarioError
from fundguard.optimizer import (
    Certificate,
    Policy,
    PolicyProblem,
    certifiable_count,
    certification_split,
    fresh_size,
    certify,
    clopper_pearson_upper,
    ruin_probability,
    scenario_epsilon,
    scenario_sample_size,
    solve,
)
from fundguard.optimizer.guarantees import scenario_discard_budget, scenario_violation_bound


def fat_tailed(n: int, horizon: int = 6, n_markets: int = 2, seed: int = 0) -> ScenarioSet:
    """The test generating model: squared excesses of Student-t(3) shocks; gamma premium bases."""
    rng = np.random.default_rng(seed)
    shock = np.abs(rng.standard_t(3.0, size=(n, horizon, n_markets)))
    losses = np.maximum(shock.sum(axis=2) - n_markets, 0.0) ** 2
    base = rng.gamma(2.0, 20.0, size=(n, horizon, n_markets)) * (1.0 + shock)
    return ScenarioSet(losses=losses, premium_base=base, markets=[f"m{j}" for j in range(n_markets)])


def a_policy(fund_target: float, rates: tuple[float, ...] = (0.0, 0.0), floor: float = 0.0) -> Policy:
    return Policy(
        fund_target=fund_target, premium_rates=np.array(rates), objective=0.0, method="cvar", status="optimal",
        in_sample_ruin=0.0, solve_seconds=0.0, solver="test", markets=("m0", "m1"), floor=floor, alpha=0.05,
        n_scenarios=1,
    )


PROBLEM = PolicyProblem(alpha=0.02, cost_of_capital=0.1, premium_weight=[0.03, 0.2], premium_max=0.05)


# --------------------------------------------------------------------------------------------
# Clopper–Pearson
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ruins", "n", "confidence"), [(0, 10, 0.9), (0, 1000, 0.99), (7, 500, 0.95), (499, 500, 0.99), (3, 3, 0.9)]
)
def test_clopper_pearson_is_the_beta_quantile(ruins, n, confidence):
    upper = clopper_pearson_upper(ruins, n, confidence)
    if ruins == n:
        assert upper == 1.0
    else:
        assert upper == stats.beta.ppf(confidence, ruins + 1, n - ruins)
        # the defining property: P(Binomial(n, upper) <= ruins) = 1 - confidence
        assert stats.binom.cdf(ruins, n, upper) == pytest.approx(1.0 - confidence, rel=1e-8)
    if ruins == 0:
        assert upper == pytest.approx(1.0 - (1.0 - confidence) ** (1.0 / n), rel=1e-12)


def test_certify_counts_ruins_and_bounds_them():
    scenarios = fat_tailed(2000, seed=1)
    worst_cumulative = np.cumsum(scenarios.losses, axis=1).max(axis=1)
    fund = float(np.quantile(worst_cumulative, 0.97))
    policy = a_policy(fund)
    certificate = certify(policy, scenarios, confidence=0.95)
    ruins = int((worst_cumulative > fund).sum())
    assert isinstance(certificate, Certificate)
    assert (certificate.n, certificate.ruins, certificate.confidence) == (2000, ruins, 0.95)
    assert certificate.ruin_rate == ruins / 2000 == ruin_probability(policy, scenarios)
    assert certificate.upper_bound == stats.beta.ppf(0.95, ruins + 1, 2000 - ruins)
    assert certificate.to_dict()["upper_bound"] == certificate.upper_bound
    everyone = certify(a_policy(-1.0), scenarios)
    assert everyone.ruins == 2000 and everyone.upper_bound == 1.0


def test_premiums_and_floor_enter_the_ruin_check():
    losses = np.array([[5.0, 5.0], [1.0, 0.0]])
    base = np.full((2, 2, 2), 100.0)
    scenarios = ScenarioSet(losses=losses, premium_base=base, markets=["m0", "m1"])
    # F = 3 + cumsum(200 p - L): with p = 0.01 scenario 0 goes 0, -3 (ruined); scenario 1 stays >= 3
    assert ruin_probability(a_policy(3.0, (0.01, 0.01)), scenarios) == 0.5
    # at the floor exactly is not ruin: F[0, 1] = 10 - 10 + 4 = 4 = floor
    assert ruin_probability(a_policy(10.0, (0.01, 0.01), floor=4.0), scenarios) == 0.0
    assert ruin_probability(a_policy(10.0, (0.01, 0.01), floor=4.0 + 1e-9), scenarios) == 0.5


def test_stress_scenarios_are_not_counted():
    scenarios = fat_tailed(100, seed=2)
    stress = ScenarioSet(
        losses=np.full((5, 6), 1e9), premium_base=np.zeros((5, 6, 2)), markets=scenarios.markets,
        is_stress=np.ones(5, dtype=bool),
    )
    combined = ScenarioSet.concat([scenarios, stress])
    policy = a_policy(50.0)
    assert certify(policy, combined).n == 100
    assert ruin_probability(policy, combined) == ruin_probability(policy, scenarios)
    with pytest.raises(ScenarioError, match="no random"):
        certify(policy, stress)


def test_certify_errors():
    scenarios = fat_tailed(20, seed=3)
    policy = a_policy(10.0)
    with pytest.raises(ProblemError, match="confidence must be in"):
        certify(policy, scenarios, confidence=1.0)
    with pytest.raises(ProblemError, match="confidence must be a number"):
        certify(policy, scenarios, confidence="high")
    with pytest.raises(ProblemError, match="policy must be a Policy, got dict"):
        certify({"fund_target": 1.0}, scenarios)
    with pytest.raises(ScenarioError, match="scenarios must be a ScenarioSet"):
        ruin_probability(policy, scenarios.losses)
    other = ScenarioSet(losses=scenarios.losses, premium_base=scenarios.premium_base, markets=["x", "y"])
    with pytest.raises(ScenarioError, match=r"scenarios have markets \['x', 'y'\], the policy \['m0', 'm1'\]"):
        certify(policy, other)


# --------------------------------------------------------------------------------------------
# scenario approach
# --------------------------------------------------------------------------------------------


def test_scenario_sample_size_matches_the_known_values():
    assert scenario_sample_size(0.01, 1e-6, 2) == 1661
    assert scenario_sample_size(0.01, 1e-6, 4) == 2126


@pytest.mark.parametrize(
    ("epsilon", "beta", "d", "k"), [(0.01, 1e-6, 2, 0), (0.05, 1e-3, 4, 0), (0.01, 1e-6, 4, 10), (0.2, 0.5, 1, 0)]
)
def test_scenario_sample_size_is_the_smallest_n(epsilon, beta, d, k):
    n = scenario_sample_size(epsilon, beta, d, discarded=k)
    assert scenario_violation_bound(n, epsilon, d, k) <= beta
    assert scenario_violation_bound(n - 1, epsilon, d, k) > beta
    # the bound by hand: binom(k+d-1, k) * sum_{i <= k+d-1} binom(N, i) eps^i (1 - eps)^(N - i)
    by_hand = math.comb(k + d - 1, k) * sum(math.comb(n, i) * epsilon**i * (1 - epsilon) ** (n - i) for i in range(k + d))
    assert scenario_violation_bound(n, epsilon, d, k) == pytest.approx(by_hand, rel=1e-9)


def test_scenario_epsilon_and_discard_budget_invert_the_bound():
    assert scenario_epsilon(1661, 1e-6, 2) <= 0.01 < scenario_epsilon(1660, 1e-6, 2)
    eps = scenario_epsilon(5000, 1e-6, 4, discarded=20)
    assert scenario_violation_bound(5000, eps, 4, 20) == pytest.approx(1e-6, rel=1e-6)
    budget = scenario_discard_budget(5000, 0.02, 1e-6, 4)
    assert scenario_violation_bound(5000, 0.02, 4, budget) <= 1e-6 < scenario_violation_bound(5000, 0.02, 4, budget + 1)
    assert scenario_discard_budget(100, 0.01, 1e-6, 4) is None
    assert scenario_epsilon(3, 1e-6, 4) == 1.0


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"epsilon": 0.0}, "epsilon must be in (0, 1)"),
        ({"beta": 1.0}, "beta must be in (0, 1)"),
        ({"n_decisions": 0}, "n_decisions must be an integer >= 1, got 0"),
        ({"n_decisions": 2.5}, "n_decisions must be an integer >= 1, got 2.5"),
        ({"discarded": -1}, "discarded must be an integer >= 0, got -1"),
    ],
)
def test_scenario_sample_size_errors(kwargs, fragment):
    arguments = {"epsilon": 0.01, "beta": 1e-6, "n_decisions": 2, **kwargs}
    with pytest.raises(ProblemError) as info:
        scenario_sample_size(**arguments)
    assert fragment in str(info.value)


# --------------------------------------------------------------------------------------------
# method "certified"
# --------------------------------------------------------------------------------------------


def binomial_k(m: int, alpha: float, confidence: float) -> int:
    """Independent formulation of the order statistic's index: the largest k with
    P(Binomial(m, alpha) <= k) <= 1 - confidence (-1 when none)."""
    ks = np.arange(m + 1)
    ok = np.flatnonzero(stats.binom.cdf(ks, m, alpha) <= 1.0 - confidence)
    return int(ok[-1]) if ok.size else -1


@pytest.mark.parametrize(("m", "alpha", "confidence"),
                         [(459, 0.01, 0.99), (2000, 0.01, 0.99), (5000, 0.02, 0.95), (30_000, 0.001, 0.99), (300, 0.1, 0.9)])
def test_certifiable_count_is_the_binomial_tolerance_bound(m, alpha, confidence):
    assert certifiable_count(m, alpha, confidence) == binomial_k(m, alpha, confidence)
    assert certifiable_count(100, 0.01, 0.99) == -1  # 459 are needed with no ruin at all


def needs_at(scenarios: ScenarioSet, rates: np.ndarray) -> np.ndarray:
    """floor 0 - min_t cumulative net flow, in plain numpy (the fund equation of DESIGN.md)."""
    net = np.einsum("ntj,j->nt", scenarios.premium_base, rates) - scenarios.losses
    return -np.cumsum(net, axis=1).min(axis=1)


def test_certified_takes_exacts_rates_and_the_order_statistic_of_the_fresh_needs():
    train, fresh = fat_tailed(3000, seed=4), fat_tailed(6000, seed=40)
    policy = solve(PROBLEM, train, "certified", fresh=fresh, confidence=0.95)
    exact = solve(PROBLEM, train, "exact")
    assert policy.method == "certified" and policy.status == "certified"
    np.testing.assert_array_equal(policy.premium_rates, exact.premium_rates)
    k = binomial_k(6000, PROBLEM.alpha, 0.95)
    need = needs_at(fresh, np.asarray(policy.premium_rates))
    expected = np.sort(need)[::-1][k]  # the (k + 1)-th largest need
    assert policy.fund_target == pytest.approx(max(expected, 0.0), rel=1e-12)
    assert certify(policy, fresh, 0.95) == policy.certificate
    assert policy.certificate.ruins <= k and policy.certificate.upper_bound <= PROBLEM.alpha
    # the objective is exact's, moved by the capital cost of the change of fund target
    assert policy.objective == pytest.approx(exact.objective + 0.1 * (policy.fund_target - exact.fund_target), rel=1e-12)
    assert policy.in_sample_ruin == ruin_probability(policy, train)
    assert policy.details["certified"]["source"] == "fresh" and policy.details["certified"]["n_fresh"] == 6000
    assert "P(ruin) <= alpha" in policy.details["guarantee"]


def test_certified_draws_its_default_number_of_fresh_scenarios_from_a_callable():
    train = fat_tailed(4000, seed=5)
    calls = []

    def generator(n, seed):
        calls.append((n, seed))
        return fat_tailed(n, seed=1000 + seed)

    policy = solve(PROBLEM, train, "certified", fresh=generator, seed=3, confidence=0.9, tolerance=0.1)
    info = policy.details["certified"]
    z = stats.norm.ppf(0.9)
    wanted = math.ceil((info["tail_elasticity"] * z / 0.1) ** 2 / PROBLEM.alpha)
    assert calls == [(max(wanted, 2 * 114), 3)]  # 114 = ceil(ln 0.1 / ln 0.98): fewest that certify 2% at 90%
    assert fresh_size(PROBLEM.alpha, 0.9, 0.1, info["tail_elasticity"]) == calls[0][0]
    assert certify(policy, fat_tailed(calls[0][0], seed=1003), 0.9) == policy.certificate
    # the measured elasticity is the quantile ratio it is defined as
    need = needs_at(train, np.asarray(policy.premium_rates))
    top = np.sort(need)[::-1]
    k, half = int(PROBLEM.alpha * 4000), int(PROBLEM.alpha * 2000)
    assert info["tail_elasticity"] == pytest.approx(min(max(math.log(top[half] / top[k]) / math.log(2), 0.05), 3.0))
    # a fixed number of fresh scenarios when asked
    calls.clear()
    solve(PROBLEM, train, "certified", fresh=generator, n_fresh=700)
    assert calls == [(700, 0)]


def test_fresh_size_grows_as_alpha_falls_and_the_tolerance_tightens():
    assert fresh_size(0.01, 0.99, 0.05, 0.5) == math.ceil((0.5 * stats.norm.ppf(0.99) / 0.05) ** 2 / 0.01)
    assert fresh_size(0.001, 0.99, 0.05, 0.5) > 9 * fresh_size(0.01, 0.99, 0.05, 0.5)
    assert fresh_size(0.01, 0.99, 0.01, 3.0) == 1_000_000  # capped at FRESH_MAX
    assert fresh_size(0.5, 0.99, 10.0, 0.05) == 2 * 7  # at least twice the fewest that certify


def test_certified_without_fresh_scenarios_splits_and_says_so():
    scenarios = fat_tailed(2000, seed=6)
    losses = scenarios.losses.copy()
    losses[:, 0] = np.arange(2000)  # the first period's loss names the scenario
    scenarios = ScenarioSet(losses=losses, premium_base=scenarios.premium_base, markets=scenarios.markets,
                            is_stress=np.arange(2000) % 100 == 0)
    train, hold = certification_split(scenarios, 0.6, seed=3)
    keys = [set(p.losses[:, 0].astype(int)) for p in (train, hold)]
    assert train.n_stress == 20 and hold.n_stress == 0
    assert len(keys[1]) == 1980 - 1188 and not keys[0] & keys[1]
    assert keys[0] | keys[1] == set(range(2000))
    policy = solve(dataclasses.replace(PROBLEM, survive_stress=False), scenarios, "certified", split=0.6, seed=3,
                   confidence=0.9)
    assert policy.details["certified"]["source"] == "split"
    assert certify(policy, hold, 0.9) == policy.certificate
    exact = solve(dataclasses.replace(PROBLEM, survive_stress=False), train, "exact")
    np.testing.assert_array_equal(policy.premium_rates, exact.premium_rates)


def test_certified_covers_the_stress_scenarios_it_must_survive():
    scenarios = fat_tailed(1500, seed=7)
    losses = scenarios.losses.copy()
    losses[0] = 1e5  # one stress scenario far beyond every random one
    stressed = ScenarioSet(losses=losses, premium_base=scenarios.premium_base, markets=scenarios.markets,
                           is_stress=np.arange(1500) == 0)
    policy = solve(PROBLEM, stressed, "certified", fresh=fat_tailed(2000, seed=70))
    assert policy.details["certified"]["set_by"] == "a stress scenario"
    assert policy.fund_target >= needs_at(stressed.subset(slice(0, 1)), np.asarray(policy.premium_rates))[0]


def test_certified_under_a_ruin_rule_counts_on_the_rule():
    from fundguard.optimizer import RuinRule
    problem = dataclasses.replace(PROBLEM, ruin=RuinRule("drawdown", fraction=0.3, window=2))
    fresh = fat_tailed(3000, seed=80)
    policy = solve(problem, fat_tailed(2000, seed=8), "certified", fresh=fresh, confidence=0.9)
    assert certify(policy, fresh, 0.9) == policy.certificate
    assert policy.certificate.upper_bound <= problem.alpha


def test_certified_errors():
    scenarios = fat_tailed(1000, seed=1)
    problem = PolicyProblem(alpha=0.01, cost_of_capital=0.1, premium_max=0.0)
    with pytest.raises(ProblemError, match=r"hold-out part has 400 scenarios; certifying alpha = 0.01 .* needs at least 459"):
        solve(problem, fat_tailed(800, seed=1), "certified")
    with pytest.raises(ProblemError, match=r"fresh set has 300 scenarios; .* needs at least 459"):
        solve(problem, scenarios, "certified", fresh=fat_tailed(300, seed=2))
    with pytest.raises(ScenarioError, match="fresh scenarios have markets"):
        solve(problem, scenarios, "certified", fresh=fat_tailed(600, n_markets=3, seed=2))
    with pytest.raises(ScenarioError, match="horizon of 4 periods"):
        solve(problem, scenarios, "certified", fresh=fat_tailed(600, horizon=4, seed=2))
    with pytest.raises(ProblemError, match="returned list, not a ScenarioSet"):
        solve(problem, scenarios, "certified", fresh=lambda n, seed: [])
    for option, value, fragment in [
        ("base", "holdout", "base must be 'exact', 'cvar' or 'scenario'"),
        ("confidence", 0.0, "confidence must be in (0, 1)"),
        ("split", 1.0, "split must be in (0, 1)"),
        ("n_fresh", 0, "n_fresh must be a positive integer"),
        ("fresh", "more", "fresh must be a ScenarioSet or a callable"),
        ("tolerance", -1.0, "tolerance must be"),
    ]:
        with pytest.raises(ProblemError) as info:
            solve(problem, scenarios, "certified", **{option: value})
        assert fragment in str(info.value)
    with pytest.raises(ProblemError, match="n_fresh sizes fresh scenarios drawn from a callable"):
        solve(problem, scenarios, "certified", fresh=fat_tailed(600, seed=2), n_fresh=600)


@pytest.mark.slow
def test_certified_bound_holds_on_a_fresh_million_scenarios_in_repeated_runs():
    """Stated share: at confidence 0.95 the returned policy's true ruin probability exceeds alpha
    with probability at most 5% per run; over 20 independent runs at least 18 must hold (if the
    violation rate were exactly 5% that happens with probability 92.5%; seeds are fixed, so the
    test is deterministic). "True" is the ruin rate on 1,000,000 fresh scenarios from the same
    generating model (standard error about 1.4e-4 at 2%)."""
    truth = fat_tailed(1_000_000, seed=10_000)
    runs = 20
    held_alpha = held_bound = 0
    for run in range(runs):
        scenarios = fat_tailed(4000, seed=run)
        policy = solve(PROBLEM, scenarios, "certified", confidence=0.95, fresh=lambda n, seed, run=run: fat_tailed(
            n, seed=500 + run), n_fresh=20_000)
        true_rate = ruin_probability(policy, truth)
        held_alpha += true_rate <= PROBLEM.alpha
        held_bound += true_rate <= policy.certificate.upper_bound
    assert held_alpha >= 18
    assert held_bound >= 18


# --------------------------------------------------------------------------------------------
# honest labels: "cvar"'s tail review, every method's guarantee
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "dominated"), [(0.3, False), (1.5, True)])
def test_tail_review_finds_a_known_generalised_pareto_shape(shape, dominated):
    from fundguard.optimizer.methods.cvar import tail_review
    rng = np.random.default_rng(1)
    need = 5.0 + stats.genpareto.rvs(shape, size=200_000, random_state=rng)
    review = tail_review(need, 0.01)
    assert review["tail_scenarios"] == 2000
    assert review["tail_index"] == pytest.approx(shape, abs=0.2)  # standard error (1 + shape) / sqrt(k): 0.03-0.06
    assert bool(review["dominated"]) is dominated
    assert tail_review(need[:1000], 0.01) is None  # 10 tail scenarios say nothing


def test_cvar_warns_when_its_tail_mean_rests_on_a_few_scenarios():
    from fundguard.models.errors import HeavyTailWarning
    rng = np.random.default_rng(2)
    n = 20_000
    heavy = ScenarioSet(losses=stats.genpareto.rvs(1.4, size=(n, 1), random_state=rng) * 10.0,
                        premium_base=np.full((n, 1, 1), 1.0), markets=["m0"])
    problem = PolicyProblem(alpha=0.01, cost_of_capital=0.1, premium_max=0.0)
    with pytest.warns(HeavyTailWarning, match="rests on a few scenarios"):
        policy = solve(problem, heavy, "cvar")
    assert policy.details["tail"]["dominated"] == 1.0
    light = ScenarioSet(losses=rng.exponential(10.0, size=(n, 1)), premium_base=np.full((n, 1, 1), 1.0), markets=["m0"])
    import warnings as _warnings
    with _warnings.catch_warnings():
        _warnings.simplefilter("error", HeavyTailWarning)
        assert solve(problem, light, "cvar").details["tail"]["dominated"] == 0.0
    assert "about half the time" in solve(problem, light, "exact").details["guarantee"]
