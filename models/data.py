"""Market price data: load, validate, and turn into log returns.

Prices come as CSV, Parquet or a pandas DataFrame, in one of two layouts:

* **wide** — a date/timestamp column and one price column per market (``date,BTC,ETH``), or an
  exchange OHLC file (``date,open,high,low,close,...``) from which the ``close`` column is taken;
* **long** — a date/timestamp column, a market column and a price column
  (``date,market,price``).

The result is always one float64 column per market on a tz-aware UTC ``DatetimeIndex``, with the
detected sampling frequency recorded in ``DataFrame.attrs``. Every defect found raises a subclass
of :class:`~fundguard.models.errors.DataError` (itself a ``ValueError``) naming the file, the
market, the date (or row) and the value.

Timestamps are text (ISO 8601 and the other formats pandas infers), datetime columns (Parquet
timestamps and dates), or numbers whose unit is read from their magnitude. Each accepted numeric
unit covers the dates 1990-01-01 to 2200-01-01 and no two ranges overlap (they are at least 10x
apart), so a plausible date has exactly one reading:

=====================  ==========================  ============================================
unit                   accepted values             note
=====================  ==========================  ============================================
Excel serial days      32874 .. 109575             1900 date system (days since 1899-12-30);
                                                   a fraction is the time of day, kept to 1 ms
YYYYMMDD integers      19900101 .. 22000101        must be a calendar date
epoch seconds          6.31152e8 .. 7.2581184e9    Unix time
epoch milliseconds     6.31152e11 .. 7.2581184e12  Binance and most exchange exports
epoch microseconds     6.31152e14 .. 7.2581184e15
epoch nanoseconds      6.31152e17 .. 7.2581184e18  pandas' own integer dates
=====================  ==========================  ============================================

Fractional epoch values are kept to the microsecond (what float64 resolves at these
magnitudes). Anything else is rejected naming the column, the row and the accepted units: a day
count since 1970 (18628 for 2021-01-01) falls below the Excel range and is refused rather than
guessed (read as Excel days it would be 1951), and a column whose rows read in two different
units is refused naming the first row that differs. Numbers stored as text are read the same
way. Dates outside pandas' nanosecond range (after 2262-04-11) are refused as well.

A one-period move larger than ``MAX_LOG_RETURN`` in absolute log return warns with a
:class:`PriceJumpWarning` naming the market and the date, or raises
:class:`~fundguard.models.errors.InvalidPriceError` when ``strict=True``.
"""

from __future__ import annotations

import lzma
import os
import re
import warnings
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd

from .errors import (
    DataError,
    DateParseError,
    DuplicateTimestampsError,
    FundguardWarning,
    GapError,
    InsufficientHistoryError,
    InvalidPriceError,
    MixedFrequencyError,
    UnsortedTimestampsError,
)

__all__ = [
    "Frequency", "detect_frequency", "load_prices", "log_returns", "load_ohlc", "ohlc_paths", "OHLC_COLUMNS",
    "MIN_RETURNS", "MAX_GAP_PERIODS",
    "MAX_LOG_RETURN", "NUMERIC_TIME_UNITS", "PriceJumpWarning",
]

PriceSource = Union[str, os.PathLike, pd.DataFrame]

#: Fewer returns than this cannot support a GARCH fit: with ~5 parameters and persistence
#: near 1, a year of daily data (250 returns) is the usual floor for stable estimates.
MIN_RETURNS = 250

#: Largest hole tolerated, in periods. Exchanges have maintenance windows of 1-3 hours
#: (Binance hourly data in 2020-21 has seven of them); a longer hole means missing data.
MAX_GAP_PERIODS = 5

#: Largest one-period move, in absolute log return, taken as real without a warning. e^2 is 7.4x up
#: or 86% down in one period. The largest real move in the project's data (nine Binance coins
#: 2017-2025, Bitstamp and Yahoo BTC) is DOGE's +392% on 2021-01-28 (log 1.59); a decimal slip is
#: log 2.30 (10x), caught by this bound unless the true move that period was worse than -26%; a
#: 1e6x fat-finger print is log 13.8. Real moves beyond it are collapses such as LUNA's -99% days
#: in May 2022, which deserve the same look before they drive a volatility fit.
MAX_LOG_RETURN = 2.0

# Numeric timestamps: each unit's accepted range is the dates 1990-01-01 .. 2200-01-01 in that unit
# (see the module docstring). Ordered by magnitude; the ranges do not overlap.
_PLAUSIBLE = (pd.Timestamp("1990-01-01"), pd.Timestamp("2200-01-01"))
_EXCEL_EPOCH = pd.Timestamp("1899-12-30")  # day 0 of Excel's 1900 date system (its 1900-02-29 bug included)
_EXCEL_UNIX_DAY = 25_569  # 1970-01-01 as an Excel serial day
_EPOCH_SECONDS = tuple(t.value // 10**9 for t in _PLAUSIBLE)
#: Units numeric timestamps are read in, by magnitude: (name, low, high, nanoseconds per unit,
#: None when not a plain multiple of an epoch); a value in [low, high) is read in that unit.
NUMERIC_TIME_UNITS = (
    ("Excel serial days", *((t - _EXCEL_EPOCH).days for t in _PLAUSIBLE), None),
    ("YYYYMMDD integers", 19900101, 22000101, None),
    ("epoch seconds", _EPOCH_SECONDS[0], _EPOCH_SECONDS[1], 10**9),
    ("epoch milliseconds", _EPOCH_SECONDS[0] * 10**3, _EPOCH_SECONDS[1] * 10**3, 10**6),
    ("epoch microseconds", _EPOCH_SECONDS[0] * 10**6, _EPOCH_SECONDS[1] * 10**6, 10**3),
    ("epoch nanoseconds", _EPOCH_SECONDS[0] * 10**9, _EPOCH_SECONDS[1] * 10**9, 1),
)
_NUMBER_TEXT = re.compile(r"\s*[+-]?\d+(\.\d*)?\s*")
# What a broken or unreadable file raises from pandas/pyarrow: OSError (permissions, bad gzip,
# pyarrow's IO errors), EOFError (truncated gzip/bz2), ValueError (parser errors, bad UTF-8,
# pyarrow's ArrowInvalid), and the compression libraries' own errors.
_READ_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError,
                                                 zipfile.BadZipFile)

# ``open_time``: Binance's own kline exports (data.binance.vision), labelled by the bar's open.
_TIME_COLUMNS = ("timestamp", "date", "datetime", "time", "open_time")
_MARKET_COLUMNS = ("market", "symbol", "ticker", "asset")
_PRICE_COLUMNS = ("close", "price")
#: The columns of an OHLC bar, as :func:`load_ohlc` returns them.
OHLC_COLUMNS = ("open", "high", "low", "close")
# Crypto trades every day of the year, so a year is 365.25 days of periods.
_YEAR = pd.Timedelta(days=365.25)


class PriceJumpWarning(FundguardWarning):
    """A one-period price move beyond ``MAX_LOG_RETURN``: probably a bad print (fat finger, decimal slip)."""


@dataclass(frozen=True)
class Frequency:
    """The sampling frequency of a price or return series.

    Attributes
    ----------
    period : pandas.Timedelta
        The regular spacing of observations (the most common difference between timestamps).
    label : str
        ``"daily"``, ``"hourly"``, ``"minutely"``, or the period as text (``"8h"``, ``"2D"``).
    periods_per_year : float
        365.25 days divided by the period (crypto markets trade around the clock, every day);
        used to annualise volatilities.
    """

    period: pd.Timedelta
    label: str
    periods_per_year: float

    @classmethod
    def from_period(cls, period: pd.Timedelta) -> Frequency:
        """Frequency with the label and annualisation factor of ``period``."""
        labels = {pd.Timedelta(days=1): "daily", pd.Timedelta(hours=1): "hourly", pd.Timedelta(minutes=1): "minutely"}
        label = labels.get(period, _timedelta_label(period))
        return cls(period=period, label=label, periods_per_year=_YEAR / period)


def detect_frequency(index: pd.DatetimeIndex, *, max_gap: float = MAX_GAP_PERIODS) -> Frequency:
    """Detect the sampling frequency of a sorted, duplicate-free time index and check it is regular.

    Parameters
    ----------
    index : DatetimeIndex
        Strictly increasing timestamps, at least two.
    max_gap : float
        Largest difference between consecutive timestamps tolerated, in periods.

    Returns
    -------
    Frequency
        The period is the most common difference between consecutive timestamps.

    Raises
    ------
    MixedFrequencyError
        A difference shorter than the period or not a whole number of periods (rows of two
        frequencies mixed, for example hourly rows inside daily data).
    GapError
        A difference longer than ``max_gap`` periods.
    """
    if len(index) < 2:
        raise DataError(f"need at least two timestamps to detect a frequency, got {len(index)}")
    diffs = np.diff(index.as_unit("ns").asi8)
    values, counts = np.unique(diffs, return_counts=True)
    period_ns = int(values[np.argmax(counts)])
    ratio = diffs / period_ns
    off_grid = (diffs < period_ns) | (np.abs(ratio - np.round(ratio)) > 1e-9)
    period = pd.Timedelta(period_ns, unit="ns")
    if off_grid.any():
        i = int(np.argmax(off_grid))
        raise MixedFrequencyError(
            f"mixed sampling frequencies: most rows are {_timedelta_label(period)} apart, but "
            f"{index[i]} -> {index[i + 1]} is {pd.Timedelta(int(diffs[i]), unit='ns')} "
            f"({int(off_grid.sum())} such step(s)); resample to one frequency first"
        )
    too_long = ratio > max_gap
    if too_long.any():
        i = int(np.argmax(too_long))
        raise GapError(
            f"gap of {pd.Timedelta(int(diffs[i]), unit='ns')} ({ratio[i]:.0f} periods) between {index[i]} and "
            f"{index[i + 1]} exceeds the tolerance of {max_gap:g} {_timedelta_label(period)} periods "
            f"({int(too_long.sum())} such gap(s)); fill the data or raise max_gap"
        )
    return Frequency.from_period(period)


def load_prices(
    source: PriceSource | Mapping[str, PriceSource],
    *,
    time_column: str | None = None,
    columns: Sequence[str] | Mapping[str, str] | None = None,
    price_column: str | None = None,
    market_column: str | None = None,
    name: str | None = None,
    sort: bool = False,
    max_gap: float = MAX_GAP_PERIODS,
    min_returns: int = MIN_RETURNS,
    max_log_return: float = MAX_LOG_RETURN,
    strict: bool = False,
) -> pd.DataFrame:
    """Read and validate prices: one column per market on a UTC time index.

    Parameters
    ----------
    source : path, DataFrame, or mapping of market name -> path/DataFrame
        A ``.csv`` (optionally compressed) or ``.parquet`` file, or a DataFrame. A mapping loads
        each entry as a single market (with ``price_column``, default ``close``/``price``) and
        keeps the timestamps common to all of them.
    time_column : str, optional
        The date/timestamp column. Default: the first of ``timestamp``, ``date``, ``datetime``,
        ``time``, ``open_time`` present (any case), or the DataFrame's ``DatetimeIndex``. Text,
        datetimes, or numbers in one of the units of the module docstring (epoch s/ms/us/ns,
        Excel serial days, YYYYMMDD), detected from their magnitude.
    columns : list of str or mapping of column -> market name, optional
        Wide layout: the price columns to keep (and how to rename them).
    price_column : str, optional
        The price column of an OHLC file or of the long layout. Default ``close`` or ``price``.
    market_column : str, optional
        Long layout: the column holding the market name. Detected when a column is called
        ``market``, ``symbol``, ``ticker`` or ``asset``.
    name : str, optional
        Market name for a single-price-column source (default: the file's stem, or ``price``).
    sort : bool, default False
        Sort rows by time before validating. Off by default: unsorted input often signals a
        broken export, so it is an error unless asked for.
    max_gap : float, default 5
        Largest hole in the time index tolerated, in periods (see ``MAX_GAP_PERIODS``).
    min_returns : int, default 250
        Each market must yield at least this many returns (``MIN_RETURNS``); 0 disables the check.
    max_log_return : float, default 2.0
        Largest one-period move ``|ln(P_t / P_{t-1})|`` taken without comment (``MAX_LOG_RETURN``);
        a larger one warns (``PriceJumpWarning``) naming the market and date. ``inf`` disables.
    strict : bool, default False
        Make a move beyond ``max_log_return`` an ``InvalidPriceError`` instead of a warning (for
        unattended recalibration jobs, which should stop rather than fit a bad print).

    Returns
    -------
    DataFrame, float64 prices in the source's currency
        Index: tz-aware UTC ``DatetimeIndex`` named ``time``, strictly increasing. Columns: one per
        market. A market listed later than the others has NaN before its first price (and only
        there). ``attrs`` holds ``frequency`` (label), ``period`` (Timedelta),
        ``periods_per_year`` (float) and ``source``.

    Raises
    ------
    DataError
        The file is missing, unreadable (permissions, a directory) or corrupt (bad Parquet,
        truncated gzip, unparsable CSV), naming the file.
    DateParseError, UnsortedTimestampsError, DuplicateTimestampsError, InvalidPriceError,
    GapError, MixedFrequencyError, InsufficientHistoryError
        All subclasses of ``DataError`` (``ValueError``), each naming the file (when read from
        one), the market, date or row and value.

    Warns
    -----
    PriceJumpWarning
        A one-period move beyond ``max_log_return`` (unless ``strict``), naming market and date.
    """
    if isinstance(source, Mapping):
        if not source:
            raise DataError("source mapping names no markets")
        frames = []
        for market, sub in source.items():
            frame, label = _read(sub)
            with _naming(label):
                one = _to_wide(frame, time_column, None, price_column, None, str(market), sort)
                frames.append(_validate_prices(one, max_gap=max_gap, min_returns=0)[0])
        prices = pd.concat(frames, axis=1, join="inner")
        if prices.empty:
            raise DataError(f"markets {list(source)} share no timestamps")
        prices = prices.dropna()
        label = ", ".join(f"{m}={s if not isinstance(s, pd.DataFrame) else '<DataFrame>'}" for m, s in source.items())
        prices, frequency = _validate_prices(prices, max_gap=max_gap, min_returns=min_returns)
        _check_jumps(prices, max_log_return=max_log_return, strict=strict, where="")
    else:
        frame, label = _read(source)
        default_name = name or (Path(source).name.split(".")[0] if not isinstance(source, pd.DataFrame) else "price")
        with _naming(label):
            prices = _to_wide(frame, time_column, columns, price_column, market_column, default_name, sort)
            prices, frequency = _validate_prices(prices, max_gap=max_gap, min_returns=min_returns)
        _check_jumps(prices, max_log_return=max_log_return, strict=strict,
                     where="" if isinstance(source, pd.DataFrame) else f"{label}: ")
    prices.attrs = {
        "frequency": frequency.label,
        "period": frequency.period,
        "periods_per_year": frequency.periods_per_year,
        "source": label,
    }
    return prices


def log_returns(prices: pd.DataFrame | pd.Series) -> pd.DataFrame:
    """Log returns ``r_t = ln(P_t / P_{t-1})`` of validated prices.

    Parameters
    ----------
    prices : DataFrame (or Series) of positive prices on a time index, as from :func:`load_prices`.

    Returns
    -------
    DataFrame, unitless log returns (0.01 = about +1%)
        One row fewer than ``prices``; the first timestamp of each return is the end of its
        period. NaN only where a market had not started trading. ``attrs`` are carried over
        (and filled in when ``prices`` did not come from ``load_prices``).

    Raises
    ------
    InvalidPriceError
        A price that is non-positive or non-finite after the market's first price.
    """
    if isinstance(prices, pd.Series):
        prices = prices.to_frame(name=prices.name if prices.name is not None else "price")
    if not isinstance(prices, pd.DataFrame):
        raise DataError(f"prices must be a pandas DataFrame or Series, got {type(prices).__name__}")
    _check_price_values(prices)
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.log(prices.astype(np.float64)).diff().iloc[1:]
    attrs = dict(prices.attrs)
    if "period" not in attrs and isinstance(prices.index, pd.DatetimeIndex) and len(prices.index) > 1:
        frequency = detect_frequency(prices.index, max_gap=np.inf)
        attrs.update(frequency=frequency.label, period=frequency.period, periods_per_year=frequency.periods_per_year)
    returns.attrs = attrs
    return returns


def load_ohlc(
    source: PriceSource | Mapping[str, PriceSource],
    *,
    time_column: str | None = None,
    name: str | None = None,
    sort: bool = False,
    max_gap: float = MAX_GAP_PERIODS,
    min_returns: int = MIN_RETURNS,
) -> dict[str, pd.DataFrame]:
    """Read and validate OHLC bars: per market, open/high/low/close on a UTC time index.

    Parameters
    ----------
    source : path, DataFrame, or mapping of market name -> path/DataFrame
        A ``.csv`` (optionally compressed) or ``.parquet`` file or a DataFrame with a time column
        and ``open``, ``high``, ``low``, ``close`` columns (any case; other columns are ignored),
        such as the Binance kline exports; a mapping loads one market per entry.
    time_column : str, optional
        As in :func:`load_prices` (default: the first of ``timestamp``, ``date``, ``datetime``,
        ``time``, ``open_time``, or a ``DatetimeIndex``). Rows are labelled as in the source; the
        return of a row is the move from the previous row's close to this row's close, as in
        :func:`log_returns`.
    name : str, optional
        Market name of a single source (default: the file's stem, or ``price``).
    sort, max_gap, min_returns
        As in :func:`load_prices` (defaults False, ``MAX_GAP_PERIODS`` = 5, ``MIN_RETURNS`` = 250).

    Returns
    -------
    dict of market name -> DataFrame, float64 prices in the source's currency
        Columns ``open, high, low, close`` (``OHLC_COLUMNS``); index a tz-aware UTC
        ``DatetimeIndex`` named ``time``, strictly increasing. ``attrs`` as in
        :func:`load_prices`, plus ``market``.

    Raises
    ------
    DataError
        An unreadable file, or one of the OHLC columns missing (naming the columns found).
    InvalidPriceError
        A price missing, not a number or <= 0, ``low > min(open, close)`` or
        ``high < max(open, close)``: one line naming the market, the column and the row's date.
    DateParseError, UnsortedTimestampsError, DuplicateTimestampsError, GapError,
    MixedFrequencyError, InsufficientHistoryError
        As in :func:`load_prices`.
    """
    if isinstance(source, Mapping):
        if not source:
            raise DataError("source mapping names no markets")
        items = [(str(market), sub) for market, sub in source.items()]
    else:
        default = name or (Path(source).name.split(".")[0] if isinstance(source, (str, os.PathLike)) else "price")
        items = [(default, source)]
    bars = {}
    for market, sub in items:
        frame, label = _read(sub)
        with _naming(label):
            one = _to_ohlc(frame, time_column, market, sort)
            frequency = detect_frequency(one.index, max_gap=max_gap)
            if len(one) - 1 < min_returns:
                raise InsufficientHistoryError(
                    f"market {market!r}: {len(one) - 1} returns, fewer than the {min_returns} a volatility fit needs "
                    f"(min_returns={min_returns})"
                )
        one.attrs = {"frequency": frequency.label, "period": frequency.period,
                     "periods_per_year": frequency.periods_per_year, "source": label, "market": market}
        bars[market] = one
    return bars


def ohlc_paths(ohlc: pd.DataFrame | Mapping[str, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Close-to-close log returns and the intraday low and high relative to the previous close.

    Parameters
    ----------
    ohlc : DataFrame or mapping of market name -> DataFrame
        Validated bars from :func:`load_ohlc` (columns ``open, high, low, close``); a single
        DataFrame is named by its ``attrs["market"]`` (default ``price``).

    Returns
    -------
    returns, low, high : DataFrame, unitless log returns, one column per market
        On the timestamps common to all markets, the first dropped (it has no previous close):
        ``returns = ln(C_t / C_{t-1})``, ``low = min(ln(L_t / C_{t-1}), min(0, returns))`` and
        ``high = max(ln(H_t / C_{t-1}), max(0, returns))``, the ``low`` and ``high`` of
        :class:`~fundguard.models.scenarios.ReturnPaths`. ``attrs`` carry the bars' frequency.

    Notes
    -----
    The excursion is measured from the previous close, not from the bar's own open, so a gap at
    the open counts (on Binance spot the open is the previous close: median gap 2e-7 on BTC
    daily). The clip at min(0, r) and max(0, r) only matters when a bar's open differs from the
    previous close: the path from the previous close to this close passes through both.
    """
    if isinstance(ohlc, pd.DataFrame):
        ohlc = {str(ohlc.attrs.get("market", "price")): ohlc}
    if not isinstance(ohlc, Mapping) or not ohlc:
        raise DataError(f"ohlc must be a DataFrame or a non-empty mapping of market -> DataFrame, got {type(ohlc).__name__}")
    for market, bars in ohlc.items():
        missing = [c for c in OHLC_COLUMNS if not isinstance(bars, pd.DataFrame) or c not in bars.columns]
        if missing:
            raise DataError(f"ohlc[{market!r}] lacks columns {missing}; load it with load_ohlc")
    frames = {column: pd.concat({m: bars[column] for m, bars in ohlc.items()}, axis=1, join="inner").astype(np.float64)
              for column in ("close", "low", "high")}
    close = frames["close"]
    if len(close) < 2:
        raise InsufficientHistoryError(f"markets {list(ohlc)} share {len(close)} timestamps; need at least two")
    previous = close.shift(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.log(close / previous).iloc[1:]
        low = np.minimum(np.log(frames["low"] / previous).iloc[1:], np.minimum(returns, 0.0))
        high = np.maximum(np.log(frames["high"] / previous).iloc[1:], np.maximum(returns, 0.0))
    attrs = {k: v for k, v in next(iter(ohlc.values())).attrs.items() if k in ("frequency", "period", "periods_per_year")}
    for frame in (returns, low, high):
        frame.attrs = dict(attrs)
    return returns, low, high


def _to_ohlc(frame: pd.DataFrame, time_column: str | None, market: str, sort: bool) -> pd.DataFrame:
    """One market's bars as float64 open/high/low/close on a checked UTC index, or a one-line DataError."""
    lower = {str(c).lower(): c for c in frame.columns}
    missing = [c for c in OHLC_COLUMNS if c not in lower]
    if missing:
        raise DataError(f"market {market!r}: OHLC columns {missing} not found; columns are {list(map(str, frame.columns))}")
    wide = _to_wide(frame, time_column, {lower[c]: c for c in OHLC_COLUMNS}, None, None, market, sort)
    if len(wide) < 2:
        raise InsufficientHistoryError(f"market {market!r}: need at least two rows of bars, got {len(wide)}")
    values = {}
    for column in OHLC_COLUMNS:
        raw = wide[column]
        numbers = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~(np.isfinite(numbers) & (numbers > 0))
        if bad.any():
            i = int(np.argmax(bad))
            what = ("missing" if pd.isna(raw.iloc[i]) else repr(float(numbers[i])) if not np.isnan(numbers[i])
                    else repr(str(raw.iloc[i])))
            raise InvalidPriceError(
                f"market {market!r}: {column} at {wide.index[i]} is {what}; prices must be finite numbers > 0 "
                f"({int(bad.sum())} bad value(s) in {column})"
            )
        values[column] = numbers
    bars = pd.DataFrame(values, index=wide.index)
    floor = np.minimum(bars["open"], bars["close"]).to_numpy()
    ceiling = np.maximum(bars["open"], bars["close"]).to_numpy()
    for column, wrong, bound, text in (("low", bars["low"].to_numpy() > floor, floor, "above min(open, close)"),
                                       ("high", bars["high"].to_numpy() < ceiling, ceiling, "below max(open, close)")):
        if wrong.any():
            i = int(np.argmax(wrong))
            raise InvalidPriceError(
                f"market {market!r}: {column} {bars[column].iloc[i]:.10g} at {bars.index[i]} is {text} = "
                f"{bound[i]:.10g} ({int(wrong.sum())} such row(s)); the bar is inconsistent"
            )
    return bars


def _read(source: PriceSource) -> tuple[pd.DataFrame, str]:
    if isinstance(source, pd.DataFrame):
        return source.copy(), "<DataFrame>"
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(f"source must be a path, a DataFrame or a mapping of them, got {type(source).__name__}")
    path = Path(source)
    if path.is_dir():
        raise DataError(f"price file {str(path)!r} is a directory, not a file")
    if not path.is_file():
        raise DataError(f"price file {str(path)!r} does not exist")
    suffixes = [s.lower() for s in path.suffixes]
    try:
        if ".parquet" in suffixes or ".pq" in suffixes:
            frame = pd.read_parquet(path)
        elif ".csv" in suffixes or ".txt" in suffixes or ".tsv" in suffixes:
            frame = pd.read_csv(path, sep="\t" if ".tsv" in suffixes else ",")
        else:
            raise DataError(f"price file {str(path)!r}: unknown format (expected .csv, .tsv or .parquet)")
    except ImportError:
        raise DataError(f"reading {str(path)!r} needs pyarrow, an optional package (pip install 'fundguard[parquet]')") from None
    except (pd.errors.OutOfBoundsDatetime, OverflowError) as exc:
        raise DateParseError(f"price file {str(path)!r}: a date is outside the supported range "
                             f"{pd.Timestamp.min.date()} .. {pd.Timestamp.max.date()} (pandas nanosecond timestamps): "
                             f"{str(exc).splitlines()[0]}") from None
    except PermissionError as exc:
        raise DataError(f"price file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    except DataError:
        raise
    except Exception as exc:
        # pyarrow's errors are matched by module so that pyarrow is imported only for Parquet.
        if not isinstance(exc, _READ_ERRORS) and not type(exc).__module__.startswith("pyarrow"):
            raise
        kind = "Parquet" if ".parquet" in suffixes or ".pq" in suffixes else "CSV"
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"price file {str(path)!r} is not a readable {kind} file: {reason}") from None
    return frame, str(path)


@contextmanager
def _naming(label: str) -> Iterator[None]:
    """Prefix a DataError raised inside with the file it concerns (nothing for a DataFrame)."""
    try:
        yield
    except DataError as exc:
        if label == "<DataFrame>":
            raise
        raise type(exc)(f"{label}: {exc}") from None


def _find_column(frame: pd.DataFrame, wanted: str | None, candidates: Sequence[str], what: str) -> str | None:
    if wanted is not None:
        if wanted not in frame.columns:
            raise DataError(f"{what} {wanted!r} not found; columns are {list(map(str, frame.columns))}")
        return wanted
    lower = {str(c).lower(): c for c in frame.columns}
    return next((lower[c] for c in candidates if c in lower), None)


def _to_wide(
    frame: pd.DataFrame,
    time_column: str | None,
    columns: Sequence[str] | Mapping[str, str] | None,
    price_column: str | None,
    market_column: str | None,
    default_name: str,
    sort: bool,
) -> pd.DataFrame:
    tcol = _find_column(frame, time_column, _TIME_COLUMNS, "time_column")
    if tcol is not None:
        try:
            times = _parse_times(frame[tcol])
        except (pd.errors.OutOfBoundsDatetime, OverflowError) as exc:
            # pandas 2 holds parsed dates in nanoseconds and refuses these while parsing; pandas 3
            # parses them and _check_time_range refuses them, with the same message
            raise _out_of_range(frame[tcol], exc) from None
        frame = frame.drop(columns=[tcol])
    elif isinstance(frame.index, pd.DatetimeIndex):
        times = frame.index.tz_localize("UTC") if frame.index.tz is None else frame.index.tz_convert("UTC")
        times = _check_time_range(times, "index")
    else:
        raise DataError(
            f"no date/timestamp column found (looked for {list(_TIME_COLUMNS)}); columns are "
            f"{list(map(str, frame.columns))}: pass time_column="
        )
    frame = frame.set_axis(pd.DatetimeIndex(times, name="time"), axis=0)

    mcol = _find_column(frame, market_column, _MARKET_COLUMNS, "market_column") if columns is None else None
    if mcol is not None:
        pcol = _find_column(frame, price_column, _PRICE_COLUMNS, "price_column")
        if pcol is None:
            raise DataError(f"long layout (market column {mcol!r}) needs price_column=; columns are {list(map(str, frame.columns))}")
        long = frame[[mcol, pcol]].reset_index()
        dup = long.duplicated(subset=["time", mcol], keep=False)
        if dup.any():
            row = long[dup].iloc[0]
            raise DuplicateTimestampsError(f"market {row[mcol]!r}: duplicate timestamp {row['time']}")
        wide = long.pivot(index="time", columns=mcol, values=pcol)
        wide.columns = [str(c) for c in wide.columns]
        wide.columns.name = None
        return _check_index(wide, sort=True)

    if columns is not None:
        mapping = dict(columns) if isinstance(columns, Mapping) else {c: c for c in columns}
        missing = [c for c in mapping if c not in frame.columns]
        if missing:
            raise DataError(f"price columns {missing} not found; columns are {list(map(str, frame.columns))}")
        wide = frame[list(mapping)].rename(columns=mapping)
    else:
        pcol = _find_column(frame, price_column, _PRICE_COLUMNS, "price_column")
        if pcol is not None:
            wide = frame[[pcol]].rename(columns={pcol: default_name})
        else:
            wide = frame
    wide.columns = [str(c) for c in wide.columns]
    return _check_index(wide, sort=sort)


def _parse_times(column: pd.Series) -> pd.DatetimeIndex:
    if pd.api.types.is_bool_dtype(column):
        raise DateParseError(f"column {column.name!r} holds true/false values, not dates or timestamps")
    numbers = _as_numbers(column)
    if numbers is not None:
        return _check_time_range(_parse_numeric_times(numbers, column.name), column.name)
    parsed = None
    for fmt in ("ISO8601", None):
        try:
            with warnings.catch_warnings():
                # pandas' "Could not infer format ... dateutil" for the fallback: a cell it cannot
                # read is reported below, by row
                warnings.simplefilter("ignore", UserWarning)
                parsed = pd.to_datetime(column, utc=True, format=fmt, errors="coerce")
        except (ValueError, TypeError):
            continue
        if not (parsed.isna() & column.notna()).any():
            break
    bad = parsed.isna() if parsed is not None else pd.Series(True, index=column.index)
    if bad.any():
        i = int(np.argmax(bad.to_numpy()))
        try:  # a date pandas 2 coerced to NaT for its range, not its form
            stamp = pd.Timestamp(column.iloc[i])
        except (ValueError, TypeError, OverflowError):
            stamp = None
        if stamp is not None and stamp is not pd.NaT:
            raise _out_of_range(column, ValueError("out of range"))
        raise DateParseError(f"cannot parse date/timestamp {column.iloc[i]!r} in row {i} of column {column.name!r}")
    return _check_time_range(pd.DatetimeIndex(parsed), column.name)


def _as_numbers(column: pd.Series) -> np.ndarray | None:
    """The column's numbers (int64 when all are integers and none missing, else float64) if it
    holds only numbers, as numbers or as text; None for anything else (text dates, datetimes)."""
    if not pd.api.types.is_numeric_dtype(column):
        if not (pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column)):
            return None
        present = column.dropna()
        if not len(present) or not all(_is_number(v) for v in present):
            return None
        column = pd.to_numeric(column)
    if pd.api.types.is_integer_dtype(column) and not column.isna().any():
        return column.to_numpy(dtype=np.int64)
    return column.to_numpy(dtype=np.float64, na_value=np.nan)


def _is_number(value: object) -> bool:
    if isinstance(value, str):
        return _NUMBER_TEXT.fullmatch(value) is not None
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _parse_numeric_times(values: np.ndarray, column: object) -> pd.DatetimeIndex:
    """Numeric timestamps -> UTC times, the unit read from the magnitude (see ``NUMERIC_TIME_UNITS``).

    ``values`` is int64 (converted exactly) or float64 (exact up to 2^53; beyond, and for
    fractions of a unit, kept to the microsecond, about what float64 resolves here).
    """
    accepted = "; ".join(f"{name} {low:.6g}..{high:.6g}" for name, low, high, _ in NUMERIC_TIME_UNITS)
    unit = np.full(len(values), -1)
    for k, (_, low, high, _) in enumerate(NUMERIC_TIME_UNITS):
        unit[(values >= low) & (values < high)] = k
    if (unit < 0).any():
        i = int(np.argmax(unit < 0))
        if np.isnan(values[i]):
            raise DateParseError(f"missing timestamp in row {i} of column {column!r}")
        raise DateParseError(
            f"timestamp {_number(values[i])} in row {i} of column {column!r} is not a date from 1990 to 2200 in "
            f"any accepted numeric unit ({accepted}); write dates as text (ISO 8601) otherwise"
        )
    if (unit != unit[0]).any():
        i = int(np.argmax(unit != unit[0]))
        raise DateParseError(
            f"column {column!r} mixes timestamp units: row 0 ({_number(values[0])}) reads as "
            f"{NUMERIC_TIME_UNITS[unit[0]][0]}, row {i} ({_number(values[i])}) as {NUMERIC_TIME_UNITS[unit[i]][0]}"
        )
    name, _, _, ns_per_unit = NUMERIC_TIME_UNITS[unit[0]]
    if name == "Excel serial days":
        # A day fraction is the time of day; Excel itself resolves it to the millisecond.
        # Counted from the Unix epoch: 1899 + 300 years in nanoseconds overflows int64 (pandas 2).
        ms = np.round((values - _EXCEL_UNIX_DAY) * 86_400_000).astype(np.int64)
        return pd.DatetimeIndex(pd.to_datetime(ms, unit="ms", utc=True))
    if name == "YYYYMMDD integers":
        fractional = values != np.round(values) if values.dtype.kind == "f" else np.zeros(len(values), bool)
        parsed = pd.to_datetime(values.astype(np.int64).astype(str), format="%Y%m%d", errors="coerce", utc=True)
        bad = fractional | np.asarray(parsed.isna())
        if bad.any():
            i = int(np.argmax(bad))
            raise DateParseError(
                f"timestamp {_number(values[i])} in row {i} of column {column!r} reads as YYYYMMDD but is not a "
                f"calendar date"
            )
        return pd.DatetimeIndex(parsed)
    if values.dtype.kind == "i" or (np.all(values == np.round(values)) and np.abs(values).max() < 2.0**53):
        ns = values.astype(np.int64) * ns_per_unit
    else:
        ns = np.round(values * (ns_per_unit / 1_000)).astype(np.int64) * 1_000
    return pd.DatetimeIndex(pd.to_datetime(ns, unit="ns", utc=True))


def _number(value: float) -> str:
    """A timestamp value as written: integers in full (1609459200000, not 1.6094592e+12)."""
    return str(int(value)) if float(value).is_integer() else f"{value:.10g}"


def _out_of_range(column: pd.Series, exc: Exception) -> DateParseError:
    """The error for a column pandas refused to parse for its range (pandas 2), naming the first
    date outside it, in the words of :func:`_check_time_range`."""
    low, high = pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC")
    where = f"{str(exc).splitlines()[0]}"
    for i, value in enumerate(column.tolist()):
        try:
            stamp = pd.Timestamp(value)
            stamp = stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")
        except (ValueError, TypeError, OverflowError):
            continue
        if not low <= stamp <= high:
            where = f"date {stamp} in row {i} of column {column.name!r}"
            break
    return DateParseError(f"{where} is outside the supported range {low.date()} .. {high.date()} "
                          "(pandas nanosecond timestamps)")


def _check_time_range(times: pd.DatetimeIndex, column: object) -> pd.DatetimeIndex:
    """Times within pandas' nanosecond range (1677-09-21 .. 2262-04-11), which the checks and
    every later step (frequencies, stress windows) compute in."""
    low, high = pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC")
    outside = np.asarray((times < low) | (times > high))
    if outside.any():
        i = int(np.argmax(outside))
        raise DateParseError(
            f"date {times[i]} in row {i} of column {column!r} is outside the supported range "
            f"{low.date()} .. {high.date()} (pandas nanosecond timestamps)"
        )
    return times.as_unit("ns") if times.unit != "ns" else times


def _check_index(wide: pd.DataFrame, *, sort: bool) -> pd.DataFrame:
    index = wide.index
    if sort:
        wide = wide.sort_index(kind="stable")
        index = wide.index
    steps = np.diff(index.as_unit("ns").asi8)
    if (steps == 0).any():
        i = int(np.argmax(steps == 0))
        raise DuplicateTimestampsError(f"duplicate timestamp {index[i]} (rows {i} and {i + 1})")
    if (steps < 0).any():
        i = int(np.argmax(steps < 0))
        raise UnsortedTimestampsError(
            f"timestamps not increasing: {index[i]} (row {i}) is followed by {index[i + 1]}; pass sort=True to sort"
        )
    return wide


def _check_price_values(prices: pd.DataFrame) -> None:
    for market in prices.columns:
        column = pd.to_numeric(prices[market], errors="coerce")
        raw_missing = prices[market].isna().to_numpy()
        values = column.to_numpy(dtype=np.float64)
        unparsable = np.isnan(values) & ~raw_missing
        if unparsable.any():
            i = int(np.argmax(unparsable))
            raise InvalidPriceError(f"market {market!r}: price {prices[market].iloc[i]!r} at {prices.index[i]} is not a number")
        started = np.maximum.accumulate(~np.isnan(values))
        if not started.any():
            raise InvalidPriceError(f"market {market!r}: no prices at all")
        bad = started & ~(np.isfinite(values) & (values > 0))
        if bad.any():
            i = int(np.argmax(bad))
            what = "missing" if np.isnan(values[i]) else repr(float(values[i]))
            raise InvalidPriceError(
                f"market {market!r}: price at {prices.index[i]} is {what}; prices must be finite and > 0 "
                f"({int(bad.sum())} bad value(s))"
            )


def _validate_prices(prices: pd.DataFrame, *, max_gap: float, min_returns: int) -> tuple[pd.DataFrame, Frequency]:
    """The prices as float64 (numbers stored as text converted) and their frequency, or a DataError."""
    if prices.shape[1] == 0:
        raise DataError("no price columns found")
    if len(prices) < 2:
        raise InsufficientHistoryError(f"need at least two rows of prices, got {len(prices)}")
    _check_price_values(prices)
    # A new frame, not an in-place assignment: a text column (Parquet strings) cannot hold floats.
    prices = prices.apply(pd.to_numeric, errors="coerce").astype(np.float64)
    frequency = detect_frequency(prices.index, max_gap=max_gap)
    for market in prices.columns:
        n_returns = int(prices[market].notna().sum()) - 1
        if n_returns < min_returns:
            raise InsufficientHistoryError(
                f"market {market!r}: {n_returns} returns, fewer than the {min_returns} a volatility fit needs "
                f"(min_returns={min_returns})"
            )
    return prices, frequency


def _check_jumps(prices: pd.DataFrame, *, max_log_return: float, strict: bool, where: str) -> None:
    """Warn (or raise, if ``strict``) at the first one-period move beyond ``max_log_return`` of each market."""
    if not max_log_return > 0:
        raise DataError(f"max_log_return must be > 0, got {max_log_return!r}")
    for market in prices.columns:
        values = prices[market].to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            moves = np.abs(np.diff(np.log(values))) > max_log_return  # NaN before a listing compares False
        if not moves.any():
            continue
        i = int(np.argmax(moves))
        ratio = values[i + 1] / values[i]
        message = (
            f"{where}market {market!r}: price moved {ratio:.3g}x in one period at {prices.index[i + 1]} "
            f"({values[i]:.6g} at {prices.index[i]} -> {values[i + 1]:.6g}; log return "
            f"{np.log(ratio):+.2f}, beyond the bound of +-{max_log_return:g}; {int(moves.sum())} such move(s))"
        )
        if strict:
            raise InvalidPriceError(f"{message}; fix the bad print, or turn strict off if the move is real")
        warnings.warn(f"{message}; check for a bad print (strict=True makes this an error)",
                      PriceJumpWarning, stacklevel=3)


def _timedelta_label(period: pd.Timedelta) -> str:
    for unit, label in ((pd.Timedelta(days=1), "D"), (pd.Timedelta(hours=1), "h"), (pd.Timedelta(minutes=1), "min"), (pd.Timedelta(seconds=1), "s")):
        if period % unit == pd.Timedelta(0):
            return f"{period // unit}{label}"
    return str(period)
