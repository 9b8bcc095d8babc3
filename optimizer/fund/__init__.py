"""The fund, in one place: the fund equation and the ruin rule, the scaled model, the rules that
turn rates into a fund target, and the passes over a chunked scenario set.

* :mod:`.equation`: the fund equation and the ruin inequality in numpy on the caller's unscaled
  arrays (:func:`worst_net_flow`, :func:`count_ruined`), the only copy; also the order
  statistics and the objective every layer reads;
* :mod:`.model`: :class:`FundModel`, the scaled, cumulative view of one (problem, scenarios)
  pair the formulations are written against, and its exact screening (:class:`ScreenedRows`);
* :mod:`.rule`: :class:`FundRule` (how a method's fund target follows from the rates) and the
  numpy check every method ends with (:func:`checked_point`, :func:`make_policy`);
* :mod:`.chunked`: the corner, tail and ruin-count passes over a chunked scenario set.

Imports only :mod:`fundguard.models` and the optimizer's :mod:`~fundguard.optimizer.problem` and
:mod:`~fundguard.optimizer.policy`; the methods, certificates and the job build on it.
"""

from . import chunked, equation, model, rule
from .chunked import *  # noqa: F403 - the package's names are its modules' public names
from .equation import *  # noqa: F403
from .model import *  # noqa: F403
from .rule import *  # noqa: F403

__all__ = [*equation.__all__, *model.__all__, *rule.__all__, *chunked.__all__]
