"""fundguard.optimizer: the fund target and premium rates under a solvency constraint.

``PolicyProblem`` states the problem, ``solve`` runs a method ("cvar", "exact", "scenario",
"certified") on a :class:`~fundguard.models.ScenarioSet` and returns a ``Policy``;
``ruin_probability`` and ``certify`` say how it does on scenarios it was not fitted on;
``frontier`` traces the cost of solvency over ruin levels; ``compare_methods`` puts the methods
side by side. The library never prints and keeps no global state.
"""

from fundguard.models.lazy import lazy_exports
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the names for type checkers and IDEs; at run time they load on first use
    from .analysis import NearOptimalSet, euler_allocation, near_optimal_set
    from .api import compare_methods, frontier, solve
    from .certificates import certify, ruin_probability
    from .guarantees import clopper_pearson_upper, scenario_epsilon, scenario_sample_size
    from .job.balance import check_balance
    from .job.calibrate import CalibrationResult, calibrate
    from .methods import METHODS, certifiable_count, certification_split, fresh_size
    from .participation import Participation
    from .policy import Certificate, Frontier, Policy
    from .problem import PolicyProblem
    from .ruin import RuinRule

#: Exported name -> the module that defines it, imported on first access (PEP 562), so that
#: importing one light module (the CLI's --help, the errors) does not load the solvers.
_EXPORTS = {
    'NearOptimalSet': '.analysis',
    'euler_allocation': '.analysis',
    'near_optimal_set': '.analysis',
    'compare_methods': '.api',
    'frontier': '.api',
    'solve': '.api',
    'certify': '.certificates',
    'ruin_probability': '.certificates',
    'clopper_pearson_upper': '.guarantees',
    'scenario_epsilon': '.guarantees',
    'scenario_sample_size': '.guarantees',
    'check_balance': '.job.balance',
    'CalibrationResult': '.job.calibrate',
    'calibrate': '.job.calibrate',
    'METHODS': '.methods',
    'certifiable_count': '.methods',
    'certification_split': '.methods',
    'fresh_size': '.methods',
    'Participation': '.participation',
    'Certificate': '.policy',
    'Frontier': '.policy',
    'Policy': '.policy',
    'PolicyProblem': '.problem',
    'RuinRule': '.ruin',
}

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
    "Frontier",
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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
