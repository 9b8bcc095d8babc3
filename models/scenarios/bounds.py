"""A stated bound on simulated paths: how many paths hold a one-period move no market has made.

A fitted model can be stationary and still simulate absurd paths: filtered historical simulation
of DOGE's daily GARCH-ged model bootstraps the standardized residual of 2021-01-28 (z = 22), and
a path that draws it twice compounds the variance 170x each time, reaching daily log returns of
+46 (measured, 20,000 paths of 30 days, seed 1). :func:`check_paths` counts the paths with any
one-period |log return| above the bound; the job reports the count and exits with its own code.

Notes
-----
The bound per period is ``max_daily_log_return * sqrt(max(period / 1 day, 1))``: square-root
(diffusive) scaling for periods longer than a day, the daily bound itself for a day or less (a
period of unknown length is held to the daily bound). The default daily bound is 2.0 (a 7.4x
rise or an 86% fall in a day), the same number ``models.data.MAX_LOG_RETURN`` holds real price
files to. The largest daily |log return| in the project's data (/work/shared/data: nine Binance
coins 2017-2025, Bitstamp and Yahoo BTC) is DOGE's +392% on 2021-01-28, log 4.92 = 1.594; every
other market stays below 0.68 (TRX, 2024-12-03), BTC below 0.51 (2020-03-12).

Periods shorter than a day are not scaled down because one-period moves are jumps as often as
diffusion: the largest hourly move in the data (Bitstamp BTC, 2020-03-13 02:00, 0.206) is 42% of
the largest daily BTC move (0.494, 2020-03-12), where square-root scaling allows 20% (0.41 for an
hour). A bound of 0.41 an hour flagged sane hourly runs: Bitstamp BTC hourly, EGARCH-ged with
"fhs", 4 of 20,000 paths of 30 hours above it, the largest 0.463 (measured, seed 1). Explosive
paths are far beyond either bound (DOGE daily GARCH-ged with "fhs": +46).

A path above the bound is not impossible, but it is beyond everything the models were fitted to,
and a fund sized on it is sized on the model's arithmetic rather than on the market. The BTC, ETH
and SOL daily models of the data (auto selection, each of "parametric", "fhs", "evt") put none of
20,000 paths of 30 days above it (measured, seed 1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import ScenarioError
from .paths import ReturnPaths

__all__ = ["MAX_DAILY_LOG_RETURN", "PathCheck", "check_paths", "period_bound"]

#: Largest |log return| in one day a simulated path may hold without being counted (module notes:
#: 1.25x DOGE's +392% day of 2021-01-28, log 1.594, the largest daily move in the project's data).
MAX_DAILY_LOG_RETURN = 2.0

_DAY = pd.Timedelta(days=1)


def period_bound(period: pd.Timedelta | None, max_daily_log_return: float = MAX_DAILY_LOG_RETURN) -> float:
    """The bound on one period's |log return|: ``max_daily_log_return * sqrt(max(period / 1 day, 1))``.

    Parameters
    ----------
    period : pandas.Timedelta or None
        Length of one period; a day or less, or None (unknown), gives the daily bound (the
        module notes say why shorter periods are not scaled down).
    max_daily_log_return : float > 0, default ``MAX_DAILY_LOG_RETURN`` (2.0)

    Raises
    ------
    ScenarioError
        ``max_daily_log_return`` not a positive finite number, or a non-positive ``period``.
    """
    bound = float(max_daily_log_return)
    if not (math.isfinite(bound) and bound > 0):
        raise ScenarioError(f"max_daily_log_return must be a positive finite number, got {max_daily_log_return!r}")
    if period is None:
        return bound
    if pd.Timedelta(period) <= pd.Timedelta(0):
        raise ScenarioError(f"period must be positive, got {period!r}")
    return bound * math.sqrt(max(pd.Timedelta(period) / _DAY, 1.0))


@dataclass(frozen=True)
class PathCheck:
    """How many simulated paths exceed the bound of :func:`period_bound`.

    Attributes
    ----------
    n_paths : int
        Paths checked (scenarios).
    n_exceeding : int
        Paths with at least one period of one market whose |log return| is above ``bound`` or not
        finite.
    exceeding_by_market : mapping of market -> int
        The same count per market (a path can count for several markets).
    bound : float
        The bound per period, log return (unitless).
    max_daily_log_return : float
        The daily bound it was scaled from.
    largest : float
        Largest |log return| in any path, period and market (inf when one is not finite).
    """

    n_paths: int
    n_exceeding: int
    exceeding_by_market: Mapping[str, int] = field(default_factory=dict)
    bound: float = MAX_DAILY_LOG_RETURN
    max_daily_log_return: float = MAX_DAILY_LOG_RETURN
    largest: float = 0.0

    @property
    def exceeded(self) -> bool:
        """Whether any path exceeds the bound."""
        return self.n_exceeding > 0

    @staticmethod
    def merge(parts: Iterable[PathCheck]) -> PathCheck:
        """One check of the paths of ``parts`` together (chunks of one simulation, same bound)."""
        parts = list(parts)
        if not parts:
            raise ScenarioError("PathCheck.merge needs at least one check")
        first = parts[0]
        if any(p.bound != first.bound or list(p.exceeding_by_market) != list(first.exceeding_by_market) for p in parts):
            raise ScenarioError("PathCheck.merge: the checks have different bounds or markets")
        return PathCheck(
            n_paths=sum(p.n_paths for p in parts),
            n_exceeding=sum(p.n_exceeding for p in parts),
            exceeding_by_market={m: sum(p.exceeding_by_market[m] for p in parts) for m in first.exceeding_by_market},
            bound=first.bound,
            max_daily_log_return=first.max_daily_log_return,
            largest=max(p.largest for p in parts),
        )

    def describe(self) -> dict[str, object]:
        """The check as JSON-ready numbers (an infinite ``largest`` stays ``inf``: sanitise before writing)."""
        return {"n_paths": self.n_paths, "n_exceeding": self.n_exceeding,
                "exceeding_by_market": dict(self.exceeding_by_market), "bound_per_period": self.bound,
                "max_daily_log_return": self.max_daily_log_return, "largest_abs_log_return": self.largest}


def check_paths(paths: ReturnPaths, *, max_daily_log_return: float = MAX_DAILY_LOG_RETURN) -> PathCheck:
    """Count the paths of ``paths`` with a one-period |log return| above the bound.

    Parameters
    ----------
    paths : ReturnPaths
        ``returns`` (N, T, J) log returns per period; ``period`` scales the bound.
    max_daily_log_return : float > 0, default ``MAX_DAILY_LOG_RETURN`` (2.0, see the module notes)

    Returns
    -------
    PathCheck
        Counts per path and per market (a non-finite return would count as above the bound;
        ``ReturnPaths`` refuses them already).

    Raises
    ------
    ScenarioError
        ``paths`` not a ReturnPaths, or a bad bound (:func:`period_bound`).
    """
    if not isinstance(paths, ReturnPaths):
        raise ScenarioError(f"check_paths needs a ReturnPaths, got {type(paths).__name__}")
    bound = period_bound(paths.period, max_daily_log_return)
    n, horizon, j = paths.returns.shape
    by_path_market = np.empty((n, j), dtype=bool)
    largest = 0.0
    # Blocks of rows: the temporaries stay at 2**20 elements (8 MiB) beside paths of any size, so
    # the check adds nothing to the peak memory of a run (estimated in optimizer.job.compute).
    rows = max(1, 2**20 // (horizon * j))
    for start in range(0, n, rows):
        size = np.abs(paths.returns[start:start + rows])
        # "not <=" so that nan counts as beyond the bound.
        by_path_market[start:start + rows] = (~(size <= bound)).any(axis=1)
        largest = max(largest, float(np.max(size)) if np.isfinite(size).all() else math.inf)
    return PathCheck(
        n_paths=int(n),
        n_exceeding=int(by_path_market.any(axis=1).sum()),
        exceeding_by_market={m: int(c) for m, c in zip(paths.markets, by_path_market.sum(axis=0))},
        bound=bound,
        max_daily_log_return=float(max_daily_log_return),
        largest=largest,
    )
