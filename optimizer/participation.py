"""Participation: each market's book answers the fee it is charged, and the fee's cost is derived from it.

A venue that raises market j's liquidation fee ``p_j`` above the rate at which its book was
observed (``r_j``, the rates in force) loses part of that market's traders: open interest and
volume shrink by the participation share::

    pi_j(p_j) = 1 - eps_j (p_j - r_j)                                   (linear, so pi_j(r_j) = 1)

Everything the book does scales with it, so the fund equation becomes (docs/design.md)::

    F[s, t] = F0 + sum_{u <= t} sum_j pi_j(p_j) ( p_j B[s, u, j] - L_j[s, u] )

``L_j`` the market's own losses (``ScenarioSet.losses_by_market``). Per market the flow is a
concave quadratic in ``p_j`` (``p pi(p) B`` is concave, ``-pi(p) L`` linear), so F stays concave in
the rates and ``max_t(-F)`` convex. At fixed rates it is the affine fund equation of the scaled
scenario set ``S(p)`` (:meth:`Participation.scaled`: each market's losses and premium base times
``pi_j``), so every method, the numpy re-check and every certificate evaluate a policy on
``S(p)`` with the unchanged code (:func:`~.certificates.count_ruins` scales for a policy that
carries its participation).

**Where eps comes from.** Charging ``p_j`` on the liquidation fee base ``B_j`` adds
``p_j E[B_j]`` to what market j's traders pay the venue over the horizon, on top of their trading
fees ``tau_j Vol_j``. With an elasticity ``e`` of volume to the traders' total cost,
``pi = 1 - e p E[B] / (tau Vol)``: ``eps_j = e E[B_j] / (tau_j Vol_j)``
(:meth:`Participation.from_elasticity`). Default ``e = 1``: the literature on volume and
transaction costs (stocks and futures, taxes and spreads) finds elasticities of about -1 with
respect to total trading costs, with a range of about -0.25 to -2.7 (Matheson 2011, IMF working
paper WP/11/54, table 2; Wang & Yau 2000 for futures). The uncertainty matters: ``e`` near 1 is
where the fee neither gains nor loses the venue revenue to first order (below), so report the
answer's sensitivity to it.

**The fee's cost, derived** (``fee_cost="derived"``, the venue's expected result over the
horizon, currency units)::

    C(p) = sum_j [ R_j eps_j (p_j - r_j)               trading-fee revenue lost (R_j = tau_j Vol_j)
                   - (1 - omega) p_j pi_j E[B_j]        fee income, kept in the venue's fund
                   + pi_j E[L_j] ]                      losses the fund pays

``omega`` (``trader_weight``, in [0, 1]) counts the fees the traders pay as a cost as well (1: a
pure transfer the venue does not value). ``C`` is a convex quadratic in each rate for
``omega <= 1``. The objective is ``cost_of_capital F0 + C(p)`` (+ the rate-change penalty): it
may be negative (fees earn more than they cost). With ``fee_cost="weight"`` the problem's
``premium_weight`` prices the fees instead (today's linear cost on the scaled base), the book still
answering them.

**How the methods solve it.** The decision space is small (1 + J numbers). At fixed rates the
method's own fund target on ``S(p)`` is cheap (no rate is a decision), so
:func:`solve_with_participation` searches the rate box for the least
``cost_of_capital F0_method(p) + C(p)``: the box's corners and a Sobol sample, then rounds of
bounded one-dimensional searches per market from the best point. Each candidate's fund target is
the method's (its promise holds for the chosen policy on ``S(p)``); the search is exact in the
rates up to its tolerance, not a proof of global optimality.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
from scipy import optimize, stats

from fundguard.models import ScenarioSet
from fundguard.models.errors import FundguardError, ProblemError, ScenarioError

__all__ = ["Participation", "DEFAULT_ELASTICITY", "DEFAULT_TRADING_FEE", "solve_with_participation", "participation_cost", "at_fixed_rates", "at_policy",
           "mean_market_bases", "mean_market_losses"]

#: Elasticity of volume to traders' total trading cost (Matheson 2011, IMF WP/11/54, table 2:
#: about -1 with respect to total transaction costs; -0.25 to -2.7 across studies).
DEFAULT_ELASTICITY = 1.0

#: Trading fee per unit notional traded: Binance USD-M futures' regular-user fees are 0.02% maker
#: and 0.05% taker (its fee schedule); 0.035% is their mean for a book half maker, half taker.
DEFAULT_TRADING_FEE = 0.00035

PerMarket = float | tuple[float, ...]

_STARTS = 3  # the rate search refines from this many of its best candidates
_ROUNDS = 3  # rounds of per-market searches from each


@dataclass(frozen=True)
class Participation:
    """How each market's book shrinks with its fee, and what a fee costs the venue (module notes).

    Parameters
    ----------
    semi_elasticity : float >= 0 or sequence of J floats
        ``eps_j``: the share of market j's book lost per unit of fee rate above the reference
        (``pi_j = 1 - eps_j (p_j - r_j)``). :meth:`from_elasticity` derives it.
    trading_revenue : float >= 0 or sequence of J floats, currency units
        ``R_j = tau_j Vol_j``: market j's trading-fee revenue over the horizon at the reference
        rates (what the venue loses a share ``1 - pi_j`` of).
    reference_rates : float >= 0 or sequence of J floats, default 0.0
        ``r_j``: the rates at which the scenarios' book was observed (the rates in force).
    trader_weight : float in [0, 1], default 0.0
        ``omega``: the weight of the traders' fee payments as a cost.
    fee_cost : {"derived", "weight"}, default "derived"
        "derived": the objective's fee term is ``C(p)`` of the module notes; "weight": the problem's
        ``premium_weight`` (today's linear cost) on the scaled premium base.
    elasticity : float, optional
        The ``e`` the semi-elasticities were derived from (kept for the report).
    """

    semi_elasticity: PerMarket
    trading_revenue: PerMarket = 0.0
    reference_rates: PerMarket = 0.0
    trader_weight: float = 0.0
    fee_cost: str = "derived"
    elasticity: float | None = None

    def __post_init__(self) -> None:
        for name in ("semi_elasticity", "trading_revenue", "reference_rates"):
            object.__setattr__(self, name, _per_market(name, getattr(self, name)))
        lengths = {len(v) for v in (self.semi_elasticity, self.trading_revenue, self.reference_rates)
                   if isinstance(v, tuple)}
        if len(lengths) > 1:
            raise ProblemError("participation: semi_elasticity, trading_revenue and reference_rates must have one "
                               "value per market, the same count each")
        weight = real_number("participation.trader_weight", self.trader_weight)
        if not 0.0 <= weight <= 1.0:
            raise ProblemError(f"participation.trader_weight must be in [0, 1], got {self.trader_weight!r}")
        object.__setattr__(self, "trader_weight", weight)
        if self.fee_cost not in ("derived", "weight"):
            raise ProblemError(f"participation.fee_cost must be 'derived' or 'weight', got {self.fee_cost!r}")
        if self.elasticity is not None:
            object.__setattr__(self, "elasticity", real_number("participation.elasticity", self.elasticity))

    @classmethod
    def from_elasticity(
        cls,
        mean_base: Sequence[float] | np.ndarray,
        traded_volume: Sequence[float] | np.ndarray,
        *,
        elasticity: float | Sequence[float] = DEFAULT_ELASTICITY,
        trading_fee: float | Sequence[float] = DEFAULT_TRADING_FEE,
        reference_rates: float | Sequence[float] = 0.0,
        trader_weight: float = 0.0,
        fee_cost: str = "derived",
    ) -> Participation:
        """``eps_j = e E[B_j] / (tau_j Vol_j)`` and ``R_j = tau_j Vol_j`` (module notes).

        Parameters
        ----------
        mean_base : (J,) currency units
            ``E[B_j]``: mean over scenarios of market j's premium base over the horizon
            (:func:`~.fund.mean_premium_base`).
        traded_volume : (J,) currency units
            ``Vol_j``: market j's traded notional over the horizon (ADV x horizon days).
        elasticity, trading_fee : float or (J,)
            ``e`` (default :data:`DEFAULT_ELASTICITY`) and ``tau_j`` (default
            :data:`DEFAULT_TRADING_FEE`) per unit notional traded.
        """
        base = np.asarray(mean_base, dtype=np.float64)
        volume = np.asarray(traded_volume, dtype=np.float64)
        e = np.broadcast_to(np.asarray(elasticity, dtype=np.float64), base.shape)
        fee = np.broadcast_to(np.asarray(trading_fee, dtype=np.float64), base.shape)
        for name, value in (("mean_base", base), ("traded_volume", volume), ("elasticity", e), ("trading_fee", fee)):
            if value.shape != base.shape or not np.all(np.isfinite(value)) or np.any(value < 0):
                raise ProblemError(f"participation: {name} must be finite and >= 0, one per market; got {value!r}")
        revenue = fee * volume
        with np.errstate(divide="ignore", invalid="ignore"):
            eps = np.where(revenue > 0, e * base / revenue, 0.0)
        scalar_e = float(e[0]) if e.size and np.all(e == e[0]) else None
        return cls(semi_elasticity=tuple(map(float, eps)), trading_revenue=tuple(map(float, revenue)),
                   reference_rates=reference_rates if np.ndim(reference_rates) == 0 else tuple(reference_rates),
                   trader_weight=trader_weight, fee_cost=fee_cost, elasticity=scalar_e)

    # -- per-market views ----------------------------------------------------------------------
    def arrays(self, n_markets: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(eps, R, r)``, each ``(J,)`` float64."""
        out = []
        for name in ("semi_elasticity", "trading_revenue", "reference_rates"):
            value = getattr(self, name)
            if isinstance(value, tuple):
                if len(value) != n_markets:
                    raise ProblemError(f"participation.{name} has {len(value)} values but the scenarios have "
                                       f"{n_markets} markets")
                out.append(np.array(value, dtype=np.float64))
            else:
                out.append(np.full(n_markets, value, dtype=np.float64))
        return out[0], out[1], out[2]

    def shares(self, premium_rates: np.ndarray) -> np.ndarray:
        """``pi_j(p_j) = 1 - eps_j (p_j - r_j)``, (J,); a ProblemError when one is not positive."""
        rates = np.asarray(premium_rates, dtype=np.float64)
        eps, _, reference = self.arrays(rates.size)
        shares = 1.0 - eps * (rates - reference)
        bad = np.flatnonzero(~(shares > 0.0))
        if bad.size:
            j = int(bad[0])
            raise ProblemError(f"participation: at rate {rates[j]!r} market [{j}]'s book would vanish "
                               f"(share {shares[j]!r}); lower premium_max or the semi-elasticity {eps[j]!r}")
        return shares

    def check_box(self, low: np.ndarray, high: np.ndarray) -> None:
        """Refuse a rate box where some market's book vanishes (its share at ``premium_max``)."""
        self.shares(high)

    def scaled(self, scenarios: ScenarioSet, premium_rates: np.ndarray, *, fund_only: bool = False,
               pooled: bool = False) -> ScenarioSet:
        """``S(p)``: each market's losses and premium base times ``pi_j(p_j)`` (the pooled losses their sum).

        ``fund_only``: only what the fund equation reads (losses, premium base, per-market losses),
        not the liquidated notional and the winners, which the methods and counts never use."""
        if not isinstance(scenarios, ScenarioSet):
            raise ScenarioError(f"scenarios must be a ScenarioSet, got {type(scenarios).__name__}")
        shares = self.shares(premium_rates)
        if scenarios.losses_by_market is None and scenarios.n_markets > 1 and not np.allclose(shares, shares[0]):
            raise ScenarioError("participation needs each market's own losses (ScenarioSet.losses_by_market) "
                                "when the markets' shares differ; build the scenarios with build_scenarios")
        if scenarios.losses_by_market is None:
            shares = np.full_like(shares, shares[0])
        return scenarios.scale_markets(shares, fund_only=fund_only, pooled=pooled)

    def fee_cost_value(self, premium_rates: np.ndarray, mean_base: np.ndarray, mean_loss: np.ndarray) -> float:
        """``C(p)`` of the module notes, currency units; ``mean_base``/``mean_loss`` (J,) at the reference book."""
        rates = np.asarray(premium_rates, dtype=np.float64)
        eps, revenue, reference = self.arrays(rates.size)
        shares = self.shares(rates)
        lost = revenue * eps * (rates - reference)
        income = (1.0 - self.trader_weight) * rates * shares * mean_base
        return float(np.sum(lost - income + shares * mean_loss))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable view."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


def at_policy(policy: Any, scenarios: ScenarioSet) -> ScenarioSet:
    """The scenarios as the policy meets them: scaled by its participation shares at its rates
    (:meth:`Participation.scaled`), or unchanged when the policy has no participation."""
    part = getattr(policy, "participation", None)
    return scenarios if part is None else part.scaled(scenarios, policy.premium_rates)


def mean_market_bases(scenarios: ScenarioSet) -> np.ndarray:
    """(J,) mean over random scenarios of each market's premium base over the horizon, ``E[B_j]``."""
    return _mean_horizon_total(scenarios.random_part().premium_base)


def mean_market_losses(scenarios: ScenarioSet) -> np.ndarray:
    """(J,) mean over random scenarios of each market's total loss over the horizon (the pooled
    losses for a one-market set; zeros when per-market losses are absent)."""
    random_part = scenarios.random_part()
    if random_part.losses_by_market is not None:
        return _mean_horizon_total(random_part.losses_by_market)
    if random_part.n_markets == 1:
        return np.array([float(random_part.losses.sum(axis=1, dtype=np.float64).mean())])
    return np.zeros(random_part.n_markets)


def _mean_horizon_total(values: np.ndarray) -> np.ndarray:
    """(J,) mean over scenarios of each market's total over the horizon of an (N, T, J) array: one
    BLAS matrix-vector product (a strided ``sum(axis=1).mean(axis=0)`` is several times slower)."""
    flat = values.reshape(-1, values.shape[-1])
    return (np.ones(flat.shape[0]) @ flat) / values.shape[0]


def at_fixed_rates(problem: Any, premium_rates: np.ndarray) -> Any:
    """``problem`` with every rate fixed at ``premium_rates`` and no participation, premium weight or
    rate penalty: the method then only sets the fund target on the (already scaled) scenarios."""
    rates = tuple(map(float, premium_rates))
    return dataclasses.replace(problem, participation=None, premium_min=rates, premium_max=rates,
                               premium_weight=0.0, rate_change_penalty=0.0, previous_rates=None)


def participation_cost(problem: Any, fund_target: float, premium_rates: np.ndarray, mean_base: np.ndarray,
                       mean_loss: np.ndarray) -> float:
    """The objective of a policy when the book answers the fees, currency units (module notes):
    ``cost_of_capital F0 + C(p)`` (or the ``premium_weight`` cost on the scaled base when
    ``fee_cost="weight"``) ``+ rate_change_penalty ||p - previous_rates||^2``; ``mean_base`` and
    ``mean_loss`` (J,) of the book at the reference rates."""
    part: Participation = problem.participation
    rates = np.asarray(premium_rates, dtype=np.float64)
    value = problem.cost_of_capital * float(fund_target)
    if part.fee_cost == "derived":
        value += part.fee_cost_value(rates, mean_base, mean_loss)
    else:
        weight = problem.per_market("premium_weight", rates.size)
        value += float(weight @ (rates * part.shares(rates) * mean_base))
    if problem.rate_change_penalty > 0.0:
        change = rates - problem.per_market("previous_rates", rates.size)
        value += problem.rate_change_penalty * float(change @ change)
    return float(value)


def solve_with_participation(problem: Any, scenarios: ScenarioSet, method: str, run: Callable[..., Any],
                             *, screen: Any = None, **options: Any) -> Any:
    """The least-cost policy when the book answers the fees (module notes: the rate search).

    ``run(problem, scenarios, **options)`` is the method; it is called with every rate fixed on the
    scaled scenarios ``S(p)`` of each candidate. Returns the method's Policy at the best rates, its
    ``objective`` the full cost and its ``participation`` set.

    ``screen``: a :class:`~.fund.working.WorkingSet` of the method's fixed-rate rule on these
    scenarios and this rate box (:meth:`~.fund.working.WorkingSet.for_problem`). Given, the search
    reads each candidate's fund target from it and runs the method once, at the rates found; the
    two fund targets must agree, or the search is redone running the method at every candidate.
    """
    part: Participation = problem.participation
    n_markets = scenarios.n_markets
    low, high = problem.rate_box(n_markets)
    part.check_box(low, high)
    mean_base = mean_market_bases(scenarios)
    mean_loss = mean_market_losses(scenarios)
    started = time.perf_counter()

    def full(rates: np.ndarray) -> tuple[float, Any]:
        try:
            policy = run(at_fixed_rates(problem, rates), part.scaled(scenarios, rates, pooled=True), **options)
        except FundguardError as exc:  # an infeasible corner is a point the search avoids
            return math.inf, exc
        return participation_cost(problem, policy.fund_target, rates, mean_base, mean_loss), policy

    def screened(rates: np.ndarray) -> tuple[float, Any]:
        fund = screen.fund(rates)
        if problem.fund_max is not None and fund > problem.fund_max:
            return math.inf, None
        return participation_cost(problem, fund, rates, mean_base, mean_loss), fund

    working: dict[str, Any] = {"scenarios": None}
    if screen is not None:
        cache = _rate_search(screened, low, high)
        best = min(cache.values(), key=lambda entry: entry[0])[2]
        value, policy = full(best)
        expected = cache[_key(best)][1]
        scale = max(abs(problem.floor), abs(expected) if expected is not None else 0.0, 1.0)
        # S(p) of a float32 set is stored in float32: its fund target carries that rounding
        tolerance = 1e-9 if scenarios.dtype == "float64" else 2e-6
        agrees = (not isinstance(policy, Exception) and expected is not None
                  and abs(policy.fund_target - expected) <= tolerance * scale) or \
                 (isinstance(policy, Exception) and expected is None)
        working = {"scenarios": screen.size, "of": screen.n_random, "agrees": bool(agrees)}
        evaluations = len(cache)
        if not agrees:
            screen = None
    if screen is None:
        cache = _rate_search(full, low, high)
        best = min(cache.values(), key=lambda entry: entry[0])[2]
        value, policy = cache[_key(best)][:2]
        evaluations = len(cache) if working["scenarios"] is None else evaluations + len(cache)
    if not math.isfinite(value):
        raise policy  # every candidate failed: the method's own reason
    details = dict(policy.details)
    details["participation"] = {"evaluations": evaluations, "working_set": working,
                                "shares": part.shares(best).tolist(),
                                "fee_cost": part.fee_cost_value(best, mean_base, mean_loss)
                                if part.fee_cost == "derived" else None,
                                "search_seconds": time.perf_counter() - started}
    return dataclasses.replace(policy, premium_rates=np.clip(best, low, high), objective=float(value),
                               participation=part, details=details)


def _key(rates: np.ndarray) -> tuple[float, ...]:
    return tuple(np.round(rates, 12))


def _rate_search(evaluate: Callable[[np.ndarray], tuple[float, Any]], low: np.ndarray, high: np.ndarray
                 ) -> dict[tuple[float, ...], tuple[float, Any, np.ndarray]]:
    """Every point the search evaluated: ``{key: (cost, what evaluate returned, rates)}``.

    The box's corners (few markets), its centre and a Sobol sample, then rounds of bounded
    one-dimensional searches per market from the best few points (the fund target is an order
    statistic of the scenarios, not convex in the rates: one start can stall)."""
    free = np.flatnonzero(high > low)
    cache: dict[tuple[float, ...], tuple[float, Any, np.ndarray]] = {}

    def cost(rates: np.ndarray) -> float:
        rates = np.clip(rates, low, high)
        key = _key(rates)
        if key not in cache:
            value, found = evaluate(rates)
            cache[key] = (value, found, rates)
        return cache[key][0]

    candidates = [0.5 * (low + high), low.copy(), high.copy()]
    if 0 < free.size <= 4:
        for corner in range(2 ** free.size):
            point = low.copy()
            for bit, j in enumerate(free):
                if corner >> bit & 1:
                    point[j] = high[j]
            candidates.append(point)
    if free.size:
        sample = stats.qmc.Sobol(free.size, scramble=True, seed=0).random(16)
        for row in sample:
            point = low.copy()
            point[free] = low[free] + row * (high[free] - low[free])
            candidates.append(point)
    span = high - low
    starts = sorted(candidates, key=cost)[:_STARTS]
    for start in starts:
        point = start.copy()
        for _ in range(_ROUNDS):
            before = cost(point)
            for j in free:
                def along(x: float, j: int = j) -> float:
                    trial = point.copy()
                    trial[j] = x
                    value = cost(trial)
                    # an infeasible point costs more than any feasible one, but finitely: Brent's
                    # parabolic steps turn inf into nan (and a RuntimeWarning) otherwise
                    return value if math.isfinite(value) else 2.0 * _worst_finite(cache) + 1.0
                found = optimize.minimize_scalar(along, bounds=(low[j], high[j]), method="bounded",
                                                 options={"xatol": 1e-4 * span[j], "maxiter": 40})
                trial = point.copy()
                trial[j] = float(found.x)
                if cost(trial) < cost(point):
                    point = trial
            if not cost(point) < before - 1e-9 * max(1.0, abs(before)):
                break
    return cache


def _worst_finite(cache: dict[tuple[float, ...], tuple[float, Any, np.ndarray]]) -> float:
    finite = [abs(entry[0]) for entry in cache.values() if math.isfinite(entry[0])]
    return max(finite, default=1.0)


def _per_market(name: str, value: object) -> float | tuple[float, ...]:
    if isinstance(value, (list, tuple, np.ndarray)):
        out = tuple(real_number(f"participation.{name}[{j}]", v) for j, v in enumerate(value))
        if not out:
            raise ProblemError(f"participation.{name} must not be empty")
        if min(out) < 0:
            raise ProblemError(f"participation.{name} must be >= 0, got {list(out)!r}")
        return out
    number = real_number(f"participation.{name}", value)
    if number < 0:
        raise ProblemError(f"participation.{name} must be >= 0, got {value!r}")
    return number


def real_number(name: str, value: object) -> float:
    """``value`` as a finite float, or a ProblemError naming ``name`` (also PolicyProblem's check)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (Real, np.integer, np.floating)):
        raise ProblemError(f"{name} must be a real number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ProblemError(f"{name} must be finite, got {value!r}")
    return out
