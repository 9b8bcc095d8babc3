"""Old module path of the fast engines, kept for one release: each lives beside its method's
reference formulation in :mod:`.methods` (:mod:`.methods.cvar`, :mod:`.methods.exact`,
:mod:`.methods.scenario`, shared pieces in :mod:`.methods.shared`)."""

from .methods.cvar import CvarCuttingPlane
from .methods.exact import LEAF_SIZE, ExactBranchAndBound
from .methods.scenario import RobustWorkingSet
from .methods.shared import MaxAffine

__all__ = ["CvarCuttingPlane", "ExactBranchAndBound", "RobustWorkingSet", "MaxAffine", "LEAF_SIZE"]
