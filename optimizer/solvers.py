"""Silent solver calls with fallback: Clarabel, then HiGHS, then SCS.

Clarabel and HiGHS are dependencies; SCS (about 145 MB installed) is the optional ``scs`` extra
(``pip install fundguard[scs]``): where it is absent the default chain skips it, and asking for
it by name is refused with that line.

Methods call :func:`solve_with_fallback` with a compiled cvxpy problem and a *check*: a function
that re-verifies the solver's answer in numpy and says whether it is good enough. The first
solver whose answer passes wins; when none passes, the best checked answer is returned with the
attempts logged, and the caller decides what status to report.

HiGHS is reached three ways, all silent at the source; nothing here touches file descriptor 1
(pointing it at /dev/null, as this module once did, is process-wide: other threads' prints were
lost during every solve, and two overlapping solves could leave fd 1 on /dev/null for good):

* linear programs go through cvxpy's ``SCIPY`` interface (HiGHS inside scipy, which never
  prints with ``disp`` off);
* quadratic programs need cvxpy's own ``HIGHS`` interface. highspy prints a copyright banner
  to stdout the first time any HiGHS object in the process logs with console output on, and
  ``highspy.Highs()`` (which cvxpy calls) logs in its constructor, before any option can be set
  (measured, highspy 1.16). The banner is printed once per process, so :func:`_spend_banner`
  has HiGHS write it, once, with console logging off (to no log file); cvxpy's later objects
  find it written. ``log_to_console`` is off for cvxpy's solves (``verbose=False``);
* mixed-integer programs go through highspy directly (:func:`quiet_milp`), with
  ``output_flag`` off before the model is passed. scipy's ``milp`` is not used for them: its
  bundled HiGHS (1.12 in scipy 1.17) prints
  ``HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();`` with a bare
  ``printf`` on a rare path of its MIP solver, whatever the options; highspy 1.16 has no such
  line.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import cvxpy as cp
import highspy
import numpy as np
from highspy._core import _Highs  # the bare solver: highspy.Highs() logs before options can be set
from scipy import optimize, sparse

from fundguard.models.errors import ProblemError

__all__ = ["DEFAULT_SOLVERS", "SolveOutcome", "solve_with_fallback", "check_solvers", "quiet_milp"]

DEFAULT_SOLVERS: tuple[str, ...] = ("CLARABEL", "HIGHS", "SCS")

_SOLVE_OPTIONS: dict[str, dict[str, object]] = {
    "CLARABEL": {},
    # SCS is first-order: ask for more accuracy than its 1e-4 default; the numpy check decides.
    "SCS": {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 200_000},
}

T = TypeVar("T")


@dataclass
class SolveOutcome(Generic[T]):
    """What :func:`solve_with_fallback` found.

    Attributes
    ----------
    result : the checked answer of the solver that won (or the best one when none passed), or
        None when no solver returned an answer at all.
    solver : name of the solver that produced ``result`` ("" when none).
    accepted : True when ``result`` passed the check.
    attempts : list of ``(solver, outcome)`` strings, in the order tried.
    """

    result: T | None = None
    solver: str = ""
    accepted: bool = False
    attempts: list[tuple[str, str]] = field(default_factory=list)


def check_solvers(solvers: Sequence[str] | str | None) -> tuple[str, ...]:
    """Validate a user's solver choice (a name, a sequence of names, or None for the default chain)."""
    if solvers is None:
        return DEFAULT_SOLVERS
    names = (solvers,) if isinstance(solvers, str) else tuple(solvers)
    if not names:
        raise ProblemError("solver must name at least one solver")
    out = []
    for name in names:
        upper = str(name).upper()
        if upper not in DEFAULT_SOLVERS:
            raise ProblemError(f"solver {name!r} is not supported; choose from {list(DEFAULT_SOLVERS)}")
        if upper == "SCS" and not scs_installed():
            raise ProblemError("solver 'SCS' is not installed; pip install 'fundguard[scs]' (or scs) to use it")
        out.append(upper)
    return tuple(out)


def scs_installed() -> bool:
    """Whether the optional SCS solver can be imported (the ``scs`` extra)."""
    import importlib.util

    return importlib.util.find_spec("scs") is not None


def solve_with_fallback(
    problem: cp.Problem,
    check: Callable[[str], tuple[T, bool, float]],
    solvers: Sequence[str] = DEFAULT_SOLVERS,
) -> SolveOutcome[T]:
    """Solve ``problem`` with each solver in turn until ``check`` accepts the answer.

    Parameters
    ----------
    problem : cvxpy.Problem
        Compiled once; re-solving with another solver re-uses its parameters.
    check : callable
        Called with the cvxpy status after a solver returns "optimal" or "optimal_inaccurate";
        reads the variables' values and returns ``(result, accepted, score)``. ``score`` (lower is better) ranks the
        answers when none is accepted.
    solvers : sequence of str
        Names from :data:`DEFAULT_SOLVERS`, in the order to try.
    """
    outcome: SolveOutcome[T] = SolveOutcome()
    best_score = float("inf")
    for name in solvers:
        if name == "SCS" and not scs_installed():
            outcome.attempts.append((name, "not installed (the optional scs extra)"))
            continue
        try:
            status = _solve_once(problem, name)
        except (cp.error.SolverError, ValueError, ArithmeticError) as exc:
            outcome.attempts.append((name, f"failed: {exc}".splitlines()[0][:200]))
            continue
        if status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
            outcome.attempts.append((name, status))
            continue
        result, accepted, score = check(status)
        outcome.attempts.append((name, status if accepted else f"{status}, rejected by the numpy check"))
        if accepted:
            outcome.result, outcome.solver, outcome.accepted = result, name, True
            return outcome
        if score < best_score:
            best_score = score
            outcome.result, outcome.solver = result, name
    return outcome


def _solve_once(problem: cp.Problem, name: str) -> str:
    with warnings.catch_warnings():
        # cvxpy warns "Solution may be inaccurate"; the numpy check is what decides here.
        warnings.simplefilter("ignore")
        if name == "HIGHS":
            if problem.objective.expr.is_affine():
                problem.solve(solver=cp.SCIPY, scipy_options={"method": "highs"}, verbose=False)
            else:
                _spend_banner()
                problem.solve(solver=cp.HIGHS, verbose=False, output_flag=False)
        else:
            problem.solve(solver=name, verbose=False, **_SOLVE_OPTIONS[name])
    return problem.status


_BANNER_LOCK = threading.Lock()
_banner_spent = False


def _spend_banner() -> None:
    """Have HiGHS write its once-per-process banner with console logging off (see the module notes).

    A bare ``_Highs`` object logs nothing until it runs; run on an empty model with
    ``log_to_console`` off (and no log file), it writes the banner nowhere and marks it written
    for every later HiGHS object in the process.
    """
    global _banner_spent
    with _BANNER_LOCK:
        if not _banner_spent:
            spender = _Highs()
            spender.setOptionValue("log_to_console", False)
            spender.run()
            _banner_spent = True


#: scipy's status codes for HiGHS's model statuses, as :func:`scipy.optimize.milp` reports them
#: (0 optimal, 1 a limit reached, 2 infeasible, 3 unbounded, 4 other), so callers read either.
_MILP_STATUS: dict[highspy.HighsModelStatus, tuple[int, str]] = {
    highspy.HighsModelStatus.kOptimal: (0, "Optimization terminated successfully."),
    highspy.HighsModelStatus.kTimeLimit: (1, "Time limit reached."),
    highspy.HighsModelStatus.kIterationLimit: (1, "Iteration limit reached."),
    highspy.HighsModelStatus.kSolutionLimit: (1, "Solution limit reached."),
    highspy.HighsModelStatus.kInfeasible: (2, "The problem is infeasible."),
    highspy.HighsModelStatus.kUnbounded: (3, "The problem is unbounded."),
}

#: Model statuses under which HiGHS may hold a feasible (not proven optimal) point.
_MILP_LIMITS = (
    highspy.HighsModelStatus.kTimeLimit,
    highspy.HighsModelStatus.kIterationLimit,
    highspy.HighsModelStatus.kSolutionLimit,
)


def quiet_milp(
    c: np.ndarray,
    *,
    integrality: np.ndarray,
    bounds: optimize.Bounds,
    constraints: Sequence[optimize.LinearConstraint] = (),
    options: dict[str, object] | None = None,
) -> optimize.OptimizeResult:
    """:func:`scipy.optimize.milp`'s call and result, solved by highspy with its output off.

    Parameters
    ----------
    c : (n,) float64
        Objective coefficients (minimised).
    integrality : (n,) int
        1 for an integer variable, 0 for a continuous one.
    bounds : scipy.optimize.Bounds
        ``lb <= x <= ub``, arrays of shape (n,).
    constraints : sequence of scipy.optimize.LinearConstraint
        ``lb <= A @ x <= ub``; ``A`` dense or sparse, stacked in order.
    options : dict, optional
        ``time_limit`` (seconds), ``mip_rel_gap``, ``presolve`` (bool); ``disp`` is accepted
        and ignored (output is always off).

    Returns
    -------
    scipy.optimize.OptimizeResult
        ``x`` ((n,) or None when HiGHS holds no feasible point), ``fun``, ``status`` and
        ``message`` (scipy's codes: 0 optimal, 1 limit reached, 2 infeasible, 3 unbounded,
        4 other), ``success``, ``mip_dual_bound``, ``mip_gap``, ``mip_node_count``.

    Notes
    -----
    Why not scipy's own ``milp``: see the module notes (a bare ``printf`` in its HiGHS). Each
    call builds its own solver object, so concurrent calls share nothing.
    """
    options = dict(options or {})
    cost = np.asarray(c, dtype=np.float64)
    n = cost.size
    matrix = sparse.csc_array(sparse.vstack([sparse.csr_array(k.A) for k in constraints]) if constraints else (0, n))
    row_lower = np.concatenate([np.broadcast_to(k.lb, k.A.shape[:1]) for k in constraints] or [np.zeros(0)])
    row_upper = np.concatenate([np.broadcast_to(k.ub, k.A.shape[:1]) for k in constraints] or [np.zeros(0)])
    is_mip = bool(np.any(np.asarray(integrality)))
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n, matrix.shape[0]
    lp.col_cost_ = cost
    lp.col_lower_ = np.broadcast_to(np.asarray(bounds.lb, dtype=np.float64), (n,)).copy()
    lp.col_upper_ = np.broadcast_to(np.asarray(bounds.ub, dtype=np.float64), (n,)).copy()
    lp.row_lower_, lp.row_upper_ = row_lower.astype(np.float64), row_upper.astype(np.float64)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = n, matrix.shape[0]
    lp.a_matrix_.start_ = matrix.indptr.astype(np.int32)
    lp.a_matrix_.index_ = matrix.indices.astype(np.int32)
    lp.a_matrix_.value_ = matrix.data.astype(np.float64)
    lp.integrality_ = [highspy.HighsVarType.kInteger if flag else highspy.HighsVarType.kContinuous
                       for flag in np.asarray(integrality)]

    highs = _Highs()
    # before anything else: from here on HiGHS writes nothing, banner included
    highs.setOptionValue("output_flag", False)
    if "time_limit" in options:
        highs.setOptionValue("time_limit", float(options["time_limit"]))
    if "mip_rel_gap" in options:
        highs.setOptionValue("mip_rel_gap", float(options["mip_rel_gap"]))
    if "presolve" in options:
        highs.setOptionValue("presolve", "on" if options["presolve"] else "off")
    highs.passModel(lp)
    highs.run()

    model_status = highs.getModelStatus()
    info = highs.getInfo()
    status, text = _MILP_STATUS.get(model_status, (4, "HiGHS stopped without an answer."))
    message = f"{text} (HiGHS Status {int(model_status)}: {highs.modelStatusToString(model_status)})"
    # as scipy's milp: a point when optimal, or when a limit stopped a MIP holding a feasible one
    has_point = model_status == highspy.HighsModelStatus.kOptimal or (
        is_mip and model_status in _MILP_LIMITS and info.primal_solution_status == highspy.kSolutionStatusFeasible
    )
    x = np.array(highs.getSolution().col_value, dtype=np.float64) if has_point else None
    mip = {"mip_dual_bound": float(info.mip_dual_bound), "mip_gap": float(info.mip_gap),
           "mip_node_count": int(info.mip_node_count)} if is_mip else {}
    return optimize.OptimizeResult(
        x=x,
        fun=float(info.objective_function_value) if has_point else None,
        status=status,
        message=message,
        success=status == 0,
        **mip,
    )
