"""fundguard.models: market data, volatility models, return scenarios and venue losses.

Data flows one way: ``load_prices`` -> ``log_returns`` -> ``fit_volatility`` ->
``simulate_returns`` -> ``build_scenarios`` -> :class:`ScenarioSet`, the object the optimizer
consumes. This package never imports ``fundguard.optimizer``.
"""

from .errors import *  # noqa: F401,F403  (the one exception hierarchy)
from .errors import __all__ as _errors_all
from .data import Frequency, detect_frequency, load_ohlc, load_prices, log_returns, ohlc_paths
from .scenarios import (
    INNOVATIONS,
    SCENARIO_BLOCK,
    DEFAULT_EXCURSIONS,
    BridgeExcursions,
    Copula,
    ExcursionModel,
    GPDTail,
    ReturnPaths,
    SimulationPlan,
    TailFit,
    bridge_excursions,
    fit_copula,
    fit_excursions,
    fit_market_excursions,
    fit_tails,
    plan_simulation,
    simulate_returns,
    stress_paths,
)
from .scenarioset import ScenarioSet
from .store import ScenarioStore
from .chunked import ChunkedScenarioSet, chunked_scenarios, local_client
from .venue import (
    DEFAULT_LOSS_MODEL,
    DEFAULT_TIERS,
    LOSS_MODELS,
    PREMIUM_KINDS,
    LeverageTier,
    LossModel,
    Market,
    StatefulBook,
    VenueBook,
    VenueLosses,
    build_scenarios,
    liquidation_gap,
    loss_model,
    replay,
    stateful_book,
)
from .volatility import AUTO_CANDIDATES, SIMULATION_CANDIDATES, VolDiagnostics, VolModel, VolSpec, fit_volatility

__all__ = [
    # data
    "Frequency", "detect_frequency", "load_prices", "log_returns", "load_ohlc", "ohlc_paths",
    # volatility
    "AUTO_CANDIDATES", "SIMULATION_CANDIDATES", "VolDiagnostics", "VolModel", "VolSpec", "fit_volatility",
    # scenarios
    "INNOVATIONS", "SCENARIO_BLOCK", "Copula", "GPDTail", "ReturnPaths", "TailFit", "fit_copula", "fit_tails",
    "plan_simulation", "SimulationPlan", "simulate_returns", "stress_paths",
    "DEFAULT_EXCURSIONS", "ExcursionModel", "BridgeExcursions", "bridge_excursions", "fit_excursions",
    "fit_market_excursions",
    # venue and the seam
    "DEFAULT_TIERS", "PREMIUM_KINDS", "LeverageTier", "LossModel", "Market", "VenueBook", "build_scenarios",
    "liquidation_gap", "StatefulBook", "stateful_book", "VenueLosses", "replay", "LOSS_MODELS", "DEFAULT_LOSS_MODEL", "loss_model", "ScenarioSet", "ScenarioStore",
    # distributed (dask is imported only when these are called)
    "ChunkedScenarioSet", "chunked_scenarios", "local_client",
    *_errors_all,
]
