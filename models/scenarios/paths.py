"""The result type of every path generator, and what the generators read off the fitted models.

:class:`ReturnPaths` holds N joint return paths of T periods of J markets, random
(:func:`~fundguard.models.scenarios.simulate_returns`) or deterministic
(:func:`~fundguard.models.scenarios.stress_paths`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import ScenarioError, SpecificationError
from ..volatility import VolModel

if TYPE_CHECKING:  # annotations only: the fitted parts a ReturnPaths carries
    from .copula import Copula
    from .tails import TailFit

__all__ = ["ReturnPaths", "EXCURSION_TOLERANCE", "validate_models", "common_period", "long_run_volatility_of"]


@dataclass(frozen=True, eq=False)
class ReturnPaths:
    """Joint return paths of J markets over T periods, N scenarios.

    Parameters
    ----------
    returns : (N, T, J) array of float64, log returns per period, unitless
        ``returns[s, t, j]``: log return of market j in period t + 1 of scenario s.
    volatility : (N, T, J) array of float64, > 0, same units as ``returns``
        Conditional standard deviation of that return, known at the start of the period.
    markets : sequence of J str
        Market names, in the order of the last axis.
    period : pandas.Timedelta, optional
        Length of one period (``Timedelta("1D")`` for daily models); None when unknown.
    long_run_volatility : (J,) array of float64, optional
        A typical per-period volatility of each market (the median fitted conditional volatility
        over the fit sample), the reference the "volume" premium base is scaled by.
    is_stress : (N,) array of bool, optional
        True for deterministic stress paths (default all False).
    labels : sequence of N str, optional
        What each stress path is ("replay 2020-03-12 scaled", "shock BTC -30%").
    tails : mapping of market -> TailFit
        The fitted generalized Pareto tails (``innovations="evt"`` only).
    copula : Copula, optional
        The copula joining the markets (``innovations="parametric"`` with J >= 2 only).
    metadata : mapping
        JSON-serialisable description: innovations, seed, model specifications, horizon.
    low, high : (N, T, J) arrays of float64, optional, unitless log returns
        The period's intraday excursions: ``low[s, t, j]`` is the log of the period's lowest
        price over its opening price (the previous period's close), ``high`` the same of the
        highest, so ``low <= min(0, returns)`` and ``high >= max(0, returns)`` (checked to
        1e-12). None when unknown (either may be given alone). Drawn by
        :func:`~fundguard.models.scenarios.simulate_returns` from an excursion law
        (:mod:`fundguard.models.scenarios.excursions`), measured by
        :func:`~fundguard.models.data.ohlc_paths` on real bars. Whatever subsets or joins
        ReturnPaths carries them.
    """

    returns: np.ndarray = field(repr=False)
    volatility: np.ndarray = field(repr=False)
    markets: tuple[str, ...]
    period: pd.Timedelta | None = None
    long_run_volatility: np.ndarray | None = field(default=None, repr=False)
    is_stress: np.ndarray | None = field(default=None, repr=False)
    labels: tuple[str, ...] | None = field(default=None, repr=False)
    tails: Mapping[str, TailFit] = field(default_factory=dict, repr=False)
    copula: Copula | None = field(default=None, repr=False)
    metadata: Mapping[str, Any] = field(default_factory=dict, repr=False)
    low: np.ndarray | None = field(default=None, repr=False)
    high: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        returns = np.asarray(self.returns, dtype=np.float64)
        volatility = np.asarray(self.volatility, dtype=np.float64)
        if isinstance(self.markets, str):
            raise ScenarioError(f"markets must be a sequence of names, got the string {self.markets!r}")
        markets = tuple(self.markets)
        if returns.ndim != 3:
            raise ScenarioError(f"returns must be a 3-d (N, T, J) array, got shape {returns.shape}")
        n, t, j = returns.shape
        if n < 1 or t < 1:
            raise ScenarioError(f"returns must have at least one scenario and one period, got shape {returns.shape}")
        if j != len(markets) or len(set(markets)) != len(markets) or not all(isinstance(m, str) and m for m in markets):
            raise ScenarioError(f"markets must be {j} unique non-empty names (one per column), got {list(markets)}")
        if volatility.shape != returns.shape:
            raise ScenarioError(f"volatility must have the shape of returns {returns.shape}, got {volatility.shape}")
        _check_finite("returns", returns)
        _check_finite("volatility", volatility)
        if volatility.min() <= 0.0:
            where = tuple(int(i) for i in np.argwhere(volatility <= 0)[0])
            raise ScenarioError(f"volatility must be > 0; volatility{list(where)} = {float(volatility[where])!r}")
        stress = np.zeros(n, dtype=bool) if self.is_stress is None else np.asarray(self.is_stress)
        if stress.shape != (n,) or stress.dtype != bool:
            raise ScenarioError(f"is_stress must be a boolean array of shape ({n},), got {stress.dtype} {stress.shape}")
        long_run = None
        if self.long_run_volatility is not None:
            long_run = np.asarray(self.long_run_volatility, dtype=np.float64)
            if long_run.shape != (j,) or not np.all(np.isfinite(long_run) & (long_run > 0)):
                raise ScenarioError(f"long_run_volatility must be {j} finite values > 0, got {long_run!r}")
        labels = None
        if self.labels is not None:
            labels = tuple(str(label) for label in self.labels)
            if len(labels) != n:
                raise ScenarioError(f"labels must name all {n} scenarios, got {len(labels)}")
        period = None if self.period is None else pd.Timedelta(self.period)
        if period is not None and period <= pd.Timedelta(0):
            raise ScenarioError(f"period must be a positive duration, got {self.period!r}")
        low = _excursion("low", self.low, returns, np.minimum)
        high = _excursion("high", self.high, returns, np.maximum)
        object.__setattr__(self, "returns", returns)
        object.__setattr__(self, "volatility", volatility)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "markets", markets)
        object.__setattr__(self, "period", period)
        object.__setattr__(self, "long_run_volatility", long_run)
        object.__setattr__(self, "is_stress", stress)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "tails", dict(self.tails))
        object.__setattr__(self, "metadata", dict(self.metadata))

    @property
    def n_scenarios(self) -> int:
        """N, the number of paths."""
        return self.returns.shape[0]

    @property
    def horizon(self) -> int:
        """T, the number of periods."""
        return self.returns.shape[1]

    @property
    def n_markets(self) -> int:
        """J, the number of markets."""
        return self.returns.shape[2]

    def __repr__(self) -> str:
        return (
            f"ReturnPaths(n_scenarios={self.n_scenarios}, horizon={self.horizon}, markets={list(self.markets)}, "
            f"period={self.period}, n_stress={int(self.is_stress.sum())})"
        )


def _check_finite(name: str, array: np.ndarray) -> None:
    # min and max propagate NaN, so two fast reductions check every element.
    if np.isfinite(array.min()) and np.isfinite(array.max()):
        return
    where = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
    raise ScenarioError(
        f"{name} must be finite; {name}{list(where)} = {float(array[where])!r} (an explosive volatility model or a "
        "tail index >= 1 can overflow: check the fit or shorten the horizon)"
    )


#: Slack of the checks low <= min(0, returns) and high >= max(0, returns): float64 rounding of
#: a low computed as min(0, r) - sigma * w (about 1e-17 at these magnitudes), with room to spare.
EXCURSION_TOLERANCE = 1e-12


def _excursion(name: str, value: Any, returns: np.ndarray, bound: Any) -> np.ndarray | None:
    """``low`` or ``high`` as float64 (None stays None), or a ScenarioError naming the field and element."""
    if value is None:
        return None
    array = np.asarray(value, dtype=np.float64)
    if array.shape != returns.shape:
        raise ScenarioError(f"{name} must have the shape of returns {returns.shape}, got {array.shape}")
    _check_finite(name, array)
    flat_values, flat_returns = array.reshape(-1), returns.reshape(-1)
    step = 2**18  # in slices, so the check's temporaries stay small beside the (N, T, J) arrays
    for start in range(0, flat_values.size, step):
        part = slice(start, start + step)
        limit = bound(flat_returns[part], 0.0)
        wrong = (flat_values[part] > limit + EXCURSION_TOLERANCE if name == "low"
                 else flat_values[part] < limit - EXCURSION_TOLERANCE)
        if wrong.any():
            where = tuple(int(i) for i in np.unravel_index(start + int(np.argmax(wrong)), array.shape))
            side = "min(0, returns)" if name == "low" else "max(0, returns)"
            raise ScenarioError(
                f"{name} must be {'<=' if name == 'low' else '>='} {side} (the path passes through the open and "
                f"the close); {name}{list(where)} = {float(array[where])!r}, returns{list(where)} = "
                f"{float(returns[where])!r}"
            )
    return array


def validate_models(models: Mapping[str, VolModel]) -> tuple[tuple[str, ...], list[VolModel]]:
    """``(names, models)`` of a mapping market -> VolModel, in its order; SpecificationError naming a bad entry."""
    if not isinstance(models, Mapping):
        raise SpecificationError(
            f"models must be a mapping of market name -> VolModel, got {type(models).__name__}"
        )
    if not models:
        raise SpecificationError("models must name at least one market")
    for name, model in models.items():
        if not isinstance(name, str) or not name:
            raise SpecificationError(f"market names must be non-empty strings, got {name!r}")
        if not isinstance(model, VolModel):
            raise SpecificationError(f"models[{name!r}] must be a VolModel, got {type(model).__name__}")
        bad = {k: v for k, v in model.params.items() if not math.isfinite(v)}
        if bad or not (math.isfinite(model.next_variance) and model.next_variance > 0):
            raise SpecificationError(f"models[{name!r}] has non-finite parameters {bad} or next_variance "
                                     f"{model.next_variance!r}")
    return tuple(models), list(models.values())


def common_period(names: tuple[str, ...], models: Sequence[VolModel]) -> pd.Timedelta | None:
    """The sampling period all ``models`` share (None when unknown); SpecificationError if they differ."""
    periods = {m.frequency.period if m.frequency is not None else None for m in models}
    if len(periods) > 1:
        found = {n: (str(m.frequency.period) if m.frequency is not None else None) for n, m in zip(names, models)}
        raise SpecificationError(f"models must share one sampling frequency, got {found}")
    return periods.pop()


def long_run_volatility_of(models: Sequence[VolModel]) -> np.ndarray:
    """(J,) float64, a typical per-period volatility of each model (``ReturnPaths.long_run_volatility``)."""
    # The median conditional volatility over the fit sample: the level of a typical day, at which
    # a typical day's volume is traded. (The unconditional variance is infinite or nearly so for
    # integrated fits, common on crypto.)
    return np.array([m.typical_volatility if m.typical_volatility is not None else math.sqrt(m.next_variance)
                     for m in models])

