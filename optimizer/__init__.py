"""fundguard.optimizer: the fund target and premium rates under a solvency constraint.

``PolicyProblem`` states the problem, ``solve`` runs a method ("cvar", "exact", "scenario",
"certified") on a :class:`~fundguard.models.ScenarioSet` and returns a ``Policy``;
``ruin_probability`` and ``certify`` say how it does on scenarios it was not fitted on;
``frontier`` traces the cost of solvency over ruin levels; ``compare_methods`` puts the methods
side by side. The library never prints and keeps no global state.
"""

from .analysis import NearOptimalSet, euler_allocation, near_optimal_set
from .api import compare_methods, frontier, solve
from .certificates import certify, ruin_probability
from .guarantees import clopper_pearson_upper, scenario_epsilon, scenario_sample_size
from .job.balance import check_balance
from .job.calibrate import CalibrationResult, calibrate
from .methods import METHODS, certifiable_count, certification_split, fresh_size
from .participation import Participation
from .policy import Certificate, Policy
from .problem import PolicyProblem
from .ruin import RuinRule

__all__ = [
    "calibrate",
    "check_balance",
    "CalibrationResult",
    "PolicyProblem",
    "Participation",
    "RuinRule",
    "solve",
    "Policy",
    "ruin_probability",
    "certify",
    "Certificate",
    "scenario_sample_size",
    "scenario_epsilon",
    "clopper_pearson_upper",
    "frontier",
    "compare_methods",
    "certification_split",
    "certifiable_count",
    "fresh_size",
    "METHODS",
    "near_optimal_set",
    "NearOptimalSet",
    "euler_allocation",
]
