"""Run a venue's book through a real price history: what the loss model says happened, period by period."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, SpecificationError
from .book import VenueBook
from .losses import VenueLosses
from .registry import LossModel
from . import registry

__all__ = ["replay", "ewma_volatility", "EWMA_DECAY"]

#: RiskMetrics' daily decay for the exponentially weighted variance (J.P. Morgan/Reuters,
#: RiskMetrics Technical Document, 4th ed. 1996, section 5.3: lambda = 0.94 for daily data).
#: Scaled to other period lengths so that the half-life stays the same in days.
EWMA_DECAY = 0.94
_OHLC = ("open", "high", "low", "close")


def replay(
    venue: VenueBook,
    prices: pd.DataFrame | Mapping[str, pd.DataFrame],
    models: Mapping[str, Any] | None = None,
    *,
    loss_model: LossModel | str | None = None,
    fee_rate: float | None = None,
) -> pd.DataFrame:
    """The venue's book replayed over a real price history, from the steady state at the first price.

    Parameters
    ----------
    venue : VenueBook
    prices : DataFrame or mapping of market -> DataFrame
        Either closes (one column per venue market, a DatetimeIndex of equally spaced periods,
        daily or hourly) or, per market, a DataFrame with ``open``, ``high``, ``low``, ``close``
        columns (OHLC: the intraday extremes then trigger liquidations; without them the model
        uses its fallback). All markets must share the same index. On a sub-daily clock the
        loss model counts its days from UTC midnight: missing periods (before the first one's
        midnight, and in gaps) are run as flat periods and left out of the result.
    models : mapping of market -> VolModel, optional
        Conditional volatility from each fitted model (its ``conditional_volatility()`` on the
        replay's dates, which must be inside the model's fit sample). Default: an exponentially
        weighted estimate from the closes (:func:`ewma_volatility`), known at each period's open.
    loss_model : LossModel or str, default the registry's default (the stateful book)
    fee_rate : float, optional
        The liquidation fee the venue charges, for ``fee_income`` = fee_rate x premium base.
        Default: the loss model's ``fee_cap`` (0.0125 for the stateful book), else 0.

    Returns
    -------
    DataFrame
        Indexed by (time, market), one row per period after the first price and market, columns
        ``liquidated`` (notional, both sides), ``fund_loss`` (what the fund pays),
        ``fee_income``, ``premium_base``, ``winners`` (profit of the favoured side),
        ``open_interest`` (per side, at the period's open; NaN for models that do not report it),
        ``return``, ``low``, ``high`` (log, against the previous close) and ``volatility``.
        Currency units of the venue's open interest.
    """
    if not isinstance(venue, VenueBook):
        raise SpecificationError(f"venue must be a VenueBook, got {type(venue).__name__}")
    model = registry.loss_model(registry.DEFAULT_LOSS_MODEL if loss_model is None else loss_model) \
        if loss_model is None or isinstance(loss_model, str) else loss_model
    closes, lows, highs = _frames(venue, prices)
    if len(closes) < 2:
        raise DataError(f"replay needs at least two prices, got {len(closes)}")
    period = _period(closes.index)
    period_days = period / pd.Timedelta(days=1)
    log_close = np.log(closes)
    returns = log_close.diff().iloc[1:]
    low = None if lows is None else (np.log(lows).iloc[1:] - log_close.shift().iloc[1:])
    high = None if highs is None else (np.log(highs).iloc[1:] - log_close.shift().iloc[1:])
    if models is None:
        vol = ewma_volatility(log_close.diff(), period_days=period_days).iloc[1:]
    else:
        vol = _model_volatility(models, venue, returns.index)
    rate = fee_rate if fee_rate is not None else float(getattr(model, "fee_cap", 0.0))
    if not (math.isfinite(rate) and 0.0 <= rate < 1.0):
        raise SpecificationError(f"fee_rate must be in [0, 1), got {fee_rate!r}")
    reference = _long_run(log_close, vol, period_days)
    # the loss model's days are blocks of 1 / period_days periods from its first: on a sub-daily
    # clock the replay runs on a whole-day grid (flat periods before the first and in the gaps),
    # so its days are UTC days, and reports the data's own periods only
    keep, (returns_run, low_run, high_run, vol_run) = _day_grid(period, period_days, returns, low, high, vol)
    frames = []
    for market in venue.markets:
        name = market.name
        kwargs: dict[str, Any] = {}
        if low_run is not None and registry.excursion_keywords(model) >= {"low", "high"}:
            r = returns_run[name].to_numpy()[None, :]
            kwargs = {"low": np.minimum(low_run[name].to_numpy()[None, :], np.minimum(r, 0.0)),
                      "high": np.maximum(high_run[name].to_numpy()[None, :], np.maximum(r, 0.0))}
        arguments = dict(period_days=period_days, long_run_volatility=reference[name], **kwargs)
        paths = returns_run[[name]].to_numpy().T, vol_run[[name]].to_numpy().T
        run = getattr(model, "run", None)
        if callable(run):
            out = run(market, *paths, **arguments)
            oi = out["open_interest_long"][0] + out["open_interest_short"][0]
        else:
            out = model(market, *paths, **arguments)
            out = (out if isinstance(out, VenueLosses) else VenueLosses(*out))._asdict()
            oi = np.full(paths[0].shape[1], np.nan)
        out = {key: value[:, keep] if isinstance(value, np.ndarray) and value.ndim == 2 else value
               for key, value in out.items()}
        oi = oi[keep]
        if kwargs:
            kwargs = {key: value[:, keep] for key, value in kwargs.items()}
        frame = pd.DataFrame({
            "liquidated": np.nan if out.get("liquidated") is None else out["liquidated"][0],
            "fund_loss": out["loss"][0],
            "fee_income": rate * out["premium_base"][0],
            "premium_base": out["premium_base"][0],
            "winners": np.nan if out.get("winners") is None else out["winners"][0],
            "open_interest": oi / 2.0,
            "return": returns[name].to_numpy(),
            "low": kwargs["low"][0] if kwargs else np.nan,
            "high": kwargs["high"][0] if kwargs else np.nan,
            "volatility": vol[name].to_numpy(),
        }, index=returns.index)
        frame["market"] = name
        frames.append(frame)
    table = pd.concat(frames).set_index("market", append=True).sort_index()
    table.index.names = ["time", "market"]
    return table


def _day_grid(period: pd.Timedelta, period_days: float, *frames: pd.DataFrame | None
              ) -> tuple[np.ndarray, tuple[pd.DataFrame | None, ...]]:
    """The frames (returns, low, high, volatility) on a grid of whole days for sub-daily periods.

    The grid runs from the first period's UTC midnight in steps of ``period``; periods the data
    lack (before its first and in its gaps) are flat (no move, no range) and carry the nearest
    volatility. Returns the mask of the data's own periods and the frames on the grid. Daily or
    longer clocks, and timestamps off such a grid, are left as they are.
    """
    index = frames[0].index
    keep = np.ones(len(index), dtype=bool)
    if period_days >= 1.0 or len(index) == 0:
        return keep, frames
    first = index[0].floor("D")
    steps = (index - first) / period
    if not np.allclose(steps, np.round(steps)) or (index[-1] - first) / period > 50 * len(index):
        return keep, frames
    grid = pd.date_range(first, index[-1], freq=period)
    if len(grid) == len(index):
        return keep, frames
    keep = grid.isin(index)
    out = []
    for k, frame in enumerate(frames):
        if frame is None:
            out.append(None)
        elif k == len(frames) - 1:  # volatility: the nearest known value
            out.append(frame.reindex(grid).ffill().bfill())
        else:  # returns, low, high: a flat period
            out.append(frame.reindex(grid, fill_value=0.0))
    return keep, tuple(out)


def _long_run(log_close: pd.DataFrame, vol: pd.DataFrame, period_days: float) -> dict[str, float]:
    """Each market's long-run volatility per period: the median of the replay's volatility.

    For periods shorter than a day it is measured on the day bars (the closes at each UTC day's
    end, their daily EWMA volatility's median, scaled to a period): the loss model reads sigma_ref
    as a daily figure, and the median of an hourly EWMA scaled by sqrt(24) is not the median of a
    daily one (hourly returns are far more kurtotic), so the same days would count as turbulent
    at one clock and not at the other.
    """
    if period_days >= 1.0:
        return {name: float(np.nanmedian(vol[name])) for name in vol.columns}
    days = log_close.groupby(log_close.index.floor("D")).last()
    if len(days) < 3:  # too short to have days: the periods' own median
        return {name: float(np.nanmedian(vol[name])) for name in vol.columns}
    daily = ewma_volatility(days.diff(), period_days=1.0).iloc[1:]
    return {name: float(np.nanmedian(daily[name])) * math.sqrt(period_days) for name in vol.columns}


def ewma_volatility(returns: pd.DataFrame, *, period_days: float = 1.0, decay: float = EWMA_DECAY,
                    warmup: int = 30) -> pd.DataFrame:
    """Exponentially weighted volatility known at each period's open (RiskMetrics).

    sigma_t^2 = lambda' sigma_{t-1}^2 + (1 - lambda') r_{t-1}^2 with lambda' = decay**period_days
    (the same half-life in days), started at the mean square of the first ``warmup`` returns.
    """
    lam = decay ** period_days
    values = returns.to_numpy(dtype=np.float64)
    out = np.full(values.shape, np.nan)
    finite = np.where(np.isfinite(values), values, 0.0)
    variance = np.nanmean(values[: max(2, warmup)] ** 2, axis=0)
    for t in range(values.shape[0]):
        out[t] = np.sqrt(variance)
        variance = lam * variance + (1.0 - lam) * finite[t] ** 2
    return pd.DataFrame(out, index=returns.index, columns=returns.columns)


def _frames(venue: VenueBook, prices: Any) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
    names = venue.names
    if isinstance(prices, pd.DataFrame):
        missing = [m for m in names if m not in prices.columns]
        if missing:
            raise DataError(f"prices have no column for venue market(s) {missing}; columns: {list(prices.columns)}")
        return _checked(prices[list(names)], "prices"), None, None
    if not isinstance(prices, Mapping):
        raise DataError(f"prices must be a DataFrame of closes or a mapping market -> OHLC DataFrame, "
                        f"got {type(prices).__name__}")
    parts = {}
    for name in names:
        if name not in prices:
            raise DataError(f"prices have no entry for venue market {name!r}; given: {list(prices)}")
        frame = prices[name]
        if not isinstance(frame, pd.DataFrame):
            raise DataError(f"prices[{name!r}] must be a DataFrame with open/high/low/close columns")
        columns = {str(c).lower(): c for c in frame.columns}
        lacking = [c for c in _OHLC if c not in columns]
        if lacking:
            raise DataError(f"prices[{name!r}] lacks column(s) {lacking} (needs open, high, low, close)")
        parts[name] = frame[[columns[c] for c in _OHLC]].set_axis(list(_OHLC), axis=1)
    index = parts[names[0]].index
    for name in names[1:]:
        if not parts[name].index.equals(index):
            raise DataError(f"prices[{name!r}] has other timestamps than prices[{names[0]!r}]; align them first")
    wide = {c: pd.DataFrame({n: parts[n][c] for n in names}) for c in _OHLC}
    for c in _OHLC:
        _checked(wide[c], f"prices ({c})")
    bad = (wide["low"] > np.minimum(wide["open"], wide["close"]) * (1 + 1e-9)) | \
          (wide["high"] < np.maximum(wide["open"], wide["close"]) * (1 - 1e-9))
    if bad.to_numpy().any():
        when, name = bad.stack()[bad.stack()].index[0]
        raise DataError(f"prices[{name!r}] at {when}: low above min(open, close) or high below max(open, close)")
    return wide["close"], wide["low"], wide["high"]


def _checked(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise DataError(f"{what} must have a DatetimeIndex, got {type(frame.index).__name__}")
    if not frame.index.is_monotonic_increasing or frame.index.has_duplicates:
        raise DataError(f"{what}: timestamps must be strictly increasing")
    values = frame.to_numpy(dtype=np.float64)
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(f"{what}[{frame.columns[col]!r}] at {frame.index[row]}: price must be finite and > 0, "
                        f"got {values[row, col]!r}")
    return frame.astype(np.float64)


def _period(index: pd.DatetimeIndex) -> pd.Timedelta:
    step = pd.Series(index[1:] - index[:-1]).median()  # a Timedelta whatever the index's resolution
    if step <= pd.Timedelta(0):
        raise DataError("prices: timestamps must be strictly increasing")
    return step


def _model_volatility(models: Mapping[str, Any], venue: VenueBook, index: pd.DatetimeIndex) -> pd.DataFrame:
    out = {}
    for name in venue.names:
        if name not in models:
            raise SpecificationError(f"models has no volatility model for venue market {name!r}")
        series = models[name].conditional_volatility()
        missing = index.difference(series.index)
        if len(missing):
            raise DataError(f"models[{name!r}] has no fitted volatility at {missing[0]} (outside its fit sample); "
                            f"replay without models= to use an EWMA estimate")
        out[name] = series.reindex(index)
    return pd.DataFrame(out, index=index)
