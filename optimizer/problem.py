"""The policy problem: solvency target, capital costs and bounds.

A :class:`PolicyProblem` is a specification only (scikit-learn style: plain frozen dataclass,
validated once at construction). It knows nothing of scenarios; the per-market fields are
checked against the number of markets ``J`` of a :class:`~fundguard.models.ScenarioSet` when a
method is run (:meth:`PolicyProblem.per_market`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from numbers import Real

import numpy as np

from fundguard.models.errors import ProblemError

from .participation import Participation
from .ruin import FLOOR, RuinRule
from .participation import real_number as _scalar

__all__ = ["PolicyProblem", "DEFAULT_PREMIUM_MAX"]

#: Default upper bound on every premium rate: 1% of the premium base. Liquidation clearance
#: fees at the large crypto venues are 0.5%-1.25% of the liquidated notional, so 1% is the
#: order of what a venue can charge on liquidations; set it explicitly for volume premiums.
DEFAULT_PREMIUM_MAX = 0.01

_PER_MARKET = ("premium_weight", "premium_min", "premium_max", "previous_rates")

PerMarket = float | tuple[float, ...]


@dataclass(frozen=True)
class PolicyProblem:
    """Minimum-cost fund target and premium rates under a solvency-probability constraint.

    For scenario s, period t = 1..T, fund target ``F0`` and premium rates ``p`` (one per market)::

        F[s, t] = F0 + sum_{u <= t} ( sum_j p_j * B[s, u, j] - L[s, u] )

    Ruin in scenario s: ``min_t F[s, t] < floor``. The methods choose ``(F0, p)`` to minimise::

        cost_of_capital * F0
          + sum_j premium_weight_j * p_j * mean_s( sum_t B[s, t, j] )
          + rate_change_penalty * || p - previous_rates ||^2

    subject to ``P(ruin) <= alpha`` (each method reads this its own way), ``F0 >= 0``,
    ``premium_min <= p <= premium_max`` and ``F0 <= fund_max`` when set.

    Parameters
    ----------
    alpha : float in (0, 1)
        Largest acceptable probability of ruin over the horizon.
    cost_of_capital : float >= 0
        Cost per currency unit of fund target (for example an annual cost of equity scaled to
        the horizon); multiplies ``F0``.
    premium_weight : float >= 0 or sequence of J floats >= 0, default 0.0
        Cost per currency unit of expected premium collected in market j (what charging
        traders costs the venue: lost volume, competitiveness). Zero makes premiums free, so
        the rates go to ``premium_max``.
    premium_min, premium_max : float >= 0 or sequence of J floats, defaults 0.0 and 0.01
        Bounds on each premium rate, a fraction of the premium base. ``premium_min <= premium_max``
        per market; equal bounds fix the rate (``premium_max=0`` means no premium at all).
    fund_max : float >= 0, optional
        Largest fund target the venue can hold, currency units.
    floor : float, default 0.0
        Fund level below which the venue counts as ruined, currency units.
    rate_change_penalty : float >= 0, default 0.0
        Weight of the squared change of the rates from ``previous_rates``, currency units per
        (rate unit)^2; keeps periodic recalibrations from jumping. Needs ``previous_rates``
        when positive.
    previous_rates : float or sequence of J floats, optional
        The rates in force, the anchor of the rate-change penalty.
    participation : Participation, optional
        Each market's book answers its fee (:mod:`.participation`): the fund equation scales
        market j's losses and premium base by ``pi_j(p_j) = 1 - eps_j (p_j - r_j)`` and the fee's
        cost is derived (lost trading revenue, fee income, losses) unless its ``fee_cost`` is
        "weight". None (default): the book does not answer the fees, today's equation.
    ruin : RuinRule or mapping, default RuinRule() (the fund below ``floor``)
        Which event is ruin (:mod:`.ruin`): the floor rule, a drawdown trigger
        (``RuinRule("drawdown", fraction=0.3, window=8)``: the fund above the floor falls 30%
        below its maximum over the previous 8 periods, Bybit's ADL trigger on hourly scenarios)
        or a per-period payout cap (``RuinRule("payout", fraction=c)``). A mapping such as
        ``{"kind": "drawdown", "fraction": 0.3, "window": 8}`` is converted.
    expected_shortfall_max : float >= 0, optional
        Budget on the expected shortfall ``E[(R_s(p) - F0)^+]`` over the random scenarios, currency
        units: the mean of what the fund lacks at its worst point (``R_s`` the scenario's required
        fund under ``ruin``; what layers, ADL or the venue would have to find). A solvency target
        beyond the probability (issue 17): :func:`~fundguard.optimizer.solve` lifts the method's
        fund target, at its rates, to the smallest one meeting it (exact on the sample).
    shortfall_cvar_max : float >= 0, optional
        Budget on the CVaR of the shortfall ``(R_s - F0)^+`` at level ``shortfall_cvar_level``
        (the mean of the worst ``1 - level`` share of scenarios), met the same way.
    shortfall_cvar_level : float in (0, 1), default 0.99
    survive_stress : bool, default True
        What the methods do with stress scenarios (``ScenarioSet.is_stress``): when True every
        policy must survive every stress scenario (a hard constraint); when False they are
        ignored by the methods. Either way they never enter probability estimates.

    Raises
    ------
    ProblemError
        On any invalid value; the message names the field and the value.

    Notes
    -----
    Scalars broadcast over markets; a sequence gives one value per market, in the market order
    of the ScenarioSet, and all such sequences must have the same length (checked here) equal to
    ``J`` (checked when solving, by :meth:`per_market`).
    """

    alpha: float
    cost_of_capital: float
    premium_weight: PerMarket = 0.0
    premium_min: PerMarket = 0.0
    premium_max: PerMarket = DEFAULT_PREMIUM_MAX
    fund_max: float | None = None
    floor: float = 0.0
    rate_change_penalty: float = 0.0
    previous_rates: PerMarket | None = None
    survive_stress: bool = True
    participation: Participation | None = None
    ruin: RuinRule = FLOOR
    expected_shortfall_max: float | None = None
    shortfall_cvar_max: float | None = None
    shortfall_cvar_level: float = 0.99

    def __post_init__(self) -> None:
        alpha = _scalar("alpha", self.alpha)
        if not 0.0 < alpha < 1.0:
            raise ProblemError(f"alpha must be in (0, 1), got {self.alpha!r}")
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "cost_of_capital", _nonnegative("cost_of_capital", self.cost_of_capital))
        object.__setattr__(self, "rate_change_penalty", _nonnegative("rate_change_penalty", self.rate_change_penalty))
        object.__setattr__(self, "floor", _scalar("floor", self.floor))
        if self.fund_max is not None:
            object.__setattr__(self, "fund_max", _nonnegative("fund_max", self.fund_max))
        if not isinstance(self.survive_stress, (bool, np.bool_)):
            raise ProblemError(f"survive_stress must be True or False, got {self.survive_stress!r}")
        object.__setattr__(self, "survive_stress", bool(self.survive_stress))

        for name in _PER_MARKET:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _per_market_value(name, value))
        for name in ("premium_weight", "premium_min", "premium_max"):
            low = min(np.atleast_1d(getattr(self, name)))
            if low < 0.0:
                raise ProblemError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        lengths = {name: len(v) for name in _PER_MARKET if isinstance(v := getattr(self, name), tuple)}
        if len(set(lengths.values())) > 1:
            listed = ", ".join(f"{n} has {k}" for n, k in lengths.items())
            raise ProblemError(f"per-market fields must have one value per market, the same count each: {listed}")
        low, high = np.broadcast_arrays(np.asarray(self.premium_min), np.asarray(self.premium_max))
        bad = np.flatnonzero(np.atleast_1d(low > high))
        if bad.size:
            j = int(bad[0])
            where = f"[{j}]" if np.ndim(low) else ""
            raise ProblemError(
                f"premium_min{where} = {float(np.atleast_1d(low)[j])!r} is above "
                f"premium_max{where} = {float(np.atleast_1d(high)[j])!r}"
            )
        if self.participation is not None and not isinstance(self.participation, Participation):
            raise ProblemError(f"participation must be a Participation or None, got {type(self.participation).__name__}")
        object.__setattr__(self, "ruin", RuinRule.from_dict(self.ruin))
        for name in ("expected_shortfall_max", "shortfall_cvar_max"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _nonnegative(name, getattr(self, name)))
        level = _scalar("shortfall_cvar_level", self.shortfall_cvar_level)
        if not 0.0 < level < 1.0:
            raise ProblemError(f"shortfall_cvar_level must be in (0, 1), got {self.shortfall_cvar_level!r}")
        object.__setattr__(self, "shortfall_cvar_level", level)
        if self.rate_change_penalty > 0.0 and self.previous_rates is None:
            raise ProblemError(
                f"rate_change_penalty = {self.rate_change_penalty!r} > 0 needs previous_rates (the rates in force)"
            )

    def per_market(self, name: str, n_markets: int) -> np.ndarray:
        """Field ``name`` as a ``(J,)`` float64 array, broadcasting a scalar over the markets.

        Raises
        ------
        ProblemError
            When the field holds a sequence whose length is not ``n_markets``.
        """
        value = getattr(self, name)
        if value is None:
            raise ProblemError(f"{name} is not set")
        if isinstance(value, tuple):
            if len(value) != n_markets:
                raise ProblemError(
                    f"{name} has {len(value)} values but the scenarios have {n_markets} markets: {value!r}"
                )
            return np.array(value, dtype=np.float64)
        return np.full(n_markets, value, dtype=np.float64)

    def rate_box(self, n_markets: int) -> tuple[np.ndarray, np.ndarray]:
        """The premium-rate box ``(premium_min, premium_max)``, each ``(J,)`` float64."""
        return self.per_market("premium_min", n_markets), self.per_market("premium_max", n_markets)

    def n_markets(self) -> int | None:
        """The market count the per-market fields fix, or None when every one of them is a scalar."""
        for name in _PER_MARKET:
            value = getattr(self, name)
            if isinstance(value, tuple):
                return len(value)
        return None

    def check_markets(self, n_markets: int) -> None:
        """Raise :class:`ProblemError` naming the first per-market field whose length is not ``n_markets``."""
        for name in _PER_MARKET:
            if getattr(self, name) is not None:
                self.per_market(name, n_markets)

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-serialisable view (tuples become lists)."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (Participation, RuinRule)):
                value = value.to_dict()
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


def _nonnegative(name: str, value: object) -> float:
    out = _scalar(name, value)
    if out < 0.0:
        raise ProblemError(f"{name} must be >= 0, got {value!r}")
    return out


def _per_market_value(name: str, value: object) -> PerMarket:
    if isinstance(value, (Real, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        return _scalar(name, value)
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise ProblemError(f"{name} must be a number or a sequence of numbers (one per market), got {value!r}")
    array = np.asarray(value)
    if array.ndim != 1 or array.size == 0:
        raise ProblemError(f"{name} must be a number or a 1-d sequence with one value per market, got {value!r}")
    return tuple(_scalar(f"{name}[{j}]", v.item() if isinstance(v, np.generic) else v) for j, v in enumerate(array))
