"""When the fund counts as exhausted: the ruin rules (issue 17, item 1).

Venues do not wait for the fund to reach zero. Bybit starts auto-deleveraging (ADL) when a pool's
insurance fund falls 30% within a rolling 8 hours; OKX on its decline rate against the 8-hour
maximum; a venue may also refuse to pay out more than a share of the fund in one period. A
:class:`RuinRule` states which event is "ruin" for the solvency constraint P(ruin) <= alpha:

* ``RuinRule()`` (kind "floor", the default): ``min_t F[s, t] < floor``, today's rule;
* ``RuinRule("drawdown", fraction=x, window=k)``: the floor rule, or the fund above the floor
  falling below ``(1 - x)`` of its running maximum over the previous ``k`` periods:
  ``F[s, t] - floor < (1 - x) max_{t - k <= u < t} (F[s, u] - floor)`` for some t, with
  ``F[s, 0] = F0`` (the fund at the start counts in the window);
* ``RuinRule("payout", fraction=c)``: the floor rule, or one period paying out more than ``c`` of
  the fund (above the floor) at its start: the drawdown rule with a window of one period.

The drawdown is measured on the fund above the floor, so a reserved minimum balance does not
dilute the trigger; with the default floor 0 it is the plain fund. Windows are in periods of the
scenario set (days for daily scenarios): Bybit's 8 hours is ``window=8`` on hourly scenarios; on
daily ones the nearest rule is ``window=1`` (a day's fall against the previous day's balance).

Why every method can handle it (docs/design.md, "Ruin rules"): with the cumulative net flow
``C[s, t] = sum_{u <= t} (p . B[s, u] - L[s, u])`` (``C[s, 0] = 0``), the drawdown event at the
pair ``(t, u)`` is ``x F0 + C[s, t] - (1 - x) C[s, u] < x floor``, i.e.

    F0 + (C[s, t] - (1 - x) C[s, u]) / x < floor,

an affine function of ``(F0, p)`` with coefficient one on ``F0`` and a premium base
``(CB_t - (1 - x) CB_u) / x = CB_u + (CB_t - CB_u) / x >= 0``. So each (scenario, pair) is one
more *row* of the floor rule: :func:`rows` lays a scenario set out as the cumulative rows of the
floor rule (the plain periods and every pair of the window), and every method, the participation
scaling and the certificates run on it unchanged. Its "periods" are rows, not time: their
increments may be negative (the metadata key ``RULE_ROWS`` tells the ScenarioSet to check them
for finiteness only), and it is only ever handed to the solvers (:func:`fundguard.optimizer.solve`
does it).

:func:`ruined` is the independent numpy truth: it follows each fund path ``F[s, t]`` and tests the
trigger against the window's maximum directly, without rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from fundguard.models import ScenarioSet
from fundguard.models.scenarioset import RULE_ROWS
from fundguard.models.errors import ProblemError, ScenarioError

__all__ = ["RuinRule", "FLOOR", "RUIN_KINDS", "rows", "ruined", "row_count"]

RUIN_KINDS = ("floor", "drawdown", "payout")
#: Values (scenario x period) per chunk of :func:`ruined` (about 2 MB of float64 per buffer).
_CHUNK_VALUES = 1 << 18


@dataclass(frozen=True)
class RuinRule:
    """Which event counts as ruin (module notes).

    Parameters
    ----------
    kind : {"floor", "drawdown", "payout"}, default "floor"
    fraction : float in (0, 1), optional
        "drawdown": the fall x of the fund above the floor, against its maximum over the window,
        that triggers (Bybit: 0.3). "payout": the largest share c of the fund (above the floor)
        one period may pay out. Not used by "floor".
    window : int >= 1, optional
        "drawdown": the periods the maximum looks back over (Bybit: 8 hours, so 8 on hourly
        scenarios). "payout": 1 (set by the kind). Not used by "floor".

    Raises
    ------
    ProblemError
        On any invalid value, naming the field.
    """

    kind: str = "floor"
    fraction: float | None = None
    window: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in RUIN_KINDS:
            raise ProblemError(f"ruin kind must be one of {RUIN_KINDS}, got {self.kind!r}")
        if self.kind == "floor":
            if self.fraction is not None or self.window is not None:
                raise ProblemError("ruin kind 'floor' takes no fraction or window (the problem's floor is the rule)")
            return
        fraction = self.fraction
        if isinstance(fraction, (bool, np.bool_)) or not isinstance(fraction, (int, float, np.integer, np.floating)):
            raise ProblemError(f"ruin fraction must be a number in (0, 1) for kind {self.kind!r}, got {fraction!r}")
        fraction = float(fraction)
        if not (0.0 < fraction < 1.0):
            raise ProblemError(f"ruin fraction must be in (0, 1), got {self.fraction!r}")
        object.__setattr__(self, "fraction", fraction)
        window = 1 if self.kind == "payout" and self.window is None else self.window
        if isinstance(window, (bool, np.bool_)) or not isinstance(window, (int, np.integer)) or window < 1:
            raise ProblemError(f"ruin window must be a whole number of periods >= 1, got {self.window!r}")
        if self.kind == "payout" and window != 1:
            raise ProblemError(f"ruin kind 'payout' is per period (window 1), got window {self.window!r}")
        object.__setattr__(self, "window", int(window))

    @property
    def is_floor(self) -> bool:
        """True for the default rule (no rows beyond the periods)."""
        return self.kind == "floor"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON view: ``{"kind": ...}`` plus fraction and window when used."""
        if self.is_floor:
            return {"kind": "floor"}
        return {"kind": self.kind, "fraction": self.fraction, "window": self.window}

    @classmethod
    def from_dict(cls, data: Any) -> RuinRule:
        """The rule of a mapping such as ``{"kind": "drawdown", "fraction": 0.3, "window": 8}``."""
        if isinstance(data, RuinRule):
            return data
        if not isinstance(data, dict):
            raise ProblemError(f"ruin must be a table such as {{kind = \"drawdown\", fraction = 0.3, window = 8}}, got {data!r}")
        unknown = sorted(set(data) - {"kind", "fraction", "window"})
        if unknown:
            raise ProblemError(f"ruin has unknown key(s) {unknown}; allowed: kind, fraction, window")
        return cls(data.get("kind", "floor"), data.get("fraction"), data.get("window"))

    def describe(self) -> str:
        """One line for reports: what ruin means under this rule."""
        if self.is_floor:
            return "the fund below its floor"
        if self.kind == "payout":
            return f"the fund below its floor, or one period paying out more than {self.fraction:.0%} of the fund"
        periods = "period" if self.window == 1 else f"{self.window} periods"
        return (f"the fund below its floor, or the fund falling {self.fraction:.0%} below its maximum over the "
                f"previous {periods}")


#: The default rule: the fund below its floor.
FLOOR = RuinRule()


def row_count(horizon: int, rule: RuinRule) -> int:
    """Rows per scenario of :func:`rows`: ``T`` plus, per period t, ``min(k, t)`` window pairs."""
    if rule.is_floor:
        return horizon
    k = int(rule.window)
    return horizon + sum(min(k, t) for t in range(1, horizon + 1))


def _pairs(horizon: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(t, u) of every row in order: per t the window pairs u = t - k .. t - 1 (u >= 0), then the
    plain row (u = -1); the last row is the plain row of period T."""
    t_of, u_of = [], []
    for t in range(1, horizon + 1):
        for u in range(max(0, t - window), t):
            t_of.append(t)
            u_of.append(u)
        t_of.append(t)
        u_of.append(-1)
    return np.asarray(t_of), np.asarray(u_of)


def _row_values(cumulative: np.ndarray, t_of: np.ndarray, u_of: np.ndarray, fraction: float) -> np.ndarray:
    """Row values of one cumulative array ((n, T + 1) or (n, T + 1, J), zero at index 0)."""
    at_t = cumulative[:, t_of]
    window = u_of >= 0
    at_u = cumulative[:, np.where(window, u_of, 0)]
    shape = (1, -1) + (1,) * (cumulative.ndim - 2)
    out = np.where(window.reshape(shape), (at_t - (1.0 - fraction) * at_u) / fraction, at_t)
    return out


def _increments(values: np.ndarray) -> np.ndarray:
    out = np.empty_like(values)
    out[:, 0] = values[:, 0]
    np.subtract(values[:, 1:], values[:, :-1], out=out[:, 1:])
    return out


def _cumulative(flows: np.ndarray) -> np.ndarray:
    shape = (flows.shape[0], flows.shape[1] + 1) + flows.shape[2:]
    out = np.zeros(shape)
    np.cumsum(flows, axis=1, dtype=np.float64, out=out[:, 1:])
    return out


def rows(scenarios: ScenarioSet, rule: RuinRule) -> ScenarioSet:
    """The scenarios as rows of the floor rule under ``rule`` (module notes); the set itself for "floor".

    Each scenario keeps its place, stress flag and markets; its "periods" are the rows, their
    increments chosen so that the cumulative sums are the rows' values (losses, premium base and,
    when given, losses by market; the liquidated notional and the winners' side are dropped).
    The last row is the plain period T, so every scenario's sums over the rows equal its sums over
    the horizon: mean premium bases, horizon losses and participation's means are unchanged.

    Memory: ``row_count(T, rule) / T`` times the set's losses, bases and losses by market (2x for
    a one-period window; ``1 + k`` for k-period windows well inside the horizon).
    """
    if not isinstance(rule, RuinRule):
        raise ProblemError(f"ruin must be a RuinRule, got {type(rule).__name__}")
    if not isinstance(scenarios, ScenarioSet):
        raise ScenarioError(f"scenarios must be a ScenarioSet for a ruin rule other than 'floor', got "
                            f"{type(scenarios).__name__}")
    if rule.is_floor:
        return scenarios
    t_of, u_of = _pairs(scenarios.horizon, int(rule.window))
    x = float(rule.fraction)

    def laid_out(flows: np.ndarray) -> np.ndarray:
        return _increments(_row_values(_cumulative(flows), t_of, u_of, x))

    by_market = None if scenarios.losses_by_market is None else laid_out(scenarios.losses_by_market)
    metadata = dict(scenarios.metadata)
    metadata[RULE_ROWS] = {**rule.to_dict(), "horizon": scenarios.horizon, "rows": int(t_of.size)}
    # the marker key lets increments be negative (checked for finiteness only); the set's
    # operations (subsets, participation's scaling) keep the metadata, so they stay rows
    return ScenarioSet(laid_out(scenarios.losses), laid_out(scenarios.premium_base), scenarios.markets,
                       is_stress=scenarios.is_stress, metadata=metadata, losses_by_market=by_market)


def ruined(fund_target: float, premium_rates: np.ndarray, scenarios: ScenarioSet, rule: RuinRule,
           floor: float = 0.0) -> np.ndarray:
    """(N,) bool: is each scenario ruined under ``rule`` with fund target ``F0`` and rates ``p``?

    The independent check of :func:`rows`: each fund path ``F[s, 0] = F0``,
    ``F[s, t] = F0 + sum_{u <= t} (p . B[s, u] - L[s, u])`` is followed and tested against the
    floor and, for "drawdown" and "payout", against ``(1 - x)`` times each of the previous
    ``window`` levels above the floor, streamed over scenario chunks.
    """
    if not isinstance(rule, RuinRule):
        raise ProblemError(f"ruin must be a RuinRule, got {type(rule).__name__}")
    if not math.isfinite(fund_target):
        raise ProblemError(f"fund_target must be finite, got {fund_target!r}")
    rates = np.asarray(premium_rates, dtype=np.float64)
    n, horizon = scenarios.losses.shape
    out = np.empty(n, dtype=bool)
    step = max(1, _CHUNK_VALUES // (horizon + 1))
    for start in range(0, n, step):
        stop = min(n, start + step)
        net = scenarios.premium_base[start:stop] @ rates - scenarios.losses[start:stop]
        above = np.empty((stop - start, horizon + 1))
        above[:, 0] = fund_target - floor
        np.cumsum(net, axis=1, out=above[:, 1:])
        above[:, 1:] += fund_target - floor
        hit = np.any(above[:, 1:] < 0.0, axis=1)
        if not rule.is_floor:
            keep = 1.0 - float(rule.fraction)
            for lag in range(1, min(int(rule.window), horizon) + 1):
                hit |= np.any(above[:, lag:] < keep * above[:, :-lag], axis=1)
        out[start:stop] = hit
    return out
