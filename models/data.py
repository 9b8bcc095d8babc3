"""Market price data: load, validate, and turn into log returns.

Prices come as CSV, Parquet or a pandas DataFrame, in one of two layouts:

* **wide** — a date/timestamp column and one price column per market (``date,BTC,ETH``), or an
  exchange OHLC file (``date,open,high,low,close,...``) from which the ``close`` column is taken;
* **long** — a date/timestamp column, a market column and a price column
  (``date,market,price``).

The result is always one float64 column per market on a tz-aware UTC ``DatetimeIndex``, with the
detected sampling frequency recorded in ``DataFrame.attrs``. Every defect found raises a subclass
of :class:`~fundguard.models.errors.DataError` (itself a ``ValueError``) naming the market, the
date and the value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd

from .errors import (
    DataError,
    DateParseError,
    DuplicateTimestampsError,
    GapError,
    InsufficientHistoryError,
    InvalidPriceError,
    MixedFrequencyError,
    UnsortedTimestampsError,
)

__all__ = ["Frequency", "detect_frequency", "load_prices", "log_returns", "MIN_RETURNS", "MAX_GAP_PERIODS"]

PriceSource = Union[str, os.PathLike, pd.DataFrame]

#: Fewer returns than this cannot support a GARCH fit: with ~5 parameters and persistence
#: near 1, a year of daily data (250 returns) is the usual floor for stable estimates.
MIN_RETURNS = 250

#: Largest hole tolerated, in periods. Exchanges have maintenance windows of 1-3 hours
#: (Binance hourly data in 2020-21 has seven of them); a longer hole means missing data.
MAX_GAP_PERIODS = 5

_TIME_COLUMNS = ("timestamp", "date", "datetime", "time")
_MARKET_COLUMNS = ("market", "symbol", "ticker", "asset")
_PRICE_COLUMNS = ("close", "price")
# Crypto trades every day of the year, so a year is 365.25 days of periods.
_YEAR = pd.Timedelta(days=365.25)


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
        ``time`` present (any case), or the DataFrame's ``DatetimeIndex``.
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

    Returns
    -------
    DataFrame, float64 prices in the source's currency
        Index: tz-aware UTC ``DatetimeIndex`` named ``time``, strictly increasing. Columns: one per
        market. A market listed later than the others has NaN before its first price (and only
        there). ``attrs`` holds ``frequency`` (label), ``period`` (Timedelta),
        ``periods_per_year`` (float) and ``source``.

    Raises
    ------
    DateParseError, UnsortedTimestampsError, DuplicateTimestampsError, InvalidPriceError,
    GapError, MixedFrequencyError, InsufficientHistoryError
        All subclasses of ``DataError`` (``ValueError``), each naming the market, date and value.
    """
    if isinstance(source, Mapping):
        if not source:
            raise DataError("source mapping names no markets")
        frames = [
            load_prices(
                sub, time_column=time_column, price_column=price_column, name=str(market), sort=sort,
                max_gap=max_gap, min_returns=0,
            )
            for market, sub in source.items()
        ]
        prices = pd.concat(frames, axis=1, join="inner")
        if prices.empty:
            raise DataError(f"markets {list(source)} share no timestamps")
        prices = prices.dropna()
        label = ", ".join(f"{m}={s if not isinstance(s, pd.DataFrame) else '<DataFrame>'}" for m, s in source.items())
    else:
        frame, label = _read(source)
        default_name = name or (Path(source).name.split(".")[0] if not isinstance(source, pd.DataFrame) else "price")
        prices = _to_wide(frame, time_column, columns, price_column, market_column, default_name, sort)
    frequency = _validate_prices(prices, max_gap=max_gap, min_returns=min_returns)
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


def _read(source: PriceSource) -> tuple[pd.DataFrame, str]:
    if isinstance(source, pd.DataFrame):
        return source.copy(), "<DataFrame>"
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(f"source must be a path, a DataFrame or a mapping of them, got {type(source).__name__}")
    path = Path(source)
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
    except ImportError as exc:
        raise DataError(f"reading {str(path)!r} needs an optional package: {exc} (pip install 'fundguard[parquet]')") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"price file {str(path)!r} could not be parsed: {exc}") from None
    return frame, str(path)


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
        times = _parse_times(frame[tcol])
        frame = frame.drop(columns=[tcol])
    elif isinstance(frame.index, pd.DatetimeIndex):
        times = frame.index.tz_localize("UTC") if frame.index.tz is None else frame.index.tz_convert("UTC")
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
    parsed = None
    for fmt in ("ISO8601", None):
        try:
            parsed = pd.to_datetime(column, utc=True, format=fmt, errors="coerce")
        except (ValueError, TypeError):
            continue
        if not (parsed.isna() & column.notna()).any():
            break
    bad = parsed.isna() if parsed is not None else pd.Series(True, index=column.index)
    if bad.any():
        i = int(np.argmax(bad.to_numpy()))
        raise DateParseError(f"cannot parse date/timestamp {column.iloc[i]!r} in row {i} of column {column.name!r}")
    return pd.DatetimeIndex(parsed)


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


def _validate_prices(prices: pd.DataFrame, *, max_gap: float, min_returns: int) -> Frequency:
    if prices.shape[1] == 0:
        raise DataError("no price columns found")
    if len(prices) < 2:
        raise InsufficientHistoryError(f"need at least two rows of prices, got {len(prices)}")
    _check_price_values(prices)
    prices[:] = prices.apply(pd.to_numeric, errors="coerce").astype(np.float64)
    frequency = detect_frequency(prices.index, max_gap=max_gap)
    for market in prices.columns:
        n_returns = int(prices[market].notna().sum()) - 1
        if n_returns < min_returns:
            raise InsufficientHistoryError(
                f"market {market!r}: {n_returns} returns, fewer than the {min_returns} a volatility fit needs "
                f"(min_returns={min_returns})"
            )
    return frequency


def _timedelta_label(period: pd.Timedelta) -> str:
    for unit, label in ((pd.Timedelta(days=1), "D"), (pd.Timedelta(hours=1), "h"), (pd.Timedelta(minutes=1), "min"), (pd.Timedelta(seconds=1), "s")):
        if period % unit == pd.Timedelta(0):
            return f"{period // unit}{label}"
    return str(period)
