"""Fast paths in the (1 + J)-dimensional decision space: cutting planes ("cvar"), branch and
bound ("exact"), a working set of rows ("scenario").

All work on the rows left by exact screening (:meth:`~.fund.FundModel.screen`), never on the
whole scenario set, and all return the optimum of the same program the reference formulations
(cvxpy for "cvar" and "scenario", the big-M mixed-integer program for "exact", :mod:`.methods`)
solve; the tests compare them on randomised problems.

Cutting planes for "cvar"
-------------------------

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

Branch and bound for "exact"
----------------------------
See :class:`ExactBranchAndBound`.

Working set for "scenario"
--------------------------
See :class:`RobustWorkingSet`.
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass
from typing import Any

import clarabel
import numpy as np
import scipy.sparse as sp
from scipy import optimize

from fundguard.models.errors import SolverError

from .solvers import quiet_milp
from .fund import (
    FundRule,
    agree,
    check_cap,
    checked_point,
    cvar_screen,
    make_policy,
    screened_stress,
    solver_cap,
    var_index,
)
from .fund import FundModel, ScreenedRows, allowed_ruins, kth_largest, sample_cvar
from .policy import Policy

__all__ = ["CvarCuttingPlane", "ExactBranchAndBound", "RobustWorkingSet", "MaxAffine", "LEAF_SIZE"]


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
            level = kth_largest(self._lowest, var_index(alpha, self.model.n_scenarios))
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
        top = min(values.size, var_index(alpha, self.model.n_scenarios))
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
        var_floor = kth_largest(self._lowest, var_index(alpha, model.n_scenarios))
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
        point = checked_point(model, FundRule("cvar", alpha, allowed_ruins(alpha, n), n_scenarios=n), u)
        info["seconds"] = time.perf_counter() - start
        status = "optimal" if info["converged"] else "feasible"
        if not info["converged"]:
            info["reason"] = f"cutting planes stopped after {info['cut_rounds']} rounds, relative gap {info['gap']:.2g}"
        return make_policy(
            model, "cvar", point, alpha=alpha, status=status, solver=f"cutting planes ({info['master_solver']})",
            details=info,
        )



# ---------------------------------------------------------------------------------------------
# "exact": branch and bound over the rate box
# ---------------------------------------------------------------------------------------------

#: Live scenarios at or below which a box is solved exactly by a small mixed-integer program
#: instead of being split further. Measured (N = 200..1,000,000, J = 1..5): HiGHS needs 5-50 ms
#: for such a box whatever its size up to a few dozen binaries, a box evaluation 0.1-0.5 ms, and
#: 8 gave the lowest total time (48: 1.5-3x slower).
LEAF_SIZE = 8

# Boxes this narrow are solved as leaves whatever their live count: many identical scenarios,
# or an optimum on the fund_max boundary, would otherwise be split without end.
_LEAF_WIDTH = 2.0**-14

# Outer-approximation rounds per box (rate-change penalty) before the box is split instead, and
# Kelley's test: tangents exact at an answer to this relative tolerance count as exact.
_OA_ROUNDS = 30
# A box's answer from HiGHS whose exact objective is within this relative slack of the
# program's value is its optimum up to HiGHS's feasibility tolerance (1e-7 on every row).
_MILP_SLACK = 1e-6
_KELLEY_TOL = 1e-9


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
        if phi <= engine._cap:
            value = engine.model.cost_fund * phi + engine._rate_cost(u)
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
        self._stress: MaxAffine | None = None
        self._stress_lowest = -math.inf
        n_stress = model.stress_required0.shape[0]
        if n_stress:
            self._stress_lowest = model.stress_required(np.ones(nf))
            stress_rows = model.screen(np.arange(n_stress), max(model.fund_min, self._stress_lowest), stress=True)
            if stress_rows.n_rows:
                self._stress = MaxAffine.of(stress_rows)
        # Rows valid for every level in [min_alpha, max_alpha]: below the smallest root level
        # (largest alpha) or above the largest top (smallest alpha) a scenario never matters.
        level = max(model.fund_min, self._stress_lowest, self._order(lowest, allowed_ruins(max_alpha, n)))
        top = self._order(highest, allowed_ruins(self.min_alpha, n))
        candidates = np.flatnonzero((highest > level) & (lowest <= top))
        rows = model.screen(candidates, level)
        self._candidates = rows.candidates
        # int32 row and scenario indices: half the memory traffic of the gathers each box does
        self._scenario = rows.scenario.astype(np.int32)
        self._required0 = rows.required0
        self._relief = rows.relief
        self._relief_columns = np.ascontiguousarray(rows.relief.T)
        self._cap = solver_cap(model.fund_cap) if math.isfinite(model.fund_cap) else math.inf
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
        if self._stress is None:
            return self._stress_lowest if math.isfinite(self._stress_lowest) else -math.inf
        return float(self._stress.evaluate(u)[0].max())

    def _rate_cost(self, u: np.ndarray) -> float:
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
        return self._rate_cost(u), u

    def _live_values(self, rows: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per live scenario the largest kept row at ``u``; also row values and group starts."""
        scen = self._scenario[rows]
        starts = np.flatnonzero(np.r_[True, scen[1:] != scen[:-1]])
        values = self._required0[rows] - self._relief[rows] @ u
        return np.maximum.reduceat(values, starts), values, starts

    def _phi(self, box: _Box, u: np.ndarray) -> float:
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
                out.append((_Box(lo, hi, rows, budget, phi_hi, 0, bound if phi_hi <= self._cap else math.inf), phi_lo))
            return out
        scen = self._scenario[rows]
        first_row = np.empty(rows.size, dtype=bool)
        first_row[0] = True
        np.not_equal(scen[1:], scen[:-1], out=first_row[1:])
        starts = np.flatnonzero(first_row)
        counts = np.diff(starts, append=rows.size)
        # every row at each box's hi, lo and centre, then each scenario's largest: R_s at those points;
        # (3 boxes, Jf) @ (Jf, R): contiguous rows, measured 10x faster than (R, Jf) @ (Jf, 3 boxes)
        points = np.concatenate([np.stack([hi, lo, 0.5 * (lo + hi)]) for lo, hi in corners])
        values = points @ self._relief_columns[:, rows]
        np.subtract(self._required0[rows], values, out=values)
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
        if phi_hi > self._cap:
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
        gamma = self._relief[rows[first[live_groups]]]
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
        k = allowed_ruins(alpha, n)
        highest, lowest = model.required_range()
        q_one, q_zero = self._order(lowest, k), self._order(highest, k)
        ruined = int(np.count_nonzero(lowest > q_zero))
        level = max(model.fund_min, self._stress_at(np.ones(nf)), q_one)
        keep = (highest[self._candidates] > level) & (lowest[self._candidates] <= q_zero)
        rows = np.flatnonzero(keep[self._scenario] & (self._required0 > level)).astype(np.int32)

        search = _Incumbent(self, rtol)
        if level <= model.fund_cap:
            # premium_max is feasible whenever anything is (fund_max tightening aside)
            search.best_u, search.best = np.ones(nf), model.cost_fund * level + self._rate_cost(np.ones(nf))
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

    def _fit_under_cap(self, box: _Box, u: np.ndarray) -> tuple[np.ndarray, float]:
        """The point nearest ``u`` on the segment to ``box.hi`` with ``Phi <= fund_max`` (bisection;
        ``Phi`` is non-increasing along it and ``Phi(hi) = level <= fund_max``)."""
        low, high = 0.0, 1.0
        for _ in range(50):
            middle = 0.5 * (low + high)
            if self._phi(box, u + middle * (box.hi - u)) <= self._cap:
                high = middle
            else:
                low = middle
        point = u + high * (box.hi - u)
        return point, self._phi(box, point)

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
            if self._stress is None or self._stress_at(box.lo) <= box.level:
                search.offer(self._rate_cost_floor(box.lo, box.hi)[1], box.level, box)
                return None
        return _leaf_milp(self, box, search, info, time_left, polish)

    # -- the Policy -------------------------------------------------------------------------------
    def solve(
        self, alpha: float, *, rtol: float = 1e-7, time_limit: float = 60.0, started: float | None = None
    ) -> Policy:
        """Solve at level ``alpha``; the Policy is checked in numpy like every method's."""
        started = time.perf_counter() if started is None else started
        model = self.model
        n = model.n_scenarios
        k = allowed_ruins(alpha, n)
        rule = FundRule("quantile", alpha, k)
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


def _leaf_milp(
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
        scen = engine._scenario[rows]
        group = np.cumsum(np.r_[0, scen[1:] != scen[:-1]])
        value_lo = engine._required0[rows] - engine._relief[rows] @ box.lo
        n_live = int(group[-1]) + 1 if box.budget > 0 else 0
    blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]] = []
    if rows.size:
        blocks.append((engine._relief[rows], engine._required0[rows], value_lo - box.level if n_live else None, group))
    if engine._stress is not None:
        stress = engine._stress.rows
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
    high_bounds = np.r_[engine._cap, box.hi, np.ones(n_live), model.curvature[curved] * box.hi[curved] ** 2]
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
        phi = engine._phi(box, u)
        if phi > engine._cap:
            # fund_max binds and HiGHS met it to its tolerance only: step toward hi until it fits
            u, phi = engine._fit_under_cap(box, u)
        search.offer(u, phi, box)
        exact = model.cost_fund * phi + engine._rate_cost(u) <= float(result.fun) + _MILP_SLACK * max(
            1.0, abs(float(result.fun))
        )
        refined = None
        if curved.size:
            # the convex program for the discard set the answer chose, solved exactly: tangents
            # at its answer make the next round's bound exact for that set (outer approximation)
            ruined = result.x[col_z:col_w] > 0.5 if n_live else np.zeros(0, dtype=bool)
            refined = _kept_program(engine, box, rows[~ruined[group]] if n_live else rows)
            if refined is not None:
                search.offer(refined, engine._phi(box, refined), box)
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
        if shortfall <= _KELLEY_TOL * max(1.0, abs(float(result.fun))):
            return None
        tangents(u[None, :] if refined is None else np.stack([u, refined]))
    return bound


def _kept_program(engine: ExactBranchAndBound, box: _Box, rows: np.ndarray) -> np.ndarray | None:
    """Rates minimising the objective on ``box`` when every scenario of ``rows`` must survive (Clarabel).

    The convex program (scaled units)::

        minimise    cost_fund f + cost_rate @ u + curvature @ u^2
        subject to  f + relief[r] @ u >= required0[r]     rows r, and stress rows
                    level <= f <= fund_max,   lo <= u <= hi

    Returns None when Clarabel does not solve it (the caller then relies on its cuts alone).
    """
    model = engine.model
    relief = [engine._relief[rows]]
    required0 = [engine._required0[rows]]
    if engine._stress is not None:
        relief.append(engine._stress.rows.relief)
        required0.append(engine._stress.rows.required0)
    solution = _survival_qp(model, np.concatenate(relief), np.concatenate(required0), box.level, box.lo, box.hi,
                            engine._cap)
    if str(solution.status) not in ("Solved", "AlmostSolved"):
        return None
    return np.clip(np.asarray(solution.x)[1:], box.lo, box.hi)


def _fund_rate_qp(
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


def _survival_qp(
    model: FundModel, relief: np.ndarray, required0: np.ndarray, f_lo: float, lo: np.ndarray, hi: np.ndarray, cap: float
) -> Any:
    """:func:`_fund_rate_qp` with every row ``f + relief[r] @ u >= required0[r]`` (kept rows must survive)."""
    rows = -np.hstack([np.ones((relief.shape[0], 1)), relief])
    return _fund_rate_qp(model, rows, -required0, f_lo, lo, hi, cap)



# ---------------------------------------------------------------------------------------------
# "scenario": the robust program on a working set of rows
# ---------------------------------------------------------------------------------------------


class RobustWorkingSet:
    """The robust program of method "scenario" solved on a working set of its rows.

    Same program, optimum and multipliers as :class:`~.methods.RobustProgram` (scaled units)::

        minimise    cost_fund f + cost_rate @ u + curvature @ u^2
        subject to  f + relief[r] @ u >= required0[r]     rows r of every kept (not discarded) scenario
                    f + relief @ u >= required0           stress rows
                    f_lo <= f <= fund_max (tightened),  0 <= u <= 1

    but Clarabel (called directly, silent) only ever sees the rows that bind: starting from the
    rows active at the last answer, every kept scenario whose required fund exceeds ``f`` at the
    answer adds its active row, until none does (constraint generation; the answer of the
    smaller program then satisfies every row, so it is the full program's). The rows within
    1e-9 of binding are then all included and the program solved once more, so that the
    multipliers are those of the full program (the interior-point method's, on the same
    optimal face). Each round is one pass over the screened rows in numpy plus a program with
    a few hundred rows, instead of re-solving all rows (the greedy rule of method "scenario"
    re-solves it about ``log(k) / batch_fraction`` times).
    """

    def __init__(self, model: FundModel, rows: ScreenedRows, stress_rows: ScreenedRows | None, f_lo: float) -> None:
        self.model = model
        self.rows = rows
        self.grouped = MaxAffine.of(rows)
        self.f_lo = f_lo
        self._stress = stress_rows if stress_rows is not None and stress_rows.n_rows else None
        self._cap = solver_cap(model.fund_cap) if math.isfinite(model.fund_cap) else math.inf
        self._discarded = np.zeros(rows.candidates.size, dtype=bool)
        # start from each scenario's row active at premium_max
        self._working = np.zeros(rows.n_rows, dtype=bool)
        if rows.n_rows:
            self._working[self.grouped.evaluate(np.ones(model.n_free))[1]] = True
        self.rates: np.ndarray | None = None
        self.fund = math.nan
        self.value = math.nan
        self._duals: np.ndarray | None = None
        self.rounds = 0

    def set_discarded(self, discarded: np.ndarray) -> None:
        """Discard the candidates flagged in ``discarded`` (K,) bool."""
        self._discarded = np.asarray(discarded, dtype=bool).copy()

    def required(self, u: np.ndarray) -> np.ndarray:
        """(K,) scaled required fund of every candidate at ``u`` (exact where above ``f_lo``)."""
        values = np.full(self.rows.candidates.size, -math.inf)
        if self.rows.n_rows:
            best = self.grouped.evaluate(u)[0]
            values[self.rows.scenario[self.grouped.starts]] = best
        return values

    def solve(self) -> bool:
        """Solve for the current discard set; False when Clarabel fails (then nothing is updated)."""
        rows = self.rows
        kept_row = ~self._discarded[rows.scenario] if rows.n_rows else np.zeros(0, dtype=bool)
        for _ in range(100):
            self.rounds += 1
            solution = self._program(self._working & kept_row)
            if solution is None:
                return False
            fund, u, _ = solution
            if not rows.n_rows:
                break
            row_values = rows.required0 - rows.relief @ u
            slack = 1e-9 * max(1.0, abs(fund))
            violated = kept_row & (row_values > fund + slack) & ~self._working
            if not np.any(violated):
                # every row near binding in, for the full program's multipliers
                near = kept_row & (row_values >= fund - slack) & ~self._working
                if np.any(near):
                    self._working |= near
                    solution = self._program(self._working & kept_row)
                    if solution is None:
                        return False
                break
            # add each violating scenario's most violated row (all violated rows if those are in already)
            best, active = self.grouped.evaluate(u)
            add = active[kept_row[active] & (best > fund + slack)]
            add = add[~self._working[add]]
            self._working[add if add.size else np.flatnonzero(violated)] = True
        fund, u, duals = solution
        self.rates, self.fund = u, fund
        self.value = self.model.scaled_objective(fund, u) - self.model.cost_constant
        self._duals = duals
        return True

    def claimed_objective(self) -> float:
        """The program's objective in currency units."""
        return (self.value + self.model.cost_constant) * self.model.objective_scale

    def scenario_duals(self) -> np.ndarray | None:
        """(K,) total Lagrange multiplier of each candidate's rows at the last solution (None
        when no candidate has a row, as :meth:`~.methods.RobustProgram.scenario_duals`)."""
        return self._duals if self.rows.n_rows else None

    def _program(self, working: np.ndarray) -> tuple[float, np.ndarray, np.ndarray] | None:
        """Solve on the ``working`` rows (and the stress rows); ``(f, u, per-candidate multipliers)``."""
        model = self.model
        nf = model.n_free
        rows = self.rows
        index = np.flatnonzero(working)
        relief = [rows.relief[index]]
        required0 = [rows.required0[index]]
        if self._stress is not None:
            relief.append(self._stress.relief)
            required0.append(self._stress.required0)
        solution = _survival_qp(model, np.concatenate(relief), np.concatenate(required0), self.f_lo, np.zeros(nf),
                                np.ones(nf), self._cap)
        if str(solution.status) != "Solved":
            return None
        x = np.asarray(solution.x)
        multipliers = np.maximum(np.asarray(solution.z)[: index.size], 0.0)
        duals = np.bincount(rows.scenario[index], weights=multipliers, minlength=rows.candidates.size).astype(np.float64)
        return float(x[0]), np.clip(x[1:], 0.0, 1.0), duals


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
    solution = _fund_rate_qp(model, cut_matrix, cut_rhs, theta_low, np.zeros(nf), np.ones(nf), theta_high)
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
