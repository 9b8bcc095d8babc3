"""What is known about a fixed policy on scenarios: its ruin rate and its out-of-sample certificate.

:func:`certify` counts ruins of a policy on M scenarios it was not fitted on (the canonical
numpy check, :func:`~.fund.count_ruined`, chunk by chunk on the workers for a chunked set) and
gives the exact one-sided (Clopper–Pearson, :mod:`.guarantees`) upper bound on P(ruin).

Stress scenarios (``ScenarioSet.is_stress``) are never counted here: they are not draws from
the scenario model, so they say nothing about probabilities.
"""

from __future__ import annotations

import math

import numpy as np

from fundguard.models import ChunkedScenarioSet, ScenarioSet
from fundguard.models.errors import ProblemError, ScenarioError

from .fund import count_ruined, count_ruins_chunked, is_chunked, worst_net_flow
from .guarantees import check_probability, clopper_pearson_upper
from .methods.certified import certifiable_count
from .policy import Certificate, Policy
from .ruin import ruined

__all__ = ["Certificate", "ruin_probability", "certify", "count_ruins", "certifiable_ruins",
           "smallest_certified_balance"]


def ruin_probability(policy: Policy, scenarios: ScenarioSet | ChunkedScenarioSet) -> float:
    """Share of the random scenarios in which ``policy`` ends in ruin.

    Parameters
    ----------
    policy : Policy
    scenarios : ScenarioSet or ChunkedScenarioSet
        Markets must be the policy's, in the same order. Stress scenarios are excluded. A chunked
        set is counted chunk by chunk on its workers (only the counts travel).

    Returns
    -------
    float in [0, 1]
        ``#{s : min_t F[s, t] < floor} / N`` over the random scenarios, ``F`` recomputed in numpy.
    """
    ruins, n = count_ruins(policy, scenarios)
    return ruins / n


def certify(policy: Policy, scenarios: ScenarioSet | ChunkedScenarioSet, confidence: float = 0.99) -> Certificate:
    """Out-of-sample certificate of ``policy`` on ``scenarios``.

    Parameters
    ----------
    policy : Policy
    scenarios : ScenarioSet or ChunkedScenarioSet
        Scenarios never used to choose the policy (otherwise the bound is not valid). Stress
        scenarios are excluded from the count. A chunked set is counted on its workers.
    confidence : float in (0, 1), default 0.99

    Returns
    -------
    Certificate
        ``n``, ``ruins``, ``ruin_rate`` and the Clopper–Pearson ``upper_bound`` at ``confidence``.
    """
    confidence = check_probability("confidence", confidence)
    ruins, n = count_ruins(policy, scenarios)
    return Certificate(
        n=n,
        ruins=ruins,
        ruin_rate=ruins / n,
        upper_bound=clopper_pearson_upper(ruins, n, confidence),
        confidence=confidence,
    )


def count_ruins(policy: Policy, scenarios: ScenarioSet | ChunkedScenarioSet) -> tuple[int, int]:
    """``(ruins, N)`` of ``policy`` over the random scenarios (stress excluded), by the canonical
    check :func:`~.fund.count_ruined`; a chunked set is counted on its workers."""
    if not isinstance(policy, Policy):
        raise ProblemError(f"policy must be a Policy, got {type(policy).__name__}")
    if is_chunked(scenarios):
        if policy.participation is not None or not policy.ruin.is_floor:
            raise ProblemError("a policy with participation or a ruin rule other than 'floor' is counted on a local "
                               "ScenarioSet, not a chunked one")
        return count_ruins_chunked(policy, scenarios)
    if not isinstance(scenarios, ScenarioSet):
        raise ScenarioError(f"scenarios must be a ScenarioSet, got {type(scenarios).__name__}")
    if tuple(scenarios.markets) != tuple(policy.markets):
        raise ScenarioError(f"scenarios have markets {list(scenarios.markets)}, the policy {list(policy.markets)}")
    if scenarios.n_stress == scenarios.n_scenarios:
        raise ScenarioError("scenarios hold no random (non-stress) scenario to estimate a probability on")
    random_part = scenarios.random_part()
    if policy.participation is not None:  # the book at the policy's rates (optimizer.participation)
        random_part = policy.participation.scaled(random_part, policy.premium_rates, fund_only=True)
    if not policy.ruin.is_floor:  # the rule's own path check (optimizer.ruin)
        hit = ruined(policy.fund_target, policy.premium_rates, random_part, policy.ruin, policy.floor)
        return int(np.count_nonzero(hit)), random_part.n_scenarios
    worst = worst_net_flow(random_part.losses, random_part.premium_base, policy.premium_rates)
    return count_ruined(policy.fund_target, worst, policy.floor), random_part.n_scenarios


def certifiable_ruins(n: int, alpha: float, confidence: float) -> int:
    """The most ruins among ``n`` fresh scenarios whose Clopper–Pearson bound is still <= ``alpha``
    (-1 when even none is: ``n`` is too small to certify ``alpha`` at ``confidence``)."""
    alpha = check_probability("alpha", alpha)
    confidence = check_probability("confidence", confidence)
    return certifiable_count(n, alpha, confidence)


def smallest_certified_balance(premium_rates: np.ndarray, scenarios: ScenarioSet, alpha: float,
                               confidence: float = 0.99, floor: float = 0.0) -> tuple[float, int, int]:
    """The smallest balance whose P(ruin) at ``premium_rates`` is certified <= ``alpha`` on ``scenarios``.

    Parameters
    ----------
    premium_rates : (J,) the rates in force
    scenarios : ScenarioSet
        Fresh scenarios (never used to choose the rates); stress scenarios are left out.
    alpha, confidence : the solvency level and the certificate's confidence
    floor : ruin level of the fund, currency units

    Returns
    -------
    (balance, ruins_allowed, n)
        ``balance`` is the (k + 1)-th largest need ``floor - min_t sum (p . B - L)`` of the scenarios,
        k the most ruins :func:`certifiable_ruins` allows, so that with this balance at most k of
        the n scenarios end below the floor and the Clopper–Pearson bound is <= alpha (the same count
        :func:`certify` makes). ``inf`` (and k = -1) when n is too small to certify alpha at all.
    """
    if not isinstance(scenarios, ScenarioSet):
        raise ScenarioError(f"scenarios must be a ScenarioSet, got {type(scenarios).__name__}")
    random_part = scenarios.random_part()
    n = random_part.n_scenarios
    allowed = certifiable_ruins(n, alpha, confidence)
    if allowed < 0:
        return math.inf, -1, n
    worst = worst_net_flow(random_part.losses, random_part.premium_base, np.asarray(premium_rates, dtype=np.float64))
    need = floor - worst
    balance = max(float(np.partition(need, n - allowed - 1)[n - allowed - 1]), 0.0)
    # floor - worst rounds: step up to the next float until the canonical count agrees
    while count_ruined(balance, worst, floor) > allowed:
        balance = float(np.nextafter(balance, math.inf))
    return balance, allowed, n
