"""Where a run computes, and whether it fits there: CPUs, memory, the Dask cluster of ``[compute]``.

Every check here runs before any work (a run this machine cannot hold is refused with the key
to lower, ``file:line``); :func:`compute_client` is the one place a run's Dask client is made.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

from fundguard.models.chunked import local_client, scheduler_client
from fundguard.models.parallel import usable_cpus  # re-exported: the job's CPU count is the library's
from fundguard.models.errors import ConfigError

from ..methods import METHODS, fresh_size
from .config import CalibrationConfig, ScenarioConfig, config_where

__all__ = ["compute_client", "check_local_cluster", "check_workers", "usable_cpus", "WORKERS_PER_CPU",
           "available_memory", "estimate_memory", "check_memory"]


@contextlib.contextmanager
def compute_client(compute: Any, client: Any = None) -> Iterator[Any]:
    """Where a run computes: ``client`` when given (left open), else the Dask client of ``[compute]``
    (the scheduler's, or a local cluster of ``workers`` processes; closed when the block ends),
    else None (in memory, in this process).

    Making a client fails with one ConfigError line: a scheduler address where nothing (or no Dask
    scheduler) answers within Dask's connect timeout, or a local cluster whose workers die at
    start-up (:func:`~fundguard.models.chunked.scheduler_client`, ``local_client``).
    """
    if client is not None or not compute.distributed:
        yield client
        return
    made = local_client(compute.workers) if compute.scheduler is None else scheduler_client(compute.scheduler)
    with made as opened:
        yield opened


def check_local_cluster(cfg: CalibrationConfig, client: Any = None) -> None:
    """:func:`check_workers` for the local cluster ``[compute] workers`` would start (none with a
    scheduler address or a ``client`` given); errors cite the key's ``file:line``."""
    if client is None and cfg.compute.workers is not None and cfg.compute.scheduler is None:
        check_workers(cfg.compute.workers, force=cfg.compute.force_workers,
                      where=lambda message: config_where(cfg, "compute.workers", message))


#: Working memory of each method's solve, in multiples of the random ScenarioSet it solves on
#: (losses and premium bases, 8 N T (J + 1) bytes): the screened rows, their cumulated and scaled
#: copies and the solver's matrices. Measured (tracemalloc peak of the solve step above the data
#: it starts with; preset book, J = 3, T = 30, N = 5e4..2e5, linear in N): cvar 2.5, exact 4.7,
#: scenario 2.7 at N = 1e4 (it is too slow to measure higher). "certified" solves "exact" on the
#: N scenarios, then holds its own fresh draw (:func:`fresh_draw`, counted apart).
_SOLVE_FACTOR = {"cvar": 2.5, "exact": 4.7, "scenario": 2.7, "certified": 4.7}


def fresh_draw(cfg: CalibrationConfig, method: str) -> int:
    """Fresh scenarios method "certified" draws by default in a run (:func:`~fundguard.optimizer.fresh_size`
    at the problem's alpha and confidence, the default tail elasticity; 0 for other methods)."""
    if method != "certified":
        return 0
    return fresh_size(cfg.problem.alpha, cfg.problem.confidence)
#: A Dask worker process before it holds any data (interpreter, numpy, dask), bytes.
_WORKER_BASE = 250 * 2**20
#: Local Dask workers allowed per usable CPU unless forced: more only oversubscribe the cores.
WORKERS_PER_CPU = 4


def check_workers(workers: int, *, force: bool = False, where: Callable[[str], str] = lambda message: message,
                  option: str = "compute.workers") -> None:
    """Refuse a local cluster of more than ``WORKERS_PER_CPU`` workers per usable CPU unless ``force``.

    ``option`` names the setting in the message (``--workers`` on the command line); ``where``
    adds its location (``file:line``).
    """
    limit = WORKERS_PER_CPU * usable_cpus()
    if workers > limit and not force:
        how = "--force-workers" if option.startswith("--") else "compute.force_workers = true (or --force-workers)"
        raise ConfigError(where(
            f"{option} = {workers} would start {workers} worker processes on {usable_cpus()} CPU(s); the limit is "
            f"{WORKERS_PER_CPU} per CPU ({limit}): use fewer, or {how} to start them anyway"))


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now: ``MemAvailable`` of /proc/meminfo
    (what the kernel can hand out without swapping), else free physical pages; None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def estimate_memory(cfg: CalibrationConfig, method: str | None = None, *, mode: str = "memory",
                    frontier_method: str | None = None, balance_check: bool = False,
                    calibrating: bool = True) -> int:
    """Peak bytes of a run's large arrays on this machine.

    Parameters
    ----------
    cfg : CalibrationConfig
    method : str, optional
        The solve method (default ``problem.method``).
    mode : {"memory", "local", "driver"}
        "memory": everything in this process; "local": chunked on a local Dask cluster (its
        workers and this process share the machine); "driver": chunked on a cluster elsewhere,
        only this process's part.
    frontier_method : str, optional
        Also trace the frontier with this method.
    balance_check : bool
        Add :func:`check_balance`'s evaluation of the balance (in this process, always).
    calibrating : bool
        With ``balance_check``: the target comes from a calibration (not a result file).

    Returns
    -------
    int, bytes

    Notes
    -----
    With N = ``n_scenarios`` (plus S stress scenarios), M = ``certify_scenarios``, T =
    ``horizon``, J markets, float64 (8 bytes), ``set(n) = 8 n T (J + 1)`` (losses (n, T) and
    premium bases (n, T, J)) and ``held(n) = set(n) + 24 n T J`` (a built set also holds the
    per-market fields, losses_by_market, liquidated and winners (n, T, J): all three counted,
    as the default loss model gives them), the in-memory run peaks at the larger of

    * building the scenarios: return paths, volatilities, intraday lows and highs of both draws
      ``32 (N + M) T J``, both scenario sets ``held(N) + held(M)`` and their concatenation with
      the stress scenarios ``held(N + S)`` (the per-market horizon losses come from
      ``losses_by_market``: ``8 N J``);
    * solving (the paths are freed by then): ``held(N) + held(M) + held(N + S)`` and the
      method's working set ``f_method set(N)`` (``_SOLVE_FACTOR``: the solvers read losses and
      premium bases only);
    * method "certified"'s own fresh draw (:func:`fresh_draw`, D scenarios): its paths and its
      built set beside the data, ``paths(D) + held(D) + set(D)`` (the set at the chosen fees).

    Chunked, the workers hold ``held(N + M)`` between them plus one chunk's paths each, and this
    process O(N) summaries ``8 N (2 + 2 J)``, the plotted 20,000 scenarios ``held(20,000)`` and
    the screened tail. The balance check holds ``32 M T J + held(M)``. Checked against tracemalloc peaks in-memory
    (within 1.25x; see the tests and the issue 13 notes); the chunked figures are a model.
    """
    scen = cfg.scenarios
    method = method or cfg.problem.method
    n, m, t, j = scen.n_scenarios, scen.certify_scenarios, scen.horizon, len(cfg.markets)
    s = len(scen.stress_dates) + len(scen.shocks)

    def scenario_set(rows: int) -> int:
        return 8 * rows * t * (j + 1)

    def held(rows: int) -> int:
        return scenario_set(rows) + 24 * rows * t * j

    def paths(rows: int) -> int:
        return 32 * rows * t * j  # returns, volatility, low, high

    factor = max(_SOLVE_FACTOR.get(method, max(_SOLVE_FACTOR.values())),
                 _SOLVE_FACTOR.get(frontier_method, 0.0) if frontier_method else 0.0)
    data = held(n) + held(m) + (held(n + s) if s else 0)
    drawn = fresh_draw(cfg, method)
    if mode == "memory":
        calibration = max(paths(n + m) + data + 8 * n * j, data + int(factor * scenario_set(n)),
                          data + paths(drawn) + held(drawn) + scenario_set(drawn))
    else:
        plotted = held(min(n, 20_000))
        # the tail that screening keeps is a few times alpha N at the levels solved
        tail = int(factor * scenario_set(min(n + s, math.ceil(20 * cfg.problem.alpha * n) + s)))
        calibration = 8 * n * (2 + 2 * j) + plotted + tail
        if mode == "local":
            workers = cfg.compute.workers or 1
            chunk = cfg.compute.chunk_size or max(1024, 64 * 2**20 // (8 * t * (4 * j + 1)))
            calibration += held(n + m) + workers * (paths(min(chunk, n)) + _WORKER_BASE)
    if not balance_check:
        return calibration
    check = paths(m) + held(m)
    return max(calibration, check) if calibrating else check


def check_memory(cfg: CalibrationConfig, method: str | None = None, *, frontier_method: str | None = None,
                 client: Any = None, balance_check: bool = False, calibrating: bool = True,
                 available: int | None = None) -> None:
    """Refuse (ConfigError) a run whose arrays (:func:`estimate_memory`) exceed the memory available.

    The message names the key that makes the run large (with ``file:line``), the GB needed and
    the GB available, and points to the chunked (Dask) mode when that would fit.
    """
    available = available_memory() if available is None else available
    if available is None:
        return
    method = method or cfg.problem.method
    if client is not None or cfg.compute.scheduler is not None:
        mode = "driver"
    elif cfg.compute.workers is not None:
        mode = "local"
    else:
        mode = "memory"
    options = dict(frontier_method=frontier_method, balance_check=balance_check, calibrating=calibrating)
    needed = estimate_memory(cfg, method, mode=mode, **options)
    if needed <= available:
        return
    scen = cfg.scenarios
    defaults = ScenarioConfig()
    # the key furthest above its default is the one to blame (ties: the largest draw)
    sizes = {"n_scenarios": scen.n_scenarios, "certify_scenarios": scen.certify_scenarios, "horizon": scen.horizon}
    key = max(sizes, key=lambda k: (sizes[k] / getattr(defaults, k), k != "horizon", sizes[k]))
    where = {"memory": "in this process", "local": "on this machine (a local Dask cluster and this process)",
             "driver": "in this process (besides the Dask workers)"}[mode]
    message = (f"scenarios.{key} = {sizes[key]:,} needs about {_gb(needed)} of memory {where} "
               f"({scen.n_scenarios:,} + {scen.certify_scenarios:,} scenarios x {scen.horizon:,} periods x "
               f"{len(cfg.markets)} markets, method {method!r}); {_gb(available)} is available: lower it")
    if mode == "memory" and not balance_check:
        local_cfg = dataclasses.replace(cfg, compute=dataclasses.replace(cfg.compute, workers=usable_cpus()))
        chunked = method if method in METHODS and METHODS[method].distributed else "cvar"
        switch = "" if chunked == method else f" with method {chunked!r}"
        local = estimate_memory(local_cfg, chunked, mode="local", **options)
        remote = estimate_memory(cfg, chunked, mode="driver", **options)
        if local <= available:
            message += (f", or run it chunked on a local Dask cluster{switch} ([compute] workers = {usable_cpus()} "
                        f"or --workers {usable_cpus()}; about {_gb(local)})")
        elif remote <= available:
            held = 8 * (scen.n_scenarios + scen.certify_scenarios) * scen.horizon * (4 * len(cfg.markets) + 1)
            message += (f", or run it chunked on a Dask cluster{switch} (--scheduler) whose workers hold about "
                        f"{_gb(held)} between them (this process then needs about {_gb(remote)})")
    raise ConfigError(config_where(cfg, f"scenarios.{key}", message))


def _gb(size: int) -> str:
    return f"{size / 1e9:,.1f} GB" if size >= 1e8 else f"{size / 1e9:.3f} GB"
