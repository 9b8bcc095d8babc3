"""One call from a config to a certified policy: fit, simulate, build losses, solve, certify.

:func:`calibrate` is the library entry point for pricing systems (no printing, no global state,
safe to call from several threads: every random draw comes from the seed given, every object is
local to the call) and the engine behind ``fundguard calibrate``. Its :class:`CalibrationResult`
carries the same content as ``result.json`` (:meth:`CalibrationResult.to_dict`).

The pipeline is one function, :func:`run_calibration`, told where to compute: in this process
(``client=None``) or on a Dask cluster's workers (a ``distributed.Client``, from
:func:`~.compute.compute_client`); only the building of the scenarios and the gathering of the
report's per-scenario vectors differ between the two.
"""

from __future__ import annotations

import functools
import logging
import dataclasses
import datetime
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fundguard.models import (
    ScenarioSet,
    VenueBook,
    VolModel,
    build_scenarios,
    chunked_scenarios,
    plan_simulation,
    simulate_returns,
)
from fundguard.models.errors import ConfigError, FundguardError
from fundguard.models.scenarios.bounds import PathCheck, check_paths

from ..certificates import certify
from ..analysis import euler_allocation, near_optimal_set
from ..participation import Participation, at_fixed_rates, at_policy, mean_market_bases, mean_market_losses, participation_cost
from ..display import money, percent
from ..policy import Certificate, Frontier, Policy
from ..problem import PolicyProblem
from ..api import frontier, solve
from ..fund import is_chunked
from ..topology import compare_topologies, group_needs, suggest_groups
from ..waterfall import ALLOCATION_RULES, Layer, Waterfall, run_waterfall
from .build import (
    Fitted,
    Progress,
    RunSeeds,
    check_mode,
    fit_models,
    loss_model_of,
    policy_problem,
    resolve_config,
    run_seed,
    run_seeds,
    stress_scenarios,
    venue_book,
)
from .compute import check_local_cluster, check_memory, compute_client
from .config import CalibrationConfig
from .outputs import json_safe, package_versions
from .preset import Preset
from .sensitivity import decision_sensitivities
from .summaries import path_notes, required_fund, result_notes, stress_summary, tail_from

__all__ = ["CalibrationResult", "calibrate", "run_calibration", "market_horizon_losses", "RESULT_SCHEMA_VERSION"]

RESULT_SCHEMA_VERSION = 1
logger = logging.getLogger("fundguard")
logger.addHandler(logging.NullHandler())


@dataclass(frozen=True, eq=False)
class CalibrationResult:
    """Everything a calibration produced; :meth:`to_dict` is ``result.json``.

    Attributes
    ----------
    policy : Policy
        The chosen fund target (currency units) and premium rates (fractions, market order).
    certificate : Certificate
        Out-of-sample ruin count on ``certify_scenarios`` fresh scenarios (never used to choose
        the policy) and its Clopper–Pearson upper bound.
    markets : tuple of str
    models : dict of market -> dict
        Fitted volatility model per market (spec, parameters, today's state, diagnostics) and
        where it came from (price file with SHA-256 and date range, or the built-in preset).
    tail : dict
        Horizon-loss quantiles, VaR and CVaR at alpha of the required fund, per-market share of
        tail losses, premium income, all in currency units; and ``path_check``: per simulated set
        ("fit", "certify"), :meth:`PathCheck.describe` of
        :func:`~fundguard.models.scenarios.bounds.check_paths` (paths beyond the stated bound).
    stress : list of dict
        Per stress scenario: label, horizon loss, lowest fund level under the policy, survived.
    inputs : dict
        Config digest and source, seed, method, package versions: what makes the run repeatable.
    notes : tuple of str
        Warnings worth reading (non-stationary fits, heavy tails, an unproven optimum, ...).
    timings : dict of str -> float
        Seconds per step (kept apart in ``to_dict`` so results are comparable across runs).
    scenarios : ScenarioSet
        The scenarios the policy was fitted on (random then stress), for plots and reports.
    market_losses : (N, J) float64 array
        Horizon loss per random scenario and market (contributions).
    frontier : list of Policy
        Cost of solvency over ``frontier_alphas`` (may be empty).
    path_checks : dict of str -> PathCheck
        The check of the random paths against the stated bound, for the "fit" and the "certify"
        scenarios (:func:`~fundguard.models.scenarios.bounds.check_paths`).
    analysis : dict
        How to read the decision: ``near_optimal`` (:func:`~fundguard.optimizer.analysis.near_optimal_set`:
        the range of fund targets and rates among policies within 1% of the least cost, on the
        exact-sample yardstick, and whether the decision is flat), ``allocation`` (each market's
        Euler share of the fund target, :func:`~fundguard.optimizer.analysis.euler_allocation`)
        and ``sensitivities`` (:func:`decision_sensitivities`); empty parts where they could not
        be computed (a note says why).
    started : str
        When the run started, ISO 8601 in UTC (run-dependent: in ``to_dict()["run"]``).
    """

    policy: Policy
    certificate: Certificate
    markets: tuple[str, ...]
    models: Mapping[str, Any]
    tail: Mapping[str, Any]
    stress: tuple[Mapping[str, Any], ...]
    inputs: Mapping[str, Any]
    notes: tuple[str, ...]
    timings: Mapping[str, float]
    scenarios: ScenarioSet = field(repr=False)
    market_losses: np.ndarray = field(repr=False)
    frontier: tuple[Policy, ...] = field(default=(), repr=False)
    path_checks: Mapping[str, PathCheck] = field(default_factory=dict, repr=False)
    analysis: Mapping[str, Any] = field(default_factory=dict, repr=False)
    started: str = ""

    @property
    def implausible_paths(self) -> int:
        """Random paths (fit and certify sets together) holding a one-period |log return| above the
        stated bound of :mod:`fundguard.models.scenarios.bounds`; above 0, distrust the fund target
        (the CLI exits with ``EXIT_IMPLAUSIBLE_PATHS``)."""
        return sum(check.n_exceeding for check in self.path_checks.values())

    def __repr__(self) -> str:
        c = self.certificate
        return (f"CalibrationResult(fund_target={money(self.policy.fund_target, self.currency)}, "
                f"method={self.policy.method!r}, alpha={percent(self.policy.alpha)}, markets={len(self.markets)}, "
                f"certificate: P(ruin) <= {percent(c.upper_bound, 3)} at {percent(c.confidence)} "
                f"({'meets' if self.meets_target else 'DOES NOT meet'} alpha), notes={len(self.notes)})")

    @property
    def currency(self) -> str | None:
        """The currency the money is in (the config's ``venue.currency``), None when not stated."""
        return self.inputs.get("currency")

    @property
    def rates(self) -> pd.Series:
        """The chosen premium rates, a Series indexed by market (fractions of the premium base)."""
        return self.policy.rates

    @property
    def fund_shares(self) -> pd.Series:
        """Each market's share of the fund target (currency units; Euler allocation, summing to the
        fund target above the floor), a Series indexed by market; empty when it was not computed."""
        allocation = (self.analysis or {}).get("allocation") or {}
        by_market = allocation.get("fund_target_by_market") or {}
        return pd.Series({m: float(by_market[m]) for m in self.markets if m in by_market}, dtype=float,
                         name="fund_share").rename_axis("market")

    @property
    def frontier_frame(self) -> pd.DataFrame:
        """The cost of solvency as a DataFrame indexed by alpha (:meth:`Frontier.to_frame`)."""
        return Frontier(self.frontier).to_frame()

    def summary(self) -> str:
        """The answer in a few lines: the policy, the certificate, each market's share of the fund,
        and how many notes to read (:attr:`notes`)."""
        c, currency = self.certificate, self.currency
        lines = [self.policy.summary(currency),
                 f"run certificate  {c.ruins:,} ruins in {c.n:,} fresh scenarios: P(ruin over "
                 f"{self.inputs.get('horizon')} days) <= {percent(c.upper_bound, 3)} at {percent(c.confidence)} "
                 f"confidence ({'meets' if self.meets_target else 'DOES NOT meet'} alpha = {percent(self.policy.alpha)})"]
        shares = self.fund_shares
        if len(shares):
            total = float(shares.sum())
            width = max(len(m) for m in shares.index)
            lines.append("share of the fund")
            lines += [f"  {m:<{width}}  {money(v, currency)}" + (f" ({v / total:.0%})" if total > 0 else "")
                      for m, v in shares.items()]
        if self.notes:
            lines.append(f"notes            {len(self.notes)} (see .notes)")
        return "\n".join(lines)

    @property
    def meets_target(self) -> bool:
        """The certificate's upper bound on P(ruin) is within the problem's alpha."""
        return self.certificate.upper_bound <= self.policy.alpha

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (schema ``RESULT_SCHEMA_VERSION``); run-dependent values sit in ``run``."""
        policy = self.policy.to_dict()
        policy.pop("solve_seconds", None)
        return {
            "schema_version": RESULT_SCHEMA_VERSION,
            "policy": policy,
            "certificate": self.certificate.to_dict(),
            "meets_target": self.meets_target,
            "markets": list(self.markets),
            "models": json_safe(self.models),
            "tail": json_safe(self.tail),
            "stress": json_safe(list(self.stress)),
            "frontier": [{"alpha": p.alpha, "fund_target": p.fund_target, "objective": p.objective,
                          "premium_rates": p.rates_by_market(), "method": p.method} for p in self.frontier],
            "inputs": json_safe(self.inputs),
            "analysis": json_safe(dict(self.analysis)),
            "notes": list(self.notes),
            "run": {"started": self.started, "timings": {k: round(v, 4) for k, v in self.timings.items()},
                    "solve_seconds": round(self.policy.solve_seconds, 4)},
        }



def calibrate(
    config: CalibrationConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    seed: int | None = None,
    method: str | None = None,
    preset: Preset | None = None,
    frontier_alphas: tuple[float, ...] = (),
    frontier_method: str | None = None,
    progress: Progress | None = None,
    client: Any = None,
    sensitivities: bool = True,
) -> CalibrationResult:
    """Run a complete calibration.

    Parameters
    ----------
    config : CalibrationConfig, mapping, path to a TOML file, or None
        None runs the built-in preset (:func:`~fundguard.optimizer.job.preset.default_config`).
    seed : int, optional
        Overrides ``scenarios.seed``. The fit scenarios and the certificate's fresh scenarios come
        from two independent children of ``SeedSequence(seed)``.
    method : str, optional
        Overrides ``problem.method``.
    preset : Preset, optional
        Models for markets without a price file (default: the built-in preset).
    frontier_alphas : tuple of float
        Also trace the cost of solvency at these ruin levels, with ``frontier_method``.
    frontier_method : str, optional
        The method of the frontier; default the answer's method, so that the chosen policy lies on
        the curve. "certified" sets each level's fund target on the run's certificate scenarios
        (fresh, never fitted on; each level's bound holds at the stated confidence on its own).
    progress : callable(str), optional
        Called with a short description at the start of each step (the CLI draws progress from
        it); the library itself never prints.
    client : distributed.Client, optional
        Run the scenarios, the solve, the certificate and the frontier on this Dask cluster
        (:mod:`fundguard.optimizer.distributed`); without it, the config's ``[compute]`` section
        decides (a scheduler address or a local cluster of ``workers`` processes, made and closed
        for this call), and without that the run is in memory. The numbers are the same either
        way (to about 1e-12 relative; ruin counts exactly). Distributed runs gather per-scenario
        summaries for the report (horizon losses, required funds: O(N), never the (N, T, J)
        arrays) and keep ``result.scenarios`` to the first 20,000 random scenarios (plots).
    sensitivities : bool, default True
        Also recompute the fund target with each input bumped by 10% (``result.analysis
        ["sensitivities"]``, :mod:`.sensitivity`; in memory only); about one more scenario build
        per input.

    Returns
    -------
    CalibrationResult

    Raises
    ------
    ConfigError, DataError, ModelError, InfeasibleError, SolverError, CertificationError
        Each with a message naming the key, market, date or constraint.
    """
    timings: dict[str, float] = {}
    notes: list[str] = []
    say = progress or (lambda message: None)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

    cfg = resolve_config(config)
    seed = run_seed(cfg, seed)
    method = method or cfg.problem.method
    frontier_method = frontier_method or method
    check_mode(method, client is not None or cfg.compute.distributed)
    check_local_cluster(cfg, client)
    check_memory(cfg, method, frontier_method=frontier_method if frontier_alphas else None, client=client)

    clock = time.perf_counter()
    say(f"fitting volatility models for {len(cfg.markets)} market(s)")
    fitted = fit_models(cfg, preset, notes, say)
    timings["fit"] = time.perf_counter() - clock
    with compute_client(cfg.compute, client) as where:
        result = run_calibration(cfg, fitted, seed, method, frontier_alphas, frontier_method, say, timings, notes,
                                 where, sensitivities=sensitivities)
    return dataclasses.replace(result, started=started)


def run_calibration(cfg: CalibrationConfig, fitted: Fitted, seed: int, method: str,
                    frontier_alphas: tuple[float, ...], frontier_method: str, say: Progress,
                    timings: dict[str, float], notes: list[str], client: Any,
                    sensitivities: bool = False) -> CalibrationResult:
    """:func:`calibrate` from fitted models on, in this process (``client`` None) or on ``client``'s
    Dask workers; ``timings`` and ``notes`` are filled in as the steps run.

    Only where the scenarios are built and how the report's per-scenario vectors are gathered
    depend on ``client`` (:func:`_scenarios_in_memory`, :func:`_scenarios_on_workers`); the solve,
    the certificate, the frontier and the result are the same calls either way.
    """
    prob = cfg.problem
    models, model_info, from_preset, copula = fitted
    innovations = cfg.scenarios.innovations
    if from_preset and innovations != "parametric":
        raise ConfigError(
            f"scenarios.innovations = {innovations!r} needs each market's residual history, which the built-in "
            "preset does not carry: use 'parametric' or give every market a prices file"
        )
    copula_arg: Any = copula if copula is not None else "t"
    book = venue_book(cfg, models)
    stress_set, stress_labels = stress_scenarios(cfg, models, book)
    problem = policy_problem(cfg)
    place = _RunScenarios.in_memory if client is None else functools.partial(_RunScenarios.on_workers, client)
    run = place(cfg, models, copula_arg, run_seeds(seed), book, stress_set, method, say, timings)
    try:
        problem = with_participation(cfg, problem, run.scenarios, notes)
        policy, certificate, frontier_policies = _solve_and_certify(
            problem, run.scenarios, run.fresh, method, prob.confidence, frontier_alphas, frontier_method, say,
            timings, notes, run.solving, run.n_fresh, run.draw)
        horizon_loss, need, base_totals, market_losses, plot_set = run.vectors(policy)
        checks = run.path_checks()
        analysis = decision_analysis(problem, run.scenarios, policy, notes, say, timings)
        after = after_fund_analysis(cfg, policy, run.scenarios, book, notes, say, timings)
        if after:
            analysis["after_fund"] = after
    finally:
        run.release()
    if sensitivities and analysis:  # in memory only (decision_analysis is empty on Dask workers)
        say("sensitivities: the fund target's response to each input (common random numbers)")
        clock = time.perf_counter()
        analysis["sensitivities"] = decision_sensitivities(cfg, models, copula_arg, run_seeds(seed).fit, book,
                                                           problem, policy, method, progress=_counter(say, "inputs"))
        timings["sensitivities"] = time.perf_counter() - clock

    result_notes(notes, not horizon_loss.any(), policy, method, certificate, prob.alpha)
    path_notes(notes, checks)
    return CalibrationResult(
        policy=policy,
        certificate=certificate,
        markets=cfg.market_names,
        models=model_info,
        tail={**tail_from(policy, horizon_loss, need, market_losses, base_totals, cfg.market_names),
              "path_check": {name: check.describe() for name, check in checks.items()}},
        stress=tuple(stress_summary(policy, stress_set, stress_labels)) if stress_set is not None else (),
        inputs=_inputs(cfg, model_info, seed, method, problem, book, stress_set, innovations),
        notes=tuple(notes),
        timings=timings,
        scenarios=plot_set,
        market_losses=market_losses,
        frontier=frontier_policies,
        path_checks=checks,
        analysis=analysis,
    )


def decision_analysis(problem: PolicyProblem, scenarios: Any, policy: Policy, notes: list[str], say: Progress,
                      timings: dict[str, float]) -> dict[str, Any]:
    """The near-optimal set and the Euler allocation of the chosen policy on the fit scenarios
    (in memory; on Dask workers a note says they were skipped)."""
    if not isinstance(scenarios, ScenarioSet):
        notes.append("the near-optimal set and the per-market allocation are not computed on Dask workers yet")
        return {}
    clock = time.perf_counter()
    say("reading the decision: near-optimal set and per-market allocation")
    out: dict[str, Any] = {}
    try:
        near = near_optimal_set(problem, scenarios, policy, n_samples=NEAR_OPTIMAL_SAMPLES)
    except FundguardError as exc:
        notes.append(f"near-optimal set not computed: {exc}")
    else:
        out["near_optimal"] = near.to_dict()
        low, high = near.fund_target_range
        if near.flat:
            wide = [name for name, (a, b), lo, hi in zip(policy.markets, near.rate_ranges, *problem.rate_box(len(policy.markets)))
                    if hi > lo and (b - a) > 0.5 * (hi - lo)]
            notes.append(
                f"the decision is flat: policies within {near.tolerance:.0%} of the least cost hold fund targets "
                f"from {low:,.0f} to {high:,.0f}" + (f" and rates over most of their bounds ({', '.join(wide)})" if wide else "")
                + " (exact-sample yardstick): the method's answer is one of many that cost nearly the same")
    try:
        shares = euler_allocation(policy, scenarios)
    except FundguardError as exc:
        notes.append(f"per-market allocation not computed: {exc}")
    else:
        out["allocation"] = {"fund_target_by_market": {str(k): float(v) for k, v in shares.items()},
                             "floor": float(shares.attrs.get("floor", 0.0)),
                             "basis": shares.attrs.get("basis"), "window": shares.attrs.get("window")}
    timings["analysis"] = time.perf_counter() - clock
    return out


def after_fund_analysis(cfg: CalibrationConfig, policy: Policy, scenarios: Any, book: Any, notes: list[str],
                        say: Progress, timings: dict[str, float]) -> dict[str, Any]:
    """What comes after the fund, on the fit scenarios (in memory): the ruin rule, the configured
    waterfall (``[waterfall]``) and every allocation rule beside it (P(ADL), expected and tail ADL,
    the cost to winners, fairness), and the capital of each fund topology for the same solvency
    ("any fund ruined", at the chosen rates: pooled, per market, the suggested tail-dependence
    groups and the configured ``[[funds]]``)."""
    if not isinstance(scenarios, ScenarioSet):
        notes.append("the waterfall and the fund topologies are not computed on Dask workers yet")
        return {}
    clock = time.perf_counter()
    say("after the fund: waterfall, auto-deleveraging and fund topologies")
    wf = cfg.waterfall
    out: dict[str, Any] = {"ruin": {**policy.ruin.to_dict(), "meaning": policy.ruin.describe()},
                           "waterfall": {"layers": [{"name": n, "size": s} for n, s in wf.layers],
                                         "allocation": wf.allocation, "accounts": wf.accounts}}
    layers = tuple(Layer(n, s) for n, s in wf.layers)
    tiers = {m.name: m.tiers for m in book.markets}
    if scenarios.winners is None or scenarios.losses_by_market is None:
        notes.append("auto-deleveraging not measured: the loss model gives no winners' profits")
    else:
        rules = (wf.allocation, *[r for r in ALLOCATION_RULES if r != wf.allocation])
        out["adl"] = {rule: run_waterfall(policy, scenarios, Waterfall(layers, allocation=rule, accounts=wf.accounts),
                                          tiers).summary() for rule in rules}
    try:
        markets = list(policy.markets)
        scaled = scenarios if policy.participation is None else policy.participation.scaled(
            scenarios, policy.premium_rates, fund_only=True)
        needs = group_needs(scaled, policy.premium_rates, [[m] for m in markets], floor=policy.floor,
                            ruin=policy.ruin)
        suggested = [list(g) for g in suggest_groups(needs[~scaled.is_stress], markets)]
        layouts = {"pooled": [markets], "per market": [[m] for m in markets], "suggested": suggested}
        if cfg.funds:
            layouts["configured"] = [list(f.markets) for f in cfg.funds]
        sized = compare_topologies(policy, scenarios, layouts, rule="any")
    except FundguardError as exc:
        notes.append(f"fund topologies not compared: {exc}")
    else:
        out["topologies"] = {name: s.to_dict() for name, s in sized.items()}
        if cfg.funds:
            configured = sized["configured"]
            out["funds"] = {f.name: float(x) for f, x in zip(cfg.funds, configured.funds, strict=True)}
            notes.append("[[funds]]: the fund targets per fund are sized at the chosen rates for P(any fund ruined) "
                         f"<= alpha on the fit scenarios (total {configured.total:,.0f} against the pooled "
                         f"{sized['pooled'].total:,.0f}); the policy's own fund target is the pooled one")
    timings["after_fund"] = time.perf_counter() - clock
    return out


def with_participation(cfg: CalibrationConfig, problem: PolicyProblem, scenarios: Any,
                       notes: list[str]) -> PolicyProblem:
    """``problem`` with the book answering the fees (``[problem] participation_elasticity``; see
    :mod:`fundguard.optimizer.participation`): ``eps_j = e E[B_j] / (tau_j Vol_j)`` from the fit
    scenarios' mean premium base, each market's ``trading_fee`` and traded volume over the horizon
    (``daily_volume`` x horizon days), observed at the rates in force (``current_rate``). A
    ``premium_weight`` above 0 prices the fees instead of the derived cost. Off (the problem as
    it is) at elasticity 0, and on a chunked (Dask) scenario set, with a note."""
    prob = cfg.problem
    if prob.participation_elasticity <= 0.0:
        return problem
    if not isinstance(scenarios, ScenarioSet):
        notes.append("participation is not modelled on Dask workers yet: the book does not answer the fees in this "
                     "run (the fee's cost is premium_weight)")
        return problem
    period_days = float(scenarios.metadata.get("period_days", 1.0))
    volume = np.array([m.daily_volume * cfg.scenarios.horizon * period_days for m in cfg.markets])
    weights = np.atleast_1d(problem.per_market("premium_weight", len(cfg.markets)))
    part = Participation.from_elasticity(
        mean_market_bases(scenarios), volume, elasticity=prob.participation_elasticity,
        trading_fee=[m.trading_fee for m in cfg.markets], reference_rates=[m.current_rate for m in cfg.markets],
        trader_weight=prob.trader_weight, fee_cost="weight" if np.any(weights > 0) else "derived")
    return dataclasses.replace(problem, participation=part)


#: Rate vectors the near-optimal set evaluates in a calibration (each one pass over the fit scenarios).
NEAR_OPTIMAL_SAMPLES = 256

#: What :meth:`_RunScenarios.vectors` returns, per random scenario: horizon loss (N,), required
#: fund (N,), premium-base totals (N, J), per-market horizon losses (N, J); and the scenarios kept
#: for the plots (random then stress).
Vectors = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, ScenarioSet]


@dataclass(frozen=True)
class _RunScenarios:
    """A run's scenarios where they were built: the fit set (random then stress), the fresh set of
    the certificate, the progress line of the solve, the report's vectors, the check of the random
    paths against the stated bound ("fit", "certify"; after ``vectors``) and what frees them."""

    scenarios: Any
    fresh: Any
    n_fresh: int
    solving: str
    vectors: Callable[[Policy], Vectors]
    release: Callable[[], None]
    path_checks: Callable[[], dict[str, PathCheck]]
    #: ``draw(n, seed) -> ScenarioSet``: n more fresh scenarios from the run's model (method
    #: "certified"'s ``fresh``), None where the run cannot draw them (the distributed mode).
    draw: Callable[[int, int | None], ScenarioSet] | None = None

    @classmethod
    def in_memory(cls, cfg: CalibrationConfig, models: Mapping[str, VolModel], copula_arg: Any, seeds: RunSeeds,
                  book: VenueBook, stress_set: ScenarioSet | None, method: str, say: Progress,
                  timings: dict[str, float]) -> _RunScenarios:
        """Simulate and build every scenario in this process."""
        scen = cfg.scenarios
        clock = time.perf_counter()
        say(f"simulating {scen.n_scenarios:,} + {scen.certify_scenarios:,} scenarios of {scen.horizon} periods "
            "and building venue losses")
        count, total = _counter(say, "scenarios"), scen.n_scenarios + scen.certify_scenarios

        def after(offset: int) -> Callable[[int, int], None] | None:
            """One bar over both draws: the certificate set's counts follow the fit set's."""
            return None if count is None else (lambda done, _: count(offset + done, total))

        # One set at a time, its return paths freed as soon as its losses are built: the paths of
        # both sets and both sets never share memory (issue 20: calibrate within 2x its sets' bytes).
        losses_of = loss_model_of(cfg)
        built_seconds = 0.0

        def draw_set(n: int, seed: Any, offset: int, what: str) -> ScenarioSet:
            nonlocal built_seconds
            paths = simulate_returns(models, scen.horizon, n, innovations=scen.innovations, seed=seed,
                                     copula=copula_arg, chunk_size=scen.chunk_size, progress=after(offset))
            checks[what] = check_paths(paths)
            start = time.perf_counter()
            built = build_scenarios(paths, book, loss_model=losses_of, dtype=scen.dtype)
            built_seconds += time.perf_counter() - start
            return built

        checks: dict[str, PathCheck] = {}
        random_set = draw_set(scen.n_scenarios, seeds.fit, 0, "fit")
        if stress_set is not None:
            # the stress scenarios last: the random part of the stack is a view of its leading rows
            scenarios = ScenarioSet.concat([random_set, stress_set])
            random_set = scenarios.random_part()
        else:
            scenarios = random_set
        market_losses = random_set.losses_by_market.sum(axis=1)  # (N, J): each market's horizon loss
        certify_set = draw_set(scen.certify_scenarios, seeds.certify, scen.n_scenarios, "certify")
        timings["losses"] = built_seconds
        timings["simulate"] = time.perf_counter() - clock - built_seconds

        def vectors(policy: Policy) -> Vectors:
            return (random_set.losses.sum(axis=1), required_fund(policy, random_set),
                    random_set.premium_base.sum(axis=1), market_losses, scenarios)

        def draw(n: int, seed: int | None) -> ScenarioSet:
            say(f"drawing {n:,} fresh scenarios for method 'certified''s fund target")
            clock = time.perf_counter()
            child = np.random.SeedSequence(seeds.method.entropy, spawn_key=(*seeds.method.spawn_key, seed or 0))
            paths = simulate_returns(models, scen.horizon, n, innovations=scen.innovations, seed=child,
                                     copula=copula_arg, chunk_size=scen.chunk_size, progress=_counter(say, "scenarios"))
            checks["method fresh"] = check_paths(paths)
            drawn = build_scenarios(paths, book, loss_model=losses_of, dtype=scen.dtype)
            timings["method fresh"] = time.perf_counter() - clock
            return drawn

        return cls(scenarios, certify_set, certify_set.n_scenarios, f"solving (method {method!r})", vectors,
                   lambda: None, lambda: checks, draw)

    @classmethod
    def on_workers(cls, client: Any, cfg: CalibrationConfig, models: Mapping[str, VolModel], copula_arg: Any,
                   seeds: RunSeeds, book: VenueBook, stress_set: ScenarioSet | None, method: str, say: Progress,
                   timings: dict[str, float]) -> _RunScenarios:
        """Simulate and build the scenarios in chunks on ``client``'s workers; the vectors are gathered
        from them (O(N), never the (N, T, J) arrays) with the first 20,000 random scenarios for the plots."""
        scen = cfg.scenarios
        chunk_size = cfg.compute.chunk_size
        clock = time.perf_counter()
        say(f"simulating {scen.n_scenarios:,} + {scen.certify_scenarios:,} scenarios of {scen.horizon} periods "
            "and building venue losses on the Dask workers")
        fit_plan = plan_simulation(models, scen.horizon, scen.n_scenarios, innovations=scen.innovations,
                                   seed=seeds.fit, copula=copula_arg)
        certify_plan = plan_simulation(models, scen.horizon, scen.certify_scenarios, innovations=scen.innovations,
                                       seed=seeds.certify, copula=copula_arg)
        chunked = chunked_scenarios(fit_plan, book, client, chunk_size=chunk_size, stress=stress_set,
                                    loss_model=loss_model_of(cfg), dtype=scen.dtype)
        fresh = chunked_scenarios(certify_plan, book, client, chunk_size=chunk_size, loss_model=loss_model_of(cfg),
                                  dtype=scen.dtype)
        timings["simulate"] = time.perf_counter() - clock

        def vectors(policy: Policy) -> Vectors:
            clock = time.perf_counter()
            say("gathering per-scenario summaries for the report")
            parts = chunked.map(_report_vectors, policy)
            horizon_loss = np.concatenate([p[0] for p in parts])
            need = np.concatenate([p[1] for p in parts])
            base_totals = np.concatenate([p[2] for p in parts])
            market_losses = np.concatenate(chunked.map(_market_losses))
            futures = [client.submit(_path_check, fit_plan, b0, b1, pure=False) for b0, b1 in chunked.blocks]
            checks["fit"] = PathCheck.merge(client.gather(futures))
            head = chunked.map(_head_rows, _PLOT_SCENARIOS)
            plot_set = ScenarioSet.concat([part for part in head if part is not None]
                                          + ([stress_set] if stress_set is not None else []))
            timings["losses"] = time.perf_counter() - clock
            return horizon_loss, need, base_totals, market_losses, plot_set

        def path_checks() -> dict[str, PathCheck]:
            # Both sets' blocks are simulated once more on the workers for their checks.
            futures = [client.submit(_path_check, certify_plan, b0, b1, pure=False) for b0, b1 in fresh.blocks]
            checks["certify"] = PathCheck.merge(client.gather(futures))
            return checks

        def release() -> None:
            chunked.release()
            fresh.release()

        checks: dict[str, PathCheck] = {}
        return cls(chunked, fresh, fresh.n_random, f"solving (method {method!r}) on {chunked.n_chunks} chunks",
                   vectors, release, path_checks)


def _report_vectors(chunk: ScenarioSet, start: int, policy: Policy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per scenario of a chunk (on a worker): horizon loss (n,), required fund (n,), premium base totals (n, J)."""
    scaled = at_policy(policy, chunk)  # the book as the policy's fees leave it (optimizer.participation)
    return scaled.losses.sum(axis=1), required_fund(policy, chunk), scaled.premium_base.sum(axis=1)


def market_horizon_losses(paths: Any, book: VenueBook, loss_model: Any = "stateful_book") -> np.ndarray:
    """Horizon loss per scenario and market of return paths on the venue's book, (N, J) float64, currency units."""
    return build_scenarios(paths, book, loss_model=loss_model).losses_by_market.sum(axis=1)


def _market_losses(chunk: ScenarioSet, start: int) -> np.ndarray:
    """Horizon loss per scenario and market of a chunk (on a worker), (n, J)."""
    return chunk.losses_by_market.sum(axis=1)


def _path_check(plan: Any, first: int, stop: int) -> PathCheck:
    """The check of blocks ``[first, stop)`` of ``plan`` against the stated bound (on a worker)."""
    return check_paths(plan.simulate(first, stop))


#: Random scenarios a distributed run keeps in ``CalibrationResult.scenarios`` (for the plots).
_PLOT_SCENARIOS = 20_000


def _head_rows(chunk: ScenarioSet, start: int, count: int) -> ScenarioSet | None:
    """The chunk's rows among the first ``count`` random scenarios (None when it has none)."""
    keep = max(0, min(chunk.n_scenarios, count - start))
    return chunk.subset(slice(0, keep)) if keep else None


def _inputs(cfg: CalibrationConfig, model_info: Mapping[str, Any], seed: int, method: str, problem: PolicyProblem,
            book: VenueBook, stress_set: ScenarioSet | None, innovations: str) -> dict[str, Any]:
    scen, prob = cfg.scenarios, cfg.problem
    return {
        "config_digest": cfg.digest,
        "config_source": None if cfg.source is None else str(cfg.source),
        "preset": any(info["source"] == "preset" for info in model_info.values()),
        "seed": seed,
        "method": method,
        "confidence": prob.confidence,
        "n_scenarios": scen.n_scenarios,
        "n_stress": 0 if stress_set is None else stress_set.n_scenarios,
        "certify_scenarios": scen.certify_scenarios,
        "horizon": scen.horizon,
        "currency": cfg.venue.currency,
        "innovations": innovations,
        "problem": problem.to_dict(),
        "venue": book.describe(),
        "versions": package_versions(),
    }


def _solve_and_certify(problem: PolicyProblem, scenarios: Any, certify_set: Any, method: str, confidence: float,
                       frontier_alphas: tuple[float, ...], frontier_method: str, say: Progress,
                       timings: dict[str, float], notes: list[str], solving: str, n_fresh: int,
                       draw: Callable[[int, int | None], ScenarioSet] | None = None
                       ) -> tuple[Policy, Certificate, tuple[Policy, ...]]:
    """Solve, certify on the fresh set and trace the frontier (in memory or chunked: same calls),
    recording each step's time in ``timings``. Method "certified" draws its own fresh scenarios
    with ``draw`` (its certificate is on them; the run's certificate is on the run's fresh set, a
    second, independent one)."""
    clock = time.perf_counter()
    say(solving)
    options: dict[str, Any] = {"confidence": confidence} if method == "certified" else {}
    if method == "certified" and draw is not None:
        options["fresh"] = draw
    policy = solve(problem, scenarios, method=method, **options)
    timings["solve"] = time.perf_counter() - clock

    clock = time.perf_counter()
    say(f"certifying on {n_fresh:,} fresh scenarios")
    certificate = certify(policy, certify_set, confidence=confidence)
    timings["certify"] = time.perf_counter() - clock

    frontier_policies: tuple[Policy, ...] = ()
    if frontier_alphas:
        clock = time.perf_counter()
        say(f"tracing the cost of solvency at {len(frontier_alphas)} ruin levels")
        frontier_policies = _frontier(problem, scenarios, frontier_alphas, frontier_method, notes, policy,
                                      fresh=certify_set, confidence=confidence, progress=_counter(say, "levels"))
        timings["frontier"] = time.perf_counter() - clock
    return policy, certificate, frontier_policies


def _counter(say: Progress, unit: str) -> Callable[[int, int], None] | None:
    """``(done, total)`` counts for ``say``'s current step when it draws bars (its ``advance``
    method, as the CLI's does); None for a plain callable."""
    advance = getattr(say, "advance", None)
    return None if advance is None else (lambda done, total: advance(done, total, unit))


def _frontier(problem: PolicyProblem, scenarios: ScenarioSet, alphas: tuple[float, ...], method: str,
              notes: list[str], policy: Policy | None = None, *, fresh: Any = None,
              confidence: float = 0.99, progress: Callable[[int, int], None] | None = None) -> tuple[Policy, ...]:
    """The cost of solvency over ``alphas``. With participation it is traced at the chosen rates
    (the book scaled by their shares, the fund target per level by ``method``): a rate search per
    level would cost as much as the calibration again. Method "certified" sets each level's fund
    target on ``fresh`` (the run's certificate scenarios, scaled alike), never on a new draw."""
    try:
        part = problem.participation
        options: dict[str, Any] = {} if progress is None else {"progress": progress}  # (frontier ignores it when chunked)
        if method == "certified":
            if fresh is None or is_chunked(fresh):
                raise ValueError("method 'certified' needs fresh scenarios in memory")
            options = {**options, "confidence": confidence, "fresh": fresh}
        if part is not None and policy is not None:
            if "fresh" in options:
                options["fresh"] = part.scaled(fresh, policy.premium_rates, fund_only=True)
            traced = frontier(at_fixed_rates(problem, policy.premium_rates),
                              part.scaled(scenarios, policy.premium_rates, fund_only=True), list(alphas),
                              method=method, **options)
            mean_base, mean_loss = mean_market_bases(scenarios), mean_market_losses(scenarios)
            return tuple(dataclasses.replace(p, participation=part, objective=participation_cost(
                problem, p.fund_target, policy.premium_rates, mean_base, mean_loss)) for p in traced)
        return tuple(frontier(problem, scenarios, list(alphas), method=method, **options))
    except Exception as exc:  # the frontier is a report extra: never lose the calibration over it
        notes.append(f"cost-of-solvency frontier not traced with method {method!r} ({type(exc).__name__}: {exc})")
        return ()
