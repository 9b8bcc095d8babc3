"""Public entry points: :func:`solve`, :func:`frontier`, :func:`compare_methods`.

Inputs are validated here, once (scikit-learn style); the methods in :mod:`.methods` trust them.
Methods are looked up in :data:`~.methods.METHODS`, the registry (name -> method), so another
method is one more entry there; :func:`solve` stays as it is. A chunked scenario set is solved
where it lives (:mod:`.distributed`).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from fundguard.models import ChunkedScenarioSet, ScenarioSet
from fundguard.models.errors import (FundguardError, HeavyTailWarning, InfeasibleError, ProblemError, ScenarioError,
                                     SolverError)

from .certificates import certify, count_ruins
from .distributed import frontier_chunked, solve_chunked
from .fund import count_ruined, is_chunked, sample_cvar, worst_net_flow
from .methods import METHODS, Method, level_solver
from .fund.working import WorkingSet
from .participation import solve_with_participation
from .policy import Frontier, Policy
from .problem import PolicyProblem
from .ruin import FLOOR, ruined, rows

__all__ = ["solve", "frontier", "compare_methods", "shortfalls"]


def solve(
    problem: PolicyProblem, scenarios: ScenarioSet | ChunkedScenarioSet, method: str = "cvar", **options: Any
) -> Policy:
    """The minimum-cost fund target and premium rates under ``problem``'s solvency constraint.

    Parameters
    ----------
    problem : PolicyProblem
    scenarios : ScenarioSet or ChunkedScenarioSet
        losses (N, T) and premium_base (N, T, J), currency units; markets in the order of the
        per-market fields of ``problem``. Stress scenarios are hard constraints when
        ``problem.survive_stress`` (the default) and never enter a probability. A
        :class:`~fundguard.models.ChunkedScenarioSet` (scenarios in chunks on Dask workers) is
        solved where it lives, methods "cvar" and "exact" (:mod:`.distributed`).
    method : {"cvar", "exact", "scenario", "certified"}, default "cvar"
        See :data:`METHODS` and the ``solve_<method>`` functions of :mod:`.methods` for the
        formulations and their options.
    **options
        Method options (for example ``time_limit`` for "exact", ``beta`` for "scenario",
        ``confidence`` and ``fresh`` for "certified", ``solver`` for all).

    Returns
    -------
    Policy
        ``fund_target``, ``premium_rates`` (J,), ``objective`` (recomputed in numpy),
        ``in_sample_ruin``, ``status``, ``solver``, ``solve_seconds`` and the method's guarantee.

    Raises
    ------
    ProblemError
        Bad problem, unknown method or option, per-market field of the wrong length.
    ScenarioError
        Not a ScenarioSet, or no random scenario.
    InfeasibleError
        No policy meets the constraints (the message names the binding one and the shortfall).
    SolverError
        Every solver failed.
    InfeasibleError
        Also: method "certified"'s certified fund target exceeds ``problem.fund_max``.
    """
    start = time.perf_counter()
    if is_chunked(scenarios):
        if isinstance(problem, PolicyProblem) and problem.participation is not None:
            raise ProblemError("participation is not supported on a chunked scenario set yet; solve a local "
                               "ScenarioSet or drop problem.participation")
        if isinstance(problem, PolicyProblem) and (problem.expected_shortfall_max is not None
                                                   or problem.shortfall_cvar_max is not None):
            raise ProblemError("shortfall budgets are not supported on a chunked scenario set yet; solve a local "
                               "ScenarioSet")
        if isinstance(problem, PolicyProblem) and not problem.ruin.is_floor:
            raise ProblemError(f"ruin kind {problem.ruin.kind!r} is not supported on a chunked scenario set yet; "
                               "solve a local ScenarioSet")
        policy = solve_chunked(problem, scenarios, method, **options)
        return dataclasses.replace(policy, solve_seconds=time.perf_counter() - start)
    spec = _check_call(problem, scenarios, method, options)
    start = time.perf_counter()
    rule = problem.ruin
    if spec.composite:  # it solves its base method through solve() itself, with the problem as given
        policy = _reviewed(spec.run(problem, scenarios, inner=solve, **options), spec, scenarios)
        return dataclasses.replace(policy, solve_seconds=time.perf_counter() - start)
    if not rule.is_floor:  # every method solves the floor rule on the rule's rows (optimizer.ruin)
        inner = dataclasses.replace(problem, ruin=FLOOR)
        laid_out = rows(scenarios, rule)
        if problem.participation is not None:
            policy = solve_with_participation(inner, laid_out, method, spec.run,
                                              screen=WorkingSet.for_problem(inner, laid_out, spec.fixed_rule, options),
                                              **options)
        else:
            policy = spec.run(inner, laid_out, **options)
        policy = _checked_under_rule(policy, problem, scenarios, laid_out)
    elif problem.participation is not None:
        policy = solve_with_participation(problem, scenarios, method, spec.run,
                                          screen=WorkingSet.for_problem(problem, scenarios, spec.fixed_rule, options),
                                          **options)
    else:
        policy = spec.run(problem, scenarios, **options)
    if problem.expected_shortfall_max is not None or problem.shortfall_cvar_max is not None:
        policy = _within_shortfall_budgets(policy, problem, scenarios)
    policy = _reviewed(policy, spec, scenarios)
    return dataclasses.replace(policy, solve_seconds=time.perf_counter() - start)


def _reviewed(policy: Policy, spec: Method, scenarios: ScenarioSet) -> Policy:
    """The method's one-line guarantee in ``details["guarantee"]`` and its review of the answer
    (``details["tail"]``; a HeavyTailWarning when the review finds the answer resting on a few scenarios)."""
    details = {**policy.details, "guarantee": spec.guarantee}
    if spec.review is not None:
        review = spec.review(shortfalls(policy, scenarios, 0.0), policy.alpha)
        if review is not None:
            details["tail"] = review
            if review["dominated"]:
                warnings.warn(
                    f"method {spec.name!r}: the tail mean behind the fund target rests on a few scenarios (the "
                    f"largest holds {review['largest_share']:.0%} of the excess of the worst "
                    f"{review['tail_scenarios']:,} over their threshold; fitted tail index {review['tail_index']:.2f}, "
                    "1 or more is an infinite mean): the fund target grows with the number of scenarios rather "
                    "than settling; prefer method 'certified'", HeavyTailWarning, stacklevel=3)
    return dataclasses.replace(policy, details=details)


def shortfalls(policy: Policy, scenarios: ScenarioSet, fund_target: float | None = None) -> np.ndarray:
    """(N,) shortfall ``(R_s - F0)^+`` of each random scenario at the policy's rates, under its ruin
    rule and participation (the smallest extra capital that would have kept the scenario from ruin)."""
    random_part = scenarios.random_part() if scenarios.n_stress else scenarios
    if policy.participation is not None:
        random_part = policy.participation.scaled(random_part, policy.premium_rates, fund_only=True)
    laid_out = rows(random_part, policy.ruin)
    need = policy.floor - worst_net_flow(laid_out.losses, laid_out.premium_base, policy.premium_rates)
    fund = policy.fund_target if fund_target is None else fund_target
    return np.maximum(need - fund, 0.0)


def _shortfall_cvar(values: np.ndarray, level: float) -> float:
    """CVaR at ``level`` of ``values``: the mean of the worst ``1 - level`` share (Rockafellar-Uryasev)."""
    return sample_cvar(values, 1.0 - level)


def _within_shortfall_budgets(policy: Policy, problem: PolicyProblem, scenarios: ScenarioSet) -> Policy:
    """The method's policy with its fund target lifted, at its rates, to the smallest one whose
    in-sample expected shortfall and shortfall CVaR meet the problem's budgets (both fall as the
    fund grows: bisection to a 1e-12 relative bracket, then the upper end kept)."""
    zero = shortfalls(policy, scenarios, 0.0)  # R_s^+ : shortfall at F0 = 0
    need = zero  # the shortfall at F0 is (R_s - F0)^+ = (zero - F0)^+ for F0 >= 0

    def meets(fund: float) -> bool:
        short = np.maximum(need - fund, 0.0)
        ok = problem.expected_shortfall_max is None or float(short.mean()) <= problem.expected_shortfall_max
        if ok and problem.shortfall_cvar_max is not None:
            ok = _shortfall_cvar(short, problem.shortfall_cvar_level) <= problem.shortfall_cvar_max
        return ok

    low = policy.fund_target
    if meets(low):
        return policy
    high = max(float(need.max()), low)
    if problem.fund_max is not None and high > problem.fund_max and not meets(problem.fund_max):
        raise InfeasibleError(f"no fund target up to fund_max = {problem.fund_max:,.6g} meets the shortfall budgets at "
                              f"the rates of method {policy.method!r}")
    for _ in range(200):
        if high - low <= 1e-12 * max(high, 1.0):
            break
        mid = 0.5 * (low + high)
        if meets(mid):
            high = mid
        else:
            low = mid
    ruins, n = count_ruins(dataclasses.replace(policy, fund_target=high), scenarios)
    details = {**policy.details, "shortfall_budget_lift": high - policy.fund_target}
    return dataclasses.replace(policy, fund_target=float(high), in_sample_ruin=ruins / n, details=details,
                               objective=float(policy.objective + problem.cost_of_capital * (high - policy.fund_target)))


#: Largest relative lift of a fund target solved on a ruin rule's rows that the direct path check
#: may need (the rows' sums and the paths' sums round differently by a few ulps).
_RULE_LIFT = 1e-9


def _checked_under_rule(policy: Policy, problem: PolicyProblem, scenarios: ScenarioSet, laid_out: ScenarioSet) -> Policy:
    """The policy solved on ``laid_out = rows(scenarios, rule)``, re-checked on the paths
    themselves (:func:`~.ruin.ruined`, independent of the rows): the paths' in-sample ruin count
    may not exceed the rows' (the floor rule's canonical count) and every kept stress scenario
    must survive; a boundary scenario the two sums round apart lifts the fund target by ulps (at
    most ``_RULE_LIFT`` relative), anything more is a solver error."""
    policy = dataclasses.replace(policy, ruin=problem.ruin)
    random_part = scenarios.random_part() if scenarios.n_stress else scenarios
    random_rows = laid_out.random_part() if laid_out.n_stress else laid_out
    stress = scenarios.stress_part() if scenarios.n_stress and problem.survive_stress else None
    if policy.participation is not None:
        scale = policy.participation.scaled
        random_part = scale(random_part, policy.premium_rates, fund_only=True)
        random_rows = scale(random_rows, policy.premium_rates, fund_only=True)
        stress = None if stress is None else scale(stress, policy.premium_rates, fund_only=True)
    worst = worst_net_flow(random_rows.losses, random_rows.premium_base, policy.premium_rates)
    claimed = count_ruined(policy.fund_target, worst, policy.floor)
    fund = policy.fund_target
    ceiling = fund + _RULE_LIFT * max(abs(fund), 1.0)
    while True:
        ruins = int(np.count_nonzero(ruined(fund, policy.premium_rates, random_part, problem.ruin, problem.floor)))
        stress_ok = stress is None or not np.any(ruined(fund, policy.premium_rates, stress, problem.ruin, problem.floor))
        if ruins <= claimed and stress_ok:
            break
        if fund >= ceiling:
            raise SolverError(f"method {policy.method!r}: under the ruin rule {problem.ruin.describe()!r} the paths "
                              f"give {ruins} ruins where the method's rows give {claimed}"
                              + ("" if stress_ok else ", and a stress scenario is ruined"))
        fund = max(np.nextafter(fund, math.inf), fund * (1.0 + 1e-15) + 1e-300)
    if fund == policy.fund_target:
        return policy
    lifted = policy.objective + problem.cost_of_capital * (fund - policy.fund_target)
    return dataclasses.replace(policy, fund_target=float(fund), objective=float(lifted))


def frontier(
    problem: PolicyProblem,
    scenarios: ScenarioSet | ChunkedScenarioSet,
    alphas: Sequence[float],
    method: str = "cvar",
    **options: Any,
) -> Frontier:
    """The cost of solvency: one Policy per ruin level, in the order of ``alphas``.

    Parameters
    ----------
    problem : PolicyProblem
        Every field but ``alpha`` is used as given.
    scenarios : ScenarioSet or ChunkedScenarioSet
        A chunked set is solved on its workers ("cvar" and "exact", :mod:`.distributed`).
    alphas : sequence of floats in (0, 1)
    method : str, default "cvar"
    **options
        Method options, as for :func:`solve`; and ``progress``, a callable ``(levels done,
        levels)`` called after each level (in memory; a progress bar's counts).

    Returns
    -------
    Frontier
        A list of Policy, ``policies[i].alpha == alphas[i]``; ``.to_frame()`` is the table
        (a DataFrame indexed by alpha).

    Notes
    -----
    For "cvar" and "exact" the scaled data (one pass over the scenarios) and the solver are
    built once (:func:`~.methods.level_solver`): for "cvar" screened for the largest alpha
    (valid for all), the cvxpy program re-solved per alpha by changing two cvxpy Parameters
    (DPP, compiled once), the cutting-plane engine (large sets) re-screening its rows per alpha;
    for "exact" the branch-and-bound engine screens once for the range of alphas. The first
    policy's ``solve_seconds`` includes that shared work. Other methods, and every method when
    the problem has a participation, are solved per alpha.
    """
    if isinstance(alphas, (str, bytes)) or not isinstance(alphas, (Sequence, np.ndarray)) or len(alphas) == 0:
        raise ProblemError(f"alphas must be a non-empty sequence of levels in (0, 1), got {alphas!r}")
    progress = options.pop("progress", None)
    if progress is not None and not callable(progress):
        raise ProblemError(f"progress must be a callable (done, total), got {progress!r}")
    if is_chunked(scenarios):
        return Frontier(frontier_chunked(problem, scenarios, alphas, method, **options))
    problems = [dataclasses.replace(problem, alpha=a) for a in alphas]
    _check_call(problem, scenarios, method, options)

    def counted(policy: Policy, index: int) -> Policy:
        if progress is not None:
            progress(index + 1, len(problems))
        return policy

    if not METHODS[method].distributed or problem.participation is not None or not problem.ruin.is_floor:
        # (with participation every level is its own rate search: the shared level solver knows
        # only the affine equation)
        return Frontier(counted(solve(p, scenarios, method, **options), i) for i, p in enumerate(problems))
    start = time.perf_counter()
    solve_at = level_solver(problem, scenarios, [p.alpha for p in problems], method, dict(options))
    policies = []
    for index, p in enumerate(problems):
        policy = solve_at(p.alpha)
        now = time.perf_counter()
        policies.append(counted(dataclasses.replace(policy, solve_seconds=now - start), index))
        start = now
    return Frontier(policies)


def compare_methods(
    problem: PolicyProblem,
    scenarios: ScenarioSet,
    methods: Sequence[str] = ("cvar", "exact", "scenario", "certified"),
    certify_on: ScenarioSet | None = None,
    confidence: float = 0.99,
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    errors: str = "raise",
) -> pd.DataFrame:
    """Each method on the same scenarios: cost, in-sample ruin, certificate and time side by side.

    Parameters
    ----------
    problem : PolicyProblem
    scenarios : ScenarioSet
        What every method is solved on.
    methods : sequence of method names
    certify_on : ScenarioSet, optional
        Fresh scenarios (never used to solve) on which every policy is certified at
        ``confidence``. When None, only methods that carry their own certificate ("certified")
        fill the certificate columns; the others get NaN (an in-sample count is not a
        certificate).
    confidence : float in (0, 1), default 0.99
        Confidence of the certificates; also passed to "certified" unless its options say otherwise.
    options : mapping, optional
        ``{method: {option: value}}`` passed to :func:`solve`.
    errors : "raise" or "record", default "raise"
        What to do when a method raises a fundguard error: re-raise it, or record
        ``"error: <message>"`` in its ``status`` and NaN elsewhere.

    Returns
    -------
    pandas.DataFrame
        One row per method (index ``method``), columns: ``status``, ``solver``, ``fund_target``,
        ``rate[<market>]`` for each market, ``objective``, ``in_sample_ruin``, ``n_scenarios``,
        ``cert_n``, ``cert_ruins``, ``cert_ruin_rate``, ``cert_upper_bound``,
        ``cert_confidence``, ``epsilon``, ``beta``, ``solve_seconds``.
    """
    if errors not in ("raise", "record"):
        raise ProblemError(f"errors must be 'raise' or 'record', got {errors!r}")
    if isinstance(methods, str):
        methods = (methods,)
    options = dict(options or {})
    for name in options:
        if name not in methods:
            raise ProblemError(f"options given for method {name!r}, which is not in methods {list(methods)}")
    if certify_on is not None and not isinstance(certify_on, ScenarioSet):
        raise ScenarioError(f"certify_on must be a ScenarioSet, got {type(certify_on).__name__}")
    markets = list(scenarios.markets) if isinstance(scenarios, ScenarioSet) else []
    records = []
    for name in methods:
        method_options = dict(options.get(name, {}))
        if name == "certified":
            method_options.setdefault("confidence", confidence)
        row: dict[str, Any] = {"method": name}
        try:
            policy = solve(problem, scenarios, name, **method_options)
            certificate = policy.certificate
            if certify_on is not None:
                certificate = certify(policy, certify_on, confidence)
        except FundguardError as exc:
            if errors == "raise":
                raise
            row["status"] = f"error: {type(exc).__name__}: {exc}"
            records.append(row)
            continue
        row.update(
            status=policy.status,
            solver=policy.solver,
            fund_target=policy.fund_target,
            **{f"rate[{m}]": float(r) for m, r in zip(markets, policy.premium_rates, strict=True)},
            objective=policy.objective,
            in_sample_ruin=policy.in_sample_ruin,
            n_scenarios=policy.n_scenarios,
            cert_n=math.nan if certificate is None else certificate.n,
            cert_ruins=math.nan if certificate is None else certificate.ruins,
            cert_ruin_rate=math.nan if certificate is None else certificate.ruin_rate,
            cert_upper_bound=math.nan if certificate is None else certificate.upper_bound,
            cert_confidence=math.nan if certificate is None else certificate.confidence,
            epsilon=math.nan if policy.epsilon is None else policy.epsilon,
            beta=math.nan if policy.beta is None else policy.beta,
            solve_seconds=policy.solve_seconds,
        )
        records.append(row)
    columns = [
        "method", "status", "solver", "fund_target", *[f"rate[{m}]" for m in markets], "objective",
        "in_sample_ruin", "n_scenarios", "cert_n", "cert_ruins", "cert_ruin_rate", "cert_upper_bound",
        "cert_confidence", "epsilon", "beta", "solve_seconds",
    ]
    return pd.DataFrame.from_records(records, columns=columns).set_index("method")


def _check_call(problem: object, scenarios: object, method: object, options: Mapping[str, Any]) -> Method:
    if not isinstance(problem, PolicyProblem):
        raise ProblemError(f"problem must be a PolicyProblem, got {type(problem).__name__}")
    if not isinstance(scenarios, ScenarioSet):
        raise ScenarioError(f"scenarios must be a ScenarioSet, got {type(scenarios).__name__}")
    if not isinstance(method, str) or method not in METHODS:
        raise ProblemError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
    spec = METHODS[method]
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ProblemError(f"method {method!r} has no option {unknown[0]!r}; its options are {list(spec.options)}")
    problem.check_markets(scenarios.n_markets)
    if scenarios.n_stress == scenarios.n_scenarios:
        raise ScenarioError(f"all {scenarios.n_scenarios} scenarios are stress scenarios; probabilities need random ones")
    return spec
