"""Method "certified": train / select / certify, a ruin probability certified <= alpha
(Clopper–Pearson on scenarios the policy was not chosen on).

It trains "cvar" (or "exact") candidates on one part of the scenarios, selects the least
conservative one whose ruin count on a second part passes, and certifies it on the third.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from fundguard.models import ScenarioSet
from fundguard.models.scenarioset import split_positions
from fundguard.models.errors import (
    CertificationError,
    ConvergenceWarning,
    InfeasibleError,
    ProblemError,
)

from ..fund import (
    mean_premium_base,
    objective_value,
    FundModel,
    count_ruined,
    worst_net_flow,
)
from ..guarantees import (
    check_probability,
    clopper_pearson_upper,
)
from ..policy import Certificate, Policy
from ..problem import PolicyProblem
from ..solvers import (
    check_solvers,
)

from .cvar import CVAR_ENGINES, cvar_closed_form, cvar_engine
from .exact import exact_on_model
from .shared import (
    check_fractions,
    check_positive,
)

__all__ = [
    "certification_positions",
    "certification_splits",
    "solve_certified",
]


def certification_splits(
    scenarios: ScenarioSet,
    fractions: Sequence[float] = (0.5, 0.25, 0.25),
    seed: int | None = 0,
) -> tuple[ScenarioSet, ScenarioSet, ScenarioSet]:
    """The (train, select, certify) split of the random scenarios that method "certified" uses.

    Parameters
    ----------
    scenarios : ScenarioSet
        Stress scenarios are left out of all three parts.
    fractions : three floats > 0 summing to 1
    seed : int or None
        Seed of the random partition (the same seed gives the same split).

    Returns
    -------
    (train, select, certify) : three disjoint ScenarioSets covering the random scenarios.
    """
    train, select, hold = certification_positions(scenarios, fractions, seed)
    return scenarios.subset(train), scenarios.subset(select), scenarios.subset(hold)


def certification_positions(
    scenarios: ScenarioSet,
    fractions: Sequence[float] = (0.5, 0.25, 0.25),
    seed: int | None = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions in ``scenarios`` of the (train, select, certify) parts of :func:`certification_splits`.

    Positions, not copies: the method keeps the data once, whatever N is. The random scenarios
    are split in two steps with :func:`~fundguard.models.scenarioset.split_positions`, seeded
    by two children of ``SeedSequence(seed)``.
    """
    shares = check_fractions(fractions)
    if scenarios.n_stress == scenarios.n_scenarios:
        raise ProblemError("the scenario set holds no random (non-stress) scenario to split")
    random_index = np.flatnonzero(~scenarios.is_stress)
    if random_index.size < 3:
        raise ProblemError(f"certification needs at least 3 random scenarios, got {random_index.size}")
    first, second = np.random.SeedSequence(seed).spawn(2)
    train, rest = split_positions(random_index.size, shares[0], first)
    select, hold = split_positions(rest.size, shares[1] / (shares[1] + shares[2]), second)
    return random_index[train], random_index[rest[select]], random_index[rest[hold]]


def solve_certified(
    problem: PolicyProblem,
    scenarios: ScenarioSet,
    *,
    confidence: float = 0.99,
    base: str = "cvar",
    fractions: Sequence[float] = (0.5, 0.25, 0.25),
    seed: int | None = 0,
    select_confidence: float | None = None,
    backoff: float = 0.7,
    n_backoff: int = 5,
    bisection_steps: int = 8,
    time_limit: float = 60.0,
    solver: str | Sequence[str] | None = None,
    engine: str = "auto",
) -> Policy:
    """Method "certified": the cheapest candidate whose ruin probability is certified <= alpha.

    Parameters
    ----------
    problem : PolicyProblem
    scenarios : ScenarioSet
        Random scenarios are split (:func:`certification_splits`) into train, select and certify
        parts; stress scenarios join the training part as hard constraints when
        ``survive_stress`` and are never counted.
    confidence : float in (0, 1), default 0.99
        Confidence of the certificate.
    base : "cvar" or "exact", default "cvar"
        Method solved on the training part at each candidate level.
    fractions : (train, select, certify) shares, default (0.5, 0.25, 0.25)
    seed : int or None, default 0
        Seed of the split.
    select_confidence : float, optional
        Confidence of the Clopper–Pearson test used on the select part (default ``confidence``).
    backoff, n_backoff : float in (0, 1) and int >= 0, defaults 0.7 and 5
        The certify part tests the most conservative level ``1 / (2 N_train)`` (robust on the
        training part), then ``level* * backoff^i`` for ``i = n_backoff, ..., 0``.
    bisection_steps : int >= 1, default 8
        Bisection steps (on log level) on the select part, after the bracket is found.
    time_limit : float, seconds
        Per-solve budget when ``base="exact"``.
    solver : str or sequence of str, optional
    engine : str, default "auto"
        "cvar" engine when ``base="cvar"`` (see :func:`cvar_engine`).

    Returns
    -------
    Policy
        ``status="certified"`` and ``certificate``: the Clopper–Pearson certificate of *this*
        policy on the certify part (``certify(policy, certification_splits(...)[2],
        confidence)`` gives the same), with ``upper_bound <= alpha``. ``objective`` uses the
        mean premium base of all random scenarios; ``in_sample_ruin`` is on the training part.

    Raises
    ------
    ProblemError
        The certify part is too small to certify alpha even with no ruin at all.
    CertificationError
        Not even the most conservative candidate passed on the certify part.

    Notes
    -----
    1. Train: for a training level ``a`` solve ``base`` at level ``a`` on the training part.
    2. Select: find the largest level whose policy passes on the select part (Clopper–Pearson
       upper bound at ``select_confidence`` <= alpha): bracket it by doubling (or halving) the
       level from ``alpha`` within ``[1 / (2 N_train), 0.5]``, then bisect on ``log a``. "cvar"
       is conservative, so its level usually ends above alpha; "exact" overfits, so below.
    3. Certify, by fixed-sequence testing: the levels ``1 / (2 N_train)`` and ``a* backoff^i``,
       most conservative first,
       are fixed before the certify part is looked at; each candidate is certified on the
       certify part in turn, stopping at the first whose upper bound exceeds alpha; the last one
       that passed is returned. Fixed-sequence testing controls the family-wise error, so
       ``P(true ruin probability of the returned policy > alpha) <= 1 - confidence``
       (scenarios i.i.d. from the scenario model) without any multiplicity correction.
    """
    confidence = check_probability("confidence", confidence)
    select_conf = confidence if select_confidence is None else check_probability("select_confidence", select_confidence)
    if base not in ("cvar", "exact"):
        raise ProblemError(f"base must be 'cvar' or 'exact', got {base!r}")
    if engine not in CVAR_ENGINES:
        raise ProblemError(f"engine must be one of {list(CVAR_ENGINES)}, got {engine!r}")
    backoff = check_probability("backoff", backoff)
    if isinstance(n_backoff, bool) or not isinstance(n_backoff, (int, np.integer)) or n_backoff < 0:
        raise ProblemError(f"n_backoff must be an integer >= 0, got {n_backoff!r}")
    if isinstance(bisection_steps, bool) or not isinstance(bisection_steps, (int, np.integer)) or bisection_steps < 1:
        raise ProblemError(f"bisection_steps must be an integer >= 1, got {bisection_steps!r}")
    time_limit = check_positive("time_limit", time_limit)
    solvers = check_solvers(solver)
    alpha = problem.alpha

    # The parts as positions in `scenarios`, not copies (memory: the data once, whatever N is).
    train, select, hold = certification_positions(scenarios, fractions, seed)
    needed = math.ceil(math.log1p(-confidence) / math.log1p(-alpha))
    if hold.size < needed:
        total = math.ceil(needed / check_fractions(fractions)[2])
        raise ProblemError(
            f"the certify part has {hold.size} scenarios; certifying alpha = {alpha:g} at confidence "
            f"{confidence:g} needs at least {needed} even with no ruin (about {total} random scenarios in all)"
        )
    n_train = train.size
    level_low = min(alpha, 0.5 / n_train)
    level_cap = 0.5
    # stress scenarios join the training part as hard constraints when survive_stress
    model = FundModel.build(problem, scenarios, scale_alpha=alpha, sample=train)
    compiled: dict[str, Any] = {"formulation": None, "level": 0.0}
    cache: dict[float, Policy | None] = {}

    def train_at(level: float) -> Policy:
        if base == "exact":
            return exact_on_model(model, level, time_limit=time_limit, solvers=solvers)
        if not model.n_free:
            return cvar_closed_form(model, level)
        if level > compiled["level"]:
            # Screening is exact up to the level compiled for: recompile (rarely) for a higher one.
            compiled["level"] = min(level_cap, max(level, 2.0 * alpha, 2.0 * compiled["level"]))
            compiled["formulation"] = cvar_engine(model, compiled["level"], engine, solvers)
        return compiled["formulation"].solve(level)

    def candidate(level: float) -> Policy | None:
        if level not in cache:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    cache[level] = train_at(level)
            except InfeasibleError:
                cache[level] = None
        return cache[level]

    def ruins_on(policy: Policy, part: np.ndarray) -> int:
        worst = worst_net_flow(scenarios.losses, scenarios.premium_base, policy.premium_rates, index=part)
        return count_ruined(policy.fund_target, worst, problem.floor)

    def passes(level: float) -> bool:
        policy = candidate(level)
        if policy is None:
            return False
        return clopper_pearson_upper(ruins_on(policy, select), select.size, select_conf) <= alpha

    # Select: bracket the largest passing level by doubling / halving from alpha, then bisect.
    good: float | None = None
    bad: float | None = None
    level = alpha
    if passes(alpha):
        good = alpha
        while level < level_cap:
            level = min(level_cap, 2.0 * level)
            if not passes(level):
                bad = level
                break
            good = level
    else:
        bad = alpha
        while level > level_low:
            level = max(level_low, 0.5 * level)
            if passes(level):
                good = level
                break
            bad = level
    if good is None:
        good = level_low  # nothing passes on the select part; certify will say so
    elif bad is not None:
        for _ in range(bisection_steps):
            mid = math.sqrt(good * bad)
            if passes(mid):
                good = mid
            else:
                bad = mid
    chosen_level = good

    # Certify: fixed-sequence test of the levels, most conservative first.
    levels = sorted({level_low} | {max(level_low, chosen_level * backoff**i) for i in range(n_backoff + 1)})
    tested: list[dict[str, float]] = []
    chosen: tuple[float, Policy, Certificate] | None = None
    for level in levels:
        policy = candidate(level)
        if policy is None:
            continue
        ruins = ruins_on(policy, hold)
        certificate = Certificate(
            n=hold.size,
            ruins=ruins,
            ruin_rate=ruins / hold.size,
            upper_bound=clopper_pearson_upper(ruins, hold.size, confidence),
            confidence=confidence,
        )
        tested.append({"level": level, "ruins": ruins, "upper_bound": certificate.upper_bound})
        if certificate.upper_bound > alpha:
            break
        chosen = (level, policy, certificate)
    if chosen is None:
        if not tested:
            raise InfeasibleError(f"no training level gives a feasible policy (fund_max = {problem.fund_max})")
        worst_case = tested[0]
        raise CertificationError(
            f"could not certify P(ruin) <= alpha = {alpha:g} at confidence {confidence:g}: the most conservative "
            f"candidate (training level {worst_case['level']:.4g}) is ruined in {worst_case['ruins']} of "
            f"{hold.size} certify scenarios, upper bound {worst_case['upper_bound']:.4g}; more scenarios "
            "or a larger alpha are needed"
        )
    level, policy, certificate = chosen
    mean_base = mean_premium_base(scenarios)
    objective = objective_value(problem, policy.fund_target, policy.premium_rates, mean_base)
    select_ruins = ruins_on(policy, select)
    details = {
        "base": base,
        "level": level,
        "levels_certified": tested,
        "levels_tried_on_select": sorted(cache),
        "select": {
            "n": select.size,
            "ruins": select_ruins,
            "upper_bound": clopper_pearson_upper(select_ruins, select.size, select_conf),
        },
        "splits": {"train": n_train, "select": select.size, "certify": hold.size},
        "fractions": tuple(check_fractions(fractions)),
        "seed": seed,
        "base_status": policy.status,
    }
    return Policy(
        fund_target=policy.fund_target,
        premium_rates=policy.premium_rates,
        objective=objective,
        method="certified",
        status="certified",
        in_sample_ruin=policy.in_sample_ruin,
        solve_seconds=0.0,
        solver=policy.solver,
        markets=policy.markets,
        floor=problem.floor,
        alpha=alpha,
        n_scenarios=n_train,
        certificate=certificate,
        details=details,
    )


