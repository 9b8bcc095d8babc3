"""Ruin rules (issue 17, item 1): a drawdown trigger and a per-period payout cap beside the floor.

The rules are solved as rows of the floor rule (``optimizer.ruin.rows``) and checked on the paths
(``optimizer.ruin.ruined``). The tests compare both with a third, plain-Python count, with
hand-made paths whose answer is worked out in the comments, and every method's answer with a
brute-force fund target at its rates.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fundguard.models import ScenarioSet
from fundguard.models.errors import ConfigError, ProblemError
from fundguard.optimizer import PolicyProblem, RuinRule, solve
from fundguard.optimizer.certificates import count_ruins
from fundguard.optimizer.fund import allowed_ruins, count_ruined, worst_net_flow
from fundguard.optimizer.job.build import policy_problem
from fundguard.optimizer.job.config import load_config
from fundguard.optimizer.participation import Participation
from fundguard.optimizer.ruin import FLOOR, row_count, rows, ruined

DRAWDOWN = RuinRule("drawdown", fraction=0.3, window=3)
PAYOUT = RuinRule("payout", fraction=0.4)


def _by_hand(fund: float, rates: np.ndarray, scenarios: ScenarioSet, rule: RuinRule, floor: float = 0.0) -> np.ndarray:
    """Plain Python: follow each fund path, keep the last ``window`` levels, test the trigger."""
    out = []
    for s in range(scenarios.n_scenarios):
        levels = [fund - floor]
        hit = False
        for t in range(scenarios.horizon):
            level = levels[-1] + float(scenarios.premium_base[s, t] @ rates) - float(scenarios.losses[s, t])
            if level < 0.0:
                hit = True
            if not rule.is_floor:
                recent = levels[-int(rule.window):]
                if level < (1.0 - rule.fraction) * max(recent):
                    hit = True
            levels.append(level)
        out.append(hit)
    return np.array(out)


def _random_set(n: int = 300, horizon: int = 12, seed: int = 0, markets: int = 2) -> ScenarioSet:
    rng = np.random.default_rng(seed)
    losses_by_market = rng.exponential(20.0, (n, horizon, markets)) * (rng.random((n, horizon, markets)) < 0.3)
    base = rng.exponential(400.0, (n, horizon, markets))
    names = tuple("ABCDEFG"[:markets])
    return ScenarioSet(losses_by_market.sum(axis=2), base, names, losses_by_market=losses_by_market)


# -- the rule itself ------------------------------------------------------------------------------

def test_hand_made_path():
    """F0 = 100, flows -20, -20, +50: levels 100, 80, 60, 110."""
    scenarios = ScenarioSet(np.array([[20.0, 20.0, 0.0]]), np.array([[[0.0], [0.0], [50.0]]]), ("A",))
    rates = np.array([1.0])
    # 60 < 0.7 x 100 over two periods: ruined with window 2, not with window 1 (60 >= 0.7 x 80 = 56)
    assert ruined(100.0, rates, scenarios, RuinRule("drawdown", fraction=0.3, window=2))[0]
    assert not ruined(100.0, rates, scenarios, RuinRule("drawdown", fraction=0.3, window=1))[0]
    # period 2 pays 20 of 80 = 25%: a 25% cap holds (60 is not below 0.75 x 80), a 20% cap does not
    assert not ruined(100.0, rates, scenarios, RuinRule("payout", fraction=0.25))[0]
    assert ruined(100.0, rates, scenarios, RuinRule("payout", fraction=0.2))[0]
    # the floor rule: 60 >= 0; with a floor of 70 the fund is below it at period 2
    assert not ruined(100.0, rates, scenarios, FLOOR)[0]
    assert ruined(100.0, rates, scenarios, FLOOR, floor=70.0)[0]
    # the drawdown is of the fund above the floor: with floor 50 the levels above it are 50, 30, 10
    # and 10 < 0.7 x 30 even over one period
    assert ruined(100.0, rates, scenarios, RuinRule("drawdown", fraction=0.3, window=1), floor=50.0)[0]


def test_required_fund_closed_form():
    """One market, no premium: flows -a then -b. Window 1, fraction x: the trigger binds at the
    worse of a <= x F0 and b <= x (F0 - a), so F0* = max(a / x, a + b / x); the rows' required fund
    (floor - worst row) is exactly that."""
    a, b, x = 10.0, 30.0, 0.25
    scenarios = ScenarioSet(np.array([[a, b]]), np.zeros((1, 2, 1)), ("A",))
    laid_out = rows(scenarios, RuinRule("drawdown", fraction=x, window=1))
    need = -worst_net_flow(laid_out.losses, laid_out.premium_base, np.zeros(1))[0]
    assert need == pytest.approx(max(a / x, a + b / x), rel=1e-14)
    rule = RuinRule("drawdown", fraction=x, window=1)
    assert not ruined(need * (1 + 1e-12), np.zeros(1), scenarios, rule)[0]
    assert ruined(need * (1 - 1e-9), np.zeros(1), scenarios, rule)[0]


@pytest.mark.parametrize("rule", [FLOOR, DRAWDOWN, PAYOUT, RuinRule("drawdown", fraction=0.5, window=20)],
                         ids=["floor", "drawdown", "payout", "window-beyond-horizon"])
def test_paths_rows_and_plain_python_agree_on_random_sets(rule):
    scenarios = _random_set()
    laid_out = rows(scenarios, rule)
    assert laid_out.horizon == row_count(scenarios.horizon, rule)
    rng = np.random.default_rng(1)
    for _ in range(8):
        rates = rng.uniform(0.0, 0.05, 2)
        fund = float(rng.uniform(0.0, 600.0))
        direct = ruined(fund, rates, scenarios, rule)
        worst = worst_net_flow(laid_out.losses, laid_out.premium_base, rates)
        assert np.array_equal(direct, fund + worst < 0.0)
        assert np.array_equal(direct, _by_hand(fund, rates, scenarios, rule))
        assert count_ruined(fund, worst, 0.0) == int(direct.sum())
    # some but not all scenarios are ruined at these sizes, or the comparison says little
    assert 0 < int(ruined(200.0, np.full(2, 0.01), scenarios, rule).sum()) < scenarios.n_scenarios


@settings(max_examples=40, deadline=None)
@given(fraction=st.floats(0.05, 0.95), window=st.integers(1, 6), floor=st.floats(-50.0, 50.0),
       fund=st.floats(0.0, 500.0), seed=st.integers(0, 10_000))
def test_rows_equal_paths_for_any_rule(fraction, window, floor, fund, seed):
    scenarios = _random_set(n=40, horizon=8, seed=seed)
    rule = RuinRule("drawdown", fraction=fraction, window=window)
    rates = np.random.default_rng(seed).uniform(0.0, 0.05, 2)
    laid_out = rows(scenarios, rule)
    worst = worst_net_flow(laid_out.losses, laid_out.premium_base, rates)
    row_margin = fund + worst - floor
    direct = ruined(fund, rates, scenarios, rule, floor)
    clear = np.abs(row_margin) > 1e-9 * (abs(fund) + 1e3)  # away from the boundary, where sums round apart
    assert np.array_equal(direct[clear], (row_margin < 0.0)[clear])
    assert np.array_equal(direct, _by_hand(fund, rates, scenarios, rule, floor))


def test_rows_keep_horizon_sums_and_stress_flags():
    scenarios = _random_set(n=50)
    flagged = ScenarioSet(scenarios.losses, scenarios.premium_base, scenarios.markets,
                          is_stress=np.arange(50) < 3, losses_by_market=scenarios.losses_by_market)
    laid_out = rows(flagged, DRAWDOWN)
    assert np.allclose(laid_out.premium_base.sum(axis=1), flagged.premium_base.sum(axis=1), rtol=1e-12)
    assert np.allclose(laid_out.losses_by_market.sum(axis=1), flagged.losses_by_market.sum(axis=1), rtol=1e-12,
                       atol=1e-9)
    assert np.array_equal(laid_out.is_stress, flagged.is_stress)
    assert laid_out.random_part().n_scenarios == 47  # the set's operations work on rows


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"kind": "crash"}, "ruin kind must be one of"),
    ({"kind": "drawdown", "fraction": 1.3, "window": 8}, "ruin fraction must be in (0, 1)"),
    ({"kind": "drawdown", "fraction": 0.3}, "ruin window must be a whole number"),
    ({"kind": "drawdown", "fraction": 0.3, "window": 0}, "ruin window must be a whole number"),
    ({"kind": "drawdown", "fraction": 0.3, "window": 2.5}, "ruin window must be a whole number"),
    ({"kind": "payout", "fraction": 0.3, "window": 4}, "per period (window 1)"),
    ({"kind": "floor", "fraction": 0.3}, "takes no fraction"),
    ({"kind": "drawdown", "fraction": "30%", "window": 8}, "ruin fraction must be a number"),
])
def test_bad_rules_are_one_line(kwargs, fragment, bad_input_cases):
    bad_input_cases.add(f"ruin rule {kwargs}")
    with pytest.raises(ProblemError, match=None) as info:
        RuinRule(**kwargs)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ProblemError):
        PolicyProblem(alpha=0.01, cost_of_capital=0.01, ruin=kwargs)


# -- the methods under a rule ---------------------------------------------------------------------

def _fund_by_bisection(rates: np.ndarray, scenarios: ScenarioSet, rule: RuinRule, allowed: int) -> float:
    """Smallest F0 with at most ``allowed`` ruined paths at ``rates``, from the path check alone."""
    low, high = 0.0, 1.0
    while np.count_nonzero(ruined(high, rates, scenarios, rule)) > allowed:
        high *= 2.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        if np.count_nonzero(ruined(mid, rates, scenarios, rule)) > allowed:
            low = mid
        else:
            high = mid
        if high - low <= 1e-12 * high:
            break
    return high


@pytest.fixture(scope="module")
def book() -> ScenarioSet:
    return _random_set(n=2000, horizon=15, seed=4, markets=2)


@pytest.mark.parametrize("method", ["exact", "cvar", "scenario", "certified"])
@pytest.mark.parametrize("rule", [DRAWDOWN, PAYOUT], ids=["drawdown", "payout"])
def test_every_method_is_rechecked_on_the_paths(book, method, rule):
    problem = PolicyProblem(alpha=0.05, cost_of_capital=0.01, premium_weight=0.2, premium_max=0.03, ruin=rule)
    policy = solve(problem, book, method)
    assert policy.ruin == rule and policy.to_dict()["ruin"]["kind"] == rule.kind
    ruins, n = count_ruins(policy, book)
    assert ruins == int(np.count_nonzero(ruined(policy.fund_target, policy.premium_rates, book, rule)))
    assert ruins == int(np.count_nonzero(_by_hand(policy.fund_target, policy.premium_rates, book, rule)))
    if method != "certified":  # (which reports its ruin on the part it fitted on)
        assert ruins / n == pytest.approx(policy.in_sample_ruin, abs=1.0 / n)
    if method in ("exact", "scenario"):
        assert ruins <= allowed_ruins(problem.alpha, n)
    # the rule only adds events: the same policy under the floor rule is ruined no more often
    plain = dataclasses.replace(policy, ruin=FLOOR)
    assert count_ruins(plain, book)[0] <= ruins


def test_exact_under_a_drawdown_equals_brute_force(book):
    """"exact" at its rates sets the smallest fund with floor(alpha N) ruined paths; the bisection
    on the path check finds the same number; and it needs more than the floor rule's fund."""
    problem = PolicyProblem(alpha=0.05, cost_of_capital=0.01, premium_weight=0.004, premium_max=0.03, ruin=DRAWDOWN)
    policy = solve(problem, book, "exact")
    assert policy.premium_rates.max() > 0.0  # fees that earn: the rows' premium bases are used
    brute = _fund_by_bisection(policy.premium_rates, book, DRAWDOWN, allowed_ruins(0.05, book.n_scenarios))
    assert policy.fund_target == pytest.approx(brute, rel=1e-9)
    floor_only = solve(dataclasses.replace(problem, ruin=FLOOR), book, "exact")
    assert policy.fund_target > floor_only.fund_target
    # and the drawdown's fund is the objective's optimum: no rate on a grid does better by brute force
    best = min(problem.cost_of_capital * _fund_by_bisection(np.array([a, b]), book, DRAWDOWN, 100)
               + problem.premium_weight * float(np.array([a, b]) @ book.premium_base.sum(axis=1).mean(axis=0))
               for a in np.linspace(0, 0.03, 4) for b in np.linspace(0, 0.03, 4))
    assert policy.objective <= best * (1 + 1e-9)


def test_participation_under_a_rule_is_rechecked_on_the_scaled_paths(book):
    mean_base = book.premium_base.sum(axis=1).mean(axis=0)
    participation = Participation.from_elasticity(mean_base, traded_volume=np.array([2e6, 2e6]))
    problem = PolicyProblem(alpha=0.05, cost_of_capital=0.01, premium_max=0.03, ruin=PAYOUT,
                            participation=participation)
    policy = solve(problem, book, "exact")
    scaled = participation.scaled(book, policy.premium_rates, fund_only=True)
    direct = int(np.count_nonzero(ruined(policy.fund_target, policy.premium_rates, scaled, PAYOUT)))
    assert count_ruins(policy, book)[0] == direct <= allowed_ruins(0.05, book.n_scenarios)
    assert policy.fund_target == pytest.approx(
        _fund_by_bisection(policy.premium_rates, scaled, PAYOUT, allowed_ruins(0.05, book.n_scenarios)), rel=1e-9)


# -- the config -----------------------------------------------------------------------------------

def _config(ruin: str) -> str:
    return f"""
[problem]
alpha = 0.01
ruin = {ruin}

[[markets]]
name = "BTC"
open_interest = 1e9
daily_volume = 3e9
"""


def _parse(text: str, tmp_path) -> object:
    path = tmp_path / "job.toml"
    path.write_text(text)
    return load_config(path)


def test_config_ruin_table_reaches_the_problem(tmp_path):
    cfg = _parse(_config('{kind = "drawdown", fraction = 0.3, window = 8}'), tmp_path)
    assert policy_problem(cfg).ruin == RuinRule("drawdown", fraction=0.3, window=8)
    assert policy_problem(_parse(_config('{kind = "floor"}'), tmp_path)).ruin == FLOOR


@pytest.mark.parametrize(("ruin", "fragment"), [
    ('{kind = "drawdown", fraction = 1.3, window = 8}', "problem.ruin: ruin fraction must be in (0, 1)"),
    ('{kind = "drawdown", fraction = 0.3, window = 8, hours = 8}', "unknown key(s) ['hours']"),
    ('"drawdown"', "problem.ruin"),
])
def test_config_bad_ruin_names_line(tmp_path, ruin, fragment, bad_input_cases):
    bad_input_cases.add(f"config ruin {ruin}")
    with pytest.raises(ConfigError) as info:
        _parse(_config(ruin), tmp_path)
    message = str(info.value)
    assert fragment in message and "job.toml:4" in message and "\n" not in message


# -- solvency targets beyond a probability (issue 17, item 3) --------------------------------------

def _shortfall_by_hand(fund: float, rates: np.ndarray, scenarios: ScenarioSet) -> np.ndarray:
    flows = np.cumsum(scenarios.premium_base @ rates - scenarios.losses, axis=1)
    return np.maximum(-flows.min(axis=1) - fund, 0.0)


@pytest.mark.parametrize("method", ["exact", "cvar"])
def test_expected_shortfall_budget_is_met_tightly(book, method):
    base = PolicyProblem(alpha=0.05, cost_of_capital=0.01, premium_weight=0.004, premium_max=0.03)
    free = solve(base, book, method)
    short = _shortfall_by_hand(free.fund_target, free.premium_rates, book)
    budget = 0.25 * float(short.mean())  # a quarter of what the probability target leaves
    policy = solve(dataclasses.replace(base, expected_shortfall_max=budget), book, method)
    assert np.array_equal(policy.premium_rates, free.premium_rates) and policy.fund_target > free.fund_target
    assert _shortfall_by_hand(policy.fund_target, policy.premium_rates, book).mean() <= budget * (1 + 1e-9)
    assert _shortfall_by_hand(policy.fund_target * (1 - 1e-6), policy.premium_rates, book).mean() > budget
    assert policy.objective == pytest.approx(free.objective + 0.01 * (policy.fund_target - free.fund_target))
    # a budget the probability's fund already meets changes nothing
    loose = solve(dataclasses.replace(base, expected_shortfall_max=10 * float(short.mean()) + 1), book, method)
    assert loose.fund_target == free.fund_target


def test_shortfall_cvar_budget_against_sorted_tail(book):
    base = PolicyProblem(alpha=0.05, cost_of_capital=0.01, premium_weight=0.004, premium_max=0.03)
    free = solve(base, book, "exact")
    n_tail = int(0.01 * book.n_scenarios)  # 20 of 2,000: the 1% CVaR is the mean of the 20 largest

    def cvar(fund: float) -> float:
        return float(np.sort(_shortfall_by_hand(fund, free.premium_rates, book))[-n_tail:].mean())

    budget = 0.5 * cvar(free.fund_target)
    policy = solve(dataclasses.replace(base, shortfall_cvar_max=budget, shortfall_cvar_level=0.99), book, "exact")
    assert cvar(policy.fund_target) <= budget * (1 + 1e-9) < cvar(policy.fund_target * (1 - 1e-6))


def test_bad_shortfall_budgets_are_one_line(bad_input_cases):
    bad_input_cases.add("negative shortfall budget")
    with pytest.raises(ProblemError, match="expected_shortfall_max must be >= 0"):
        PolicyProblem(alpha=0.01, cost_of_capital=0.01, expected_shortfall_max=-1.0)
    with pytest.raises(ProblemError, match=r"shortfall_cvar_level must be in \(0, 1\)"):
        PolicyProblem(alpha=0.01, cost_of_capital=0.01, shortfall_cvar_max=1.0, shortfall_cvar_level=1.0)
