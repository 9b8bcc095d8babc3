"""Random return paths: :func:`simulate_returns` and the :class:`SimulationPlan` behind it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..data import MIN_RETURNS
from ..errors import InsufficientHistoryError, SpecificationError
from ..parallel import in_threads, positive_int
from ..seeds import SCENARIO_BLOCK, block_streams, seed_sequence
from ..serial import json_safe
from ..volatility import VolModel
from .copula import Copula, fit_copula
from .dynamics import Dynamics
from .excursions import ExcursionLaw, ExcursionSpec, resolve_excursions
from .innovations import Bootstrap, Marginal, Parametric
from .paths import ReturnPaths, common_period, long_run_volatility_of, validate_models
from .tails import TailFit, fit_tails_quietly, warn_if_heavy

__all__ = ["INNOVATIONS", "simulate_returns", "SimulationPlan", "plan_simulation"]

#: Innovation schemes of :func:`simulate_returns`.
INNOVATIONS = ("parametric", "fhs", "evt")

# Scenario-period-market elements per chunk of work (whole blocks, at least one). Measured on
# a 2-core machine: the transform and the recursion run 2-5x faster when a chunk's half-dozen
# (n, T, J) float64 buffers stay in cache (2**18 elements: 2 MiB each) than on 100,000
# scenarios at once. Working memory is those buffers; the returned arrays are the result.
_CHUNK_ELEMENTS = 2**18


def simulate_returns(
    models: Mapping[str, VolModel],
    horizon: int,
    n_scenarios: int,
    *,
    innovations: str = "parametric",
    seed: int | np.random.SeedSequence | None = None,
    copula: str | Copula = "t",
    tail_fraction: float = 0.1,
    chunk_size: int | None = None,
    threads: int | None = None,
    excursions: ExcursionSpec = "default",
    progress: Callable[[int, int], None] | None = None,
) -> ReturnPaths:
    """Simulate N joint return paths of T periods from today's state of fitted models.

    Parameters
    ----------
    models : mapping of market name -> VolModel
        One fitted model per market (``fit_volatility``), all at the same sampling frequency.
    horizon : int >= 1
        T, periods per path (in the models' frequency: days for daily models).
    n_scenarios : int >= 1
        N, the number of paths.
    innovations : {"parametric", "fhs", "evt"}, default "parametric"
        How innovations are drawn (see the module notes): the fitted distributions joined by a
        copula; bootstrapped whole dates of standardized residuals (filtered historical
        simulation); or bootstrapped dates with generalized Pareto tails (GARCH-EVT).
    seed : int, SeedSequence or None
        None draws fresh entropy, recorded in ``metadata["seed"]`` so the run can be repeated.
    copula : {"t", "gaussian"} or Copula, default "t"
        "parametric" with two or more markets: the copula family fitted to the standardized
        residuals on common dates (:func:`fit_copula`), or a given Copula (for example with
        stressed correlations). Ignored otherwise.
    tail_fraction : float, default 0.1
        "evt": share of residuals in each tail (:func:`fit_tails`).
    chunk_size : int, optional
        Scenarios per chunk of work, rounded up to a multiple of ``SCENARIO_BLOCK``; by default
        about 2**18 / (T J) scenarios, so that working buffers stay in cache (a few MiB). Does
        not change the result.
    threads : int, optional
        Chunks worked on at once, each in its own thread (numpy releases the GIL in the heavy
        loops). Default: the CPUs this process may run on. 1 works in the calling thread only
        (use it inside a process pool or a Dask worker that already fills the cores). Does not
        change the result.
    excursions : "default", "bridge", ExcursionModel, mapping of market -> ExcursionModel, or None
        The law the periods' intraday low and high are drawn from given each return and its
        volatility (:mod:`fundguard.models.scenarios.excursions`). "default": the shipped
        ``DEFAULT_EXCURSIONS`` (Binance BTC + ETH daily, standardized by sigma, so it applies to
        any market and to hourly models; hourly wicks are somewhat heavier, see
        ``HOURLY_VS_DAILY``) for every market; one model for all markets or one per market (a
        mapping naming every market); "bridge" the Brownian-bridge fallback (too thin beyond
        about 10%); None: no excursions (``low`` and ``high`` None).
    progress : callable(done, total), optional
        Called after each chunk with the scenarios simulated so far and N (from the worker
        threads, one call at a time), for a progress bar. Does not change the result.

    Returns
    -------
    ReturnPaths
        ``returns``, ``volatility`` and (unless ``excursions=None``) ``low`` and ``high``
        (N, T, J) float64 in the models' units; ``tails``
        ("evt") and ``copula`` ("parametric", J >= 2) as fitted; ``metadata`` with the seed.
        Peak memory is the returned arrays (four with excursions, two without) plus the chunk
        buffers.

    Raises
    ------
    SpecificationError
        Bad arguments, or models at different frequencies.
    InsufficientHistoryError
        "fhs", "evt" or a copula fit with fewer than 250 dates common to all markets.

    Warns
    -----
    HeavyTailWarning
        "evt": a fitted tail index >= 0.5.

    Notes
    -----
    For "fhs" and "evt" with several markets, and for the copula fit, residuals are aligned on
    the dates common to all markets; "evt" tails are fitted on those dates. The recursions and
    the starting point are in the module notes.
    """
    plan = plan_simulation(models, horizon, n_scenarios, innovations=innovations, seed=seed,
                           copula=copula, tail_fraction=tail_fraction, excursions=excursions)
    return plan.simulate(chunk_size=chunk_size, threads=threads, progress=progress)


@dataclass(frozen=True, eq=False)
class SimulationPlan:
    """Everything :func:`simulate_returns` needs to draw any range of its paths.

    Built once by :func:`plan_simulation` (validation, copula and tail fits, tabulated
    transforms); holds only numpy arrays and plain values, so it pickles small and can be
    sent to other processes (the Dask workers of ``fundguard.models.chunked``), which then
    draw their own blocks of scenarios: blocks ``[b0, b1)`` give rows
    ``b0 * SCENARIO_BLOCK .. min(b1 * SCENARIO_BLOCK, N)`` of the full run, bit for bit.
    """

    names: tuple[str, ...]
    horizon: int
    n_scenarios: int
    innovations: str
    root: np.random.SeedSequence
    sampler: Parametric | Bootstrap
    dynamics: Dynamics
    period: pd.Timedelta | None
    long_run_volatility: np.ndarray
    tails: Mapping[str, TailFit]
    copula: Copula | None
    metadata: Mapping[str, Any]
    excursions: tuple[ExcursionLaw, ...] | None = None

    @property
    def n_blocks(self) -> int:
        """Number of random-number blocks, ``ceil(N / SCENARIO_BLOCK)``."""
        return -(-self.n_scenarios // SCENARIO_BLOCK)

    def simulate(self, first_block: int = 0, stop_block: int | None = None, *,
                 chunk_size: int | None = None, threads: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> ReturnPaths:
        """Paths of blocks ``[first_block, stop_block)`` (all by default) as a ReturnPaths.

        ``metadata["rows"]`` records the rows ``[start, stop)`` of the full run they are.
        ``chunk_size``, ``threads`` and ``progress`` are those of :func:`simulate_returns`
        (``progress`` counts the rows of this range).
        """
        stop_block = self.n_blocks if stop_block is None else int(stop_block)
        first_block = int(first_block)
        if not 0 <= first_block < stop_block <= self.n_blocks:
            raise SpecificationError(
                f"block range [{first_block}, {stop_block}) is outside [0, {self.n_blocks}) "
                f"of a {self.n_scenarios}-scenario plan")
        start = first_block * SCENARIO_BLOCK
        stop = min(stop_block * SCENARIO_BLOCK, self.n_scenarios)
        j = len(self.names)
        returns = np.empty((stop - start, self.horizon, j))
        volatility = np.empty((stop - start, self.horizon, j))
        laws = self.excursions
        low = np.empty_like(returns) if laws is not None else None
        high = np.empty_like(returns) if laws is not None else None
        blocks_per_chunk = _blocks_per_chunk(chunk_size, self.horizon, j)
        n_streams = self.sampler.n_streams
        done, done_lock = [0], threading.Lock()

        def work(first: int) -> None:
            _simulate_chunk(first)
            if progress is not None:
                with done_lock:
                    done[0] += min(first + blocks_per_chunk, stop_block) * SCENARIO_BLOCK - first * SCENARIO_BLOCK
                    progress(min(done[0], stop - start), stop - start)

        def _simulate_chunk(first: int) -> None:
            blocks = range(first, min(first + blocks_per_chunk, stop_block))
            sizes = [min(SCENARIO_BLOCK, self.n_scenarios - b * SCENARIO_BLOCK) for b in blocks]
            # Market j's excursions in block b come from the child (b, n_streams + j), after the
            # block's innovation streams: the returns are those of a run without excursions, and
            # a block's first rows draw the same whatever its size (a shorter run is a prefix).
            streams = [block_streams(self.root, b, n_streams + (len(laws) if laws is not None else 0))
                       for b in blocks]
            z = self.sampler.innovations([s[:n_streams] for s in streams], sizes, self.horizon)
            row = first * SCENARIO_BLOCK - start
            rows = slice(row, row + sum(sizes))
            self.dynamics.run(z, returns[rows], volatility[rows])
            if laws is None:
                return
            for size, block_stream in zip(sizes, streams):
                rows, row = slice(row, row + size), row + size
                for column, law in enumerate(laws):
                    low[rows, :, column], high[rows, :, column] = law.draw(
                        returns[rows, :, column], volatility[rows, :, column], block_stream[n_streams + column])

        # chunks are independent: own streams, own output rows
        in_threads(work, range(first_block, stop_block, blocks_per_chunk), threads, "fundguard-simulate")
        metadata = dict(self.metadata)
        if (start, stop) != (0, self.n_scenarios):
            metadata["rows"] = [start, stop]
        return ReturnPaths(
            returns=returns,
            volatility=volatility,
            markets=self.names,
            period=self.period,
            long_run_volatility=self.long_run_volatility,
            tails=dict(self.tails),
            copula=self.copula,
            metadata=metadata,
            low=low,
            high=high,
        )


def plan_simulation(
    models: Mapping[str, VolModel],
    horizon: int,
    n_scenarios: int,
    *,
    innovations: str = "parametric",
    seed: int | np.random.SeedSequence | None = None,
    copula: str | Copula = "t",
    tail_fraction: float = 0.1,
    excursions: ExcursionSpec = "default",
) -> SimulationPlan:
    """Validate and fit what :func:`simulate_returns` needs, without drawing any path.

    Arguments, errors and warnings are those of :func:`simulate_returns`. ``plan.simulate()``
    gives exactly ``simulate_returns(...)``; ``plan.simulate(b0, b1)`` a range of its blocks.
    """
    names, fitted = validate_models(models)
    horizon = positive_int("horizon", horizon)
    n_scenarios = positive_int("n_scenarios", n_scenarios)
    if innovations not in INNOVATIONS:
        raise SpecificationError(f"innovations must be one of {INNOVATIONS}, got {innovations!r}")
    if not isinstance(copula, Copula) and copula not in ("t", "gaussian"):
        raise SpecificationError(f"copula must be 't', 'gaussian' or a Copula, got {copula!r}")
    laws = resolve_excursions(excursions, names)
    root = seed_sequence(seed)
    period = common_period(names, fitted)
    j = len(fitted)

    fitted_copula: Copula | None = None
    tails: dict[str, TailFit] = {}
    if innovations == "parametric":
        if j > 1:
            if isinstance(copula, Copula):
                if copula.markets != names:
                    raise SpecificationError(f"copula markets {list(copula.markets)} differ from models {list(names)}")
                fitted_copula = copula
            else:
                _, residuals = _common_residuals(names, fitted, "fitting the copula (or pass copula=a fitted Copula)")
                fitted_copula = fit_copula(residuals, family=copula, markets=names)
        sampler: Parametric | Bootstrap = Parametric([Marginal.of(m) for m in fitted], fitted_copula)
    else:
        _, residuals = _common_residuals(names, fitted, f"innovations={innovations!r}")
        # Bootstrapped residuals are rescaled to unit mean square, so that the variance recursion
        # runs at its fitted persistence: a fitted t or GED law leaves the sample's E[z^2] away
        # from 1 (DOGE GARCH-GED: 1.31, which turned persistence 0.96 into 1.07 and simulated
        # daily log returns of +46; Binance BTC hourly GJR-t: returns of 2.7 in one hour). The
        # filtered historical simulation of Barone-Adesi, Giannopoulos & Vosper (1999, J. Futures
        # Markets 19, 583) resamples residuals standardized to unit variance in the same way.
        residuals = residuals / np.sqrt(np.mean(residuals * residuals, axis=0))
        if innovations == "evt":
            fits = [fit_tails_quietly(residuals[:, i], tail_fraction, name) for i, name in enumerate(names)]
            for fit in fits:
                warn_if_heavy(fit, stacklevel=4)
            tails = dict(zip(names, fits))
            sampler = Bootstrap(residuals, fits)
        else:
            sampler = Bootstrap(residuals, None)

    metadata = {
        "generator": "fundguard.models.simulate_returns",
        "innovations": innovations,
        "horizon": horizon,
        "period": None if period is None else str(period),
        "n_scenarios": n_scenarios,
        "seed": {"entropy": root.entropy, "spawn_key": list(root.spawn_key)},
        "scenario_block": SCENARIO_BLOCK,
        "models": {name: {"spec": str(m.spec), "params": dict(m.params), "next_variance": m.next_variance}
                   for name, m in zip(names, fitted)},
    }
    if fitted_copula is not None:
        metadata["copula"] = fitted_copula.describe()
    if tails:
        metadata["tails"] = {name: fit.describe() for name, fit in tails.items()}
    metadata["excursions"] = None if laws is None else {name: law.describe() for name, law in zip(names, laws)}
    return SimulationPlan(
        names=names,
        horizon=horizon,
        n_scenarios=n_scenarios,
        innovations=innovations,
        root=root,
        sampler=sampler,
        dynamics=Dynamics(fitted),
        period=period,
        long_run_volatility=long_run_volatility_of(fitted),
        tails=tails,
        copula=fitted_copula,
        metadata=json_safe(metadata),
        excursions=laws,
    )


def _common_residuals(names: tuple[str, ...], models: Sequence[VolModel], purpose: str) -> tuple[pd.Index, np.ndarray]:
    for name, m in zip(names, models):
        if not len(m.std_resid):
            raise InsufficientHistoryError(
                f"models[{name!r}] has no standardized residuals (rebuilt from numbers: VolModel.from_dict, a preset), "
                f"which {purpose} needs; fit it to returns with fit_volatility"
            )
    if len(models) == 1:
        return models[0].index, np.asarray(models[0].std_resid, dtype=np.float64)[:, None]
    index = models[0].index
    for m in models[1:]:
        index = index.intersection(m.index)
    if len(index) < MIN_RETURNS:
        raise InsufficientHistoryError(
            f"markets {list(names)} share {len(index)} dates of standardized residuals; joint innovations need at "
            f"least {MIN_RETURNS}"
        )
    columns = [pd.Series(m.std_resid, index=m.index).reindex(index).to_numpy() for m in models]
    return index, np.ascontiguousarray(np.column_stack(columns))


def _blocks_per_chunk(chunk_size: int | None, horizon: int, n_markets: int) -> int:
    if chunk_size is None:
        return max(1, _CHUNK_ELEMENTS // (SCENARIO_BLOCK * horizon * n_markets))
    return -(-positive_int("chunk_size", chunk_size) // SCENARIO_BLOCK)
