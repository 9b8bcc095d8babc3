"""Solver pieces the methods share: per-scenario maxima of affine rows, the convex program in
(fund target, scaled rates), the cutting-plane master, the robust program in cvxpy, option checks.

All in scaled units of a :class:`~fundguard.optimizer.fund.FundModel`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import clarabel
import cvxpy as cp
import numpy as np
import scipy.sparse as sp
from scipy import optimize

from fundguard.models.errors import (
    ProblemError,
    SolverError,
)

from ..fund import (
    FundModel,
    ScreenedRows,
    solver_cap,
)

__all__ = [
    "MaxAffine",
    "RobustProgram",
    "fund_rate_qp",
    "survival_qp",
    "cutting_plane_master",
    "box_min",
    "check_positive",
    "check_fractions",
]


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


def fund_rate_qp(
    model: FundModel, rows: np.ndarray, rhs: np.ndarray, f_lo: float, lo: np.ndarray, hi: np.ndarray, cap: float
) -> Any:
    """Clarabel's solution of the convex program in ``x = (f, u)`` (scaled units)::

        minimise    cost_fund f + cost_rate @ u + curvature @ u^2
        subject to  rows @ x <= rhs
                    f_lo <= f <= cap,   lo <= u <= hi

    ``solution.x`` is ``(f, u)``; ``solution.z[:len(rhs)]`` the rows' multipliers. The survival
    program of a set of kept rows ``f + relief @ u >= required0`` passes
    ``rows = -[1, relief]``, ``rhs = -required0``; the cutting-plane master passes its cuts.
    """
    nf = model.n_free
    identity = np.eye(1 + nf)
    blocks = [rows, -identity[:1], -identity[1:], identity[1:]]
    bounds = [rhs, [-f_lo], -lo, hi]
    if math.isfinite(cap):
        blocks.append(identity[:1])
        bounds.append([cap])
    matrix = sp.csc_matrix(np.vstack(blocks))
    bound = np.concatenate([np.asarray(r, dtype=np.float64) for r in bounds])
    hessian = sp.csc_matrix(np.diag(np.r_[0.0, 2.0 * model.curvature]))
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = 1e-10
    settings.tol_feas = 1e-10
    return clarabel.DefaultSolver(
        hessian, np.r_[model.cost_fund, model.cost_rate], matrix, bound, [clarabel.NonnegativeConeT(bound.size)], settings
    ).solve()


def survival_qp(
    model: FundModel, relief: np.ndarray, required0: np.ndarray, f_lo: float, lo: np.ndarray, hi: np.ndarray, cap: float
) -> Any:
    """:func:`fund_rate_qp` with every row ``f + relief[r] @ u >= required0[r]`` (kept rows must survive)."""
    rows = -np.hstack([np.ones((relief.shape[0], 1)), relief])
    return fund_rate_qp(model, rows, -required0, f_lo, lo, hi, cap)


def cutting_plane_master(
    model: FundModel,
    points: np.ndarray,
    values: np.ndarray,
    slopes: np.ndarray,
    theta_low: float,
    theta_high: float,
) -> tuple[np.ndarray, float, str]:
    """The cutting-plane master over the cuts ``theta >= values_i + slopes_i @ (u - points_i)``:
    ``(u, lower bound, solver)`` (Clarabel, HiGHS's ``linprog`` when there is no quadratic term)."""
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
    solution = fund_rate_qp(model, cut_matrix, cut_rhs, theta_low, np.zeros(nf), np.ones(nf), theta_high)
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


def box_min(linear: float, quadratic: float) -> float:
    """``min_{u in [0, 1]} linear u + quadratic u^2`` (quadratic >= 0)."""
    if quadratic > 0.0:
        u = min(1.0, max(0.0, -linear / (2.0 * quadratic)))
    else:
        u = 0.0 if linear >= 0.0 else 1.0
    return linear * u + quadratic * u * u


def check_positive(name: str, value: object) -> float:
    """``value`` as a positive finite float; ProblemError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ProblemError(f"{name} must be a positive number, got {value!r}")
    out = float(value)
    if not out > 0.0 or not math.isfinite(out):
        raise ProblemError(f"{name} must be a positive finite number, got {value!r}")
    return out


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Three positive shares summing to one (train, select, certify); ProblemError otherwise."""
    try:
        shares = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise ProblemError(f"fractions must be three numbers (train, select, certify), got {fractions!r}") from None
    if len(shares) != 3 or min(shares) <= 0.0 or abs(sum(shares) - 1.0) > 1e-9:
        raise ProblemError(f"fractions must be three positive shares summing to 1, got {fractions!r}")
    return shares  # type: ignore[return-value]
