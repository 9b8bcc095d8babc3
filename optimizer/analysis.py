"""What a policy leaves open and who it is for: the near-optimal set and the Euler allocation.

* :func:`near_optimal_set`: every sampled rate vector whose cost on one common yardstick (the
  exact sample fund target of :class:`~.fund.FundRule` "quantile", without the rounding lift) is
  within ``tolerance`` of the least cost found. A wide set says the optimum is flat: the rates
  can be chosen on other grounds for (almost) nothing.
* :func:`euler_allocation`: each market's share of a policy's fund target above the floor, its
  marginal (Euler) contribution to the required fund at the ``1 - alpha`` quantile.

Both read a :class:`~fundguard.models.ScenarioSet` in one streaming pass per rate vector
(:func:`~.fund.worst_net_flow` works in scenario chunks), so memory stays ``O(N)`` (``O(N J)``
for the allocation's contributions) on top of the set itself.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import product
from numbers import Real

import numpy as np
import pandas as pd
from scipy.stats import qmc

from fundguard.models import ScenarioSet
from fundguard.models.errors import InfeasibleError, ProblemError, ScenarioError

from .fund.equation import (
    allowed_ruins,
    kth_largest,
    mean_premium_base,
    objective_value,
    scenario_chunks,
    worst_net_flow,
    worst_weighted_flow,
)
from .fund.working import WorkingSet
from .methods.registry import METHODS
from .participation import at_policy, mean_market_losses, participation_cost
from .policy import Policy
from .problem import PolicyProblem

__all__ = ["NearOptimalSet", "near_optimal_set", "euler_allocation"]

# Corners of the rate box are sampled up to this many free rates (2**6 = 64 corners).
_MAX_CORNER_MARKETS = 6
# Local refinement (coordinate pattern search around the best sample): at most this many
# rounds, stopping once the step is below _STEP_STOP of the box width.
_REFINE_ROUNDS = 40
_STEP_STOP = 1e-6
# ... started from each of this many best samples.
_REFINE_STARTS = 4
# "flat" thresholds: fund-target range ratio and share of a free rate's box the set spans.
_FLAT_FUND_RATIO = 2.0
_FLAT_RATE_SHARE = 0.5
# Default Euler window: max(_WINDOW_MIN, _WINDOW_SHARE of the random scenarios).
_WINDOW_MIN = 10
_WINDOW_SHARE = 0.02


@dataclass(frozen=True, eq=False)
class NearOptimalSet:
    """The sampled policies whose cost is within ``tolerance`` of the least cost found.

    Attributes
    ----------
    tolerance : float
        Relative cost tolerance: near-optimal means ``cost <= optimal_cost + tolerance * |optimal_cost|``.
    optimal_cost : float, currency units
        ``C*``, the least cost found (the given policy's rates included, re-evaluated).
    optimal_rates : (J,) float64, read-only
        The rates of ``C*``, fractions of the premium base.
    optimal_fund_target : float, currency units
        ``F0`` at ``optimal_rates`` on the common yardstick.
    n_evaluated : int
        Rate vectors evaluated (feasible or not).
    n_near : int
        How many of them are near-optimal.
    fund_target_range : (float, float), currency units
        Least and largest fund target over the near-optimal set.
    rate_ranges : (J, 2) float64, read-only
        Per market, least and largest rate over the near-optimal set (fractions).
    markets : tuple of str
        Market names, the row order of ``rate_ranges``.
    flat : bool
        True when the optimum is flat: the fund-target range's max/min exceeds 2 (a range
        ``(0, x > 0)`` counts as infinite), or some free rate (``premium_min < premium_max``)
        spans more than half its box over the near-optimal set.
    """

    tolerance: float
    optimal_cost: float
    optimal_rates: np.ndarray
    optimal_fund_target: float
    n_evaluated: int
    n_near: int
    fund_target_range: tuple[float, float]
    rate_ranges: np.ndarray
    markets: tuple[str, ...]
    flat: bool

    def __post_init__(self) -> None:
        for name in ("optimal_rates", "rate_ranges"):
            array = np.array(getattr(self, name), dtype=np.float64)
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        object.__setattr__(self, "markets", tuple(self.markets))

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-serialisable view (floats, ints, bools, lists)."""
        return {
            "tolerance": float(self.tolerance),
            "optimal_cost": float(self.optimal_cost),
            "optimal_rates": [float(r) for r in self.optimal_rates],
            "optimal_fund_target": float(self.optimal_fund_target),
            "n_evaluated": int(self.n_evaluated),
            "n_near": int(self.n_near),
            "fund_target_range": [float(v) for v in self.fund_target_range],
            "rate_ranges": [[float(lo), float(hi)] for lo, hi in self.rate_ranges],
            "markets": list(self.markets),
            "flat": bool(self.flat),
        }


@dataclass(frozen=True, eq=False)
class _Yardstick:
    """The exact sample fund target and cost of any rate vector for one (problem, scenarios) pair."""

    problem: PolicyProblem
    scenarios: ScenarioSet
    random_index: np.ndarray | None
    stress_index: np.ndarray | None
    allowed: int
    mean_base: np.ndarray
    mean_loss: np.ndarray

    @classmethod
    def of(cls, problem: PolicyProblem, scenarios: ScenarioSet) -> _Yardstick:
        stress = scenarios.is_stress
        random_index = np.flatnonzero(~stress) if scenarios.n_stress else None
        stress_index = np.flatnonzero(stress) if scenarios.n_stress and problem.survive_stress else None
        return cls(problem, scenarios, random_index, stress_index,
                   allowed_ruins(problem.alpha, scenarios.n_random), mean_premium_base(scenarios),
                   mean_market_losses(scenarios))

    @functools.cached_property
    def screen(self) -> WorkingSet | None:
        """The scenarios that can set the yardstick anywhere in the rate box (built on first use;
        None where :class:`~.fund.working.WorkingSet` does not apply)."""
        return WorkingSet.for_problem(self.problem, self.scenarios, METHODS["exact"].fixed_rule, {})

    def fund_target(self, rates: np.ndarray) -> float:
        """``max(0, (k+1)-th largest R_s(p), largest stress R_s(p))``, ``R_s = floor - worst_s``
        (on the scenarios scaled by the participation shares at ``rates`` when the problem has one);
        read from the screened working set (:attr:`screen`) where there is one."""
        if self.screen is not None:
            return self.screen.fund(rates)
        part = self.problem.participation
        losses, base, floor = self.scenarios.losses, self.scenarios.premium_base, self.problem.floor
        if part is None or self.scenarios.losses_by_market is None:
            scenarios = self.scenarios if part is None else part.scaled(self.scenarios, rates)

            def worst(index: np.ndarray | None) -> np.ndarray:
                return worst_net_flow(scenarios.losses, scenarios.premium_base, rates, index)
        else:  # the scaled book's flows without a scaled copy of it
            shares = part.shares(rates)

            def worst(index: np.ndarray | None) -> np.ndarray:
                return worst_weighted_flow(self.scenarios.losses_by_market, base, shares * rates, shares, index)
        required = floor - worst(self.random_index)
        fund = max(0.0, kth_largest(required, self.allowed + 1))
        if self.stress_index is not None:
            fund = max(fund, float((floor - worst(self.stress_index)).max()))
        return fund

    def evaluate(self, rates: np.ndarray) -> tuple[float, float]:
        """``(fund_target, cost)``; cost is ``inf`` when the fund target exceeds ``fund_max``."""
        fund = self.fund_target(rates)
        if self.problem.fund_max is not None and fund > self.problem.fund_max:
            return fund, math.inf
        part = self.problem.participation
        if part is None:
            return fund, objective_value(self.problem, fund, rates, self.mean_base)
        return fund, participation_cost(self.problem, fund, rates, self.mean_base, self.mean_loss)


def near_optimal_set(
    problem: PolicyProblem,
    scenarios: ScenarioSet,
    policy: Policy | None = None,
    *,
    tolerance: float = 0.01,
    n_samples: int = 512,
    seed: int = 0,
) -> NearOptimalSet:
    """The premium-rate vectors whose cost is within ``tolerance`` of the least cost found.

    Parameters
    ----------
    problem : PolicyProblem
    scenarios : ScenarioSet
        losses (N, T) and premium_base (N, T, J), currency units.
    policy : Policy, optional
        A solved policy; its rates are evaluated on the same yardstick (so ``optimal_cost`` is
        never above its re-evaluated cost).
    tolerance : float >= 0, default 0.01
        Relative cost tolerance.
    n_samples : int >= 1, default 512
        Sobol points drawn in the box of free rates (drawn as the next power of two and cut to
        ``n_samples``, so the sequence is the balanced one scipy recommends).
    seed : int, default 0
        Seed of the scrambled Sobol sequence.

    Returns
    -------
    NearOptimalSet

    Raises
    ------
    ProblemError
        ``tolerance`` negative or not finite, ``n_samples < 1``, a per-market field of the
        problem or the policy's rates not of length J, the policy's markets not the scenarios'
        (the message names the field).
    ScenarioError
        No random scenario.
    InfeasibleError
        Every evaluated rate vector needs a fund target above ``fund_max``.

    Notes
    -----
    The common yardstick (the sample constraint of method "exact"): for rates ``p`` in the box
    ``[premium_min, premium_max]``, ``R_s(p) = floor - min_t sum_{u<=t} (p . B[s,u] - L[s,u])``
    and ``F0(p) = max(0, R_(k+1)(p))``, the ``(k+1)``-th largest over the random scenarios with
    ``k = floor(alpha N)``; with ``survive_stress`` also at least ``max_s R_s(p)`` over the
    stress scenarios. ``p`` with ``F0(p) > fund_max`` is infeasible and excluded. The cost is
    :func:`~.fund.objective_value` at ``(F0(p), p)``. Unlike a method's policy the fund target
    is not lifted by rounding margins, so a policy's own objective can be a few ulps above its
    cost here.

    Sampled: the box's corners when at most 6 rates are free, ``n_samples`` scrambled Sobol
    points, the policy's rates, then a coordinate pattern search from each of the 4 best points
    (steps of one Sobol spacing, halved when no step improves, at most 40 rounds each; several
    starts because the order statistic ``F0(p)`` is not convex in ``p``). ``C*`` is the least
    cost found; near-optimal means ``cost <= C* + tolerance * |C*|`` (``|C*|`` so the rule also
    reads right at ``C* = 0``, where only cost-free points qualify). The ranges are over the
    evaluated points only: a statement about the sample, not a proof about the whole box.
    One pass over the scenarios per evaluated point.
    """
    n_markets = scenarios.n_markets
    _check_tolerance(tolerance)
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ProblemError(f"n_samples must be an integer >= 1, got {n_samples!r}")
    if scenarios.n_random == 0:
        raise ScenarioError("near_optimal_set needs random scenarios; every scenario is a stress scenario")
    problem.check_markets(n_markets)
    low, high = problem.rate_box(n_markets)
    if policy is not None:
        given = np.asarray(policy.premium_rates, dtype=np.float64)
        if given.shape != (n_markets,):
            raise ProblemError(
                f"policy.premium_rates has {given.size} values but the scenarios have {n_markets} markets")
        if tuple(policy.markets) != tuple(scenarios.markets):
            raise ProblemError(
                f"policy.markets {list(policy.markets)} are not the scenarios' markets {list(scenarios.markets)}")
    yardstick = _Yardstick.of(problem, scenarios)

    free = np.flatnonzero(high > low)
    candidates = _box_samples(low, high, free, n_samples, seed)
    if policy is not None:
        candidates.append(np.clip(given, low, high))
    rates_seen: list[np.ndarray] = []
    funds: list[float] = []
    costs: list[float] = []

    def evaluate(rates: np.ndarray) -> float:
        fund, cost = yardstick.evaluate(rates)
        rates_seen.append(rates)
        funds.append(fund)
        costs.append(cost)
        return cost

    for rates in candidates:
        evaluate(rates)
    best = int(np.argmin(costs))
    if math.isinf(costs[best]):
        raise InfeasibleError(
            f"every one of {len(costs)} rate vectors sampled needs a fund target above fund_max = "
            f"{problem.fund_max!r} (least needed {min(funds)!r})")
    if free.size:
        # the sample fund target is an order statistic, not convex in p: refine from a few starts
        spacing = 1.0 / max(2.0, n_samples ** (1.0 / free.size))
        for start in np.argsort(costs, kind="stable")[:_REFINE_STARTS]:
            if math.isfinite(costs[start]):
                _refine(evaluate, rates_seen[start], costs[start], low, high, free, spacing)

    cost_array = np.asarray(costs)
    optimal = int(np.argmin(cost_array))
    optimal_cost = float(cost_array[optimal])
    near = np.flatnonzero(cost_array <= optimal_cost + tolerance * abs(optimal_cost))
    near_rates = np.stack([rates_seen[i] for i in near])
    near_funds = np.asarray(funds)[near]
    rate_ranges = np.column_stack([near_rates.min(axis=0), near_rates.max(axis=0)])
    fund_range = (float(near_funds.min()), float(near_funds.max()))
    return NearOptimalSet(
        tolerance=float(tolerance),
        optimal_cost=optimal_cost,
        optimal_rates=rates_seen[optimal],
        optimal_fund_target=float(funds[optimal]),
        n_evaluated=len(costs),
        n_near=int(near.size),
        fund_target_range=fund_range,
        rate_ranges=rate_ranges,
        markets=scenarios.markets,
        flat=_is_flat(fund_range, rate_ranges, low, high, free),
    )


def euler_allocation(
    policy: Policy, scenarios: ScenarioSet, *, alpha: float | None = None, window: int | None = None
) -> pd.Series:
    """Each market's share of ``policy.fund_target - policy.floor``: its Euler contribution.

    Parameters
    ----------
    policy : Policy
        Fund target, premium rates (J,) and floor, currency units.
    scenarios : ScenarioSet
        losses (N, T), premium_base (N, T, J) and, when J > 1, losses_by_market (N, T, J),
        currency units. Only the random scenarios are used.
    alpha : float in (0, 1), optional
        Ruin level of the quantile; default ``policy.alpha``.
    window : int >= 1, optional
        Scenarios averaged around the quantile; default ``max(10, ceil(0.02 N))``, N random
        scenarios (capped at N).

    Returns
    -------
    pandas.Series, float64, currency units, indexed by market (named ``"market"``)
        Shares summing to ``policy.fund_target - policy.floor`` (to float rounding). A market
        whose losses fall when others' rise can have a negative share. ``attrs`` holds
        ``floor`` (the part not allocated), ``amount`` (the part allocated), ``alpha``,
        ``window`` and ``basis``: ``"window"``, ``"cvar tail"``, ``"equal"`` (see Notes) or
        ``"stress scenario i (it sets the fund target)"`` when a stress scenario needs more
        than the quantile: its own contributions are then the allocation.

    Raises
    ------
    ProblemError
        ``alpha`` not in (0, 1), ``window`` not an integer in [1, N], or the policy's markets
        not those of the scenarios.
    ScenarioError
        J > 1 and the scenarios carry no ``losses_by_market``; or no random scenario.

    Notes
    -----
    The floor is not allocated: it is a level the venue keeps whatever the markets do, so the
    amount allocated is ``F0 - floor`` and the floor is reported in ``attrs``.

    At the policy's rates ``p`` each random scenario's required fund is
    ``R_s = max_t (floor + sum_{u<=t} L[s,u] - p . sum_{u<=t} B[s,u])``, reached first at
    ``t*_s``. There ``R_s - floor = sum_j c_sj`` with
    ``c_sj = sum_{u<=t*_s} L_j[s,u] - p_j sum_{u<=t*_s} B[s,u,j]``. The Euler (marginal)
    contribution of market j to the ``1 - alpha`` quantile of ``R`` is ``E[c_sj | R_s = VaR]``
    (Tasche 1999), estimated by averaging ``c_sj`` over the ``window`` scenarios whose ranks
    are nearest to the quantile's rank (the ``(k+1)``-th largest, ``k = floor(alpha N)``, the
    rank the "exact" fund target sits at). The means ``m_j`` are then scaled by
    ``(F0 - floor) / sum_j m_j`` so the shares sum to the amount allocated (``sum_j m_j`` is
    the window's mean of ``R - floor``, which differs from ``F0 - floor`` by the window's
    spread and by what stress scenarios or ``F0 >= 0`` add).

    When the window's mean of ``R - floor`` is ``<= 0`` (no scenario there needs a fund above
    the floor) the means are taken over the CVaR tail instead, the ``max(1, ceil(alpha N))``
    largest ``R_s`` (``basis = "cvar tail"``); when that mean is ``<= 0`` too, the amount is
    split equally (``basis = "equal"``). With J = 1 the whole amount is the one market's.
    """
    n_markets = scenarios.n_markets
    if tuple(policy.markets) != tuple(scenarios.markets):
        raise ProblemError(
            f"policy.markets {list(policy.markets)} are not the scenarios' markets {list(scenarios.markets)}")
    level = policy.alpha if alpha is None else alpha
    if isinstance(level, bool) or not isinstance(level, Real) or not 0.0 < float(level) < 1.0:
        raise ProblemError(f"alpha must be in (0, 1), got {level!r}")
    level = float(level)
    n_random = scenarios.n_random
    if n_random == 0:
        raise ScenarioError("euler_allocation needs random scenarios; every scenario is a stress scenario")
    if window is None:
        size = min(n_random, max(_WINDOW_MIN, math.ceil(_WINDOW_SHARE * n_random)))
    elif isinstance(window, bool) or not isinstance(window, (int, np.integer)) or not 1 <= window <= n_random:
        raise ProblemError(f"window must be an integer in [1, {n_random}] (the random scenarios), got {window!r}")
    else:
        size = int(window)
    amount = float(policy.fund_target) - float(policy.floor)
    index = pd.Index(scenarios.markets, name="market")
    attrs = {"floor": float(policy.floor), "amount": amount, "alpha": level, "window": size}

    if n_markets == 1:
        return _series([amount], index, {**attrs, "basis": "window"})
    if scenarios.losses_by_market is None:
        raise ScenarioError(
            f"euler_allocation needs losses_by_market to split the fund over {n_markets} markets; "
            "the scenarios carry only pooled losses")

    scenarios = at_policy(policy, scenarios)  # the book as the policy's fees leave it
    required, contributions = _contributions(scenarios, np.asarray(policy.premium_rates), float(policy.floor))
    order = np.argsort(required, kind="stable")
    position = n_random - allowed_ruins(level, n_random) - 1
    if scenarios.n_stress:
        # a stress scenario that needs more than the quantile sets the fund target: it is what
        # the target is made of, so its own contributions are the allocation
        stress_required, stress_contributions = _contributions(scenarios, np.asarray(policy.premium_rates),
                                                               float(policy.floor), stress=True)
        worst = int(np.argmax(stress_required))
        if stress_required[worst] >= required[order[position]] and stress_contributions[worst].sum() > 0.0:
            means = stress_contributions[worst]
            return _series(means * (amount / means.sum()), index,
                           {**attrs, "basis": f"stress scenario {worst} (it sets the fund target)"})
    start = min(max(0, position - size // 2), n_random - size)
    means = contributions[order[start:start + size]].mean(axis=0)
    basis = "window"
    if not means.sum() > 0.0:
        tail = max(1, math.ceil(level * n_random * (1.0 - 1e-9)))
        means = contributions[order[n_random - tail:]].mean(axis=0)
        basis = "cvar tail"
    if not means.sum() > 0.0:
        return _series(np.full(n_markets, amount / n_markets), index, {**attrs, "basis": "equal"})
    return _series(means * (amount / means.sum()), index, {**attrs, "basis": basis})


def _contributions(scenarios: ScenarioSet, rates: np.ndarray, floor: float,
                   stress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``R_s`` (M,) and ``c_sj`` (M, J) of the M random (or, with ``stress``, stress) scenarios at
    ``rates`` (see :func:`euler_allocation`)."""
    losses, base, by_market = scenarios.losses, scenarios.premium_base, scenarios.losses_by_market
    rows_all = np.flatnonzero(scenarios.is_stress if stress else ~scenarios.is_stress)
    n_random, horizon, n_markets = rows_all.size, scenarios.horizon, scenarios.n_markets
    required = np.empty(n_random)
    contributions = np.empty((n_random, n_markets))
    for start, stop in scenario_chunks(n_random, 3 * horizon * n_markets):
        rows = rows_all[start:stop]
        # the same flows, summed in the same order, as worst_net_flow: t* is where its minimum is
        net = base[rows] @ rates
        net -= losses[rows]
        running = np.cumsum(net, axis=1)
        worst_t = np.argmin(running, axis=1)
        picked = np.arange(rows.size)
        required[start:stop] = floor - running[picked, worst_t]
        # c_sj = sum_{u<=t*} L_j - p_j sum_{u<=t*} B_j
        flows = by_market[rows] - base[rows] * rates
        contributions[start:stop] = np.cumsum(flows, axis=1)[picked, worst_t]
    return required, contributions


def _series(values: np.ndarray | list[float], index: pd.Index, attrs: dict[str, object]) -> pd.Series:
    series = pd.Series(np.asarray(values, dtype=np.float64), index=index, name="euler_allocation")
    series.attrs.update(attrs)
    return series


def _check_tolerance(tolerance: object) -> None:
    if isinstance(tolerance, bool) or not isinstance(tolerance, Real) or not math.isfinite(float(tolerance)):
        raise ProblemError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    if float(tolerance) < 0.0:
        raise ProblemError(f"tolerance must be >= 0, got {tolerance!r}")


def _box_samples(low: np.ndarray, high: np.ndarray, free: np.ndarray, n_samples: int, seed: int) -> list[np.ndarray]:
    """Corners (at most 6 free rates) and ``n_samples`` scrambled Sobol points of the rate box."""
    if not free.size:
        return [low.copy()]
    samples = []
    if free.size <= _MAX_CORNER_MARKETS:
        for corner in product((0.0, 1.0), repeat=free.size):
            samples.append(_rates_at(low, high, free, np.asarray(corner)))
    sobol = qmc.Sobol(d=free.size, scramble=True, seed=seed)
    points = sobol.random_base2(max(0, math.ceil(math.log2(n_samples))))[:n_samples]
    samples.extend(_rates_at(low, high, free, point) for point in points)
    return samples


def _rates_at(low: np.ndarray, high: np.ndarray, free: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Rates with the free ones at ``low + unit (high - low)``, the fixed ones at their bound."""
    rates = low.copy()
    rates[free] = low[free] + np.clip(unit, 0.0, 1.0) * (high[free] - low[free])
    return rates


def _refine(evaluate: Callable[[np.ndarray], float], start: np.ndarray, start_cost: float, low: np.ndarray, high: np.ndarray,
            free: np.ndarray, spacing: float) -> None:
    """Coordinate pattern search from ``start``: try +-step on each free rate, move on improvement,
    halve the step otherwise (steps as shares of each rate's box width)."""
    best, best_cost, step = start, start_cost, spacing
    for _ in range(_REFINE_ROUNDS):
        if step < _STEP_STOP:
            return
        improved = False
        for j in free:
            for sign in (-1.0, 1.0):
                trial = best.copy()
                trial[j] = min(high[j], max(low[j], best[j] + sign * step * (high[j] - low[j])))
                if trial[j] == best[j]:
                    continue
                cost = evaluate(trial)
                if cost < best_cost:
                    best, best_cost, improved = trial, cost, True
        if not improved:
            step /= 2.0


def _is_flat(fund_range: tuple[float, float], rate_ranges: np.ndarray, low: np.ndarray, high: np.ndarray,
             free: np.ndarray) -> bool:
    least, largest = fund_range
    if largest > 0.0 and (least <= 0.0 or largest / least > _FLAT_FUND_RATIO):
        return True
    widths = rate_ranges[free, 1] - rate_ranges[free, 0]
    return bool(np.any(widths > _FLAT_RATE_SHARE * (high[free] - low[free])))
