"""fundguard.models: market data, volatility models, return scenarios and venue losses.

Data flows one way: ``load_prices`` -> ``log_returns`` -> ``fit_volatility`` ->
``simulate_returns`` -> ``build_scenarios`` -> :class:`ScenarioSet`, the object the optimizer
consumes. This package never imports ``fundguard.optimizer``.
"""

from .errors import *  # noqa: F401,F403  (the one exception hierarchy)
from .errors import __all__ as _errors_all
from .lazy import lazy_exports
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the names for type checkers and IDEs; at run time they load on first use
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

#: Exported name -> the module that defines it, imported on first access (PEP 562), so that
#: importing one light module (the CLI's --help, the errors) does not load the solvers.
_EXPORTS = {
    'Frequency': '.data',
    'detect_frequency': '.data',
    'load_ohlc': '.data',
    'load_prices': '.data',
    'log_returns': '.data',
    'ohlc_paths': '.data',
    'INNOVATIONS': '.scenarios',
    'SCENARIO_BLOCK': '.scenarios',
    'DEFAULT_EXCURSIONS': '.scenarios',
    'BridgeExcursions': '.scenarios',
    'Copula': '.scenarios',
    'ExcursionModel': '.scenarios',
    'GPDTail': '.scenarios',
    'ReturnPaths': '.scenarios',
    'SimulationPlan': '.scenarios',
    'TailFit': '.scenarios',
    'bridge_excursions': '.scenarios',
    'fit_copula': '.scenarios',
    'fit_excursions': '.scenarios',
    'fit_market_excursions': '.scenarios',
    'fit_tails': '.scenarios',
    'plan_simulation': '.scenarios',
    'simulate_returns': '.scenarios',
    'stress_paths': '.scenarios',
    'ScenarioSet': '.scenarioset',
    'ScenarioStore': '.store',
    'ChunkedScenarioSet': '.chunked',
    'chunked_scenarios': '.chunked',
    'local_client': '.chunked',
    'DEFAULT_LOSS_MODEL': '.venue',
    'DEFAULT_TIERS': '.venue',
    'LOSS_MODELS': '.venue',
    'PREMIUM_KINDS': '.venue',
    'LeverageTier': '.venue',
    'LossModel': '.venue',
    'Market': '.venue',
    'StatefulBook': '.venue',
    'VenueBook': '.venue',
    'VenueLosses': '.venue',
    'build_scenarios': '.venue',
    'liquidation_gap': '.venue',
    'loss_model': '.venue',
    'replay': '.venue',
    'stateful_book': '.venue',
    'AUTO_CANDIDATES': '.volatility',
    'SIMULATION_CANDIDATES': '.volatility',
    'VolDiagnostics': '.volatility',
    'VolModel': '.volatility',
    'VolSpec': '.volatility',
    'fit_volatility': '.volatility',
}

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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
