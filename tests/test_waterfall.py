"""The waterfall after the fund and auto-deleveraging (issue 17, item 2)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from _shared import two_market_price_files

from fundguard.models import LeverageTier, ScenarioSet
from fundguard.models.errors import ConfigError, ProblemError, ScenarioError
from fundguard.optimizer import PolicyProblem, RuinRule, calibrate, solve
from fundguard.optimizer.job.config import load_config
from fundguard.optimizer.job.report import render_report, validate_result
from fundguard.optimizer.certificates import count_ruins
from fundguard.optimizer.ruin import ruined
from fundguard.optimizer.waterfall import ALLOCATION_RULES, Layer, Waterfall, allocate, run_waterfall

TWO = (LeverageTier(0.5, 10.0, 0.02), LeverageTier(0.5, 2.0, 0.05))


def _one(loss: float, winners: float, base: float = 0.0) -> ScenarioSet:
    return ScenarioSet(np.array([[loss]]), np.array([[[base]]]), ("A",), losses_by_market=np.array([[[loss]]]),
                       winners=np.array([[[winners]]]))


def _policy(scenarios: ScenarioSet, fund: float, rule: RuinRule | None = None):
    problem = PolicyProblem(alpha=0.5, cost_of_capital=0.01, premium_max=0.0)
    policy = solve(problem, scenarios, "exact")
    return dataclasses.replace(policy, fund_target=fund, ruin=rule or policy.ruin)


@pytest.mark.parametrize(("rule", "accounts", "taken", "largest"), [
    # need 150 - 100 - 30 = 20 of winners' 100 (cohorts of 50 at leverage 10 and 2)
    ("queue", 1_000_000, (20.0, 0.0), 0.4),   # the 10x cohort first, 40% of its profit
    ("queue", 1, (50.0, 0.0), 1.0),           # one account per cohort: all of it, overshoot 30
    ("min_overshoot", 1, (20.0, 0.0), 0.4),
    ("pro_rata", 1, (10.0, 10.0), 0.2),       # 20% of everyone's profit
])
def test_hand_made_waterfall(rule, accounts, taken, largest):
    scenarios = _one(loss=150.0, winners=100.0)
    result = run_waterfall(_policy(scenarios, 100.0), scenarios,
                           Waterfall((Layer("vault", 30.0),), allocation=rule, accounts=accounts), {"A": TWO})
    assert result.need[0] == pytest.approx(50.0) and result.layers[0, 0] == pytest.approx(30.0)
    assert result.adl[0] == pytest.approx(sum(taken))
    assert result.overshoot[0] == pytest.approx(sum(taken) - 20.0)
    assert result.largest_haircut[0] == pytest.approx(largest)
    assert result.uncovered[0] == 0.0


def test_need_beyond_every_profit_is_uncovered():
    scenarios = _one(loss=300.0, winners=100.0)
    result = run_waterfall(_policy(scenarios, 100.0), scenarios, Waterfall(allocation="pro_rata"), {"A": TWO})
    assert result.adl[0] == pytest.approx(100.0) and result.uncovered[0] == pytest.approx(100.0)
    assert result.largest_haircut[0] == pytest.approx(1.0)


def test_fund_pays_down_to_its_trigger_only():
    """Payout cap 40%: of a loss of 60 on a fund of 100 the fund pays 40, the rest goes down."""
    scenarios = _one(loss=60.0, winners=100.0)
    result = run_waterfall(_policy(scenarios, 100.0, RuinRule("payout", fraction=0.4)), scenarios,
                           Waterfall(allocation="pro_rata"), {"A": TWO})
    assert result.need[0] == pytest.approx(20.0) and result.adl[0] == pytest.approx(20.0)


def _book(n: int = 3000, horizon: int = 10, seed: int = 2) -> ScenarioSet:
    rng = np.random.default_rng(seed)
    by_market = rng.pareto(1.5, (n, horizon, 2)) * (rng.random((n, horizon, 2)) < 0.2) * 5.0
    return ScenarioSet(by_market.sum(axis=2), rng.exponential(100.0, (n, horizon, 2)), ("A", "B"),
                       losses_by_market=by_market, winners=rng.exponential(30.0, (n, horizon, 2)))


@pytest.mark.parametrize("rule", [RuinRule(), RuinRule("drawdown", fraction=0.3, window=3)], ids=["floor", "drawdown"])
def test_allocations_sum_to_the_need_and_need_is_ruin(rule):
    book = _book()
    problem = PolicyProblem(alpha=0.05, cost_of_capital=0.01, premium_weight=0.01, premium_max=0.02, ruin=rule)
    policy = solve(problem, book, "exact")
    layers = (Layer("venue capital", 5.0), Layer("vault", 10.0))
    results = {r: run_waterfall(policy, book, Waterfall(layers, allocation=r, accounts=3)) for r in ALLOCATION_RULES}
    for r, result in results.items():
        allocated = result.adl - result.overshoot
        np.testing.assert_allclose(result.layers.sum(axis=1) + allocated + result.uncovered, result.need,
                                   rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(result.adl_by_market.sum(axis=1), result.adl, rtol=1e-12, atol=1e-12)
        assert np.all(result.overshoot >= 0.0) and np.all(result.uncovered >= 0.0)
        if r != "queue":
            assert np.all(result.overshoot == 0.0)
    # the fund needs help exactly when the ruin rule says the scenario is ruined, but at the boundary
    # scenario "exact" sets the fund on (its margin is zero, and sums in another order round apart)
    ruins, n = count_ruins(policy, book)
    direct = ruined(policy.fund_target, policy.premium_rates, book, rule)
    helped = results["pro_rata"].need > 1e-9 * policy.fund_target
    assert np.array_equal(helped, direct) or np.count_nonzero(helped != direct) <= 1
    assert abs(int(np.count_nonzero(helped)) - ruins) <= 1
    assert 0 < ruins  # the comparison below is about something
    queue, exact_queue, flat = results["queue"], results["min_overshoot"], results["pro_rata"]
    # the same need covered by every rule; the queue's whole accounts take more, never less
    np.testing.assert_allclose(exact_queue.adl, flat.adl, rtol=1e-12, atol=1e-9)
    assert np.all(queue.adl >= exact_queue.adl - 1e-9) and queue.overshoot.sum() > 0.0
    # pro rata is the flattest: its largest haircut is never above the queue's
    hit = flat.adl > 0.0
    assert np.all(flat.largest_haircut[hit] <= exact_queue.largest_haircut[hit] + 1e-12)
    summary = flat.summary()
    assert summary["p_adl"] == pytest.approx(np.mean(flat.adl > 0.0)) and summary["p_adl"] <= (ruins + 1) / n


def test_allocate_against_a_sorted_fill():
    rng = np.random.default_rng(5)
    profit = rng.exponential(10.0, (200, 4))
    need = rng.uniform(0.0, 50.0, 200)
    leverage = np.array([2.0, 50.0, 10.0, 20.0])
    taken, left, overshoot = allocate(need, profit, leverage, "min_overshoot")
    assert np.all(overshoot == 0.0)
    for s in range(200):  # by hand: fill cohorts 50x, 20x, 10x, 2x in turn
        rest, expected = min(need[s], profit[s].sum()), np.zeros(4)
        for k in (1, 3, 2, 0):
            expected[k] = min(rest, profit[s, k])
            rest -= expected[k]
        np.testing.assert_allclose(taken[s], expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(taken.sum(axis=1) + left, need, rtol=1e-12)


@pytest.mark.parametrize(("build", "fragment"), [
    (lambda: Layer("", 1.0), "layer name"),
    (lambda: Layer("vault", -1.0), "size must be a finite number >= 0"),
    (lambda: Waterfall(allocation="fifo"), "allocation must be one of"),
    (lambda: Waterfall((Layer("a", 1.0), Layer("a", 2.0))), "layer names must be unique"),
    (lambda: Waterfall(accounts=0), "accounts must be a whole number"),
])
def test_bad_waterfalls_are_one_line(build, fragment, bad_input_cases):
    bad_input_cases.add(f"waterfall {fragment}")
    with pytest.raises(ProblemError) as info:
        build()
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_waterfall_needs_winners():
    scenarios = ScenarioSet(np.ones((2, 3)), np.ones((2, 3, 1)), ("A",))
    with pytest.raises(ScenarioError, match="winners"):
        run_waterfall(_policy(scenarios, 1.0), scenarios, Waterfall())


# -- the job: [waterfall], [[funds]] and what result.json says --------------------------------------

JOB = """
[problem]
alpha = 0.02
method = "exact"
ruin = {{kind = "payout", fraction = 0.5}}

[scenarios]
n_scenarios = 2000
certify_scenarios = 2000
horizon = 10
seed = 3

[waterfall]
allocation = "{allocation}"
[[waterfall.layers]]
name = "venue capital"
size = {size}

[[funds]]
name = "first"
markets = ["AAA"]
[[funds]]
name = "second"
markets = {second}

[[markets]]
name = "AAA"
prices = "{aaa}"
open_interest = 1e9
daily_volume = 3e9
[[markets]]
name = "BBB"
prices = "{bbb}"
open_interest = 5e8
daily_volume = 2e9
"""


@pytest.fixture(scope="module")
def job_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("job")
    files = two_market_price_files(folder)
    return folder, files


def _job(job_files, **overrides) -> object:
    folder, files = job_files
    values = {"allocation": "pro_rata", "size": "1e6", "second": '["BBB"]', "aaa": files["AAA"], "bbb": files["BBB"],
              **overrides}
    path = folder / "job.toml"
    path.write_text(JOB.format(**values))
    return load_config(path)


def test_calibration_reports_after_the_fund(job_files):
    cfg = _job(job_files)
    assert cfg.waterfall.layers == (("venue capital", 1e6),) and [f.name for f in cfg.funds] == ["first", "second"]
    result = calibrate(cfg, sensitivities=False)
    document = result.to_dict()
    assert not validate_result(document)
    after = document["analysis"]["after_fund"]
    assert after["ruin"]["kind"] == "payout" and list(after["adl"]) == ["pro_rata", "queue", "min_overshoot"]
    assert document["policy"]["ruin"] == {"kind": "payout", "fraction": 0.5, "window": 1}
    topologies = after["topologies"]
    # the pooled fund of the topology comparison is the policy's fund at its rates ("exact" on the same set)
    assert topologies["pooled"]["total"] == pytest.approx(result.policy.fund_target, rel=1e-9)
    assert topologies["pooled"]["total"] <= topologies["configured"]["total"] <= topologies["per market"]["total"] * (1 + 1e-12)
    assert set(after["funds"]) == {"first", "second"}
    # with the layer behind the fund ADL is rarer than the fund's need for help
    pro_rata = after["adl"]["pro_rata"]
    assert pro_rata["p_adl"] <= pro_rata["p_need"] and pro_rata["p_need"] > 0
    assert "## After the fund" in render_report(result)


@pytest.mark.parametrize(("overrides", "fragment", "line"), [
    ({"allocation": "fifo"}, "waterfall.allocation must be one of", 14),
    ({"size": "-1.0"}, "waterfall.layers[0].size must be >= 0", 17),
    ({"second": '["AAA"]'}, "funds must cover every market exactly once: repeated ['AAA'], missing ['BBB']", None),
    ({"second": '["CCC", "BBB"]'}, "funds[1].markets names unknown market(s) ['CCC']", 24),
])
def test_bad_waterfall_and_funds_name_file_and_line(job_files, overrides, fragment, line, bad_input_cases):
    bad_input_cases.add(f"config {fragment[:30]}")
    with pytest.raises(ConfigError) as info:
        _job(job_files, **overrides)
    message = str(info.value)
    assert fragment in message and "\n" not in message and "job.toml" in message
    if line is not None:
        assert f"job.toml:{line}:" in message
