"""The built-in preset: a complete calibration that runs without any data file.

The project does not ship market data, so the preset carries *numbers* estimated from it with
fundguard itself: each market's fitted volatility model (parameters and today's state), the
Student-t copula of their standardized residuals, the fitted generalized Pareto tail figures,
and provenance (source file names and SHA-256, date ranges, fit date, fundguard version). It
also carries a clearly labelled **illustrative** venue book and problem settings.

Regenerate it from price files with::

    fundguard preset build --prices BTC=binance_BTCUSDT_daily.csv ETH=... SOL=... \\
        --out optimizer/job/presets/default.json
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fundguard.models import (
    SIMULATION_CANDIDATES,
    Copula,
    VolModel,
    VolSpec,
    fit_copula,
    fit_tails,
    fit_volatility,
    load_prices,
    log_returns,
)
from fundguard.models.errors import ConfigError
from fundguard.models.venue import DEFAULT_LOSS_MODEL, LOSS_MODELS

from .config import CalibrationConfig, MarketConfig, ProblemConfig, ScenarioConfig, VenueConfig, VolatilityConfig
from .outputs import atomic_write_text, check_output_file, output_write_error, package_versions, sha256_file

__all__ = ["Preset", "build_preset", "write_preset", "load_preset", "default_config", "ILLUSTRATIVE_BOOK", "PRESET_SCHEMA_VERSION"]

PRESET_SCHEMA_VERSION = 1

#: Illustrative venue book of the preset: a mid-size perpetuals venue, NOT any real exchange.
#: Open interest (notional per side) and daily volume in USD are round numbers of the order of
#: a top-10 venue's BTC/ETH/SOL perpetuals in 2024-25; tiers and impact take the documented
#: defaults of the loss model the preset names (the stateful book).
ILLUSTRATIVE_BOOK: tuple[dict[str, Any], ...] = (
    {"name": "BTC", "open_interest": 2.0e9, "daily_volume": 6.0e9, "premium_kind": "liquidation", "current_rate": 0.005},
    {"name": "ETH", "open_interest": 1.0e9, "daily_volume": 3.0e9, "premium_kind": "liquidation", "current_rate": 0.005},
    {"name": "SOL", "open_interest": 3.0e8, "daily_volume": 1.0e9, "premium_kind": "liquidation", "current_rate": 0.005},
)

#: Problem settings of the preset, with their reasons:
#: alpha 1% over 30 days; cost of capital 15% a year (a crypto firm's cost of equity) for
#: 30/365 of a year; premium weight 0 (the fee's cost is derived from the book's answer to it: see
#: fundguard.optimizer.participation); the premium is the liquidation fee charged on
#: liquidated notional that does not go bankrupt, between 0 and 1.25% (Binance's historical
#: liquidation clearance fee); current rate 0.5%.
ILLUSTRATIVE_PROBLEM: dict[str, Any] = {
    "alpha": 0.01,
    "cost_of_capital": round(0.15 * 30 / 365, 6),
    "premium_weight": 0.0,
    "premium_min": 0.0,
    "premium_max": 0.0125,
    "method": "certified",
    "confidence": 0.99,
}


@dataclass(frozen=True)
class Preset:
    """A loaded preset: models as numbers, their copula, tail figures, book, provenance."""

    models: Mapping[str, VolModel]
    copula: Copula | None
    tails: Mapping[str, Any]
    book: tuple[Mapping[str, Any], ...]
    problem: Mapping[str, Any]
    provenance: Mapping[str, Any]
    raw: Mapping[str, Any]

    @property
    def markets(self) -> tuple[str, ...]:
        return tuple(self.models)


def build_preset(
    prices: Mapping[str, str | os.PathLike[str] | pd.DataFrame]
    | Sequence[tuple[str, str | os.PathLike[str] | pd.DataFrame]],
    *,
    spec: str | VolSpec = "auto",
    column: str | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Estimate a preset from price files: one volatility model per market, copula, tails.

    Parameters
    ----------
    prices : mapping of market name -> price file (or DataFrame), or (name, file) pairs
        Each market is fitted on its own full history; the copula on the dates common to all.
        Pairs (as the command line gives them) may not name a market twice.
    spec : "auto" or VolSpec
        "auto" chooses by BIC among ``SIMULATION_CANDIDATES`` (the preset is simulated 30 days
        ahead, where EGARCH-t has no finite variance).
    column : str, optional
        Price column (default ``close``/``price``).
    command : str, optional
        The command line that built it, recorded in the provenance.

    Returns
    -------
    dict, JSON-serialisable, the content of a preset file (see :func:`load_preset`).
    """
    pairs = list(prices.items()) if isinstance(prices, Mapping) else list(prices)
    if len(pairs) < 1:
        raise ConfigError("preset build needs at least one market (--prices NAME=FILE ...)")
    names = [name for name, _ in pairs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        # a dict would silently keep the last file of each: the preset would not be what was asked
        raise ConfigError(f"preset build: market names must be unique; repeated: {repeated}")
    bad = [n for n in names if not isinstance(n, str) or not n.strip() or not n.isprintable()]
    if bad:
        raise ConfigError(f"preset build: market names must be non-empty text without control characters, got {bad}")
    models: dict[str, VolModel] = {}
    sources: dict[str, Any] = {}
    for market, source in pairs:
        frame = load_prices(source, price_column=column, name=market)
        returns = log_returns(frame)[market]
        model = fit_volatility(returns, spec, candidates=SIMULATION_CANDIDATES, name=market)
        models[market] = model
        sources[market] = {
            "file": Path(source).name if not isinstance(source, pd.DataFrame) else "<DataFrame>",
            "sha256": sha256_file(source) if not isinstance(source, pd.DataFrame) else None,
            "first_return": str(returns.index[0].date()),
            "last_return": str(returns.index[-1].date()),
            "n_returns": int(returns.notna().sum()),
            "frequency": frame.attrs["frequency"],
        }
    names = tuple(models)
    residuals = pd.concat([pd.Series(m.std_resid, index=m.index, name=n) for n, m in models.items()], axis=1, join="inner")
    copula = fit_copula(residuals.to_numpy(), "t", names) if len(names) > 1 else None
    tails = {n: fit_tails(m.std_resid, market=n).describe() for n, m in models.items()}
    return {
        "schema_version": PRESET_SCHEMA_VERSION,
        "description": "fundguard built-in preset: volatility models, copula and tail figures estimated from "
                       "real daily prices; the venue book is ILLUSTRATIVE, not any real exchange's.",
        "provenance": {
            "sources": sources,
            "copula_dates": {"first": str(residuals.index[0].date()), "last": str(residuals.index[-1].date()),
                             "n": int(len(residuals))},
            "fit_date": dt.datetime.now(dt.timezone.utc).date().isoformat(),
            "fundguard_version": package_versions(("fundguard",))["fundguard"],
            "package_versions": package_versions(),  # a refit elsewhere drifts with these (optimiser stops)
            "command": command,
        },
        "models": {n: m.to_dict() for n, m in models.items()},
        "copula": None if copula is None else {**copula.describe(), "kendall_tau": copula.kendall_tau.tolist()},
        "tails": tails,
        "book": {"label": "ILLUSTRATIVE venue book (round numbers, not any real exchange's)",
                 "loss_model": DEFAULT_LOSS_MODEL,
                 "markets": [dict(m) for m in ILLUSTRATIVE_BOOK if m["name"] in names]
                 or [{"name": n, "open_interest": 1e9, "daily_volume": 3e9} for n in names]},
        "problem": dict(ILLUSTRATIVE_PROBLEM),
    }


def write_preset(preset: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a preset as indented JSON, atomically.

    ``path`` must be a new file name in an existing folder, or a preset file fundguard wrote
    (replaced); a folder, a symbolic link, any other file or a missing folder is refused with
    ``OutputPlaceError``, and an operating-system error (read-only, full disk) is raised as
    ``OutputWriteError``, both naming ``path``.
    """

    def is_preset(existing: Path) -> bool:
        # What build_preset writes: never overwrite a price file or a config given as --out.
        try:
            document = json.loads(existing.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(document, dict) and "schema_version" in document and "models" in document \
            and isinstance(document.get("provenance"), dict) and "fundguard_version" in document["provenance"]

    path = check_output_file(path, kind="preset", owned=is_preset)
    try:
        return atomic_write_text(path, json.dumps(preset, indent=2, allow_nan=False) + "\n")
    except OSError as exc:
        raise output_write_error(exc, str(path)) from exc


def load_preset(source: str | os.PathLike[str] | Mapping[str, Any] | None = None) -> Preset:
    """Load a preset: the built-in one (None), a JSON file, or a mapping as built by :func:`build_preset`."""
    if source is None:
        text = resources.files("fundguard.optimizer.job").joinpath("presets/default.json").read_text(encoding="utf-8")
        raw = json.loads(text)
    elif isinstance(source, Mapping):
        raw = dict(source)
    else:
        try:
            raw = json.loads(Path(source).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"preset {str(source)!r} cannot be read: {exc}") from None
    if raw.get("schema_version") != PRESET_SCHEMA_VERSION:
        raise ConfigError(f"preset schema_version {raw.get('schema_version')!r} is not {PRESET_SCHEMA_VERSION}")
    models = {name: VolModel.from_dict(data) for name, data in raw["models"].items()}
    copula = None
    if raw.get("copula"):
        c = raw["copula"]
        copula = Copula(c["family"], np.asarray(c["correlation"]), c["nu"] if c["nu"] is not None else float("inf"),
                        tuple(c["markets"]), np.asarray(c["kendall_tau"]) if c.get("kendall_tau") else None)
    return Preset(models=models, copula=copula, tails=raw.get("tails", {}), book=tuple(raw["book"]["markets"]),
                  problem=raw.get("problem", {}), provenance=raw.get("provenance", {}), raw=raw)


def default_config(preset: Preset | None = None) -> CalibrationConfig:
    """The calibration ``fundguard calibrate`` runs with no arguments: the preset's book and problem.

    20,000 random scenarios of 30 days with "parametric" innovations (the preset has no residual
    history to bootstrap), a -30% instantaneous crash on every market as a stress scenario the
    fund must survive, 100,000 fresh scenarios for the certificate, method "certified".
    """
    preset = preset or load_preset()
    markets = tuple(
        MarketConfig(name=m["name"], open_interest=float(m["open_interest"]), daily_volume=float(m["daily_volume"]),
                     premium_kind=m.get("premium_kind", "liquidation"), current_rate=float(m.get("current_rate", 0.0)))
        for m in preset.book
    )
    problem = {k: v for k, v in preset.problem.items() if k in ProblemConfig.__dataclass_fields__}
    book = preset.raw.get("book", {}) if isinstance(preset.raw, Mapping) else {}
    # presets written before the stateful book carry no loss model: theirs was the liquidation gap
    loss_model = book.get("loss_model", "liquidation_gap") if isinstance(book, Mapping) else "liquidation_gap"
    if loss_model not in LOSS_MODELS:
        raise ConfigError(f"preset book.loss_model must be one of {sorted(LOSS_MODELS)}, got {loss_model!r}")
    return CalibrationConfig(
        markets=markets,
        venue=VenueConfig(loss_model=loss_model),
        volatility=VolatilityConfig(),
        scenarios=ScenarioConfig(n_scenarios=20_000, horizon=30, innovations="parametric", shocks=(-0.3,),
                                 certify_scenarios=100_000),
        problem=ProblemConfig(**problem),
        source=None,
        digest=hashlib.sha256(json.dumps({"preset": preset.raw}, sort_keys=True).encode()).hexdigest(),
    )
