"""Tests of fundguard.models.data: loading, validation, frequency detection, log returns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fundguard.models import (
    DataError,
    DateParseError,
    DuplicateTimestampsError,
    GapError,
    InsufficientHistoryError,
    InvalidPriceError,
    MixedFrequencyError,
    UnsortedTimestampsError,
    detect_frequency,
    load_prices,
    log_returns,
)


def _wide(n: int = 300, freq: str = "D", markets=("BTC", "ETH"), seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    times = pd.date_range("2021-01-01", periods=n, freq=freq, tz="UTC")
    data = {m: 100.0 * np.exp(np.cumsum(rng.normal(0, 0.02, n))) for m in markets}
    return pd.DataFrame({"date": times.strftime("%Y-%m-%dT%H:%M:%SZ"), **data})


def test_wide_csv_round_trip_and_frequency(tmp_path):
    frame = _wide()
    path = tmp_path / "prices.csv"
    frame.to_csv(path, index=False)
    prices = load_prices(path)
    assert list(prices.columns) == ["BTC", "ETH"]
    assert str(prices.index.tz) == "UTC"
    assert prices.attrs["frequency"] == "daily"
    assert prices.attrs["periods_per_year"] == pytest.approx(365.25)
    np.testing.assert_allclose(prices["ETH"].to_numpy(), frame["ETH"].to_numpy())


def test_log_returns_values_and_attrs():
    prices = load_prices(_wide(n=260))
    returns = log_returns(prices)
    assert len(returns) == len(prices) - 1
    expected = np.log(prices["BTC"].to_numpy()[1:] / prices["BTC"].to_numpy()[:-1])
    np.testing.assert_allclose(returns["BTC"].to_numpy(), expected, rtol=1e-12, atol=1e-15)
    assert returns.attrs["frequency"] == "daily"


def test_hourly_detected_and_small_gaps_tolerated():
    frame = _wide(n=400, freq="h")
    frame = frame.drop(index=[100, 101, 102])  # a 4-hour hole, like an exchange maintenance window
    prices = load_prices(frame)
    assert prices.attrs["frequency"] == "hourly"
    assert prices.attrs["periods_per_year"] == pytest.approx(8766.0)


def test_long_layout_pivots():
    wide = _wide(n=260)
    long = wide.melt(id_vars="date", var_name="market", value_name="price")
    prices = load_prices(long)
    assert sorted(prices.columns) == ["BTC", "ETH"]
    np.testing.assert_allclose(prices["BTC"].to_numpy(), wide["BTC"].to_numpy())


def test_ohlc_file_takes_close_named_after_file(tmp_path):
    frame = _wide(n=260, markets=("close",))
    frame["open"] = frame["close"] * 1.01
    frame["volume"] = 5.0
    path = tmp_path / "binance_XYZ_daily.csv"
    frame.to_csv(path, index=False)
    prices = load_prices(path)
    assert list(prices.columns) == ["binance_XYZ_daily"]
    assert list(load_prices(path, name="XYZ").columns) == ["XYZ"]


def test_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "p.parquet"
    _wide(n=260).to_parquet(path)
    assert list(load_prices(path).columns) == ["BTC", "ETH"]


def test_mapping_of_sources_aligns_on_common_dates():
    a = _wide(n=300, markets=("close",), seed=1)
    b = _wide(n=300, markets=("close",), seed=2).iloc[20:]
    prices = load_prices({"A": a, "B": b})
    assert list(prices.columns) == ["A", "B"]
    assert len(prices) == 280


def test_late_listing_keeps_leading_nan_only():
    frame = _wide(n=400)
    frame.loc[:49, "ETH"] = np.nan
    prices = load_prices(frame)
    assert prices["ETH"].isna().sum() == 50
    returns = log_returns(prices)
    assert returns["ETH"].isna().sum() == 50 and returns["BTC"].notna().all()


@pytest.mark.parametrize(
    ("mutate", "error", "fragment"),
    [
        (lambda f: f.assign(date=f["date"].where(f.index != 7, "not a date")), DateParseError, "not a date"),
        (lambda f: f.iloc[[*range(10), 11, 10, *range(12, len(f))]], UnsortedTimestampsError, "sort=True"),
        (lambda f: pd.concat([f.iloc[:10], f.iloc[9:]]), DuplicateTimestampsError, "duplicate"),
        (lambda f: f.assign(BTC=f["BTC"].where(f.index != 30, -1.0)), InvalidPriceError, "'BTC'"),
        (lambda f: f.assign(ETH=f["ETH"].where(f.index != 30, 0.0)), InvalidPriceError, "'ETH'"),
        (lambda f: f.assign(ETH=f["ETH"].where(f.index != 30, np.inf)), InvalidPriceError, "inf"),
        (lambda f: f.assign(ETH=f["ETH"].where(f.index != 30, np.nan)), InvalidPriceError, "missing"),
        (lambda f: f.assign(ETH=f["ETH"].astype(object).where(f.index != 30, "n/a")), InvalidPriceError, "n/a"),
        (lambda f: f.drop(index=range(50, 60)), GapError, "gap"),
        (lambda f: f.iloc[:200], InsufficientHistoryError, "199 returns"),
    ],
    ids=["date", "unsorted", "duplicate", "negative", "zero", "inf", "missing", "text", "gap", "short"],
)
def test_validation_errors_name_the_problem(mutate, error, fragment):
    frame = mutate(_wide(n=300)).reset_index(drop=True)
    with pytest.raises(error, match=fragment) as info:
        load_prices(frame)
    assert isinstance(info.value, ValueError)


def test_error_names_market_and_date():
    frame = _wide(n=300)
    frame.loc[42, "ETH"] = -5.0
    with pytest.raises(InvalidPriceError) as info:
        load_prices(frame)
    message = str(info.value)
    assert "'ETH'" in message and "2021-02-12" in message


def test_sort_option_repairs_order():
    frame = _wide(n=300).sample(frac=1.0, random_state=3)
    prices = load_prices(frame, sort=True)
    assert prices.index.is_monotonic_increasing


def test_mixed_frequency_detected():
    daily = pd.date_range("2020-01-01", periods=300, freq="D", tz="UTC")
    hourly = pd.date_range(daily[-1] + pd.Timedelta(hours=1), periods=30, freq="h")
    with pytest.raises(MixedFrequencyError, match="mixed"):
        detect_frequency(daily.append(hourly))


def test_gap_tolerance_is_a_parameter():
    frame = _wide(n=300).drop(index=range(50, 56))  # a 7-day hole
    with pytest.raises(GapError):
        load_prices(frame)
    assert len(load_prices(frame, max_gap=10)) == 294


def test_missing_file_and_columns(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_prices(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="price columns"):
        load_prices(_wide(), columns=["SOL"])
    with pytest.raises(DataError, match="time_column"):
        load_prices(_wide().rename(columns={"date": "when"}))


def test_real_daily_and_hourly_files(shared_data):
    daily = load_prices(shared_data / "binance_BTCUSDT_daily.csv", name="BTC")
    assert daily.attrs["frequency"] == "daily" and len(daily) == 3059
    hourly = load_prices(shared_data / "binance_BTCUSDT_hourly.csv", name="BTC")
    assert hourly.attrs["frequency"] == "hourly"
    crash = log_returns(daily)["BTC"].idxmin()
    assert crash.strftime("%Y-%m-%d") == "2020-03-12"
