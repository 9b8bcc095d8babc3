"""The daily check: is the fund's balance today, at the rates in force, enough?

"Enough" means certified: P(ruin over the horizon) of the balance at the rates in force
(``markets[].current_rate``) has its Clopper–Pearson bound <= alpha on fresh scenarios drawn from
the check's own child of the run's seed (:func:`~.build.run_seeds`). The calibration's target
(recomputed, or read from a previous ``result.json``) is reported beside it, but it was set at
the *optimised* rates: a balance above it can still fail at lower rates in force, and one below
it can pass at higher ones. :func:`check_balance` also gives the smallest balance that meets alpha
at the rates in force, and the cheapest rates that would make today's balance enough.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fundguard.models import build_scenarios, simulate_returns
from fundguard.models.errors import ConfigError, InfeasibleError, SolverError

from ..api import solve
from ..certificates import certify, smallest_certified_balance
from ..fund import worst_net_flow
from ..policy import Policy
from .build import (Progress, check_mode, fit_models, loss_model_of, policy_problem, resolve_config, run_seed,
                    run_seeds, stress_scenarios, venue_book)
from .calibrate import run_calibration, with_participation
from .compute import check_local_cluster, check_memory, compute_client
from .config import CalibrationConfig
from .preset import Preset

__all__ = ["check_balance"]


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
    """Daily monitoring: does the current balance, at the current rates, meet alpha and survive the stress?

    Parameters
    ----------
    balance : float >= 0, currency units
        The fund's balance today.
    config, seed, method, preset
        As for :func:`~.calibrate.calibrate`. The current rates are ``markets[].current_rate``.
    result_file : path, optional
        Take the target from a previous ``result.json`` instead of recalibrating.

    Returns
    -------
    dict (JSON-serialisable)
        ``meets`` (the certificate ``upper_bound <= alpha``, and every configured stress scenario
        survived at the rates in force: ``survives_stress``, ``stress_required`` the balance the
        worst of them needs), ``ruin_rate`` and ``upper_bound``
        (Clopper–Pearson at ``confidence``) of the balance at the current rates on
        ``certify_scenarios`` fresh scenarios; ``smallest_balance`` (the least balance that meets
        alpha at the current rates on those scenarios and survives the stress scenarios; null when they are too few to certify
        alpha at all); ``rates_for_balance`` (per market, the cheapest rates within the problem's
        bounds with which the balance meets alpha, chosen by the run's method on independent
        scenarios and certified on the fresh ones; null when the method finds none, with its reason in
        ``rates_for_balance_note``) and ``rates_for_balance_meet``;
        ``target`` (the calibration's fund target at its optimised rates), ``gap``
        (balance - target) and ``meets_target`` (balance >= target), for reference; ``alpha``,
        ``horizon`` and today's state per market.
    """
    if isinstance(balance, bool) or not (isinstance(balance, (int, float)) and math.isfinite(balance) and balance >= 0):
        raise ConfigError(f"balance must be a finite number >= 0, got {balance!r}")
    say = progress or (lambda message: None)
    cfg = resolve_config(config)
    seed = run_seed(cfg, seed)
    method = method or cfg.problem.method
    target = None if result_file is None else _result_target(result_file, cfg)
    if target is None:
        check_mode(method, cfg.compute.distributed)
        check_local_cluster(cfg)
    check_memory(cfg, method, balance_check=True, calibrating=target is None)
    say(f"fitting volatility models for {len(cfg.markets)} market(s)")
    fitted = fit_models(cfg, preset, [], say)
    if target is None:
        # the same fitted models serve the calibration and the balance's evaluation below
        with compute_client(cfg.compute) as where:
            target = run_calibration(cfg, fitted, seed, method, (), "cvar", say, {}, [], where).policy.fund_target
    say("evaluating the current balance on fresh scenarios")
    models, _, from_preset, copula = fitted
    scen = cfg.scenarios
    # A third child of the seed: independent of the calibration's fit and certificate draws.
    fresh_seed = run_seeds(seed).balance
    paths = simulate_returns(models, scen.horizon, scen.certify_scenarios,
                             innovations="parametric" if from_preset else scen.innovations, seed=fresh_seed,
                             copula=copula if copula is not None else "t", chunk_size=scen.chunk_size)
    book = venue_book(cfg, models)
    fresh = build_scenarios(paths, book, loss_model=loss_model_of(cfg))
    # the stress scenarios the fund must survive (as in the calibration): their need at the rates in force
    stress_set, stress_labels = stress_scenarios(cfg, models, book)
    rates = np.array([m.current_rate for m in cfg.markets])
    current = _given(cfg, float(balance), rates)
    certificate = certify(current, fresh, confidence=cfg.problem.confidence)
    stress_need = 0.0
    if stress_set is not None:
        stress_need = float(max(0.0, (cfg.problem.floor - worst_net_flow(stress_set.losses, stress_set.premium_base,
                                                                          rates)).max()))
    survives = float(balance) >= stress_need
    meets = certificate.upper_bound <= cfg.problem.alpha and survives
    smallest, _, _ = smallest_certified_balance(rates, fresh, cfg.problem.alpha, cfg.problem.confidence,
                                                cfg.problem.floor)
    smallest = max(smallest, stress_need)
    rates_for, rates_meet = None, None
    if not meets:
        say("choosing the rates that would make the balance enough, on independent scenarios")
        rates_for, rates_meet = _rates_for_balance(cfg, models, from_preset, copula, seed, method, float(balance),
                                                   fresh)
    return {
        "balance": float(balance),
        "meets": bool(meets),
        "ruin_rate": certificate.ruin_rate,
        "upper_bound": certificate.upper_bound,
        "confidence": certificate.confidence,
        "n": certificate.n,
        "smallest_balance": None if not math.isfinite(smallest) else smallest,
        "stress_required": stress_need if stress_set is not None else None,
        "survives_stress": survives,
        "stress_labels": list(stress_labels),
        "rates_for_balance": None if rates_for is None else dict(zip(cfg.market_names, map(float, rates_for))),
        "rates_for_balance_meet": rates_meet if not isinstance(rates_meet, str) else None,
        "rates_for_balance_note": rates_meet if isinstance(rates_meet, str) else None,
        "target": target,
        "gap": float(balance) - target,
        "meets_target": float(balance) >= target,
        "alpha": cfg.problem.alpha,
        "horizon": scen.horizon,
        "markets": {m.name: {"next_volatility": math.sqrt(models[m.name].next_variance),
                             "current_rate": m.current_rate,
                             "persistence": models[m.name].diagnostics.persistence} for m in cfg.markets},
        "seed": seed,
    }


def _given(cfg: CalibrationConfig, balance: float, rates: np.ndarray) -> Policy:
    return Policy(fund_target=balance, premium_rates=rates, objective=math.nan, method="current",
                  status="given", in_sample_ruin=math.nan, solve_seconds=0.0, solver="none",
                  markets=cfg.market_names, floor=cfg.problem.floor, alpha=cfg.problem.alpha, n_scenarios=0)


def _rates_for_balance(cfg: CalibrationConfig, models: Any, from_preset: bool, copula: Any, seed: int, method: str,
                       balance: float, fresh: Any) -> tuple[np.ndarray | None, bool | str]:
    """The cheapest rates within the bounds with which ``balance`` meets alpha: chosen by ``method``
    with the fund capped at the balance on scenarios independent of ``fresh`` (the fourth child of
    the seed), then certified on ``fresh`` at the balance itself. Returns the rates and whether
    they meet alpha there, or None and why the method found none (its own reading of alpha: "cvar"
    is conservative, so it can refuse a balance some rates would make enough)."""
    scen = cfg.scenarios
    problem = dataclasses.replace(policy_problem(cfg), fund_max=balance)
    train_seed = np.random.SeedSequence(seed).spawn(4)[3]
    paths = simulate_returns(models, scen.horizon, scen.n_scenarios,
                             innovations="parametric" if from_preset else scen.innovations, seed=train_seed,
                             copula=copula if copula is not None else "t", chunk_size=scen.chunk_size)
    training = build_scenarios(paths, venue_book(cfg, models), loss_model=loss_model_of(cfg))
    problem = with_participation(cfg, problem, training, [])  # other rates than today's move the book
    try:
        chosen = solve(problem, training, method=method)
    except (InfeasibleError, SolverError) as exc:
        return None, f"{method}: {exc}"
    given = dataclasses.replace(_given(cfg, balance, chosen.premium_rates), participation=chosen.participation)
    certificate = certify(given, fresh, confidence=cfg.problem.confidence)
    return chosen.premium_rates, bool(certificate.upper_bound <= cfg.problem.alpha)


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
