"""Method "scenario": the scenario approach with greedy discarding (Campi & Garatti).

The reference formulation (:class:`~.shared.RobustProgram`, cvxpy with a Parameter discard set)
and the fast engine (:class:`RobustWorkingSet`, the same program on a working set of its rows,
Clarabel called directly) side by side; both reach the same optimum and multipliers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cvxpy as cp
import numpy as np

from fundguard.models import ScenarioSet
from fundguard.models.errors import (
    ProblemError,
    SolverError,
)

from ..fund import (
    CheckedPoint,
    FundModel,
    FundRule,
    ScreenedRows,
    agree,
    check_cap,
    checked_point,
    kth_largest,
    make_policy,
    screened_stress,
    solver_cap,
)
from ..guarantees import (
    check_probability,
    scenario_discard_budget,
    scenario_epsilon,
    scenario_sample_size,
)
from ..policy import Policy
from ..problem import PolicyProblem
from ..solvers import (
    check_solvers,
    solve_with_fallback,
)

from .shared import (
    MaxAffine,
    RobustProgram,
    survival_qp,
)

__all__ = [
    "RobustWorkingSet",
    "SCENARIO_ENGINES",
    "solve_scenario",
]


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
    beta = check_probability("beta", beta)
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
            u, scaled_target, solver_used = robust.rates, robust.fund, "CLARABEL (working set)"
        else:
            outcome = solve_with_fallback(robust.problem, check, solvers)
            if outcome.result is None:
                raise SolverError(f"every solver failed on the robust scenario problem: {outcome.attempts}")
            point, solver_used = outcome.result, outcome.solver
            all_accepted &= outcome.accepted
            attempts = outcome.attempts
            u, scaled_target = point.u, (point.fund_target - model.problem.floor) / model.money_scale
        required = required_at(u)
        # Put back discarded scenarios the solution satisfies: they do not change it.
        dropped &= ~(required <= scaled_target - 1e-9)
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
        solution = survival_qp(model, np.concatenate(relief), np.concatenate(required0), self.f_lo, np.zeros(nf),
                                np.ones(nf), self._cap)
        if str(solution.status) != "Solved":
            return None
        x = np.asarray(solution.x)
        multipliers = np.maximum(np.asarray(solution.z)[: index.size], 0.0)
        duals = np.bincount(rows.scenario[index], weights=multipliers, minlength=rows.candidates.size).astype(np.float64)
        return float(x[0]), np.clip(x[1:], 0.0, 1.0), duals
