"""Scenario sets that live in chunks on Dask workers (``pip install "fundguard[dask]"``).

A :class:`ChunkedScenarioSet` is the distributed form of a :class:`~fundguard.models.ScenarioSet`:
the random scenarios are cut into chunks of whole random-number blocks
(:data:`~fundguard.models.scenarios.SCENARIO_BLOCK` = 1024 scenarios), and each chunk is
simulated (:meth:`SimulationPlan.simulate`) and turned into venue losses
(:func:`~fundguard.models.venue.build_scenarios`) *on a Dask worker*, where it stays. The client
holds the plan, the venue, the chunk layout, the futures of the chunks and the stress scenarios
(few, deterministic: built on the client and kept whole).

Choices (issue 9)
-----------------
* **Same numbers whatever the layout.** Chunk ``[b0, b1)`` is ``plan.simulate(b0, b1)``: its
  blocks draw from the streams spawned for them from the plan's one ``SeedSequence`` (spawn keys
  ``(block, stream)``), so the rows are bit for bit those of ``simulate_returns`` with the same
  seed, whatever the chunk size or the number of workers; ``build_scenarios`` is row-wise, so the
  chunk's losses are those rows of the in-memory ScenarioSet.
* **Nothing is gathered.** Passes over the scenarios (:meth:`ChunkedScenarioSet.map`) run a
  function on every chunk where it lives and bring back only what it returns (per-chunk
  summaries); :mod:`fundguard.optimizer.distributed` builds the solver's passes on it. Each
  chunk is a whole ScenarioSet, so its per-market fields (``losses_by_market``,
  ``liquidated``, ``winners``) are there for a pass to read like its losses.
  :meth:`ChunkedScenarioSet.gather` exists for small sets and tests, and says so.
* **Kept or regenerated.** ``persist=True`` (default) keeps every chunk in worker memory
  (losses, premium bases and the per-market fields the loss model gives: ``N T (4 J + 1)``
  float64 with all three, 3.1 GB per million scenarios at T = 30, J = 3, of which 0.96 GB are
  the losses and premium bases); ``persist=False``
  keeps nothing and regenerates each chunk from the plan in every pass (the same bits: the plan
  is deterministic), for sets larger than the cluster's memory, at the cost of one simulation
  per pass.
* **Failures.** Chunks are ordinary Dask tasks with their plan and venue as arguments (the plan
  pickles to a few hundred kB), so a chunk lost with its worker is recomputed from its lineage
  and a task that killed its worker is retried (``distributed.scheduler.allowed-failures``).
* **No dask at import.** This module imports nothing from dask; :func:`chunked_scenarios` needs
  a ``distributed.Client`` the caller made (and closes), :func:`local_client` makes a
  ``LocalCluster`` for one call and :func:`scheduler_client` connects to a running scheduler.
  Without the extra, they raise :class:`MissingDependencyError` naming it.
* **One line when the cluster is not there.** Dask's own client waits forever on a server that
  accepts the connection and says nothing, and reads the first bytes of any other server as a
  frame length (an HTTP server: 3 EiB to allocate); a worker that dies while the local cluster
  starts is a "Nanny failed to start" traceback plus the workers' logged tracebacks. So
  :func:`scheduler_client` first makes one Dask handshake bounded by the connect timeout, and
  :func:`local_client` keeps Dask's start-up errors off stderr and raises the root cause; both
  as one-line :class:`ConfigError`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import math
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ConfigError, MissingDependencyError, ScenarioError
from .scenarios import SCENARIO_BLOCK, SimulationPlan
from .scenarioset import PER_MARKET_FIELDS, ScenarioSet, store_dtype
from .venue import LossModel, VenueBook, build_scenarios
from .venue import DEFAULT_LOSS_MODEL
from .venue import loss_model as named_loss_model

__all__ = [
    "ChunkedScenarioSet",
    "chunked_scenarios",
    "local_client",
    "scheduler_client",
    "require_distributed",
    "describe_layout",
    "DASK_EXTRA",
]

#: What to install for the distributed mode.
DASK_EXTRA = 'pip install "fundguard[dask]"'

# Default chunk: about 64 MiB of a chunk's arrays, counting all three per-market fields (the
# default loss model gives them): 8 T (4 J + 1) bytes a scenario (T = 30, J = 3: 21 blocks,
# 21,504 scenarios): large enough that a task's overhead (~1 ms) is noise, small enough that a
# worker holds several and a lost one is quick to recompute.
_CHUNK_BYTES = 64 * 2**20
#: float64 arrays of (T, J) per scenario a chunk holds at most: premium bases and the per-market fields.
_PER_SCENARIO_MARKET_ARRAYS = 1 + len(PER_MARKET_FIELDS)


def require_distributed() -> Any:
    """The ``distributed`` module, or :class:`MissingDependencyError` naming the extra."""
    try:
        import distributed
    except ImportError:
        raise MissingDependencyError(
            f"the distributed mode needs dask.distributed, which is not installed: {DASK_EXTRA}"
        ) from None
    return distributed


@contextmanager
def local_client(n_workers: int, *, threads_per_worker: int = 1, memory_limit: str | float | None = "auto") -> Iterator[Any]:
    """A ``distributed.Client`` on a fresh ``LocalCluster`` of ``n_workers`` processes, closed on exit.

    Parameters
    ----------
    n_workers : int >= 1
        Worker processes.
    threads_per_worker : int, default 1
        numpy releases the GIL in the heavy loops, but one thread per process keeps memory per
        worker predictable.
    memory_limit : str, float or None, default "auto"
        Per worker, as ``LocalCluster`` takes it ("auto": the machine's memory / n_workers).
    """
    if isinstance(n_workers, bool) or not isinstance(n_workers, (int, np.integer)) or n_workers < 1:
        raise ScenarioError(f"n_workers must be an integer >= 1, got {n_workers!r}")
    distributed = require_distributed()
    # Dask logs the cluster's start and shutdown at INFO on stderr ("Remove worker", "Nanny
    # closed", ...): noise for a calibration job. This cluster is ours, so its logger is kept at
    # WARNING while it lives (the level is restored after; warnings and errors still show).
    log = logging.getLogger("distributed")
    level = log.level
    try:
        # While it starts, a failing worker is logged as several ERROR tracebacks, here and in the
        # worker process (whose nanny logger silence_logs sets): they are held back and the root
        # cause is raised as one line instead.
        log.setLevel(logging.CRITICAL)
        try:
            cluster = distributed.LocalCluster(n_workers=int(n_workers), threads_per_worker=threads_per_worker,
                                               processes=True, dashboard_address=":0", memory_limit=memory_limit,
                                               silence_logs=logging.CRITICAL)
        except Exception as exc:
            workers = f"{int(n_workers)} worker" + ("s" if n_workers != 1 else "")
            raise ConfigError(f"the local Dask cluster of {workers} did not start: {_root_cause(exc)}") from None
        # started: warnings and errors show again (silence_logs also raised Dask's stderr handlers;
        # the nannies put back their own levels when they close)
        log.setLevel(max(level, logging.WARNING))
        for handler in log.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.level > logging.WARNING:
                handler.setLevel(logging.WARNING)
        try:
            client = distributed.Client(cluster)
            try:
                yield client
            finally:
                client.close()
        finally:
            cluster.close()
    finally:
        log.setLevel(level)


@contextmanager
def scheduler_client(address: str, *, timeout: float | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` connected to the running scheduler at ``address``, closed on exit.

    Parameters
    ----------
    address : str
        The scheduler's address, ``"tcp://host:8786"``.
    timeout : float, optional
        Seconds to wait for the connection and the scheduler's handshake; default Dask's
        ``distributed.comm.timeouts.connect`` (30 s unless configured, for example with the
        environment variable ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s``).

    Raises
    ------
    ConfigError
        Nothing listens there, the server there does not answer as a Dask scheduler within
        ``timeout``, or it answers something else (one line, within ``timeout``).
    """
    distributed = require_distributed()
    seconds = _connect_timeout(timeout)
    where = f"compute.scheduler: {address!r}"
    _handshake(address, seconds, where)
    try:
        client = distributed.Client(address, timeout=seconds)
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"{where}: cannot connect: {_first_line(exc)}") from None
    try:
        yield client
    finally:
        client.close()


def _connect_timeout(timeout: float | None) -> float:
    if timeout is None:
        import dask
        from dask.utils import parse_timedelta

        return float(parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"), default="seconds"))
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or timeout <= 0:
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


def _handshake(address: str, seconds: float, where: str) -> None:
    """One Dask handshake with ``address`` within ``seconds``, on its own thread and event loop
    (the caller may be inside a running loop); ConfigError saying what answered instead."""
    from distributed.comm import connect

    outcome: dict[str, BaseException] = {}

    async def exchange() -> None:
        # connect's own retries end a little earlier, so that its "cannot connect" wins when nothing listens
        comm = await connect(address, timeout=0.9 * seconds)
        await comm.close()

    def run() -> None:
        try:
            asyncio.run(asyncio.wait_for(exchange(), seconds))
        except BaseException as exc:  # reported on the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="fundguard-scheduler-handshake", daemon=True)
    thread.start()
    thread.join(seconds + 5.0)
    error = outcome.get("error")
    if thread.is_alive() or isinstance(error, (asyncio.TimeoutError, TimeoutError)):
        # connected, but no handshake came back: a server that is not a Dask scheduler, or a stuck one
        raise ConfigError(f"{where}: no Dask handshake within {seconds:g} s (is a Dask scheduler listening there?)")
    if isinstance(error, OSError):
        raise ConfigError(f"{where}: cannot connect: {_first_line(error)}")
    if error is not None:
        # garbage read as a frame length (MemoryError), a malformed message, ...
        raise ConfigError(
            f"{where}: the server there is not a Dask scheduler (its answer is not the Dask protocol: "
            f"{type(error).__name__}: {_first_line(error)[:120]})")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _root_cause(exc: BaseException) -> str:
    """``Type: message`` of the innermost exception of a chain (Dask wraps the worker's own error)."""
    seen = {id(exc)}
    while (inner := exc.__cause__ or exc.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        exc = inner
    return f"{type(exc).__name__}: {_first_line(exc)}"


@dataclass(frozen=True)
class _Store:
    """How the chunks keep their figures: their dtype, and whether only the fund's fields."""

    dtype: str = "float64"
    fund_only: bool = False


@dataclass(frozen=True, eq=False)
class ChunkedScenarioSet:
    """Random scenarios in chunks on Dask workers, plus stress scenarios on the client.

    Build it with :func:`chunked_scenarios`. It stands for the in-memory
    ``ScenarioSet.concat([build_scenarios(plan.simulate(), venue), stress])``: random scenarios
    first, in plan order, then the stress ones. It is a :class:`~fundguard.models.ScenarioStore`
    (:meth:`map`, :meth:`stress_part`, ``n_random``, ``distributed`` True).

    Attributes
    ----------
    client : distributed.Client
        The cluster the chunks live on (the caller's; never closed here).
    plan : SimulationPlan
    venue : VenueBook
    blocks : tuple of (int, int)
        Block range ``[b0, b1)`` of each chunk; rows ``b0 * 1024 .. min(b1 * 1024, N)``.
    parts : tuple of Future, or None
        Per chunk, the future of its ScenarioSet on a worker (``persist=True``); None when chunks
        are regenerated in every pass.
    stress : ScenarioSet or None
        Stress scenarios (``is_stress`` all True), kept whole on the client.
    loss_model : LossModel
    markets : tuple of str
        The venue's markets, in premium-base order.
    store : how the chunks keep their figures (:func:`chunked_scenarios`' ``dtype`` and ``fund_only``).
    """

    client: Any = field(repr=False)
    plan: SimulationPlan = field(repr=False)
    venue: VenueBook = field(repr=False)
    blocks: tuple[tuple[int, int], ...]
    parts: tuple[Any, ...] | None = field(repr=False)
    stress: ScenarioSet | None = field(repr=False)
    loss_model: LossModel = field(repr=False)
    markets: tuple[str, ...]
    store: _Store = field(default=_Store(), repr=False)

    # -- sizes (as on a ScenarioSet) ------------------------------------------------------------
    @property
    def n_random(self) -> int:
        """N, the random scenarios (in chunks on the workers)."""
        return self.plan.n_scenarios

    @property
    def n_stress(self) -> int:
        """Stress scenarios (on the client)."""
        return 0 if self.stress is None else self.stress.n_scenarios

    @property
    def n_scenarios(self) -> int:
        """Random plus stress scenarios, as ``ScenarioSet.n_scenarios`` counts them."""
        return self.n_random + self.n_stress

    @property
    def horizon(self) -> int:
        """T, periods per scenario."""
        return self.plan.horizon

    @property
    def n_markets(self) -> int:
        """J, the venue's markets."""
        return len(self.markets)

    @property
    def n_chunks(self) -> int:
        """Chunks of random scenarios on the workers."""
        return len(self.blocks)

    @property
    def distributed(self) -> bool:
        """True: the random scenarios live on the Dask workers (see :class:`~fundguard.models.ScenarioStore`)."""
        return True

    def stress_part(self) -> ScenarioSet | None:
        """The stress scenarios (kept whole on the client), or None: ``stress`` as a store method."""
        return self.stress

    @functools.cached_property
    def per_market_fields(self) -> tuple[str, ...]:
        """The per-market fields the chunks carry (those the loss model gives), asked of the first chunk once.

        A persisted set asks its first chunk on its worker; otherwise its first block of 1024
        scenarios is regenerated to see (the loss model gives the same fields for every chunk:
        :func:`~fundguard.models.build_scenarios` refuses one that does not).
        """
        if self.parts is not None:
            future = self.client.submit(_fields_of, self.parts[0], pure=False)
        else:
            b0 = self.blocks[0][0]
            future = self.client.submit(_regenerated, _fields_of_chunk, self.plan, self.venue, self.loss_model,
                                        self.store, b0, b0 + 1, 0, pure=False)
        try:
            return tuple(future.result())
        finally:
            future.release()

    @property
    def persisted(self) -> bool:
        """True when the chunks are kept in worker memory, False when regenerated per pass."""
        return self.parts is not None

    def rows(self, chunk: int) -> tuple[int, int]:
        """Rows ``[start, stop)`` of the random scenarios held by chunk ``chunk``."""
        b0, b1 = self.blocks[chunk]
        return b0 * SCENARIO_BLOCK, min(b1 * SCENARIO_BLOCK, self.n_random)

    def __repr__(self) -> str:
        return (f"ChunkedScenarioSet(n_random={self.n_random}, n_stress={self.n_stress}, horizon={self.horizon}, "
                f"markets={list(self.markets)}, chunks={self.n_chunks}, persisted={self.persisted})")

    # -- passes -----------------------------------------------------------------------------------
    def map(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Any]:
        """``[function(chunk_i, start_i, *args, **kwargs) for every chunk]``, run on the workers.

        ``chunk_i`` is the chunk's ScenarioSet (random scenarios only) and ``start_i`` its first
        row in the full set. Only the return values travel; they come back in chunk order.
        ``function`` and the arguments must pickle (module-level functions, numpy arrays).
        """
        starts = [self.rows(i)[0] for i in range(self.n_chunks)]
        if self.parts is not None:
            futures = [self.client.submit(function, part, start, *args, pure=False, **kwargs)
                       for part, start in zip(self.parts, starts)]
        else:
            futures = [self.client.submit(_regenerated, function, self.plan, self.venue, self.loss_model, self.store, b0, b1,
                                          start, *args, pure=False, **kwargs)
                       for (b0, b1), start in zip(self.blocks, starts)]
        try:
            return self.client.gather(futures)
        finally:
            for future in futures:
                future.release()

    def gather(self) -> ScenarioSet:
        """The whole set in client memory (random then stress): for small sets and tests only."""
        chunks = self.map(_identity)
        parts = list(chunks) + ([self.stress] if self.stress is not None else [])
        return ScenarioSet.concat(parts)

    def release(self) -> None:
        """Drop the chunks from worker memory (the set cannot be used afterwards)."""
        if self.parts is not None:
            for part in self.parts:
                part.release()


def chunked_scenarios(
    plan: SimulationPlan,
    venue: VenueBook,
    client: Any,
    *,
    chunk_size: int | None = None,
    stress: ScenarioSet | None = None,
    loss_model: LossModel | str | None = None,
    persist: bool = True,
    dtype: str = "float64",
    fund_only: bool = False,
) -> ChunkedScenarioSet:
    """Simulate ``plan``'s scenarios and their venue losses in chunks on the workers of ``client``.

    Parameters
    ----------
    plan : SimulationPlan
        From :func:`~fundguard.models.plan_simulation` (seed, horizon, N and the fitted models).
    venue : VenueBook
        Its markets must all be in the plan.
    client : distributed.Client
        Connected to the cluster (a ``LocalCluster``, or a scheduler such as ``tcp://host:8786``
        whose workers have the same fundguard version installed).
    chunk_size : int, optional
        Scenarios per chunk, rounded up to whole blocks of 1024; default about 64 MiB of losses,
        premium bases and per-market fields per chunk, and at least 8 chunks when N allows.
        Never changes the numbers.
    stress : ScenarioSet, optional
        Stress scenarios (from ``build_scenarios(stress_paths(...), venue)``), kept on the client.
    loss_model : LossModel or str, optional
        Default ``DEFAULT_LOSS_MODEL`` (the stateful book).
        A str names one of ``LOSS_MODELS`` (:func:`~fundguard.models.loss_model`).
        Must pickle (a module-level function).
    persist : bool, default True
        Keep the chunks in worker memory (True) or regenerate them in every pass (False).
    dtype : {"float64", "float32"}, default "float64"
        How each chunk stores its figures (``ScenarioSet.dtype``: float32 halves the workers'
        memory; sums stay in float64).
    fund_only : bool, default False
        Keep only what the fund equation reads (losses, premium bases, per-market losses), not
        the liquidated notional and the winners (the after-fund analysis needs those).

    Returns
    -------
    ChunkedScenarioSet
        With ``persist=True`` the generation tasks are submitted and this returns at once; the
        first pass waits for them (``distributed.wait(chunked.parts)`` to wait explicitly).

    Raises
    ------
    ScenarioError
        Bad arguments: a venue market the plan does not simulate, stress scenarios with other
        markets or horizon, a bad chunk size.
    SpecificationError
        ``loss_model`` names no loss model of ``LOSS_MODELS``.
    MissingDependencyError
        dask.distributed is not installed.
    """
    distributed = require_distributed()
    if not isinstance(plan, SimulationPlan):
        raise ScenarioError(f"plan must be a SimulationPlan (plan_simulation), got {type(plan).__name__}")
    if not isinstance(venue, VenueBook):
        raise ScenarioError(f"venue must be a VenueBook, got {type(venue).__name__}")
    if not isinstance(client, distributed.Client):
        raise ScenarioError(f"client must be a distributed.Client, got {type(client).__name__}")
    for market in venue.markets:
        if market.name not in plan.names:
            raise ScenarioError(f"venue market {market.name!r} is not simulated by the plan; it has {list(plan.names)}")
    markets = venue.names
    if stress is not None:
        if not isinstance(stress, ScenarioSet):
            raise ScenarioError(f"stress must be a ScenarioSet, got {type(stress).__name__}")
        if stress.markets != markets or stress.horizon != plan.horizon:
            raise ScenarioError(
                f"stress scenarios have markets {list(stress.markets)} and horizon {stress.horizon}; "
                f"expected {list(markets)} and {plan.horizon}")
        stress = dataclasses.replace(stress, markets=markets, is_stress=np.ones(stress.n_scenarios, dtype=bool))
    if loss_model is None:
        loss_model = DEFAULT_LOSS_MODEL
    if isinstance(loss_model, str):
        loss_model = named_loss_model(loss_model)
    store = _Store(store_dtype(dtype), bool(fund_only))
    blocks = _layout(plan, len(markets), chunk_size)
    parts = None
    if persist:
        parts = tuple(client.submit(_generate, plan, venue, loss_model, b0, b1, store, pure=False) for b0, b1 in blocks)
    return ChunkedScenarioSet(client=client, plan=plan, venue=venue, blocks=blocks, parts=parts, stress=stress,
                              loss_model=loss_model, markets=markets, store=store)


def _layout(plan: SimulationPlan, n_markets: int, chunk_size: int | None) -> tuple[tuple[int, int], ...]:
    n_blocks = plan.n_blocks
    if chunk_size is None:
        per_block = SCENARIO_BLOCK * plan.horizon * (_PER_SCENARIO_MARKET_ARRAYS * n_markets + 1) * 8
        blocks_per_chunk = max(1, min(_CHUNK_BYTES // per_block, math.ceil(n_blocks / 8)))
    elif isinstance(chunk_size, (int, np.integer)) and not isinstance(chunk_size, bool) and chunk_size >= 1:
        blocks_per_chunk = -(-int(chunk_size) // SCENARIO_BLOCK)
    else:
        raise ScenarioError(f"chunk_size must be an integer >= 1 (scenarios per chunk), got {chunk_size!r}")
    return tuple((b0, min(b0 + blocks_per_chunk, n_blocks)) for b0 in range(0, n_blocks, blocks_per_chunk))


# -- what runs on the workers -----------------------------------------------------------------------


def _generate(plan: SimulationPlan, venue: VenueBook, loss_model: LossModel, b0: int, b1: int,
              store: _Store = _Store()) -> ScenarioSet:
    """Rows of blocks ``[b0, b1)``: simulated, then turned into venue losses (on a worker).

    One thread: the worker's own task threads already fill its cores (same numbers either way).
    """
    chunk = build_scenarios(plan.simulate(b0, b1, threads=1), venue, loss_model=loss_model, threads=1,
                            dtype=store.dtype)
    if store.fund_only and (chunk.liquidated is not None or chunk.winners is not None):
        chunk = dataclasses.replace(chunk, liquidated=None, winners=None)
    return chunk


def _regenerated(function: Callable[..., Any], plan: SimulationPlan, venue: VenueBook, loss_model: LossModel,
                 store: _Store, b0: int, b1: int, start: int, *args: Any, **kwargs: Any) -> Any:
    return function(_generate(plan, venue, loss_model, b0, b1, store), start, *args, **kwargs)


def _identity(chunk: ScenarioSet, start: int) -> ScenarioSet:
    return chunk


def _fields_of(chunk: ScenarioSet) -> tuple[str, ...]:
    return chunk.per_market_fields


def _fields_of_chunk(chunk: ScenarioSet, start: int) -> tuple[str, ...]:
    return chunk.per_market_fields


def describe_layout(chunked: ChunkedScenarioSet) -> Mapping[str, Any]:
    """JSON-ready description of the layout (for metadata and reports)."""
    return {"chunks": chunked.n_chunks, "scenario_block": SCENARIO_BLOCK, "persisted": chunked.persisted,
            "rows": [list(chunked.rows(i)) for i in range(chunked.n_chunks)]}
