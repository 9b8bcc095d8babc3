"""The fund target at fixed rates when the book answers the fees, on a screened working set.

The participation rate search (:func:`~fundguard.optimizer.participation.solve_with_participation`)
asks, a few hundred times, for a method's fund target at fixed rates on the scaled scenarios
``S(p)``. Built naively every ask copies the scenario set (scaled) and makes three passes over it:
at N = 100,000 in the preset world that was 210 asks at 0.21 s each, 1,600x one pass over the data
(``python -m benchmarks.scaling``). This module answers the same ask from a few scenarios.

At fixed rates each of the methods "exact", "cvar" and "scenario" sets the fund target from the
largest required funds only (:class:`~.rule.FundRule`): the ``(k + 1)``-th largest, or the sample
CVaR of the ``floor(alpha N) + 1`` largest. With participation shares ``pi_j(p_j)`` the required
fund of scenario s is::

    R_s(p) = floor + max_t sum_j ( pi_j cumL_j[s, t] - pi_j p_j cumB_j[s, t] )

``cumL_j``, ``cumB_j`` market j's cumulative losses and premium base (``cumB >= 0``). Over the rate
box every term lies between bounds that do not depend on p, so one pass gives for every scenario
a lower bound ``D_s <= R_s(p)`` and an upper bound ``U_s >= R_s(p)`` valid for every p in the box.
With ``K`` the count of largest values the rule reads and ``theta`` the K-th largest ``D_s``, the
K-th largest ``R_s(p)`` is at least ``theta`` at every p, so a scenario with ``U_s < theta`` is
never among the K largest: the working set ``{s : U_s >= theta}`` holds them at every p in the
box, and the rule on it gives the same fund target as on all N scenarios (the rule told N).

The answers here steer the search only: the policy returned is the method run once on ``S(p)``
at the rates found, and the search checks that the two fund targets agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fundguard.models import ScenarioSet
from fundguard.models.scenarioset import RULE_ROWS

from .equation import running_minimum, scenario_chunks
from .rule import FundRule

__all__ = ["WorkingSet"]


def _share_ranges(eps: np.ndarray, reference: np.ndarray, low: np.ndarray, high: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per market over the rate box: the range of ``pi(p) = 1 - eps (p - r)`` and of ``pi(p) p``.

    ``pi`` is affine (its range is at the box's ends); ``pi(p) p`` is a concave quadratic, lowest at
    an end and highest at an end or at its vertex ``(1 + eps r) / (2 eps)``."""
    share_low_end = 1.0 - eps * (low - reference)
    share_high_end = 1.0 - eps * (high - reference)
    share_min = np.minimum(share_low_end, share_high_end)
    share_max = np.maximum(share_low_end, share_high_end)
    at_low, at_high = share_low_end * low, share_high_end * high
    paid_min = np.minimum(at_low, at_high)
    paid_max = np.maximum(at_low, at_high)
    positive = eps > 0
    vertex = high.copy()  # no vertex without an elasticity: pi(p) p is then increasing
    vertex[positive] = (1.0 + eps[positive] * reference[positive]) / (2.0 * eps[positive])
    inside = (vertex > low) & (vertex < high)
    paid_max = np.where(inside, (1.0 - eps * (vertex - reference)) * vertex, paid_max)
    return share_min, share_max, paid_min, paid_max


@dataclass(frozen=True, eq=False)
class WorkingSet:
    """The scenarios that can set a fund-target rule's value anywhere in a rate box.

    Build with :meth:`build`; :meth:`fund` gives the rule's fund target at rates p (currency
    units, ``max(0, rule, stress)``, as the methods' fixed-rate closed forms compute it).

    Attributes
    ----------
    index : (M,) int
        Positions, among the random scenarios, of the working set.
    n_random : int
        N, the random scenarios the rule counts.
    cum_loss, cum_base : (M, T, J) float64
        The working set's cumulative losses and premium base per market.
    stress_loss, stress_base : (S, T, J) float64
        The same for the stress scenarios the fund must survive (S may be 0).
    """

    rule: FundRule
    floor: float
    eps: np.ndarray
    reference: np.ndarray
    index: np.ndarray
    n_random: int
    cum_loss: np.ndarray
    cum_base: np.ndarray
    stress_loss: np.ndarray
    stress_base: np.ndarray

    @classmethod
    def for_problem(cls, problem: Any, scenarios: ScenarioSet, fixed_rule: Callable[..., Any] | None,
                    options: Mapping[str, Any]) -> WorkingSet | None:
        """The working set of a method's fixed-rate rule (its ``fixed_rule(alpha, n, options)``,
        :class:`~fundguard.optimizer.methods.Method`) over ``problem``'s rate box, with its
        participation's shares (none: shares 1); None where there is no rule or it does not apply."""
        if fixed_rule is None:
            return None
        made = fixed_rule(problem.alpha, scenarios.n_scenarios - scenarios.n_stress, dict(options))
        if made is None:
            return None
        rule, top = made
        n_markets = scenarios.n_markets
        part = problem.participation
        if part is None:
            eps = reference = np.zeros(n_markets)
        else:
            eps, _, reference = part.arrays(n_markets)
        low, high = problem.rate_box(n_markets)
        return cls.build(scenarios, rule, top, problem.floor, eps, reference, low, high, problem.survive_stress)

    @classmethod
    def build(cls, scenarios: ScenarioSet, rule: FundRule, top: int, floor: float, eps: np.ndarray,
              reference: np.ndarray, low: np.ndarray, high: np.ndarray, survive_stress: bool) -> WorkingSet | None:
        """One pass over ``scenarios``: the bounds, the working set, its cumulative arrays.

        ``top``: how many of the largest required funds the rule reads (K of the module notes).
        ``eps`` and ``reference`` (J,): the participation's semi-elasticities and reference rates
        (zeros: no participation, the shares are 1). None when the shares differ by market and the
        scenarios carry no per-market losses, on a ruin rule's rows, or when a share in the box is
        not positive: the caller then evaluates every point in full.
        """
        n_markets = scenarios.n_markets
        by_market = scenarios.losses_by_market
        metadata = scenarios.metadata if isinstance(scenarios.metadata, Mapping) else {}
        if (by_market is None and n_markets > 1 and np.any(eps != 0.0)) or RULE_ROWS in metadata:
            return None  # a ruin rule's rows may have negative increments: the bounds need them >= 0
        share_min, share_max, paid_min, paid_max = _share_ranges(eps, reference, low, high)
        if not np.all(share_min > 0.0):
            return None
        random_index = np.flatnonzero(~scenarios.is_stress) if scenarios.n_stress else None
        n_random = scenarios.n_scenarios - scenarios.n_stress
        if not 0 < top <= n_random:
            return None
        base = scenarios.premium_base
        losses = by_market if by_market is not None else scenarios.losses[:, :, None]
        lower = np.empty(n_random)
        upper = np.empty(n_random)
        # losses and premium base are >= 0, so each market's term pi_j cumL_j - pi_j p_j cumB_j is
        # largest at the largest share and the smallest paid rate, smallest at the opposite ends
        for start, stop in scenario_chunks(n_random, base.shape[1] * n_markets):
            rows = slice(start, stop) if random_index is None else random_index[start:stop]
            loss, paid = losses[rows], base[rows]
            upper[start:stop] = -running_minimum(paid @ paid_min - loss @ share_max[:loss.shape[2]])
            lower[start:stop] = -running_minimum(paid @ paid_max - loss @ share_min[:loss.shape[2]])
        theta = float(np.partition(lower, n_random - top)[n_random - top])
        index = np.flatnonzero(upper >= theta)
        rows = index if random_index is None else random_index[index]
        cum_loss, cum_base = _cumulative(scenarios, rows)
        if survive_stress and scenarios.n_stress:
            stress_loss, stress_base = _cumulative(scenarios, np.flatnonzero(scenarios.is_stress))
        else:
            stress_loss, stress_base = np.zeros((0, base.shape[1], losses.shape[2])), np.zeros((0, base.shape[1], n_markets))
        return cls(rule, float(floor), eps, reference, index, n_random, cum_loss, cum_base, stress_loss, stress_base)

    @property
    def size(self) -> int:
        """M, the scenarios kept."""
        return int(self.index.size)

    def fund(self, rates: np.ndarray) -> float:
        """The rule's fund target at ``rates`` (J,) on ``S(p)``: ``max(0, rule, every stress need)``."""
        rates = np.asarray(rates, dtype=np.float64)
        shares = 1.0 - self.eps * (rates - self.reference)
        paid = shares * rates
        # pooled losses (one column) only when every share is the same: the first one
        loss_shares = shares[:self.cum_loss.shape[2]]
        need = self.floor + (self.cum_loss @ loss_shares - self.cum_base @ paid).max(axis=1)
        fund = max(0.0, self.rule.fund(need) if need.size else -math.inf)
        if self.stress_loss.shape[0]:
            stress = self.floor + (self.stress_loss @ loss_shares - self.stress_base @ paid).max(axis=1)
            fund = max(fund, float(stress.max()))
        return fund


def _cumulative(scenarios: ScenarioSet, rows: slice | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(cumL, cumB)``, each (n, T, J), of the scenarios at ``rows`` (the pooled losses as the one
    market's when there are no per-market losses)."""
    if scenarios.losses_by_market is not None:
        loss = scenarios.losses_by_market[rows]
    else:
        loss = scenarios.losses[rows][:, :, None]
    return np.cumsum(loss, axis=1, dtype=np.float64), np.cumsum(scenarios.premium_base[rows], axis=1, dtype=np.float64)
