"""The numpy check every method ends with, and the fund target each method implies for fixed rates.

Solvers only ever choose the premium rates. For fixed rates each method's smallest admissible
fund target is a closed form (:class:`FundRule`): an order statistic ("exact"), a sample CVaR
("cvar") or a maximum over kept scenarios ("scenario"). :func:`checked_point` recomputes it on the
caller's unscaled arrays, lifts it by a few ulps until the canonical ruin check
(:func:`~.fund.count_ruined`) agrees, repairs a ``fund_max`` overshoot of solver-tolerance size,
and recomputes the objective, so a reported policy is never "a hair below the floor" and its
objective is never a solver's claim.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from fundguard.models.errors import ConvergenceWarning, InfeasibleError, SolverError

from ..policy import Policy
from .equation import allowed_ruins, count_ruined, kth_largest, sample_cvar, worst_net_flow
from .model import FundModel, ScreenedRows

__all__ = [
    "FundRule",
    "CheckedPoint",
    "fund_at",
    "checked_point",
    "fit_under_cap",
    "scaled_fund",
    "agree",
    "solver_cap",
    "make_policy",
    "screened_stress",
    "check_cap",
    "var_index",
    "cvar_screen",
    "closed_form",
]

# Relative margin by which fund_max is tightened inside solvers, so that a solver answer
# feasible to its tolerance still fits under fund_max after the numpy recomputation.
_CAP_MARGIN = 1e-7
# Claimed and recomputed objectives must agree to this relative tolerance (plus 1e-9 of the
# objective scale) for a solver answer to be accepted as optimal.
_AGREE_RTOL = 1e-6
# Scaled rates this close to 0 or 1 are snapped to the bound before the numpy check.
_SNAP = 1e-9
# Slack, in ulps of a path's flows per market and period, that a saved scenario keeps (see
# _rounding_margin).
_MARGIN_ULPS = 4


@dataclass(frozen=True, eq=False)
class FundRule:
    """How a method's fund target follows from the premium rates.

    For fixed rates every method's constraint is met by all fund targets above a threshold;
    the method's fund target is that threshold (or 0, or what stress scenarios need):

    * ``"quantile"`` (exact): the ``(allowed + 1)``-th largest required fund ``R_s(p)``, so that
      at most ``allowed = floor(alpha N)`` scenarios are ruined;
    * ``"cvar"``: the sample CVaR of ``R_s(p)`` at ``alpha`` (:func:`~.fund.sample_cvar`);
    * ``"robust"`` (scenario approach): the largest ``R_s(p)`` over the scenarios not
      ``discarded``.

    Build one with :meth:`quantile` or :meth:`cvar` (they compute the allowed ruins once) or
    ``FundRule("robust", alpha, discarded=...)``.

    Attributes
    ----------
    kind : "quantile" | "cvar" | "robust"
    alpha : float
    allowed : int
        Ruined scenarios the rule admits ("quantile" and "cvar").
    discarded : (N,) bool or None
        Scenarios the "robust" rule may leave ruined.
    n_scenarios : int or None
        N the rule was made for. For "cvar" the required funds given to :meth:`fund` may be
        only the largest of them (a tail view of a chunked set, :mod:`.chunked`); None: all of
        them are given.
    """

    kind: str
    alpha: float
    allowed: int = 0
    discarded: np.ndarray | None = None
    n_scenarios: int | None = None

    @classmethod
    def quantile(cls, alpha: float, n_scenarios: int) -> FundRule:
        """Method "exact"'s rule at level ``alpha`` on N scenarios: ``allowed = floor(alpha N)``."""
        return cls("quantile", alpha, allowed_ruins(alpha, n_scenarios), n_scenarios=n_scenarios)

    @classmethod
    def cvar(cls, alpha: float, n_scenarios: int) -> FundRule:
        """Method "cvar"'s rule at level ``alpha`` on N scenarios (the required funds given to
        :meth:`fund` may be only the largest of the N)."""
        return cls("cvar", alpha, allowed_ruins(alpha, n_scenarios), n_scenarios=n_scenarios)

    @property
    def var_rank(self) -> int:
        """``ceil(alpha N)`` (:func:`var_index`): which order statistic is the sample VaR."""
        return var_index(self.alpha, self.n_scenarios)

    def var_floor(self, lowest: np.ndarray) -> float:
        """The VaR floor: the :attr:`var_rank`-th largest of ``lowest`` (the required funds at
        premium_max), a lower bound of the sample VaR, hence of the CVaR, anywhere in the rate box."""
        return kth_largest(lowest, self.var_rank)

    def fund(self, required: np.ndarray) -> float:
        """Smallest fund target meeting the rule, from required funds ``R_s`` (N,) (-inf if none binds)."""
        if self.kind == "quantile":
            return kth_largest(required, self.allowed + 1) if self.allowed < required.size else -math.inf
        if self.kind == "cvar":
            return sample_cvar(required, self.alpha, self.n_scenarios)
        kept = required[~self.discarded]
        return float(kept.max()) if kept.size else -math.inf

    def admits(self, ruined: np.ndarray) -> bool:
        """Whether the ruin pattern ``ruined`` (N,) bool meets the rule."""
        if self.kind == "robust":
            return not bool(np.any(ruined & ~self.discarded))
        return int(np.count_nonzero(ruined)) <= self.allowed


@dataclass(frozen=True, eq=False)
class CheckedPoint:
    """A checked policy: fund target, rates and what numpy says about them."""

    fund_target: float
    premium_rates: np.ndarray
    objective: float
    ruins: int
    u: np.ndarray


def fund_at(model: FundModel, rule: FundRule, u: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The rule's fund target at scaled rates ``u``, on the caller's unscaled arrays.

    Returns ``(fund_target, premium_rates, worst)`` with ``worst`` from
    :func:`~.fund.worst_net_flow`. ``floor - worst`` rounds differently from the canonical
    check ``F0 + worst < floor``; the fund target is lifted by a few ulps until the check agrees.
    """
    rates = model.rates(u)
    floor = model.problem.floor
    worst = model.worst(rates)
    fund = max(0.0, rule.fund(floor - worst))
    stress_worst = None
    if model.stress is not None:
        stress_worst = worst_net_flow(model.stress.losses, model.stress.premium_base, rates)
        fund = max(fund, float((floor - stress_worst).max()))
    step = max(abs(fund), abs(floor), 1.0) * np.finfo(np.float64).eps
    for _ in range(64):
        stress_ok = stress_worst is None or not bool(np.any(fund + stress_worst < floor))
        if stress_ok and rule.admits(fund + worst < floor):
            fund = _rounding_margin(model, fund, worst, rates, model.random_index)
            if stress_worst is not None:
                fund = _rounding_margin(model, fund, stress_worst, rates, None, stress=True)
            return fund, rates, worst
        fund += step
        step *= 2.0
    raise SolverError(f"the {rule.kind} fund target could not be confirmed by the numpy ruin check (F0 = {fund!r})")


def _rounding_margin(
    model: FundModel, fund: float, worst: np.ndarray, rates: np.ndarray, index: np.ndarray | None, stress: bool = False
) -> float:
    """``fund`` lifted so that no scenario it saves sits within rounding of the floor.

    The fund target of "exact" (an order statistic) or "scenario" (a maximum) puts one scenario
    exactly on the floor in the canonical arithmetic; a re-check that sums the premium income
    in another order (``np.einsum``, a loop: measured up to a few ulps apart) could count it
    ruined. Every scenario not ruined keeps a slack of ``_MARGIN_ULPS (J + 1) T`` ulps of its
    path's flows ``sum_t (p . B[s, t] + L[s, t])`` (about 1e-13 relative). With every rate zero
    the income is exactly zero in any order and nothing is added, so the fund target is the
    closed form itself.
    """
    if not np.any(rates):
        return fund
    floor = model.problem.floor
    slack = fund + worst - floor
    near = np.flatnonzero((slack >= 0.0) & (slack <= 1e-6 * max(abs(fund), abs(floor), 1.0)))
    if not near.size:
        return fund
    source = model.stress if stress else model.source
    rows = near if index is None else index[near]
    flows = source.premium_base[rows].sum(axis=1, dtype=np.float64) @ rates + source.losses[rows].sum(axis=1, dtype=np.float64)
    horizon, n_markets = source.horizon, rates.size
    margin = _MARGIN_ULPS * (n_markets + 1) * horizon * np.finfo(np.float64).eps * flows
    return max(fund, float((floor - worst[near] + margin).max()))


def checked_point(model: FundModel, rule: FundRule, u: np.ndarray) -> CheckedPoint:
    """Check scaled rates ``u`` in numpy: fund target, ruin count, objective; repair fund_max."""
    u = np.clip(np.asarray(u, dtype=np.float64).reshape(model.n_free), 0.0, 1.0)
    # Solver answers sit within their tolerance of a bound they mean to hit: snap them to it.
    u[u < _SNAP] = 0.0
    u[u > 1.0 - _SNAP] = 1.0
    fund, rates, worst = fund_at(model, rule, u)
    cap = model.problem.fund_max
    if cap is not None and fund > cap:
        u, fund, rates, worst = fit_under_cap(model, rule, u, cap)
    ruins = count_ruined(fund, worst, model.problem.floor)
    return CheckedPoint(fund, rates, model.objective(fund, rates), ruins, u)


def fit_under_cap(
    model: FundModel, rule: FundRule, u: np.ndarray, cap: float
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Move the rates toward premium_max until the fund target fits under ``fund_max``.

    Every rule's fund target is non-increasing in each rate (premium bases are >= 0), so the
    shortest step along ``u -> 1`` that fits is found by bisection; it is of the order of the
    solver tolerance, and so is the objective it costs.
    """
    top = np.ones_like(u)
    fund, rates, worst = fund_at(model, rule, top)
    if fund > cap:
        raise InfeasibleError(
            f"fund_max = {cap:.6g} is below the fund target the {rule.kind} constraint needs even at "
            f"premium_max: {fund:.6g} (short by {fund - cap:.6g})"
        )
    best = (top, fund, rates, worst)
    low, high = 0.0, 1.0
    for _ in range(48):
        mid = 0.5 * (low + high)
        trial = u + mid * (top - u)
        fund, rates, worst = fund_at(model, rule, trial)
        if fund <= cap:
            high, best = mid, (trial, fund, rates, worst)
        else:
            low = mid
    return best


def scaled_fund(model: FundModel, rule: FundRule, u: np.ndarray) -> float:
    """The rule's fund target in scaled units (fast, for ranking starting points)."""
    return max(model.fund_min, rule.fund(model.required(u)), model.stress_required(u))


def agree(recomputed: float, claimed: float, scale: float) -> bool:
    return abs(recomputed - claimed) <= _AGREE_RTOL * max(abs(recomputed), abs(claimed)) + 1e-9 * scale


def solver_cap(cap: float) -> float:
    # a scaled cap is measured from the floor and may be negative (fund_max below the floor)
    return cap - _CAP_MARGIN * abs(cap)


def make_policy(
    model: FundModel,
    method: str,
    point: CheckedPoint,
    *,
    alpha: float,
    status: str,
    solver: str,
    details: dict[str, Any],
    **guarantee: Any,
) -> Policy:
    if status not in ("optimal", "certified"):
        warnings.warn(
            f"method {method!r}: optimality not confirmed ({details.get('reason', status)}); "
            "the policy meets the method's constraint but may cost more than the optimum",
            ConvergenceWarning,
            stacklevel=4,
        )
    model.confirm(point.fund_target, point.premium_rates, point.objective)
    return Policy(
        fund_target=point.fund_target,
        premium_rates=point.premium_rates,
        objective=point.objective,
        method=method,
        status=status,
        in_sample_ruin=point.ruins / model.n_scenarios,
        solve_seconds=0.0,
        solver=solver,
        markets=model.markets,
        floor=model.problem.floor,
        alpha=alpha,
        n_scenarios=model.n_scenarios,
        details=details,
        **guarantee,
    )


def screened_stress(model: FundModel) -> tuple[float, ScreenedRows | None]:
    """Largest scaled fund any stress scenario needs at premium_max, and their screened rows."""
    n_stress = model.stress_required0.shape[0]
    if not n_stress:
        return model.fund_min, None  # F0 >= 0 only
    lowest = max(model.fund_min, model.stress_required(np.ones(model.n_free)))
    return lowest, model.screen(np.arange(n_stress), lowest, stress=True)


def check_cap(model: FundModel, random_lowest: float, stress_lowest: float, what: str) -> None:
    """InfeasibleError when fund_max cannot hold the lowest fund target reachable in the box."""
    if stress_lowest > random_lowest and model.stress is not None:
        which = model.stress_binding(np.ones(model.n_free))
        what = f"survival of stress scenario {which} (of {model.stress.n_scenarios})"
    model.check_fund_cap(max(model.fund_min, random_lowest, stress_lowest), what)


def var_index(alpha: float, n_scenarios: int) -> int:
    """``ceil(alpha N)``, rounded up on ties: which order statistic is the sample VaR."""
    return min(n_scenarios, max(1, math.ceil(alpha * n_scenarios * (1.0 + 1e-9))))


def cvar_screen(model: FundModel, max_alpha: float) -> tuple[float, np.ndarray, ScreenedRows]:
    """What method "cvar" keeps for levels up to ``max_alpha`` (both engines screen alike).

    Returns the VaR floor (the ``ceil(alpha N)``-th largest required fund at premium_max, a lower
    bound of the sample VaR anywhere in the box), the candidate scenarios whose required fund can
    exceed it somewhere in the box, and their rows screened at that floor.
    """
    highest, lowest = model.required_range()
    level = FundRule.cvar(max_alpha, model.n_scenarios).var_floor(lowest)
    candidates = np.flatnonzero(highest > level)
    return level, candidates, model.screen(candidates, level)


def closed_form(model: FundModel, method: str, rule: FundRule, alpha: float, **guarantee: Any) -> Policy:
    """Every rate fixed (premium_min == premium_max): the fund target is the rule's closed form."""
    point = checked_point(model, rule, np.zeros(0))
    return make_policy(model, method, point, alpha=alpha, status="optimal", solver="closed form", details={}, **guarantee)
