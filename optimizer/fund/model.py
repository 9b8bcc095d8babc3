"""The scaled model of one (problem, scenarios) pair: :class:`FundModel`, its screening, :class:`ScreenedRows`.

:class:`FundModel` is the scaled, cumulative view the formulations are written against; solvers
only ever see its well-scaled numbers. The canonical ruin check on the caller's unscaled arrays
(:func:`~.equation.worst_net_flow`, :func:`~.equation.count_ruined`) lives in :mod:`.equation`,
so every solver answer can be re-checked independently of the solver (docs/design.md,
"Certificates").

Notation (docs/design.md): ``F[s, t] = F0 + sum_{u <= t} (sum_j p_j B[s, u, j] - L[s, u])``. The
*required fund* of scenario s at rates p is the smallest ``F0`` with which it is not ruined::

    R_s(p) = max_t ( floor + sum_{u <= t} L[s, u] - sum_j p_j sum_{u <= t} B[s, u, j] )

Scenario s is ruined iff ``F0 < R_s(p)``. ``R_s`` is convex and, because premium bases are
non-negative, non-increasing in every rate: its maximum over the rate box is at
``premium_min`` and its minimum at ``premium_max``. That monotonicity is what the exact
screening in :meth:`FundModel.screen` rests on.

Memory plan (issue 5): a FundModel never holds arrays the size of the ScenarioSet. Building it
is one streaming pass over scenario chunks that keeps two numbers per scenario (``R_s`` at both
corners of the rate box); the (scenario, period) rows a method needs are gathered, cumulated and
scaled only for the few scenarios that survive screening (:meth:`FundModel.screen`); every other
full-size quantity (``R_s`` at given rates, the numpy check) is one more streaming pass. Peak
memory is the ScenarioSet plus O(N) vectors, chunk buffers of about 2 MB and the screened rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fundguard.models import ScenarioSet
from fundguard.models.errors import InfeasibleError, ProblemError, ScenarioError, SolverError

from ..problem import PolicyProblem
from .equation import CHUNK_VALUES, allowed_ruins, corner_pass, kth_largest, objective_value, scenario_chunks, worst_net_flow

__all__ = ["FundModel", "ScreenedRows"]


@dataclass(frozen=True, eq=False)
class FundModel:
    """One (problem, scenarios) pair in the scaled units every formulation is written in.

    Decisions are rescaled to order one: the fund target above the floor,
    ``F0 = floor + money_scale * f``, and, for the markets whose rate is not fixed (``free``),
    ``p_j = rate_low_j + rate_span_j * u_j`` with ``u_j`` in [0, 1]. In those units the required
    fund of scenario s above the floor is ``R_s(u) = max_t ( required0[s, t] - relief[s, t, :] @ u )``
    with::

        required0[s, t] = (sum_{v <= t} L[s, v] - sum_{v <= t} B[s, v, :] @ rate_low) / money_scale
        relief[s, t, j] = sum_{v <= t} B[s, v, free_j] * rate_span[free_j] / money_scale   (>= 0)

    Measuring the fund from the floor keeps the solvers' numbers of the size of the losses
    whatever the floor is: with ``F0`` itself as the decision a floor of 1e12 on losses of 1e6
    left the losses in the last six digits of every row, below the solvers' tolerances (the
    "exact" fund above the floor came out 1% too high, cutting-plane "cvar" 5e-4). ``F0 >= 0``
    becomes ``f >= fund_min = -floor / money_scale`` and the floor's capital cost
    ``cost_of_capital * floor`` (:attr:`floor_cost`) stays out of the scaled objective.

    Those (N, T) and (N, T, Jf) arrays are never built for all scenarios (see the module
    notes): :meth:`screen` builds them for the scenarios that can matter.

    Attributes
    ----------
    problem : PolicyProblem
    source : ScenarioSet
        The scenarios as given (random and stress), in the caller's units; never copied.
    random_index : (N,) int or None
        Positions of the random scenarios in ``source`` (None when there is no stress scenario).
    stress : ScenarioSet or None
        Stress scenarios that must be survived (``problem.survive_stress``), else None.
    markets : tuple of str
    rate_low, rate_span : (J,) float64
        ``premium_min`` and ``premium_max - premium_min`` per market.
    free : (Jf,) int
        Markets whose rate is a decision (``rate_span > 0``).
    money_scale : float, currency units
        Typical fund target above the floor: the required fund at ``premium_min`` of the
        ``(floor(alpha N) + 1)``-th worst scenario (falls back to the largest, then to 1).
    objective_scale : float, currency units
        Divides the objective so that its largest coefficient is about one.
    highest, lowest : (N,) float64
        Scaled ``R_s`` (above the floor) at ``premium_min`` (u = 0, its maximum over the box) and
        at ``premium_max`` (u = 1, its minimum).
    stress_required0, stress_relief : (Ns, T) and (Ns, T, Jf) float64
        ``required0`` and ``relief`` of the stress scenarios (few: kept whole).
    mean_base : (J,) float64, currency units
        Mean over random scenarios of ``sum_t B[s, t, j]``.
    cost_fund : float
        Objective coefficient of ``f`` (scaled).
    cost_rate, curvature : (Jf,) float64
        Linear and diagonal quadratic objective coefficients of ``u`` (scaled).
    cost_constant : float
        The rest of the scaled objective (fixed markets, constants).
    largest_loss : float, currency units
        ``max_s sum_t L[s, t]`` over the scenarios (random and kept stress): no fund target
        needs more than ``floor`` plus this (:meth:`confirm`).
    """

    problem: PolicyProblem
    source: ScenarioSet
    random_index: np.ndarray | None
    stress: ScenarioSet | None
    markets: tuple[str, ...]
    rate_low: np.ndarray
    rate_span: np.ndarray
    free: np.ndarray
    money_scale: float
    objective_scale: float
    highest: np.ndarray
    lowest: np.ndarray
    stress_required0: np.ndarray
    stress_relief: np.ndarray
    mean_base: np.ndarray
    cost_fund: float
    cost_rate: np.ndarray
    curvature: np.ndarray
    cost_constant: float
    largest_loss: float

    @classmethod
    def build(
        cls,
        problem: PolicyProblem,
        scenarios: ScenarioSet,
        scale_alpha: float | None = None,
        sample: np.ndarray | None = None,
    ) -> FundModel:
        """Validate the pair and make one streaming pass over the scenarios.

        Parameters
        ----------
        problem : PolicyProblem
        scenarios : ScenarioSet
            All scenarios; stress scenarios are split off (they are few: copied).
        scale_alpha : float, optional
            Level whose order statistic sets ``money_scale`` (default ``problem.alpha``).
        sample : (M,) int, increasing, optional
            Positions in ``scenarios`` of the random scenarios to fit on (default: every random
            scenario); a subsample without copying the data (method "certified"'s training part).

        Raises
        ------
        ProblemError
            A per-market field whose length is not the number of markets.
        ScenarioError
            No random (non-stress) scenario.

        Notes
        -----
        Cost: one pass over the data (two matrix-vector products per chunk, one when
        ``premium_min`` is zero), O(N) memory beyond the ScenarioSet.
        """
        n_markets = scenarios.n_markets
        problem.check_markets(n_markets)
        if scenarios.n_stress == scenarios.n_scenarios:
            raise ScenarioError(
                f"all {scenarios.n_scenarios} scenarios are stress scenarios; probabilities need random ones"
            )
        if sample is not None:
            random_index = np.asarray(sample, dtype=np.int64)
        else:
            random_index = np.flatnonzero(~scenarios.is_stress) if scenarios.n_stress else None
        stress = scenarios.subset(scenarios.is_stress) if (problem.survive_stress and scenarios.n_stress) else None

        low, high = problem.rate_box(n_markets)
        span = high - low
        free = np.flatnonzero(span > 0.0)

        # R_s above the floor at both corners: -min_t cumsum_t(B @ p - L), the canonical check's sums.
        member = None
        if random_index is not None:
            member = np.zeros(scenarios.n_scenarios, dtype=bool)
            member[random_index] = True
        worst_low, worst_high, total_base, largest_loss = corner_pass(
            scenarios, low, high if free.size else None, member)
        _check_finite_corners(problem, worst_low, worst_high)
        if random_index is not None:
            worst_low = worst_low[random_index]
            worst_high = worst_high[random_index] if free.size else worst_low
        highest = -worst_low
        lowest = -worst_high if free.size else highest.copy()
        return cls.assemble(problem, scenarios, random_index, stress, highest, lowest, total_base / worst_low.size,
                            scale_alpha=scale_alpha, largest_loss=largest_loss)

    @classmethod
    def assemble(
        cls,
        problem: PolicyProblem,
        source: ScenarioSet,
        random_index: np.ndarray | None,
        stress: ScenarioSet | None,
        highest: np.ndarray,
        lowest: np.ndarray,
        mean_base: np.ndarray,
        *,
        scale_alpha: float | None = None,
        n_random: int | None = None,
        largest_abs: float | None = None,
        largest_loss: float | None = None,
        **fields: object,
    ) -> FundModel:
        """A FundModel from the results of the streaming pass (the second half of :meth:`build`).

        Parameters
        ----------
        highest, lowest : (K,) float64, currency units (unscaled; scaled in place)
            ``-worst_net_flow`` (the required fund above the floor) at ``premium_min`` and at
            ``premium_max``: of every random
            scenario (K = N), or of a tail view holding at least the ``floor(alpha N) + 1``
            largest of both (:mod:`.distributed`).
        mean_base : (J,) float64, currency units
        n_random : int, optional
            N, the random scenarios (default ``highest.size``).
        largest_abs : float, optional
            ``max |highest|`` over all N (default: over the given entries).
        largest_loss : float, optional, currency units
            The largest total loss over the horizon of any scenario the model stands for
            (default: of ``source`` and ``stress``); bounds every sane fund target (:meth:`confirm`).
        **fields
            Extra fields of a subclass.
        """
        n_markets = source.n_markets
        low, high = problem.rate_box(n_markets)
        span = high - low
        free = np.flatnonzero(span > 0.0)
        n_random = highest.size if n_random is None else n_random
        alpha = problem.alpha if scale_alpha is None else scale_alpha
        scale = kth_largest(highest, min(allowed_ruins(alpha, n_random) + 1, n_random))
        if stress is not None:
            s_losses, s_base = _cumulative(stress)
            s_unscaled0 = s_losses - s_base @ low
            scale = max(scale, float(s_unscaled0.max()))
        if not scale > 0.0:
            scale = float(np.abs(highest).max()) if largest_abs is None else largest_abs
        if not scale > 0.0:
            scale = 1.0
        highest /= scale
        lowest /= scale
        if stress is not None:
            stress_required0 = s_unscaled0 / scale
            stress_relief = s_base[..., free] * (span[free] / scale)
        else:
            stress_required0 = np.zeros((0, source.horizon))
            stress_relief = np.zeros((0, source.horizon, free.size))

        weight = problem.per_market("premium_weight", n_markets)
        penalty = problem.rate_change_penalty
        anchor = problem.per_market("previous_rates", n_markets) if penalty > 0.0 else low
        offset = low - anchor
        linear = weight * mean_base * span + 2.0 * penalty * span * offset
        quadratic = penalty * span**2
        constant = float(weight @ (low * mean_base)) + penalty * float(offset @ offset)
        obj_scale = max(
            problem.cost_of_capital * scale, float(np.abs(linear).max(initial=0.0)), float(quadratic.max(initial=0.0))
        )
        if not obj_scale > 0.0:
            obj_scale = 1.0
        if largest_loss is None:
            largest_loss = _largest_loss(source.losses)
        if stress is not None:
            largest_loss = max(largest_loss, _largest_loss(stress.losses))
        _check_representable(problem, largest_loss, (scale * problem.cost_of_capital, linear, quadratic, constant))
        return cls(
            problem=problem,
            source=source,
            random_index=random_index,
            stress=stress,
            markets=tuple(source.markets),
            rate_low=low,
            rate_span=span,
            free=free,
            money_scale=float(scale),
            objective_scale=float(obj_scale),
            highest=highest,
            lowest=lowest,
            stress_required0=stress_required0,
            stress_relief=stress_relief,
            mean_base=mean_base,
            cost_fund=problem.cost_of_capital * scale / obj_scale,
            cost_rate=linear[free] / obj_scale,
            curvature=quadratic[free] / obj_scale,
            cost_constant=constant / obj_scale,
            largest_loss=float(largest_loss),
            **fields,
        )

    # -- sizes ------------------------------------------------------------------------------
    @property
    def n_scenarios(self) -> int:
        """N, the random scenarios."""
        return int(self.highest.size)

    @property
    def horizon(self) -> int:
        """T, the periods."""
        return self.source.horizon

    @property
    def n_free(self) -> int:
        """Jf, the rates that are decisions."""
        return int(self.free.size)

    @property
    def n_decisions(self) -> int:
        """``1 + Jf``: the fund target and the free rates (the ``d`` of the scenario approach)."""
        return 1 + self.n_free

    # -- decisions ----------------------------------------------------------------------------
    def rates(self, u: np.ndarray) -> np.ndarray:
        """Premium rates (J,) from scaled free rates ``u`` (Jf,), clipped to the box."""
        rates = self.rate_low.copy()
        rates[self.free] += self.rate_span[self.free] * np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
        return rates

    def scaled_rates(self, premium_rates: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`rates`: ``u`` (Jf,) for premium rates (J,)."""
        u = (np.asarray(premium_rates, dtype=np.float64)[self.free] - self.rate_low[self.free]) / self.rate_span[self.free]
        return np.clip(u, 0.0, 1.0)

    # -- full passes over the random scenarios ------------------------------------------------
    def worst(self, premium_rates: np.ndarray) -> np.ndarray:
        """:func:`worst_net_flow` of the random scenarios at ``premium_rates`` (J,): (N,), currency units.

        One streaming pass: over all of ``source``, dropping the others, when the random
        scenarios are most of it; else over theirs only, gathered chunk by chunk.
        """
        source, index = self.source, self.random_index
        if index is not None and 2 * index.size < source.n_scenarios:
            return worst_net_flow(source.losses, source.premium_base, premium_rates, index=index)
        worst = worst_net_flow(source.losses, source.premium_base, premium_rates)
        return worst if index is None else worst[index]

    def required(self, u: np.ndarray) -> np.ndarray:
        """Scaled required fund above the floor ``R_s(u)`` of every random scenario, (N,): one streaming pass."""
        return -self.worst(self.rates(u)) / self.money_scale

    def stress_required(self, u: np.ndarray) -> float:
        """Largest scaled required fund over the stress scenarios that must be survived (-inf if none)."""
        if not self.stress_required0.shape[0]:
            return -math.inf
        return float(_max_affine(self.stress_required0, self.stress_relief, u).max())

    # -- objective ----------------------------------------------------------------------------
    def scaled_objective(self, f: float, u: np.ndarray) -> float:
        """The objective in scaled units at scaled decisions ``(f, u)``."""
        u = np.asarray(u, dtype=np.float64)
        return float(self.cost_fund * f + self.cost_rate @ u + self.curvature @ (u * u) + self.cost_constant)

    def objective(self, fund_target: float, premium_rates: np.ndarray) -> float:
        """The objective in currency units (recomputed from the problem, not the scaled data)."""
        return objective_value(self.problem, fund_target, premium_rates, self.mean_base)

    @property
    def fund_cap(self) -> float:
        """Scaled ``fund_max`` (above the floor; inf when unset)."""
        fund_max = self.problem.fund_max
        return math.inf if fund_max is None else (fund_max - self.problem.floor) / self.money_scale

    @property
    def fund_min(self) -> float:
        """Scaled ``F0 >= 0``: the lowest ``f`` (above the floor) a fund target can have."""
        return -self.problem.floor / self.money_scale

    @property
    def floor_cost(self) -> float:
        """``cost_of_capital * floor``, currency units: the part of every objective the scaled one leaves out."""
        return self.problem.cost_of_capital * self.problem.floor

    def fund_target(self, f: float) -> float:
        """The fund target in currency units of a scaled fund ``f`` (above the floor)."""
        return self.problem.floor + self.money_scale * f

    # -- exact screening ------------------------------------------------------------------------
    def required_range(self) -> tuple[np.ndarray, np.ndarray]:
        """Scaled required fund of every scenario at the cheapest and dearest corners of the box.

        Returns
        -------
        highest : (N,) ``R_s`` at ``premium_min`` (u = 0), its maximum over the box.
        lowest : (N,) ``R_s`` at ``premium_max`` (u = 1), its minimum over the box.
        """
        return self.highest, self.lowest

    def screen(self, candidates: np.ndarray, threshold: float, stress: bool = False) -> ScreenedRows:
        """The (scenario, period) rows that can bind anywhere in the box above ``threshold``.

        A row ``(s, t)`` is dropped when, for every rate in the box, it is dominated by another
        row of the same scenario or its value is at most ``threshold`` (a lower bound on the
        fund target valid for the method). Both tests use the monotonicity of the rows in the
        rates, so the reduced problem has exactly the optimum of the full one: for every ``u``
        in the box the largest kept row of scenario s is ``R_s(u)`` whenever
        ``R_s(u) > threshold``.

        Parameters
        ----------
        candidates : (K,) int, increasing
            Scenarios to keep (indices into the random or the stress scenarios).
        threshold : float
            Scaled lower bound on the fund target.
        stress : bool
            Screen the stress scenarios instead of the random ones.

        Notes
        -----
        Only the candidates' data is read, in chunks, and cumulated and scaled here; memory is
        the kept rows plus a chunk.
        """
        candidates = np.asarray(candidates, dtype=np.int64)
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        step = max(1, CHUNK_VALUES // (self.horizon * max(1, self.source.n_markets)))
        for start in range(0, candidates.size, step):
            chunk = candidates[start : start + step]
            if stress:
                a, g = self.stress_required0[chunk], self.stress_relief[chunk]
            else:
                a, g = self._scaled_rows(chunk)
            scen, period = _screen_rows(a, g, threshold)
            parts.append((scen + start, a[scen, period], g[scen, period].reshape(scen.size, self.n_free)))
        if parts:
            scenario = np.concatenate([p[0] for p in parts])
            required0 = np.concatenate([p[1] for p in parts])
            relief = np.concatenate([p[2] for p in parts])
        else:
            scenario, required0, relief = np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros((0, self.n_free))
        return ScreenedRows(scenario=scenario, required0=required0, relief=relief, candidates=candidates)

    def _scaled_rows(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``required0`` (K, T) and ``relief`` (K, T, Jf) of the random scenarios ``index``."""
        rows = index if self.random_index is None else self.random_index[index]
        cum_losses = np.cumsum(self.source.losses[rows], axis=1, dtype=np.float64)
        cum_base = np.cumsum(self.source.premium_base[rows], axis=1, dtype=np.float64)
        required0 = cum_losses - cum_base @ self.rate_low
        required0 /= self.money_scale
        relief = cum_base[..., self.free]
        relief *= self.rate_span[self.free] / self.money_scale
        return required0, relief

    def check_fund_cap(self, lowest_fund: float, what: str) -> None:
        """Raise :class:`InfeasibleError` when ``fund_max`` is below ``lowest_fund`` (scaled).

        ``lowest_fund`` is the smallest fund target the method can reach anywhere in the rate
        box (at ``premium_max``); ``what`` names the constraint that sets it.
        """
        cap = self.fund_cap
        if lowest_fund > cap:
            need = self.fund_target(lowest_fund)
            raise InfeasibleError(
                f"fund_max = {self.problem.fund_max:.6g} is below the smallest fund target that meets "
                f"{what}: {need:.6g} even at premium_max (short by {need - self.problem.fund_max:.6g})"
            )

    def confirm(self, fund_target: float, premium_rates: np.ndarray, objective: float) -> None:
        """Raise :class:`SolverError` unless a checked answer is finite and no larger than any scenario needs.

        Every method's fund target is ``max(0, rule of the R_s(p), largest stress R_s(p))`` (the
        rule an order statistic, a CVaR or a maximum) of required funds
        ``R_s(p) = floor + max_t (sum_{v <= t} L - p . sum_{v <= t} B) <= floor + sum_t L[s, t]``
        (premium bases are >= 0), so none exceeds ``max(0, floor + largest_loss)`` but for the
        few ulps the numpy check lifts it by (:func:`~.check.fund_at`: rounding of the largest
        flows). Anything beyond that, or a non-finite fund target or objective, is a bug or an
        overflow, never an answer.
        """
        floor = self.problem.floor
        if not (math.isfinite(fund_target) and math.isfinite(objective)):
            raise SolverError(
                f"the checked answer is not a finite number (fund_target = {fund_target!r}, objective = {objective!r}, "
                f"floor = {floor!r}, cost_of_capital = {self.problem.cost_of_capital!r}): an overflow, not an answer"
            )
        bound = max(0.0, floor + self.largest_loss)
        eps = np.finfo(np.float64).eps
        slack = 1e-9 * max(bound, abs(floor), 1.0)
        if fund_target <= bound + slack:
            return
        # rare: allow the rounding margin of the largest path flows at these rates (one more pass)
        rates = np.asarray(premium_rates, dtype=np.float64)
        flows = max(_largest_flow(s, rates) for s in (self.source, self.stress) if s is not None)
        slack += 8 * (rates.size + 1) * self.horizon * eps * flows
        if fund_target > bound + slack:
            raise SolverError(
                f"the fund target {fund_target:.6g} is more than any scenario can need ({bound:.6g}: the floor plus "
                "the largest total loss of a scenario over the horizon); this is a bug, please report it"
            )

    def stress_binding(self, u: np.ndarray) -> int:
        """Index (into the stress scenarios) of the one needing the largest fund at ``u``."""
        return int(_max_affine(self.stress_required0, self.stress_relief, u).argmax())


@dataclass(frozen=True, eq=False)
class ScreenedRows:
    """Rows ``(s, t)`` that survive exact screening, in scaled units.

    Attributes
    ----------
    scenario : (R,) int, non-decreasing
        Position of the row's scenario in ``candidates``.
    required0 : (R,) float64
    relief : (R, Jf) float64
    candidates : (K,) int
        Scenario indices (into the random or stress scenarios) the rows come from.
    """

    scenario: np.ndarray
    required0: np.ndarray
    relief: np.ndarray
    candidates: np.ndarray

    @property
    def n_rows(self) -> int:
        """R, the rows kept."""
        return int(self.scenario.size)

    def restrict(self, keep_candidates: np.ndarray, threshold: float) -> ScreenedRows:
        """The rows of the candidates flagged in ``keep_candidates`` (K,) bool whose value at u = 0
        exceeds ``threshold`` (a stricter screen of the same rows, for a smaller alpha)."""
        keep = keep_candidates[self.scenario] & (self.required0 > threshold)
        renumber = np.cumsum(keep_candidates) - 1
        return ScreenedRows(
            scenario=renumber[self.scenario[keep]],
            required0=self.required0[keep],
            relief=self.relief[keep],
            candidates=self.candidates[keep_candidates],
        )


def _screen_rows(a: np.ndarray, g: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(scenario, period) of the rows of ``a`` (K, T), ``g`` (K, T, Jf) kept by :meth:`FundModel.screen`."""
    at_max = a - g.sum(axis=2)
    best_row = at_max.argmax(axis=1)
    floor_value = at_max[np.arange(a.shape[0]), best_row]
    # Row t is dominated when even its largest value (at u = 0) is below what the scenario's
    # best row guarantees at u = 1, so below that row everywhere in the box.
    keep = a > floor_value[:, None]
    keep[np.arange(a.shape[0]), best_row] = True
    keep &= a > threshold
    return np.nonzero(keep)


def _check_finite_corners(problem: PolicyProblem, worst_low: np.ndarray, worst_high: np.ndarray) -> None:
    """ProblemError naming the first scenario whose fund overflows at a corner of the rate box.

    A ScenarioSet's sums are finite (it checks), so only premium rates far above one can
    overflow ``p . B``.
    """
    for rates, worst in (("premium_min", worst_low), ("premium_max", worst_high)):
        if not np.isfinite(worst.min()) or not np.isfinite(worst.max()):
            s = int(np.flatnonzero(~np.isfinite(worst))[0])
            raise ProblemError(
                f"the fund of scenario {s} overflows at {rates} = {getattr(problem, rates)!r} (rates are fractions "
                "of the premium base: the premium income exceeds float64)"
            )


def _check_representable(problem: PolicyProblem, largest_loss: float, objective_parts: tuple) -> None:
    """ProblemError when float64 cannot hold the answer: a floor that swallows the losses, or an objective that overflows.

    ``F0 = floor + (fund above the floor)``: with ``|floor|`` above 4.5e7 times the largest
    total loss of a scenario, one ulp of the floor is more than 1e-8 of any fund above it, so
    the answer would be the floor plus rounding.
    """
    floor = problem.floor
    if largest_loss > 0.0 and abs(floor) * np.finfo(np.float64).eps > 1e-8 * largest_loss:
        raise ProblemError(
            f"floor = {floor!r} is too large for the losses (the largest total loss of a scenario is "
            f"{largest_loss:.6g}): float64 cannot resolve a fund target above it; measure the fund from the floor "
            "(floor = 0) and add the floor afterwards"
        )
    for part in objective_parts:
        if not np.all(np.isfinite(part)):
            raise ProblemError(
                f"the objective overflows float64 (cost_of_capital = {problem.cost_of_capital!r}, premium_weight = "
                f"{problem.premium_weight!r}, rate_change_penalty = {problem.rate_change_penalty!r} on fund targets "
                f"of about {largest_loss:.6g})"
            )


def _largest_loss(losses: np.ndarray) -> float:
    """``max_{s, t} sum_{u <= t} L[s, u]`` (0 for no scenario): the horizon's total for losses >= 0,
    the largest row for a ruin rule's rows (:func:`fundguard.optimizer.ruin.rows`)."""
    return float(np.cumsum(losses, axis=1, dtype=np.float64).max()) if losses.shape[0] else 0.0


def _largest_flow(scenarios: ScenarioSet, rates: np.ndarray) -> float:
    """``max_s sum_t (p . B[s, t] + L[s, t])``, chunked over scenarios."""
    n, horizon, n_markets = scenarios.premium_base.shape
    largest = 0.0
    for start, stop in scenario_chunks(n, horizon * n_markets):
        # magnitudes: a ruin rule's rows (optimizer.ruin) have increments of either sign
        flows = np.abs(scenarios.premium_base[start:stop]).sum(axis=1, dtype=np.float64) @ np.abs(rates) \
            + np.abs(scenarios.losses[start:stop]).sum(axis=1, dtype=np.float64)
        largest = max(largest, float(flows.max()))
    return largest


def _cumulative(scenarios: ScenarioSet) -> tuple[np.ndarray, np.ndarray]:
    """``cumsum_t L`` (N, T) and ``cumsum_t B`` (N, T, J)."""
    return (np.cumsum(scenarios.losses, axis=1, dtype=np.float64),
            np.cumsum(scenarios.premium_base, axis=1, dtype=np.float64))


def _max_affine(required0: np.ndarray, relief: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``max_t ( required0[s, t] - relief[s, t, :] @ u )`` for every s, chunked over scenarios."""
    u = np.asarray(u, dtype=np.float64)
    n, horizon = required0.shape
    if not u.size:
        return required0.max(axis=1)
    out = np.empty(n, dtype=np.float64)
    for start, stop in scenario_chunks(n, horizon * u.size):
        rows = required0[start:stop] - relief[start:stop] @ u
        out[start:stop] = rows.max(axis=1)
    return out
