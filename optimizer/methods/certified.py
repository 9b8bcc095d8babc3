"""Method "certified": rates chosen on the training scenarios, the fund target set on fresh ones.

Generation is cheap, so certainty is bought with fresh scenarios rather than by cutting the
training data into parts:

1. **Rates.** The base method ("exact" by default) is solved on all N training scenarios, with
   the problem as given (participation, ruin rule, shortfall budgets, stress scenarios).
2. **Fund target.** At those rates, each of M fresh scenarios (same model, independent seed) has
   a need ``R_s = floor - min_t sum_{u<=t} (p . B - L)`` (on the book S(p) at the rates, under the
   ruin rule). With k the most ruins whose Clopper–Pearson bound at ``confidence`` is <= alpha
   (:func:`certifiable_count`), the fund target is the (k + 1)-th largest need: at most k of the
   M fresh scenarios are ruined.

**Why it is a certificate.** At fixed rates the ruin probability of a fund ``F`` is
``1 - G(F)``, G the distribution of the need. The fund target is an order statistic of M
i.i.d. draws of the need, so ``P(1 - G(F) > alpha) = P(Binomial(M, alpha) <= k) <=
1 - confidence`` whatever G is (a distribution-free one-sided tolerance bound; Wilks 1941,
the order-statistic form of the Clopper–Pearson bound). The rates were chosen on other
scenarios, so they are fixed as far as the fresh ones are concerned. Ties and atoms only make
the bound conservative.

**How many fresh scenarios** (:func:`fresh_size`). The order statistic sits at a nominal ruin
level of about ``alpha (1 - z / sqrt(alpha M))`` (z the normal quantile of ``confidence``), so
the fund exceeds the alpha-quantile of the need by about ``eta z / sqrt(alpha M)``, eta the
need's tail elasticity ``-d ln F / d ln q`` near alpha (0.2-0.7 for the venue losses of the
benchmark worlds; measured on the training scenarios at the chosen rates). The default M keeps
that excess at ``tolerance`` (10 % of the fund): ``M = (eta z / tolerance)^2 / alpha``, at least
what certifying alpha needs and at most :data:`FRESH_MAX`. At alpha = 1 %, 99 % and eta = 0.5 that
is 13,500 scenarios; at alpha = 0.1 %, 135,000. (The fund's capital is a modest part of a venue's
cost next to the expected losses and the fees: in the benchmark worlds a 10 % larger fund costs
1-5 % more, and 4x the fresh draw would halve that.)

**Without a model to draw from** (``fresh=None``: the user built the ScenarioSet), the random
scenarios are split: rates on a ``split`` share (default one half), the fund target on the
rest. The price is the data: the rates see half the scenarios (in the benchmark worlds rates are
rarely sensitive to that) and the fund target is set on N (1 - split) scenarios instead of M, so
its excess over the alpha-quantile is about ``eta z / sqrt(alpha N (1 - split))``: at N = 100,000,
alpha = 1 % that is some 5 %, at alpha = 0.1 % some 16 %, and below ``459 / alpha``-ish hold-out
scenarios alpha cannot be certified at all.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from numbers import Integral
from typing import Any

import numpy as np
from scipy import stats

from fundguard.models import ScenarioSet
from fundguard.models.errors import InfeasibleError, ProblemError, ScenarioError
from fundguard.models.scenarioset import split_positions

from ..fund import count_ruined, worst_net_flow
from ..guarantees import check_probability, clopper_pearson_upper
from ..policy import Certificate, Policy
from ..problem import PolicyProblem
from ..ruin import rows, ruined
from .shared import check_positive

__all__ = [
    "FRESH_MAX",
    "FRESH_TOLERANCE",
    "DEFAULT_TAIL_ELASTICITY",
    "certifiable_count",
    "certification_split",
    "fresh_size",
    "tail_elasticity",
    "solve_certified",
]

#: Default cost tolerance of :func:`fresh_size`: the fund target's expected excess over the
#: alpha-quantile of the need that the fresh sample is sized for (a share of the fund).
FRESH_TOLERANCE = 0.10
#: Tail elasticity assumed when the training scenarios cannot measure it (no need above zero).
DEFAULT_TAIL_ELASTICITY = 0.5
#: Most fresh scenarios drawn by default (memory: M x T x J x 8 bytes for each of three arrays:
#: 2.2 GB for 1,000,000 scenarios of 30 days on 3 markets).
FRESH_MAX = 1_000_000

Fresh = ScenarioSet | Callable[[int, int | None], ScenarioSet]


def certifiable_count(n: int, alpha: float, confidence: float) -> int:
    """The most ruins among ``n`` scenarios whose Clopper–Pearson bound at ``confidence`` is <= ``alpha``
    (-1 when even none is): the k of the order-statistic fund target, ``P(Binomial(n, alpha) <= k) <=
    1 - confidence``."""
    if clopper_pearson_upper(0, n, confidence) > alpha:
        return -1
    low, high = 0, n  # the bound grows with the count: bisect for the last count within alpha
    while high - low > 1:
        middle = (low + high) // 2
        if clopper_pearson_upper(middle, n, confidence) <= alpha:
            low = middle
        else:
            high = middle
    return low


def minimum_fresh(alpha: float, confidence: float) -> int:
    """Fewest scenarios that can certify ``alpha`` at ``confidence`` at all (with no ruin)."""
    return math.ceil(math.log1p(-confidence) / math.log1p(-alpha))


def fresh_size(alpha: float, confidence: float = 0.99, tolerance: float = FRESH_TOLERANCE,
               elasticity: float = DEFAULT_TAIL_ELASTICITY, maximum: int = FRESH_MAX) -> int:
    """Default number of fresh scenarios M (module notes): ``(elasticity z / tolerance)^2 / alpha``.

    Parameters
    ----------
    alpha, confidence : the solvency level and the certificate's confidence
    tolerance : float > 0, default :data:`FRESH_TOLERANCE`
        Target excess of the fund target over the need's alpha-quantile, a share of the fund.
    elasticity : float > 0
        The need's tail elasticity near alpha (:func:`tail_elasticity`).
    maximum : int
        Upper bound on M.

    Returns
    -------
    int, at least :func:`minimum_fresh` x 2 (so that a ruin or two can be allowed) and at most ``maximum``.
    """
    alpha = check_probability("alpha", alpha)
    confidence = check_probability("confidence", confidence)
    tolerance = check_positive("tolerance", tolerance)
    elasticity = check_positive("elasticity", elasticity)
    z = float(stats.norm.ppf(confidence))
    wanted = math.ceil((elasticity * z / tolerance) ** 2 / alpha)
    return int(min(max(wanted, 2 * minimum_fresh(alpha, confidence)), max(int(maximum), minimum_fresh(alpha, confidence))))


def tail_elasticity(need: np.ndarray, alpha: float) -> float:
    """``ln(F(alpha/2) / F(alpha)) / ln 2``: how fast the need's quantile F(q) (exceeded with
    probability q) grows as q halves, measured on ``need`` (N,). :data:`DEFAULT_TAIL_ELASTICITY`
    when the sample has fewer than 20 scenarios beyond alpha/2 or F(alpha) <= 0; clipped to [0.05, 3]."""
    need = np.asarray(need, dtype=np.float64)
    n = need.size
    k_half = int(math.floor(0.5 * alpha * n))
    if k_half < 20:
        return DEFAULT_TAIL_ELASTICITY
    k = int(math.floor(alpha * n))
    top = -np.partition(-need, (k_half, k))
    at_alpha, at_half = float(top[k]), float(top[k_half])
    if not at_alpha > 0.0 or not at_half >= at_alpha:
        return DEFAULT_TAIL_ELASTICITY
    return float(min(max(math.log(at_half / at_alpha) / math.log(2.0), 0.05), 3.0))


def certification_split(scenarios: ScenarioSet, split: float = 0.5, seed: int | None = 0
                        ) -> tuple[ScenarioSet, ScenarioSet]:
    """The (train, hold-out) parts method "certified" uses when it has no fresh scenarios.

    ``train`` holds a ``split`` share of the random scenarios and every stress scenario (they
    stay hard constraints); ``hold`` the other random scenarios. The partition is seeded by
    ``seed`` (:func:`~fundguard.models.scenarioset.split_positions`): the same seed, the same split.
    """
    if not isinstance(scenarios, ScenarioSet):
        raise ScenarioError(f"scenarios must be a ScenarioSet, got {type(scenarios).__name__}")
    split = check_probability("split", split)
    random_index = np.flatnonzero(~scenarios.is_stress)
    if random_index.size < 2:
        raise ProblemError(f"certification needs at least 2 random scenarios to split, got {random_index.size}")
    first, second = split_positions(random_index.size, split, seed)
    train = np.sort(np.concatenate([random_index[first], np.flatnonzero(scenarios.is_stress)]))
    return scenarios.subset(train), scenarios.subset(random_index[second])


def solve_certified(
    problem: PolicyProblem,
    scenarios: ScenarioSet,
    *,
    inner: Callable[..., Policy],
    fresh: Fresh | None = None,
    n_fresh: int | None = None,
    confidence: float = 0.99,
    tolerance: float = FRESH_TOLERANCE,
    base: str = "exact",
    split: float = 0.5,
    seed: int | None = 0,
    time_limit: float = 60.0,
    solver: str | Sequence[str] | None = None,
    engine: str = "auto",
) -> Policy:
    """Method "certified": the base method's rates, the fund target certified on fresh scenarios.

    Parameters
    ----------
    problem : PolicyProblem
    scenarios : ScenarioSet
        The training scenarios (stress scenarios are hard constraints, never counted).
    inner : callable
        :func:`fundguard.optimizer.solve` (passed by it): solves the base method on the
        training scenarios with everything the problem asks for.
    fresh : ScenarioSet or callable ``(n, seed) -> ScenarioSet``, optional
        Fresh scenarios from the same model as ``scenarios`` and independent of them. A callable
        (``fundguard calibrate`` passes its generator) is called once with ``n_fresh`` (or
        :func:`fresh_size`) and ``seed``. None: ``scenarios`` is split (:func:`certification_split`).
    n_fresh : int, optional
        How many fresh scenarios to draw from a callable ``fresh`` (default :func:`fresh_size` with
        the tail elasticity measured on the training scenarios at the chosen rates).
    confidence : float in (0, 1), default 0.99
    tolerance : float > 0, default 0.10
        The cost tolerance :func:`fresh_size` sizes M for.
    base : "exact", "cvar" or "scenario", default "exact"
        Method that chooses the rates on the training scenarios.
    split : float in (0, 1), default 0.5
        Training share when ``fresh`` is None.
    seed : int or None, default 0
        Seed of the split, passed to a callable ``fresh``.
    time_limit, solver, engine : passed to the base method ("exact"'s budget; the solver list; its engine).

    Returns
    -------
    Policy
        ``status="certified"``, the base method's rates, the order-statistic fund target and
        ``certificate`` on the fresh (or hold-out) scenarios: ``ruins <= k``, ``upper_bound <=
        alpha``; ``certify(policy, fresh, confidence)`` gives the same certificate.
        ``details["certified"]``: the source of the fresh scenarios, M, k, the tail elasticity,
        the training fund target, what set the fund target. ``in_sample_ruin`` and ``n_scenarios``
        are on the training scenarios.

    Raises
    ------
    ProblemError
        Bad option, or too few fresh scenarios to certify alpha even with no ruin.
    ScenarioError
        Fresh scenarios with other markets or horizon than the training ones.
    InfeasibleError
        The certified fund target exceeds ``problem.fund_max``.
    """
    confidence = check_probability("confidence", confidence)
    tolerance = check_positive("tolerance", tolerance)
    if base not in ("exact", "cvar", "scenario"):
        raise ProblemError(f"base must be 'exact', 'cvar' or 'scenario', got {base!r}")
    if n_fresh is not None and (isinstance(n_fresh, bool) or not isinstance(n_fresh, Integral) or n_fresh < 1):
        raise ProblemError(f"n_fresh must be a positive integer, got {n_fresh!r}")
    if fresh is not None and not isinstance(fresh, ScenarioSet) and not callable(fresh):
        raise ProblemError(f"fresh must be a ScenarioSet or a callable (n, seed) -> ScenarioSet, got "
                           f"{type(fresh).__name__}")
    if isinstance(fresh, ScenarioSet) and n_fresh is not None:
        raise ProblemError("n_fresh sizes fresh scenarios drawn from a callable; a ScenarioSet 'fresh' has its own size")
    time_limit = check_positive("time_limit", time_limit)
    alpha = problem.alpha
    if fresh is None:
        train, hold = certification_split(scenarios, split, seed)
        source = "split"
    else:
        train, hold, source = scenarios, None, "fresh"
    options: dict[str, Any] = {"solver": solver, "engine": engine}
    if base == "exact":
        options["time_limit"] = time_limit
    chosen = inner(problem, train, base, **options)
    rates = np.asarray(chosen.premium_rates, dtype=np.float64)
    elasticity = tail_elasticity(_needs(chosen, train.random_part() if train.n_stress else train), alpha)
    if hold is None:
        if isinstance(fresh, ScenarioSet):
            hold = fresh
            requested = None
        else:
            requested = int(n_fresh) if n_fresh is not None else fresh_size(alpha, confidence, tolerance, elasticity)
            hold = fresh(requested, seed)
            if not isinstance(hold, ScenarioSet):
                raise ProblemError(f"fresh({requested}, {seed!r}) returned {type(hold).__name__}, not a ScenarioSet")
        _check_alike(hold, train)
    else:
        requested = None
    hold = hold.random_part() if hold.n_stress else hold
    m = hold.n_scenarios
    allowed = certifiable_count(m, alpha, confidence)
    if allowed < 0:
        where = "hold-out part" if source == "split" else "fresh set"
        raise ProblemError(
            f"the {where} has {m:,} scenarios; certifying alpha = {alpha:g} at confidence {confidence:g} needs at "
            f"least {minimum_fresh(alpha, confidence):,} even with no ruin"
            + (f" (about {math.ceil(minimum_fresh(alpha, confidence) / (1.0 - split)):,} scenarios in all, or pass "
               "fresh=)" if source == "split" else "")
        )
    worst = _worst(chosen, hold)
    need = chosen.floor - worst
    certified = max(float(np.partition(need, m - allowed - 1)[m - allowed - 1]), 0.0)
    fund, reason = certified, "order statistic of the fresh needs"
    lower = _stress_need(chosen, train, problem)
    if lower > fund:
        fund, reason = lower, "a stress scenario"
    if (problem.expected_shortfall_max is not None or problem.shortfall_cvar_max is not None) and \
            chosen.fund_target > fund:
        fund, reason = chosen.fund_target, "the shortfall budgets (met on the training scenarios)"
    while count_ruined(fund, worst, chosen.floor) > allowed:  # rounding of floor - worst: step up by ulps
        fund = float(np.nextafter(fund, math.inf))
    if not chosen.ruin.is_floor:  # the rule's own path check agrees with its rows up to ulps
        fund = _lifted_under_rule(fund, chosen, hold, allowed)
    if problem.fund_max is not None and fund > problem.fund_max:
        raise InfeasibleError(f"the certified fund target {fund:,.6g} exceeds fund_max = {problem.fund_max:,.6g} "
                              f"(set by {reason}, at the rates of method {base!r})")
    ruins = count_ruined(fund, worst, chosen.floor)
    certificate = Certificate(n=m, ruins=ruins, ruin_rate=ruins / m,
                              upper_bound=clopper_pearson_upper(ruins, m, confidence), confidence=confidence)
    train_need = _needs(chosen, train.random_part() if train.n_stress else train)
    in_sample = int(np.count_nonzero(train_need > fund)) / train_need.size
    details = {
        "base": base,
        "base_status": chosen.status,
        "base_details": chosen.details,
        "certified": {
            "source": source, "n_fresh": m, "requested": requested, "ruins_allowed": allowed,
            "tail_elasticity": elasticity, "tolerance": tolerance,
            "expected_excess": elasticity * float(stats.norm.ppf(confidence)) / math.sqrt(alpha * m),
            "training_fund_target": chosen.fund_target, "order_statistic": certified, "set_by": reason,
            **({"split": split, "seed": seed} if source == "split" else {"seed": seed}),
        },
    }
    return dataclasses.replace(
        chosen,
        fund_target=float(fund),
        objective=float(chosen.objective + problem.cost_of_capital * (fund - chosen.fund_target)),
        method="certified",
        status="certified",
        in_sample_ruin=in_sample,
        n_scenarios=train_need.size,
        certificate=certificate,
        details=details,
        epsilon=None,
        beta=None,
        discarded=None,
    )


def _worst(policy: Policy, scenarios: ScenarioSet) -> np.ndarray:
    """(N,) lowest cumulative fund flow ``min_t`` of each scenario at the policy's rates, on the book
    at its fees (participation) and under its ruin rule (the rule's rows)."""
    on = scenarios
    if policy.participation is not None:
        on = policy.participation.scaled(on, policy.premium_rates, fund_only=True)
    on = rows(on, policy.ruin)
    return worst_net_flow(on.losses, on.premium_base, np.asarray(policy.premium_rates, dtype=np.float64))


def _needs(policy: Policy, scenarios: ScenarioSet) -> np.ndarray:
    """(N,) ``floor - min_t`` fund flow of each scenario (:func:`_worst`): the fund it needs."""
    return policy.floor - _worst(policy, scenarios)


#: Largest relative lift the path check of a ruin rule may need over its rows (rounding).
_RULE_LIFT = 1e-9


def _lifted_under_rule(fund: float, policy: Policy, hold: ScenarioSet, allowed: int) -> float:
    on = hold if policy.participation is None else policy.participation.scaled(hold, policy.premium_rates,
                                                                                fund_only=True)
    ceiling = fund + _RULE_LIFT * max(abs(fund), 1.0)
    while np.count_nonzero(ruined(fund, policy.premium_rates, on, policy.ruin, policy.floor)) > allowed:
        if fund >= ceiling:
            raise ProblemError(f"under the ruin rule {policy.ruin.describe()!r} the paths and the rule's rows disagree "
                               "beyond rounding on the fresh scenarios")
        fund = max(float(np.nextafter(fund, math.inf)), fund * (1.0 + 1e-15))
    return fund


def _stress_need(policy: Policy, train: ScenarioSet, problem: PolicyProblem) -> float:
    """The fund every stress scenario needs at the policy's rates (0 without stress or survive_stress)."""
    if not train.n_stress or not problem.survive_stress:
        return 0.0
    return max(float(_needs(policy, train.stress_part()).max()), 0.0)


def _check_alike(fresh: ScenarioSet, train: ScenarioSet) -> None:
    if tuple(fresh.markets) != tuple(train.markets):
        raise ScenarioError(f"fresh scenarios have markets {list(fresh.markets)}, the training ones {list(train.markets)}")
    if fresh.horizon != train.horizon:
        raise ScenarioError(f"fresh scenarios have a horizon of {fresh.horizon} periods, the training ones {train.horizon}")
    if fresh.n_stress == fresh.n_scenarios:
        raise ScenarioError("the fresh scenarios hold no random (non-stress) scenario")
