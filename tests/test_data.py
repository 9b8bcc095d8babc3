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
    load_ohlc,
    load_prices,
    log_returns,
    ohlc_paths,
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


# -- timestamps as numbers (issue 13) ---------------------------------------------------------

_DAYS = pd.date_range("2021-01-01", periods=300, freq="D", tz="UTC")
_HOURS = pd.date_range("2024-12-31 12:00", periods=300, freq="h", tz="UTC")


def _stamped(stamps, n: int = 300) -> pd.DataFrame:
    return pd.DataFrame({"timestamp": stamps, "close": 100.0 * np.exp(0.01 * np.sin(np.arange(n)))})


def _encodings(times: pd.DatetimeIndex) -> dict[str, np.ndarray]:
    ns = times.as_unit("ns").asi8
    return {
        "epoch seconds": ns // 10**9,
        "epoch milliseconds": ns // 10**6,  # Binance's kline exports
        "epoch microseconds": ns // 10**3,  # Binance spot exports since 2025
        "epoch nanoseconds": ns,
        "Excel serial days": ns / 86_400e9 + 25_569,  # day 25,569 is 1970-01-01 (1899-12-30 + 300 y overflows ns)
    }


@pytest.mark.parametrize("unit", list(_encodings(_DAYS)))
def test_numeric_timestamps_read_in_the_unit_their_magnitude_gives(tmp_path, unit):
    path = tmp_path / "stamped.csv"
    _stamped(_encodings(_DAYS)[unit]).to_csv(path, index=False)
    prices = load_prices(path)
    pd.testing.assert_index_equal(prices.index, pd.DatetimeIndex(_DAYS.as_unit("ns"), name="time", freq=None))
    assert prices.attrs["frequency"] == "daily"
    assert prices.attrs["periods_per_year"] == pytest.approx(365.25)


@pytest.mark.parametrize("unit", list(_encodings(_HOURS)))
def test_hourly_numeric_timestamps_keep_their_hours(unit):
    prices = load_prices(_stamped(_encodings(_HOURS)[unit]))
    assert prices.index[0] == pd.Timestamp("2024-12-31 12:00", tz="UTC")
    assert prices.index[-1] == _HOURS[-1]
    assert prices.attrs["frequency"] == "hourly" and prices.attrs["periods_per_year"] == pytest.approx(8766.0)


def test_yyyymmdd_integers_and_fractional_seconds():
    as_ints = load_prices(_stamped(_DAYS.strftime("%Y%m%d").astype(int)))
    assert as_ints.index[0] == _DAYS[0] and as_ints.index[-1] == _DAYS[-1]
    halves = load_prices(_stamped(_DAYS.as_unit("s").asi8 + 0.5))
    assert halves.index[0] == pd.Timestamp("2021-01-01 00:00:00.5", tz="UTC")
    assert halves.attrs["frequency"] == "daily"


def test_numbers_written_as_text_read_as_numbers(tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "text.parquet"
    frame = _stamped((_DAYS.as_unit("ns").asi8 // 10**6).astype(str))
    frame["close"] = frame["close"].map(repr)  # prices as strings, as an API's JSON gives them
    frame.to_parquet(path)
    prices = load_prices(path)
    assert prices.index[0] == _DAYS[0] and prices.attrs["frequency"] == "daily"
    assert prices.dtypes.iloc[0] == np.float64
    np.testing.assert_array_equal(prices.iloc[:, 0].to_numpy(), _stamped(_DAYS)["close"].to_numpy())


def test_parquet_integer_and_date_columns(tmp_path):
    pytest.importorskip("pyarrow")
    for name, stamps in {"int64 ms": _DAYS.as_unit("ms").asi8, "date32": _DAYS.date}.items():
        path = tmp_path / "p.parquet"
        _stamped(stamps).to_parquet(path)
        prices = load_prices(path)
        assert prices.index[0] == _DAYS[0] and prices.index[-1] == _DAYS[-1], name
        assert prices.attrs["frequency"] == "daily", name
    as_objects = load_prices(_stamped(pd.Series(list(_DAYS.as_unit("s").asi8), dtype=object)))  # Python ints
    assert as_objects.index[0] == _DAYS[0] and as_objects.attrs["frequency"] == "daily"


def test_unit_ranges_cover_1990_to_2200_and_do_not_overlap():
    from fundguard.models.data import NUMERIC_TIME_UNITS

    for (_, _, high, _), (_, low, _, _) in zip(NUMERIC_TIME_UNITS, NUMERIC_TIME_UNITS[1:]):
        assert high * 10 < low  # at least a factor of 10 between neighbouring units
    edges = pd.DatetimeIndex(["1990-01-01", "2199-12-31"], tz="UTC")
    for unit, values in _encodings(edges).items():
        prices = load_prices(_stamped(values, n=2), min_returns=0, max_gap=np.inf)
        pd.testing.assert_index_equal(prices.index, pd.DatetimeIndex(edges.as_unit("ns"), name="time", freq=None), obj=unit)


@pytest.mark.parametrize(
    ("stamps", "fragment"),
    [
        (np.arange(18628, 18928), "timestamp 18628 in row 0 of column 'timestamp'"),  # days since 1970
        (np.arange(300) - 5, "accepted numeric unit"),
        (_DAYS.as_unit("s").asi8 - 10**9, "epoch seconds 6.31152e+08..7.25812e+09"),  # 1989
        (np.r_[_DAYS.as_unit("ms").asi8[:7], _DAYS.as_unit("s").asi8[7:]],
         "row 0 (1609459200000) reads as epoch milliseconds, row 7 (1610064000) as epoch seconds"),
        (np.r_[np.nan, _DAYS.as_unit("s").asi8[1:]], "missing timestamp in row 0"),
        (np.r_[20210101, 20211301, _DAYS[2:].strftime("%Y%m%d").astype(int)], "row 1 of column 'timestamp' reads as YYYYMMDD"),
        (np.arange(300) % 2 == 0, "true/false"),
        (pd.date_range("2300-01-01", periods=300, freq="D", unit="s").strftime("%Y-%m-%d"), "2300-01-01"),
    ],
    ids=["epoch days", "negative", "before 1990", "mixed units", "missing", "not a calendar date", "booleans",
         "past 2262"],
)
def test_numeric_timestamps_out_of_range_or_mixed_are_refused(stamps, fragment):
    with pytest.raises(DateParseError) as info:
        load_prices(_stamped(stamps))
    assert fragment in str(info.value)


def test_dates_past_2262_refused_from_parquet_and_index(tmp_path):
    pytest.importorskip("pyarrow")
    far = pd.date_range("2300-01-01", periods=300, freq="D", unit="s")  # beyond datetime64[ns] (2262)
    path = tmp_path / "far.parquet"
    _stamped(far).to_parquet(path)
    with pytest.raises(DateParseError, match=r"far\.parquet: date 2300-01-01.*outside the supported range"):
        load_prices(path)
    with pytest.raises(DateParseError, match="column 'index'"):
        load_prices(_stamped(far).set_index("timestamp"))


# -- unreadable and corrupt files (issue 13) --------------------------------------------------


def _gzipped_csv() -> bytes:
    import gzip

    return gzip.compress(_stamped(_DAYS.strftime("%Y-%m-%d")).to_csv(index=False).encode())


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("bad.parquet", b"PAR1 not really parquet", "is not a readable Parquet file"),
        ("bad.csv.gz", b"\x1f\x8b\x08 not really gzip", "is not a readable CSV file"),
        ("plain.csv.gz", b"date,close\n2021-01-01,3\n", "Not a gzipped file"),
        ("cut.csv.gz", _gzipped_csv()[:200], "is not a readable CSV file"),
        ("empty.csv", b"", "is not a readable CSV file"),
        ("latin1.csv", "date,close\n2021-01-01,3\xe9\n".encode("latin-1"), "is not a readable CSV file"),
    ],
)
def test_corrupt_file_is_one_data_error_naming_it(tmp_path, name, content, fragment):
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_prices(path)
    message = str(info.value)
    assert repr(str(path)) in message and fragment in message
    assert "\n" not in message


def test_unreadable_file_and_directory(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="is a directory, not a file"):
        load_prices(tmp_path)
    path = tmp_path / "locked.csv"
    _stamped(_DAYS.strftime("%Y-%m-%d")).to_csv(path, index=False)

    def refuse(*args, **kwargs):  # root reads through chmod 000, so the refusal is simulated
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(pd, "read_csv", refuse)
    with pytest.raises(DataError, match=r"locked\.csv' cannot be read: Permission denied"):
        load_prices(path)


def test_errors_from_a_file_name_the_file(tmp_path):
    frame = _wide(n=300).drop(index=range(50, 60))
    path = tmp_path / "holes.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(GapError, match=r"^" + str(path).replace(".", r"\.") + ": gap of 11 days"):
        load_prices(path)
    with pytest.raises(GapError, match=r"holes\.csv: gap"):
        load_prices({"BTC": path})


def test_text_price_that_is_no_number_names_file_market_and_date(tmp_path):
    pytest.importorskip("pyarrow")
    frame = _stamped(_DAYS.strftime("%Y-%m-%d"))
    frame["close"] = frame["close"].map(repr).where(frame.index != 5, "1,234.5")
    path = tmp_path / "ETH.parquet"
    frame.to_parquet(path)
    with pytest.raises(InvalidPriceError, match=r"ETH\.parquet: market 'ETH': price '1,234\.5' at 2021-01-06"):
        load_prices(path)


# -- fat-finger prints (issue 13) -------------------------------------------------------------


def _with_move(log_move: float, at: int = 100) -> pd.DataFrame:
    frame = _wide(n=300)
    frame.loc[at:, "BTC"] *= np.exp(log_move)
    return frame


def test_fat_finger_print_warns_naming_market_and_date():
    from fundguard.models import FundguardWarning
    from fundguard.models.data import PriceJumpWarning

    frame = _wide(n=300)
    frame.loc[120, "ETH"] *= 1e6
    with pytest.warns(PriceJumpWarning) as record:
        prices = load_prices(frame)
    assert len(record) == 1 and issubclass(record[0].category, FundguardWarning)
    message = str(record[0].message)
    assert "market 'ETH'" in message and "at 2021-05-01" in message and "2 such move(s)" in message
    assert record[0].filename == __file__  # points at the caller, not at fundguard's insides
    assert prices["ETH"].iloc[120] == frame["ETH"].iloc[120]  # warned, not altered


def test_fat_finger_print_is_an_error_under_strict(tmp_path):
    frame = _wide(n=300)
    frame.loc[120, "ETH"] *= 1e6
    with pytest.raises(InvalidPriceError, match=r"market 'ETH'.* at 2021-05-01.*log return \+13\.\d\d"):
        load_prices(frame, strict=True)
    path = tmp_path / "p.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(InvalidPriceError, match=r"p\.csv: market 'ETH'"):
        load_prices(path, strict=True)
    with pytest.raises(InvalidPriceError, match="market 'B'"):
        load_prices({"A": _wide(n=300, markets=("close",)), "B": frame[["date", "ETH"]].rename(columns={"ETH": "close"})},
                    strict=True)


@pytest.mark.parametrize(
    ("log_move", "warns"),
    [(np.log(4.92), False),  # DOGE +392% on 2021-01-28, the largest real daily move in shared/data
     (np.log(0.01), True),  # LUNA-style -99% day: real, but worth the look
     (np.log(10.0), True),  # a one-place decimal slip
     (-np.log(10.0), True)],
    ids=["DOGE +392%", "LUNA -99%", "x10 slip", "/10 slip"],
)
def test_fat_finger_bound(log_move, warns, recwarn):
    from fundguard.models.data import MAX_LOG_RETURN, PriceJumpWarning

    assert MAX_LOG_RETURN == 2.0
    load_prices(_with_move(log_move))
    assert any(issubclass(w.category, PriceJumpWarning) for w in recwarn) == warns
    recwarn.clear()
    load_prices(_with_move(log_move), max_log_return=np.inf)
    assert not [w for w in recwarn if issubclass(w.category, PriceJumpWarning)]


def test_real_files_load_without_a_jump_warning(shared_data):
    import warnings

    from fundguard.models.data import PriceJumpWarning

    files = [p for p in sorted(shared_data.glob("*.csv")) if not any(
        word in p.name for word in ("funding", "liquidation", "insurance"))]
    assert len(files) >= 10
    with warnings.catch_warnings():
        warnings.simplefilter("error", PriceJumpWarning)
        for path in files:
            load_prices(path, min_returns=0)


def test_gap_tolerance_boundary_is_inclusive():
    # A step of exactly MAX_GAP_PERIODS periods (4 missing rows) is tolerated; one period more is not.
    from fundguard.models.data import MAX_GAP_PERIODS

    frame = _wide(n=60, markets=("BTC",))
    at_tolerance = frame.drop(index=range(30, 30 + MAX_GAP_PERIODS - 1))
    assert len(load_prices(at_tolerance, min_returns=0)) == 60 - (MAX_GAP_PERIODS - 1)
    one_more = frame.drop(index=range(30, 30 + MAX_GAP_PERIODS))
    with pytest.raises(GapError, match=rf"\({MAX_GAP_PERIODS + 1} periods\).*tolerance of {MAX_GAP_PERIODS} "):
        load_prices(one_more, min_returns=0)
    # the same boundary through detect_frequency and an explicit max_gap
    days = pd.DatetimeIndex(["2021-01-01", "2021-01-02", "2021-01-05", "2021-01-06"], tz="UTC")
    assert detect_frequency(days, max_gap=3).label == "daily"
    with pytest.raises(GapError):
        detect_frequency(days, max_gap=2.999)


# ---------------------------------------------------------------------------------------------
# OHLC bars (load_ohlc, ohlc_paths)
# ---------------------------------------------------------------------------------------------


def _bars() -> pd.DataFrame:
    """Three daily bars written by hand: day 2 opens with a gap below day 1's close."""
    return pd.DataFrame({"Date": ["2024-01-01", "2024-01-02", "2024-01-03"], "Open": [100.0, 98.0, 110.0],
                         "High": [105.0, 112.0, 111.0], "Low": [99.0, 97.0, 104.0], "Close": [100.0, 110.0, 105.0],
                         "Volume": [1.0, 2.0, 3.0]})


def test_ohlc_paths_by_hand(tmp_path):
    path = tmp_path / "BTC.csv"
    _bars().to_csv(path, index=False)
    bars = load_ohlc(path, min_returns=2)["BTC"]
    assert list(bars.columns) == ["open", "high", "low", "close"] and str(bars.index.tz) == "UTC"
    assert bars.attrs["frequency"] == "daily" and bars.attrs["market"] == "BTC"
    returns, low, high = ohlc_paths(bars)
    assert list(returns.index.strftime("%Y-%m-%d")) == ["2024-01-02", "2024-01-03"]
    np.testing.assert_allclose(returns["BTC"], [np.log(1.1), np.log(105 / 110)], rtol=1e-14)
    # day 2: the low 97 against the previous close 100 (the open gap to 98 included); day 3: low 104 vs 110
    np.testing.assert_allclose(low["BTC"], [np.log(0.97), np.log(104 / 110)], rtol=1e-14)
    np.testing.assert_allclose(high["BTC"], [np.log(1.12), np.log(111 / 110)], rtol=1e-14)
    assert returns.attrs["period"] == pd.Timedelta("1D")


def test_ohlc_paths_clip_at_the_previous_close_and_align_markets():
    # day 2 opens 2% above the previous close and never trades below the open: the path from the
    # previous close still starts at it, so low is min(ln(L / C_prev), min(0, r)) = 0
    up = pd.DataFrame({"open": [100.0, 102.0, 101.0], "high": [101.0, 104.0, 103.0], "low": [99.0, 102.0, 100.0],
                       "close": [100.0, 103.0, 101.0]},
                      index=pd.date_range("2024-01-01", periods=3, freq="D", tz="UTC"))
    other = up.iloc[:2] * 2.0  # B has no third day
    returns, low, high = ohlc_paths({"A": load_ohlc(up, name="A", min_returns=1)["A"],
                                     "B": load_ohlc(other, name="B", min_returns=1)["B"]})
    assert list(returns.columns) == ["A", "B"] and len(returns) == 1  # on the common dates, the first dropped
    assert returns.index[0] == pd.Timestamp("2024-01-02", tz="UTC")
    assert low["A"].iloc[0] == 0.0 and high["A"].iloc[0] == pytest.approx(np.log(1.04))
    assert low["B"].iloc[0] == 0.0 and returns["B"].iloc[0] == pytest.approx(np.log(1.03))


@pytest.mark.parametrize("column, row, value, error, fragment", [
    ("Low", 1, 120.0, InvalidPriceError, "market 'BTC': low 120 at 2024-01-02 00:00:00+00:00 is above min(open, close) = 98"),
    ("High", 2, 100.0, InvalidPriceError, "market 'BTC': high 100 at 2024-01-03 00:00:00+00:00 is below max(open, close) = 110"),
    ("Open", 2, 0.0, InvalidPriceError, "market 'BTC': open at 2024-01-03 00:00:00+00:00 is 0.0"),
    ("Close", 1, -5.0, InvalidPriceError, "market 'BTC': close at 2024-01-02 00:00:00+00:00 is -5.0"),
    ("Close", 1, np.nan, InvalidPriceError, "close at 2024-01-02 00:00:00+00:00 is missing"),
])
def test_ohlc_validation_names_market_column_and_date(column, row, value, error, fragment):
    frame = _bars()
    frame.loc[row, column] = value
    with pytest.raises(error) as info:
        load_ohlc(frame, name="BTC", min_returns=2)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_ohlc_missing_columns_and_short_history(tmp_path):
    with pytest.raises(DataError, match=r"market 'BTC': OHLC columns \['low'\] not found; columns are"):
        load_ohlc(_bars().drop(columns=["Low"]), name="BTC")
    with pytest.raises(InsufficientHistoryError, match="market 'BTC': 2 returns, fewer than the 250"):
        load_ohlc(_bars(), name="BTC")
    path = tmp_path / "ETH.csv"
    _bars().drop(columns=["High"]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"ETH.csv: market 'ETH': OHLC columns \['high'\]"):
        load_ohlc({"ETH": path})
    with pytest.raises(DataError, match="lacks columns"):
        ohlc_paths({"X": pd.DataFrame({"close": [1.0, 2.0]})})


def test_real_ohlc_files(shared_data):
    bars = load_ohlc({m: shared_data / f"binance_{m}USDT_daily.csv" for m in ("BTC", "ETH")})
    returns, low, high = ohlc_paths(bars)
    assert returns.shape == (3058, 2) and returns.index[0] == pd.Timestamp("2017-08-18", tz="UTC")
    # the closes are those load_prices reads
    closes = log_returns(load_prices(shared_data / "binance_BTCUSDT_daily.csv", name="BTC"))
    np.testing.assert_allclose(returns["BTC"], closes["BTC"], rtol=0, atol=1e-14)
    assert (low <= np.minimum(returns, 0)).all().all() and (high >= np.maximum(returns, 0)).all().all()
    # issue 15's figure: 2017-2025, the BTC low touched -5% on 407 days, the close on 180
    assert int((low["BTC"] <= np.log(0.95)).sum()) == 407 and int((returns["BTC"] <= np.log(0.95)).sum()) == 180
    hourly = load_ohlc(shared_data / "binance_ETHUSDT_hourly.csv", name="ETH")["ETH"]
    assert hourly.attrs["frequency"] == "hourly" and len(hourly) == 7789
