"""Method "exact": the sample chance constraint, at most ``floor(alpha N)`` ruined scenarios at
minimum cost.

The reference formulation (:func:`exact_on_model` with ``engine="milp"``: one big-M
mixed-integer program over the screened scenarios, HiGHS) and the fast engine
(:class:`ExactBranchAndBound`, a search over the box of scaled rates whose small boxes are
solved by the same program restricted to the box) side by side; both reach the same optimum.
The engine's screened rows and its pieces of the objective are public attributes, read by its
leaf program (:func:`leaf_milp`) and kept-set program.
"""

from __future__ import annotations

import heapq
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
    ConvergenceWarning,
    InfeasibleError,
    ProblemError,
    SolverError,
)

from ..fund import (
    FundModel,
    FundRule,
    ScreenedRows,
    agree,
    check_cap,
    checked_point,
    closed_form,
    kth_largest,
    make_policy,
    scaled_fund,
    screened_stress,
    solver_cap,
)
from ..policy import Policy
from ..problem import PolicyProblem
from ..solvers import (
    check_solvers,
    quiet_milp,
    solve_with_fallback,
)

from .cvar import cvar_engine
from .shared import (
    MaxAffine,
    RobustProgram,
    box_min,
    check_positive,
    survival_qp,
)

__all__ = [
    "ExactBranchAndBound",
    "LEAF_SIZE",
    "EXACT_ENGINES",
    "solve_exact",
    "exact_on_model",
    "exact_levels",
    "leaf_milp",
    "kept_program",
]


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
    time_limit = check_positive("time_limit", time_limit)
    mip_rel_gap = check_positive("mip_rel_gap", mip_rel_gap)
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
    rule = FundRule.quantile(alpha, n)
    k = rule.allowed
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
    rate_floor = sum(box_min(c, q) for c, q in zip(model.cost_rate, model.curvature, strict=True))
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
        if shortfall <= REFERENCE_KELLEY_TOL * max(1.0, abs(float(result.fun))):
            return best_u, result.message, True, info
        add_cuts(np.array(answers))
    return best_u, "outer approximation did not converge in 100 rounds", False, info


def exact_levels(model: FundModel, alphas: Sequence[float], options: dict[str, Any]) -> Callable[[float], Policy]:
    """``solve_at(alpha)`` of "exact" for every level in ``alphas`` on one FundModel: the
    branch-and-bound engine screens once for the range of levels; ``options`` are validated as
    :func:`solve_exact` does."""
    solvers = check_solvers(options.get("solver"))
    engine = options.get("engine", "auto")
    if engine not in EXACT_ENGINES:
        raise ProblemError(f"engine must be one of {list(EXACT_ENGINES)}, got {engine!r}")
    time_limit = check_positive("time_limit", options.get("time_limit", 60.0))
    mip_rel_gap = check_positive("mip_rel_gap", options.get("mip_rel_gap", 1e-7))
    warm_start = bool(options.get("warm_start", True))
    search = None
    if model.n_free and engine != "milp":
        search = ExactBranchAndBound(model, max(alphas), min(alphas))

    def exact(alpha: float) -> Policy:
        return exact_on_model(
            model, alpha, time_limit=time_limit, mip_rel_gap=mip_rel_gap, warm_start=warm_start, solvers=solvers,
            engine=engine, search=search,
        )

    return exact


#: Live scenarios at or below which a box is solved exactly by a small mixed-integer program
#: instead of being split further. Measured (N = 200..1,000,000, J = 1..5): HiGHS needs 5-50 ms
#: for such a box whatever its size up to a few dozen binaries, a box evaluation 0.1-0.5 ms, and
#: 8 gave the lowest total time (48: 1.5-3x slower).
LEAF_SIZE = 8

# Boxes this narrow are solved as leaves whatever their live count: many identical scenarios,
# or an optimum on the fund_max boundary, would otherwise be split without end.
_LEAF_WIDTH = 2.0**-14

# Outer-approximation rounds per box (rate-change penalty) before the box is split instead.
_OA_ROUNDS = 30

# A box's answer from HiGHS whose exact objective is within this relative slack of the
# program's value is its optimum up to HiGHS's feasibility tolerance (1e-7 on every row).
_MILP_SLACK = 1e-6


# Kelley's test of the outer approximation (rate-change penalty): tangents exact at an answer to
# this relative tolerance count as exact. Two values on purpose: the reference program's test is
# ten times HiGHS's default primal feasibility tolerance (1e-7), as its answers are only that
# exact; a leaf of the search is polished to the box's optimum (the kept-set program solves it
# exactly, Clarabel at 1e-10), so its test is tight.
REFERENCE_KELLEY_TOL = 1e-6
LEAF_KELLEY_TOL = 1e-9


@dataclass(eq=False)
class _Box:
    """A box ``[lo, hi]`` of scaled rates and what is known of the fund target on it.

    On the box, ``Phi(u) = max(level, S(u), (budget + 1)-th largest of R_s(u) over the live
    scenarios)`` exactly, where ``rows`` are the live scenarios' screened rows (indices into the
    engine's rows), ``level = Phi(hi)`` and ``S`` the stress requirement (see
    :class:`ExactBranchAndBound`).
    """

    lo: np.ndarray
    hi: np.ndarray
    rows: np.ndarray
    budget: int
    level: float
    n_live: int
    bound: float


class _Incumbent:
    """The best answer of a branch-and-bound search: scaled rates and objective (without the constant)."""

    def __init__(self, engine: ExactBranchAndBound, rtol: float) -> None:
        self.engine = engine
        self.rtol = rtol
        self.best_u = np.ones(engine.model.n_free)
        self.best = math.inf
        self.best_box: _Box | None = None

    def offer(self, u: np.ndarray, phi: float, box: _Box) -> None:
        """Take rates ``u`` (in ``box``) whose exact order-statistic fund target is ``phi`` if they are cheaper."""
        engine = self.engine
        if phi <= engine.cap:
            value = engine.model.cost_fund * phi + engine.rate_cost(u)
            if value < self.best:
                self.best_u, self.best, self.best_box = np.array(u, dtype=np.float64), value, box

    def cutoff(self) -> float:
        """Boxes whose lower bound is at or above this cannot improve the answer by more than rtol."""
        if not math.isfinite(self.best):
            return math.inf
        scale = max(abs(self.best + self.engine.model.cost_constant), 1e-12)
        return self.best - self.rtol * scale


class ExactBranchAndBound:
    """Method "exact" by branch and bound over the box of scaled rates; same optimum as the MILP.

    Parameters
    ----------
    model : FundModel
        With at least one free rate.
    max_alpha : float
        Largest level it will be solved at.
    min_alpha : float, optional
        Smallest level (default ``max_alpha``); rows are screened once for the whole range.
    leaf_size : int, default :data:`LEAF_SIZE`
        Boxes with at most this many live scenarios are solved by a mixed-integer program.

    Notes
    -----
    For scaled rates ``u`` the smallest fund target meeting "at most ``k = floor(alpha N)``
    scenarios ruined" is the order statistic ``Phi(u) = max(0, S(u), q(u))``, ``q(u)`` the
    ``(k + 1)``-th largest required fund ``R_s(u)`` and ``S(u)`` the largest over stress
    scenarios. So "exact" is ``min_u cost_fund Phi(u) + h(u)`` over ``[0, 1]^Jf`` with
    ``Phi(u) <= fund_max`` (``h`` the separable convex premium and rate-change terms): a
    non-convex problem in ``Jf <= a handful`` variables. Every ``R_s`` is non-increasing in
    every rate, so on a box ``[lo, hi]``:

    * ``Phi(hi) <= Phi(u) <= Phi(lo)``, hence the lower bound
      ``cost_fund Phi(hi) + min_box h`` (and the box is infeasible when ``Phi(hi) > fund_max``);
      the corners' true objectives are upper bounds;
    * a scenario with ``R_s(hi) > q'(lo)`` (the order statistic at ``lo`` over the live
      scenarios) is among the ruined everywhere on the box: it is removed and the ruin budget
      lowered by one, which leaves ``q`` unchanged; one with ``R_s(lo) <= Phi(hi)`` can never
      set ``Phi`` on the box and is removed; rows of a live scenario below ``Phi(hi)`` or
      dominated on the box by another of its rows are dropped. These reductions are identities
      on the box, not relaxations;
    * a second lower bound from tangents of the live ``R_s`` at ``hi`` and at the centre
      (:meth:`_tangent_bound`), which sees that premiums lower the fund target: where the two
      nearly cancel (an interior optimum) it prunes boxes the first bound cannot.

    The search is best-first on the lower bound: a box is split in two along the side with the
    largest width times sensitivity (fund relief plus premium cost per unit of rate), pruned
    when its bound is within ``rtol`` of the best true objective found, and solved
    exactly when it is small: when no live scenario is left, or the budget is zero (a linear
    program: every live scenario must survive), or at most ``leaf_size`` live scenarios are
    left, by the big-M mixed-integer program of :func:`~.methods.solve_exact` restricted to the
    box (HiGHS in scipy, silent), with tangent cuts of the rate-change penalty added until they
    are exact at its answer (outer approximation). Each box's reductions shrink its children's
    live set, so boxes near the optimum are solved on a few dozen scenarios whatever N is.

    The answer is the global optimum up to ``rtol`` (relative, on the objective) and the
    solver's tolerances; a last exact solve of a small box around it (:meth:`_polish`) puts the
    rates on the optimum where the objective is flat; the rates are then re-checked in numpy
    like every method's, and a claimed objective the check does not confirm makes the status
    "feasible".

    Cost: one gather and a few vector operations per box over its live rows; the live rows
    shrink with the boxes, so time is dominated by the first levels (all screened rows) and is
    near-linear in N. Measured on the scaling benchmark's sets (2-core machine): N = 1,000,000,
    alpha = 1%, in about 1-1.5 s of which the search takes 0.1-0.6 s. It is slowest when
    screening barely applies (premiums large enough to cover most losses at ``premium_max``:
    most scenarios are then live at the root) and, being a search over ``Jf``-dimensional
    boxes, when many rates sit in the interior of their range.
    """

    def __init__(
        self, model: FundModel, max_alpha: float, min_alpha: float | None = None, *, leaf_size: int | None = None
    ) -> None:
        if model.n_free == 0:
            raise ValueError("ExactBranchAndBound needs at least one free premium rate")
        self.model = model
        self.max_alpha = max_alpha
        self.min_alpha = max_alpha if min_alpha is None else min_alpha
        self.leaf_size = LEAF_SIZE if leaf_size is None else leaf_size
        n = model.n_scenarios
        nf = model.n_free
        highest, lowest = model.required_range()
        self.stress: MaxAffine | None = None
        self._stress_lowest = -math.inf
        n_stress = model.stress_required0.shape[0]
        if n_stress:
            self._stress_lowest = model.stress_required(np.ones(nf))
            stress_rows = model.screen(np.arange(n_stress), max(model.fund_min, self._stress_lowest), stress=True)
            if stress_rows.n_rows:
                self.stress = MaxAffine.of(stress_rows)
        # Rows valid for every level in [min_alpha, max_alpha]: below the smallest root level
        # (largest alpha) or above the largest top (smallest alpha) a scenario never matters.
        level = max(model.fund_min, self._stress_lowest, self._order(lowest, FundRule.quantile(max_alpha, n).allowed))
        top = self._order(highest, FundRule.quantile(self.min_alpha, n).allowed)
        candidates = np.flatnonzero((highest > level) & (lowest <= top))
        rows = model.screen(candidates, level)
        self._candidates = rows.candidates
        # int32 row and scenario indices: half the memory traffic of the gathers each box does
        self.scenario = rows.scenario.astype(np.int32)
        self.required0 = rows.required0
        self.relief = rows.relief
        self._relief_columns = np.ascontiguousarray(rows.relief.T)
        self.cap = solver_cap(model.fund_cap) if math.isfinite(model.fund_cap) else math.inf
        # How much the objective moves per unit of each scaled rate (fund relief plus premium
        # cost): boxes are split along the side with the largest width x sensitivity.
        typical_relief = np.median(rows.relief, axis=0) if rows.n_rows else np.zeros(nf)
        self._sensitivity = model.cost_fund * typical_relief + np.abs(model.cost_rate) + model.curvature + 1e-12
        self.sizes = {"scenarios": n, "candidates": int(candidates.size), "rows": rows.n_rows}

    @staticmethod
    def _order(values: np.ndarray, k: int) -> float:
        """``(k + 1)``-th largest of ``values``, -inf when there are not that many."""
        return kth_largest(values, k + 1) if k < values.size else -math.inf

    # -- pieces of the objective ------------------------------------------------------------------
    def _stress_at(self, u: np.ndarray) -> float:
        """``S(u)``, the largest required fund of a stress scenario at ``u`` (-inf without one)."""
        if self.stress is None:
            return self._stress_lowest if math.isfinite(self._stress_lowest) else -math.inf
        return float(self.stress.evaluate(u)[0].max())

    def rate_cost(self, u: np.ndarray) -> float:
        """``h(u)``, the separable premium and rate-change terms of the scaled objective."""
        model = self.model
        return float(model.cost_rate @ u + model.curvature @ (u * u))

    def _rate_cost_floor(self, lo: np.ndarray, hi: np.ndarray) -> tuple[float, np.ndarray]:
        """``min_{lo <= u <= hi} h(u)`` (separable convex) and where it is attained."""
        model = self.model
        u = np.where(model.cost_rate >= 0.0, lo, hi)
        curved = model.curvature > 0.0
        if np.any(curved):
            vertex = -model.cost_rate[curved] / (2.0 * model.curvature[curved])
            u[curved] = np.clip(vertex, lo[curved], hi[curved])
        return self.rate_cost(u), u

    def _live_values(self, rows: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per live scenario the largest kept row at ``u``; also row values and group starts."""
        scen = self.scenario[rows]
        starts = np.flatnonzero(np.r_[True, scen[1:] != scen[:-1]])
        values = self.required0[rows] - self.relief[rows] @ u
        return np.maximum.reduceat(values, starts), values, starts

    def phi(self, box: _Box, u: np.ndarray) -> float:
        """``Phi(u)`` for ``u`` in ``box`` (exact, from the box's live rows)."""
        phi = max(box.level, self._stress_at(u))
        if box.rows.size and box.budget < box.n_live:
            required = self._live_values(box.rows, u)[0]
            phi = max(phi, self._order(required, box.budget))
        return phi

    # -- boxes ------------------------------------------------------------------------------------
    def _box(self, lo: np.ndarray, hi: np.ndarray, rows: np.ndarray, budget: int, level: float) -> tuple[_Box, float]:
        """Reduce a live set (``rows``, ``budget``, ``level``, valid on a box containing ``[lo, hi]``)
        to the box ``[lo, hi]``. Returns the box and ``Phi(lo)`` (a corner value, for the incumbent)."""
        return self._boxes([(lo, hi)], rows, budget, level)[0]

    def _boxes(
        self, corners: list[tuple[np.ndarray, np.ndarray]], rows: np.ndarray, budget: int, level: float
    ) -> list[tuple[_Box, float]]:
        """:meth:`_box` for several boxes inside the same parent, reading the parent's rows once."""
        if not rows.size:
            out = []
            for lo, hi in corners:
                phi_hi, phi_lo = max(level, self._stress_at(hi)), max(level, self._stress_at(lo))
                bound = self.model.cost_fund * phi_hi + self._rate_cost_floor(lo, hi)[0]
                out.append((_Box(lo, hi, rows, budget, phi_hi, 0, bound if phi_hi <= self.cap else math.inf), phi_lo))
            return out
        scen = self.scenario[rows]
        first_row = np.empty(rows.size, dtype=bool)
        first_row[0] = True
        np.not_equal(scen[1:], scen[:-1], out=first_row[1:])
        starts = np.flatnonzero(first_row)
        counts = np.diff(starts, append=rows.size)
        # every row at each box's hi, lo and centre, then each scenario's largest: R_s at those points;
        # (3 boxes, Jf) @ (Jf, R): contiguous rows, measured 10x faster than (R, Jf) @ (Jf, 3 boxes)
        points = np.concatenate([np.stack([hi, lo, 0.5 * (lo + hi)]) for lo, hi in corners])
        values = points @ self._relief_columns[:, rows]
        np.subtract(self.required0[rows], values, out=values)
        largest = np.maximum.reduceat(values, starts, axis=1)
        return [
            self._reduce(lo, hi, rows, budget, level, starts, counts, values[3 * i : 3 * i + 3], largest[3 * i : 3 * i + 3])
            for i, (lo, hi) in enumerate(corners)
        ]

    def _reduce(
        self,
        lo: np.ndarray,
        hi: np.ndarray,
        rows: np.ndarray,
        budget: int,
        level: float,
        starts: np.ndarray,
        counts: np.ndarray,
        values: np.ndarray,
        largest: np.ndarray,
    ) -> tuple[_Box, float]:
        """The reductions of :class:`ExactBranchAndBound` on one box, from the parent's rows'
        ``values`` (3, R) and per-scenario ``largest`` (3, G) at the box's hi, lo and centre."""
        at_hi, at_lo, at_centre = largest
        q_hi, q_lo = self._order(at_hi, budget), self._order(at_lo, budget)
        phi_hi = max(level, self._stress_at(hi), q_hi)
        phi_lo = max(level, self._stress_at(lo), q_lo)
        # ruined everywhere on the box: drop and spend budget; never above Phi: drop
        ruined = at_hi > q_lo
        live = ~ruined & (at_lo > phi_hi)
        budget -= int(np.count_nonzero(ruined))
        n_live = int(np.count_nonzero(live))
        bound = self.model.cost_fund * phi_hi + self._rate_cost_floor(lo, hi)[0]
        best_hi = np.repeat(at_hi, counts)
        if budget < n_live:
            centre = 0.5 * (lo + hi)
            for point, at_point, row_values in ((hi, at_hi, values[0]), (centre, at_centre, values[2])):
                active = row_values == (best_hi if point is hi else np.repeat(at_point, counts))
                bound = max(bound, self._tangent_bound(lo, hi, point, rows, starts, active, at_point, live, budget))
        # a row below Phi(hi) on the whole box, or below its scenario's best row at hi, never sets R_s
        keep = np.repeat(live, counts) & (values[1] > phi_hi) & (values[1] >= best_hi)
        if phi_hi > self.cap:
            bound = math.inf
        return _Box(lo, hi, rows[keep], budget, phi_hi, n_live, bound), phi_lo

    def _tangent_bound(
        self,
        lo: np.ndarray,
        hi: np.ndarray,
        point: np.ndarray,
        rows: np.ndarray,
        starts: np.ndarray,
        active: np.ndarray,
        at_point: np.ndarray,
        live: np.ndarray,
        budget: int,
    ) -> float:
        """A lower bound of the objective on ``[lo, hi]`` from tangents of the live ``R_s`` at ``point``.

        Convexity gives ``R_s(u) >= l_s(u) = R_s(point) - gamma_s @ (u - point)``,
        ``gamma_s >= 0`` the relief of the row of s active at ``point`` (``active``, per row:
        ``at_point`` is each scenario's largest row there). Order statistics are monotone, so
        for every u in the box::

            cost_fund Phi(u) + h(u) >= (budget + 1)-th largest of  cost_fund l_s(u) + h(u)
                                    >= (budget + 1)-th largest of  m_s,
            m_s = min_{box} cost_fund l_s + h      (separable: a closed form per rate)

        Unlike ``cost_fund Phi(hi) + min h`` this sees that premiums lower the fund target:
        near an interior optimum, where the two nearly cancel, its error is the spread of the
        live scenarios' slopes instead of the slopes themselves.
        """
        hit = np.flatnonzero(active)
        group = np.searchsorted(starts, hit, side="right") - 1
        first = hit[np.r_[True, group[1:] != group[:-1]]]
        model = self.model
        live_groups = np.flatnonzero(live)
        gamma = self.relief[rows[first[live_groups]]]
        # m_s = cost_fund (R_s(point) + gamma_s @ point) + sum_j min_{u_j} (cost_rate_j - cost_fund gamma_sj) u_j + curvature_j u_j^2
        linear = model.cost_rate[None, :] - model.cost_fund * gamma
        u = np.where(linear >= 0.0, lo, hi)
        curved = model.curvature > 0.0
        if np.any(curved):
            u[:, curved] = np.clip(-linear[:, curved] / (2.0 * model.curvature[curved]), lo[curved], hi[curved])
        least = model.cost_fund * (at_point[live_groups] + gamma @ point) + (linear * u + model.curvature * u * u).sum(axis=1)
        return self._order(least, budget)

    # -- the search ---------------------------------------------------------------------------------
    def solve_scaled(
        self, alpha: float, *, rtol: float = 1e-7, time_limit: float = 60.0, started: float | None = None
    ) -> tuple[np.ndarray, float, dict[str, Any]]:
        """Optimal scaled rates at level ``alpha``, their scaled objective (without the constant) and diagnostics.

        ``info["converged"]`` is False when ``time_limit`` (seconds from ``started``) ran out;
        ``info["gap"]`` is the relative distance between the answer and the lowest bound of the
        boxes left open (0 when converged).
        """
        if not self.min_alpha * (1 - 1e-12) <= alpha <= self.max_alpha * (1 + 1e-12):
            raise ValueError(f"alpha = {alpha} is outside the levels [{self.min_alpha}, {self.max_alpha}] screened for")
        started = time.perf_counter() if started is None else started
        model = self.model
        nf = model.n_free
        n = model.n_scenarios
        k = FundRule.quantile(alpha, n).allowed
        highest, lowest = model.required_range()
        q_one, q_zero = self._order(lowest, k), self._order(highest, k)
        ruined = int(np.count_nonzero(lowest > q_zero))
        level = max(model.fund_min, self._stress_at(np.ones(nf)), q_one)
        keep = (highest[self._candidates] > level) & (lowest[self._candidates] <= q_zero)
        rows = np.flatnonzero(keep[self.scenario] & (self.required0 > level)).astype(np.int32)

        search = _Incumbent(self, rtol)
        if level <= model.fund_cap:
            # premium_max is feasible whenever anything is (fund_max tightening aside)
            search.best_u, search.best = np.ones(nf), model.cost_fund * level + self.rate_cost(np.ones(nf))
        root, phi_lo = self._box(np.zeros(nf), np.ones(nf), rows, k - ruined, level)
        search.offer(root.lo, phi_lo, root)
        if search.best_box is None:
            search.best_box = root
        info: dict[str, Any] = {**self.sizes, "root_live": root.n_live, "boxes": 1, "leaves": 0, "milp_rounds": 0}
        heap: list[tuple[float, int, _Box]] = [(root.bound, 0, root)]
        counter = 1
        converged = True
        while heap:
            time_left = time_limit - (time.perf_counter() - started)
            if time_left <= 0.0:
                converged = False
                break
            bound, _, box = heapq.heappop(heap)
            if bound >= search.cutoff():
                continue
            if self._is_leaf(box):
                info["leaves"] += 1
                left = self._solve_leaf(box, search, info, time_left)
                if left is None or left >= search.cutoff():
                    continue
                box.bound = max(box.bound, left)
                if time.perf_counter() - started >= time_limit or not np.any(box.hi - box.lo > 1e-12):
                    heapq.heappush(heap, (box.bound, counter, box))
                    converged = False
                    break
            # split in two along the side with the largest width x sensitivity
            side = int(np.argmax((box.hi - box.lo) * self._sensitivity))
            middle = 0.5 * (box.lo[side] + box.hi[side])
            halves = []
            for lo_side, hi_side in ((box.lo[side], middle), (middle, box.hi[side])):
                lo, hi = box.lo.copy(), box.hi.copy()
                lo[side], hi[side] = lo_side, hi_side
                halves.append((lo, hi))
            for child, phi_lo in self._boxes(halves, box.rows, box.budget, box.level):
                child.bound = max(child.bound, box.bound)
                info["boxes"] += 1
                search.offer(child.hi, child.level, child)
                search.offer(child.lo, phi_lo, child)
                if child.bound < search.cutoff():
                    heapq.heappush(heap, (child.bound, counter, child))
                    counter += 1
        if time.perf_counter() - started < time_limit:
            self._polish(search, root, info, time_limit - (time.perf_counter() - started))
        open_bound = min((item[0] for item in heap), default=math.inf)
        info["converged"] = converged
        scale = max(abs(search.best + model.cost_constant), 1e-12)
        info["gap"] = 0.0 if converged else max(0.0, search.best - open_bound) / scale
        info["seconds_search"] = time.perf_counter() - started
        return search.best_u, search.best, info

    def _polish(self, search: _Incumbent, root: _Box, info: dict[str, Any], time_left: float) -> None:
        """Solve a small box around the answer exactly.

        The search stops when no box can beat the answer by more than rtol; where the objective
        is flat (a rate-change penalty's quadratic bottom) the answer can then sit ``~sqrt(rtol)``
        from the optimum in the rates. The optimum of a small box around it, inside the box it
        was found in (by the leaf program, with the exact convex program for its discard set),
        puts it on the optimum, as the reference program's final convex solve does.
        """
        # the live set of the box the answer was found in if it holds the polishing box, else the root's
        home = None
        for half_width in (1e-2, 2e-3, 4e-4, 1e-4):
            lo = np.clip(search.best_u - half_width, 0.0, 1.0)
            hi = np.clip(search.best_u + half_width, 0.0, 1.0)
            if home is None:
                found = search.best_box
                home = found if np.all(found.lo <= lo) and np.all(hi <= found.hi) else root
            box = self._box(lo, hi, home.rows, home.budget, home.level)[0]
            if box.n_live <= 4 * self.leaf_size or self._is_leaf(box):
                break
            # the next, narrower box around the same point lies inside this one: reduce from its
            # live set instead of the root's again (the reductions are identities on the box)
            home = box
        else:
            return
        if math.isfinite(box.bound):
            info["polish_live"] = box.n_live
            self._solve_leaf(box, search, info, time_left, polish=True)

    def fit_under_cap(self, box: _Box, u: np.ndarray) -> tuple[np.ndarray, float]:
        """The point nearest ``u`` on the segment to ``box.hi`` with ``Phi <= fund_max`` (bisection;
        ``Phi`` is non-increasing along it and ``Phi(hi) = level <= fund_max``)."""
        low, high = 0.0, 1.0
        for _ in range(50):
            middle = 0.5 * (low + high)
            if self.phi(box, u + middle * (box.hi - u)) <= self.cap:
                high = middle
            else:
                low = middle
        point = u + high * (box.hi - u)
        return point, self.phi(box, point)

    def _is_leaf(self, box: _Box) -> bool:
        return (
            box.n_live <= self.leaf_size
            or box.budget <= 0
            or box.budget >= box.n_live
            or float(np.max(box.hi - box.lo)) <= _LEAF_WIDTH
        )

    def _solve_leaf(
        self, box: _Box, search: _Incumbent, info: dict[str, Any], time_left: float, polish: bool = False
    ) -> float | None:
        """Solve the box exactly; None when closed, else the lower bound proven on it."""
        if box.n_live == 0 or box.budget >= box.n_live:
            # Phi = max(level, S(u)) on the box: with no stress scenario above the level, flat
            if self.stress is None or self._stress_at(box.lo) <= box.level:
                search.offer(self._rate_cost_floor(box.lo, box.hi)[1], box.level, box)
                return None
        return leaf_milp(self, box, search, info, time_left, polish)

    # -- the Policy -------------------------------------------------------------------------------
    def solve(
        self, alpha: float, *, rtol: float = 1e-7, time_limit: float = 60.0, started: float | None = None
    ) -> Policy:
        """Solve at level ``alpha``; the Policy is checked in numpy like every method's."""
        started = time.perf_counter() if started is None else started
        model = self.model
        n = model.n_scenarios
        rule = FundRule.quantile(alpha, n)
        u, value, info = self.solve_scaled(alpha, rtol=rtol, time_limit=time_limit, started=started)
        point = checked_point(model, rule, u)
        claimed = (value + model.cost_constant) * model.objective_scale
        status = "optimal" if info["converged"] else "feasible"
        if not info["converged"]:
            info["reason"] = (
                f"branch and bound stopped at the time limit ({time_limit:g} s) with {info['boxes']} boxes, "
                f"relative gap {info['gap']:.2g}"
            )
        elif not agree(point.objective - model.floor_cost, claimed, model.objective_scale):
            status = "feasible"
            info["reason"] = (
                f"the numpy check's objective {point.objective!r} disagrees with the search's {claimed!r}"
            )
        info["seconds"] = time.perf_counter() - started
        return make_policy(model, "exact", point, alpha=alpha, status=status, solver="branch and bound", details=info)


def leaf_milp(
    engine: ExactBranchAndBound, box: _Box, search: _Incumbent, info: dict[str, Any], time_left: float, polish: bool = False
) -> float | None:
    """The big-M program of "exact" on one box (scaled units, ``level = Phi(hi)``)::

        minimise    cost_fund f + cost_rate @ u + sum_j w_j
        subject to  f + relief[r] @ u + (value_lo[r] - level) z_s >= required0[r]   live rows r of scenario s
                    f + relief @ u >= required0                                   stress rows above level
                    sum_s z_s <= budget,   level <= f <= fund_max,   lo <= u <= hi,   z binary
                    w_j >= tangents of curvature_j u_j^2                          (rate penalty only)

    ``value_lo[r] - level`` is the tightest big-M (the row's largest value on the box). Each
    answer's rates are offered to the incumbent with their exact fund target. (A cut-off row
    "objective <= incumbent" was measured 1-4x slower: HiGHS proves infeasibility more slowly
    than it finds the optimum of these small programs.) Returns None when the box is closed
    (solved, or its bound within rtol of the incumbent unless ``polish``, which asks for the
    box's optimum itself), else the bound proven when time or the outer-approximation rounds
    ran out.
    """
    model = engine.model
    nf = model.n_free
    rows = box.rows
    n_live = 0
    if rows.size:
        scen = engine.scenario[rows]
        group = np.cumsum(np.r_[0, scen[1:] != scen[:-1]])
        value_lo = engine.required0[rows] - engine.relief[rows] @ box.lo
        n_live = int(group[-1]) + 1 if box.budget > 0 else 0
    blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]] = []
    if rows.size:
        blocks.append((engine.relief[rows], engine.required0[rows], value_lo - box.level if n_live else None, group))
    if engine.stress is not None:
        stress = engine.stress.rows
        high = stress.required0 - stress.relief @ box.lo > box.level
        if np.any(high):
            blocks.append((stress.relief[high], stress.required0[high], None, None))
    curved = np.flatnonzero(model.curvature > 0.0)
    n_var = 1 + nf + n_live + curved.size
    col_z, col_w = 1 + nf, 1 + nf + n_live

    # dense: these programs have a few dozen rows and columns (sparse assembly cost more than HiGHS)
    matrix_rows: list[np.ndarray] = []
    lower: list[np.ndarray] = []
    upper: list[np.ndarray] = []
    for relief, required0, big_m, grp in blocks:
        block = np.zeros((required0.size, n_var))
        block[:, 0] = 1.0
        block[:, 1 : 1 + nf] = relief
        if big_m is not None:
            block[np.arange(required0.size), col_z + grp] = big_m
        matrix_rows.append(block)
        lower.append(required0)
        upper.append(np.full(required0.size, np.inf))
    cost = np.zeros(n_var)
    cost[0] = model.cost_fund
    cost[1 : 1 + nf] = model.cost_rate
    cost[col_w:] = 1.0
    if n_live:
        budget_row = np.zeros((1, n_var))
        budget_row[0, col_z:col_w] = 1.0
        matrix_rows.append(budget_row)
        lower.append(np.array([-np.inf]))
        upper.append(np.array([float(box.budget)]))
    low_bounds = np.r_[box.level, box.lo, np.zeros(n_live), model.curvature[curved] * box.lo[curved] ** 2]
    high_bounds = np.r_[engine.cap, box.hi, np.ones(n_live), model.curvature[curved] * box.hi[curved] ** 2]
    integrality = np.zeros(n_var, dtype=np.int64)
    integrality[col_z:col_w] = 1

    def tangents(points: np.ndarray) -> None:
        # w_j >= curvature_j (2 v u_j - v^2), the tangent of curvature_j u_j^2 at u_j = v
        for i, j in enumerate(curved):
            v = np.atleast_1d(points[..., j])
            block = np.zeros((v.size, n_var))
            block[:, col_w + i] = 1.0
            block[:, 1 + j] = -2.0 * model.curvature[j] * v
            matrix_rows.append(block)
            lower.append(-model.curvature[j] * v * v)
            upper.append(np.full(v.size, np.inf))

    if curved.size:
        tangents(np.stack([box.lo, 0.5 * (box.lo + box.hi), box.hi]))
    started = time.perf_counter()
    bound = box.bound
    for _ in range(_OA_ROUNDS):
        remaining = time_left - (time.perf_counter() - started)
        if remaining <= 0.0:
            return bound
        matrix = np.vstack(matrix_rows)
        result = quiet_milp(
            cost,
            integrality=integrality,
            bounds=optimize.Bounds(low_bounds, high_bounds),
            constraints=[optimize.LinearConstraint(matrix, np.concatenate(lower), np.concatenate(upper))],
            options={"time_limit": remaining, "mip_rel_gap": 1e-9, "disp": False},
        )
        info["milp_rounds"] += 1
        if result.x is None:
            # infeasible: nothing in the box is cheaper than the best answer; or out of time
            return None if result.status == 2 else bound
        u = np.clip(result.x[1 : 1 + nf], box.lo, box.hi)
        phi = engine.phi(box, u)
        if phi > engine.cap:
            # fund_max binds and HiGHS met it to its tolerance only: step toward hi until it fits
            u, phi = engine.fit_under_cap(box, u)
        search.offer(u, phi, box)
        exact = model.cost_fund * phi + engine.rate_cost(u) <= float(result.fun) + _MILP_SLACK * max(
            1.0, abs(float(result.fun))
        )
        refined = None
        if curved.size:
            # the convex program for the discard set the answer chose, solved exactly: tangents
            # at its answer make the next round's bound exact for that set (outer approximation)
            ruined = result.x[col_z:col_w] > 0.5 if n_live else np.zeros(0, dtype=bool)
            refined = kept_program(engine, box, rows[~ruined[group]] if n_live else rows)
            if refined is not None:
                search.offer(refined, engine.phi(box, refined), box)
        dual = getattr(result, "mip_dual_bound", None)
        dual = float(result.fun) if dual is None or not math.isfinite(dual) else float(dual)
        bound = max(bound, dual)
        if result.status != 0:
            return bound
        if (bound >= search.cutoff() and not polish) or (exact and not curved.size):
            return None
        if not curved.size:
            return bound
        # Kelley's test: tangents exact at the answer make its value the box's optimum
        shortfall = float(model.curvature[curved] @ (u[curved] ** 2)) - float(result.x[col_w:].sum())
        if shortfall <= LEAF_KELLEY_TOL * max(1.0, abs(float(result.fun))):
            return None
        tangents(u[None, :] if refined is None else np.stack([u, refined]))
    return bound


def kept_program(engine: ExactBranchAndBound, box: _Box, rows: np.ndarray) -> np.ndarray | None:
    """Rates minimising the objective on ``box`` when every scenario of ``rows`` must survive (Clarabel).

    The convex program (scaled units)::

        minimise    cost_fund f + cost_rate @ u + curvature @ u^2
        subject to  f + relief[r] @ u >= required0[r]     rows r, and stress rows
                    level <= f <= fund_max,   lo <= u <= hi

    Returns None when Clarabel does not solve it (the caller then relies on its cuts alone).
    """
    model = engine.model
    relief = [engine.relief[rows]]
    required0 = [engine.required0[rows]]
    if engine.stress is not None:
        relief.append(engine.stress.rows.relief)
        required0.append(engine.stress.rows.required0)
    solution = survival_qp(model, np.concatenate(relief), np.concatenate(required0), box.level, box.lo, box.hi,
                            engine.cap)
    if str(solution.status) not in ("Solved", "AlmostSolved"):
        return None
    return np.clip(np.asarray(solution.x)[1:], box.lo, box.hi)
