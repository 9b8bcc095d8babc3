"""Deterministic stress paths: replayed historical windows and hypothetical instantaneous shocks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ScenarioError
from ..parallel import positive_int
from ..serial import json_safe
from ..volatility import VolModel
from .dynamics import Dynamics
from .excursions import ExcursionSpec, resolve_excursions
from .paths import ReturnPaths, common_period, long_run_volatility_of, validate_models

__all__ = ["stress_paths"]


def stress_paths(
    models: Mapping[str, VolModel],
    horizon: int,
    *,
    dates: Sequence[Any] = (),
    scale_to_today: bool = True,
    shocks: Sequence[float | Mapping[str, float]] = (),
    excursions: ExcursionSpec = "default",
) -> ReturnPaths:
    """Deterministic stress paths: replayed historical windows and hypothetical shocks.

    Parameters
    ----------
    models : mapping of market name -> VolModel
        The fitted models; their own history (``index``, ``std_resid``, conditional volatility)
        is replayed.
    horizon : int >= 1
        T, periods per path; equal to the random paths' horizon so the sets can be joined.
    dates : sequence of date-like or (start, end) pairs
        One path per entry. A date replays ``horizon`` periods starting at that date's return
        (the return whose period ends on it: "2020-03-12" is the crash day itself); a pair
        replays start..end inclusive (at most ``horizon`` periods). Periods after the window, or
        after the history ends, are still: zero return.
    scale_to_today : bool, default True
        True: replay the window's standardized residuals z_t through each model's recursion
        started from today's state (r_t = mu + sigma_t z_t, the filtered-historical-simulation
        replay: the same shock, today's volatility). False: replay the historical returns as
        they were, with the historical conditional volatilities.
    shocks : sequence of float or mapping of market -> float
        One path per entry: an instantaneous simple return (-0.3 is a 30% fall) in the first
        period, the same for every market (float) or per market (mapping; markets left out do
        not move); zero returns afterwards. Volatility starts from today's state and follows the
        recursion, the shock feeding it.
    excursions : "default", "bridge", ExcursionModel, mapping of market -> ExcursionModel, or None
        The excursion law of each market, as in ``simulate_returns``; None: ``low`` and ``high``
        None.

    Returns
    -------
    ReturnPaths
        ``is_stress`` all True, ``labels`` naming each path, replays first then shocks.
        ``low`` and ``high``: a stress path is deterministic, so each moving period (a replayed
        one, a shock) gets the law's *median* extra wicks given its return and volatility
        (``low = r - sigma * median(w_down | z)`` on a fall, for the default law about 0.55
        sigma beyond a close below -2 sigma); a still period (after the window, after the shock)
        does not move at all: ``low = high = 0``. The bars of a replayed date are not used (the
        fitted models carry closes only).

    Raises
    ------
    ScenarioError
        A date not in the history common to all markets, an empty window, a shock <= -100%
        or naming an unknown market, no dates and no shocks, or dates for a model rebuilt
        from numbers (no history to replay).
    """
    names, fitted = validate_models(models)
    horizon = positive_int("horizon", horizon)
    laws = resolve_excursions(excursions, names)
    if isinstance(dates, (pd.Index, np.ndarray)):
        dates = list(dates)
    elif isinstance(dates, (str, pd.Timestamp)) or not isinstance(dates, Sequence):
        dates = [dates]
    if isinstance(shocks, (int, float, Mapping)):
        shocks = [shocks]
    if not dates and not shocks:
        raise ScenarioError("stress_paths needs at least one date or shock")
    dynamics = Dynamics(fitted)
    j = len(fitted)
    all_returns, all_vols, labels, moving = [], [], [], []

    if dates:
        for name, m in zip(names, fitted):
            if not m.has_history:
                raise ScenarioError(
                    f"stress_paths(dates=...) replays the fitted history, but models[{name!r}] has none (rebuilt from "
                    "numbers: VolModel.from_dict, a preset); fit it to returns with fit_volatility, or use shocks=..."
                )
        index = fitted[0].index
        for m in fitted[1:]:
            index = index.intersection(m.index)
        hist_z = np.column_stack([pd.Series(m.std_resid, index=m.index).reindex(index).to_numpy() for m in fitted])
        hist_vol = np.column_stack([m.conditional_volatility.reindex(index).to_numpy() for m in fitted])
        for entry in dates:
            start, stop = (entry if isinstance(entry, tuple) else (entry, None))
            first = _locate(index, start, names)
            last = len(index) - 1 if stop is None else _locate(index, stop, names)
            if last < first:
                raise ScenarioError(f"stress window {start}..{stop} is empty (end before start)")
            n_hist = min(horizon, last - first + 1)
            rets, vols = np.zeros((1, horizon, j)), np.zeros((1, horizon, j))
            if scale_to_today:
                # the window's innovations through today's recursion, then still periods
                state, scratch = dynamics.initial_state(1), dynamics.scratch(1)
                for t in range(n_hist):
                    dynamics.step(state, hist_z[first + t][None, :], returns=rets[:, t], volatility=vols[:, t],
                                  scratch=scratch)
                _still(dynamics, state, scratch, returns=rets[:, n_hist:], volatility=vols[:, n_hist:])
            else:
                window = slice(first, first + n_hist)
                vols[0, :n_hist] = hist_vol[window]
                rets[0, :n_hist] = dynamics.mu + hist_vol[window] * hist_z[window]
                # the recursion continues from the window's last period as it was
                state, scratch = vols[:, n_hist - 1] ** 2, dynamics.scratch(1)
                state[:, dynamics.egarch] = np.log(state[:, dynamics.egarch])
                dynamics.update(state, rets[:, n_hist - 1] - dynamics.mu, hist_z[first + n_hist - 1][None, :],
                                scratch[2], scratch[3])
                _still(dynamics, state, scratch, returns=rets[:, n_hist:], volatility=vols[:, n_hist:])
            all_returns.append(rets)
            all_vols.append(vols)
            moving.append(n_hist)
            when = str(index[first].date()) if isinstance(index, pd.DatetimeIndex) else str(index[first])
            labels.append(f"replay {when} ({n_hist} periods, {'scaled to today' if scale_to_today else 'as it was'})")

    for shock in shocks:
        moves = _shock_moves(shock, names)
        rets, vols = np.zeros((1, horizon, j)), np.zeros((1, horizon, j))
        state, scratch = dynamics.initial_state(1), dynamics.scratch(1)
        rets[0, 0] = np.log1p(moves)
        dynamics.step_given_return(state, rets[:, 0], volatility=vols[:, 0], scratch=scratch)
        _still(dynamics, state, scratch, returns=rets[:, 1:], volatility=vols[:, 1:])
        all_returns.append(rets)
        all_vols.append(vols)
        moving.append(1)
        moved = [f"{n} {100 * x:+.4g}%" for n, x in zip(names, moves) if x != 0.0]
        labels.append("shock " + (", ".join(moved) if moved else "(no move)"))

    returns = np.concatenate(all_returns)
    volatility = np.concatenate(all_vols)
    low, high = _median_excursions(laws, returns, volatility, np.array(moving))
    metadata = {
        "generator": "fundguard.models.stress_paths",
        "horizon": horizon,
        "scale_to_today": bool(scale_to_today),
        "labels": labels,
        "models": {name: {"spec": str(m.spec), "next_variance": m.next_variance} for name, m in zip(names, fitted)},
        "excursions": None if laws is None else {name: {**law.describe(), "level": 0.5} for name, law in
                                                 zip(names, laws)},
    }
    return ReturnPaths(
        returns=returns,
        volatility=volatility,
        markets=names,
        period=common_period(names, fitted),
        long_run_volatility=long_run_volatility_of(fitted),
        is_stress=np.ones(returns.shape[0], dtype=bool),
        labels=tuple(labels),
        metadata=json_safe(metadata),
        low=low,
        high=high,
    )


def _median_excursions(laws: tuple | None, returns: np.ndarray, volatility: np.ndarray,
                       moving: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Median-wick ``(low, high)`` of each path's first ``moving[s]`` periods, zero on the still ones."""
    if laws is None:
        return None, None
    low, high = np.zeros_like(returns), np.zeros_like(returns)
    for column, law in enumerate(laws):
        low[:, :, column], high[:, :, column] = law.at_level(returns[:, :, column], volatility[:, :, column], 0.5)
    still = np.arange(returns.shape[1])[None, :] >= moving[:, None]
    low[still], high[still] = 0.0, 0.0
    return low, high


def _still(dynamics: Dynamics, state: np.ndarray, scratch: tuple[np.ndarray, ...], *, returns: np.ndarray,
           volatility: np.ndarray) -> None:
    """Still periods (zero return) through the recursion: ``returns`` (1, T', J) already zero."""
    for t in range(returns.shape[1]):
        dynamics.step_given_return(state, returns[:, t], volatility=volatility[:, t], scratch=scratch)


def _shock_moves(shock: float | Mapping[str, float], names: tuple[str, ...]) -> np.ndarray:
    if isinstance(shock, Mapping):
        unknown = [k for k in shock if k not in names]
        if unknown:
            raise ScenarioError(f"shock names unknown market(s) {unknown}; markets are {list(names)}")
        moves = np.array([float(shock.get(n, 0.0)) for n in names])
    else:
        moves = np.full(len(names), float(shock))
    bad = ~np.isfinite(moves) | (moves <= -1.0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ScenarioError(f"shock for market {names[i]!r} is {moves[i]!r}; a simple return must be finite and > -1")
    return moves


def _locate(index: pd.Index, when: Any, names: tuple[str, ...]) -> int:
    try:
        stamp = pd.Timestamp(when)
        if isinstance(index, pd.DatetimeIndex) and index.tz is not None and stamp.tzinfo is None:
            stamp = stamp.tz_localize(index.tz)
        return int(index.get_loc(stamp))
    except (KeyError, ValueError, TypeError):
        span = f"{index[0]} .. {index[-1]}" if len(index) else "empty"
        raise ScenarioError(
            f"stress date {when!r} is not in the history common to markets {list(names)} ({span})"
        ) from None
