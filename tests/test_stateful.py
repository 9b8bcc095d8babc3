"""The stateful book (models/venue/stateful.py) against closed forms and independent formulations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from fundguard.models import LeverageTier, Market, StatefulBook, VenueBook, replay
from fundguard.models.errors import DataError, SpecificationError
from fundguard.models.venue.stateful import bridge_extremes

ONE_TIER = (LeverageTier(share=1.0, leverage=10.0, maintenance_margin=0.02),)  # D = 8%
SLOW = 1e9  # a half-life in days that makes turnover negligible


def _market(**kw):
    base = dict(name="X", open_interest=1e9, daily_volume=3e9, tiers=ONE_TIER, impact=0.0)
    base.update(kw)
    return Market(**base)


def _book(**kw):
    base = dict(distance_scale=2.0, distance_spread=0.5, overshoot=0.0, half_life_days=SLOW, fee_cap=0.01,
                range_volatility=False, volume_response=False)
    base.update(kw)
    return StatefulBook(**base)


def _one_day(book, market, low, *, r=None, vol=0.03):
    r = low / 2 if r is None else r
    return book.run(market, np.array([[r]]), np.array([[vol]]), low=np.array([[low]]), high=np.array([[0.0]]))


def _lognormal_cdf(d, book, tier):
    return stats.norm.cdf((np.log(d) - math.log(book.distance_scale * tier.distance)) / book.distance_spread)


@pytest.mark.parametrize("low", [-0.02, -0.08, -0.2, -0.5])
def test_one_day_liquidates_the_lognormal_mass_the_low_reaches(low):
    book, market = _book(), _market()
    out = _one_day(book, market, low)
    simple = -math.expm1(low)  # a long at simple distance d is gone when the price falls by d
    expected = market.open_interest * _lognormal_cdf(simple, book, ONE_TIER[0])
    assert out["liquidated"][0, 0] == pytest.approx(expected, rel=2e-4, abs=1e-3 * market.open_interest * 1e-3)


def test_bankrupt_loss_and_fee_base_match_a_quadrature_of_each_tiers_shortfall():
    """Each unit overshoots kappa sigma_d: the 10x tier (m = 2%) is bankrupt by 1% a unit, the 5x
    tier (m = 5%) keeps 2% of margin and pays the 1% fee cap."""
    kappa, low, vol = 1.0, -0.25, 0.03
    tiers = (LeverageTier(share=0.4, leverage=10.0, maintenance_margin=0.02),
             LeverageTier(share=0.6, leverage=5.0, maintenance_margin=0.05))
    book, market = _book(overshoot=kappa), _market(tiers=tiers)
    out = _one_day(book, market, low, vol=vol)
    depth = -low

    def mass(tier):  # quadrature of the tier's lognormal density in u up to the day's depth
        def density(u):
            d = -math.expm1(-u)
            return stats.lognorm.pdf(d, book.distance_spread, scale=book.distance_scale * tier.distance) * math.exp(-u)
        return integrate.quad(density, 0.0, depth, limit=200)[0]

    overshoot = kappa * vol
    expected_loss = market.open_interest * tiers[0].share * mass(tiers[0]) * (overshoot - tiers[0].maintenance_margin)
    expected_fee_base = market.open_interest * tiers[1].share * mass(tiers[1])
    assert out["loss"][0, 0] == pytest.approx(expected_loss, rel=1e-3)
    assert out["premium_base"][0, 0] == pytest.approx(expected_fee_base, rel=1e-3)
    assert out["liquidated"][0, 0] == pytest.approx(
        market.open_interest * sum(t.share * mass(t) for t in tiers), rel=1e-3)


def test_a_liquidated_position_is_not_liquidated_again_when_the_price_returns():
    """The stationary model re-liquidates the same move every period; the book remembers."""
    book, market = _book(), _market()
    r = np.array([[-0.1, 0.1, -0.1, 0.1]])
    lows = np.array([[-0.1, 0.0, -0.1, 0.0]])
    out = book.run(market, r, np.full(r.shape, 0.03), low=lows, high=np.maximum(r, 0.0))
    first = out["liquidated"][0, 0]
    assert first > 0.05 * market.open_interest
    # the second fall reaches the same price: nothing new to liquidate on the long side
    long_again = out["liquidated"][0, 2]
    assert long_again < 1e-9 * market.open_interest + out["liquidated"][0, 1]  # only shorts of the rise, if any
    assert out["open_interest_long"][0, 3] == pytest.approx(market.open_interest - first, rel=1e-9)


def test_open_interest_recovers_with_the_half_life():
    half_life = 5.0
    book, market = _book(half_life_days=half_life), _market()
    horizon = 16
    r = np.zeros((1, horizon))
    r[0, 0] = -0.3
    lows = r.copy()
    out = book.run(market, r, np.full(r.shape, 0.03), low=lows, high=np.zeros_like(r))
    oi = out["open_interest_long"][0]
    gap_after_crash = market.open_interest - oi[1]
    assert gap_after_crash > 0.2 * market.open_interest
    # no price moves after the crash (the price stays at its low): the deficit halves every 5 days
    expected = gap_after_crash * 0.5 ** ((np.arange(1, horizon) - 1) / half_life)
    assert np.allclose(market.open_interest - oi[1:], expected, rtol=1e-9)


def test_hourly_extremes_chain_into_the_day_they_make():
    """Calendar time: a slide over 24 hours liquidates what the day's low liquidates at once."""
    book, market = _book(half_life_days=SLOW), _market()
    daily = _one_day(book, market, -0.24, r=-0.24)
    hours = np.full((1, 24), -0.01)
    hourly = book.run(market, hours, np.full(hours.shape, 0.03 / math.sqrt(24)), period_days=1 / 24,
                      low=hours, high=np.zeros_like(hours))
    assert hourly["liquidated"].sum() == pytest.approx(daily["liquidated"].sum(), rel=1e-4)


def test_winners_are_the_other_side_marked_to_market():
    book, market = _book(), _market()
    out = _one_day(book, market, -0.1, r=-0.05)
    assert out["winners"][0, 0] == pytest.approx(market.open_interest * -math.expm1(-0.05), rel=1e-12)


def test_fees_never_exceed_what_the_margin_left_can_pay_and_losses_are_non_negative():
    book = _book(overshoot=0.2)
    market = _market(impact=1.0, tiers=(LeverageTier(0.5, 50.0, 0.005), LeverageTier(0.5, 5.0, 0.025)))
    rng = np.random.default_rng(3)
    r = rng.standard_normal((200, 20)) * 0.05
    low, high = bridge_extremes(r, np.full(r.shape, 0.05))
    out = book.run(market, r, np.full(r.shape, 0.05), low=low, high=high)
    assert (out["loss"] >= 0).all() and (out["premium_base"] >= 0).all()
    assert (out["premium_base"] <= out["liquidated"] * (1 + 1e-9)).all()


def test_bridge_median_extremes_solve_the_reflection_formula():
    r = np.array([-0.05, 0.0, 0.03])
    sigma = np.array([0.02, 0.04, 0.01])
    low, high = bridge_extremes(r, sigma)
    assert np.allclose(np.exp(-2 * low * (low - r) / sigma**2), 0.5)
    assert np.allclose(np.exp(-2 * (high - r) * high / sigma**2), 0.5)  # P(max > m) for m >= max(0, r)


@pytest.mark.parametrize("field,value", [("distance_scale", 0.0), ("distance_spread", -1.0), ("overshoot", -0.5),
                                         ("half_life_days", float("nan")), ("fee_cap", 1.0),
                                         ("fresh_scale", "x")])
def test_bad_parameters_name_the_field(field, value):
    with pytest.raises(SpecificationError, match=field):
        StatefulBook(**{field: value})


def _ohlc(closes, lows, highs):
    index = pd.date_range("2024-01-01", periods=len(closes), freq="D", tz="UTC")
    closes = np.asarray(closes, dtype=float)
    opens = np.concatenate([[closes[0]], closes[:-1]])
    return pd.DataFrame({"open": opens, "high": highs, "low": lows, "close": closes}, index=index)


def test_replay_uses_the_intraday_low_and_returns_one_row_per_period_and_market():
    frame = _ohlc([100, 100, 100], [100, 80, 100], [100, 100, 100])
    venue = VenueBook([_market(name="BTC")])
    book = _book()
    table = replay(venue, {"BTC": frame}, loss_model=book)
    assert list(table.columns[:6]) == ["liquidated", "fund_loss", "fee_income", "premium_base", "winners",
                                      "open_interest"]
    assert len(table) == 2
    day = table.xs("BTC", level="market").iloc[0]
    expected = 1e9 * _lognormal_cdf(0.2, book, ONE_TIER[0])  # the close is flat, the low -20%
    assert day["liquidated"] == pytest.approx(expected, rel=2e-4)
    closes_only = replay(venue, frame[["close"]].rename(columns={"close": "BTC"}), loss_model=book)
    assert closes_only["liquidated"].iloc[0] < 1e-3 * expected  # closes alone never see the wick


def _hourly_bars(start, hours, seed=3):
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.standard_normal(hours) * 0.012))
    close[30:34] *= np.exp(-np.linspace(0.03, 0.12, 4))  # a crash over four hours of the second day
    opens = np.r_[100.0, close[:-1]]
    index = pd.date_range(start, periods=hours, freq="h", tz="UTC")
    return pd.DataFrame({"open": opens, "high": np.maximum(opens, close) * 1.004,
                         "low": np.minimum(opens, close) * 0.996, "close": close}, index=index)


class _ConstantVolatility:
    """A volatility model with one hourly volatility at every timestamp (the replays compared below
    then differ in their clock only, not in an EWMA's start)."""

    def __init__(self, index):
        self.index = index

    def conditional_volatility(self):
        return pd.Series(0.012, index=self.index)


def test_hourly_replay_days_are_utc_days_whatever_the_first_bar_and_the_gaps():
    """The loss model's days (its day bar, its day's metaorder) are blocks of 24 periods: an hourly
    replay that starts at 05:00 or misses hours must count them from UTC midnight, as the same
    data with explicit flat bars does."""
    venue = VenueBook([Market("BTC", 1e9, 3e9)])
    bars = _hourly_bars("2024-01-01 00:00", 24 * 4)
    models = {"BTC": _ConstantVolatility(bars.index)}
    late = bars.iloc[5:]
    flat = bars.copy()
    flat.iloc[:6] = bars["close"].iloc[5]  # flat bars at the price the late replay starts from
    with_flat = replay(venue, {"BTC": flat}, models).xs("BTC", level="market")
    started_late = replay(venue, {"BTC": late}, models).xs("BTC", level="market")
    common = started_late.index
    assert started_late["fund_loss"].sum() > 0
    for column in ("liquidated", "fund_loss", "premium_base"):
        assert np.allclose(started_late[column], with_flat.loc[common, column], rtol=1e-9, atol=1e-6)
    # read from 05:00 as its own day, the crash would be split across two of the model's days
    shifted = replay(venue, {"BTC": late.set_axis(late.index - pd.Timedelta(hours=5))},
                     {"BTC": _ConstantVolatility(late.index - pd.Timedelta(hours=5))})
    assert shifted["fund_loss"].sum() != pytest.approx(started_late["fund_loss"].sum(), rel=1e-3)
    # three missing hours before the crash: the same as three flat bars at the last price
    gap = bars.drop(bars.index[26:29])
    filled = bars.copy()
    last = filled["close"].iloc[25]
    filled.iloc[26:29] = last
    filled.iloc[29, filled.columns.get_loc("open")] = last
    filled.iloc[29, filled.columns.get_loc("low")] = min(filled.iloc[29]["low"], last)
    filled.iloc[29, filled.columns.get_loc("high")] = max(filled.iloc[29]["high"], last)
    got = replay(venue, {"BTC": gap}, models).xs("BTC", level="market")
    want = replay(venue, {"BTC": filled}, models).xs("BTC", level="market")
    assert len(got) == len(gap) - 1
    assert got["fund_loss"].sum() > 0
    for column in ("liquidated", "fund_loss"):
        assert np.allclose(got[column], want.loc[got.index, column], rtol=1e-9, atol=1e-6)


def test_replay_bad_ohlc_names_the_market_and_date():
    frame = _ohlc([100, 100], [100, 120], [100, 130])
    with pytest.raises(DataError, match=r"prices\['BTC'\] at 2024-01-02"):
        replay(VenueBook([_market(name="BTC")]), {"BTC": frame})


def test_parameters_survive_a_run_and_round_trip_through_loss_model_json(tmp_path):
    import json

    from fundguard.models import loss_model

    book = _book(overshoot=0.2)
    _one_day(book, _market(), -0.1)  # fills the table cache
    path = tmp_path / "loss_model.json"
    path.write_text(json.dumps(book.to_dict(fitted_to="a test")))
    assert loss_model(str(path)) == book
    with pytest.raises(SpecificationError, match="unknown parameter"):
        StatefulBook.from_dict({"loss_model": "stateful_book", "parameters": {"leverage": 3}})


@pytest.mark.parametrize("shock", [-0.1, -0.2, -0.3, -0.5])
def test_no_crash_day_makes_the_fund_gain_money(shock):
    """Fees at the cap on the crash day never exceed what the fund pays out that day (issue 15)."""
    book = StatefulBook()
    market = Market("BTC", 2e9, 6e9)  # the default ladder, the shipped parameters
    vol = np.array([[0.03]])
    r = np.array([[math.log1p(shock)]])
    out = book.run(market, r, vol, low=r, high=np.zeros_like(r))
    assert out["loss"][0, 0] > book.fee_cap * out["premium_base"][0, 0]
    assert out["liquidated"][0, 0] < market.open_interest  # a crash day never liquidates more than the book


@pytest.mark.parametrize("range_volatility", [False, True])
def test_the_same_paths_cost_the_same_in_hourly_and_daily_periods(range_volatility):
    """Calendar time: diffusive hourly paths, and the same paths aggregated to days, give the same
    fund need, with the forecast volatility and with the day bars' realized one (the same bar
    whatever the resolution), in a turbulent month (5% daily against a 3% long-run level, so the
    overshoot is at work)."""
    rng = np.random.default_rng(11)
    n, days = 3000, 10
    sigma_h = 0.05 / math.sqrt(24)
    r = rng.standard_normal((n, 24 * days)) * sigma_h
    low_h, high_h = bridge_extremes(r, np.full(r.shape, sigma_h))
    book = StatefulBook(range_volatility=range_volatility)
    market = Market("BTC", 1e9, 3e9, long_run_volatility=None)
    hourly = book.run(market, r, np.full(r.shape, sigma_h), period_days=1 / 24, low=low_h, high=high_h,
                      long_run_volatility=0.03 / math.sqrt(24))
    shape = (n, days, 24)
    level = np.cumsum(r.reshape(shape), axis=2) - r.reshape(shape)
    low_d = (level + low_h.reshape(shape)).min(axis=2)
    high_d = (level + high_h.reshape(shape)).max(axis=2)
    r_d = r.reshape(shape).sum(axis=2)
    daily = book.run(market, r_d, np.full(r_d.shape, 0.05), low=np.minimum(low_d, np.minimum(r_d, 0)),
                     high=np.maximum(high_d, np.maximum(r_d, 0)), long_run_volatility=0.03)

    def need(out, alpha):
        return np.quantile(np.cumsum(out["loss"], axis=1).max(axis=1), 1 - alpha)

    assert need(daily, 0.05) > 0.0
    for alpha in (0.01, 0.05):
        assert need(hourly, alpha) == pytest.approx(need(daily, alpha), rel=0.10)
    # liquidations chain exactly apart from turnover and the days' cohorts: within 10%
    assert hourly["liquidated"].sum() == pytest.approx(daily["liquidated"].sum(), rel=0.10)


def test_realized_volatility_reads_a_day_the_same_from_its_hours_and_from_its_bar():
    from fundguard.models.venue.stateful import realized_volatility

    rng = np.random.default_rng(5)
    n, days = 50, 3
    r = rng.standard_t(3, (n, 24 * days)) * 0.01
    low = np.minimum(r, 0.0) - rng.exponential(0.004, r.shape)
    high = np.maximum(r, 0.0) + rng.exponential(0.004, r.shape)
    hourly = realized_volatility(low, high, 1 / 24, r)
    shape = (n, days, 24)
    level = np.cumsum(r.reshape(shape), axis=2) - r.reshape(shape)
    day_low = (level + low.reshape(shape)).min(axis=2)
    day_high = (level + high.reshape(shape)).max(axis=2)
    r_d = r.reshape(shape).sum(axis=2)
    daily = realized_volatility(day_low, day_high, 1.0, r_d)
    assert np.allclose(hourly, np.repeat(daily, 24, axis=1), rtol=1e-12)
    # by hand, the first day of the first path: Garman-Klass on the chained bar
    span, c = day_high[0, 0] - day_low[0, 0], r_d[0, 0]
    assert daily[0, 0] == pytest.approx(math.sqrt(max(0.5 * span**2 - (2 * math.log(2) - 1) * c**2, 0.0)))


def _binance_ohlc(shared_data, symbol):
    frame = pd.read_csv(shared_data / f"binance_{symbol}USDT_daily.csv")
    index = pd.DatetimeIndex(pd.to_datetime(frame["date"], utc=True))
    return frame[["open", "high", "low", "close"]].astype(float).set_axis(index)


@pytest.mark.parametrize("symbol", ["BTC", "ETH"])
def test_real_2025_ordinary_days_liquidate_a_few_percent_and_calm_ones_are_not_bankrupt(shared_data, symbol):
    """Issue 15's anchors on Binance 2025 daily bars: ordinary 4-6% days liquidate under 5% of open
    interest (the stationary gap model: 47%), calm liquidations lose almost nothing per dollar."""
    bars = _binance_ohlc(shared_data, symbol).loc["2024-12-01":"2025-12-31"]
    table = replay(VenueBook([Market(symbol, 1e9, 3e9)]), {symbol: bars}).xs(symbol, level="market").loc["2025"]
    share = table["liquidated"] / table["open_interest"]
    ordinary = (table["return"].abs() > 0.04) & (table["return"].abs() < 0.06)
    assert ordinary.sum() >= 10
    assert share[ordinary].median() < 0.05
    calm = ordinary & (table["volatility"] < table["volatility"].median())
    assert (table["fund_loss"][calm].sum() / table["liquidated"][calm].sum()) < 0.005
    gap = replay(VenueBook([Market(symbol, 1e9, 3e9)]), {symbol: bars}, loss_model="liquidation_gap")
    gap_share = gap.xs(symbol, level="market").loc["2025"]["liquidated"] / 1e9
    assert gap_share[ordinary].median() > 5 * share[ordinary].median()


def test_realized_volatility_is_parkinson_per_day_whatever_the_period():
    from fundguard.models.venue.stateful import realized_volatility

    low = np.array([[-0.02, -0.01, 0.0]])
    high = np.array([[0.01, 0.02, 0.03]])
    daily = realized_volatility(low, high, 1.0)
    assert np.allclose(daily, (high - low) / (2 * math.sqrt(math.log(2))))
    # 48 hours of equal ranges: each day's realized variance is 24 hourly Parkinson variances
    rng = np.full((1, 48), 0.004)
    hourly = realized_volatility(-rng / 2, rng / 2, 1 / 24)
    assert np.allclose(hourly, math.sqrt(24 * 0.004**2 / (4 * math.log(2))))
    # a partial last day (12 hours) is scaled up to a whole one
    part = realized_volatility(-rng[:, :36] / 2, rng[:, :36] / 2, 1 / 24)
    assert np.allclose(part, hourly[:, :36])


def test_garman_klass_takes_the_drift_out_of_a_steady_slide():
    from fundguard.models.venue.stateful import realized_volatility

    # a day that slides 24% in a straight line: its range is all drift
    slide = realized_volatility(np.array([[-0.24]]), np.array([[0.0]]), 1.0, returns=np.array([[-0.24]]))
    parkinson = realized_volatility(np.array([[-0.24]]), np.array([[0.0]]), 1.0)
    expected = math.sqrt(0.5 * 0.24**2 - (2 * math.log(2) - 1) * 0.24**2)
    assert slide[0, 0] == pytest.approx(expected, rel=1e-12) and slide[0, 0] < 0.6 * parkinson[0, 0]
