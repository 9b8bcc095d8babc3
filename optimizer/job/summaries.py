"""What a result says besides the policy: fund paths, required funds, the tail, stress outcomes,
model summaries and notes (numpy on a ScenarioSet; the report and result.json are written from these).

The fund equation and the ruin inequality are not restated here: :func:`required_fund` and
:func:`stress_summary` evaluate them through :func:`~fundguard.optimizer.fund.worst_net_flow`
and :func:`~fundguard.optimizer.fund.count_ruined`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from fundguard.models import ScenarioSet, VolModel
from fundguard.models.scenarios.bounds import PathCheck

from ..fund import count_ruined, worst_net_flow
from ..participation import at_policy
from ..policy import Certificate, Policy

__all__ = ["LOSS_QUANTILES", "fund_paths", "required_fund", "tail_from", "stress_summary",
           "model_summary", "model_notes", "result_notes", "path_notes"]

#: Horizon-loss quantiles reported (of the total fund loss over the horizon, per scenario).
LOSS_QUANTILES = (0.5, 0.9, 0.99, 0.999)


def fund_paths(policy: Policy, scenarios: ScenarioSet) -> np.ndarray:
    """F[s, t] = F0 + sum_{u<=t} (sum_j p_j B[s,u,j] - L[s,u]); (N, T) float64, currency units (the plotted paths)."""
    scenarios = at_policy(policy, scenarios)
    income = scenarios.premium_base @ np.asarray(policy.premium_rates)
    return policy.fund_target + np.cumsum(income - scenarios.losses, axis=1)


def required_fund(policy: Policy, scenarios: ScenarioSet) -> np.ndarray:
    """Per scenario, the smallest F0 that survives it at the policy's rates: max(0, floor - min_t(F[s,t] - F0)); (N,)."""
    scenarios = at_policy(policy, scenarios)
    worst = worst_net_flow(scenarios.losses, scenarios.premium_base, np.asarray(policy.premium_rates))
    return np.maximum(0.0, policy.floor - worst)


def tail_from(policy: Policy, horizon_loss: np.ndarray, need: np.ndarray, market_losses: np.ndarray,
              base_totals: np.ndarray, names: tuple[str, ...]) -> dict[str, Any]:
    """The ``tail`` section from per-scenario horizon losses (N,), required funds (N,), per-market
    horizon losses (N, J) and premium-base totals (N, J), currency units."""
    alpha = policy.alpha
    var = float(np.quantile(need, 1.0 - alpha, method="higher"))
    tail_mask = need >= var
    cvar = float(need[tail_mask].mean()) if tail_mask.any() else var
    tail_losses = market_losses[tail_mask].sum(axis=0) if tail_mask.any() else np.zeros(len(names))
    share = tail_losses / tail_losses.sum() if tail_losses.sum() > 0 else np.zeros(len(names))
    income = (base_totals * np.asarray(policy.premium_rates)).mean(axis=0)
    return {
        "horizon_loss_quantiles": {f"{q:g}": float(np.quantile(horizon_loss, q)) for q in LOSS_QUANTILES},
        "horizon_loss_mean": float(horizon_loss.mean()),
        "required_fund_var": var,
        "required_fund_cvar": cvar,
        "tail_share_by_market": {n: float(s) for n, s in zip(names, share)},
        "expected_premium_income": {n: float(x) for n, x in zip(names, income)},
        "worst_scenarios": [int(i) for i in np.argsort(need)[::-1][:5]],
    }


def stress_summary(policy: Policy, stress_set: ScenarioSet, labels: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per stress scenario: label, horizon loss, lowest fund level under the policy, survived (not ruined)."""
    stress_set = at_policy(policy, stress_set)
    worst = worst_net_flow(stress_set.losses, stress_set.premium_base, np.asarray(policy.premium_rates))
    lowest = policy.fund_target + worst
    return [{"label": labels[i] if i < len(labels) else f"stress {i}",
             "horizon_loss": float(stress_set.losses[i].sum()),
             "lowest_fund": float(lowest[i]),
             "survived": count_ruined(policy.fund_target, worst[i:i + 1], policy.floor) == 0}
            for i in range(stress_set.n_scenarios)]


def model_summary(model: VolModel) -> dict[str, Any]:
    """A fitted model as result.json shows it: spec, parameters, today's volatility, diagnostics."""
    d = model.diagnostics
    return {"spec": str(model.spec), "params": dict(model.params), "next_volatility": math.sqrt(model.next_variance),
            "persistence": d.persistence, "half_life": d.half_life, "annualized_volatility": d.annualized_volatility,
            "ljung_box_pvalue": d.ljung_box_pvalue, "converged": d.converged, "bic": model.bic,
            "stationary": d.stationary, "residual_persistence": d.residual_persistence,
            "residual_stationary": d.residual_stationary, "residual_variance_ratio": d.residual_variance_ratio}


def model_notes(models: Mapping[str, VolModel], notes: list[str], innovations: str | None = None) -> None:
    """Append the fits a reader should doubt: not converged, autocorrelated squares, nu < 3, and
    with ``innovations`` (how the run simulates) a model with no finite multi-step variance under
    them (:meth:`~fundguard.models.VolModel.explosive_reason`: an explicit spec the user chose)."""
    for name, model in models.items():
        d = model.diagnostics
        reason = None if innovations is None else model.explosive_reason(innovations)
        if reason is not None:
            notes.append(f"{name}: {model.spec} {reason}: its simulated variance can explode")
        if not d.converged:
            notes.append(f"{name}: the {model.spec} likelihood fit did not report convergence")
        if d.ljung_box_pvalue < 0.01:
            notes.append(f"{name}: squared residuals still autocorrelated (Ljung-Box p = {d.ljung_box_pvalue:.3g})")
        nu = model.params.get("nu")
        if model.spec.dist in ("t", "skewt") and nu is not None and nu < 3:
            notes.append(f"{name}: innovation tail index nu = {nu:.2f} < 3 (very heavy tails)")


def result_notes(notes: list[str], no_losses: bool, policy: Policy, method: str, certificate: Certificate,
                  alpha: float) -> None:
    """Append what a reader of the result must know: no losses at all, optimality not proven,
    an out-of-sample bound above alpha."""
    if no_losses:
        notes.append("every random scenario has zero fund losses: the fund target is 0 and the rates sit at "
                     "their minimum (check the venue book: margins may exceed every simulated shortfall)")
    if policy.status not in ("optimal", "certified"):
        notes.append(f"method {method!r} returned status {policy.status!r}: the policy meets its constraint but "
                     "optimality is not proven")
    if certificate.upper_bound > alpha:
        notes.append(f"the out-of-sample bound {certificate.upper_bound:.4%} exceeds alpha {alpha:.4%}: "
                     f"{certificate.ruins} ruins in {certificate.n:,} fresh scenarios")


def path_notes(notes: list[str], checks: Mapping[str, PathCheck]) -> None:
    """Append, per simulated set ("fit", "certify"), how many random paths exceed the stated bound
    of :func:`~fundguard.models.scenarios.bounds.check_paths`: the sign of a model whose simulated
    variance explodes (the CLI exits with ``EXIT_IMPLAUSIBLE_PATHS`` then)."""
    for name, check in checks.items():
        if not check.exceeded:
            continue
        markets = ", ".join(f"{m} {n:,}" for m, n in check.exceeding_by_market.items() if n)
        largest = "a non-finite return" if not math.isfinite(check.largest) else f"largest {check.largest:.3g}"
        notes.append(f"{check.n_exceeding:,} of {check.n_paths:,} {name} paths hold a one-period |log return| above "
                     f"{check.bound:.3g} (the stated bound of fundguard.models.scenarios.bounds: {check.max_daily_log_return:g} a day; "
                     f"{largest}; by market: {markets}): the volatility model explodes on them and the fund "
                     "target sized on them is not credible (choose another volatility spec or innovations)")
