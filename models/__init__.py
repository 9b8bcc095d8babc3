"""fundguard.models: market data, volatility models, return scenarios and venue losses.

Data flows one way: ``load_prices`` -> ``log_returns`` -> ``fit_volatility`` ->
``simulate_returns`` -> ``build_scenarios`` -> :class:`ScenarioSet`, the object the optimizer
consumes. This package never imports ``fundguard.optimizer``.
"""

from .errors import *  # noqa: F401,F403  (the one exception hierarchy)
from .errors import __all__ as _errors_all
from .scenarioset import ScenarioSet

__all__ = ["ScenarioSet", *_errors_all]
from .data import Frequency, detect_frequency, load_prices, log_returns
from .volatility import AUTO_CANDIDATES, VolDiagnostics, VolModel, VolSpec, fit_volatility

__all__ += [
    "Frequency", "detect_frequency", "load_prices", "log_returns",
    "AUTO_CANDIDATES", "VolDiagnostics", "VolModel", "VolSpec", "fit_volatility",
]
