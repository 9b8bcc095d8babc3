"""Guarantee mathematics: Clopper–Pearson bounds and the scenario approach's (Campi–Garatti).

Pure functions of counts and probabilities, with no scenario data (docs/design.md, "Certificates"):

* a posteriori: :func:`clopper_pearson_upper` is the exact one-sided upper bound on P(ruin) from
  a ruin count of a fixed policy on M scenarios it was not fitted on
  (:func:`~.certificates.certify` counts them);
* a priori: the scenario approach (Campi & Garatti 2008; 2011) says how many scenarios make
  the robust policy violate with probability at most epsilon, except on a set of samples of
  probability at most beta (:func:`scenario_sample_size`, :func:`scenario_epsilon`,
  :func:`scenario_discard_budget`).

It sits below the methods (method "scenario" sizes its discards, "certified" bounds its
candidates here) and below :mod:`.certificates`.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
from scipy import optimize, special, stats

from fundguard.models.errors import ProblemError

__all__ = [
    "clopper_pearson_upper",
    "scenario_sample_size",
    "scenario_epsilon",
    "scenario_violation_bound",
    "scenario_discard_budget",
    "check_probability",
]


def clopper_pearson_upper(ruins: int, n: int, confidence: float) -> float:
    """Exact one-sided upper confidence bound on a binomial probability.

    Parameters
    ----------
    ruins : int, 0 <= ruins <= n
    n : int >= 1
    confidence : float in (0, 1)

    Returns
    -------
    float
        ``scipy.stats.beta.ppf(confidence, ruins + 1, n - ruins)``; 1.0 when ``ruins == n``.

    Notes
    -----
    The bound u solves ``P(Binomial(n, u) <= ruins) = 1 - confidence`` (Clopper & Pearson 1934),
    through the identity between the binomial CDF and the regularised incomplete beta function.
    """
    if ruins >= n:
        return 1.0
    return float(stats.beta.ppf(confidence, ruins + 1, n - ruins))


def scenario_violation_bound(n_scenarios: int, epsilon: float, n_decisions: int, discarded: int = 0) -> float:
    """Campi & Garatti's bound on ``P^N( P(violation) > epsilon )``.

    ``binom(k + d - 1, k) * sum_{i=0}^{k+d-1} binom(N, i) eps^i (1 - eps)^(N - i)``
    with N scenarios, k discarded and d decisions (Campi & Garatti 2011, Theorem 2.1; k = 0 is
    the 2008 result, exact for fully-supported problems). Computed in log space.
    """
    k, d = discarded, n_decisions
    log_bound = math.log(special.comb(k + d - 1, k, exact=True)) + float(stats.binom.logcdf(k + d - 1, n_scenarios, epsilon))
    return math.exp(min(log_bound, 0.0))


def scenario_sample_size(epsilon: float, beta: float, n_decisions: int, discarded: int = 0) -> int:
    """Smallest N for which the scenario approach guarantees ``P^N( P(ruin) > epsilon ) <= beta``.

    Parameters
    ----------
    epsilon : float in (0, 1)
        Violation (ruin) probability the policy may have.
    beta : float in (0, 1)
        Probability of drawing a sample for which the guarantee fails.
    n_decisions : int >= 1
        d, the number of decision variables (1 + number of free premium rates here).
    discarded : int >= 0
        k, scenarios removed by the sampling-and-discarding rule.

    Returns
    -------
    int
        The exact binomial inversion of :func:`scenario_violation_bound`: the smallest N with
        bound <= beta (for beta = 1e-6, epsilon = 0.01: 1,661 for d = 2 and 2,126 for d = 4).
    """
    epsilon = check_probability("epsilon", epsilon)
    beta = check_probability("beta", beta)
    d = _count_arg("n_decisions", n_decisions, minimum=1)
    k = _count_arg("discarded", discarded, minimum=0)
    log_beta = math.log(beta)

    def small_enough(n: int) -> bool:
        log_bound = math.log(special.comb(k + d - 1, k, exact=True)) + float(stats.binom.logcdf(k + d - 1, n, epsilon))
        return log_bound <= log_beta

    # The bound falls monotonically in N: bracket by doubling, then bisect on integers.
    low, high = k + d - 1, max(k + d, 1)
    while not small_enough(high):
        low, high = high, 2 * high
    while high - low > 1:
        mid = (low + high) // 2
        if small_enough(mid):
            high = mid
        else:
            low = mid
    return high


def scenario_epsilon(n_scenarios: int, beta: float, n_decisions: int, discarded: int = 0) -> float:
    """Smallest epsilon with ``scenario_violation_bound(N, epsilon, d, k) <= beta``.

    The a-priori guarantee of a scenario-approach policy: ``P^N( P(ruin) > epsilon ) <= beta``.
    Returns 1.0 when no epsilon < 1 works (too few scenarios for k and d).
    """
    beta = check_probability("beta", beta)
    n = _count_arg("n_scenarios", n_scenarios, minimum=1)
    d = _count_arg("n_decisions", n_decisions, minimum=1)
    k = _count_arg("discarded", discarded, minimum=0)
    if k + d > n:
        return 1.0
    log_comb = math.log(special.comb(k + d - 1, k, exact=True))
    log_beta = math.log(beta)

    def excess(eps: float) -> float:
        return log_comb + float(stats.binom.logcdf(k + d - 1, n, eps)) - log_beta

    top = 1.0 - 1e-15
    if excess(top) > 0.0:
        return 1.0
    return float(optimize.brentq(excess, 1e-300, top, xtol=1e-15, rtol=1e-12))


def scenario_discard_budget(n_scenarios: int, epsilon: float, beta: float, n_decisions: int) -> int | None:
    """Largest k with ``scenario_violation_bound(N, epsilon, d, k) <= beta``, or None when even k = 0 fails."""
    n = _count_arg("n_scenarios", n_scenarios, minimum=1)
    if n < n_decisions or scenario_violation_bound(n, epsilon, n_decisions, 0) > beta:
        return None
    # The bound rises monotonically in k: bisect on integers.
    low, high = 0, n - n_decisions + 1
    while high - low > 1:
        mid = (low + high) // 2
        if scenario_violation_bound(n, epsilon, n_decisions, mid) <= beta:
            low = mid
        else:
            high = mid
    return low


def check_probability(name: str, value: object) -> float:
    """``value`` as a float in (0, 1); ProblemError naming ``name`` otherwise (the public entries' check)."""
    if isinstance(value, bool) or not isinstance(value, (Real, np.floating, np.integer)):
        raise ProblemError(f"{name} must be a number in (0, 1), got {value!r}")
    out = float(value)
    if not 0.0 < out < 1.0:
        raise ProblemError(f"{name} must be in (0, 1), got {value!r}")
    return out


def _count_arg(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (Integral, np.integer)):
        raise ProblemError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ProblemError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
