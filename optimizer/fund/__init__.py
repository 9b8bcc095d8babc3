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

from .chunked import TailFundModel, count_ruins_chunked, tail_model
from .equation import (
    CHUNK_VALUES,
    allowed_ruins,
    corner_pass,
    count_ruined,
    kth_largest,
    mean_premium_base,
    objective_value,
    running_minimum,
    sample_cvar,
    scenario_chunks,
    worst_net_flow,
)
from .model import FundModel, ScreenedRows
from .rule import (
    CheckedPoint,
    FundRule,
    agree,
    check_cap,
    checked_point,
    closed_form,
    cvar_screen,
    fit_under_cap,
    fund_at,
    make_policy,
    scaled_fund,
    screened_stress,
    solver_cap,
    var_index,
)

__all__ = [
    "CHUNK_VALUES",
    "allowed_ruins",
    "worst_net_flow",
    "mean_premium_base",
    "count_ruined",
    "sample_cvar",
    "kth_largest",
    "objective_value",
    "scenario_chunks",
    "running_minimum",
    "corner_pass",
    "FundModel",
    "ScreenedRows",
    "FundRule",
    "CheckedPoint",
    "fund_at",
    "checked_point",
    "fit_under_cap",
    "scaled_fund",
    "agree",
    "solver_cap",
    "make_policy",
    "screened_stress",
    "check_cap",
    "var_index",
    "cvar_screen",
    "closed_form",
    "TailFundModel",
    "tail_model",
    "count_ruins_chunked",
]
