"""From a config to the domain objects of a run: markets' volatility models, the venue book, the
stress scenarios, the policy problem, the seeds.

Used by the calibrate pipeline, the daily check and the frontier (:mod:`.calibrate`,
:mod:`.balance`); each function reads the validated :class:`~.config.CalibrationConfig` and
trusts it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from fundguard.models import (
    SIMULATION_CANDIDATES,
    Copula,
    LeverageTier,
    LossModel,
    Market,
    ScenarioSet,
    VenueBook,
    VolModel,
    build_scenarios,
    fit_volatility,
    load_prices,
    log_returns,
    stress_paths,
)
from fundguard.models import loss_model as named_loss_model
from fundguard.models.errors import ConfigError

from ..problem import PolicyProblem
from ..ruin import FLOOR, RuinRule
from ..methods import METHODS
from .config import CalibrationConfig, load_config, parse_config, parse_vol_spec
from .outputs import sha256_file
from .preset import Preset, default_config, load_preset
from .summaries import model_notes, model_summary

__all__ = [
    "Fitted", "Progress", "loss_model_of", "RunSeeds", "resolve_config", "run_seed", "run_seeds", "check_mode", "fit_models", "venue_book",
           "stress_scenarios", "policy_problem", "DISTRIBUTED_METHODS"]

#: A run's progress callback: called with a short description at the start of each step.
Progress = Callable[[str], None]
#: What :func:`fit_models` returns: models and result info per market, from the preset or not, the preset copula.
Fitted = tuple[dict[str, VolModel], dict[str, Any], bool, Copula | None]
#: The methods the distributed mode ([compute] / --workers / --scheduler) can run.
DISTRIBUTED_METHODS = tuple(name for name, method in METHODS.items() if method.distributed)  # from the registry


class RunSeeds(NamedTuple):
    """The independent children of ``SeedSequence(seed)`` a run draws from, by their one number each."""

    fit: np.random.SeedSequence
    certify: np.random.SeedSequence
    balance: np.random.SeedSequence
    method: np.random.SeedSequence


def run_seeds(seed: int) -> RunSeeds:
    """Children 0, 1, 2, 3 of ``SeedSequence(seed)``: the fit scenarios, the certificate's fresh
    scenarios, the daily check's evaluation of the balance, and the fresh scenarios method
    "certified" draws for its fund target (each independent of the others; adding the fourth child
    left the first three as they were)."""
    return RunSeeds(*np.random.SeedSequence(seed).spawn(4))


def resolve_config(config: Any) -> CalibrationConfig:
    """The :class:`CalibrationConfig` of ``config``: itself, a validated mapping or TOML file, or
    the built-in preset's (None)."""
    if config is None:
        return default_config()
    if isinstance(config, CalibrationConfig):
        return config
    if isinstance(config, Mapping):
        return parse_config(config)
    if isinstance(config, (str, os.PathLike)):
        return load_config(config)
    raise ConfigError(f"config must be a CalibrationConfig, a mapping, a TOML path or None, got {type(config).__name__}")


def run_seed(cfg: CalibrationConfig, seed: Any) -> int:
    """The seed of a run: ``seed`` when given (an integer >= 0, as ``SeedSequence`` needs), else the config's."""
    if seed is None:
        return cfg.scenarios.seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def check_mode(method: str, distributed: bool, how: str = "in the distributed mode ([compute] / --workers / "
               "--scheduler); use 'cvar' or 'exact' (problem.method or --method)") -> None:
    """Refuse, before any work, a method the distributed mode cannot run (``how`` ends the message)."""
    if distributed and method in METHODS and method not in DISTRIBUTED_METHODS:
        raise ConfigError(f"method {method!r} is not available {how}")


def fit_models(cfg: CalibrationConfig, preset: Preset | None, notes: list[str], say: Progress) -> Fitted:
    """Fitted models per market (from price files) or the preset's; info for the result; the preset copula."""
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
                            "fit_date": preset.provenance.get("fit_date"), **model_summary(models[m.name])}
        names = [m.name for m in cfg.markets]
        copula = preset.copula
        if copula is not None and len(names) > 1:
            # The preset's copula restricted to (and ordered like) the configured markets.
            index = [copula.markets.index(n) for n in names]
            copula = Copula(copula.family, copula.correlation[np.ix_(index, index)], copula.nu, tuple(names),
                            None if copula.kendall_tau is None else copula.kendall_tau[np.ix_(index, index)])
        else:
            copula = None
        model_notes(models, notes, cfg.scenarios.innovations)
        return models, info, True, copula
    spec = parse_vol_spec(cfg.volatility.spec)
    for i, m in enumerate(cfg.markets, start=1):
        say(f"  [{i}/{len(cfg.markets)}] {m.name}: {m.prices.name}")
        prices = load_prices(m.prices, price_column=m.column, name=m.name, strict=m.strict_prices)
        returns = log_returns(prices)[m.name].dropna()
        if cfg.volatility.lookback is not None:
            returns = returns.iloc[-cfg.volatility.lookback:]
        model = fit_volatility(returns, spec, candidates=SIMULATION_CANDIDATES, name=m.name,
                               innovations=cfg.scenarios.innovations)
        models[m.name] = model
        info[m.name] = {"source": str(m.prices), "sha256": sha256_file(m.prices), "first": str(returns.index[0]),
                        "last": str(returns.index[-1]), "n_returns": int(len(returns)),
                        "frequency": prices.attrs["frequency"], **model_summary(model)}
    model_notes(models, notes, cfg.scenarios.innovations)
    return models, info, False, None


def loss_model_of(cfg: CalibrationConfig) -> LossModel:
    """The loss model ``[venue] loss_model`` names (a shipped one, or a loss_model.json)."""
    return named_loss_model(cfg.venue.loss_model)


def venue_book(cfg: CalibrationConfig, models: Mapping[str, VolModel]) -> VenueBook:
    """The venue book of the config's markets; tiers, impact and gap left out take the loss model's defaults."""
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


def stress_scenarios(cfg: CalibrationConfig, models: Mapping[str, VolModel], book: VenueBook,
                     loss_model: LossModel | None = None) -> tuple[ScenarioSet | None, tuple[str, ...]]:
    """The stress scenarios of ``[scenarios]`` (replayed dates, shocks) and their labels; (None, ()) without any.
    ``loss_model`` (default the config's) turns their paths into losses."""
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
    model = loss_model_of(cfg) if loss_model is None else loss_model
    return build_scenarios(paths, book, loss_model=model, dtype=cfg.scenarios.dtype), tuple(paths.labels or ())


def _window_end(models: Mapping[str, VolModel], start: str, window: int) -> Any:
    index = next(iter(models.values())).index
    position = index.searchsorted(np.datetime64(start) if index.tz is None else _utc(start))
    return index[min(position + window - 1, len(index) - 1)]


def _utc(text: str) -> Any:
    return pd.Timestamp(text, tz="UTC") if pd.Timestamp(text).tzinfo is None else pd.Timestamp(text)


def policy_problem(cfg: CalibrationConfig) -> PolicyProblem:
    """The :class:`PolicyProblem` of ``[problem]``, per-market tables in market order."""
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
        ruin=RuinRule.from_dict(dict(prob.ruin)) if prob.ruin is not None else FLOOR,
        expected_shortfall_max=prob.expected_shortfall_max,
        shortfall_cvar_max=prob.shortfall_cvar_max,
        shortfall_cvar_level=prob.shortfall_cvar_level,
    )
