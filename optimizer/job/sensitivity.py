"""How the fund target answers its inputs: finite differences on common random numbers.

:func:`decision_sensitivities` bumps one input at a time by ``bump`` (10% by default) and
recomputes the fund target *at the chosen rates* on the exact-sample yardstick (the smallest fund
with at most floor(alpha N) ruined scenarios and every stress scenario survived: method "exact"
at fixed rates, the same yardstick as the near-optimal set; a certifying method's own margins jump
with the data and would drown the input's effect) on scenarios drawn from the same seeds (common random numbers: the same innovations, so the difference is the input's
effect, not sampling noise): open interest (every market's), alpha, the horizon, the starting
volatility of every market, the loss model's main parameters (the stateful book's overshoot,
half-life and distance scale) and the participation elasticity. Each row gives the bumped fund
target and the elasticity ``(F0' / F0 - 1) / bump``.

The rates are held: at an interior optimum they move too, so these are the partial responses a
committee reads as "if open interest were 10% higher, at today's fees, the fund would need ...".
``benchmarks/decision`` compares them with full re-solves.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from fundguard.models import ScenarioSet, StatefulBook, VenueBook, build_scenarios, simulate_returns
from fundguard.models.errors import FundguardError

from ..api import solve
from ..participation import at_fixed_rates
from ..policy import Policy
from ..problem import PolicyProblem
from .build import loss_model_of, stress_scenarios
from .config import CalibrationConfig

__all__ = ["decision_sensitivities", "SENSITIVITY_BUMP", "SENSITIVITY_MAX_SCENARIOS"]

#: Relative size of each bump.
SENSITIVITY_BUMP = 0.10
#: Largest fit set the bumps are recomputed on (a larger run draws this many from the same seed).
SENSITIVITY_MAX_SCENARIOS = 10_000

#: The stateful book's parameters bumped, with their labels.
_LOSS_PARAMETERS = (("overshoot", "loss model: overshoot kappa"), ("half_life_days", "loss model: half-life"),
                    ("distance_scale", "loss model: distance scale"))


def decision_sensitivities(cfg: CalibrationConfig, models: Mapping[str, Any], copula_arg: Any, seed: Any,
                           book: VenueBook, problem: PolicyProblem, policy: Policy, method: str,
                           bump: float = SENSITIVITY_BUMP,
                           progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """The fund target's response to each input at the policy's rates (module notes); ``progress``
    is called with (inputs done, inputs) after each one.

    Returns ``{"bump", "n_scenarios", "base_fund_target", "rows": [{"input", "label", "bump",
    "fund_target", "elasticity"}], "how"}`` (no timing: the run's timings have it, so that a
    document is the same for the same seed); a row whose recomputation fails is left out with its
    reason in ``"skipped"``.
    """
    scen = cfg.scenarios
    n = min(scen.n_scenarios, SENSITIVITY_MAX_SCENARIOS)
    rates = np.asarray(policy.premium_rates, dtype=np.float64)
    loss_model = loss_model_of(cfg)

    def scenarios_for(models_: Mapping[str, Any], book_: VenueBook, horizon: int, model: Any) -> ScenarioSet:
        paths = simulate_returns(models_, horizon, n, innovations=scen.innovations, seed=seed, copula=copula_arg,
                                 chunk_size=scen.chunk_size)
        random_set = build_scenarios(paths, book_, loss_model=model, dtype=cfg.scenarios.dtype)
        stress_set, _ = stress_scenarios(dataclasses.replace(cfg, scenarios=dataclasses.replace(scen, horizon=horizon)),
                                         models_, book_, loss_model=model)
        return random_set if stress_set is None else ScenarioSet.concat([random_set, stress_set])

    def fund_at(problem_: PolicyProblem, scenarios: ScenarioSet) -> float:
        fixed = at_fixed_rates(problem_, rates)
        part = problem_.participation
        on = scenarios if part is None else part.scaled(scenarios, rates, fund_only=True)
        return float(solve(fixed, on, method="exact").fund_target)

    base_scenarios = scenarios_for(models, book, scen.horizon, loss_model)
    base = fund_at(problem, base_scenarios)
    bumps: list[tuple[str, str, Callable[[], float]]] = []
    grown = VenueBook([dataclasses.replace(m, open_interest=m.open_interest * (1 + bump)) for m in book.markets])
    bumps.append(("open_interest", "open interest, every market",
                  lambda: fund_at(problem, scenarios_for(models, grown, scen.horizon, loss_model))))
    bumps.append(("alpha", "alpha", lambda: fund_at(dataclasses.replace(problem, alpha=problem.alpha * (1 + bump)),
                                                     base_scenarios)))
    longer = max(scen.horizon + 1, int(round(scen.horizon * (1 + bump))))
    bumps.append(("horizon", f"horizon, {scen.horizon} to {longer} periods",
                  lambda: fund_at(problem, scenarios_for(models, book, longer, loss_model))))
    hotter = {name: dataclasses.replace(m, next_variance=m.next_variance * (1 + bump) ** 2) for name, m in models.items()}
    bumps.append(("volatility", "starting volatility, every market",
                  lambda: fund_at(problem, scenarios_for(hotter, book, scen.horizon, loss_model))))
    if isinstance(loss_model, StatefulBook):
        for name, label in _LOSS_PARAMETERS:
            bumped = dataclasses.replace(loss_model, **{name: getattr(loss_model, name) * (1 + bump)})
            bumps.append((name, label, lambda bumped=bumped: fund_at(problem, scenarios_for(models, book, scen.horizon,
                                                                                              bumped))))
    part = problem.participation
    if part is not None:
        steeper = dataclasses.replace(part, semi_elasticity=tuple(np.asarray(part.arrays(rates.size)[0]) * (1 + bump)),
                                      elasticity=None if part.elasticity is None else part.elasticity * (1 + bump))
        bumps.append(("participation_elasticity", "participation elasticity",
                      lambda: fund_at(dataclasses.replace(problem, participation=steeper), base_scenarios)))
    rows, skipped = [], {}
    for index, (key, label, recompute) in enumerate(bumps):
        try:
            value = recompute()
        except FundguardError as exc:
            skipped[key] = str(exc)
            continue
        finally:
            if progress is not None:
                progress(index + 1, len(bumps))
        size = (longer / scen.horizon - 1.0) if key == "horizon" else bump
        rows.append({"input": key, "label": label, "bump": f"{size:+.0%}", "fund_target": value,
                     "elasticity": (value / base - 1.0) / size if base > 0 else math.nan})
    return {
        "bump": bump, "n_scenarios": n, "base_fund_target": base, "rows": rows, "skipped": skipped,
        "how": (f"Each input bumped by {bump:.0%} (the horizon by whole periods) on {n:,} scenarios drawn from the fit "
                "seed (common random numbers), the exact-sample fund target recomputed at the chosen rates; "
                "elasticity = (relative change of the fund target) / (relative bump)."),
    }
