"""Method "cvar": ``CVaR_alpha( max_t (floor - F[s, t]) ) <= 0`` (Rockafellar–Uryasev), a convex,
conservative stand-in for the chance constraint.

The reference formulation (:class:`CvarFormulation`, cvxpy, compiled once and re-solved per
level) and the fast engine (:class:`CvarCuttingPlane`, Kelley's cutting planes in the
(1 + J)-dimensional decision space) side by side; both reach the same optimum.

Cutting planes
--------------

For fixed premium rates the "cvar" fund target is a closed form (the sample CVaR of the required
funds), and as a function of the scaled rates ``u`` it is convex and piecewise linear:

    Phi(u) = max( CVaR_alpha(R(u)), max_stress R_s(u), 0 ),   R_s(u) = max_t (a[s, t] - g[s, t] @ u)

so "cvar" is ``min_u cost_fund * Phi(u) + h(u)`` over the box ``[0, 1]^Jf`` (``h`` the separable
convex premium and rate-change terms), a convex program in ``Jf <= a handful`` variables. Kelley's
cutting-plane method solves it: every evaluation of ``Phi`` (one numpy pass over the screened
rows) gives a value and a subgradient, hence a supporting hyperplane; a tiny master program over
the hyperplanes found so far gives a lower bound and the next point. It stops when the best
value found is within ``rtol`` of the lower bound, so the answer is the optimum of the same
program the cvxpy reference solves, not an approximation of it.

Subgradient of the CVaR part: the sample CVaR is a maximum of weighted sums of the ``R_s``
(its dual form, weights ``0 <= w_s <= 1 / (alpha N)`` summing to one), so the maximising weights
give the subgradient ``sum_s w_s grad R_s(u)``, with ``grad R_s = -g[s, t*]`` at the scenario's
worst period (see :meth:`CvarCuttingPlane._cvar_cut`).

The master program (scaled units, ``theta`` the fund target)::

    minimise    cost_fund theta + cost_rate @ u + curvature @ u^2
    subject to  theta >= Phi(u_i) + gamma_i @ (u - u_i)      every cut i
                theta >= stress floor, theta >= fund_min (F0 >= 0), theta <= fund_max,   0 <= u <= 1

is solved by Clarabel called directly (silent, no modelling overhead), falling back to scipy's
HiGHS (``linprog``) when there is no quadratic term.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import cvxpy as cp
import numpy as np
from scipy import stats

from fundguard.models import ScenarioSet
from fundguard.models.errors import (
    ProblemError,
    SolverError,
)

from ..fund import (
    CheckedPoint,
    FundModel,
    FundRule,
    agree,
    check_cap,
    checked_point,
    closed_form,
    cvar_screen,
    make_policy,
    sample_cvar,
    screened_stress,
    solver_cap,
)
from ..policy import Policy
from ..problem import PolicyProblem
from ..solvers import (
    check_solvers,
    solve_with_fallback,
)

from .shared import (
    MaxAffine,
    cutting_plane_master,
)

__all__ = [
    "tail_review",
    "TAIL_INDEX_LIMIT",
    "CvarFormulation",
    "CvarCuttingPlane",
    "CVXPY_MAX_ROWS",
    "CVAR_ENGINES",
    "cvar_engine",
    "cvar_closed_form",
    "solve_cvar",
    "cvar_levels",
]


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
        rule = FundRule.cvar(alpha, n)
        check_cap(model, sample_cvar(self._lowest, alpha, n), self._stress_lowest, f"CVaR_{alpha:g} of the required fund <= F0")
        self._inv_alpha_n.value = 1.0 / (alpha * n)
        self._var_floor.value = rule.var_floor(self._lowest)
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


class CvarCuttingPlane:
    """Method "cvar" by Kelley's cutting planes; same optimum as :class:`~.methods.CvarFormulation`.

    Parameters
    ----------
    model : FundModel
        With at least one free rate.
    max_alpha : float
        Largest level it will be solved at (the exact screening is done for it).
    rtol : float, default 1e-9
        Stop when ``best - lower bound <= rtol * max(1, |best|)`` (scaled objective, about one).
    max_iter : int, default 500
        Cut rounds before giving up (status "feasible").
    """

    def __init__(self, model: FundModel, max_alpha: float, *, rtol: float = 1e-9, max_iter: int = 500) -> None:
        if model.n_free == 0:
            raise ValueError("CvarCuttingPlane needs at least one free premium rate")
        self.model = model
        self.max_alpha = max_alpha
        self.rtol = rtol
        self.max_iter = max_iter
        self._lowest = model.required_range()[1]
        screen_level, candidates, self._screened = cvar_screen(model, max_alpha)
        self._screen_level = screen_level
        self._random = MaxAffine.of(self._screened)
        self._by_alpha: dict[float, MaxAffine] = {max_alpha: self._random}
        self._stress_lowest, stress_rows = screened_stress(model)
        self._stress = MaxAffine.of(stress_rows) if stress_rows is not None and stress_rows.n_rows else None
        self.sizes = {"scenarios": model.n_scenarios, "candidates": int(candidates.size),
                      "rows": self._random.rows.n_rows}

    def _rows_for(self, alpha: float) -> MaxAffine:
        """The screened rows at level ``alpha``: those screened for ``max_alpha``, screened again
        at alpha's own (higher) VaR floor, so that each level of a frontier costs what it costs alone."""
        if alpha not in self._by_alpha:
            level = FundRule.cvar(alpha, self.model.n_scenarios).var_floor(self._lowest)
            highest = self.model.required_range()[0]
            keep = highest[self._screened.candidates] > level
            self._by_alpha[alpha] = MaxAffine.of(self._screened.restrict(keep, level))
        return self._by_alpha[alpha]

    # -- Phi and its subgradient ---------------------------------------------------------------
    def _cvar_cut(self, u: np.ndarray, alpha: float, var_floor: float) -> tuple[float, np.ndarray]:
        """Scaled CVaR of the required funds at ``u`` and a subgradient (screened rows only).

        Scenarios screened out have ``R_s(u) <= var_floor <= VaR(u)`` everywhere, so with
        ``m = alpha N`` and ``L = var_floor`` (LP duality on the Rockafellar–Uryasev form)::

            CVaR(u) = min_{eta >= L} eta + sum_s (R_s(u) - eta)_+ / m
                    = max { sum_s w_s R_s(u) + (1 - sum_s w_s) L : 0 <= w_s <= 1/m, sum_s w_s <= 1 }

        over the candidate scenarios. The maximising ``w`` gives 1/m to the largest values above
        ``L`` until the weights reach one (the last one fractional), and, the value being a
        maximum of convex functions, ``sum_s w_s grad R_s(u)`` is a subgradient (ties included).
        """
        m = alpha * self.model.n_scenarios
        nf = self.model.n_free
        random = self._rows_for(alpha)
        if not random.n_groups:
            return var_floor, np.zeros(nf)
        values, active = random.evaluate(u)
        top = min(values.size, FundRule.cvar(alpha, self.model.n_scenarios).var_rank)
        order = np.argpartition(-values, top - 1)[:top]
        order = order[np.argsort(-values[order], kind="stable")]
        top_values = values[order]
        weights = np.minimum(1.0 / m, np.maximum(0.0, 1.0 - np.arange(top) / m))
        weights[top_values <= var_floor] = 0.0
        # Pairwise sums, not BLAS dot products: a dot over more than ~10,000 terms (the CVaR tail at
        # N = 1e6, alpha = 1%) sums in an order that depends on the BLAS thread count, and the
        # answer must not.
        value = float(np.sum(weights * top_values)) + (1.0 - float(weights.sum())) * var_floor
        gradient = -(weights[:, None] * random.rows.relief[active[order]]).sum(axis=0)
        return value, gradient

    def _stress_cut(self, u: np.ndarray) -> tuple[float, np.ndarray] | None:
        if self._stress is None:
            return None
        values, active = self._stress.evaluate(u)
        worst = int(values.argmax())
        return float(values[worst]), -self._stress.rows.relief[active[worst]]

    # -- the loop --------------------------------------------------------------------------------
    def solve_scaled(self, alpha: float) -> tuple[np.ndarray, dict[str, Any]]:
        """Optimal scaled rates ``u`` at level ``alpha`` and diagnostics.

        Raises
        ------
        SolverError
            When the master program fails with every solver.
        """
        if alpha > self.max_alpha:
            raise ValueError(f"alpha = {alpha} is above the level {self.max_alpha} the screening was done for")
        model = self.model
        nf = model.n_free
        var_floor = FundRule.cvar(alpha, model.n_scenarios).var_floor(self._lowest)
        # F0 >= 0 and the stress floor; Phi >= CVaR >= the VaR floor makes that a valid bound too,
        # and a far tighter one than F0 >= 0 under a floor far above the losses (see CvarFormulation)
        theta_low = max(model.fund_min, self._stress_lowest, var_floor)
        theta_high = solver_cap(model.fund_cap) if math.isfinite(model.fund_cap) else math.inf
        cut_points: list[np.ndarray] = []
        cut_values: list[float] = []
        cut_slopes: list[np.ndarray] = []

        def add_cuts(u: np.ndarray) -> float:
            value, slope = self._cvar_cut(u, alpha, var_floor)
            cut_points.append(u)
            cut_values.append(value)
            cut_slopes.append(slope)
            phi = value
            stress = self._stress_cut(u)
            if stress is not None:
                cut_points.append(u)
                cut_values.append(stress[0])
                cut_slopes.append(stress[1])
                phi = max(phi, stress[0])
            return max(phi, theta_low)

        # fund_max is already tightened by 1e-7 (solver_cap): a point within 1e-9 of it fits
        fits = theta_high + 1e-9 * max(1.0, theta_high) if math.isfinite(theta_high) else math.inf
        best_u, best = np.ones(nf), math.inf
        for u in (np.ones(nf), np.zeros(nf), np.full(nf, 0.5)):
            phi = add_cuts(u)
            if phi <= fits:
                value = model.scaled_objective(phi, u)
                if value < best:
                    best_u, best = u, value
        lower = -math.inf
        master_solver = ""
        iterations = 0
        while iterations < self.max_iter:
            iterations += 1
            u, lower, master_solver = cutting_plane_master(
                model, np.array(cut_points), np.array(cut_values), np.array(cut_slopes), theta_low, theta_high
            )
            if best - lower <= self.rtol * max(1.0, abs(best)):
                break
            phi = add_cuts(u)
            if phi <= fits:
                value = model.scaled_objective(phi, u)
                if value < best:
                    best_u, best = u, value
        converged = best - lower <= self.rtol * max(1.0, abs(best))
        random = self._rows_for(alpha)
        info = {
            **self.sizes,
            "candidates": random.n_groups,
            "rows": random.rows.n_rows,
            "cut_rounds": iterations,
            "gap": (best - lower) / max(1.0, abs(best)),
            "converged": converged,
            "master_solver": master_solver,
        }
        return best_u, info

    def solve(self, alpha: float) -> Policy:
        """Solve at level ``alpha``; the Policy is checked in numpy like every method's."""
        start = time.perf_counter()
        model = self.model
        n = model.n_scenarios
        check_cap(model, sample_cvar(self._lowest, alpha, n), self._stress_lowest, f"CVaR_{alpha:g} of the required fund <= F0")
        u, info = self.solve_scaled(alpha)
        point = checked_point(model, FundRule.cvar(alpha, n), u)
        info["seconds"] = time.perf_counter() - start
        status = "optimal" if info["converged"] else "feasible"
        if not info["converged"]:
            info["reason"] = f"cutting planes stopped after {info['cut_rounds']} rounds, relative gap {info['gap']:.2g}"
        return make_policy(
            model, "cvar", point, alpha=alpha, status=status, solver=f"cutting planes ({info['master_solver']})",
            details=info,
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


def cvar_closed_form(model: FundModel, alpha: float) -> Policy:
    """Every rate fixed: the "cvar" fund target is the sample CVaR of the required funds (no solver)."""
    rule = FundRule.cvar(alpha, model.n_scenarios)
    lowest = sample_cvar(model.required_range()[1], alpha, model.n_scenarios)
    check_cap(model, lowest, screened_stress(model)[0], f"CVaR_{alpha:g} of the required fund <= F0")
    return closed_form(model, "cvar", rule, alpha)


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
        return cvar_closed_form(model, problem.alpha)
    return cvar_engine(model, problem.alpha, engine, solvers).solve(problem.alpha)


def cvar_levels(model: FundModel, alphas: Sequence[float], options: dict[str, Any]) -> Callable[[float], Policy]:
    """``solve_at(alpha)`` of "cvar" for every level in ``alphas`` on one FundModel: the engine is
    built (and screened) once for the largest level and re-solved per level."""
    solvers = check_solvers(options.get("solver"))
    engine = options.get("engine", "auto")
    if engine not in CVAR_ENGINES:
        raise ProblemError(f"engine must be one of {list(CVAR_ENGINES)}, got {engine!r}")
    if model.n_free == 0:
        return lambda alpha: cvar_closed_form(model, alpha)
    return cvar_engine(model, max(alphas), engine, solvers).solve


#: :func:`tail_review` warns when the generalised Pareto shape fitted to the needs beyond the
#: VaR is at least this: at 1 the tail mean is infinite and the CVaR fund target grows without
#: bound as N grows; from about 0.8 it settles only at sample sizes no run has.
TAIL_INDEX_LIMIT = 0.8
#: Fewest tail scenarios the review fits on (below, it says nothing).
TAIL_MIN_SCENARIOS = 50
#: Most tail scenarios it fits on (the largest ones; the fit's cost stays bounded at large N).
TAIL_MAX_SCENARIOS = 5000


def tail_review(need: np.ndarray, alpha: float) -> dict[str, float] | None:
    """How much the tail mean behind a CVaR fund target rests on a few scenarios.

    Parameters
    ----------
    need : (N,) the fund each random scenario needs at the policy's rates
    alpha : the CVaR level

    Returns
    -------
    dict or None
        ``tail_scenarios`` k (the ``ceil(alpha N)`` largest needs, at most
        :data:`TAIL_MAX_SCENARIOS`), ``largest_share`` (the largest need's share of the tail's total
        excess over the threshold, the (k + 1)-th largest), ``tail_index`` (the maximum-likelihood
        generalised Pareto shape of those excesses, ``scipy.stats.genpareto``; 1 or more: an
        infinite mean) and ``dominated`` (1.0 when the shape is at least :data:`TAIL_INDEX_LIMIT`);
        None with fewer than :data:`TAIL_MIN_SCENARIOS` tail scenarios or a threshold <= 0.
    """
    need = np.asarray(need, dtype=np.float64)
    k = min(int(math.ceil(alpha * need.size)), TAIL_MAX_SCENARIOS)
    if k < TAIL_MIN_SCENARIOS or need.size <= k:
        return None
    top = -np.sort(-np.partition(need, need.size - k - 1)[need.size - k - 1:])  # k + 1 largest, descending
    threshold = float(top[k])
    if not threshold > 0.0:
        return None
    excess = top[:k] - threshold
    total = float(excess.sum())
    if not total > 0.0:
        return None
    share = float(excess[0] / total)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        shape = float(stats.genpareto.fit(excess / float(excess.mean()), floc=0.0)[0])
    return {"tail_scenarios": k, "largest_share": share, "tail_index": shape,
            "dominated": float(shape >= TAIL_INDEX_LIMIT)}
