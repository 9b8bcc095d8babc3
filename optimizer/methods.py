"""The methods that choose the fund target and premium rates: "cvar", "exact", "scenario", "certified".

Every method has the same shape:

1. build the scaled :class:`~fundguard.optimizer.fund.FundModel` (money rescaled to order one,
   rates mapped to [0, 1]) and screen out, exactly, the (scenario, period) rows that cannot
   bind anywhere in the rate box;
2. solve a formulation on what is left: the reference formulations (cvxpy for the convex
   programs, falling back Clarabel -> HiGHS -> SCS; scipy's HiGHS for the mixed-integer one)
   or, by default on every method, the fast engines of :mod:`.fast` that reach the same
   optimum in the (1 + J)-dimensional decision space (cutting planes for "cvar" above
   :data:`CVXPY_MAX_ROWS` rows, branch and bound for "exact", a working set of rows for
   "scenario"); each method's ``engine`` option picks one;
3. keep only the solver's premium rates and recompute everything else in numpy on the
   caller's unscaled arrays: for fixed rates each method's smallest admissible fund target is
   a closed form (an order statistic, a sample CVaR or a maximum: :class:`FundRule`), lifted by
   a few ulps until the canonical ruin check agrees, then the ruin count and the objective.
   A solver answer whose claimed objective disagrees with the recomputed one is rejected and
   the next solver is tried.

The fund target is therefore never "a hair below the floor" because of a solver tolerance,
and the reported objective is never the solver's claim.

Stress scenarios: with ``PolicyProblem.survive_stress`` (the default) every method adds them as
hard constraints (the fund must stay at or above the floor in every stress scenario); they are
never counted in a ruin rate or a probability.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cvxpy as cp
import numpy as np
import scipy.sparse as sp
from scipy import optimize

from fundguard.models import ScenarioSet
from fundguard.models.errors import (
    CertificationError,
    ConvergenceWarning,
    InfeasibleError,
    ProblemError,
    SolverError,
)

from .solvers import check_solvers, quiet_milp, solve_with_fallback
from .guarantees import (
    clopper_pearson_upper,
    scenario_discard_budget,
    scenario_epsilon,
    scenario_sample_size,
)
from .fund import (
    CheckedPoint,
    FundRule,
    agree,
    check_cap,
    checked_point,
    closed_form,
    cvar_screen,
    make_policy,
    scaled_fund,
    screened_stress,
    solver_cap,
    var_index,
)
from .fast import CvarCuttingPlane, ExactBranchAndBound, MaxAffine, RobustWorkingSet
from .fund import (
    FundModel,
    mean_premium_base,
    ScreenedRows,
    allowed_ruins,
    count_ruined,
    kth_largest,
    objective_value,
    sample_cvar,
    worst_net_flow,
)
from .policy import Certificate, Policy
from .problem import PolicyProblem

__all__ = [
    "METHODS",
    "MethodSpec",
    "FundRule",
    "CvarFormulation",
    "RobustProgram",
    "cvar_engine",
    "solve_cvar",
    "solve_exact",
    "exact_on_model",
    "EXACT_ENGINES",
    "level_solver",
    "level_solver_on_model",
    "solve_scenario",
    "SCENARIO_ENGINES",
    "solve_certified",
    "certification_splits",
]

# Kelley's test in "exact": tangents exact at the MILP's answer to this relative tolerance,
# ten times HiGHS's default primal feasibility tolerance (1e-7), count as exact.
_KELLEY_TOL = 1e-6


# ---------------------------------------------------------------------------------------------
# "cvar": Rockafellar–Uryasev in cvxpy
# ---------------------------------------------------------------------------------------------


class CvarFormulation:
    """The Rockafellar–Uryasev program for one FundModel, compiled once, re-solved per alpha.

    Parameters
    ----------
    model : FundModel
    max_alpha : float
        Largest level it will be solved at; the exact screening is done for it, which is valid
        for every smaller level.
    solvers : sequence of str
        Solver fallback order.

    Notes
    -----
    In scaled units, with ``R_s(u) = max_t (required0[s, t] - relief[s, t] @ u)`` the required
    fund (``floor - F[s, t] = R-row - f``)::

        minimise    cost_fund f + cost_rate @ u + curvature @ u^2
        subject to  z_s >= required0[s, t] - relief[s, t] @ u - eta     every kept row (s, t)
                    eta + sum_s z_s / (alpha N) <= f                    CVaR_alpha(R - f) <= 0
                    eta >= VaR floor,  z >= 0,  f >= max(F0 >= 0, stress floor, VaR floor),  0 <= u <= 1
                    f + relief @ u >= required0                          every stress row
                    f <= fund_max (tightened by 1e-7 relative)

    ``eta`` is the VaR of ``R_s(u)``: for a sample, the ``ceil(alpha N)``-th largest value
    minimises the RU function, and since every ``R_s`` is smallest at premium_max that value is
    at least ``ceil(alpha N)``-th largest of ``R_s(1)`` whatever ``u`` is ("VaR floor"). Rows and
    scenarios whose largest value over the box is below the VaR floor contribute nothing and
    are dropped before cvxpy sees them. ``1 / (alpha N)`` and the VaR floor are cvxpy
    Parameters, so a frontier re-uses the compiled problem (DPP).
    """

    def __init__(self, model: FundModel, max_alpha: float, solvers: Sequence[str]) -> None:
        if model.n_free == 0:
            raise ValueError("CvarFormulation needs at least one free premium rate")
        self.model = model
        self.solvers = tuple(solvers)
        self.max_alpha = max_alpha
        self._lowest = model.required_range()[1]
        _, candidates, rows = cvar_screen(model, max_alpha)
        self._stress_lowest, stress_rows = screened_stress(model)

        fund = cp.Variable(name="fund_target")
        rates = cp.Variable(model.n_free, name="scaled_rates")
        var = cp.Variable(name="value_at_risk")
        self._inv_alpha_n = cp.Parameter(nonneg=True, name="inv_alpha_n")
        self._var_floor = cp.Parameter(name="var_floor")
        # f >= F0 >= 0's bound and every stress floor; also >= the VaR floor (implied by the CVaR
        # row): a floor far above the losses puts F0 >= 0 at f = -1e5 and more, a bound whose
        # size alone costs Clarabel digits, so the tighter valid one is given instead
        self._fund_low = cp.Parameter(name="fund_low")
        constraints = []
        if candidates.size:
            excess = cp.Variable(candidates.size, nonneg=True, name="excess")
            # z_s >= max_t (floor - F[s, t]) - eta, one row per (scenario, period) left by screening
            constraints.append(excess[rows.scenario] >= rows.required0 - rows.relief @ rates - var)
            # CVaR_alpha( max_t (floor - F[s, t]) ) <= 0   (Rockafellar & Uryasev 2000)
            constraints.append(var + self._inv_alpha_n * cp.sum(excess) <= fund)
        else:
            constraints.append(var <= fund)
        constraints.append(var >= self._var_floor)
        if stress_rows is not None and stress_rows.n_rows:
            # F[s, t] >= floor in every stress scenario
            constraints.append(fund + stress_rows.relief @ rates >= stress_rows.required0)
        constraints += [fund >= self._fund_low, rates >= 0.0, rates <= 1.0]
        if math.isfinite(model.fund_cap):
            constraints.append(fund <= solver_cap(model.fund_cap))
        cost = model.cost_fund * fund + model.cost_rate @ rates
        if np.any(model.curvature > 0.0):
            cost = cost + model.curvature @ cp.square(rates)
        self.problem = cp.Problem(cp.Minimize(cost), constraints)
        self._fund, self._rates = fund, rates
        self.sizes = {"scenarios": model.n_scenarios, "candidates": int(candidates.size), "rows": rows.n_rows}

    def solve(self, alpha: float) -> Policy:
        """Solve at level ``alpha`` (at most the ``max_alpha`` given at construction)."""
        if alpha > self.max_alpha:
            raise ValueError(f"alpha = {alpha} is above the level {self.max_alpha} the screening was done for")
        model = self.model
        n = model.n_scenarios
        rule = FundRule("cvar", alpha, allowed_ruins(alpha, n), n_scenarios=n)
        check_cap(model, sample_cvar(self._lowest, alpha, n), self._stress_lowest, f"CVaR_{alpha:g} of the required fund <= F0")
        self._inv_alpha_n.value = 1.0 / (alpha * n)
        self._var_floor.value = kth_largest(self._lowest, var_index(alpha, n))
        self._fund_low.value = max(self._stress_lowest, self._var_floor.value)

        def check(status: str) -> tuple[CheckedPoint | None, bool, float]:
            if self._rates.value is None or self.problem.value is None:
                return None, False, math.inf
            point = checked_point(model, rule, self._rates.value)
            claimed = (self.problem.value + model.cost_constant) * model.objective_scale
            accepted = status == cp.OPTIMAL and agree(point.objective - model.floor_cost, claimed, model.objective_scale)
            return point, accepted, point.objective

        outcome = solve_with_fallback(self.problem, check, self.solvers)
        if outcome.result is None:
            raise SolverError(f"every solver failed on the cvar problem: {outcome.attempts}")
        details = {**self.sizes, "attempts": outcome.attempts}
        if not outcome.accepted:
            details["reason"] = f"no solver's answer passed the numpy check: {outcome.attempts}"
        return make_policy(
            model,
            "cvar",
            outcome.result,
            alpha=alpha,
            status="optimal" if outcome.accepted else "feasible",
            solver=outcome.solver,
            details=details,
        )


#: Screened rows above which ``engine="auto"`` solves "cvar" by cutting planes instead of cvxpy.
CVXPY_MAX_ROWS = 20_000

CVAR_ENGINES = ("auto", "cvxpy", "cutting-plane")


def cvar_engine(
    model: FundModel, max_alpha: float, engine: str, solvers: Sequence[str]
) -> CvarFormulation | CvarCuttingPlane:
    """The "cvar" solver for ``model`` up to level ``max_alpha``, built once (re-solvable per alpha).

    ``engine``: "cvxpy" (:class:`CvarFormulation`, the reference), "cutting-plane"
    (:class:`~.fast.CvarCuttingPlane`, same optimum, time linear in the screened rows) or "auto"
    (cvxpy up to :data:`CVXPY_MAX_ROWS` screened rows, cutting planes beyond).
    """
    if engine not in CVAR_ENGINES:
        raise ProblemError(f"engine must be one of {list(CVAR_ENGINES)}, got {engine!r}")
    if engine == "cvxpy":
        return CvarFormulation(model, max_alpha, solvers)
    fast = CvarCuttingPlane(model, max_alpha)
    if engine == "cutting-plane" or fast.sizes["rows"] > CVXPY_MAX_ROWS:
        return fast
    return CvarFormulation(model, max_alpha, solvers)


def solve_cvar(
    problem: PolicyProblem,
    scenarios: ScenarioSet,
    *,
    solver: str | Sequence[str] | None = None,
    engine: str = "auto",
) -> Policy:
    """Method "cvar": ``CVaR_alpha( max_t (floor - F[s, t]) ) <= 0``, a convex conservative stand-in.

    Parameters
    ----------
    problem : PolicyProblem
    scenarios : ScenarioSet
        losses (N, T) and premium_base (N, T, J), currency units. Stress scenarios must be
        survived when ``problem.survive_stress``; they are not in the CVaR.
    solver : str or sequence of str, optional
        Solver order for the cvxpy engine (default Clarabel, HiGHS, SCS).
    engine : "auto", "cvxpy" or "cutting-plane", default "auto"
        See :func:`cvar_engine`: the cvxpy program is the reference; cutting planes reach the
        same optimum (to 1e-9 relative) much faster on large sets.

    Returns
    -------
    Policy
        For the returned rates the fund target is exactly the sample CVaR of the required funds
        (or 0, or what stress needs), so at most ``floor(alpha N)`` scenarios are ruined.

    Notes
    -----
    See :class:`CvarFormulation` and :class:`~.fast.CvarCuttingPlane`. CVaR bounds the chance
    constraint from the safe side and can be several times too conservative on fat tails
    (in-sample ruin well below alpha).
    """
    solvers = check_solvers(solver)
    model = FundModel.build(problem, scenarios)
    if model.n_free == 0:
        rule = FundRule("cvar", problem.alpha, allowed_ruins(problem.alpha, model.n_scenarios), n_scenarios=model.n_scenarios)
        lowest = sample_cvar(model.required_range()[1], problem.alpha, model.n_scenarios)
        check_cap(model, lowest, screened_stress(model)[0], f"CVaR_{problem.alpha:g} of the required fund <= F0")
        return closed_form(model, "cvar", rule, problem.alpha)
    return cvar_engine(model, problem.alpha, engine, solvers).solve(problem.alpha)


# ---------------------------------------------------------------------------------------------
# "exact": the sample chance constraint as a mixed-integer program
# ---------------------------------------------------------------------------------------------


#: Engines of method "exact": "milp" is the reference (one mixed-integer program over all
#: screened scenarios, practical up to a few thousand), "branch-and-bound" the fast path
#: (:class:`~.fast.ExactBranchAndBound`, same optimum), "auto" the fast path.
EXACT_ENGINES = ("auto", "milp", "branch-and-bound")


def solve_exact(
    problem: PolicyProblem,
    scenarios: ScenarioSet,
    *,
    time_limit: float = 60.0,
    mip_rel_gap: float = 1e-7,
    warm_start: bool = True,
    solver: str | Sequence[str] | None = None,
    engine: str = "auto",
) -> Policy:
    """Method "exact": at most ``floor(alpha N)`` ruined scenarios, minimum objective.

    Parameters
    ----------
    problem : PolicyProblem
    scenarios : ScenarioSet
        Stress scenarios must be survived when ``problem.survive_stress``; they are not counted.
    time_limit : float, seconds, default 60
        Budget of the search. On expiry the best policy found is returned with status
        "feasible" (it still has at most ``floor(alpha N)`` ruins), ``details["gap"]`` (the
        relative distance to the best lower bound proven) and a ConvergenceWarning.
    mip_rel_gap : float, default 1e-7
        Relative optimality gap at which the search stops (both engines).
    warm_start : bool, default True
        Engine "milp": solve "cvar" first and use its rates as a starting point (the result is
        then never dearer than "cvar"). The branch-and-bound engine needs no starting point.
    solver : str or sequence of str, optional
        Solvers for the warm start.
    engine : "auto", "branch-and-bound" or "milp", default "auto"
        "branch-and-bound" (:class:`~.fast.ExactBranchAndBound`; "auto" is this one): exact
        search over the box of rates with order-statistic bounds, time near-linear in N;
        "milp": the reference mixed-integer program below, for a few thousand scenarios.

    Returns
    -------
    Policy
        For the returned rates the fund target is exactly the ``(floor(alpha N) + 1)``-th largest
        required fund (or 0, or what stress scenarios need): with every rate fixed
        (``premium_min == premium_max``) it equals that order statistic with no solver.

    Notes
    -----
    For fixed rates the optimal fund target is an order statistic, so the hard part is the
    rates. The branch-and-bound engine searches the rate box directly, bounding the order
    statistic on sub-boxes by monotonicity and solving small boxes exactly (see
    :class:`~.fast.ExactBranchAndBound`). The reference is the mixed-integer program (scaled
    units, binaries ``z_s`` = "scenario s may be ruined")::

        minimise    cost_fund f + cost_rate @ u + q
        subject to  f + relief[s, t] @ u + M[s, t] z_s >= required0[s, t]   kept rows (s, t)
                    sum_s z_s <= floor(alpha N) - (scenarios forced ruined)
                    f + relief @ u >= required0                           stress rows
                    f_lo <= f <= min(fund_max, f_ub),  0 <= u <= 1,  z binary
                    q >= tangent cuts of curvature @ u^2                   (rate penalty only)

    ``f_lo`` = the ``(floor(alpha N)+1)``-th largest required fund at premium_max (no policy
    needs less); ``M[s, t] = required0[s, t] - f_lo``, the tightest big-M the bounds allow.
    Scenarios whose required fund stays at or below ``f_lo`` over the whole box can never be
    ruined and get no binary; a starting point's objective gives ``f_ub``, and scenarios whose
    required fund exceeds ``f_ub`` everywhere must be ruined by any cheaper policy, so they are
    fixed. HiGHS (inside scipy, silent) solves it. With a rate-change penalty the quadratic is
    handled by outer approximation (Duran & Grossmann 1986): tangent cuts per rate, and each
    round the MILP picks a discard set, the convex program for that set is solved exactly
    (:class:`RobustProgram`) and tangents at both answers are added, until the best true
    objective is within ``mip_rel_gap`` of the MILP's dual bound or the tangents are exact at the
    MILP's answer. Either engine's rates are then re-checked in numpy and the fund target is
    recomputed as the exact order statistic.

    Cost: the MILP has one binary per candidate scenario (typically a few times alpha N after
    screening); HiGHS needs about 0.1 s at N = 1,000 and several seconds at N = 3,000 (T = 30,
    J = 3, fat tails), and reaches the 60 s limit at N = 20,000. The branch-and-bound engine
    takes one pass over the data plus a search whose boxes hold a few dozen scenarios near the
    optimum (N = 1,000,000 in a few seconds, ``benchmarks/results/scaling.md``).
    """
    solvers = check_solvers(solver)
    time_limit = _positive("time_limit", time_limit)
    mip_rel_gap = _positive("mip_rel_gap", mip_rel_gap)
    if engine not in EXACT_ENGINES:
        raise ProblemError(f"engine must be one of {list(EXACT_ENGINES)}, got {engine!r}")
    model = FundModel.build(problem, scenarios)
    return exact_on_model(
        model, problem.alpha, time_limit=time_limit, mip_rel_gap=mip_rel_gap, warm_start=bool(warm_start),
        solvers=solvers, engine=engine,
    )


def exact_on_model(
    model: FundModel,
    alpha: float,
    *,
    time_limit: float = 60.0,
    mip_rel_gap: float = 1e-7,
    warm_start: bool = True,
    solvers: Sequence[str] = ("CLARABEL", "HIGHS", "SCS"),
    engine: str = "auto",
    search: ExactBranchAndBound | None = None,
) -> Policy:
    """:func:`solve_exact` on a built FundModel at level ``alpha`` (used by "certified" and frontier).

    ``search``: a branch-and-bound engine already built for a range of levels containing alpha.
    """
    start = time.perf_counter()
    n = model.n_scenarios
    k = allowed_ruins(alpha, n)
    rule = FundRule("quantile", alpha, k)
    highest, lowest = model.required_range()
    stress_lowest, stress_rows = screened_stress(model)
    order_lowest = kth_largest(lowest, k + 1) if k < n else -math.inf
    what = f"at most floor(alpha N) = {k} of {n} scenarios ruined (alpha = {alpha:g})"
    check_cap(model, order_lowest, stress_lowest, what)
    if model.n_free == 0:
        return closed_form(model, "exact", rule, alpha)
    if engine != "milp":
        search = ExactBranchAndBound(model, alpha) if search is None else search
        return search.solve(alpha, rtol=mip_rel_gap, time_limit=time_limit, started=start)
    f_lo = max(model.fund_min, order_lowest, stress_lowest)
    nf = model.n_free

    # Starting points: the box's corners and, optionally, the cvar policy.
    starts = [np.ones(nf), np.zeros(nf)]
    warm_solver = ""
    if warm_start:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                warm = cvar_engine(model, alpha, "auto", solvers).solve(alpha)
            starts.append(model.scaled_rates(warm.premium_rates))
            warm_solver = warm.solver
        except (SolverError, InfeasibleError):
            # cvar may be infeasible under fund_max where the exact constraint is not
            pass
    best_u, best_obj = starts[0], math.inf
    for u in starts:
        f = scaled_fund(model, rule, u)
        if f <= model.fund_cap:
            obj = model.scaled_objective(f, u)
            if obj < best_obj:
                best_u, best_obj = u, obj

    # Upper bound on the fund target of any cheaper policy, and the scenarios it forces out.
    rate_floor = sum(_box_min(c, q) for c, q in zip(model.cost_rate, model.curvature, strict=True))
    f_ub = math.inf
    if model.cost_fund > 0.0:
        f_ub = (best_obj - model.cost_constant - rate_floor) / model.cost_fund
        f_ub = f_ub * (1.0 + 1e-9) + 1e-12
    f_hi = min(f_ub, solver_cap(model.fund_cap)) if math.isfinite(model.fund_cap) else f_ub
    forced = lowest > f_hi
    n_forced = int(np.count_nonzero(forced))
    candidates = np.flatnonzero((highest > f_lo) & ~forced)
    details: dict[str, Any] = {
        "allowed_ruins": k,
        "candidates": int(candidates.size),
        "forced_ruined": n_forced,
        "warm_start_solver": warm_solver,
    }
    points = [("start", best_u)]
    status, milp_status = "optimal", "not needed"
    if n_forced <= k and f_hi >= f_lo:
        rows = model.screen(candidates, f_lo)
        details["rows"] = rows.n_rows
        refine = None
        if np.any(model.curvature > 0.0):
            robust = RobustProgram(model, rows, stress_rows, f_lo)

            def refine(discarded: np.ndarray) -> np.ndarray | None:
                robust.set_discarded(discarded)
                outcome = solve_with_fallback(
                    robust.problem,
                    lambda status: (None if robust.rates.value is None else robust.rates.value.copy(), status == cp.OPTIMAL, 0.0),
                    solvers,
                )
                return outcome.result

        milp_u, milp_status, converged, info = _exact_milp(
            model, rule, rows, stress_rows, k - n_forced, f_lo, f_hi, best_u, best_obj, time_limit, mip_rel_gap, start,
            refine,
        )
        details.update(info)
        if milp_u is not None:
            points.append(("milp", milp_u))
        if not converged:
            status = "feasible"
            details["reason"] = f"HiGHS stopped before proving optimality: {milp_status}"
            details["gap"] = info.get("mip_gap", math.inf)
    checked = [(name, checked_point(model, rule, u)) for name, u in points]
    name, point = min(checked, key=lambda item: item[1].objective)
    details["point_from"] = name
    details["milp_status"] = milp_status
    policy = make_policy(model, "exact", point, alpha=alpha, status=status, solver="HIGHS (milp)", details=details)
    return policy


def level_solver(
    problem: PolicyProblem, scenarios: ScenarioSet, alphas: Sequence[float], method: str, options: dict[str, Any]
) -> Callable[[float], Policy]:
    """``solve_at(alpha)`` for method "cvar" or "exact" at every level in ``alphas``, sharing the work.

    One FundModel (one pass over the data) and one screening serve every level: the "cvar"
    engine is built for the largest level and re-screens its rows per level; the "exact"
    branch-and-bound engine screens once for the range of levels. ``options`` are the method's
    options, validated here as :func:`solve_cvar` / :func:`solve_exact` do.
    """
    model = FundModel.build(problem, scenarios, scale_alpha=max(alphas))
    return level_solver_on_model(model, alphas, method, options)


def level_solver_on_model(
    model: FundModel, alphas: Sequence[float], method: str, options: dict[str, Any]
) -> Callable[[float], Policy]:
    """:func:`level_solver` on a built FundModel (built with ``scale_alpha=max(alphas)``); the
    chunked path of :mod:`.distributed` builds its tail view and solves through here."""
    largest, smallest = max(alphas), min(alphas)
    solvers = check_solvers(options.get("solver"))
    engine = options.get("engine", "auto")
    if method == "cvar":
        if engine not in CVAR_ENGINES:
            raise ProblemError(f"engine must be one of {list(CVAR_ENGINES)}, got {engine!r}")
        if model.n_free == 0:
            def closed(alpha: float) -> Policy:
                rule = FundRule("cvar", alpha, allowed_ruins(alpha, model.n_scenarios), n_scenarios=model.n_scenarios)
                lowest = sample_cvar(model.required_range()[1], alpha, model.n_scenarios)
                check_cap(model, lowest, screened_stress(model)[0], f"CVaR_{alpha:g} of the required fund <= F0")
                return closed_form(model, "cvar", rule, alpha)

            return closed
        return cvar_engine(model, largest, engine, solvers).solve
    if engine not in EXACT_ENGINES:
        raise ProblemError(f"engine must be one of {list(EXACT_ENGINES)}, got {engine!r}")
    time_limit = _positive("time_limit", options.get("time_limit", 60.0))
    mip_rel_gap = _positive("mip_rel_gap", options.get("mip_rel_gap", 1e-7))
    warm_start = bool(options.get("warm_start", True))
    search = None
    if model.n_free and engine != "milp":
        search = ExactBranchAndBound(model, largest, smallest)

    def exact(alpha: float) -> Policy:
        return exact_on_model(
            model, alpha, time_limit=time_limit, mip_rel_gap=mip_rel_gap, warm_start=warm_start, solvers=solvers,
            engine=engine, search=search,
        )

    return exact


def _exact_milp(
    model: FundModel,
    rule: FundRule,
    rows: ScreenedRows,
    stress_rows: ScreenedRows | None,
    budget: int,
    f_lo: float,
    f_hi: float,
    start_u: np.ndarray,
    start_objective: float,
    time_limit: float,
    mip_rel_gap: float,
    started: float,
    refine: Callable[[np.ndarray], np.ndarray | None] | None = None,
) -> tuple[np.ndarray | None, str, bool, dict[str, Any]]:
    """Solve the big-M program of :func:`solve_exact`.

    ``start_objective`` (scaled, with the constant) is the starting point's; the bounds
    ``f_hi`` only admit cheaper policies. Returns ``(u or None, status text, proven optimal,
    info)``, u None when nothing cheaper than the starting point was found.

    With a rate penalty, ``q_j >= curvature_j u_j^2`` is outer-approximated by tangents (a grid
    of 9 per rate to start). Each round is outer approximation (Duran & Grossmann 1986): the
    MILP picks a discard set, ``refine`` solves the convex program for that set exactly, and
    tangents at both answers are added. It stops when the best true objective found is within
    ``mip_rel_gap`` of the MILP's dual bound (a lower bound on the true optimum), or when the
    tangents are exact at the MILP's own answer (Kelley's test).
    """
    nf = model.n_free
    n_bin = rows.candidates.size
    curved = np.flatnonzero(model.curvature > 0.0)
    n_var = 1 + nf + n_bin + curved.size
    col_z = 1 + nf
    col_q = 1 + nf + n_bin

    coo_rows: list[np.ndarray] = []
    coo_cols: list[np.ndarray] = []
    coo_vals: list[np.ndarray] = []
    lower: list[np.ndarray] = []
    upper: list[np.ndarray] = []
    n_row = 0

    def add_rows(relief: np.ndarray, required0: np.ndarray, big_m: np.ndarray | None, scen: np.ndarray | None) -> None:
        # f + relief @ u (+ M z_s) >= required0
        nonlocal n_row
        r = relief.shape[0]
        idx = np.arange(n_row, n_row + r)
        coo_rows.extend([idx, np.repeat(idx, nf)])
        coo_cols.extend([np.zeros(r, dtype=np.int64), np.tile(np.arange(1, 1 + nf), r)])
        coo_vals.extend([np.ones(r), relief.reshape(-1)])
        if big_m is not None:
            coo_rows.append(idx)
            coo_cols.append(col_z + scen)
            coo_vals.append(big_m)
        lower.append(required0)
        upper.append(np.full(r, np.inf))
        n_row += r

    def add_cuts(points: np.ndarray) -> None:
        # q_j >= curvature_j (2 v u_j - v^2), the tangent of curvature_j u_j^2 at u_j = v
        nonlocal n_row
        for i, j in enumerate(curved):
            v = points[:, j] if points.ndim == 2 else points
            idx = np.arange(n_row, n_row + v.size)
            coo_rows.extend([idx, idx])
            coo_cols.extend([np.full(v.size, col_q + i), np.full(v.size, 1 + j)])
            coo_vals.extend([np.ones(v.size), -2.0 * model.curvature[j] * v])
            lower.append(-model.curvature[j] * v * v)
            upper.append(np.full(v.size, np.inf))
            n_row += v.size

    if rows.n_rows:
        add_rows(rows.relief, rows.required0, rows.required0 - f_lo, rows.scenario)
    if stress_rows is not None and stress_rows.n_rows:
        add_rows(stress_rows.relief, stress_rows.required0, None, None)
    if n_bin:
        # at most `budget` candidates ruined
        coo_rows.append(np.full(n_bin, n_row))
        coo_cols.append(col_z + np.arange(n_bin))
        coo_vals.append(np.ones(n_bin))
        lower.append(np.array([-np.inf]))
        upper.append(np.array([float(budget)]))
        n_row += 1
    if curved.size:
        grid = np.linspace(0.0, 1.0, 9)
        add_cuts(np.column_stack([grid] * nf))
        add_cuts(np.asarray(start_u, dtype=np.float64)[None, :])

    cost = np.zeros(n_var)
    cost[0] = model.cost_fund
    cost[1 : 1 + nf] = model.cost_rate
    cost[col_q:] = 1.0
    low_bounds = np.zeros(n_var)
    high_bounds = np.ones(n_var)
    low_bounds[0], high_bounds[0] = f_lo, f_hi
    high_bounds[col_q:] = model.curvature[curved]
    integrality = np.zeros(n_var, dtype=np.int64)
    integrality[col_z : col_z + n_bin] = 1

    info: dict[str, Any] = {"milp_rounds": 0}
    best_u: np.ndarray | None = None
    best_obj = start_objective - model.cost_constant
    for _ in range(100):
        remaining = time_limit - (time.perf_counter() - started)
        if remaining <= 0.0:
            return best_u, "time limit reached", False, info
        constraints = []
        if n_row:
            matrix = sp.csr_array(
                (np.concatenate(coo_vals), (np.concatenate(coo_rows), np.concatenate(coo_cols))), shape=(n_row, n_var)
            )
            constraints.append(optimize.LinearConstraint(matrix, np.concatenate(lower), np.concatenate(upper)))
        result = quiet_milp(
            cost,
            integrality=integrality,
            bounds=optimize.Bounds(low_bounds, high_bounds),
            constraints=constraints,
            # presolve off: measured faster on these small, dense big-M programs
            options={"time_limit": remaining, "mip_rel_gap": mip_rel_gap, "disp": False, "presolve": False},
        )
        info["milp_rounds"] += 1
        if result.x is None:
            # infeasible (status 2): nothing cheaper than the starting point exists
            return best_u, result.message, result.status == 2, info
        answers = [np.clip(np.asarray(result.x[1 : 1 + nf]), 0.0, 1.0)]
        if refine is not None:
            refined = refine(result.x[col_z : col_z + n_bin] > 0.5)
            if refined is not None:
                answers.append(np.clip(refined, 0.0, 1.0))
        for u in answers:
            value = model.scaled_objective(scaled_fund(model, rule, u), u) - model.cost_constant
            if value < best_obj:
                best_u, best_obj = u, value
        bound = getattr(result, "mip_dual_bound", None)
        bound = result.fun if bound is None else float(bound)
        info["mip_gap"] = (best_obj - bound) / max(abs(best_obj), 1e-12)
        if result.status != 0:
            return best_u, result.message, False, info
        if not curved.size or best_obj - bound <= mip_rel_gap * max(abs(best_obj), 1.0) + 1e-9:
            return best_u, result.message, True, info
        # Kelley's test: the tangents are exact at the MILP's own answer, so its bound is the
        # true optimum (up to HiGHS's feasibility tolerance, which the numpy check absorbs).
        u_milp = answers[0]
        shortfall = float(model.curvature[curved] @ (u_milp[curved] ** 2)) - float(result.x[col_q:].sum())
        if shortfall <= _KELLEY_TOL * max(1.0, abs(float(result.fun))):
            return best_u, result.message, True, info
        add_cuts(np.array(answers))
    return best_u, "outer approximation did not converge in 100 rounds", False, info


def _box_min(linear: float, quadratic: float) -> float:
    """``min_{u in [0, 1]} linear u + quadratic u^2`` (quadratic >= 0)."""
    if quadratic > 0.0:
        u = min(1.0, max(0.0, -linear / (2.0 * quadratic)))
    else:
        u = 0.0 if linear >= 0.0 else 1.0
    return linear * u + quadratic * u * u


class RobustProgram:
    """The robust program over screened scenarios, compiled once, with a Parameter discard set.

    In scaled units::

        minimise    cost_fund f + cost_rate @ u + curvature @ u^2
        subject to  f + relief[s, t] @ u + M[s, t] d_s >= required0[s, t]   kept rows (s, t)
                    f + relief @ u >= required0                           stress rows
                    f_lo <= f <= fund_max (tightened),  0 <= u <= 1

    with ``d_s`` in {0, 1} a cvxpy Parameter ("scenario s is discarded") and
    ``M[s, t] = required0[s, t] - f_lo``, which makes a discarded scenario's rows slack. Used by
    the scenario approach (each greedy step flips one ``d_s``) and by "exact" (the convex
    program for the discard set a mixed-integer answer chose). ``f_lo`` must be a valid lower
    bound on the fund target of the problems it is solved for.
    """

    def __init__(self, model: FundModel, rows: ScreenedRows, stress_rows: ScreenedRows | None, f_lo: float) -> None:
        self.model = model
        self.rows = rows
        self.rates = cp.Variable(model.n_free, name="scaled_rates")
        fund = cp.Variable(name="fund_target")
        constraints = []
        self.row_constraint = None
        self._relax = None
        if rows.n_rows:
            self._relax = cp.Parameter(rows.n_rows, nonneg=True, name="discarded")
            self._relax.value = np.zeros(rows.n_rows)
            big_m = rows.required0 - f_lo
            # F[s, t] >= floor in every kept scenario; a discarded scenario's rows get slack M
            self.row_constraint = fund + rows.relief @ self.rates + cp.multiply(big_m, self._relax) >= rows.required0
            constraints.append(self.row_constraint)
        if stress_rows is not None and stress_rows.n_rows:
            # F[s, t] >= floor in every stress scenario
            constraints.append(fund + stress_rows.relief @ self.rates >= stress_rows.required0)
        constraints += [fund >= f_lo, self.rates >= 0.0, self.rates <= 1.0]
        if math.isfinite(model.fund_cap):
            constraints.append(fund <= solver_cap(model.fund_cap))
        cost = model.cost_fund * fund + model.cost_rate @ self.rates
        if np.any(model.curvature > 0.0):
            cost = cost + model.curvature @ cp.square(self.rates)
        self.problem = cp.Problem(cp.Minimize(cost), constraints)

    def set_discarded(self, discarded: np.ndarray) -> None:
        """Discard the candidates flagged in ``discarded`` (K,) bool."""
        if self._relax is not None:
            self._relax.value = discarded[self.rows.scenario].astype(np.float64)

    def claimed_objective(self) -> float:
        """The solver's objective in currency units."""
        return (self.problem.value + self.model.cost_constant) * self.model.objective_scale

    def scenario_duals(self) -> np.ndarray | None:
        """(K,) total Lagrange multiplier of each candidate's rows at the last solution."""
        if self.row_constraint is None or self.row_constraint.dual_value is None:
            return None
        duals = np.maximum(np.asarray(self.row_constraint.dual_value, dtype=np.float64), 0.0)
        return np.bincount(self.rows.scenario, weights=duals, minlength=self.rows.candidates.size)


# ---------------------------------------------------------------------------------------------
# "scenario": Campi & Garatti sampling-and-discarding
# ---------------------------------------------------------------------------------------------


#: Engines of method "scenario" (see :func:`solve_scenario`).
SCENARIO_ENGINES = ("auto", "working-set", "cvxpy")


def solve_scenario(
    problem: PolicyProblem,
    scenarios: ScenarioSet,
    *,
    beta: float = 1e-6,
    discarded: int | None = None,
    batch_fraction: float = 0.125,
    solver: str | Sequence[str] | None = None,
    engine: str = "auto",
) -> Policy:
    """Method "scenario": robust over the kept scenarios, k discarded by a greedy rule.

    Parameters
    ----------
    problem : PolicyProblem
        ``alpha`` plays the role of the scenario approach's epsilon.
    scenarios : ScenarioSet
        N random scenarios (stress scenarios are hard constraints when ``survive_stress`` and
        never discarded).
    beta : float in (0, 1), default 1e-6
        Confidence parameter of the a-priori guarantee.
    discarded : int, optional
        k, how many scenarios to discard. Default: the largest k for which
        ``P^N( P(ruin) > alpha ) <= beta`` still holds (Campi & Garatti 2011); a ProblemError
        says how many scenarios are needed when even k = 0 does not suffice. An explicit k is
        honoured and the guarantee's epsilon reported, whether or not it is below alpha.
    batch_fraction : float in [0, 1), default 0.125
        Each round of the greedy rule discards ``ceil(batch_fraction * (k - discarded so far))``
        scenarios (at least one); 0 discards one per round, the pure greedy rule. Batches keep
        the number of re-solves near ``log(k) / batch_fraction`` instead of k.
    solver : str or sequence of str, optional
        Solver order for the cvxpy engine.
    engine : "auto", "working-set" or "cvxpy", default "auto"
        How each robust program is solved: "working-set" (:class:`~.fast.RobustWorkingSet`,
        "auto" is this one) by Clarabel on the rows that bind, added as they are violated;
        "cvxpy" (the reference, :class:`RobustProgram`) on all screened rows with the solver
        fallback. Same optima and multipliers, so the same discards.

    Returns
    -------
    Policy
        ``epsilon``, ``beta`` (the guarantee ``P^N( P(ruin) > epsilon ) <= beta`` for the
        planned k and ``d = 1 + free rates`` decisions) and ``discarded`` (scenarios ruined by
        the policy, at most k). Every kept scenario survives.

    Notes
    -----
    Greedy removal rule (stated, as the theory needs a rule fixed in advance): solve the robust
    program on the kept scenarios; rank the kept scenarios by the total Lagrange multiplier of
    their constraints (the first-order estimate of the cost saved by removing them; rounded to
    1e-8 in scaled units, the solvers' accuracy), ties broken by the larger required fund at
    the current solution, then by the lower index;
    discard the first ``max(1, ceil(batch_fraction * remaining))``; re-solve; repeat until k
    are discarded. A discarded scenario that the current
    solution satisfies is put back (that leaves the solution unchanged), so that every
    discarded scenario is violated by the final policy, as Campi & Garatti (2011) require. If
    no scenario constraint binds (the solution is pinned by F0 >= 0, a stress scenario or the
    rate box) the loop stops early; the guarantee reported is the one for the planned k, which
    is larger than for fewer discards.

    The robust program (scaled units) is a linear (or, with a rate penalty, quadratic) program.
    The reference engine writes it in cvxpy, compiled once; each step only changes a Parameter
    that relaxes the discarded scenario's rows by a big-M. The working-set engine solves the
    same program on the rows that bind (measured at N = 100,000, alpha = 1%, k = 766: 212
    re-solves, 11.8 s with cvxpy on 8,000 rows; see ``benchmarks/results/scaling.md``).
    """
    solvers = check_solvers(solver)
    beta = _unit("beta", beta)
    if engine not in SCENARIO_ENGINES:
        raise ProblemError(f"engine must be one of {list(SCENARIO_ENGINES)}, got {engine!r}")
    if isinstance(batch_fraction, bool) or not isinstance(batch_fraction, (int, float, np.floating)) or not (
        0.0 <= batch_fraction < 1.0
    ):
        raise ProblemError(f"batch_fraction must be a number in [0, 1), got {batch_fraction!r}")
    model = FundModel.build(problem, scenarios)
    n, d, alpha = model.n_scenarios, model.n_decisions, problem.alpha
    if discarded is None:
        budget = scenario_discard_budget(n, alpha, beta, d)
        if budget is None:
            need = scenario_sample_size(alpha, beta, d)
            raise ProblemError(
                f"the scenario approach needs at least {need} random scenarios for epsilon = alpha = {alpha:g}, "
                f"beta = {beta:g} and d = {d} decisions; the scenario set has {n}"
            )
        k = budget
    else:
        if isinstance(discarded, bool) or not isinstance(discarded, (int, np.integer)) or not 0 <= discarded < n:
            raise ProblemError(f"discarded must be an integer in [0, {n}), got {discarded!r}")
        k = int(discarded)
    epsilon = scenario_epsilon(n, beta, d, k)
    guarantee = {"epsilon": epsilon, "beta": beta}
    highest, lowest = model.required_range()
    stress_lowest, stress_rows = screened_stress(model)
    order_lowest = kth_largest(lowest, k + 1)
    check_cap(model, order_lowest, stress_lowest, f"survival of all but {k} of {n} scenarios")

    if model.n_free == 0:
        # Every step of the greedy rule discards the scenario with the largest required fund.
        mask = np.zeros(n, dtype=bool)
        required = -model.worst(model.rate_low)
        mask[np.argsort(-required, kind="stable")[:k]] = True
        rule = FundRule("robust", alpha, discarded=mask)
        point = checked_point(model, rule, np.zeros(0))
        return make_policy(
            model, "scenario", point, alpha=alpha, status="optimal", solver="closed form",
            details={"planned_discards": k}, discarded=point.ruins, **guarantee,
        )

    # Scenarios below the (k+1)-th largest required fund at premium_max never bind while at
    # most k are discarded: screen them (and their rows) out exactly.
    f_lo = max(model.fund_min, order_lowest, stress_lowest)
    candidates = np.flatnonzero(highest > f_lo)
    rows = model.screen(candidates, f_lo)
    working_set = engine != "cvxpy"
    robust = (RobustWorkingSet if working_set else RobustProgram)(model, rows, stress_rows, f_lo)
    grouped = MaxAffine.of(rows)

    def required_at(u: np.ndarray) -> np.ndarray:
        # (K,) R_s(u) of the candidates from their screened rows: exact above f_lo, which is
        # all the put-back test and the ranking need (-inf for a candidate with no row left)
        values = np.full(candidates.size, -math.inf)
        if rows.n_rows:
            values[rows.scenario[grouped.starts]] = grouped.evaluate(u)[0]
        return values

    dropped = np.zeros(candidates.size, dtype=bool)
    mask = np.zeros(n, dtype=bool)

    def check(status: str) -> tuple[CheckedPoint | None, bool, float]:
        if robust.rates.value is None or robust.problem.value is None:
            return None, False, math.inf
        point = checked_point(model, FundRule("robust", alpha, discarded=mask.copy()), robust.rates.value)
        claimed = robust.claimed_objective()
        accepted = status == cp.OPTIMAL and agree(point.objective - model.floor_cost, claimed, model.objective_scale)
        return point, accepted, point.objective

    def set_dropped() -> None:
        mask[:] = False
        mask[candidates[dropped]] = True
        robust.set_discarded(dropped)

    solves, all_accepted, solver_used, attempts = 0, True, "", []
    u: np.ndarray | None = None
    for _ in range(4 * k + 10):
        solves += 1
        if working_set:
            if not robust.solve():
                raise SolverError("Clarabel failed on the robust scenario program (working set); try engine='cvxpy'")
            u, scaled_fund, solver_used = robust.rates, robust.fund, "CLARABEL (working set)"
        else:
            outcome = solve_with_fallback(robust.problem, check, solvers)
            if outcome.result is None:
                raise SolverError(f"every solver failed on the robust scenario problem: {outcome.attempts}")
            point, solver_used = outcome.result, outcome.solver
            all_accepted &= outcome.accepted
            attempts = outcome.attempts
            u, scaled_fund = point.u, (point.fund_target - model.problem.floor) / model.money_scale
        required = required_at(u)
        # Put back discarded scenarios the solution satisfies: they do not change it.
        dropped &= ~(required <= scaled_fund - 1e-9)
        set_dropped()
        mass = robust.scenario_duals()
        if dropped.sum() >= k or mass is None:
            break
        # Multipliers are known to the solver's tolerance: round them to 1e-8 (they are about
        # one in scaled units), so that solver noise does not rank non-binding scenarios.
        mass = np.round(mass, 8)
        mass[dropped] = -math.inf
        order = np.lexsort((-np.arange(candidates.size), required, mass))[::-1]
        if not mass[order[0]] > 1e-9:
            break
        batch = max(1, math.ceil(batch_fraction * (k - int(dropped.sum()))))
        dropped[order[:batch]] = True
        set_dropped()
    assert u is not None
    # The last re-insertion may have changed the kept set; re-check with it (no solver needed).
    point = checked_point(model, FundRule("robust", alpha, discarded=mask.copy()), u)
    details = {
        "planned_discards": k,
        "candidates": int(candidates.size),
        "rows": rows.n_rows,
        "solves": solves,
        "attempts": attempts,
    }
    if working_set:
        details["working_set_rounds"] = robust.rounds
        if not agree(point.objective - model.floor_cost, robust.claimed_objective(), model.objective_scale):
            all_accepted = False
    if not all_accepted:
        details["reason"] = "some robust solves did not pass the numpy check"
    return make_policy(
        model, "scenario", point, alpha=alpha, status="optimal" if all_accepted else "feasible",
        solver=solver_used, details=details, discarded=point.ruins, **guarantee,
    )


# ---------------------------------------------------------------------------------------------
# "certified": train / select / certify
# ---------------------------------------------------------------------------------------------


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
    shares = _fractions(fractions)
    if scenarios.n_stress == scenarios.n_scenarios:
        raise ProblemError("the scenario set holds no random (non-stress) scenario to split")
    random_part = scenarios.random_part()
    if random_part.n_scenarios < 3:
        raise ProblemError(f"certification needs at least 3 random scenarios, got {random_part.n_scenarios}")
    first, second = np.random.SeedSequence(seed).spawn(2)
    train, rest = random_part.split(shares[0], seed=first)
    select, hold = rest.split(shares[1] / (shares[1] + shares[2]), seed=second)
    return train, select, hold


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
    confidence = _unit("confidence", confidence)
    select_conf = confidence if select_confidence is None else _unit("select_confidence", select_confidence)
    if base not in ("cvar", "exact"):
        raise ProblemError(f"base must be 'cvar' or 'exact', got {base!r}")
    if engine not in CVAR_ENGINES:
        raise ProblemError(f"engine must be one of {list(CVAR_ENGINES)}, got {engine!r}")
    backoff = _unit("backoff", backoff)
    if isinstance(n_backoff, bool) or not isinstance(n_backoff, (int, np.integer)) or n_backoff < 0:
        raise ProblemError(f"n_backoff must be an integer >= 0, got {n_backoff!r}")
    if isinstance(bisection_steps, bool) or not isinstance(bisection_steps, (int, np.integer)) or bisection_steps < 1:
        raise ProblemError(f"bisection_steps must be an integer >= 1, got {bisection_steps!r}")
    time_limit = _positive("time_limit", time_limit)
    solvers = check_solvers(solver)
    alpha = problem.alpha

    # The parts as positions in `scenarios`, not copies (memory: the data once, whatever N is).
    train, select, hold = _split_positions(scenarios, fractions, seed)
    needed = math.ceil(math.log1p(-confidence) / math.log1p(-alpha))
    if hold.size < needed:
        total = math.ceil(needed / _fractions(fractions)[2])
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
            rule = FundRule("cvar", level, allowed_ruins(level, n_train))
            check_cap(model, sample_cvar(model.required_range()[1], level), screened_stress(model)[0], f"CVaR_{level:g}")
            return closed_form(model, "cvar", rule, level)
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
        "fractions": tuple(_fractions(fractions)),
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


def _split_positions(
    scenarios: ScenarioSet, fractions: Sequence[float], seed: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions in ``scenarios`` of the (train, select, certify) parts of :func:`certification_splits`.

    The split of the random scenarios depends only on their number and the seed, so splitting
    a one-column set that holds each random scenario's position gives exactly the same parts
    without copying the data.
    """
    random_index = np.flatnonzero(~scenarios.is_stress)
    labels = ScenarioSet(
        losses=random_index.astype(np.float64)[:, None],
        premium_base=np.zeros((random_index.size, 1, 1)),
        markets=["position"],
    )
    parts = certification_splits(labels, fractions, seed)
    return tuple(part.losses[:, 0].astype(np.int64) for part in parts)  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# option checks
# ---------------------------------------------------------------------------------------------


def _unit(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ProblemError(f"{name} must be a number in (0, 1), got {value!r}")
    out = float(value)
    if not 0.0 < out < 1.0:
        raise ProblemError(f"{name} must be in (0, 1), got {value!r}")
    return out


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ProblemError(f"{name} must be a positive number, got {value!r}")
    out = float(value)
    if not out > 0.0 or not math.isfinite(out):
        raise ProblemError(f"{name} must be a positive finite number, got {value!r}")
    return out


def _fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    try:
        shares = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise ProblemError(f"fractions must be three numbers (train, select, certify), got {fractions!r}") from None
    if len(shares) != 3 or min(shares) <= 0.0 or abs(sum(shares) - 1.0) > 1e-9:
        raise ProblemError(f"fractions must be three positive shares summing to 1, got {fractions!r}")
    return shares  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodSpec:
    """A method: the function that runs it and the keyword options it accepts."""

    run: Any
    options: tuple[str, ...]
    summary: str


METHODS: dict[str, MethodSpec] = {
    "cvar": MethodSpec(solve_cvar, ("solver", "engine"), "Rockafellar–Uryasev CVaR constraint (convex, conservative)"),
    "exact": MethodSpec(
        solve_exact,
        ("time_limit", "mip_rel_gap", "warm_start", "solver", "engine"),
        "exact sample chance constraint: at most floor(alpha N) ruined scenarios (mixed-integer)",
    ),
    "scenario": MethodSpec(
        solve_scenario,
        ("beta", "discarded", "batch_fraction", "solver", "engine"),
        "scenario approach with greedy discarding (Campi & Garatti)",
    ),
    "certified": MethodSpec(
        solve_certified,
        (
            "confidence",
            "base",
            "fractions",
            "seed",
            "select_confidence",
            "backoff",
            "n_backoff",
            "bisection_steps",
            "time_limit",
            "solver",
            "engine",
        ),
        "train / select / certify: ruin probability certified <= alpha (Clopper–Pearson)",
    ),
}
