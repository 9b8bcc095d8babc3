"""The methods that choose the fund target and premium rates: "cvar", "exact", "scenario", "certified".

One file per method, holding its reference formulation and its fast engine side by side
(:mod:`.cvar`, :mod:`.exact`, :mod:`.scenario`, :mod:`.certified`), the solver pieces they share
(:mod:`.shared`) and the registry (:mod:`.registry`, :data:`METHODS`). Every method has the same
shape:

1. build the scaled :class:`~fundguard.optimizer.fund.FundModel` (money rescaled to order one,
   rates mapped to [0, 1]) and screen out, exactly, the (scenario, period) rows that cannot
   bind anywhere in the rate box;
2. solve a formulation on what is left: the reference formulations (cvxpy for the convex
   programs, falling back Clarabel -> HiGHS -> SCS; HiGHS for the mixed-integer one) or, by
   default on every method, the fast engines that reach the same optimum in the
   (1 + J)-dimensional decision space (cutting planes for "cvar" above
   :data:`~.cvar.CVXPY_MAX_ROWS` rows, branch and bound for "exact", a working set of rows for
   "scenario"); each method's ``engine`` option picks one;
3. keep only the solver's premium rates and recompute everything else in numpy on the
   caller's unscaled arrays: for fixed rates each method's smallest admissible fund target is
   a closed form (an order statistic, a sample CVaR or a maximum:
   :class:`~fundguard.optimizer.fund.FundRule`), lifted by a few ulps until the canonical ruin
   check agrees, then the ruin count and the objective. A solver answer whose claimed
   objective disagrees with the recomputed one is rejected and the next solver is tried.

The fund target is therefore never "a hair below the floor" because of a solver tolerance,
and the reported objective is never the solver's claim.

Stress scenarios: with ``PolicyProblem.survive_stress`` (the default) every method adds them as
hard constraints (the fund must stay at or above the floor in every stress scenario); they are
never counted in a ruin rate or a probability.

Imports :mod:`~fundguard.optimizer.fund`, :mod:`~fundguard.optimizer.guarantees`,
:mod:`~fundguard.optimizer.solvers`, the policy and the problem; nothing above them.
"""

from ..fund import FundRule
from .certified import certifiable_count, certification_split, fresh_size, solve_certified, tail_elasticity
from .cvar import CVAR_ENGINES, CVXPY_MAX_ROWS, CvarCuttingPlane, CvarFormulation, cvar_engine, solve_cvar
from .exact import EXACT_ENGINES, LEAF_SIZE, ExactBranchAndBound, exact_on_model, solve_exact
from .registry import METHODS, Method, level_solver, level_solver_on_model
from .scenario import SCENARIO_ENGINES, RobustWorkingSet, solve_scenario
from .shared import MaxAffine, RobustProgram

__all__ = [
    "METHODS",
    "Method",
    "FundRule",
    "CvarFormulation",
    "CvarCuttingPlane",
    "RobustProgram",
    "RobustWorkingSet",
    "ExactBranchAndBound",
    "MaxAffine",
    "LEAF_SIZE",
    "CVXPY_MAX_ROWS",
    "CVAR_ENGINES",
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
    "certification_split",
    "certifiable_count",
    "fresh_size",
    "tail_elasticity",
]
