"""Tests of models.venue: the liquidation-gap loss model and build_scenarios."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from fundguard.models import (
    DEFAULT_TIERS,
    LeverageTier,
    Market,
    ReturnPaths,
    ScenarioError,
    ScenarioSet,
    SpecificationError,
    VenueBook,
    VolSpec,
    build_scenarios,
    fit_volatility,
    liquidation_gap,
    load_prices,
    log_returns,
    stress_paths,
)



def paths_from(returns: np.ndarray, volatility: np.ndarray | float, markets=("A",), **kw) -> ReturnPaths:
    returns = np.asarray(returns, dtype=np.float64)
    if returns.ndim == 2:
        returns = returns[..., None]
    return ReturnPaths(returns, np.broadcast_to(volatility, returns.shape).copy(), markets, **kw)


def move_grid() -> tuple[np.ndarray, np.ndarray]:
    """Log returns of simple moves from -60% to +60% (rows) under three volatilities (columns)."""
    simple = np.linspace(-0.6, 0.6, 241)
    returns = np.repeat(np.log1p(simple)[:, None], 3, axis=1)
    volatility = np.broadcast_to(np.array([0.01, 0.05, 0.15]), returns.shape).copy()
    return returns, volatility


# ---------------------------------------------------------------------------------------------
# The loss model
# ---------------------------------------------------------------------------------------------


def test_hand_computed_single_period_to_the_cent():
    """One period, a 12% fall, two tiers, computed by hand.

    OI 100m, ADV 400m, Y = 0.5, g = 0.5, sigma = 4% a day.
    Tier 1: w 0.5, 10x, m 2%  -> D = 0.1 - 0.02 = 8%:  q1 = 50m * min(1, 0.12/0.08) = 50m
    Tier 2: w 0.5, 4x,  m 5%  -> D = 0.25 - 0.05 = 20%: q2 = 50m * 0.12/0.20 = 30m
    Q = 80m; impact = 0.5 * 0.04 * sqrt(80m / 400m) = 0.02 * 0.4472135955 = 0.00894427191
    slip1 = 0.00894427191 + 0.5 * (0.12 - 0.08) = 0.02894427191 > 2%: loss 50m * 0.00894427191
          = 447,213.60; slip2 = 0.00894427191 < 5%: 30m of fee-paying liquidations.
    A 12% rise costs the shorts the same.
    """
    market = Market("X", open_interest=100e6, daily_volume=400e6, impact=0.5, gap=0.5,
                    tiers=[LeverageTier(0.5, 10, 0.02), LeverageTier(0.5, 4, 0.05)])
    loss, base, *_ = liquidation_gap(market, np.log([[0.88, 1.12]]), np.full((1, 2), 0.04))
    np.testing.assert_allclose(loss, [[447_213.60, 447_213.60]], atol=0.005)
    np.testing.assert_allclose(base, [[30_000_000.00, 30_000_000.00]], atol=0.005)
    assert round(float(loss[0, 0]), 2) == 447_213.60


def test_hand_computed_liquidated_notional_and_winners_of_one_market():
    """The book of the test above, one market; liquidated and winners by hand.

    A 12% fall: the longs lose, q1 = 50m (tier 1 wholly), q2 = 30m: liquidated 80m; the shorts
    gain OI * 0.12 = 12m. A 12% rise: the same for the shorts' ladder and the longs' gain.
    A 5% fall: q1 = 50m * 0.05/0.08 = 31.25m, q2 = 50m * 0.05/0.20 = 12.5m: 43.75m; winners 5m.
    No move: nothing liquidated, nobody wins.
    With shorts on a 25x ladder (D = 0.04 - 0.01 = 3%): a 5% rise liquidates all 100m of
    shorts; the longs win 5m.
    """
    from fundguard.models.venue.losses import VenueLosses

    tiers = [LeverageTier(0.5, 10, 0.02), LeverageTier(0.5, 4, 0.05)]
    market = Market("X", open_interest=100e6, daily_volume=400e6, impact=0.5, gap=0.5, tiers=tiers)
    result = liquidation_gap(market, np.log([[0.88, 1.12, 0.95, 1.0]]), np.full((1, 4), 0.04))
    assert isinstance(result, VenueLosses)
    np.testing.assert_allclose(result.liquidated, [[80e6, 80e6, 43.75e6, 0.0]], rtol=1e-12, atol=1e-6)
    np.testing.assert_allclose(result.winners, [[12e6, 12e6, 5e6, 0.0]], rtol=1e-12, atol=1e-6)
    # the loss and premium base are those of the test above (a 5% fall: no gap, impact
    # 0.02 sqrt(43.75m / 400m) = 0.66% < m for both tiers: all 43.75m pay the fee)
    np.testing.assert_allclose(result.loss, [[447_213.60, 447_213.60, 0.0, 0.0]], atol=0.005)
    np.testing.assert_allclose(result.premium_base, [[30e6, 30e6, 43.75e6, 0.0]], rtol=1e-12, atol=1e-6)
    shorts = replace(market, short_tiers=[LeverageTier(1.0, 25, 0.01)])
    squeeze = liquidation_gap(shorts, np.log([[1.05, 0.95]]), np.full((1, 2), 0.04))
    np.testing.assert_allclose(squeeze.liquidated, [[100e6, 43.75e6]], rtol=1e-12)
    np.testing.assert_allclose(squeeze.winners, [[5e6, 5e6]], rtol=1e-12)


def test_no_loss_when_every_margin_exceeds_the_largest_shortfall():
    # D = 1/2 - 0.3 = 20%: moves below 19% never gap; impact <= 1 * 0.1 * sqrt(OI / ADV) = 0.1 < 0.3
    market = Market("X", open_interest=1e9, daily_volume=1e9, impact=1.0, gap=1.0,
                    tiers=[LeverageTier(1.0, 2.0, 0.30)])
    rng = np.random.default_rng(0)
    returns = np.log1p(rng.uniform(-0.19, 0.19, size=(500, 30)))
    volatility = rng.uniform(0.001, 0.1, size=(500, 30))
    loss, base, *_ = liquidation_gap(market, returns, volatility)
    assert np.all(loss == 0.0)
    assert np.all(base[returns != 0] > 0)  # liquidations happen, all pay the fee
    # the same book with a thinner margin does lose
    thin = replace(market, tiers=[LeverageTier(1.0, 2.0, 0.02)])
    assert liquidation_gap(thin, returns, volatility)[0].sum() > 0


@pytest.mark.parametrize(
    "change",
    [
        {"open_interest": 2e9},
        {"tiers": [LeverageTier(t.share, 1.5 * t.leverage, t.maintenance_margin * 0.5) for t in DEFAULT_TIERS]},
        {"impact": 2.0},
        {"gap": 0.3},
    ],
    ids=["open_interest", "leverage", "impact", "gap"],
)
def test_losses_grow_with_size_leverage_impact_and_gap(change):
    base_market = Market("X", open_interest=1e9, daily_volume=3e9)
    bigger = replace(base_market, **change)
    returns, volatility = move_grid()
    low, *_ = liquidation_gap(base_market, returns, volatility)
    high, *_ = liquidation_gap(bigger, returns, volatility)
    assert np.all(high >= low - 1e-6)
    assert high.sum() > 1.05 * low.sum()


def test_higher_leverage_at_the_same_margin_loses_more():
    base_market = Market("X", 1e9, 3e9, tiers=[LeverageTier(1.0, 5.0, 0.02)])
    levered = Market("X", 1e9, 3e9, tiers=[LeverageTier(1.0, 20.0, 0.02)])
    returns, volatility = move_grid()
    high, low = liquidation_gap(levered, returns, volatility)[0], liquidation_gap(base_market, returns, volatility)[0]
    assert np.all(high >= low) and high.sum() > low.sum()


def test_losses_grow_with_the_size_of_the_move():
    market = Market("X", open_interest=1e9, daily_volume=3e9)
    returns, volatility = move_grid()
    loss, *_ = liquidation_gap(market, returns, volatility)
    simple = np.expm1(returns[:, 0])
    down, up = loss[simple <= 0][::-1], loss[simple >= 0]  # both ordered by growing |move|
    assert np.all(np.diff(down, axis=0) >= -1e-6) and np.all(np.diff(up, axis=0) >= -1e-6)
    assert loss[simple == 0].max() == 0.0
    assert down[-1, 1] > 0 and up[-1, 1] > 0
    # and with volatility, through impact
    assert np.all(np.diff(loss, axis=1) >= -1e-6)


def test_long_side_loses_on_down_moves_only_and_short_side_on_up_moves_only():
    safe = [LeverageTier(1.0, 1.0, 0.0)]  # unlevered: never bankrupt below a 100% move
    returns, volatility = move_grid()
    simple = np.expm1(returns[:, 0])
    longs_only = Market("X", 1e9, 3e9, tiers=DEFAULT_TIERS, short_tiers=safe, impact=0.0)
    shorts_only = Market("X", 1e9, 3e9, tiers=safe, short_tiers=DEFAULT_TIERS, impact=0.0)
    long_loss, *_ = liquidation_gap(longs_only, returns, volatility)
    short_loss, *_ = liquidation_gap(shorts_only, returns, volatility)
    assert np.all(long_loss[simple >= 0] == 0) and long_loss[simple < -0.2].min() > 0
    assert np.all(short_loss[simple <= 0] == 0) and short_loss[simple > 0.2].min() > 0
    # a book with the default ladder on both sides is the sum of its two sides
    both = Market("X", 1e9, 3e9, impact=0.0)
    np.testing.assert_allclose(liquidation_gap(both, returns, volatility)[0], long_loss + short_loss, rtol=1e-12)


def test_liquidation_premium_base_is_non_bankrupt_liquidated_notional():
    market = Market("X", open_interest=1e9, daily_volume=3e9)
    returns, volatility = move_grid()
    loss, base, *_ = liquidation_gap(market, returns, volatility)
    no_impact = replace(market, impact=0.0, gap=0.0)
    # without slippage nothing goes bankrupt, and every liquidated dollar pays the fee:
    # base = OI sum_k w_k min(1, a / D_k)
    a = np.abs(np.expm1(returns))
    liquidated = sum(t.share * 1e9 * np.minimum(1.0, a / t.distance) for t in DEFAULT_TIERS)
    np.testing.assert_allclose(liquidation_gap(no_impact, returns, volatility)[1], liquidated, rtol=1e-12)
    assert np.all(base <= liquidated * (1 + 1e-12))
    assert np.all(base[loss > 0] < liquidated[loss > 0])  # bankrupt liquidations pay no fee


def test_volume_premium_base_rises_with_volatility_and_scales_with_period():
    market = Market("X", open_interest=1e9, daily_volume=2e9, premium_kind="volume", volume_elasticity=1.35)
    volatility = np.array([[0.01, 0.02, 0.04]])
    _, base, *_ = liquidation_gap(market, np.zeros((1, 3)), volatility, long_run_volatility=0.02)
    np.testing.assert_allclose(base, 2e9 * (volatility / 0.02) ** 1.35)
    assert base[0, 1] == pytest.approx(2e9)
    # an hourly period trades 1/24 of a day's volume, and its volatility is scaled to a day for impact
    _, hourly, *_ = liquidation_gap(market, np.zeros((1, 3)), volatility / math.sqrt(24), period_days=1 / 24,
                                long_run_volatility=0.02 / math.sqrt(24))
    np.testing.assert_allclose(hourly, base / 24)
    daily_loss, *_ = liquidation_gap(market, np.log([[0.7]]), np.array([[0.05]]), long_run_volatility=0.05)
    hourly_loss, *_ = liquidation_gap(market, np.log([[0.7]]), np.array([[0.05 / math.sqrt(24)]]), period_days=1 / 24,
                                     long_run_volatility=0.01)
    assert hourly_loss[0, 0] == pytest.approx(daily_loss[0, 0], rel=1e-12)
    with pytest.raises(ScenarioError, match="long_run_volatility"):
        liquidation_gap(market, np.zeros((1, 1)), np.ones((1, 1)))


# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------


def test_default_ladder_is_a_valid_book():
    assert sum(t.share for t in DEFAULT_TIERS) == pytest.approx(1.0)
    assert all(0 < t.distance < 1 for t in DEFAULT_TIERS)
    market = Market("BTC", 1e9, 3e9)
    assert market.tiers == DEFAULT_TIERS and market.premium_kind == "liquidation"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"open_interest": -1.0}, r"open_interest must be > 0, got -1\.0"),
        ({"daily_volume": float("nan")}, "daily_volume must be a finite number"),
        ({"impact": -0.1}, "impact must be >= 0"),
        ({"gap": 1.5}, r"gap must be in \[0, 1\], got 1\.5"),
        ({"premium_kind": "funding"}, "premium_kind must be one of"),
        ({"tiers": [LeverageTier(0.5, 10, 0.01)]}, "tiers: shares must sum to 1, got 0.5"),
        ({"tiers": []}, "at least one LeverageTier"),
        ({"short_tiers": [LeverageTier(0.7, 10, 0.01)]}, "short_tiers: shares must sum to 1"),
        ({"long_run_volatility": 0.0}, "long_run_volatility must be > 0"),
    ],
)
def test_market_validation_names_market_field_and_value(kwargs, message):
    with pytest.raises(SpecificationError, match=message) as info:
        Market(**{"name": "ETH", "open_interest": 1e9, "daily_volume": 3e9, **kwargs})
    assert "'ETH'" in str(info.value) or "tiers" in str(info.value)


def test_tier_and_book_validation():
    with pytest.raises(SpecificationError, match=r"maintenance_margin must be in \[0, 1/leverage\) = \[0, 0\.05\)"):
        LeverageTier(0.5, 20, 0.06)
    with pytest.raises(SpecificationError, match="leverage must be finite and >= 1, got 0.5"):
        LeverageTier(0.5, 0.5, 0.0)
    with pytest.raises(SpecificationError, match=r"share must be in \(0, 1\]"):
        LeverageTier(1.2, 5, 0.01)
    with pytest.raises(SpecificationError, match="unique"):
        VenueBook([Market("A", 1, 1), Market("A", 2, 2)])
    with pytest.raises(SpecificationError, match=r"markets\[1\] must be a Market"):
        VenueBook([Market("A", 1, 1), "B"])


# ---------------------------------------------------------------------------------------------
# build_scenarios
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_markets() -> ReturnPaths:
    rng = np.random.default_rng(1)
    returns = rng.standard_t(3, size=(700, 12, 3)) * 0.03
    volatility = rng.uniform(0.01, 0.08, size=(700, 12, 3))
    return ReturnPaths(returns, volatility, ("BTC", "ETH", "SOL"), period=pd.Timedelta("1D"),
                       long_run_volatility=np.array([0.03, 0.04, 0.05]), metadata={"seed": 1})


def test_build_scenarios_sums_markets_in_venue_order(three_markets):
    venue = VenueBook([Market("SOL", 2e8, 5e8, premium_kind="volume"), Market("BTC", 1e9, 3e9)])
    scenarios = build_scenarios(three_markets, venue, loss_model=liquidation_gap)
    assert isinstance(scenarios, ScenarioSet)
    assert scenarios.markets == ("SOL", "BTC") and scenarios.losses.shape == (700, 12)
    sol = liquidation_gap(venue.markets[0], three_markets.returns[:, :, 2], three_markets.volatility[:, :, 2],
                          long_run_volatility=0.05)
    btc = liquidation_gap(venue.markets[1], three_markets.returns[:, :, 0], three_markets.volatility[:, :, 0])
    np.testing.assert_allclose(scenarios.losses, sol[0] + btc[0], rtol=1e-12)
    np.testing.assert_allclose(scenarios.premium_base[:, :, 0], sol[1], rtol=1e-12)
    np.testing.assert_allclose(scenarios.premium_base[:, :, 1], btc[1], rtol=1e-12)
    assert scenarios.metadata["seed"] == 1 and scenarios.metadata["loss_model"] == "liquidation_gap"
    assert scenarios.metadata["venue"]["markets"][1]["tiers"][0]["leverage"] == 50.0
    json.dumps(scenarios.metadata)
    for threads in (1, 3):  # 100 chunks of 7 rows worked on by one or three threads: same numbers
        chunked = build_scenarios(three_markets, venue, chunk_size=7, threads=threads, loss_model=liquidation_gap)
        assert np.array_equal(chunked.losses, scenarios.losses)
        assert np.array_equal(chunked.premium_base, scenarios.premium_base)
        stateful = build_scenarios(three_markets, venue, chunk_size=7, threads=threads)  # the default
        assert np.array_equal(stateful.losses, build_scenarios(three_markets, venue).losses)


def test_build_scenarios_with_a_plugged_in_loss_model(three_markets):
    def flat_fee(market, returns, volatility, *, period_days, long_run_volatility):
        return np.full(returns.shape, 10.0), np.abs(returns) * market.daily_volume

    venue = VenueBook([Market("ETH", 5e8, 1e9), Market("BTC", 1e9, 3e9)])
    scenarios = build_scenarios(three_markets, venue, loss_model=flat_fee)
    assert np.all(scenarios.losses == 20.0) and scenarios.metadata["loss_model"] == "flat_fee"

    def negative(market, returns, volatility, *, period_days, long_run_volatility):
        return -np.ones(returns.shape), np.ones(returns.shape)

    with pytest.raises(ScenarioError, match=r"loss model 'negative'.*losses_by_market must be finite and >= 0; "
                                            r"losses_by_market\[0, 0, 0\] = -1\.0 \(market 'ETH'\)"):
        build_scenarios(three_markets, venue, loss_model=negative)

    def wrong_shape(market, returns, volatility, *, period_days, long_run_volatility):
        return np.ones(3), np.ones(3)

    with pytest.raises(ScenarioError, match="'wrong_shape' returned loss of shape \\(3,\\) for market 'ETH'"):
        build_scenarios(three_markets, venue, loss_model=wrong_shape)


def test_build_scenarios_fills_the_per_market_fields(three_markets):
    venue = VenueBook([Market("SOL", 2e8, 5e8, premium_kind="volume"), Market("BTC", 1e9, 3e9)])
    scenarios = build_scenarios(three_markets, venue, chunk_size=100, loss_model=liquidation_gap)
    assert scenarios.per_market_fields == ("losses_by_market", "liquidated", "winners")
    # losses are the pooled per-market losses (summed in market order: exactly equal)
    np.testing.assert_array_equal(scenarios.losses, scenarios.losses_by_market.sum(axis=-1))
    assert scenarios.losses_by_market[:, :, 1].sum() > 0
    for j, (market, column) in enumerate(((venue.markets[0], 2), (venue.markets[1], 0))):
        alone = liquidation_gap(market, three_markets.returns[:, :, column], three_markets.volatility[:, :, column],
                                long_run_volatility=float(three_markets.long_run_volatility[column]))
        for name in ("liquidated", "winners"):
            np.testing.assert_array_equal(getattr(scenarios, name)[:, :, j], getattr(alone, name))
        np.testing.assert_array_equal(scenarios.losses_by_market[:, :, j], alone.loss)
        # winners: OI |R|
        simple = np.expm1(three_markets.returns[:, :, column])
        np.testing.assert_allclose(scenarios.winners[:, :, j], market.open_interest * np.abs(simple), rtol=1e-12)
    threaded = build_scenarios(three_markets, venue, chunk_size=7, threads=3, loss_model=liquidation_gap)
    for name in ("losses", "premium_base", "losses_by_market", "liquidated", "winners"):
        assert np.array_equal(getattr(threaded, name), getattr(scenarios, name)), name


def test_build_scenarios_takes_a_pair_or_venue_losses(three_markets):
    from fundguard.models.venue.losses import VenueLosses

    venue = VenueBook([Market("ETH", 5e8, 1e9), Market("BTC", 1e9, 3e9)])

    def pair(market, returns, volatility, *, period_days, long_run_volatility):
        return np.full(returns.shape, market.open_interest * 1e-9), np.ones(returns.shape)

    old = build_scenarios(three_markets, venue, loss_model=pair)
    assert old.per_market_fields == ("losses_by_market",)
    np.testing.assert_array_equal(old.losses_by_market[0, 0], [0.5, 1.0])
    np.testing.assert_array_equal(old.losses, np.full((700, 12), 1.5))

    def liquidating(market, returns, volatility, *, period_days, long_run_volatility):
        shape = returns.shape
        return VenueLosses(np.zeros(shape), np.ones(shape), liquidated=np.full(shape, market.open_interest))

    partial = build_scenarios(three_markets, venue, loss_model=liquidating, chunk_size=64)
    assert partial.per_market_fields == ("losses_by_market", "liquidated") and partial.winners is None
    np.testing.assert_array_equal(partial.liquidated[:, :, 1], np.full((700, 12), 1e9))

    def only_btc_knows(market, returns, volatility, *, period_days, long_run_volatility):
        shape = returns.shape
        winners = np.ones(shape) if market.name == "BTC" else None
        return VenueLosses(np.zeros(shape), np.ones(shape), winners=winners)

    with pytest.raises(ScenarioError, match="loss model 'only_btc_knows' gave winners for some markets or chunks but "
                                            "None for market 'ETH' in 1 of 1 chunks"):
        build_scenarios(three_markets, venue, loss_model=only_btc_knows)

    def first_chunk_only(market, returns, volatility, *, period_days, long_run_volatility):
        shape = returns.shape
        first = np.array_equal(returns, three_markets.returns[:100, :, 0 if market.name == "BTC" else 1])
        return VenueLosses(np.zeros(shape), np.ones(shape), liquidated=np.ones(shape) if first else None)

    with pytest.raises(ScenarioError, match="gave liquidated for some markets or chunks but None for market 'ETH' in "
                                            "6 of 7 chunks"):
        build_scenarios(three_markets, venue, loss_model=first_chunk_only, chunk_size=100)

    def no_base(market, returns, volatility, *, period_days, long_run_volatility):
        return VenueLosses(np.zeros(returns.shape), None)

    with pytest.raises(ScenarioError, match=r"loss model 'no_base' returned no premium_base \(None\) for market 'ETH'"):
        build_scenarios(three_markets, venue, loss_model=no_base)

    def short_winners(market, returns, volatility, *, period_days, long_run_volatility):
        shape = returns.shape
        return VenueLosses(np.zeros(shape), np.ones(shape), winners=np.ones((shape[0], 3)))

    with pytest.raises(ScenarioError, match=r"loss model 'short_winners' returned winners of shape \(7, 3\) for "
                                            r"market 'ETH', expected \(7, 12\)"):
        build_scenarios(three_markets, venue, loss_model=short_winners, chunk_size=7)

    def negative_liquidated(market, returns, volatility, *, period_days, long_run_volatility):
        shape = returns.shape
        return VenueLosses(np.zeros(shape), np.ones(shape), liquidated=np.where(market.name == "BTC", -1.0,
                                                                                np.ones(shape)))

    with pytest.raises(ScenarioError, match=r"loss model 'negative_liquidated': liquidated must be finite and >= 0; "
                                            r"liquidated\[0, 0, 1\] = -1\.0 \(market 'BTC'\)"):
        build_scenarios(three_markets, venue, loss_model=negative_liquidated)

    def three(market, returns, volatility, *, period_days, long_run_volatility):
        return np.zeros(returns.shape), np.ones(returns.shape), np.ones(returns.shape)

    with pytest.raises(ScenarioError, match=r"loss model 'three' returned a tuple of length 3 for market 'ETH'; "
                                            r"expected \(loss, premium_base\) or a VenueLosses"):
        build_scenarios(three_markets, venue, loss_model=three)

    def array(market, returns, volatility, *, period_days, long_run_volatility):
        return np.zeros(returns.shape)

    with pytest.raises(ScenarioError, match="loss model 'array' returned a ndarray for market 'ETH'"):
        build_scenarios(three_markets, venue, loss_model=array)


def _with_excursions(paths: ReturnPaths) -> ReturnPaths:
    """``paths`` with ``low`` / ``high`` attributes (N, T, J): low = min(r, 0) - 1%, high = max(r, 0) + 2%."""
    low = np.minimum(paths.returns, 0.0) - 0.01
    high = np.maximum(paths.returns, 0.0) + 0.02
    with_them = replace(paths)
    object.__setattr__(with_them, "low", low)  # whether or not ReturnPaths has the fields yet
    object.__setattr__(with_them, "high", high)
    return with_them


def test_low_and_high_reach_loss_models_that_name_them(three_markets):
    venue = VenueBook([Market("ETH", 5e8, 1e9), Market("BTC", 1e9, 3e9)])
    paths = _with_excursions(three_markets)
    seen = []

    def excursion(market, returns, volatility, *, period_days, long_run_volatility, low=None, high=None):
        # the fund pays the low's depth, in currency: checks the slices are this market's rows
        return -low * market.open_interest, high * market.open_interest

    scenarios = build_scenarios(paths, venue, loss_model=excursion, chunk_size=50)
    for j, column in enumerate((1, 0)):
        oi = venue.markets[j].open_interest
        np.testing.assert_array_equal(scenarios.losses_by_market[:, :, j], -paths.low[:, :, column] * oi)
        np.testing.assert_array_equal(scenarios.premium_base[:, :, j], paths.high[:, :, column] * oi)

    def low_only(market, returns, volatility, *, period_days, long_run_volatility, low=None):
        seen.append(low is not None)
        return np.zeros(returns.shape), np.ones(returns.shape)

    build_scenarios(paths, venue, loss_model=low_only)
    assert seen and all(seen)

    def catch_all(market, returns, volatility, **kwargs):
        # a **kwargs model gets no excursions: it may forward them to one that takes none
        assert set(kwargs) == {"period_days", "long_run_volatility"}
        return liquidation_gap(market, returns, volatility, **kwargs)

    np.testing.assert_array_equal(build_scenarios(paths, venue, loss_model=catch_all).losses,
                                  build_scenarios(three_markets, venue, loss_model=liquidation_gap).losses)

    def needs_them(market, returns, volatility, *, period_days, long_run_volatility, low=None, high=None):
        assert low is None and high is None  # paths without excursions: the model runs without them
        return np.zeros(returns.shape), np.ones(returns.shape)

    build_scenarios(three_markets, venue, loss_model=needs_them)


def test_build_scenarios_errors(three_markets):
    with pytest.raises(ScenarioError, match="venue market 'DOGE' has no return paths"):
        build_scenarios(three_markets, VenueBook([Market("DOGE", 1e8, 1e8)]))
    bare = ReturnPaths(three_markets.returns, three_markets.volatility, three_markets.markets)
    with pytest.raises(ScenarioError, match="'BTC': premium_kind='volume' needs long_run_volatility"):
        build_scenarios(bare, VenueBook([Market("BTC", 1e9, 3e9, premium_kind="volume")]))
    assert build_scenarios(bare, VenueBook([Market("BTC", 1e9, 3e9, premium_kind="volume",
                                                   long_run_volatility=0.03)])).premium_base.min() > 0
    with pytest.raises(ScenarioError, match="VenueBook"):
        build_scenarios(three_markets, [Market("BTC", 1e9, 3e9)])


def test_stress_flags_survive_into_the_scenario_set(three_markets):
    returns = np.zeros((2, 12, 3))
    returns[:, 0] = np.log([[0.6], [1.3]])  # a 40% crash, a 30% squeeze, then still prices
    stress = ReturnPaths(returns, np.full((2, 12, 3), 0.05), three_markets.markets, is_stress=np.ones(2, bool),
                         labels=("crash", "squeeze"))
    venue = VenueBook([Market("BTC", 1e9, 3e9)])
    random_set = build_scenarios(three_markets, venue, loss_model=liquidation_gap)
    stress_set = build_scenarios(stress, venue, loss_model=liquidation_gap)
    assert stress_set.n_stress == 2 and stress_set.metadata["labels"] == ["crash", "squeeze"]
    assert np.all(stress_set.losses[:, 0] > 0) and np.all(stress_set.losses[:, 1:] == 0)
    joined = ScenarioSet.concat([random_set, stress_set])
    assert joined.n_stress == 2 and joined.random_part().n_scenarios == 700


# ---------------------------------------------------------------------------------------------
# Real data: the 2020-03-12 crash
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def btc_eth_models(shared_data):
    prices = load_prices({"BTC": shared_data / "binance_BTCUSDT_daily.csv", "ETH": shared_data / "binance_ETHUSDT_daily.csv"})
    returns = log_returns(prices)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BTC's GJR fit sits at persistence 1
        return {m: fit_volatility(returns[m], VolSpec("GJR", "t")) for m in returns}


def test_replay_of_2020_03_12_costs_the_fund(btc_eth_models):
    venue = VenueBook([Market("BTC", 1e9, 3e9), Market("ETH", 1e9, 3e9)])
    as_it_was = stress_paths(btc_eth_models, 30, dates=["2020-03-12"], scale_to_today=False)
    assert as_it_was.returns[0, 0, 0] == pytest.approx(-0.5026, abs=1e-4)  # BTC's log return that day
    scenarios = build_scenarios(as_it_was, venue)
    assert scenarios.losses[0, 0] > 0 and scenarios.is_stress.all()
    scaled = build_scenarios(stress_paths(btc_eth_models, 30, dates=["2020-03-12"]), venue)
    assert scaled.losses[0, 0] > 0
    # a 1bn BTC book trading 3bn a day loses between the shares of open interest reported that
    # day: BitMEX 0.65% (7.8m of 1.2bn, net of its liquidation income) and Binance 4.2% (6.6m of
    # 158m); not 100k, not 1bn
    btc_only = build_scenarios(as_it_was, VenueBook([Market("BTC", 1e9, 3e9)]))
    assert 0.0065e9 < btc_only.losses[0, 0] < 0.042e9


def test_loss_models_are_chosen_by_name():
    from fundguard.models import DEFAULT_LOSS_MODEL, LOSS_MODELS, SpecificationError, StatefulBook, loss_model

    assert DEFAULT_LOSS_MODEL == "stateful_book" and isinstance(loss_model("stateful_book"), StatefulBook)

    assert loss_model("liquidation_gap") is liquidation_gap
    assert LOSS_MODELS["liquidation_gap"] is liquidation_gap
    with pytest.raises(SpecificationError, match=r"unknown loss model 'stateful'.*liquidation_gap"):
        loss_model("stateful")
    paths = paths_from(np.full((4, 3, 1), -0.05), 0.03)
    venue = VenueBook([Market("A", 1e9, 3e9)])
    by_name = build_scenarios(paths, venue, loss_model="liquidation_gap")
    by_function = build_scenarios(paths, venue, loss_model=liquidation_gap)
    np.testing.assert_array_equal(by_name.losses, by_function.losses)
    assert by_name.metadata["loss_model"] == "liquidation_gap"
