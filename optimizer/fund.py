"""The fund equation in numpy: worst points of paths, ruin counts, objectives, scaled data.

Everything a method needs besides a solver lives here, so that every solver answer can be
re-checked independently of the solver (DESIGN.md, "Certificates"):

* :func:`worst_net_flow` and :func:`count_ruined` are the canonical ruin check, on the
  caller's unscaled arrays; every reported ruin rate comes from them.
* :class:`FundModel` is the scaled, cumulative view of one (problem, scenarios) pair that the
  formulations are written against; solvers only ever see its well-scaled numbers.

Notation (DESIGN.md): ``F[s, t] = F0 + sum_{u <= t} (sum_j p_j B[s, u, j] - L[s, u])``. The
*required fund* of scenario s at rates p is the smallest ``F0`` with which it is not ruined::

    R_s(p) = max_t ( floor + sum_{u <= t} L[s, u] - sum_j p_j sum_{u <= t} B[s, u, j] )

Scenario s is ruined iff ``F0 < R_s(p)``. ``R_s`` is convex and, because premium bases are
non-negative, non-increasing in every rate: its maximum over the rate box is at
``premium_min`` and its minimum at ``premium_max``. That monotonicity is what the exact
screening in :meth:`FundModel.screen` rests on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fundguard.models import ScenarioSet
from fundguard.models.errors import InfeasibleError, ScenarioError

from .problem import PolicyProblem

__all__ = [
    "allowed_ruins",
    "worst_net_flow",
    "count_ruined",
    "sample_cvar",
    "kth_largest",
    "objective_value",
    "FundModel",
]

# Scenarios per chunk when streaming over a ScenarioSet: keeps temporaries near 16 MB.
_CHUNK_VALUES = 1 << 21


def allowed_ruins(alpha: float, n_scenarios: int) -> int:
    """``floor(alpha * N)``, the number of ruined scenarios the exact sample constraint allows.

    The product is taken with a 1e-9 relative tolerance, so that ``alpha = 0.29, N = 100``
    (whose floating-point product is 28.999999999999996) allows 29 and not 28.
    """
    product = alpha * n_scenarios
    return int(math.floor(product * (1.0 + 1e-9)))


def worst_net_flow(losses: np.ndarray, premium_base: np.ndarray, premium_rates: np.ndarray) -> np.ndarray:
    """Lowest cumulative net flow of each path, ``min_t sum_{u <= t} (p . B[s, u] - L[s, u])``.

    Parameters
    ----------
    losses : (N, T) float64, currency units
    premium_base : (N, T, J) float64, currency units
    premium_rates : (J,) float64, fractions of the premium base

    Returns
    -------
    (N,) float64, currency units
        ``min_t F[s, t] - F0``: scenario s is ruined iff ``F0 + worst[s] < floor``.

    Notes
    -----
    Streams over scenario chunks so temporaries stay small whatever N is.
    """
    n, horizon = losses.shape
    rates = np.asarray(premium_rates, dtype=np.float64)
    out = np.empty(n, dtype=np.float64)
    step = max(1, _CHUNK_VALUES // max(1, horizon * max(1, rates.size)))
    for start in range(0, n, step):
        stop = min(n, start + step)
        net = premium_base[start:stop] @ rates
        net -= losses[start:stop]
        np.cumsum(net, axis=1, out=net)
        out[start:stop] = net.min(axis=1)
    return out


def count_ruined(fund_target: float, worst: np.ndarray, floor: float) -> int:
    """How many paths with lowest net flow ``worst`` (from :func:`worst_net_flow`) end below ``floor``.

    This is the one place the ruin inequality ``min_t F[s, t] < floor`` is evaluated.
    """
    return int(np.count_nonzero(fund_target + worst < floor))


def sample_cvar(values: np.ndarray, alpha: float) -> float:
    """Sample CVaR (upper tail) of ``values`` at level ``alpha``, Rockafellar–Uryasev form.

    Notes
    -----
    ``CVaR_alpha(X) = min_eta eta + sum_s (X_s - eta)_+ / (alpha N)``. With the values sorted
    in decreasing order ``x_(1) >= x_(2) >= ...``, ``m = alpha N`` and ``k = floor(m)``, the
    minimum is ``( x_(1) + ... + x_(k) + (m - k) x_(k+1) ) / m`` (Rockafellar & Uryasev 2002).
    For ``m < 1`` it is the maximum.
    """
    n = values.size
    m = alpha * n
    k = min(allowed_ruins(alpha, n), n - 1)
    part = np.partition(values, n - k - 1)
    top = float(part[n - k :].sum()) if k else 0.0
    return (top + max(m - k, 0.0) * float(part[n - k - 1])) / m


def kth_largest(values: np.ndarray, k: int) -> float:
    """The k-th largest entry (k = 1 is the maximum)."""
    n = values.size
    return float(np.partition(values, n - k)[n - k])


def objective_value(problem: PolicyProblem, fund_target: float, premium_rates: np.ndarray, mean_base: np.ndarray) -> float:
    """Capital cost of a policy, currency units (DESIGN.md, "The fund, exactly").

    ``cost_of_capital * F0 + sum_j premium_weight_j p_j mean_base_j
    + rate_change_penalty * ||p - previous_rates||^2``, with ``mean_base`` the (J,) mean over
    random scenarios of each market's total premium base over the horizon.
    """
    n_markets = premium_rates.size
    value = problem.cost_of_capital * fund_target
    value += float(problem.per_market("premium_weight", n_markets) @ (premium_rates * mean_base))
    if problem.rate_change_penalty > 0.0:
        change = premium_rates - problem.per_market("previous_rates", n_markets)
        value += problem.rate_change_penalty * float(change @ change)
    return float(value)


@dataclass(frozen=True, eq=False)
class FundModel:
    """Scaled cumulative arrays of one (problem, scenarios) pair, the data every formulation uses.

    Decisions are rescaled to order one: the fund target ``F0 = money_scale * f`` and, for the
    markets whose rate is not fixed (``free``), ``p_j = rate_low_j + rate_span_j * u_j`` with
    ``u_j`` in [0, 1]. In those units the required fund of scenario s is
    ``max_t ( required0[s, t] - relief[s, t, :] @ u )``.

    Attributes
    ----------
    problem : PolicyProblem
    scenarios : ScenarioSet
        The random (non-stress) scenarios, in the caller's units.
    stress : ScenarioSet or None
        Stress scenarios that must be survived (``problem.survive_stress``), else None.
    rate_low, rate_span : (J,) float64
        ``premium_min`` and ``premium_max - premium_min`` per market.
    free : (Jf,) int
        Markets whose rate is a decision (``rate_span > 0``).
    money_scale : float, currency units
        Typical fund target: the required fund at ``premium_min`` of the
        ``(floor(alpha N) + 1)``-th worst scenario (falls back to the largest, then to 1).
    objective_scale : float, currency units
        Divides the objective so that its largest coefficient is about one.
    required0 : (N, T) float64
        ``(floor + cumsum_t L - cumsum_t B @ rate_low) / money_scale``.
    relief : (N, T, Jf) float64
        ``cumsum_t B[..., free] * rate_span[free] / money_scale``, >= 0.
    stress_required0, stress_relief : the same for the stress scenarios, (Ns, T) and (Ns, T, Jf).
    mean_base : (J,) float64, currency units
        Mean over random scenarios of ``sum_t B[s, t, j]``.
    cost_fund : float
        Objective coefficient of ``f`` (scaled).
    cost_rate, curvature : (Jf,) float64
        Linear and diagonal quadratic objective coefficients of ``u`` (scaled).
    cost_constant : float
        The rest of the scaled objective (fixed markets, constants).
    """

    problem: PolicyProblem
    scenarios: ScenarioSet
    stress: ScenarioSet | None
    rate_low: np.ndarray
    rate_span: np.ndarray
    free: np.ndarray
    money_scale: float
    objective_scale: float
    required0: np.ndarray
    relief: np.ndarray
    stress_required0: np.ndarray
    stress_relief: np.ndarray
    mean_base: np.ndarray
    cost_fund: float
    cost_rate: np.ndarray
    curvature: np.ndarray
    cost_constant: float

    @classmethod
    def build(cls, problem: PolicyProblem, scenarios: ScenarioSet, scale_alpha: float | None = None) -> FundModel:
        """Validate the pair and build the scaled arrays.

        Parameters
        ----------
        problem : PolicyProblem
        scenarios : ScenarioSet
            All scenarios; stress scenarios are split off.
        scale_alpha : float, optional
            Level whose order statistic sets ``money_scale`` (default ``problem.alpha``).

        Raises
        ------
        ProblemError
            A per-market field whose length is not the number of markets.
        ScenarioError
            No random (non-stress) scenario.
        """
        n_markets = scenarios.n_markets
        problem.check_markets(n_markets)
        random_part = scenarios.random_part()
        if scenarios.n_stress == scenarios.n_scenarios:
            raise ScenarioError(
                f"all {scenarios.n_scenarios} scenarios are stress scenarios; probabilities need random ones"
            )
        stress = scenarios.subset(scenarios.is_stress) if (problem.survive_stress and scenarios.n_stress) else None

        low = problem.per_market("premium_min", n_markets)
        span = problem.per_market("premium_max", n_markets) - low
        free = np.flatnonzero(span > 0.0)

        cum_losses, cum_base = _cumulative(random_part, problem.floor)
        unscaled0 = cum_losses - cum_base @ low
        alpha = problem.alpha if scale_alpha is None else scale_alpha
        worst0 = unscaled0.max(axis=1)
        scale = kth_largest(worst0, min(allowed_ruins(alpha, worst0.size) + 1, worst0.size))
        if stress is not None:
            s_losses, s_base = _cumulative(stress, problem.floor)
            s_unscaled0 = s_losses - s_base @ low
            scale = max(scale, float(s_unscaled0.max()))
        if not scale > 0.0:
            scale = float(np.abs(worst0).max())
        if not scale > 0.0:
            scale = 1.0

        mean_base = cum_base[:, -1, :].mean(axis=0)
        # In place where possible: these arrays are as large as the ScenarioSet's own.
        required0 = unscaled0
        required0 /= scale
        relief = cum_base[..., free] if free.size < n_markets else cum_base
        relief *= span[free] / scale
        del cum_base, cum_losses
        if stress is not None:
            stress_required0 = s_unscaled0 / scale
            stress_relief = s_base[..., free] * (span[free] / scale)
        else:
            stress_required0 = np.zeros((0, scenarios.horizon))
            stress_relief = np.zeros((0, scenarios.horizon, free.size))

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
        return cls(
            problem=problem,
            scenarios=random_part,
            stress=stress,
            rate_low=low,
            rate_span=span,
            free=free,
            money_scale=float(scale),
            objective_scale=float(obj_scale),
            required0=required0,
            relief=relief,
            stress_required0=stress_required0,
            stress_relief=stress_relief,
            mean_base=mean_base,
            cost_fund=problem.cost_of_capital * scale / obj_scale,
            cost_rate=linear[free] / obj_scale,
            curvature=quadratic[free] / obj_scale,
            cost_constant=constant / obj_scale,
        )

    # -- sizes ------------------------------------------------------------------------------
    @property
    def n_scenarios(self) -> int:
        """N, the random scenarios."""
        return self.required0.shape[0]

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

    def required(self, u: np.ndarray) -> np.ndarray:
        """Scaled required fund of every random scenario, (N,), at scaled rates ``u``."""
        return _max_affine(self.required0, self.relief, u)

    def stress_required(self, u: np.ndarray) -> float:
        """Largest scaled required fund over the stress scenarios that must be survived (-inf if none)."""
        if not self.stress_required0.shape[0]:
            return -math.inf
        return float(_max_affine(self.stress_required0, self.stress_relief, u).max())

    def scaled_objective(self, f: float, u: np.ndarray) -> float:
        """The objective in scaled units at scaled decisions ``(f, u)``."""
        u = np.asarray(u, dtype=np.float64)
        return float(self.cost_fund * f + self.cost_rate @ u + self.curvature @ (u * u) + self.cost_constant)

    def objective(self, fund_target: float, premium_rates: np.ndarray) -> float:
        """The objective in currency units (recomputed from the problem, not the scaled data)."""
        return objective_value(self.problem, fund_target, premium_rates, self.mean_base)

    @property
    def fund_cap(self) -> float:
        """Scaled ``fund_max`` (inf when unset)."""
        fund_max = self.problem.fund_max
        return math.inf if fund_max is None else fund_max / self.money_scale

    # -- exact screening ------------------------------------------------------------------------
    def required_range(self) -> tuple[np.ndarray, np.ndarray]:
        """Scaled required fund of every scenario at the cheapest and dearest corners of the box.

        Returns
        -------
        highest : (N,) ``R_s`` at ``premium_min`` (u = 0), its maximum over the box.
        lowest : (N,) ``R_s`` at ``premium_max`` (u = 1), its minimum over the box.
        """
        highest = self.required0.max(axis=1)
        lowest = _max_affine(self.required0, self.relief, np.ones(self.n_free))
        return highest, lowest

    def screen(self, candidates: np.ndarray, threshold: float, stress: bool = False) -> ScreenedRows:
        """The (scenario, period) rows that can bind anywhere in the box above ``threshold``.

        A row ``(s, t)`` is dropped when, for every rate in the box, it is dominated by another
        row of the same scenario or its value is at most ``threshold`` (a lower bound on the
        fund target valid for the method). Both tests use the monotonicity of the rows in the
        rates, so the reduced problem has exactly the optimum of the full one.

        Parameters
        ----------
        candidates : (K,) int
            Scenarios to keep (indices into the random or the stress scenarios).
        threshold : float
            Scaled lower bound on the fund target.
        stress : bool
            Screen the stress scenarios instead of the random ones.
        """
        required0 = self.stress_required0 if stress else self.required0
        relief = self.stress_relief if stress else self.relief
        a = required0[candidates]
        g = relief[candidates]
        at_max = a - g.sum(axis=2)
        best_row = at_max.argmax(axis=1)
        floor_value = at_max[np.arange(candidates.size), best_row]
        # Row t is dominated when even its largest value (at u = 0) is below what the scenario's
        # best row guarantees at u = 1, so below that row everywhere in the box.
        keep = a > floor_value[:, None]
        keep[np.arange(candidates.size), best_row] = True
        keep &= a > threshold
        scen, period = np.nonzero(keep)
        return ScreenedRows(
            scenario=scen,
            required0=a[scen, period],
            relief=g[scen, period].reshape(scen.size, self.n_free),
            candidates=candidates,
        )

    def check_fund_cap(self, lowest_fund: float, what: str) -> None:
        """Raise :class:`InfeasibleError` when ``fund_max`` is below ``lowest_fund`` (scaled).

        ``lowest_fund`` is the smallest fund target the method can reach anywhere in the rate
        box (at ``premium_max``); ``what`` names the constraint that sets it.
        """
        cap = self.fund_cap
        if lowest_fund > cap:
            need = lowest_fund * self.money_scale
            raise InfeasibleError(
                f"fund_max = {self.problem.fund_max:.6g} is below the smallest fund target that meets "
                f"{what}: {need:.6g} even at premium_max (short by {need - self.problem.fund_max:.6g})"
            )

    def stress_binding(self, u: np.ndarray) -> int:
        """Index (into the stress scenarios) of the one needing the largest fund at ``u``."""
        return int(_max_affine(self.stress_required0, self.stress_relief, u).argmax())


@dataclass(frozen=True, eq=False)
class ScreenedRows:
    """Rows ``(s, t)`` that survive exact screening, in scaled units.

    Attributes
    ----------
    scenario : (R,) int
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


def _cumulative(scenarios: ScenarioSet, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """``floor + cumsum_t L`` (N, T) and ``cumsum_t B`` (N, T, J)."""
    cum_losses = np.cumsum(scenarios.losses, axis=1)
    cum_losses += floor
    return cum_losses, np.cumsum(scenarios.premium_base, axis=1)


def _max_affine(required0: np.ndarray, relief: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``max_t ( required0[s, t] - relief[s, t, :] @ u )`` for every s, chunked over scenarios."""
    u = np.asarray(u, dtype=np.float64)
    n, horizon = required0.shape
    if not u.size:
        return required0.max(axis=1)
    out = np.empty(n, dtype=np.float64)
    step = max(1, _CHUNK_VALUES // max(1, horizon * u.size))
    for start in range(0, n, step):
        stop = min(n, start + step)
        rows = required0[start:stop] - relief[start:stop] @ u
        out[start:stop] = rows.max(axis=1)
    return out
