"""fundguard.optimizer: the fund target and premium rates under a solvency constraint.

``PolicyProblem`` states the problem, ``solve`` runs a method ("cvar", "exact", "scenario",
"certified") on a :class:`~fundguard.models.ScenarioSet` and returns a ``Policy``;
``ruin_probability`` and ``certify`` say how it does on scenarios it was not fitted on;
``frontier`` traces the cost of solvency over ruin levels; ``compare_methods`` puts the methods
side by side. The library never prints and keeps no global state.
"""

from .certify import (
    Certificate,
    certify,
    clopper_pearson_upper,
    ruin_probability,
    scenario_epsilon,
    scenario_sample_size,
)
from .job.balance import check_balance
from .job.calibrate import CalibrationResult, calibrate
from .methods import certification_splits
from .policy import Policy
from .problem import PolicyProblem
from .solve import METHODS, compare_methods, frontier, solve

__all__ = [
    "calibrate",
    "check_balance",
    "CalibrationResult",
    "PolicyProblem",
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
    "certification_splits",
    "METHODS",
]
