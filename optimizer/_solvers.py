"""Silent solver calls with fallback: Clarabel, then HiGHS, then SCS.

Methods call :func:`solve_with_fallback` with a compiled cvxpy problem and a *check*: a function
that re-verifies the solver's answer in numpy and says whether it is good enough. The first
solver whose answer passes wins; when none passes, the best checked answer is returned with the
attempts logged, and the caller decides what status to report.

HiGHS is reached three ways, all silent:

* linear programs go through cvxpy's ``SCIPY`` interface (HiGHS inside scipy, which never
  prints);
* quadratic programs need cvxpy's own ``HIGHS`` interface, whose ``highspy.Highs()``
  constructor prints a copyright banner to the process's stdout once per process, whatever the
  verbosity (measured, highspy 1.16). That call is wrapped in :func:`_stdout_silenced`, which
  points file descriptor 1 at ``/dev/null`` for its duration. The redirection is process-wide:
  output another thread writes to fd 1 during that window is lost too, which is why only this
  one call is wrapped;
* mixed-integer programs go through scipy's ``milp`` (:func:`quiet_milp`), silenced the same
  way because one rare path of HiGHS's MIP solver prints a line whatever ``disp`` says.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import cvxpy as cp
from scipy import optimize

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
        out.append(upper)
    return tuple(out)


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
                with _stdout_silenced():
                    problem.solve(solver=cp.HIGHS, verbose=False)
        else:
            problem.solve(solver=name, verbose=False, **_SOLVE_OPTIONS[name])
    return problem.status


def quiet_milp(*args: object, **kwargs: object) -> optimize.OptimizeResult:
    """:func:`scipy.optimize.milp` with file descriptor 1 silenced.

    scipy's HiGHS is silent with ``disp=False`` except on a rare path of its MIP solver (a new
    integer-feasible solution whose LP re-solve fails prints
    ``HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();`` to stdout,
    measured with scipy 1.17 on small big-M programs); a library must not print.
    """
    with _stdout_silenced():
        return optimize.milp(*args, **kwargs)


_LIBC: ctypes.CDLL | None
try:
    _LIBC = ctypes.CDLL(None)
except OSError:  # pragma: no cover - platforms without a C library handle
    _LIBC = None


@contextlib.contextmanager
def _stdout_silenced() -> Iterator[None]:
    """Point file descriptor 1 at /dev/null, flushing C and Python buffers on both sides."""
    _flush_all()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        _flush_all()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _flush_all() -> None:
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    if _LIBC is not None:
        with contextlib.suppress(Exception):
            _LIBC.fflush(None)
