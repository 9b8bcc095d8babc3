"""Old module path of the numpy check, kept for one release: it lives in :mod:`.fund.rule`
(import it from :mod:`fundguard.optimizer.fund`)."""

from .fund.rule import (  # noqa: F401 - re-exported
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
]
