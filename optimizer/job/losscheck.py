"""``fundguard loss-check``: replay public liquidation events through the loss model and compare.

Each row of an events file (the columns of shared/data's ``public_liquidation_events.csv``) names
a day, a market, the open interest before the event and what was reported: the notional
liquidated and the insurance fund's loss. :func:`check_events` replays the venue's book through
the market's real OHLC prices for ``warmup_days`` from the steady state and then the event's UTC
day, scales the result to the row's open interest at the event day's open (the stateful book is
homogeneous of degree one in open interest and daily volume jointly, so the scaling is exact at a
fixed ``turnover`` = ADV / open interest), and reports the model's liquidated notional and fund
loss against the reported figures with their ratios.

Notes
-----
The model's ``fund_loss`` is the gross payout of the fund on the day; the fund's net change is
that payout less the liquidation fees it took (``fee_income``). Reported fund losses are balance
drops, so net of the day's fees; the band is applied to the gross ratio (what the stateful book's
defaults were fitted on) and the net one is reported beside it. A ratio is model / reported.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from fundguard.models import load_ohlc
from fundguard.models.errors import DataError, SpecificationError
from fundguard.models.venue import Market, StatefulBook, VenueBook, loss_model as named_loss_model, replay

__all__ = ["check_events", "read_events", "read_ohlc", "match_market", "EVENT_COLUMNS", "DEFAULT_TURNOVER",
           "DEFAULT_WARMUP_DAYS", "DEFAULT_BAND", "CHECK_COLUMNS",
           "parse_prices_option", "parse_band"]

#: Columns an events file must have (shared/data/README.md, "public_liquidation_events.csv").
EVENT_COLUMNS = ("date", "scope", "market", "open_interest_before_usd", "liquidations_usd", "fund_loss_usd",
                 "uncertain")

#: ADV / open interest of a BTC perpetual market. Skew data quoted on 23 Mar 2020 (cashtechnews.com,
#: "BitMEX slips behind Binance and OKEx for Bitcoin futures trading volumes"): BitMEX 2.45bn of
#: 24-hour volume on 0.5-0.75bn of open interest (3.3-4.6); CoinGlass in 2024 (cryptopulpit.com,
#: "Disparities in Bitcoin futures OI and volume"): Binance 1.28, Bybit 0.79. 3 sits in the range
#: of the 2020-21 events the file covers, and is the value the stateful book's defaults were fitted
#: with (``StatefulBook`` Notes).
DEFAULT_TURNOVER = 3.0

#: Days replayed from the steady state before the event day: about 8 half-lives of the default book
#: (3.6 days), after which the start's own law holds under 1/256 of the open interest.
DEFAULT_WARMUP_DAYS = 30

#: Ratios accepted: within a factor 3 either way. The events file's own caveats (liquidation feeds
#: undercount, open interest reported days later, spot prices for perpetual wicks) make a
#: tighter band a fit to noise (shared/data/README.md, "Use ratios with bands, not exact fits").
DEFAULT_BAND = (1.0 / 3.0, 3.0)

#: Columns of the table :func:`check_events` returns, in order.
CHECK_COLUMNS = (
    "date", "scope", "market", "prices", "status", "reason", "uncertain", "open_interest",
    "model_liquidated", "reported_liquidated", "liquidated_ratio",
    "model_fund_loss", "model_fee_income", "model_net_fund_loss", "reported_fund_loss", "fund_loss_ratio",
    "net_fund_loss_ratio", "in_band", "counts",
)

_OHLC = ("open", "high", "low", "close")


def read_events(source: str | os.PathLike[str] | pd.DataFrame) -> pd.DataFrame:
    """Read an events file in the columns of ``public_liquidation_events.csv``, validated.

    Parameters
    ----------
    source : path or DataFrame
        CSV with at least :data:`EVENT_COLUMNS` (other columns are kept).

    Returns
    -------
    DataFrame
        One row per event, ``date`` a UTC day (Timestamp), the USD columns float (NaN when empty),
        ``uncertain`` a string ("" when nothing is flagged).

    Raises
    ------
    DataError
        Unreadable file, a missing column (named), a date or number that does not parse (naming
        the column and the file's line), a negative amount.
    """
    where = "events" if isinstance(source, pd.DataFrame) else f"events file {os.fspath(source)!r}"
    if isinstance(source, pd.DataFrame):
        frame = source.copy()
    else:
        try:
            frame = pd.read_csv(source, dtype=str, keep_default_na=False)
        except FileNotFoundError:
            raise DataError(f"{where} does not exist") from None
        except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise DataError(f"{where} is not a readable CSV: {' '.join(str(exc).split())}") from None
    missing = [c for c in EVENT_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing}; found {list(frame.columns)}")
    out = frame.copy()
    days = []
    for i, text in enumerate(frame["date"].astype(str)):
        try:
            day = pd.Timestamp(text.strip())
        except (ValueError, TypeError):
            day = pd.NaT
        if pd.isna(day):
            raise DataError(f"{where}, line {i + 2}: date {text!r} is not a date (YYYY-MM-DD)")
        days.append((day.tz_localize("UTC") if day.tzinfo is None else day.tz_convert("UTC")).normalize())
    out["date"] = pd.DatetimeIndex(days) if days else pd.DatetimeIndex([], tz="UTC")
    for column in ("open_interest_before_usd", "liquidations_usd", "fund_loss_usd"):
        values = []
        for i, text in enumerate(frame[column]):
            text = "" if text is None or (isinstance(text, float) and math.isnan(text)) else str(text).strip()
            try:
                value = float(text) if text else math.nan
            except ValueError:
                raise DataError(f"{where}, line {i + 2}: {column} {text!r} is not a number") from None
            if math.isinf(value) or value < 0:
                raise DataError(f"{where}, line {i + 2}: {column} must be a finite amount >= 0, got {text!r}")
            values.append(value)
        out[column] = np.asarray(values, dtype=np.float64)
    out["uncertain"] = frame["uncertain"].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v))
                                              else str(v).strip())
    out["market"] = frame["market"].astype(str).str.strip()
    return out.reset_index(drop=True)


def read_ohlc(source: str | os.PathLike[str] | pd.DataFrame, market: str) -> pd.DataFrame:
    """One market's OHLC bars, daily or hourly: :func:`~fundguard.models.load_ohlc` without a minimum length.

    ``load_ohlc`` validates the time column, order, gaps (at most ``MAX_GAP_PERIODS`` periods),
    prices (finite, > 0) and every bar (``low <= min(open, close)``, ``high >= max(open, close)``);
    an event replay needs only its warmup, not a volatility fit's 250 returns. Rows are labelled by
    the bar's opening time, as in the source.

    Returns
    -------
    DataFrame
        Columns ``open, high, low, close`` (float64), a UTC ``DatetimeIndex``; ``attrs["period"]``.

    Raises
    ------
    DataError
        As ``load_ohlc``: each bad bar one line naming the market, the column and the date.
    """
    return load_ohlc(source, name=market, min_returns=0)[market]


def match_market(market: str, keys: list[str] | tuple[str, ...]) -> str | None:
    """The price key an event's market belongs to: the longest key that the market, upper-cased
    with ``XBT`` read as ``BTC``, starts with (``BTC`` matches BTCUSDT, XBTUSD and BTC); None if none."""
    name = market.strip().upper().replace("XBT", "BTC")
    found = [k for k in keys if name.startswith(k.upper().replace("XBT", "BTC"))]
    return max(found, key=len) if found else None


def parse_prices_option(items: list[str] | tuple[str, ...], option: str = "--prices") -> list[tuple[str, str]]:
    """``MARKET=FILE`` items as (MARKET upper-cased, FILE) pairs; one line naming ``option`` when one is malformed
    or a market is named twice."""
    pairs = []
    for item in items:
        name, sep, path = str(item).partition("=")
        if not sep or not name.strip() or not path.strip():
            raise SpecificationError(f"{option} takes MARKET=FILE, got {item!r}")
        pairs.append((name.strip().upper(), path.strip()))
    names = [n for n, _ in pairs]
    if len(set(names)) != len(names):
        raise SpecificationError(f"{option} names a market twice: {names}")
    return pairs


def parse_band(text: str, option: str = "--band") -> tuple[float, float]:
    """``LO,HI`` as two floats with 0 < LO <= HI; one line naming ``option`` otherwise."""
    try:
        low, high = (float(p) for p in str(text).split(","))
    except ValueError:
        raise SpecificationError(f"{option} takes LO,HI (two numbers), got {text!r}") from None
    return _check_band((low, high), option)


def _loss_model(model: Any) -> Any:
    if model is None:
        return named_loss_model("stateful_book")
    if isinstance(model, str):
        return named_loss_model(model)
    return model


def _sees_extremes(model: Any) -> bool:
    """Whether a loss model takes the periods' low/high (its signature names them)."""
    if callable(getattr(model, "run", None)):
        return True
    try:
        names = inspect.signature(model).parameters
    except (TypeError, ValueError):
        return False
    return "low" in names and "high" in names


def _check_band(band: tuple[float, float], name: str = "band") -> tuple[float, float]:
    try:
        low, high = (float(b) for b in band)
    except (TypeError, ValueError):
        raise SpecificationError(f"{name} must be two numbers LO,HI, got {band!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
        raise SpecificationError(f"{name} needs 0 < LO <= HI (finite), got LO={low:g}, HI={high:g}")
    return low, high


def check_events(
    events: pd.DataFrame | str | os.PathLike[str],
    prices: Mapping[str, pd.DataFrame],
    *,
    loss_model: Any = None,
    turnover: float = DEFAULT_TURNOVER,
    warmup_days: int = DEFAULT_WARMUP_DAYS,
    band: tuple[float, float] = DEFAULT_BAND,
    exclude_uncertain: bool = False,
) -> pd.DataFrame:
    """Replay each event row whose market has prices and compare with what was reported.

    Parameters
    ----------
    events : DataFrame or path
        Rows in the columns of ``public_liquidation_events.csv`` (:func:`read_events`).
    prices : mapping of key -> OHLC DataFrame
        Per price key (a market prefix such as ``BTC``, see :func:`match_market`), bars as
        :func:`read_ohlc` returns them, daily or hourly.
    loss_model : loss model, name or ``loss_model.json`` path, default the stateful book's defaults
    turnover : float > 0, default 3.0
        ADV / open interest of the replayed book (:data:`DEFAULT_TURNOVER`).
    warmup_days : int >= 0, default 30
        Days replayed from the steady state before the event day (:data:`DEFAULT_WARMUP_DAYS`).
    band : (LO, HI), default (1/3, 3)
        Accepted range of each ratio (:data:`DEFAULT_BAND`).
    exclude_uncertain : bool, default False
        Rows whose ``uncertain`` field is not empty do not count toward the verdict (``counts``).

    Returns
    -------
    DataFrame
        One row per event row, columns :data:`CHECK_COLUMNS`: ``status`` "checked" or "skipped"
        (``reason`` says why); USD amounts (``open_interest`` per side at the event day's open,
        the model's liquidated notional, gross fund loss, fee income and net fund loss over the
        event's UTC day, the reported figures); the ratios model / reported (NaN where nothing
        was reported); ``in_band`` (False when a ratio leaves the band, NaN for a skipped row or
        one without any ratio) and ``counts`` (whether the row's verdict counts). ``attrs``
        holds ``band``, ``turnover``, ``warmup_days``, ``loss_model`` (its parameters when it has
        them) and ``outside_band`` (the number of counting rows outside the band).

    Raises
    ------
    SpecificationError
        A bad band, turnover or warmup; a price key no event row's market matches.
    DataError
        As :func:`read_events`; prices that are not OHLC bars.
    """
    table = read_events(events)
    low, high = _check_band(band)
    if isinstance(turnover, bool) or not (isinstance(turnover, (int, float)) and math.isfinite(turnover) and turnover > 0):
        raise SpecificationError(f"turnover must be a number > 0 (ADV / open interest), got {turnover!r}")
    if isinstance(warmup_days, bool) or not isinstance(warmup_days, (int, np.integer)) or warmup_days < 0:
        raise SpecificationError(f"warmup_days must be an integer >= 0, got {warmup_days!r}")
    model = _loss_model(loss_model)
    keys = list(prices)
    for key in keys:
        bars = prices[key]
        if not isinstance(bars, pd.DataFrame) or any(c not in bars.columns for c in _OHLC):
            raise DataError(f"prices[{key!r}] must be OHLC bars (columns open, high, low, close)")
        if not any(match_market(m, [key]) for m in table["market"]):
            raise SpecificationError(f"prices for market {key!r}: no event row's market matches it "
                                     f"(markets: {sorted(set(table['market']))})")
    rows = [_check_row(event, prices, keys, model, float(turnover), int(warmup_days), low, high, exclude_uncertain)
            for _, event in table.iterrows()]
    result = pd.DataFrame(rows, columns=list(CHECK_COLUMNS))
    parameters = model.parameters() if isinstance(model, StatefulBook) else getattr(model, "__name__", repr(model))
    result.attrs = {"band": (low, high), "turnover": float(turnover), "warmup_days": int(warmup_days),
                    "loss_model": parameters,
                    "outside_band": int(((result["in_band"] == False) & result["counts"]).sum())}  # noqa: E712
    return result


def _check_row(event: pd.Series, prices: Mapping[str, pd.DataFrame], keys: list[str], model: Any, turnover: float,
               warmup_days: int, low: float, high: float, exclude_uncertain: bool) -> dict[str, Any]:
    day = event["date"]
    row: dict[str, Any] = {c: math.nan for c in CHECK_COLUMNS}
    row.update(date=day.strftime("%Y-%m-%d"), scope=event["scope"], market=event["market"], prices=None,
               status="skipped", reason="", uncertain=event["uncertain"], in_band=math.nan, counts=False,
               reported_liquidated=event["liquidations_usd"], reported_fund_loss=event["fund_loss_usd"])
    if "+" in event["market"]:
        row["reason"] = "names more than one market"
        return row
    key = match_market(event["market"], keys)
    if key is None:
        row["reason"] = "no prices given for this market"
        return row
    row["prices"] = key
    open_interest = event["open_interest_before_usd"]
    if not open_interest > 0:
        row["reason"] = "no open interest reported"
        return row
    bars = prices[key]
    period = pd.Series(bars.index[1:] - bars.index[:-1]).median()
    start = day - pd.Timedelta(days=warmup_days)
    end = day + pd.Timedelta(days=1)
    if bars.index[0] > start - period or bars.index[-1] < end - period:
        row["reason"] = (f"prices {key} ({bars.index[0]:%Y-%m-%d}..{bars.index[-1]:%Y-%m-%d}) do not cover "
                         f"{start - period:%Y-%m-%d %H:%M}..{end:%Y-%m-%d}")
        return row
    window = bars[(bars.index >= start - period) & (bars.index < end)]
    venue = VenueBook([Market(key, open_interest=1.0, daily_volume=turnover)])
    # OHLC only to a model whose signature names low/high (as build_scenarios passes them): replay
    # hands them to any model it is given OHLC for, which a close-only model cannot take
    source = {key: window} if _sees_extremes(model) else window[["close"]].set_axis([key], axis=1)
    replayed = replay(venue, source, loss_model=model).xs(key, level="market")
    on_day = replayed[replayed.index >= day]
    # a model that does not report its open interest (liquidation_gap) keeps the book at OI = 1
    opening = float(on_day["open_interest"].iloc[0])
    scale = open_interest / (opening if math.isfinite(opening) else 1.0)
    liquidated, fund_loss, fees = (scale * float(on_day[c].sum()) for c in ("liquidated", "fund_loss", "fee_income"))
    row.update(status="checked", open_interest=open_interest, model_liquidated=liquidated, model_fund_loss=fund_loss,
               model_fee_income=fees, model_net_fund_loss=fund_loss - fees)
    ratios = []
    if event["liquidations_usd"] > 0:
        row["liquidated_ratio"] = liquidated / event["liquidations_usd"]
        ratios.append(row["liquidated_ratio"])
    if event["fund_loss_usd"] > 0:
        row["fund_loss_ratio"] = fund_loss / event["fund_loss_usd"]
        row["net_fund_loss_ratio"] = (fund_loss - fees) / event["fund_loss_usd"]
        ratios.append(row["fund_loss_ratio"])
    if ratios:
        row["in_band"] = bool(all(low <= r <= high for r in ratios))
        row["counts"] = not (exclude_uncertain and bool(event["uncertain"]))
    else:
        row["reason"] = "nothing reported to compare"
    return row
