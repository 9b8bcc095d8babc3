"""Return paths -> ScenarioSet: a loss model run over every market and chunk of scenarios."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ScenarioError
from ..parallel import in_threads
from ..scenarios import ReturnPaths
from ..scenarioset import ScenarioSet, store_dtype
from . import registry
from .book import VenueBook
from .losses import VenueLosses
from .registry import LossModel

__all__ = ["build_scenarios"]

# Scenario-periods per chunk of build_scenarios: 512 KiB per (rows, T) float64 temporary, so the
# loss model's dozen temporaries stay in cache (measured 10-20% faster than 2**18, 2x faster
# than 100,000 x 30 at once).
_CHUNK_ELEMENTS = 2**16

# Optional per-market figures of a VenueLosses, kept in the ScenarioSet when the model gives them.
_OPTIONAL = ("liquidated", "winners")


def build_scenarios(
    paths: ReturnPaths,
    venue: VenueBook,
    *,
    loss_model: LossModel | str | None = None,
    chunk_size: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    threads: int | None = None,
    dtype: str = "float64",
) -> ScenarioSet:
    """Fund losses and premium bases of a venue over simulated (or stress) return paths.

    Parameters
    ----------
    paths : ReturnPaths
        (N, T, J') returns and volatilities; must contain every market of ``venue`` (by name;
        other markets are ignored).
    venue : VenueBook
    loss_model : LossModel or str, optional
        Default ``DEFAULT_LOSS_MODEL`` (the stateful book, :class:`StatefulBook`).
        Called once per market and chunk of scenarios; a str names one of ``LOSS_MODELS``.
        It returns ``(loss, premium_base)`` or a :class:`~fundguard.models.venue.losses.VenueLosses`.
        When the paths carry intraperiod excursions (``paths.low`` / ``paths.high``, (N, T, J')
        arrays, optional) and the model's signature names the keyword ``low`` / ``high`` (a
        ``**kwargs`` catch-all does not count), the chunk's (n, T) slice of the market is
        passed as it.
    chunk_size : int, optional
        Scenarios per chunk (default: about 2**16 scenario-periods); does not change the result.
    metadata : mapping, optional
        Extra JSON-serialisable entries for the ScenarioSet's metadata.
    threads : int, optional
        Chunks worked on at once, each in its own thread (numpy releases the GIL in the loss
        model's array operations). Default: the CPUs this process may run on; 1 calls the loss
        model from the calling thread only (use it for a loss model that is not safe to call
        from several threads: pure functions of their arrays, like the default, are). Does not
        change the result.
    dtype : {"float64", "float32"}, default "float64"
        How the set stores its arrays (:class:`~fundguard.models.ScenarioSet`'s ``dtype``): the
        loss model computes in float64 chunk by chunk and its figures are stored as ``dtype``, so
        "float32" never holds a float64 copy of the set.

    Returns
    -------
    ScenarioSet
        ``losses`` (N, T): sum over markets of the model's loss, currency units;
        ``premium_base`` (N, T, J): per venue market, in venue order; ``losses_by_market``
        (N, T, J): the model's loss per market; ``liquidated`` and ``winners`` (N, T, J): the
        model's, when it returns a VenueLosses that gives them (for every market), else None;
        ``is_stress`` from the paths; ``metadata``: the paths' metadata, the venue and the loss
        model's name.
        Memory: the returned arrays, ``8 N T (2 J + 1)`` bytes (half for float32) plus ``8 N T J`` for each of
        ``liquidated`` and ``winners`` given, plus a few (chunk, T) temporaries.

    Raises
    ------
    SpecificationError
        ``loss_model`` names no loss model of ``LOSS_MODELS``.
    ScenarioError
        A venue market missing from the paths, or a loss model returning something other than
        a pair or a VenueLosses, arrays of the wrong shape or negative / non-finite values, or
        ``liquidated`` / ``winners`` for some markets and not others (the message names the
        model and the market).
    """
    if not isinstance(paths, ReturnPaths):
        raise ScenarioError(f"paths must be ReturnPaths, got {type(paths).__name__}")
    if not isinstance(venue, VenueBook):
        raise ScenarioError(f"venue must be a VenueBook, got {type(venue).__name__}")
    columns = []
    for market in venue.markets:
        if market.name not in paths.markets:
            raise ScenarioError(f"venue market {market.name!r} has no return paths; paths have {list(paths.markets)}")
        column = paths.markets.index(market.name)
        columns.append(column)
        if market.premium_kind == "volume" and market.long_run_volatility is None and paths.long_run_volatility is None:
            raise ScenarioError(
                f"market {market.name!r}: premium_kind='volume' needs long_run_volatility (on the Market or the paths)"
            )
    n, horizon = paths.n_scenarios, paths.horizon
    period_days = 1.0 if paths.period is None else paths.period / pd.Timedelta(days=1)
    if chunk_size is None:
        rows = max(1, _CHUNK_ELEMENTS // horizon)
    elif isinstance(chunk_size, (int, np.integer)) and not isinstance(chunk_size, bool) and chunk_size >= 1:
        rows = int(chunk_size)
    else:
        raise ScenarioError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    if loss_model is None:
        loss_model = registry.DEFAULT_LOSS_MODEL
    if isinstance(loss_model, str):
        loss_model = registry.loss_model(loss_model)
    model_name = getattr(loss_model, "__name__", type(loss_model).__name__)

    accepted = registry.excursion_keywords(loss_model)
    excursions = {name: getattr(paths, name, None) for name in accepted}
    excursions = {name: array for name, array in excursions.items() if array is not None}

    dtype = store_dtype(dtype)
    losses = np.zeros((n, horizon), dtype=dtype)
    premium_base = np.empty((n, horizon, len(venue.markets)), dtype=dtype)
    losses_by_market = np.empty_like(premium_base)
    # liquidated / winners: allocated when a first call gives them; calls counted per market
    optional: dict[str, np.ndarray] = {}
    given = {name: [0] * len(venue.markets) for name in _OPTIONAL}
    lock = threading.Lock()

    def work(start: int) -> None:
        block = slice(start, min(start + rows, n))
        for j, (market, column) in enumerate(zip(venue.markets, columns)):
            reference = None if paths.long_run_volatility is None else float(paths.long_run_volatility[column])
            result = _as_venue_losses(loss_model(
                market,
                paths.returns[block, :, column],
                paths.volatility[block, :, column],
                period_days=period_days,
                long_run_volatility=reference,
                **{name: array[block, :, column] for name, array in excursions.items()},
            ), model_name, market.name)
            expected = (block.stop - block.start, horizon)
            for what, array in zip(VenueLosses._fields, result):
                if array is None and what in ("loss", "premium_base"):
                    raise ScenarioError(f"loss model {model_name!r} returned no {what} (None) for market {market.name!r}")
                if array is not None and np.shape(array) != expected:
                    raise ScenarioError(
                        f"loss model {model_name!r} returned {what} of shape {np.shape(array)} for market "
                        f"{market.name!r}, expected {expected}"
                    )
            losses[block] += result.loss
            losses_by_market[block, :, j] = result.loss
            premium_base[block, :, j] = result.premium_base
            for name in _OPTIONAL:
                array = getattr(result, name)
                if array is None:
                    continue
                with lock:
                    if name not in optional:
                        optional[name] = np.empty_like(premium_base)
                    given[name][j] += 1
                optional[name][block, :, j] = array

    starts = range(0, n, rows)
    in_threads(work, starts, threads, "fundguard-losses")  # chunks write disjoint rows
    for name in _OPTIONAL:
        calls = given[name]
        if any(calls) and min(calls) < len(starts):
            j = calls.index(min(calls))
            raise ScenarioError(
                f"loss model {model_name!r} gave {name} for some markets or chunks but None for market "
                f"{venue.markets[j].name!r} in {len(starts) - calls[j]} of {len(starts)} chunks: give it always or never")

    info = dict(paths.metadata)
    info.update(
        loss_model=model_name,
        venue=venue.describe(),
        period_days=period_days,
        period_assumed=paths.period is None,
    )
    if paths.labels is not None:
        info["labels"] = list(paths.labels)
    if metadata:
        info.update(metadata)
    try:
        return ScenarioSet(losses=losses, premium_base=premium_base, markets=venue.names, dtype=dtype,
                           is_stress=paths.is_stress, metadata=info, losses_by_market=losses_by_market, **optional)
    except ScenarioError as exc:
        raise ScenarioError(f"loss model {model_name!r}: {exc}") from None


def _as_venue_losses(result: Any, model_name: str, market: str) -> VenueLosses:
    """A loss model's result as a VenueLosses: itself, or the old pair ``(loss, premium_base)``."""
    if isinstance(result, VenueLosses):
        return result
    if isinstance(result, (tuple, list)) and len(result) == 2:
        return VenueLosses(*result)
    what = f"a {type(result).__name__} of length {len(result)}" if isinstance(result, (tuple, list)) else \
        f"a {type(result).__name__}"
    raise ScenarioError(
        f"loss model {model_name!r} returned {what} for market {market!r}; expected (loss, premium_base) "
        "or a VenueLosses")
