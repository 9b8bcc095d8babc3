"""Fast paths: cutting planes in the (1 + J)-dimensional decision space (issue 5's route).

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
                theta >= stress floor, theta >= 0, theta <= fund_max,   0 <= u <= 1

is solved by Clarabel called directly (silent, no modelling overhead), falling back to scipy's
HiGHS (``linprog``) when there is no quadratic term.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import clarabel
import numpy as np
import scipy.sparse as sp
from scipy import optimize

from fundguard.models.errors import SolverError

from .check import FundRule, check_cap, checked_point, make_policy, solver_cap, var_index
from .fund import FundModel, ScreenedRows, allowed_ruins, kth_largest, sample_cvar
from .policy import Policy

__all__ = ["CvarCuttingPlane", "MaxAffine"]


@dataclass(frozen=True, eq=False)
class MaxAffine:
    """Screened rows grouped by scenario, evaluated as ``R_s(u) = max_t (a - g @ u)`` per scenario.

    Attributes
    ----------
    rows : ScreenedRows
        Rows sorted by scenario (as :meth:`FundModel.screen` returns them).
    starts : (K,) int
        First row of each candidate scenario.
    """

    rows: ScreenedRows
    starts: np.ndarray

    @classmethod
    def of(cls, rows: ScreenedRows) -> MaxAffine:
        """Group ``rows`` (row scenario indices non-decreasing) by scenario."""
        starts = np.flatnonzero(np.r_[True, np.diff(rows.scenario) != 0]) if rows.n_rows else np.zeros(0, dtype=np.int64)
        return cls(rows=rows, starts=starts)

    @property
    def n_groups(self) -> int:
        """Scenarios with at least one row."""
        return int(self.starts.size)

    def evaluate(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(values, active_row)``: each scenario's required fund at ``u`` and its worst row."""
        rows = self.rows
        values = rows.required0 - rows.relief @ u
        best = np.maximum.reduceat(values, self.starts)
        # the first row of each group attaining its maximum
        counts = np.diff(np.r_[self.starts, rows.n_rows])
        hit = np.flatnonzero(values == np.repeat(best, counts))
        group_of_hit = np.searchsorted(self.starts, hit, side="right") - 1
        first = np.unique(group_of_hit, return_index=True)[1]
        return best, hit[first]


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
        n = model.n_scenarios
        highest, lowest = model.required_range()
        self._lowest = lowest
        screen_level = kth_largest(lowest, var_index(max_alpha, n))
        candidates = np.flatnonzero(highest > screen_level)
        self._random = MaxAffine.of(model.screen(candidates, screen_level))
        n_stress = model.stress_required0.shape[0]
        self._stress_lowest = 0.0
        self._stress: MaxAffine | None = None
        if n_stress:
            self._stress_lowest = max(0.0, model.stress_required(np.ones(model.n_free)))
            stress_rows = model.screen(np.arange(n_stress), self._stress_lowest, stress=True)
            if stress_rows.n_rows:
                self._stress = MaxAffine.of(stress_rows)
        self.sizes = {"scenarios": n, "candidates": int(candidates.size), "rows": self._random.rows.n_rows}

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
        if not self._random.n_groups:
            return var_floor, np.zeros(nf)
        values, active = self._random.evaluate(u)
        top = min(values.size, var_index(alpha, self.model.n_scenarios))
        order = np.argpartition(-values, top - 1)[:top]
        order = order[np.argsort(-values[order], kind="stable")]
        top_values = values[order]
        weights = np.minimum(1.0 / m, np.maximum(0.0, 1.0 - np.arange(top) / m))
        weights[top_values <= var_floor] = 0.0
        value = float(weights @ top_values) + (1.0 - float(weights.sum())) * var_floor
        gradient = -(weights @ self._random.rows.relief[active[order]])
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
        var_floor = kth_largest(self._lowest, var_index(alpha, model.n_scenarios))
        theta_low = max(0.0, self._stress_lowest)
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
            u, lower, master_solver = _master(
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
        info = {
            **self.sizes,
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
        check_cap(model, sample_cvar(self._lowest, alpha), self._stress_lowest, f"CVaR_{alpha:g} of the required fund <= F0")
        u, info = self.solve_scaled(alpha)
        point = checked_point(model, FundRule("cvar", alpha, allowed_ruins(alpha, n)), u)
        info["seconds"] = time.perf_counter() - start
        status = "optimal" if info["converged"] else "feasible"
        if not info["converged"]:
            info["reason"] = f"cutting planes stopped after {info['cut_rounds']} rounds, relative gap {info['gap']:.2g}"
        return make_policy(
            model, "cvar", point, alpha=alpha, status=status, solver=f"cutting planes ({info['master_solver']})",
            details=info,
        )


def _master(
    model: FundModel,
    points: np.ndarray,
    values: np.ndarray,
    slopes: np.ndarray,
    theta_low: float,
    theta_high: float,
) -> tuple[np.ndarray, float, str]:
    """Solve the master program over the cuts; returns ``(u, lower bound, solver)``."""
    nf = model.n_free
    n_cuts = values.size
    # cut i:  -theta + slope_i @ u <= slope_i @ u_i - value_i
    cut_matrix = np.hstack([-np.ones((n_cuts, 1)), slopes])
    cut_rhs = np.einsum("ij,ij->i", slopes, points) - values
    try:
        return _master_clarabel(model, cut_matrix, cut_rhs, theta_low, theta_high)
    except SolverError:
        if np.any(model.curvature > 0.0):
            raise
    return _master_linprog(model, cut_matrix, cut_rhs, theta_low, theta_high, nf)


def _master_clarabel(
    model: FundModel, cut_matrix: np.ndarray, cut_rhs: np.ndarray, theta_low: float, theta_high: float
) -> tuple[np.ndarray, float, str]:
    nf = model.n_free
    n_var = 1 + nf
    identity = np.eye(n_var)
    blocks = [cut_matrix, -identity[:1], -identity[1:], identity[1:]]
    rhs = [cut_rhs, [-theta_low], np.zeros(nf), np.ones(nf)]
    if math.isfinite(theta_high):
        blocks.append(identity[:1])
        rhs.append([theta_high])
    matrix = sp.csc_matrix(np.vstack(blocks))
    bound = np.concatenate([np.asarray(r, dtype=np.float64) for r in rhs])
    hessian = sp.csc_matrix(np.diag(np.r_[0.0, 2.0 * model.curvature]))
    linear = np.r_[model.cost_fund, model.cost_rate]
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = 1e-10
    settings.tol_feas = 1e-10
    solver = clarabel.DefaultSolver(hessian, linear, matrix, bound, [clarabel.NonnegativeConeT(bound.size)], settings)
    solution = solver.solve()
    if str(solution.status) not in ("Solved", "AlmostSolved"):
        raise SolverError(f"Clarabel: {solution.status}")
    x = np.asarray(solution.x)
    u = np.clip(x[1:], 0.0, 1.0)
    # the lower bound is the master's optimum; Clarabel's dual objective is a valid one too
    lower = float(solution.obj_val) + model.cost_constant
    return u, min(lower, float(solution.obj_val_dual) + model.cost_constant), "CLARABEL"


def _master_linprog(
    model: FundModel, cut_matrix: np.ndarray, cut_rhs: np.ndarray, theta_low: float, theta_high: float, nf: int
) -> tuple[np.ndarray, float, str]:
    bounds = [(theta_low, theta_high if math.isfinite(theta_high) else None)] + [(0.0, 1.0)] * nf
    result = optimize.linprog(
        np.r_[model.cost_fund, model.cost_rate], A_ub=cut_matrix, b_ub=cut_rhs, bounds=bounds, method="highs"
    )
    if result.status != 0:
        raise SolverError(f"every master solver failed: HiGHS {result.message}")
    return np.clip(result.x[1:], 0.0, 1.0), float(result.fun) + model.cost_constant, "HIGHS"
