"""The registry of methods: name -> :class:`Method` (its function, its options read from the
function's signature, and whether it runs on a chunked scenario set).

Adding a method is one file in this folder (a ``solve_<name>(problem, scenarios, *, options...)
-> Policy`` function) and one line in :data:`METHODS`; :func:`~fundguard.optimizer.solve`, the
frontier, the chunked path, the CLI's choices and the config's validation read it from here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fundguard.models import ScenarioSet

from ..fund import FundModel, FundRule
from ..guarantees import scenario_discard_budget
from ..policy import Policy
from ..problem import PolicyProblem
from .certified import solve_certified
from .cvar import cvar_levels, solve_cvar, tail_review
from .exact import exact_levels, solve_exact
from .scenario import solve_scenario

__all__ = ["Method", "METHODS", "level_solver", "level_solver_on_model"]

LevelSolver = Callable[[FundModel, Sequence[float], dict[str, Any]], Callable[[float], Policy]]


@dataclass(frozen=True)
class Method:
    """A method of :func:`~fundguard.optimizer.solve`.

    Attributes
    ----------
    name : str
    run : callable
        ``run(problem, scenarios, **options) -> Policy``.
    summary : str
        One line for help texts.
    levels : callable, optional
        ``levels(model, alphas, options) -> solve_at``: solves at many levels on one FundModel
        (frontier, chunked sets); None when the method has no shared work across levels.
    guarantee : str
        What the method's answer promises out of sample, in one sentence (``Policy.details["guarantee"]``).
    fixed_rule : callable, optional
        ``fixed_rule(alpha, n, options) -> (FundRule, top) | None``: the method's fund target when
        every rate is fixed, as a rule on the ``top`` largest required funds of N random scenarios
        (what the participation rate search screens for, :class:`~fundguard.optimizer.fund.working.WorkingSet`);
        None when the method has none.
    review : callable, optional
        ``review(need, alpha) -> dict | None``: a check of the answer on each random scenario's
        need at its rates; a dict with ``dominated`` true makes :func:`~fundguard.optimizer.solve`
        warn (``Policy.details["tail"]``).
    options : tuple of str
        The keyword-only parameters of ``run``, in order (read from its signature), but ``inner``.
    composite : bool
        True when ``run`` takes ``inner=`` (:func:`~fundguard.optimizer.solve` itself) and solves
        another method through it ("certified"): :func:`~fundguard.optimizer.solve` then hands it
        the problem as given (participation, ruin rule, budgets) instead of wrapping it.
    """

    name: str
    run: Callable[..., Policy]
    summary: str
    levels: LevelSolver | None = None
    guarantee: str = ""
    review: Callable[[Any, float], dict[str, float] | None] | None = None
    fixed_rule: Callable[[float, int, dict[str, Any]], tuple[FundRule, int] | None] | None = None
    options: tuple[str, ...] = field(init=False)
    composite: bool = field(init=False)

    def __post_init__(self) -> None:
        keyword_only = inspect.Parameter.KEYWORD_ONLY
        names = tuple(p.name for p in inspect.signature(self.run).parameters.values() if p.kind is keyword_only)
        object.__setattr__(self, "options", tuple(n for n in names if n != "inner"))
        object.__setattr__(self, "composite", "inner" in names)

    @property
    def distributed(self) -> bool:
        """Whether the method runs on a chunked scenario set (it solves on a tail FundModel)."""
        return self.levels is not None


def _quantile_rule(alpha: float, n: int, options: dict[str, Any]) -> tuple[FundRule, int] | None:
    """"exact" at fixed rates: the (floor(alpha N) + 1)-th largest required fund."""
    rule = FundRule.quantile(alpha, n)
    return (rule, rule.allowed + 1) if rule.allowed < n else None


def _cvar_rule(alpha: float, n: int, options: dict[str, Any]) -> tuple[FundRule, int] | None:
    """"cvar" at fixed rates: the sample CVaR, read from the floor(alpha N) + 1 largest."""
    rule = FundRule.cvar(alpha, n)
    return (rule, rule.allowed + 1) if rule.allowed < n else None


def _discard_rule(alpha: float, n: int, options: dict[str, Any]) -> tuple[FundRule, int] | None:
    """"scenario" at fixed rates (one decision, the fund target): the greedy rule discards the k
    largest required funds, k its planned discards, so the fund target is the (k + 1)-th largest."""
    k = options.get("discarded")
    if k is None:
        k = scenario_discard_budget(n, alpha, float(options.get("beta", _SCENARIO_BETA)), 1)
    if k is None or isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < n:
        return None  # the method itself says why
    return FundRule("quantile", alpha, int(k), n_scenarios=n), int(k) + 1


_SCENARIO_BETA = inspect.signature(solve_scenario).parameters["beta"].default

METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        Method("cvar", solve_cvar, "Rockafellar–Uryasev CVaR constraint (convex, conservative)", cvar_levels,
               guarantee="none; conservative while the tail mean is finite (the mean of the worst alpha share of the "
                         "needs covers their alpha-quantile), unbounded in N when it is not (a warning says so)",
               review=tail_review, fixed_rule=_cvar_rule),
        Method("exact", solve_exact,
               "exact sample chance constraint: at most floor(alpha N) ruined scenarios (mixed-integer)", exact_levels,
               guarantee="none: at most alpha of the training scenarios are ruined, and on fresh scenarios its ruin "
                         "exceeds alpha about half the time (more often when the rates are chosen on the same "
                         "sample); use 'certified' for a bound", fixed_rule=_quantile_rule),
        Method("scenario", solve_scenario, "scenario approach with greedy discarding (Campi & Garatti)",
               guarantee="a priori: P(ruin) <= epsilon except with probability beta over the draw of the scenarios "
                         "(Campi & Garatti 2011), epsilon <= alpha", fixed_rule=_discard_rule),
        Method("certified", solve_certified,
               "rates by 'exact' on the training scenarios, fund target certified on fresh ones (order statistic)",
               guarantee="P(ruin) <= alpha at the stated confidence (distribution-free order-statistic bound on "
                         "fresh scenarios, or on a hold-out part without them)"),
    )
}


def level_solver(
    problem: PolicyProblem, scenarios: ScenarioSet, alphas: Sequence[float], method: str, options: dict[str, Any]
) -> Callable[[float], Policy]:
    """``solve_at(alpha)`` for a method with shared work across levels ("cvar", "exact").

    One FundModel (one pass over the data, scaled for the largest level) and one screening serve
    every level; ``options`` are the method's options, validated as its ``solve_<method>`` does.
    """
    model = FundModel.build(problem, scenarios, scale_alpha=max(alphas))
    return level_solver_on_model(model, alphas, method, options)


def level_solver_on_model(
    model: FundModel, alphas: Sequence[float], method: str, options: dict[str, Any]
) -> Callable[[float], Policy]:
    """:func:`level_solver` on a built FundModel (built with ``scale_alpha=max(alphas)``); the
    chunked path of :mod:`~fundguard.optimizer.distributed` solves its tail view through here."""
    return METHODS[method].levels(model, alphas, options)
