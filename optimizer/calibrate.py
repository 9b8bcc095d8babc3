"""One call from a config to a certified policy: fit, simulate, build losses, solve, certify.

:func:`calibrate` is the library entry point for pricing systems (no printing, no global state,
safe to call from several threads: every random draw comes from the seed given, every object is
local to the call) and the engine behind ``fundguard calibrate``. Its :class:`CalibrationResult`
carries the same content as ``result.json`` (:meth:`CalibrationResult.to_dict`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fundguard.models import (
    SIMULATION_CANDIDATES,
    Copula,
    LeverageTier,
    Market,
    ScenarioSet,
    VenueBook,
    VolModel,
    VolSpec,
    build_scenarios,
    fit_volatility,
    load_prices,
    log_returns,
    simulate_returns,
    stress_paths,
)
from fundguard.models.errors import ConfigError

from .certificates import certify
from .config import CalibrationConfig, ScenarioConfig, config_where, load_config, parse_config
from .outputs import json_safe, package_versions, sha256_file
from .policy import Certificate, Policy
from .preset import Preset, default_config, load_preset
from .problem import PolicyProblem
from .api import solve

__all__ = ["CalibrationResult", "calibrate", "check_balance", "RESULT_SCHEMA_VERSION", "fund_paths", "required_fund",
           "estimate_memory", "available_memory", "check_memory", "check_workers", "usable_cpus", "WORKERS_PER_CPU"]

RESULT_SCHEMA_VERSION = 1
logger = logging.getLogger("fundguard")
logger.addHandler(logging.NullHandler())

#: Horizon-loss quantiles reported (of the total fund loss over the horizon, per scenario).
LOSS_QUANTILES = (0.5, 0.9, 0.99, 0.999)

Progress = Callable[[str], None]
#: What :func:`_models` returns: models and result info per market, from the preset or not, the preset copula.
Fitted = tuple[dict[str, VolModel], dict[str, Any], bool, Copula | None]


@dataclass(frozen=True, eq=False)
class CalibrationResult:
    """Everything a calibration produced; :meth:`to_dict` is ``result.json``.

    Attributes
    ----------
    policy : Policy
        The chosen fund target (currency units) and premium rates (fractions, market order).
    certificate : Certificate
        Out-of-sample ruin count on ``certify_scenarios`` fresh scenarios (never used to choose
        the policy) and its Clopper–Pearson upper bound.
    markets : tuple of str
    models : dict of market -> dict
        Fitted volatility model per market (spec, parameters, today's state, diagnostics) and
        where it came from (price file with SHA-256 and date range, or the built-in preset).
    tail : dict
        Horizon-loss quantiles, VaR and CVaR at alpha of the required fund, per-market share of
        tail losses, premium income, all in currency units.
    stress : list of dict
        Per stress scenario: label, horizon loss, lowest fund level under the policy, survived.
    inputs : dict
        Config digest and source, seed, method, package versions: what makes the run repeatable.
    notes : tuple of str
        Warnings worth reading (non-stationary fits, heavy tails, an unproven optimum, ...).
    timings : dict of str -> float
        Seconds per step (kept apart in ``to_dict`` so results are comparable across runs).
    scenarios : ScenarioSet
        The scenarios the policy was fitted on (random then stress), for plots and reports.
    market_losses : (N, J) float64 array
        Horizon loss per random scenario and market (contributions).
    frontier : list of Policy
        Cost of solvency over ``frontier_alphas`` (may be empty).
    """

    policy: Policy
    certificate: Certificate
    markets: tuple[str, ...]
    models: Mapping[str, Any]
    tail: Mapping[str, Any]
    stress: tuple[Mapping[str, Any], ...]
    inputs: Mapping[str, Any]
    notes: tuple[str, ...]
    timings: Mapping[str, float]
    scenarios: ScenarioSet = field(repr=False)
    market_losses: np.ndarray = field(repr=False)
    frontier: tuple[Policy, ...] = field(default=(), repr=False)

    @property
    def meets_target(self) -> bool:
        """The certificate's upper bound on P(ruin) is within the problem's alpha."""
        return self.certificate.upper_bound <= self.policy.alpha

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (schema ``RESULT_SCHEMA_VERSION``); run-dependent values sit in ``run``."""
        policy = self.policy.to_dict()
        policy.pop("solve_seconds", None)
        return {
            "schema_version": RESULT_SCHEMA_VERSION,
            "policy": policy,
            "certificate": self.certificate.to_dict(),
            "meets_target": self.meets_target,
            "markets": list(self.markets),
            "models": json_safe(self.models),
            "tail": json_safe(self.tail),
            "stress": json_safe(list(self.stress)),
            "frontier": [{"alpha": p.alpha, "fund_target": p.fund_target, "objective": p.objective,
                          "premium_rates": p.rates_by_market(), "method": p.method} for p in self.frontier],
            "inputs": json_safe(self.inputs),
            "notes": list(self.notes),
            "run": {"timings": {k: round(v, 4) for k, v in self.timings.items()},
                    "solve_seconds": round(self.policy.solve_seconds, 4)},
        }


def calibrate(
    config: CalibrationConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    seed: int | None = None,
    method: str | None = None,
    preset: Preset | None = None,
    frontier_alphas: tuple[float, ...] = (),
    frontier_method: str = "cvar",
    progress: Progress | None = None,
    client: Any = None,
) -> CalibrationResult:
    """Run a complete calibration.

    Parameters
    ----------
    config : CalibrationConfig, mapping, path to a TOML file, or None
        None runs the built-in preset (:func:`~fundguard.optimizer.preset.default_config`).
    seed : int, optional
        Overrides ``scenarios.seed``. The fit scenarios and the certificate's fresh scenarios come
        from two independent children of ``SeedSequence(seed)``.
    method : str, optional
        Overrides ``problem.method``.
    preset : Preset, optional
        Models for markets without a price file (default: the built-in preset).
    frontier_alphas : tuple of float
        Also trace the cost of solvency at these ruin levels, with ``frontier_method``.
    frontier_method : str, default "cvar"
        The method of the frontier (the fastest to re-solve; a conservative cost curve).
    progress : callable(str), optional
        Called with a short description at the start of each step (the CLI draws progress from
        it); the library itself never prints.
    client : distributed.Client, optional
        Run the scenarios, the solve, the certificate and the frontier on this Dask cluster
        (:mod:`fundguard.optimizer.distributed`); without it, the config's ``[compute]`` section
        decides (a scheduler address or a local cluster of ``workers`` processes, made and closed
        for this call), and without that the run is in memory. The numbers are the same either
        way (to about 1e-12 relative; ruin counts exactly). Distributed runs gather per-scenario
        summaries for the report (horizon losses, required funds: O(N), never the (N, T, J)
        arrays) and keep ``result.scenarios`` to the first 20,000 random scenarios (plots).

    Returns
    -------
    CalibrationResult

    Raises
    ------
    ConfigError, DataError, ModelError, InfeasibleError, SolverError, CertificationError
        Each with a message naming the key, market, date or constraint.
    """
    timings: dict[str, float] = {}
    notes: list[str] = []
    say = progress or (lambda message: None)

    cfg = _resolve_config(config)
    seed = _run_seed(cfg, seed)
    method = method or cfg.problem.method
    _check_mode(cfg, method, client)
    if client is None and cfg.compute.workers is not None and cfg.compute.scheduler is None:
        check_workers(cfg.compute.workers, force=cfg.compute.force_workers,
                      where=lambda message: config_where(cfg, "compute.workers", message))
    check_memory(cfg, method, frontier_method=frontier_method if frontier_alphas else None, client=client)

    clock = time.perf_counter()
    say(f"fitting volatility models for {len(cfg.markets)} market(s)")
    fitted = _models(cfg, preset, notes, say)
    timings["fit"] = time.perf_counter() - clock
    return _calibrate_fitted(cfg, fitted, seed, method, frontier_alphas, frontier_method, say, timings, notes, client)


def _calibrate_fitted(cfg: CalibrationConfig, fitted: Fitted, seed: int, method: str,
                      frontier_alphas: tuple[float, ...], frontier_method: str, say: Progress,
                      timings: dict[str, float], notes: list[str], client: Any) -> CalibrationResult:
    """:func:`calibrate` from fitted models on (fitted once per call, whichever mode runs it)."""
    if client is None and cfg.compute.distributed:
        with _compute_client(cfg.compute) as made:
            return _calibrate_fitted(cfg, fitted, seed, method, frontier_alphas, frontier_method, say, timings,
                                     notes, made)
    scen, prob = cfg.scenarios, cfg.problem
    names = cfg.market_names
    models, model_info, from_preset, copula = fitted

    clock = time.perf_counter()
    fit_seed, certify_seed = np.random.SeedSequence(seed).spawn(2)
    innovations = scen.innovations
    if from_preset and innovations != "parametric":
        raise ConfigError(
            f"scenarios.innovations = {innovations!r} needs each market's residual history, which the built-in "
            "preset does not carry: use 'parametric' or give every market a prices file"
        )
    copula_arg: Any = copula if copula is not None else "t"
    if client is not None:
        return _calibrate_distributed(cfg, client, seed, method, models, model_info, copula_arg, fit_seed, certify_seed,
                                      frontier_alphas, frontier_method, say, timings, notes)
    say(f"simulating {scen.n_scenarios:,} + {scen.certify_scenarios:,} scenarios of {scen.horizon} periods")
    paths = simulate_returns(models, scen.horizon, scen.n_scenarios, innovations=innovations, seed=fit_seed,
                             copula=copula_arg, chunk_size=scen.chunk_size)
    fresh = simulate_returns(models, scen.horizon, scen.certify_scenarios, innovations=innovations,
                             seed=certify_seed, copula=copula_arg, chunk_size=scen.chunk_size)
    timings["simulate"] = time.perf_counter() - clock

    clock = time.perf_counter()
    say("building venue losses")
    book = _venue(cfg, models)
    random_set = build_scenarios(paths, book)
    certify_set = build_scenarios(fresh, book)
    stress_set, stress_labels = _stress(cfg, models, book)
    scenarios = random_set if stress_set is None else ScenarioSet.concat([random_set, stress_set])
    market_losses = np.column_stack([
        build_scenarios(paths, VenueBook([m])).losses.sum(axis=1) for m in book.markets
    ])
    # The return paths are spent: free them before the solver's working set is allocated
    # (the peak memory that estimate_memory models).
    del paths, fresh
    timings["losses"] = time.perf_counter() - clock

    problem = _problem(cfg)
    policy, certificate, frontier_policies = _solve_and_certify(
        problem, scenarios, certify_set, method, prob.confidence, frontier_alphas, frontier_method, say, timings,
        notes, f"solving (method {method!r})", certify_set.n_scenarios)

    _result_notes(notes, not random_set.losses.any(), policy, method, certificate, prob.alpha)
    return CalibrationResult(
        policy=policy,
        certificate=certificate,
        markets=names,
        models=model_info,
        tail=_tail_summary(policy, random_set, market_losses, names),
        stress=tuple(_stress_summary(policy, stress_set, stress_labels)) if stress_set is not None else (),
        inputs=_inputs(cfg, model_info, seed, method, problem, book, stress_set, innovations),
        notes=tuple(notes),
        timings=timings,
        scenarios=scenarios,
        market_losses=market_losses,
        frontier=frontier_policies,
    )


def _compute_client(compute: Any) -> Any:
    """A context manager yielding a Client for ``[compute]``: the scheduler's, or a local cluster's.

    Either fails with one ConfigError line: a scheduler address where nothing (or no Dask
    scheduler) answers within Dask's connect timeout, or a local cluster whose workers die at
    start-up (:func:`~fundguard.models.chunked.scheduler_client`, ``local_client``).
    """
    from fundguard.models.chunked import local_client, scheduler_client

    if compute.scheduler is None:
        return local_client(compute.workers)
    return scheduler_client(compute.scheduler)


def _report_vectors(chunk: ScenarioSet, start: int, policy: Policy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per scenario of a chunk (on a worker): horizon loss (n,), required fund (n,), premium base totals (n, J)."""
    return chunk.losses.sum(axis=1), required_fund(policy, chunk), chunk.premium_base.sum(axis=1)


def _market_losses(plan: Any, book: VenueBook, first: int, stop: int) -> np.ndarray:
    """Horizon loss per scenario and market of blocks ``[first, stop)`` (on a worker), (n, J)."""
    paths = plan.simulate(first, stop)
    return np.column_stack([build_scenarios(paths, VenueBook([m])).losses.sum(axis=1) for m in book.markets])


def _calibrate_distributed(cfg: CalibrationConfig, client: Any, seed: int, method: str, models: Mapping[str, VolModel],
                           model_info: Mapping[str, Any], copula_arg: Any, fit_seed: np.random.SeedSequence,
                           certify_seed: np.random.SeedSequence, frontier_alphas: tuple[float, ...],
                           frontier_method: str, say: Progress, timings: dict[str, float],
                           notes: list[str]) -> CalibrationResult:
    """:func:`calibrate` from the simulation on, with the scenarios in chunks on ``client``'s workers."""
    from fundguard.models import chunked_scenarios, plan_simulation

    scen, prob = cfg.scenarios, cfg.problem
    names = cfg.market_names
    innovations = scen.innovations
    chunk_size = cfg.compute.chunk_size
    clock = time.perf_counter()
    say(f"simulating {scen.n_scenarios:,} + {scen.certify_scenarios:,} scenarios of {scen.horizon} periods "
        "and building venue losses on the Dask workers")
    book = _venue(cfg, models)
    stress_set, stress_labels = _stress(cfg, models, book)
    fit_plan = plan_simulation(models, scen.horizon, scen.n_scenarios, innovations=innovations, seed=fit_seed,
                               copula=copula_arg)
    certify_plan = plan_simulation(models, scen.horizon, scen.certify_scenarios, innovations=innovations,
                                   seed=certify_seed, copula=copula_arg)
    chunked = chunked_scenarios(fit_plan, book, client, chunk_size=chunk_size, stress=stress_set)
    fresh = chunked_scenarios(certify_plan, book, client, chunk_size=chunk_size)
    timings["simulate"] = time.perf_counter() - clock
    try:
        problem = _problem(cfg)
        policy, certificate, frontier_policies = _solve_and_certify(
            problem, chunked, fresh, method, prob.confidence, frontier_alphas, frontier_method, say, timings,
            notes, f"solving (method {method!r}) on {chunked.n_chunks} chunks", fresh.n_random)

        clock = time.perf_counter()
        say("gathering per-scenario summaries for the report")
        parts = chunked.map(_report_vectors, policy)
        horizon_loss = np.concatenate([p[0] for p in parts])
        need = np.concatenate([p[1] for p in parts])
        base_totals = np.concatenate([p[2] for p in parts])
        futures = [client.submit(_market_losses, fit_plan, book, b0, b1, pure=False) for b0, b1 in chunked.blocks]
        market_losses = np.concatenate(client.gather(futures))
        head = chunked.map(_head_rows, _PLOT_SCENARIOS)
        plot_set = ScenarioSet.concat([part for part in head if part is not None]
                                      + ([stress_set] if stress_set is not None else []))
        timings["losses"] = time.perf_counter() - clock
    finally:
        chunked.release()
        fresh.release()

    _result_notes(notes, not horizon_loss.any(), policy, method, certificate, prob.alpha)
    inputs = _inputs(cfg, model_info, seed, method, problem, book, stress_set, innovations)
    return CalibrationResult(
        policy=policy,
        certificate=certificate,
        markets=names,
        models=model_info,
        tail=_tail_from(policy, horizon_loss, need, market_losses, base_totals, names),
        stress=tuple(_stress_summary(policy, stress_set, stress_labels)) if stress_set is not None else (),
        inputs=inputs,
        notes=tuple(notes),
        timings=timings,
        scenarios=plot_set,
        market_losses=market_losses,
        frontier=frontier_policies,
    )


#: Random scenarios a distributed run keeps in ``CalibrationResult.scenarios`` (for the plots).
_PLOT_SCENARIOS = 20_000


def _head_rows(chunk: ScenarioSet, start: int, count: int) -> ScenarioSet | None:
    """The chunk's rows among the first ``count`` random scenarios (None when it has none)."""
    keep = max(0, min(chunk.n_scenarios, count - start))
    return chunk.subset(slice(0, keep)) if keep else None


def _inputs(cfg: CalibrationConfig, model_info: Mapping[str, Any], seed: int, method: str, problem: PolicyProblem,
            book: VenueBook, stress_set: ScenarioSet | None, innovations: str) -> dict[str, Any]:
    scen, prob = cfg.scenarios, cfg.problem
    return {
        "config_digest": cfg.digest,
        "config_source": None if cfg.source is None else str(cfg.source),
        "preset": any(info["source"] == "preset" for info in model_info.values()),
        "seed": seed,
        "method": method,
        "confidence": prob.confidence,
        "n_scenarios": scen.n_scenarios,
        "n_stress": 0 if stress_set is None else stress_set.n_scenarios,
        "certify_scenarios": scen.certify_scenarios,
        "horizon": scen.horizon,
        "innovations": innovations,
        "problem": problem.to_dict(),
        "venue": book.describe(),
        "versions": package_versions(),
    }


def check_balance(
    balance: float,
    config: CalibrationConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    seed: int | None = None,
    method: str | None = None,
    preset: Preset | None = None,
    result_file: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Daily monitoring: does the current balance, at the current rates, meet the target?

    Parameters
    ----------
    balance : float >= 0, currency units
        The fund's balance today.
    config, seed, method, preset
        As for :func:`calibrate`. The current rates are ``markets[].current_rate``.
    result_file : path, optional
        Take the target from a previous ``result.json`` instead of recalibrating.

    Returns
    -------
    dict (JSON-serialisable)
        ``balance``, ``target`` (fund target of the calibration), ``gap`` (balance - target),
        ``meets_target`` (balance >= target), ``ruin_rate`` and ``upper_bound`` (Clopper–Pearson at
        ``confidence``) of the balance with the current rates on ``certify_scenarios`` fresh
        scenarios, ``alpha``, ``horizon``, and today's state per market.
    """
    if isinstance(balance, bool) or not (isinstance(balance, (int, float)) and math.isfinite(balance) and balance >= 0):
        raise ConfigError(f"balance must be a finite number >= 0, got {balance!r}")
    say = progress or (lambda message: None)
    cfg = _resolve_config(config)
    seed = _run_seed(cfg, seed)
    method = method or cfg.problem.method
    target = None if result_file is None else _result_target(result_file, cfg)
    if target is None:
        _check_mode(cfg, method, None)
        if cfg.compute.workers is not None and cfg.compute.scheduler is None:
            check_workers(cfg.compute.workers, force=cfg.compute.force_workers,
                          where=lambda message: config_where(cfg, "compute.workers", message))
    check_memory(cfg, method, balance_check=True, calibrating=target is None)
    say(f"fitting volatility models for {len(cfg.markets)} market(s)")
    fitted = _models(cfg, preset, [], say)
    if target is None:
        # the same fitted models serve the calibration and the balance's evaluation below
        target = _calibrate_fitted(cfg, fitted, seed, method, (), "cvar", say, {}, [], None).policy.fund_target
    say("evaluating the current balance on fresh scenarios")
    models, _, from_preset, copula = fitted
    scen = cfg.scenarios
    # A third child of the seed: independent of the calibration's fit and certificate draws.
    fresh_seed = np.random.SeedSequence(seed).spawn(3)[2]
    paths = simulate_returns(models, scen.horizon, scen.certify_scenarios,
                             innovations="parametric" if from_preset else scen.innovations, seed=fresh_seed,
                             copula=copula if copula is not None else "t", chunk_size=scen.chunk_size)
    fresh = build_scenarios(paths, _venue(cfg, models))
    rates = np.array([m.current_rate for m in cfg.markets])
    current = Policy(fund_target=float(balance), premium_rates=rates, objective=math.nan, method="current",
                     status="given", in_sample_ruin=math.nan, solve_seconds=0.0, solver="none",
                     markets=cfg.market_names, floor=cfg.problem.floor, alpha=cfg.problem.alpha, n_scenarios=0)
    certificate = certify(current, fresh, confidence=cfg.problem.confidence)
    return {
        "balance": float(balance),
        "target": target,
        "gap": float(balance) - target,
        "meets_target": float(balance) >= target,
        "ruin_rate": certificate.ruin_rate,
        "upper_bound": certificate.upper_bound,
        "confidence": certificate.confidence,
        "n": certificate.n,
        "alpha": cfg.problem.alpha,
        "horizon": scen.horizon,
        "markets": {m.name: {"next_volatility": math.sqrt(models[m.name].next_variance),
                             "current_rate": m.current_rate,
                             "persistence": models[m.name].diagnostics.persistence} for m in cfg.markets},
        "seed": seed,
    }


def fund_paths(policy: Policy, scenarios: ScenarioSet) -> np.ndarray:
    """F[s, t] = F0 + sum_{u<=t} (sum_j p_j B[s,u,j] - L[s,u]); (N, T) float64, currency units."""
    income = scenarios.premium_base @ np.asarray(policy.premium_rates)
    return policy.fund_target + np.cumsum(income - scenarios.losses, axis=1)


def required_fund(policy: Policy, scenarios: ScenarioSet) -> np.ndarray:
    """Per scenario, the smallest F0 that survives it at the policy's rates: max(0, max_t(floor - F[s,t] + F0)); (N,)."""
    income = scenarios.premium_base @ np.asarray(policy.premium_rates)
    worst = np.max(np.cumsum(scenarios.losses - income, axis=1), axis=1)
    return np.maximum(0.0, worst + policy.floor)


# --------------------------------------------------------------------------------------------
# Sizes: refuse a run this machine cannot hold, before any of it is allocated
# --------------------------------------------------------------------------------------------

#: Working memory of each method's solve, in multiples of the random ScenarioSet it solves on
#: (losses and premium bases, 8 N T (J + 1) bytes): the screened rows, their cumulated and scaled
#: copies and the solver's matrices. Measured (tracemalloc peak of the solve step above the data
#: it starts with; preset book, J = 3, T = 30, N = 5e4..2e5, linear in N): cvar 2.5, exact 4.7,
#: certified 9.1 (7.6 at T = 60); scenario 2.7 at N = 1e4 (it is too slow to measure higher).
_SOLVE_FACTOR = {"cvar": 2.5, "exact": 4.7, "scenario": 2.7, "certified": 9.1}
#: A Dask worker process before it holds any data (interpreter, numpy, dask), bytes.
_WORKER_BASE = 250 * 2**20
#: Local Dask workers allowed per usable CPU unless forced: more only oversubscribe the cores.
WORKERS_PER_CPU = 4


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask on Linux, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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
    ``horizon``, J markets, float64 (8 bytes) and ``set(n) = 8 n T (J + 1)`` (losses (n, T) and
    premium bases (n, T, J)), the in-memory run peaks at the larger of

    * building the scenarios: return paths and volatilities of both draws ``16 (N + M) T J``,
      both scenario sets ``set(N) + set(M)``, their concatenation with the stress scenarios
      ``set(N + S)`` and the per-market horizon losses ``16 N T``;
    * solving (the paths are freed by then): ``set(N) + set(M) + set(N + S)`` and the method's
      working set ``f_method set(N)`` (``_SOLVE_FACTOR``).

    Chunked, the workers hold ``set(N + M)`` between them plus one chunk's paths each, and this
    process O(N) summaries ``8 N (2 + 2 J)``, the plotted 20,000 scenarios and the screened tail.
    The balance check holds ``16 M T J + set(M)``. Checked against tracemalloc peaks in-memory
    (within 1.25x; see the tests and the issue 13 notes); the chunked figures are a model.
    """
    scen = cfg.scenarios
    method = method or cfg.problem.method
    n, m, t, j = scen.n_scenarios, scen.certify_scenarios, scen.horizon, len(cfg.markets)
    s = len(scen.stress_dates) + len(scen.shocks)

    def scenario_set(rows: int) -> int:
        return 8 * rows * t * (j + 1)

    def paths(rows: int) -> int:
        return 16 * rows * t * j

    factor = max(_SOLVE_FACTOR.get(method, max(_SOLVE_FACTOR.values())),
                 _SOLVE_FACTOR.get(frontier_method, 0.0) if frontier_method else 0.0)
    data = scenario_set(n) + scenario_set(m) + (scenario_set(n + s) if s else 0)
    if mode == "memory":
        calibration = max(paths(n + m) + data + 16 * n * t, data + int(factor * scenario_set(n)))
    else:
        plotted = scenario_set(min(n, 20_000))
        # the tail that screening keeps is a few times alpha N at the levels solved
        tail = int(factor * scenario_set(min(n + s, math.ceil(20 * cfg.problem.alpha * n) + s)))
        calibration = 8 * n * (2 + 2 * j) + plotted + tail
        if mode == "local":
            workers = cfg.compute.workers or 1
            chunk = cfg.compute.chunk_size or max(1024, 64 * 2**20 // (8 * t * (j + 1)))
            calibration += scenario_set(n + m) + workers * (paths(min(chunk, n)) + _WORKER_BASE)
    if not balance_check:
        return calibration
    check = paths(m) + scenario_set(m)
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
        chunked = method if method in ("cvar", "exact") else "cvar"
        switch = "" if chunked == method else f" with method {chunked!r}"
        local = estimate_memory(local_cfg, chunked, mode="local", **options)
        remote = estimate_memory(cfg, chunked, mode="driver", **options)
        if local <= available:
            message += (f", or run it chunked on a local Dask cluster{switch} ([compute] workers = {usable_cpus()} "
                        f"or --workers {usable_cpus()}; about {_gb(local)})")
        elif remote <= available:
            held = 8 * (scen.n_scenarios + scen.certify_scenarios) * scen.horizon * (len(cfg.markets) + 1)
            message += (f", or run it chunked on a Dask cluster{switch} (--scheduler) whose workers hold about "
                        f"{_gb(held)} between them (this process then needs about {_gb(remote)})")
    raise ConfigError(config_where(cfg, f"scenarios.{key}", message))


def _gb(size: int) -> str:
    return f"{size / 1e9:,.1f} GB" if size >= 1e8 else f"{size / 1e9:.3f} GB"


def _check_mode(cfg: CalibrationConfig, method: str, client: Any) -> None:
    """Refuse, before any work, a method the distributed mode cannot run."""
    if method in ("scenario", "certified") and (client is not None or cfg.compute.distributed):
        raise ConfigError(
            f"method {method!r} is not available in the distributed mode ([compute] / --workers / --scheduler); "
            "use 'cvar' or 'exact' (problem.method or --method)")


def _run_seed(cfg: CalibrationConfig, seed: Any) -> int:
    """The seed of a run: ``seed`` when given (an integer >= 0, as ``SeedSequence`` needs), else the config's."""
    if seed is None:
        return cfg.scenarios.seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def _refuse_constant(name: str) -> float:
    # json.loads calls this for NaN, Infinity and -Infinity, which strict JSON (and so every
    # result.json fundguard writes) never holds
    raise ValueError(f"it holds {name}, which is not JSON (fundguard writes result.json without non-finite numbers)")


def _result_target(result_file: str | os.PathLike[str], cfg: CalibrationConfig) -> float:
    """``policy.fund_target`` of a previous ``result.json``, checked to be a finite amount for the config's markets."""
    where = f"result file {str(result_file)!r}"
    try:
        text = Path(result_file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where} cannot be read: {exc}") from None
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise ConfigError(f"{where} is not a valid result.json: {exc}") from None
    policy = document.get("policy") if isinstance(document, dict) else None
    target = policy.get("fund_target") if isinstance(policy, dict) else None
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not math.isfinite(target) or target < 0:
        raise ConfigError(f"{where} has no policy.fund_target >= 0 (got {target!r})")
    markets = document.get("markets")
    if markets != list(cfg.market_names):
        raise ConfigError(f"{where} is for markets {markets}, the config has {list(cfg.market_names)}: "
                          "its fund target is not this venue's")
    return float(target)


def _resolve_config(config: Any) -> CalibrationConfig:
    if config is None:
        return default_config()
    if isinstance(config, CalibrationConfig):
        return config
    if isinstance(config, Mapping):
        return parse_config(config)
    if isinstance(config, (str, os.PathLike)):
        return load_config(config)
    raise ConfigError(f"config must be a CalibrationConfig, a mapping, a TOML path or None, got {type(config).__name__}")


def _models(cfg: CalibrationConfig, preset: Preset | None, notes: list[str], say: Progress
            ) -> tuple[dict[str, VolModel], dict[str, Any], bool, Copula | None]:
    """Fitted models per market (from price files) or the preset's; info for the result; the preset copula."""
    with_prices = [m.name for m in cfg.markets if m.prices is not None]
    if with_prices and len(with_prices) != len(cfg.markets):
        missing = [m.name for m in cfg.markets if m.prices is None]
        raise ConfigError(f"markets {missing} have no 'prices' while {with_prices} do: give every market a prices "
                          "file, or none (to use the built-in preset)")
    models: dict[str, VolModel] = {}
    info: dict[str, Any] = {}
    if not with_prices:
        preset = preset or load_preset()
        unknown = [m.name for m in cfg.markets if m.name not in preset.models]
        if unknown:
            raise ConfigError(f"markets {unknown} have no 'prices' and the preset has no model for them "
                              f"(it has {list(preset.markets)})")
        for m in cfg.markets:
            models[m.name] = preset.models[m.name]
            info[m.name] = {"source": "preset", "provenance": preset.provenance.get("sources", {}).get(m.name),
                            "fit_date": preset.provenance.get("fit_date"), **_model_summary(models[m.name])}
        names = [m.name for m in cfg.markets]
        copula = preset.copula
        if copula is not None and len(names) > 1:
            # The preset's copula restricted to (and ordered like) the configured markets.
            index = [copula.markets.index(n) for n in names]
            copula = Copula(copula.family, copula.correlation[np.ix_(index, index)], copula.nu, tuple(names),
                            None if copula.kendall_tau is None else copula.kendall_tau[np.ix_(index, index)])
        else:
            copula = None
        _model_notes(models, notes)
        return models, info, True, copula
    spec: Any = cfg.volatility.spec
    if spec != "auto":
        vol, _, dist = spec.partition("-")
        spec = VolSpec(vol, dist)
    for i, m in enumerate(cfg.markets, start=1):
        say(f"  [{i}/{len(cfg.markets)}] {m.name}: {m.prices.name}")
        prices = load_prices(m.prices, price_column=m.column, name=m.name, strict=m.strict_prices)
        returns = log_returns(prices)[m.name].dropna()
        if cfg.volatility.lookback is not None:
            returns = returns.iloc[-cfg.volatility.lookback:]
        model = fit_volatility(returns, spec, candidates=SIMULATION_CANDIDATES, name=m.name)
        models[m.name] = model
        info[m.name] = {"source": str(m.prices), "sha256": sha256_file(m.prices), "first": str(returns.index[0]),
                        "last": str(returns.index[-1]), "n_returns": int(len(returns)),
                        "frequency": prices.attrs["frequency"], **_model_summary(model)}
    _model_notes(models, notes)
    return models, info, False, None


def _model_summary(model: VolModel) -> dict[str, Any]:
    d = model.diagnostics
    return {"spec": str(model.spec), "params": dict(model.params), "next_volatility": math.sqrt(model.next_variance),
            "persistence": d.persistence, "half_life": d.half_life, "annualized_volatility": d.annualized_volatility,
            "ljung_box_pvalue": d.ljung_box_pvalue, "converged": d.converged, "bic": model.bic}


def _model_notes(models: Mapping[str, VolModel], notes: list[str]) -> None:
    for name, model in models.items():
        d = model.diagnostics
        if not d.converged:
            notes.append(f"{name}: the {model.spec} likelihood fit did not report convergence")
        if d.ljung_box_pvalue < 0.01:
            notes.append(f"{name}: squared residuals still autocorrelated (Ljung-Box p = {d.ljung_box_pvalue:.3g})")
        nu = model.params.get("nu")
        if model.spec.dist in ("t", "skewt") and nu is not None and nu < 3:
            notes.append(f"{name}: innovation tail index nu = {nu:.2f} < 3 (very heavy tails)")


def _venue(cfg: CalibrationConfig, models: Mapping[str, VolModel]) -> VenueBook:
    markets = []
    for m in cfg.markets:
        kwargs: dict[str, Any] = {"premium_kind": m.premium_kind,
                                  "long_run_volatility": models[m.name].typical_volatility}
        if m.tiers is not None:
            kwargs["tiers"] = tuple(LeverageTier(t.share, t.leverage, t.maintenance_margin) for t in m.tiers)
        if m.impact is not None:
            kwargs["impact"] = m.impact
        if m.gap is not None:
            kwargs["gap"] = m.gap
        markets.append(Market(m.name, m.open_interest, m.daily_volume, **kwargs))
    return VenueBook(markets)


def _stress(cfg: CalibrationConfig, models: Mapping[str, VolModel], book: VenueBook
            ) -> tuple[ScenarioSet | None, tuple[str, ...]]:
    scen = cfg.scenarios
    if not scen.stress_dates and not scen.shocks:
        return None, ()
    if scen.stress_dates and any(m.std_resid.size == 0 for m in models.values()):
        raise ConfigError("scenarios.stress_dates replays history, which the built-in preset does not carry: "
                          "give every market a prices file, or use scenarios.shocks")
    dates = [(d, None) for d in scen.stress_dates]
    windows = [d if scen.stress_window <= 1 else (d, _window_end(models, d, scen.stress_window)) for d, _ in dates]
    paths = stress_paths(models, scen.horizon, dates=windows, scale_to_today=scen.stress_scale == "volatility",
                         shocks=list(scen.shocks))
    return build_scenarios(paths, book), tuple(paths.labels or ())


def _window_end(models: Mapping[str, VolModel], start: str, window: int) -> Any:
    index = next(iter(models.values())).index
    position = index.searchsorted(np.datetime64(start) if index.tz is None else _utc(start))
    return index[min(position + window - 1, len(index) - 1)]


def _utc(text: str) -> Any:
    import pandas as pd

    return pd.Timestamp(text, tz="UTC") if pd.Timestamp(text).tzinfo is None else pd.Timestamp(text)


def _problem(cfg: CalibrationConfig) -> PolicyProblem:
    prob = cfg.problem
    names = cfg.market_names

    def per_market(value: Any) -> Any:
        return tuple(float(value[n]) for n in names) if isinstance(value, Mapping) else value

    current = tuple(m.current_rate for m in cfg.markets)
    return PolicyProblem(
        alpha=prob.alpha,
        cost_of_capital=prob.cost_of_capital,
        premium_weight=per_market(prob.premium_weight),
        premium_min=per_market(prob.premium_min),
        premium_max=per_market(prob.premium_max),
        fund_max=prob.fund_max,
        floor=prob.floor,
        rate_change_penalty=prob.rate_change_penalty,
        previous_rates=current if prob.rate_change_penalty > 0 else None,
    )


def _result_notes(notes: list[str], no_losses: bool, policy: Policy, method: str, certificate: Certificate,
                  alpha: float) -> None:
    """Append what a reader of the result must know: no losses at all, optimality not proven,
    an out-of-sample bound above alpha."""
    if no_losses:
        notes.append("every random scenario has zero fund losses: the fund target is 0 and the rates sit at "
                     "their minimum (check the venue book: margins may exceed every simulated shortfall)")
    if policy.status not in ("optimal", "certified"):
        notes.append(f"method {method!r} returned status {policy.status!r}: the policy meets its constraint but "
                     "optimality is not proven")
    if certificate.upper_bound > alpha:
        notes.append(f"the out-of-sample bound {certificate.upper_bound:.4%} exceeds alpha {alpha:.4%}: "
                     f"{certificate.ruins} ruins in {certificate.n:,} fresh scenarios")


def _solve_and_certify(problem: PolicyProblem, scenarios: Any, certify_set: Any, method: str, confidence: float,
                       frontier_alphas: tuple[float, ...], frontier_method: str, say: Progress,
                       timings: dict[str, float], notes: list[str], solving: str, n_fresh: int
                       ) -> tuple[Policy, Certificate, tuple[Policy, ...]]:
    """Solve, certify on the fresh set and trace the frontier (in memory or chunked: same calls),
    recording each step's time in ``timings``."""
    clock = time.perf_counter()
    say(solving)
    policy = solve(problem, scenarios, method=method)
    timings["solve"] = time.perf_counter() - clock

    clock = time.perf_counter()
    say(f"certifying on {n_fresh:,} fresh scenarios")
    certificate = certify(policy, certify_set, confidence=confidence)
    timings["certify"] = time.perf_counter() - clock

    frontier_policies: tuple[Policy, ...] = ()
    if frontier_alphas:
        clock = time.perf_counter()
        say(f"tracing the cost of solvency at {len(frontier_alphas)} ruin levels")
        frontier_policies = _frontier(problem, scenarios, frontier_alphas, frontier_method, notes)
        timings["frontier"] = time.perf_counter() - clock
    return policy, certificate, frontier_policies


def _frontier(problem: PolicyProblem, scenarios: ScenarioSet, alphas: tuple[float, ...], method: str,
              notes: list[str]) -> tuple[Policy, ...]:
    from .api import frontier

    try:
        return tuple(frontier(problem, scenarios, list(alphas), method=method))
    except Exception as exc:  # the frontier is a report extra: never lose the calibration over it
        notes.append(f"cost-of-solvency frontier not traced ({type(exc).__name__}: {exc})")
        return ()


def _tail_summary(policy: Policy, random_set: ScenarioSet, market_losses: np.ndarray, names: tuple[str, ...]
                  ) -> dict[str, Any]:
    return _tail_from(policy, random_set.losses.sum(axis=1), required_fund(policy, random_set), market_losses,
                      random_set.premium_base.sum(axis=1), names)


def _tail_from(policy: Policy, horizon_loss: np.ndarray, need: np.ndarray, market_losses: np.ndarray,
               base_totals: np.ndarray, names: tuple[str, ...]) -> dict[str, Any]:
    """The ``tail`` section from per-scenario horizon losses (N,), required funds (N,), per-market
    horizon losses (N, J) and premium-base totals (N, J), currency units."""
    alpha = policy.alpha
    var = float(np.quantile(need, 1.0 - alpha, method="higher"))
    tail_mask = need >= var
    cvar = float(need[tail_mask].mean()) if tail_mask.any() else var
    tail_losses = market_losses[tail_mask].sum(axis=0) if tail_mask.any() else np.zeros(len(names))
    share = tail_losses / tail_losses.sum() if tail_losses.sum() > 0 else np.zeros(len(names))
    income = (base_totals * np.asarray(policy.premium_rates)).mean(axis=0)
    return {
        "horizon_loss_quantiles": {f"{q:g}": float(np.quantile(horizon_loss, q)) for q in LOSS_QUANTILES},
        "horizon_loss_mean": float(horizon_loss.mean()),
        "required_fund_var": var,
        "required_fund_cvar": cvar,
        "tail_share_by_market": {n: float(s) for n, s in zip(names, share)},
        "expected_premium_income": {n: float(x) for n, x in zip(names, income)},
        "worst_scenarios": [int(i) for i in np.argsort(need)[::-1][:5]],
    }


def _stress_summary(policy: Policy, stress_set: ScenarioSet, labels: tuple[str, ...]) -> list[dict[str, Any]]:
    lowest = fund_paths(policy, stress_set).min(axis=1)
    return [{"label": labels[i] if i < len(labels) else f"stress {i}",
             "horizon_loss": float(stress_set.losses[i].sum()),
             "lowest_fund": float(lowest[i]),
             "survived": bool(lowest[i] >= policy.floor)} for i in range(stress_set.n_scenarios)]
