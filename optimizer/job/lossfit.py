"""``fundguard loss-fit``: fit the stateful book to a venue's own data and write ``loss_model.json``.

Input: per period and market the venue's open interest (per side, at the period's open), the
notional liquidated on each side, and optionally the insurance fund's payouts (``fund_loss``) and
its liquidation-fee income (``fee_income``); optionally a snapshot of positions (market, side,
``distance`` to liquidation as a fraction of price or ``leverage``, notional); and the markets' OHLC
bars over the same periods.

Notes
-----
The fit runs in three stages, each conditional on the ones before it (the liquidated notional does
not depend on the overshoot, and the open interest's recovery does not depend on the distances):

1. ``half_life_days`` from the open interest's recovery. In the book every period a fraction
   lambda of the survivors closes and lambda x OI* reopens, so per side
   ``OI_{t+1} = (1 - lambda) (OI_t - L_t / 2) + lambda OI*`` exactly (L_t both sides' liquidated
   notional): ordinary least squares of OI_{t+1} on OI_t - L_t / 2 with one intercept (lambda
   OI*) per market; half-life = period_days ln 2 / -ln(1 - lambda).
2. The distance laws. With snapshots: ``distance_scale`` and ``distance_spread`` by maximum
   likelihood (notional-weighted) of the tier mixture of lognormal distances (median rho D_k,
   log sd s, weights w_k of the ladder), then ``fresh_scale`` by least squares on log liquidated
   shares. Without: the three by least squares on log liquidated shares.
3. ``overshoot`` by least squares on log fund-loss shares (and log fee-income shares when given),
   only when ``fund_loss`` is given; otherwise it keeps the base model's value (marked "not fitted").

Least squares on log shares is maximum likelihood under multiplicative lognormal errors, the
natural law for feeds that undercount by a factor (shared/data/README.md: "liquidation feeds
undercount"). A share is ``x / OI_t``; ``log(share + floor)`` with the floors below keeps calm
periods (no liquidations) from dominating.

Intervals: a moving-block bootstrap over periods (blocks of ``ceil(n ** (1/3))`` periods, the
order of the optimal block length for variance estimation: Hall, Horowitz & Jing 1995,
Biometrika 82(3), 561-574). Stage 1 is refitted exactly on each replicate; stages 2-3 take one
Gauss-Newton step from the estimate with the replicate's block weights and the Jacobian at the
estimate (the k-step bootstrap of Andrews 2002, Econometrica 70(1), 119-162, with k = 1), so the
bootstrap costs no further replays and its time is bounded by the fit's. Snapshot estimates are
refitted on positions resampled with replacement. Percentile intervals at ``confidence``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import least_squares, minimize
from scipy.special import ndtr

from fundguard.models.errors import DataError, SpecificationError
from fundguard.models.venue import DEFAULT_BOOK, DEFAULT_TIERS, LeverageTier, Market, StatefulBook, VenueBook, replay

from .losscheck import DEFAULT_TURNOVER
from .outputs import atomic_write_text, check_output_file, output_write_error, package_versions, sha256_file

__all__ = ["LossFit", "fit_loss_model", "read_venue_data", "read_snapshots", "write_loss_model",
           "check_loss_model_output", "VENUE_COLUMNS", "SNAPSHOT_COLUMNS", "SHARE_FLOOR", "LOSS_FLOOR",
           "DEFAULT_CONFIDENCE"]

#: Columns the venue file must have; ``fund_loss`` and ``fee_income`` are optional.
VENUE_COLUMNS = ("time", "market", "open_interest", "liquidated_long", "liquidated_short")
#: Columns of a snapshot file, with ``leverage`` or ``distance``.
SNAPSHOT_COLUMNS = ("market", "side", "notional")
#: Floor of the liquidated share in the log residuals: 1e-4 of open interest, a handful of
#: positions in a large book, below which a day's liquidations are feed noise rather than signal.
SHARE_FLOOR = 1e-4
#: Floor of the fund-loss and fee-income shares: 1e-6 of open interest (a fund loss of 1,000 on
#: a book of 1bn), about the smallest payout a venue reports.
LOSS_FLOOR = 1e-6
#: Coverage of the bootstrap intervals.
DEFAULT_CONFIDENCE = 0.90
_FITTED = ("distance_scale", "distance_spread", "fresh_scale", "overshoot", "half_life_days")


@dataclass(frozen=True)
class LossFit:
    """A fitted stateful book and what is known about each parameter.

    Attributes
    ----------
    model : StatefulBook
    parameters : dict of name -> {"value", "interval" ((low, high) or None), "method"}
    markets : tuple of str
    periods : int, the venue periods used
    period_days : float
    confidence : float, of the intervals
    bootstrap : int, replicates
    block_periods : int, moving-block length
    seed : int
    residual_sd : dict of stage -> float, root mean square of the log residuals
    """

    model: StatefulBook
    parameters: dict[str, dict[str, Any]]
    markets: tuple[str, ...]
    periods: int
    period_days: float
    confidence: float
    bootstrap: int
    block_periods: int
    seed: int
    residual_sd: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The ``fit`` section of loss_model.json."""
        return {"parameters": {k: {"value": v["value"], "interval": None if v["interval"] is None else list(v["interval"]),
                                   "method": v["method"]} for k, v in self.parameters.items()},
                "markets": list(self.markets), "periods": self.periods, "period_days": self.period_days,
                "confidence": self.confidence, "bootstrap": self.bootstrap, "block_periods": self.block_periods,
                "seed": self.seed, "residual_sd": self.residual_sd}


# -- inputs ------------------------------------------------------------------------------------------
def _read_csv(source: Any, what: str) -> tuple[pd.DataFrame, str]:
    if isinstance(source, pd.DataFrame):
        return source.copy(), what
    where = f"{what} file {os.fspath(source)!r}"
    try:
        return pd.read_csv(source, dtype=str, keep_default_na=False), where
    except FileNotFoundError:
        raise DataError(f"{where} does not exist") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{where} is not a readable CSV: {' '.join(str(exc).split())}") from None


def _numbers(frame: pd.DataFrame, column: str, where: str, *, positive: bool = False) -> np.ndarray:
    values = []
    for i, text in enumerate(frame[column]):
        text = str(text).strip()
        try:
            value = float(text)
        except ValueError:
            raise DataError(f"{where}, line {i + 2}: {column} {text!r} is not a number") from None
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            raise DataError(f"{where}, line {i + 2}: {column} must be a finite number {'> 0' if positive else '>= 0'}, "
                            f"got {text!r}")
        values.append(value)
    return np.asarray(values, dtype=np.float64)


def read_venue_data(source: str | os.PathLike[str] | pd.DataFrame) -> pd.DataFrame:
    """A venue's per-period data, validated.

    ``time`` labels a period as the price bars do (by its opening time: a day's date for daily
    data); ``open_interest`` is per side at the period's open; the liquidated columns are the
    notional liquidated on each side during the period.

    Returns
    -------
    DataFrame
        Indexed by (time (UTC), market), sorted; float columns ``open_interest`` (per side, > 0),
        ``liquidated_long``, ``liquidated_short`` and, when present, ``fund_loss``, ``fee_income``
        (currency units, >= 0).

    Raises
    ------
    DataError
        A missing column (named), an unparsable time or number (column and line), a (time,
        market) given twice.
    """
    frame, where = _read_csv(source, "venue data")
    missing = [c for c in VENUE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing}; found {list(frame.columns)}")
    out = pd.DataFrame({"market": frame["market"].astype(str).str.strip().str.upper()})
    times = pd.to_datetime(frame["time"].astype(str).str.strip(), utc=True, errors="coerce", format="mixed")
    if times.isna().any():
        i = int(np.flatnonzero(times.isna())[0])
        raise DataError(f"{where}, line {i + 2}: time {frame['time'].iloc[i]!r} is not a date/time")
    out["time"] = times.to_numpy()
    out["time"] = pd.to_datetime(out["time"], utc=True)
    for column in VENUE_COLUMNS[2:] + tuple(c for c in ("fund_loss", "fee_income") if c in frame.columns):
        out[column] = _numbers(frame, column, where, positive=column == "open_interest")
    duplicated = out.duplicated(["time", "market"])
    if duplicated.any():
        i = int(np.flatnonzero(duplicated)[0])
        raise DataError(f"{where}, line {i + 2}: market {out['market'].iloc[i]!r} at {out['time'].iloc[i]} given twice")
    if out.empty:
        raise DataError(f"{where} has no rows")
    return out.set_index(["time", "market"]).sort_index()


def read_snapshots(source: str | os.PathLike[str] | pd.DataFrame,
                   tiers: Sequence[LeverageTier] = DEFAULT_TIERS) -> pd.DataFrame:
    """Position snapshots: ``market, side, distance or leverage, notional``.

    ``distance`` is the simple adverse move to the position's liquidation price (a fraction: 0.1
    for 10%); a long at 1 or more has no liquidation price (a censored observation in the fit); a
    ``leverage`` (notional / equity) is read as distance ``1/leverage - m`` with m the
    maintenance margin of the ladder tier nearest in log leverage.

    Returns
    -------
    DataFrame with ``market`` (upper case), ``side`` ("long"/"short"), ``distance`` (> 0), ``notional`` (> 0).
    """
    frame, where = _read_csv(source, "snapshots")
    missing = [c for c in SNAPSHOT_COLUMNS if c not in frame.columns]
    if "distance" not in frame.columns and "leverage" not in frame.columns:
        missing.append("distance or leverage")
    if missing:
        raise DataError(f"{where}: missing column(s) {missing}; found {list(frame.columns)}")
    sides = frame["side"].astype(str).str.strip().str.lower()
    bad = ~sides.isin(["long", "short"])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{where}, line {i + 2}: side must be 'long' or 'short', got {frame['side'].iloc[i]!r}")
    if "distance" in frame.columns:
        distance = _numbers(frame, "distance", where, positive=True)
    else:
        leverage = _numbers(frame, "leverage", where, positive=True)
        tier_lev = np.log([t.leverage for t in tiers])
        margin = np.array([t.maintenance_margin for t in tiers])[np.abs(np.log(leverage)[:, None] - tier_lev).argmin(axis=1)]
        distance = 1.0 / leverage - margin
        if (distance <= 0).any():
            i = int(np.flatnonzero(distance <= 0)[0])
            raise DataError(f"{where}, line {i + 2}: leverage {leverage[i]:g} leaves no distance to liquidation "
                            f"(maintenance margin {margin[i]:g})")
    return pd.DataFrame({"market": frame["market"].astype(str).str.strip().str.upper(), "side": sides.to_numpy(),
                         "distance": distance, "notional": _numbers(frame, "notional", where, positive=True)})


# -- the fit ----------------------------------------------------------------------------------------
def fit_loss_model(
    venue: pd.DataFrame,
    prices: Mapping[str, pd.DataFrame],
    *,
    snapshots: pd.DataFrame | None = None,
    turnover: float = DEFAULT_TURNOVER,
    base: StatefulBook = DEFAULT_BOOK,
    bootstrap: int = 200,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> LossFit:
    """Fit the stateful book's parameters to a venue's data (module notes: stages, estimators, intervals).

    Parameters
    ----------
    venue : DataFrame, as :func:`read_venue_data` returns
    prices : mapping of market -> OHLC bars (:func:`~fundguard.optimizer.job.losscheck.read_ohlc`)
        Every venue market needs bars at every venue time and one period before the first.
    snapshots : DataFrame, optional, as :func:`read_snapshots` returns
    turnover : float > 0, default 3.0
        ADV / open interest of the replayed book (``losscheck.DEFAULT_TURNOVER``); matters for the
        impact, so for the overshoot stage only.
    base : StatefulBook, default the shipped defaults
        Where the optimiser starts, and the values of what is not fitted (``fee_cap``, the flags).
    bootstrap : int >= 0, default 200
    confidence : float in (0, 1), default 0.90
    seed : int >= 0, default 0

    Returns
    -------
    LossFit

    Raises
    ------
    SpecificationError
        A venue market without prices, a price market the venue does not have, a bad option.
    DataError
        Bars missing at a venue time (market and time named), periods of unequal length.
    """
    if not (isinstance(turnover, (int, float)) and math.isfinite(turnover) and turnover > 0):
        raise SpecificationError(f"turnover must be a number > 0, got {turnover!r}")
    if not 0 < confidence < 1:
        raise SpecificationError(f"confidence must be in (0, 1), got {confidence!r}")
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, (int, np.integer)) or bootstrap < 0:
        raise SpecificationError(f"bootstrap must be an integer >= 0, got {bootstrap!r}")
    markets = tuple(sorted(set(venue.index.get_level_values("market"))))
    unknown = sorted(set(prices) - set(markets))
    if unknown:
        raise SpecificationError(f"prices for market(s) {unknown} that the venue data does not have "
                                 f"(markets: {list(markets)})")
    lacking = [m for m in markets if m not in prices]
    if lacking:
        raise SpecificationError(f"venue market(s) {lacking} have no prices; give --prices {lacking[0]}=FILE")
    data = {m: venue.xs(m, level="market") for m in markets}
    period = _period(data, prices)
    period_days = period / pd.Timedelta(days=1)
    windows = {m: _window(m, data[m], prices[m], period) for m in markets}
    n = sum(len(d) for d in data.values())
    block = max(1, math.ceil(n ** (1.0 / 3.0)))
    rng = np.random.default_rng(seed)
    weights = [_block_weights(n, block, rng) for _ in range(bootstrap)]
    alpha = (1.0 - confidence) / 2.0
    estimates: dict[str, dict[str, Any]] = {}
    residual_sd: dict[str, float] = {}

    # stage 1: OI_{t+1} = (1 - lambda)(OI_t - L_t / 2) + lambda OI*, OLS with one intercept per market
    half_life, replicates = _fit_half_life(data, period_days, n, weights)
    estimates["half_life_days"] = _entry(half_life, replicates, alpha, "OLS of the open interest's recovery "
                                         "(module notes, stage 1); moving-block bootstrap, refitted")
    params = dict(base.parameters(), half_life_days=half_life)

    # stage 2: distance laws
    shares = np.concatenate([(d["liquidated_long"] + d["liquidated_short"]).to_numpy() / d["open_interest"].to_numpy()
                             for d in data.values()])
    target = np.log(shares + SHARE_FLOOR)

    def liquidated_residuals(x: np.ndarray, names: tuple[str, ...], fixed: dict[str, Any]) -> np.ndarray:
        table = _replay(windows, turnover, period, dict(fixed, **dict(zip(names, np.exp(x)))))
        model = np.concatenate([(t["liquidated"] / t["open_interest"]).to_numpy() for t in table.values()])
        return np.log(model + SHARE_FLOOR) - target

    if snapshots is not None:
        scale, spread, boot = _fit_snapshots(snapshots, markets, base, params, bootstrap, rng)
        method = "maximum likelihood on the snapshot's distances (notional-weighted tier mixture); bootstrap of positions"
        estimates["distance_scale"] = _entry(scale, boot[:, 0], alpha, method)
        estimates["distance_spread"] = _entry(spread, boot[:, 1], alpha, method)
        params.update(distance_scale=scale, distance_spread=spread)
        names: tuple[str, ...] = ("fresh_scale",)
    else:
        names = ("distance_scale", "distance_spread", "fresh_scale")
    upstream = {"half_life_days": replicates}
    if snapshots is not None:
        upstream.update(distance_scale=boot[:, 0], distance_spread=boot[:, 1])
    x, boot, rms = _least_squares(liquidated_residuals, names, params, weights, upstream=upstream,
                                  bounds=(np.log([0.05, 0.02, 0.05][-len(names):]),
                                          np.log([100.0, 4.9, 100.0][-len(names):])))
    residual_sd["liquidated_share"] = rms
    for i, name in enumerate(names):
        upstream[name] = np.exp(boot[:, i])
    for i, name in enumerate(names):
        estimates[name] = _entry(float(np.exp(x[i])), np.exp(boot[:, i]), alpha,
                                 "least squares on log liquidated shares; block bootstrap, one Gauss-Newton step")
        params[name] = float(np.exp(x[i]))

    # stage 3: overshoot from fund losses (and fee income)
    loss_columns = [c for c in ("fund_loss", "fee_income") if c in venue.columns]
    if "fund_loss" in venue.columns:
        targets = {c: np.log(np.concatenate([d[c].to_numpy() / d["open_interest"].to_numpy() for d in data.values()])
                             + LOSS_FLOOR) for c in loss_columns}

        def loss_residuals(x: np.ndarray, names: tuple[str, ...], fixed: dict[str, Any]) -> np.ndarray:
            table = _replay(windows, turnover, period, dict(fixed, overshoot=float(x[0])))
            out = []
            for column in loss_columns:
                model = np.concatenate([(t[column] / t["open_interest"]).to_numpy() for t in table.values()])
                out.append(np.log(model + LOSS_FLOOR) - targets[column])
            return np.concatenate(out)

        stacked = [np.tile(w, len(loss_columns)) for w in weights]
        x, boot, rms = _least_squares(loss_residuals, ("overshoot",), params, stacked,
                                      bounds=(np.array([0.0]), np.array([1.0])), log=False, upstream=upstream)
        residual_sd["loss_share"] = rms
        estimates["overshoot"] = _entry(float(x[0]), boot[:, 0], alpha,
                                        f"least squares on log {' and '.join(loss_columns)} shares; block bootstrap, "
                                        "one Gauss-Newton step")
        params["overshoot"] = float(x[0])
    else:
        estimates["overshoot"] = {"value": params["overshoot"], "interval": None,
                                  "method": "not fitted (no fund_loss column): the base model's value"}
    for name in ("fee_cap", "range_volatility", "volume_response"):
        estimates[name] = {"value": params[name], "interval": None, "method": "not fitted: the base model's value"}
    params["source"] = "fundguard loss-fit (venue data)"
    ordered = {k: estimates[k] for k in (*_FITTED, "fee_cap", "range_volatility", "volume_response")}
    return LossFit(model=StatefulBook(**params), parameters=ordered, markets=markets, periods=n, period_days=period_days,
                   confidence=confidence, bootstrap=int(bootstrap), block_periods=block, seed=int(seed),
                   residual_sd=residual_sd)


def _period(data: Mapping[str, pd.DataFrame], prices: Mapping[str, pd.DataFrame]) -> pd.Timedelta:
    steps = set()
    for market, frame in data.items():
        if len(frame) < 3:
            raise DataError(f"venue data: market {market!r} has {len(frame)} period(s); the fit needs at least 3")
        step = pd.Series(frame.index[1:] - frame.index[:-1])
        if (step != step.iloc[0]).any():
            i = int(np.flatnonzero(step != step.iloc[0])[0])
            raise DataError(f"venue data: market {market!r} skips or repeats a period at {frame.index[i + 1]} "
                            f"(periods must be consecutive, every {step.iloc[0]})")
        steps.add(step.iloc[0])
        bar = pd.Series(prices[market].index[1:] - prices[market].index[:-1]).median()
        if bar != step.iloc[0]:
            raise DataError(f"prices {market!r}: bars every {bar}, the venue data's periods every {step.iloc[0]}")
    if len(steps) > 1:
        raise DataError(f"venue data: markets have different period lengths {sorted(steps)}")
    return steps.pop()


def _window(market: str, frame: pd.DataFrame, bars: pd.DataFrame, period: pd.Timedelta) -> pd.DataFrame:
    wanted = frame.index.insert(0, frame.index[0] - period)
    missing = wanted.difference(bars.index)
    if len(missing):
        raise DataError(f"prices {market!r} have no bar at {missing[0]} (venue data from {frame.index[0]} "
                        f"to {frame.index[-1]} needs bars from {wanted[0]})")
    return bars.loc[wanted]


def _replay(windows: Mapping[str, pd.DataFrame], turnover: float, period: pd.Timedelta,
            params: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    model = StatefulBook(**params)
    out = {}
    for market, window in windows.items():
        venue = VenueBook([Market(market, open_interest=1.0, daily_volume=turnover)])
        out[market] = replay(venue, {market: window}, loss_model=model).xs(market, level="market")
    return out


def _block_weights(n: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """How many times each of n periods appears in one moving-block bootstrap sample."""
    counts = np.zeros(n)
    starts = rng.integers(0, n - block + 1, size=math.ceil(n / block))
    for s in starts:
        counts[s:s + block] += 1.0
    return counts * (n / counts.sum())


def _fit_half_life(data: Mapping[str, pd.DataFrame], period_days: float, n: int,
                   weights: list[np.ndarray]) -> tuple[float, np.ndarray]:
    ys, xs, groups, rows = [], [], [], []
    offset = 0
    for g, frame in enumerate(data.values()):
        oi = frame["open_interest"].to_numpy()
        after = oi - (frame["liquidated_long"].to_numpy() + frame["liquidated_short"].to_numpy()) / 2.0
        ys.append(oi[1:])
        xs.append(after[:-1])
        groups.append(np.full(len(oi) - 1, g))
        rows.append(offset + np.arange(len(oi) - 1))
        offset += len(oi)
    y, x, group, row = (np.concatenate(a) for a in (ys, xs, groups, rows))
    design = np.column_stack([x, (group[:, None] == np.arange(len(data))[None, :]).astype(float)])

    def slope(w: np.ndarray) -> float:
        sw = np.sqrt(w)
        coef = np.linalg.lstsq(design * sw[:, None], y * sw, rcond=None)[0]
        return float(coef[0])

    def half_life(a: float) -> float:
        return period_days * math.log(2.0) / -math.log(a) if 0 < a < 1 else (math.inf if a >= 1 else math.nan)

    a = slope(np.ones_like(y))
    if not 0 < a < 1:
        raise DataError(f"venue data: the open interest does not relax toward a level (recovery slope {a:.4g}, "
                        "expected in (0, 1)); fit over a window where it does not trend")
    return half_life(a), np.array([half_life(slope(w[row])) for w in weights])


def _mixture_nll(theta: np.ndarray, log_d: np.ndarray, weight: np.ndarray, log_nominal: np.ndarray,
                 shares: np.ndarray, censored: np.ndarray) -> float:
    """Notional-weighted negative log-likelihood of log distances under the tier mixture; a censored
    position (a long without liquidation price) contributes P(d >= 1) (the constant 1/d is left out)."""
    log_rho, log_s = theta
    s = math.exp(log_s)
    z = (log_d[:, None] - log_rho - log_nominal[None, :]) / s
    density = (shares[None, :] * np.exp(-0.5 * z * z)).sum(axis=1) / (s * math.sqrt(2 * math.pi))
    survival = (shares[None, :] * ndtr(-z)).sum(axis=1)
    value = np.where(censored, survival, density)
    return -float(np.sum(weight * np.log(np.maximum(value, 1e-300))))


def _fit_snapshots(snapshots: pd.DataFrame, markets: tuple[str, ...], base: StatefulBook, params: dict[str, Any],
                   bootstrap: int, rng: np.random.Generator) -> tuple[float, float, np.ndarray]:
    unknown = sorted(set(snapshots["market"]) - set(markets))
    if unknown:
        raise SpecificationError(f"snapshots name market(s) {unknown} the venue data does not have "
                                 f"(markets: {list(markets)})")
    distance = snapshots["distance"].to_numpy()
    censored = (snapshots["side"].to_numpy() == "long") & (distance >= 1.0)
    log_d = np.log(np.where(censored, 1.0, distance))
    notional = snapshots["notional"].to_numpy()
    weight = notional / notional.mean()
    log_nominal = np.log([t.distance for t in DEFAULT_TIERS])
    shares = np.array([t.share for t in DEFAULT_TIERS])
    start = np.log([params["distance_scale"], params["distance_spread"]])

    def fit(idx: np.ndarray) -> np.ndarray:
        found = minimize(_mixture_nll, start, args=(log_d[idx], weight[idx], log_nominal, shares, censored[idx]),
                         method="Nelder-Mead",
                         options={"xatol": 1e-6, "fatol": 1e-9, "maxiter": 2000})
        return np.exp(found.x)

    best = fit(np.arange(len(log_d)))
    boot = np.array([fit(rng.integers(0, len(log_d), size=len(log_d))) for _ in range(bootstrap)]).reshape(-1, 2)
    return float(best[0]), float(best[1]), boot


def _least_squares(residuals, names: tuple[str, ...], params: dict[str, Any], weights: list[np.ndarray], *,
                   bounds: tuple[np.ndarray, np.ndarray], log: bool = True,
                   upstream: Mapping[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Least squares over ``names`` (log coordinates when ``log``), then one Gauss-Newton step per
    bootstrap replicate. ``upstream``: replicates of parameters estimated in earlier stages (name ->
    values, positive): a replicate's residuals are r + J_up (log u*_b - log u), the linear
    propagation of the earlier stages' sampling error into this one."""
    start = np.array([params[k] for k in names], dtype=float)
    start = np.log(start) if log else start
    start = np.clip(start, bounds[0] + 1e-6, bounds[1] - 1e-6)
    found = least_squares(residuals, start, args=(names, params), bounds=bounds, diff_step=1e-2, x_scale=1.0,
                          xtol=1e-6, ftol=1e-8)
    x, r, J = found.x, found.fun, found.jac
    fitted = dict(params, **{k: float(np.exp(v) if log else v) for k, v in zip(names, x)})
    shifts = np.zeros((len(weights), len(r)))
    for name, replicates in (upstream or {}).items():
        # d r / d log(upstream) by a forward difference of 1% in the upstream parameter
        moved = dict(fitted, **{name: fitted[name] * math.exp(1e-2)})
        column = (residuals(x, names, moved) - r) / 1e-2
        delta = np.log(np.asarray(replicates, dtype=float)) - math.log(fitted[name])
        shifts += np.where(np.isfinite(delta), delta, 0.0)[:, None] * column[None, :]
    boot = []
    for w, shift in zip(weights, shifts):
        # one Gauss-Newton step on the reweighted objective sum w r^2 from x (Andrews 2002, k = 1)
        JW = J * w[:, None]
        step = np.linalg.lstsq(JW.T @ J, JW.T @ (r + shift), rcond=None)[0]
        boot.append(np.clip(x - step, bounds[0], bounds[1]))
    return x, np.array(boot).reshape(-1, len(names)), float(np.sqrt(np.mean(r * r)))


def _entry(value: float, replicates: np.ndarray, alpha: float, method: str) -> dict[str, Any]:
    finite = replicates[np.isfinite(replicates)]
    interval = None if finite.size < 2 else (float(np.quantile(finite, alpha)), float(np.quantile(finite, 1 - alpha)))
    return {"value": float(value), "interval": interval, "method": method}


# -- output ---------------------------------------------------------------------------------------------
def check_loss_model_output(path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Refuse ``path`` as loss-fit's output unless it is new, or an existing regular file and ``force``
    (a folder, a symbolic link or a missing folder are refused always); changes nothing."""
    return check_output_file(path, kind="loss model", owned=lambda _: force)


def write_loss_model(fit: LossFit, path: str | os.PathLike[str], *, inputs: Mapping[str, str | os.PathLike[str]],
                     command: str, force: bool = False) -> tuple[Path, dict[str, Any]]:
    """Write ``loss_model.json`` atomically: the model (``StatefulBook.to_dict``), the fit (intervals,
    methods) and provenance (command, UTC date, fundguard version, SHA-256 of every input file).

    Never replaces an existing file unless ``force``; raises ``OutputPlaceError`` /
    ``OutputWriteError`` naming ``path``. Returns the path and the document written.
    """
    target = check_loss_model_output(path, force=force)
    hashes = {name: {"file": os.fspath(p), "sha256": sha256_file(p)} for name, p in inputs.items()}
    provenance = {"command": command, "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "fundguard_version": package_versions(("fundguard",))["fundguard"], "inputs": hashes}
    fresh = StatefulBook(**fit.model.parameters())
    document = fresh.to_dict(fit=fit.to_dict(), provenance=provenance)
    try:
        atomic_write_text(target, json.dumps(document, indent=2, allow_nan=False) + "\n")
    except OSError as exc:
        raise output_write_error(exc, str(target)) from exc
    return target, document
