"""Joint return scenarios from fitted volatility models: random paths and stress paths.

``simulate_returns`` turns fitted GARCH-family models (one per market) into N joint return
paths of T periods that start from today's state of every model. ``stress_paths`` builds
deterministic paths: historical windows replayed (as they happened, or rescaled to today's
volatility) and hypothetical instantaneous shocks. Both return :class:`ReturnPaths`, which
``fundguard.models.venue.build_scenarios`` turns into a :class:`ScenarioSet`.

Notes
-----
Each market follows its fitted GARCH, GJR or EGARCH recursion (the formulas:
:mod:`fundguard.models.scenarios.dynamics`), r_t = mu + sigma_t z_t. Paths start at sigma_1^2 = the model's
``next_variance``, the one-step forecast made from the last observed variance and residual,
so a calm day and a stormy day give different scenarios.

Innovations z_t (unit variance, i.i.d. over time, dependent across markets):

* ``"parametric"``: each market's fitted distribution (normal, t, skewed t, GED), joined by a
  Student-t copula (default; crypto markets crash together, and the t copula has the tail
  dependence a Gaussian copula lacks) or a Gaussian copula, fitted to the standardized residuals
  on common dates (:func:`fit_copula`).
* ``"fhs"``: filtered historical simulation (Barone-Adesi et al. 1999): whole dates of the joint
  standardized-residual matrix are bootstrapped, so every draw is an observed residual vector.
* ``"evt"``: GARCH-EVT (McNeil & Frey 2000): whole dates are drawn as in ``"fhs"``; a residual in
  the body is used as observed, one among the k most extreme of its side is replaced by a draw
  from the generalized Pareto tail fitted to those k exceedances (:func:`fit_tails`), so draws
  can be worse than anything in the history while the dates' ranks keep the dependence.

Random numbers come in fixed blocks of ``SCENARIO_BLOCK`` scenarios, each block with its own
streams spawned from the seed (``SeedSequence`` spawn keys ``(block, stream)``); the memory
chunks the work is done in are whole blocks. So a seed gives the same paths whatever the chunk
size, and the first n paths of a run with N > n scenarios equal a run with n scenarios.

Every path carries the periods' intraday low and high (``ReturnPaths.low`` / ``.high``), drawn
given each return and volatility from an empirical excursion law (``excursions``; the default is
fitted to Binance BTC and ETH daily bars) from streams of each block's own, one per market after
its innovation streams: the returns of a seed are the same with or without excursions.

Layout (imports run down this list): ``paths`` (the ReturnPaths result, what generators read off
the models), ``copula``, ``tails``, ``excursions`` (intraday low/high given the close), ``innovations`` (distributions, transforms, samplers),
``dynamics`` (the one recursion step), ``simulate`` (random paths), ``stress`` (deterministic
paths). Seeds and blocks are :mod:`fundguard.models.seeds`.
"""

from ..seeds import SCENARIO_BLOCK
from .copula import Copula, fit_copula
from .excursions import (
    DEFAULT_EXCURSIONS,
    BridgeExcursions,
    ExcursionModel,
    bridge_excursions,
    fit_excursions,
    fit_market_excursions,
)
from .paths import ReturnPaths
from .simulate import INNOVATIONS, SimulationPlan, plan_simulation, simulate_returns
from .stress import stress_paths
from .tails import GPDTail, TailFit, fit_tails

__all__ = [
    "INNOVATIONS",
    "SCENARIO_BLOCK",
    "ReturnPaths",
    "Copula",
    "fit_copula",
    "GPDTail",
    "TailFit",
    "fit_tails",
    "simulate_returns",
    "SimulationPlan",
    "plan_simulation",
    "stress_paths",
    "DEFAULT_EXCURSIONS",
    "ExcursionModel",
    "BridgeExcursions",
    "bridge_excursions",
    "fit_excursions",
    "fit_market_excursions",
]
