"""Intraday excursions: how far a period's price went beyond the range from its open to its close.

A close-to-close return hides the period's path: on Binance BTC daily 2017-09..2025-12 the
intraday low touched -5% on 404 of 3,043 days, the close only on 180 (the close misses 55% of
those days). A venue's liquidations are triggered by the low (longs) and the high (shorts), so
every return path carries them (``ReturnPaths.low`` and ``ReturnPaths.high``).

Notation, per period and market: r the close-to-close log return, sigma its conditional standard
deviation (known at the period's start), ``low`` / ``high`` the log of the period's lowest / highest
price over its opening price (the previous close), and

    z = r / sigma,   w_down = (min(0, r) - low) / sigma >= 0,   w_up = (high - max(0, r)) / sigma >= 0,

the standardized close and the standardized extra wicks beyond the open-close range.

:class:`ExcursionModel` is the empirical joint law of (z, w_down, w_up): z is cut in a few buckets
(tail buckets pooled until each holds ``min_periods`` periods); in each bucket the quantiles of
w_down and of w_up at ``levels`` are kept, with the correlation of a Gaussian copula joining the
two (from their Spearman rank correlation, rho = 2 sin(pi rho_S / 6)). A draw given (r, sigma)
takes z's bucket, draws (u_down, u_up) from that copula and inverts each stored quantile function
by linear interpolation between levels, so the draws reproduce the stored quantiles exactly and
never exceed the bucket's largest observed wick. The measured dependence is weak (Spearman
between -0.12 and +0.20 in the daily buckets, -0.24 near z = 0 hourly) but kept.

:func:`bridge_excursions` is the Brownian-bridge law of the same quantities, a fallback used only
where a caller asks for it (``simulate_returns(excursions="bridge")``): with a GARCH sigma it
matches the number of BTC daily lows below -5% (380 expected vs 404 observed) but expects about
half the days below -10% (52 vs 90) and a quarter below -15% (7 vs 31); BTC + ETH: 1,070 vs
1,041, 166 vs 267, 36 vs 95. Too thin beyond about 10% (``tests/test_excursions.py`` shows it
on the data). The empirical law expects 1,020, 246 and 77 of those BTC + ETH days (within 2
standard errors; its draws stop at each bucket's largest observed wick, so it too runs thin far
out: 28 expected vs 32 observed below -20%).

:data:`DEFAULT_EXCURSIONS` is the law fitted to Binance BTC and ETH daily bars 2017-2025 (its
provenance is beside the numbers). The same law measured on the hourly bars (2020-08 .. 2021-06)
gives lows beyond 1 to 4 sigma within 10% of what the daily law predicts for those hours (the
body of the wick law differs more): see ``HOURLY_VS_DAILY``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from scipy import special, stats

from ..data import MIN_RETURNS, ohlc_paths
from ..errors import InsufficientHistoryError, NonStationaryWarning, ScenarioError, SpecificationError
from ..volatility import VolSpec, fit_volatility

__all__ = [
    "ExcursionLaw", "ExcursionModel", "BridgeExcursions", "fit_excursions", "fit_market_excursions",
    "bridge_excursions", "DEFAULT_EXCURSIONS", "DEFAULT_Z_EDGES", "DEFAULT_LEVELS", "MIN_BUCKET_PERIODS",
    "HOURLY_VS_DAILY", "ExcursionSpec", "resolve_excursions",
]

#: Inner bucket edges of z (buckets are (a, b]): finer in the body where the median wick changes
#: (0.35 sigma below z = 0, 0.2 above z = 1 on BTC daily), the tails beyond 2 sigma pooled.
DEFAULT_Z_EDGES = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0)

#: Probability levels of the stored quantiles: the body by tenths, the upper tail (the long wicks
#: that trigger liquidations) at 95, 98, 99, 99.5 and 99.9%, and the bucket's extremes at 0 and 1.
#: The levels close to 1 keep the largest wick of a bucket from being spread over the whole last
#: percent (with 743 periods in a bucket, the largest is 0.13% of its mass: between 99.9% and 1
#: the law puts 0.1% on the stretch up to it).
DEFAULT_LEVELS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 1.0)

# Resolution of the quantile look-up grid of draws (see ExcursionModel.__post_init__).
_GRID = 1000

#: Fewest periods a bucket is fitted on; a smaller one is merged into its neighbour. 100 puts
#: the 99% quantile between the two largest wicks, and keeps both tail buckets of BTC + ETH
#: daily (145 and 141 days beyond 2 sigma) as they are.
MIN_BUCKET_PERIODS = 100

#: How close the standardized hourly wick law is to the daily one: Binance BTC + ETH hourly bars
#: 2020-08-01 .. 2021-06-22 (15,576 hours), each standardized by a GARCH(1,1)-t fitted to its own
#: hourly returns, against :data:`DEFAULT_EXCURSIONS` (recomputed by
#: ``tests/test_excursions.py::test_hourly_wicks_are_close_to_the_daily_law``).
#: ``low_ratio[k]``: hours with a low at or below -k sigma, over the number the daily law
#: predicts for those hours given their closes (the daily bars themselves: 1.00, 0.98, 0.95,
#: 0.81). ``ks_down`` / ``ks_up``: the largest Kolmogorov-Smirnov distance over the z buckets
#: between the hourly wicks and the daily law (daily bars themselves: 0.048 / 0.030). The tail
#: that triggers liquidations is within 10%; the body differs more: hourly wicks are longer
#: near z = 0 (median w_down 0.41 against 0.30 for z in (0, 0.5]).
HOURLY_VS_DAILY = {"low_ratio": {1: 1.10, 2: 1.06, 3: 1.07, 4: 1.01}, "ks_down": 0.18, "ks_up": 0.20}


class ExcursionLaw(Protocol):
    """What :func:`~fundguard.models.scenarios.simulate_returns` and ``stress_paths`` need of an excursion law."""

    def draw(self, returns: np.ndarray, volatility: np.ndarray,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]: ...

    def at_level(self, returns: np.ndarray, volatility: np.ndarray,
                 level: float = 0.5) -> tuple[np.ndarray, np.ndarray]: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass(frozen=True, eq=False)
class ExcursionModel:
    """The empirical joint law of (z, w_down, w_up), bucketed on z (module notes).

    Parameters
    ----------
    z_edges : (B - 1,) float64, increasing, units of sigma
        Inner bucket edges; bucket b is (z_edges[b - 1], z_edges[b]], the outer ones open-ended.
    levels : (K,) float64, strictly increasing from 0 to 1
        Probability levels of the stored quantiles.
    down, up : (B, K) float64, >= 0 and non-decreasing along K, units of sigma
        Quantiles of w_down and w_up in each bucket at ``levels``.
    correlation : (B,) float64 in (-1, 1)
        Gaussian-copula correlation of (w_down, w_up) in each bucket.
    counts : (B,) int
        Periods each bucket was fitted on (provenance; not used by draws).
    source : str
        Where the numbers come from.
    """

    z_edges: np.ndarray = field(repr=False)
    levels: np.ndarray = field(repr=False)
    down: np.ndarray = field(repr=False)
    up: np.ndarray = field(repr=False)
    correlation: np.ndarray = field(repr=False)
    counts: np.ndarray = field(repr=False)
    source: str = ""

    def __post_init__(self) -> None:
        edges = np.atleast_1d(np.asarray(self.z_edges, dtype=np.float64))
        levels = np.asarray(self.levels, dtype=np.float64)
        down = np.asarray(self.down, dtype=np.float64)
        up = np.asarray(self.up, dtype=np.float64)
        correlation = np.atleast_1d(np.asarray(self.correlation, dtype=np.float64))
        counts = np.atleast_1d(np.asarray(self.counts)).astype(np.int64)
        b = edges.size + 1
        if edges.ndim != 1 or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
            raise SpecificationError(f"ExcursionModel.z_edges must be finite and increasing, got {edges.tolist()}")
        if (levels.ndim != 1 or levels.size < 2 or levels[0] != 0.0 or levels[-1] != 1.0
                or np.any(np.diff(levels) <= 0)):
            raise SpecificationError(f"ExcursionModel.levels must increase strictly from 0 to 1, got {levels.tolist()}")
        for name, table in (("down", down), ("up", up)):
            if table.shape != (b, levels.size):
                raise SpecificationError(f"ExcursionModel.{name} must have shape ({b}, {levels.size}) (buckets, "
                                         f"levels), got {table.shape}")
            if not np.all(np.isfinite(table)) or table.min() < 0 or np.any(np.diff(table, axis=1) < 0):
                row = int(np.argmax(~np.all(np.isfinite(table), axis=1) | (table.min(axis=1) < 0)
                                    | np.any(np.diff(table, axis=1) < 0, axis=1)))
                raise SpecificationError(f"ExcursionModel.{name}[{row}] must be finite quantiles >= 0, non-decreasing, "
                                         f"got {table[row].tolist()}")
        if correlation.shape != (b,) or not np.all(np.abs(correlation) < 1):
            raise SpecificationError(f"ExcursionModel.correlation must be {b} values in (-1, 1), got "
                                     f"{correlation.tolist()}")
        if counts.shape != (b,):
            raise SpecificationError(f"ExcursionModel.counts must be {b} counts, got {counts.tolist()}")
        for name, value in (("z_edges", edges), ("levels", levels), ("down", down), ("up", up),
                            ("correlation", correlation), ("counts", counts)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        # Draws look quantiles up on a uniform grid of u when every level lies on it (the default
        # levels are multiples of 1/1000): linear between grid points is then the same function as
        # linear between levels, found without a search (9x faster than searchsorted per draw).
        on_grid = np.abs(levels * _GRID - np.round(levels * _GRID)) < 1e-9
        tables = {}
        if on_grid.all():
            u = np.arange(_GRID + 1) / _GRID
            for name, table in (("down", down), ("up", up)):
                dense = np.stack([np.interp(u, levels, row) for row in table])
                tables[name] = (np.ascontiguousarray(dense[:, :-1]).ravel(), np.diff(dense, axis=1).ravel())
        object.__setattr__(self, "_grid_tables", tables)
        object.__setattr__(self, "_copula_weights", np.sqrt(1.0 - correlation * correlation))

    @property
    def n_buckets(self) -> int:
        """B, the number of z buckets."""
        return self.z_edges.size + 1

    def bucket_of(self, z: np.ndarray) -> np.ndarray:
        """The bucket index (int, same shape) of standardized returns ``z``: b with z in (edge[b-1], edge[b]]."""
        z = np.asarray(z)
        bucket = np.zeros(z.shape, dtype=np.intp)
        for edge in self.z_edges:  # the number of edges below z; a few compares beat a search
            bucket += z > edge
        return bucket

    def quantile(self, which: str, bucket: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The ``which`` ("down" or "up") wick of ``bucket`` at probability ``u`` (linear between levels), units of sigma."""
        if which in self._grid_tables:
            base, slope = self._grid_tables[which]
            x = np.asarray(u) * _GRID
            i = np.minimum(x.astype(np.intp), _GRID - 1)
            cell = bucket * _GRID + i
            return base.take(cell) + (x - i) * slope.take(cell)
        table = self.down if which == "down" else self.up
        k = np.clip(np.searchsorted(self.levels, u, side="right") - 1, 0, self.levels.size - 2)
        p0, p1 = self.levels[k], self.levels[k + 1]
        q0, q1 = table[bucket, k], table[bucket, k + 1]
        return q0 + (u - p0) / (p1 - p0) * (q1 - q0)

    def cdf(self, which: str, bucket: np.ndarray, w: np.ndarray) -> np.ndarray:
        """P(wick <= w | bucket) of the stored law (the inverse of :meth:`quantile`), elementwise."""
        table = self.down if which == "down" else self.up
        out = np.empty(np.broadcast(bucket, w).shape)
        bucket, w = np.broadcast_arrays(bucket, w)
        for b in range(self.n_buckets):
            mask = bucket == b
            row = table[b]
            # interp on a flat stretch (a point mass, e.g. w = 0) takes the stretch's upper level
            last = np.searchsorted(row, w[mask], side="right") - 1
            k = np.clip(last, 0, row.size - 2)
            span = row[k + 1] - row[k]
            frac = np.where(span > 0, (w[mask] - row[k]) / np.where(span > 0, span, 1.0), 1.0)
            value = self.levels[k] + np.clip(frac, 0, 1) * (self.levels[k + 1] - self.levels[k])
            out[mask] = np.where(w[mask] < row[0], 0.0, np.where(w[mask] >= row[-1], 1.0, value))
        return out

    def draw(self, returns: np.ndarray, volatility: np.ndarray,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw the periods' ``(low, high)`` given their returns and volatilities.

        Parameters
        ----------
        returns, volatility : arrays of one shape (any, e.g. (N, T)), unitless log returns, volatility > 0
        rng : numpy Generator
            Two standard normals per element are drawn from it, as one (*shape, 2) array: the
            draws of the first n rows do not depend on how many rows follow.

        Returns
        -------
        low, high : arrays of that shape, log of the period's extreme over its open
            ``low = min(0, r) - sigma w_down``, ``high = max(0, r) + sigma w_up``, (w_down, w_up)
            from the bucket of z = r / sigma, joined by the bucket's Gaussian copula.
        """
        returns, volatility = _check_inputs(returns, volatility)
        bucket = self.bucket_of(returns / volatility)
        e = rng.standard_normal((*returns.shape, 2))
        u_down = special.ndtr(e[..., 0])
        u_up = special.ndtr(self.correlation.take(bucket) * e[..., 0] + self._copula_weights.take(bucket) * e[..., 1])
        return self._wicks(returns, volatility, bucket, u_down, u_up)

    def at_level(self, returns: np.ndarray, volatility: np.ndarray,
                 level: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` with both wicks at their ``level`` quantile (default the median), deterministic."""
        returns, volatility = _check_inputs(returns, volatility)
        if not 0.0 <= level <= 1.0:
            raise SpecificationError(f"level must be a probability in [0, 1], got {level!r}")
        bucket = self.bucket_of(returns / volatility)
        u = np.full(returns.shape, float(level))
        return self._wicks(returns, volatility, bucket, u, u)

    def _wicks(self, returns: np.ndarray, volatility: np.ndarray, bucket: np.ndarray, u_down: np.ndarray,
               u_up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        low = np.minimum(returns, 0.0) - volatility * self.quantile("down", bucket, u_down)
        high = np.maximum(returns, 0.0) + volatility * self.quantile("up", bucket, u_up)
        return low, high

    def to_dict(self, digits: int | None = None) -> dict[str, Any]:
        """Plain numbers (quantiles and correlations rounded to ``digits`` decimals if given); :meth:`from_dict` inverts."""
        def rounded(a: np.ndarray) -> list:
            return (np.round(a, digits) if digits is not None else a).tolist()
        return {"z_edges": self.z_edges.tolist(), "levels": self.levels.tolist(), "down": rounded(self.down),
                "up": rounded(self.up), "correlation": rounded(self.correlation), "counts": self.counts.tolist(),
                "source": self.source}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExcursionModel:
        """The model of :meth:`to_dict`'s numbers."""
        missing = [k for k in ("z_edges", "levels", "down", "up", "correlation", "counts") if k not in data]
        if missing:
            raise SpecificationError(f"ExcursionModel numbers lack {missing}")
        return cls(**{k: data[k] for k in ("z_edges", "levels", "down", "up", "correlation", "counts")},
                   source=str(data.get("source", "")))

    def describe(self) -> dict[str, Any]:
        """A short JSON-safe description (the source and the buckets), for metadata."""
        return {"law": "empirical", "source": self.source, "z_edges": self.z_edges.tolist(),
                "counts": self.counts.tolist()}


@dataclass(frozen=True)
class BridgeExcursions:
    """The Brownian-bridge excursion law (:func:`bridge_excursions`) behind the :class:`ExcursionLaw` verbs."""

    def draw(self, returns: np.ndarray, volatility: np.ndarray,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` drawn from the bridge given the returns; min and max drawn independently."""
        return bridge_excursions(returns, volatility, rng)

    def at_level(self, returns: np.ndarray, volatility: np.ndarray,
                 level: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` at the bridge's ``level`` quantile of each extra wick."""
        returns, volatility = _check_inputs(returns, volatility)
        if not 0.0 <= level < 1.0:
            raise SpecificationError(f"level must be a probability in [0, 1), got {level!r}")
        return _bridge(returns, volatility, np.full(returns.shape, 1.0 - level), np.full(returns.shape, 1.0 - level))

    def describe(self) -> dict[str, Any]:
        """A short JSON-safe description, for metadata."""
        return {"law": "brownian bridge"}


def bridge_excursions(returns: np.ndarray, volatility: np.ndarray,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` of a Brownian bridge from 0 to each return with the period's variance.

    Parameters
    ----------
    returns, volatility : arrays of one shape, unitless log returns, volatility > 0
    rng : numpy Generator
        Two uniforms per element, drawn as one ``(*shape, 2)`` array.

    Returns
    -------
    low, high : arrays of that shape

    Notes
    -----
    For a Brownian motion of variance sigma^2 over the period, conditioned to end at r, the
    minimum m <= min(0, r) has P(min <= m) = exp(-2 m (m - r) / sigma^2) (the reflection
    principle), so m = (r - sqrt(r^2 - 2 sigma^2 ln U)) / 2 with U uniform, and the maximum
    M = (r + sqrt(r^2 - 2 sigma^2 ln U')) / 2. U and U' are drawn independently (the bridge's
    min and max are dependent; the marginals are exact). A fallback only: too thin beyond about
    10% on crypto daily bars (module notes).
    """
    returns, volatility = _check_inputs(returns, volatility)
    u = 1.0 - rng.random((*returns.shape, 2))  # in (0, 1]: ln is finite
    return _bridge(returns, volatility, u[..., 0], u[..., 1])


def _bridge(returns: np.ndarray, volatility: np.ndarray, u_down: np.ndarray,
            u_up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    var2 = 2.0 * volatility * volatility
    low = 0.5 * (returns - np.sqrt(returns * returns - var2 * np.log(u_down)))
    high = 0.5 * (returns + np.sqrt(returns * returns - var2 * np.log(u_up)))
    return np.minimum(low, np.minimum(returns, 0.0)), np.maximum(high, np.maximum(returns, 0.0))


def _check_inputs(returns: Any, volatility: Any) -> tuple[np.ndarray, np.ndarray]:
    returns = np.asarray(returns, dtype=np.float64)
    volatility = np.asarray(volatility, dtype=np.float64)
    if returns.shape != volatility.shape:
        raise ScenarioError(f"excursions: volatility must have the shape of returns {returns.shape}, "
                            f"got {volatility.shape}")
    if returns.size and not (np.isfinite(returns.min()) and np.isfinite(returns.max())):
        raise ScenarioError("excursions: returns must be finite")
    if volatility.size and not (volatility.min() > 0 and np.isfinite(volatility.max())):
        raise ScenarioError("excursions: volatility must be finite and > 0")
    return returns, volatility


def fit_excursions(
    ohlc: pd.DataFrame | Mapping[str, pd.DataFrame],
    volatility: pd.Series | Mapping[str, pd.Series],
    *,
    z_edges: tuple[float, ...] = DEFAULT_Z_EDGES,
    levels: tuple[float, ...] = DEFAULT_LEVELS,
    min_periods: int = MIN_BUCKET_PERIODS,
    source: str = "",
) -> ExcursionModel:
    """Fit the empirical excursion law to bars and their conditional volatilities.

    Parameters
    ----------
    ohlc : DataFrame or mapping of market -> DataFrame
        Bars with ``open, high, low, close`` (:func:`~fundguard.models.data.load_ohlc`); a
        mapping pools its markets (each standardized by its own volatility).
    volatility : Series or mapping of market -> Series (the same markets), > 0, log-return units
        The conditional sigma of each period's return, on the returns' index (a fitted
        VolModel's ``conditional_volatility``); periods without one are left out.
    z_edges : tuple of float, default ``DEFAULT_Z_EDGES``
        Candidate inner bucket edges of z.
    levels : tuple of float, default ``DEFAULT_LEVELS``
        Probability levels of the stored quantiles, 0 .. 1.
    min_periods : int, default ``MIN_BUCKET_PERIODS`` (100)
        A bucket with fewer periods is merged into its smaller neighbour (the tails pool inward).
    source : str
        Recorded in the model.

    Returns
    -------
    ExcursionModel

    Raises
    ------
    SpecificationError
        Markets of ``ohlc`` and ``volatility`` differ, or a volatility is non-finite or <= 0
        (naming the market and the date).
    InsufficientHistoryError
        Fewer than 250 periods (``MIN_RETURNS``) with a volatility.
    """
    if isinstance(ohlc, pd.DataFrame):
        name = str(ohlc.attrs.get("market", "price"))
        ohlc, volatility = {name: ohlc}, {name: volatility}
    if not isinstance(volatility, Mapping) or set(volatility) != set(ohlc):
        found = list(volatility) if isinstance(volatility, Mapping) else type(volatility).__name__
        raise SpecificationError(f"volatility must name the markets of ohlc {list(ohlc)}, got {found}")
    z_all, down_all, up_all = [], [], []
    for market, bars in ohlc.items():
        returns, low, high = (frame.iloc[:, 0] for frame in ohlc_paths({market: bars}))
        sigma = pd.Series(volatility[market]).reindex(returns.index)
        present = sigma.notna().to_numpy()
        values = sigma.to_numpy(dtype=np.float64)
        bad = present & ~(np.isfinite(values) & (values > 0))
        if bad.any():
            i = int(np.argmax(bad))
            raise SpecificationError(f"volatility[{market!r}] at {returns.index[i]} is {values[i]!r}; it must be "
                                     "finite and > 0")
        r, s = returns.to_numpy()[present], values[present]
        z_all.append(r / s)
        down_all.append((np.minimum(r, 0.0) - low.to_numpy()[present]) / s)
        up_all.append((high.to_numpy()[present] - np.maximum(r, 0.0)) / s)
    z, w_down, w_up = (np.concatenate(parts) for parts in (z_all, down_all, up_all))
    if z.size < MIN_RETURNS:
        raise InsufficientHistoryError(f"excursion fit: {z.size} periods with a volatility, fewer than {MIN_RETURNS}")
    # rounding in log(low / close) can leave -1e-17 where the low is the close
    w_down, w_up = np.maximum(w_down, 0.0), np.maximum(w_up, 0.0)
    edges = _pooled_edges(z, list(z_edges), int(min_periods))
    bucket = np.searchsorted(np.asarray(edges), z, side="left")
    levels_array = np.asarray(levels, dtype=np.float64)
    down, up, correlation, counts = [], [], [], []
    for b in range(len(edges) + 1):
        mask = bucket == b
        down.append(np.quantile(w_down[mask], levels_array))
        up.append(np.quantile(w_up[mask], levels_array))
        rho_s = stats.spearmanr(w_down[mask], w_up[mask]).statistic if mask.sum() > 2 else 0.0
        rho = 2.0 * math.sin(math.pi * rho_s / 6.0) if np.isfinite(rho_s) else 0.0
        correlation.append(min(max(rho, -0.99), 0.99))
        counts.append(int(mask.sum()))
    return ExcursionModel(z_edges=np.asarray(edges), levels=levels_array, down=np.array(down), up=np.array(up),
                          correlation=np.array(correlation), counts=np.array(counts), source=source)


def _pooled_edges(z: np.ndarray, edges: list[float], min_periods: int) -> list[float]:
    """``edges`` with the smallest bucket merged into its smaller neighbour until each holds ``min_periods``."""
    while edges:
        counts = np.bincount(np.searchsorted(np.asarray(edges), z, side="left"), minlength=len(edges) + 1)
        b = int(np.argmin(counts))
        if counts[b] >= min_periods:
            break
        if b == 0:
            edges.pop(0)
        elif b == len(edges):
            edges.pop()
        else:  # drop the edge shared with the smaller neighbour
            edges.pop(b - 1 if counts[b - 1] <= counts[b + 1] else b)
    return edges


def fit_market_excursions(
    ohlc: Mapping[str, pd.DataFrame],
    spec: VolSpec = VolSpec("GARCH", "t"),
    **options: Any,
) -> ExcursionModel:
    """Fit the excursion law to markets' bars, each standardized by a volatility model fitted to its closes.

    Parameters
    ----------
    ohlc : mapping of market -> DataFrame
        Bars from :func:`~fundguard.models.data.load_ohlc`.
    spec : VolSpec, default GARCH(1,1) with Student-t innovations
        Fitted (``fit_volatility``) to each market's close-to-close log returns; its in-sample
        conditional volatility standardizes the returns and wicks. Persistence at 1 (integrated,
        usual on crypto) does not matter here and is not warned about.
    **options
        Passed to :func:`fit_excursions`.

    Returns
    -------
    ExcursionModel
        What :data:`DEFAULT_EXCURSIONS` is, fitted to Binance BTC and ETH daily bars.
    """
    sigma = {}
    for market, bars in ohlc.items():
        returns = ohlc_paths({market: bars})[0][market]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonStationaryWarning)
            sigma[market] = fit_volatility(returns, spec, name=market).conditional_volatility
    return fit_excursions(ohlc, sigma, **options)


# The shipped default: fit_market_excursions on Binance spot BTCUSDT and ETHUSDT daily bars
# 2017-09-01 .. 2025-12-31 (3,043 returns each, pooled: 6,086 periods), sigma from
# fit_volatility(returns, VolSpec("GARCH", "t")) per market, default edges, levels and pooling.
# The files start 2017-08-17; their first two weeks are dropped, as their README advises for
# the thin days after a listing (ETH's low of -81% on 2017-08-22 would be a 13-sigma wick).
#   binance_BTCUSDT_daily.csv  sha256 b351d93136d5eb2226b73acf7484e3b67ec7cb3994734cab936460f966236b69
#   binance_ETHUSDT_daily.csv  sha256 8612ad089e9854062a17cdc8bb5da54d6ef9b1a1957cef5921be578d3d164a23
# (the project's shared/data: CryptoDataDownload's Binance klines, see that folder's README).
# Fit command (numbers rounded to 4 decimals):
#   bars = load_ohlc({"BTC": ".../binance_BTCUSDT_daily.csv", "ETH": ".../binance_ETHUSDT_daily.csv"})
#   fit_market_excursions({m: b.loc["2017-09-01":] for m, b in bars.items()}).to_dict(digits=4)
# tests/test_excursions.py::test_shipped_default_is_what_the_data_gives refits and compares.
_SHIPPED = {
    "z_edges": (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0),
    "levels": DEFAULT_LEVELS,
    "down": (  # one row per bucket, lowest z first; one column per level
        (0.0130, 0.0530, 0.0940, 0.1433, 0.2214, 0.3164, 0.4115, 0.5480, 0.6585, 0.9528, 1.5556, 2.9335, 3.2750, 3.6960, 4.1642, 4.3362, 4.6196, 4.6904),
        (0.0000, 0.0459, 0.0639, 0.1137, 0.1805, 0.2602, 0.3335, 0.4004, 0.5084, 0.6286, 0.7932, 1.0485, 1.5056, 1.9857, 2.0868, 2.3907, 3.1846, 3.2059),
        (0.0002, 0.0336, 0.0596, 0.1047, 0.1714, 0.2221, 0.2913, 0.3422, 0.3979, 0.4833, 0.6101, 0.8337, 1.0700, 1.4294, 1.7608, 2.3942, 3.0091, 3.0889),
        (0.0086, 0.0590, 0.0900, 0.1392, 0.2036, 0.2483, 0.3009, 0.3483, 0.4121, 0.4938, 0.5907, 0.7965, 1.0411, 1.4065, 1.6841, 2.1187, 2.7497, 3.0569),
        (0.0000, 0.0211, 0.0445, 0.0821, 0.1374, 0.1826, 0.2360, 0.2962, 0.3607, 0.4381, 0.5687, 0.7651, 0.9747, 1.3168, 1.5709, 2.0020, 2.5992, 6.2976),
        (0.0000, 0.0055, 0.0198, 0.0435, 0.0872, 0.1350, 0.1789, 0.2319, 0.2931, 0.3706, 0.4529, 0.6852, 0.9180, 1.1911, 1.4675, 1.5867, 1.9784, 2.2259),
        (0.0000, 0.0009, 0.0101, 0.0249, 0.0609, 0.0963, 0.1359, 0.1901, 0.2452, 0.3184, 0.4175, 0.6042, 0.7567, 1.0854, 1.4309, 1.7242, 2.2839, 2.7283),
        (0.0000, 0.0000, 0.0017, 0.0213, 0.0508, 0.0912, 0.1427, 0.1890, 0.2328, 0.3042, 0.3903, 0.5602, 0.6658, 0.8020, 1.0370, 1.0673, 1.0929, 1.0994),
    ),
    "up": (  # one row per bucket, lowest z first; one column per level
        (0.0000, 0.0000, 0.0054, 0.0202, 0.0531, 0.0743, 0.1159, 0.1487, 0.1938, 0.2252, 0.3223, 0.3832, 0.6002, 0.7192, 0.8411, 0.8896, 0.9809, 1.0037),
        (0.0000, 0.0018, 0.0107, 0.0316, 0.0629, 0.0825, 0.1183, 0.1671, 0.2196, 0.2867, 0.3753, 0.5539, 0.6881, 0.9576, 1.1041, 1.3189, 1.6683, 1.8354),
        (0.0000, 0.0056, 0.0188, 0.0434, 0.0799, 0.1192, 0.1596, 0.1936, 0.2603, 0.3417, 0.4409, 0.6454, 0.8759, 1.0920, 1.3435, 1.5402, 1.7765, 1.8721),
        (0.0000, 0.0133, 0.0300, 0.0626, 0.1083, 0.1539, 0.1989, 0.2517, 0.3190, 0.3921, 0.4954, 0.6518, 0.8108, 1.0834, 1.3730, 1.5047, 1.7321, 2.7653),
        (0.0023, 0.0468, 0.0714, 0.1025, 0.1586, 0.2057, 0.2455, 0.2914, 0.3469, 0.4101, 0.5017, 0.6561, 0.7913, 1.0676, 1.1968, 1.4453, 2.1033, 2.4826),
        (0.0000, 0.0141, 0.0366, 0.0753, 0.1170, 0.1576, 0.1937, 0.2359, 0.2856, 0.3402, 0.4189, 0.5897, 0.7493, 1.0199, 1.1855, 1.2522, 1.6444, 1.7217),
        (0.0023, 0.0215, 0.0338, 0.0560, 0.0951, 0.1381, 0.1805, 0.2282, 0.2821, 0.3335, 0.3907, 0.5150, 0.6952, 0.9772, 1.1592, 1.8333, 2.2578, 2.2671),
        (0.0001, 0.0470, 0.0733, 0.1032, 0.1468, 0.2063, 0.2571, 0.3015, 0.3519, 0.4509, 0.6536, 0.9070, 1.4586, 2.2227, 2.5648, 3.5418, 5.0298, 5.4017),
    ),
    "correlation": (0.0936, 0.0468, -0.0796, -0.0323, -0.0413, -0.0510, 0.0534, -0.0638),
    "counts": (145, 441, 743, 1647, 1644, 781, 544, 141),
    "source": "Binance spot BTCUSDT + ETHUSDT daily 2017-09-01..2025-12-31, GARCH(1,1)-t sigma",
}

#: The default excursion law of every market (the numbers above): Binance BTC + ETH daily.
DEFAULT_EXCURSIONS = ExcursionModel.from_dict(_SHIPPED)


#: What ``simulate_returns`` and ``stress_paths`` accept as ``excursions``.
ExcursionSpec = Any  # "default" | "bridge" | ExcursionModel | BridgeExcursions | Mapping[str, ...] | None


def resolve_excursions(excursions: ExcursionSpec, names: tuple[str, ...]) -> tuple[ExcursionLaw, ...] | None:
    """One excursion law per market of ``names`` (None: no excursions), or a SpecificationError.

    ``"default"``: :data:`DEFAULT_EXCURSIONS` for every market; ``"bridge"``: the Brownian bridge
    for every market; one law for all; a mapping market -> law (or ``"default"`` / ``"bridge"``)
    naming every market; None.
    """
    if excursions is None:
        return None
    if isinstance(excursions, Mapping):
        unknown = [k for k in excursions if k not in names]
        missing = [n for n in names if n not in excursions]
        if unknown or missing:
            raise SpecificationError(f"excursions must name every market {list(names)} and no other; missing "
                                     f"{missing}, unknown {unknown}")
        return tuple(_one_law(excursions[n], f"excursions[{n!r}]") for n in names)
    law = _one_law(excursions, "excursions")
    return tuple(law for _ in names)


def _one_law(value: Any, where: str) -> ExcursionLaw:
    if isinstance(value, str) and value in ("default", "bridge"):
        return DEFAULT_EXCURSIONS if value == "default" else BridgeExcursions()
    if isinstance(value, (ExcursionModel, BridgeExcursions)):
        return value
    raise SpecificationError(f"{where} must be 'default', 'bridge', an ExcursionModel, a mapping of market -> "
                             f"those, or None, got {value!r}")
