"""The daily check: does the fund's balance today, at today's rates, meet the target?

:func:`check_balance` takes the target from a calibration (the pipeline of :mod:`.calibrate`,
on the same fitted models) or from a previous ``result.json``, and evaluates the balance on fresh
scenarios drawn from its own child of the run's seed (:func:`~.build.run_seeds`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fundguard.models import build_scenarios, simulate_returns
from fundguard.models.errors import ConfigError

from ..certificates import certify
from ..policy import Policy
from .build import Progress, check_mode, fit_models, loss_model_of, resolve_config, run_seed, run_seeds, venue_book
from .calibrate import run_calibration
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
    """Daily monitoring: does the current balance, at the current rates, meet the target?

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
        ``balance``, ``target`` (fund target of the calibration), ``gap`` (balance - target),
        ``meets_target`` (balance >= target), ``ruin_rate`` and ``upper_bound`` (Clopper–Pearson at
        ``confidence``) of the balance with the current rates on ``certify_scenarios`` fresh
        scenarios, ``alpha``, ``horizon``, and today's state per market.
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
    fresh = build_scenarios(paths, venue_book(cfg, models), loss_model=loss_model_of(cfg))
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
