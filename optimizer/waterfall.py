"""After the fund: the loss waterfall and auto-deleveraging (issue 17, item 2).

When a period's losses take the fund below its trigger level (its floor, or the drawdown level of
the problem's :class:`~.ruin.RuinRule`), the fund pays down to that level and the rest of the
shortfall goes down a waterfall: the venue's layers in order (venue capital, a staked backstop
vault, ...: each a :class:`Layer` with a size that depletes over the horizon), then
auto-deleveraging (ADL) of the winners' side, then, past every winner's profit, what no one covers
(the venue's default). :func:`run_waterfall` follows it per scenario and period for a policy.

ADL, the model
--------------
ADL is per contract: the period's shortfall beyond the layers is split over the markets in
proportion to their losses that period, and market j's part is taken from the profits of its
winners that period (``ScenarioSet.winners``: the side the move favoured, marked to market).
Haircuts apply to profits, never to posted margin (Chitra, Thogiti et al. 2026, arXiv:2602.15182).
The winners are in cohorts, the market's leverage tiers (share w_k of the side's notional and of
its profit, leverage l_k: every winner of a period made the same move, so profit is proportional
to notional). Allocation rules:

* ``"queue"`` (the CEX rule: Binance, Bybit, OKX, Hyperliquid rank by PnL% x leverage): within a
  period every winner has the same move r, so PnL% x leverage = |r| l_k^2 and the rank is the
  leverage. Cohorts are taken in that order, whole accounts at a time (``accounts`` equal accounts
  per cohort: the queue closes an account's position outright, so the last account closed gives
  up more than the shortfall needs: the *overshoot*). Highest-leverage winners lose all their
  period profit first.
* ``"min_overshoot"``: the queue's order, but the last account is closed only as far as needed:
  the least value taken for the queue's ranking (overshoot zero).
* ``"pro_rata"``: every winner of the market gives up the same share of the period's profit,
  ``min(1, need / profit)``: the flattest haircuts.

Each rule takes at most the market's period profit; a need beyond it is *uncovered*. Allocations
sum exactly to the need covered (``allocated + uncovered == need`` per market and period; tested).
Not modelled: the production queue's rounds on stale shortfall estimates and oracle-price closes,
which Chitra (2025, arXiv:2512.01112) finds overshot the needed haircut by 8-28x on Hyperliquid on
2025-10-10: with a period's need known exactly, the queue here overshoots only by account
granularity.

Fairness: per scenario the largest haircut (share of a cohort's period profit taken, over periods,
markets and cohorts) and the profit-weighted median haircut of the winners in the periods with
ADL; aggregated over scenarios by :meth:`WaterfallResult.summary`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fundguard.models import DEFAULT_TIERS, LeverageTier, ScenarioSet
from fundguard.models.errors import ProblemError, ScenarioError

from .policy import Policy
from .ruin import FLOOR, RuinRule

__all__ = ["Layer", "Waterfall", "WaterfallResult", "ALLOCATION_RULES", "run_waterfall", "allocate"]

ALLOCATION_RULES = ("queue", "min_overshoot", "pro_rata")


@dataclass(frozen=True)
class Layer:
    """One layer of capital behind the fund: a name ("venue capital", "backstop vault") and a size
    in currency units, used up over the horizon (not refilled)."""

    name: str
    size: float

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ProblemError(f"layer name must be a non-empty string, got {self.name!r}")
        size = self.size
        if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, float, np.integer, np.floating)) \
                or not (math.isfinite(float(size)) and float(size) >= 0.0):
            raise ProblemError(f"layer {self.name!r}: size must be a finite number >= 0, got {size!r}")
        object.__setattr__(self, "size", float(size))


@dataclass(frozen=True)
class Waterfall:
    """What comes after the fund: ``layers`` in order, then ADL by ``allocation``.

    Parameters
    ----------
    layers : sequence of Layer, default ()
    allocation : {"queue", "min_overshoot", "pro_rata"}, default "queue"
    accounts : int >= 1, default 100
        Equal accounts per winner cohort, the unit the "queue" closes whole. An illustrative
        granularity, not a fitted figure: the overshoot it gives is at most one account's
        profit per cohort and period (1% of a cohort's period profit at the default).
    """

    layers: tuple[Layer, ...] = ()
    allocation: str = "queue"
    accounts: int = 100

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        for k, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise ProblemError(f"layers[{k}] must be a Layer, got {type(layer).__name__}")
        names = [layer.name for layer in layers]
        if len(set(names)) != len(names):
            raise ProblemError(f"layer names must be unique, got {names}")
        object.__setattr__(self, "layers", layers)
        if self.allocation not in ALLOCATION_RULES:
            raise ProblemError(f"allocation must be one of {ALLOCATION_RULES}, got {self.allocation!r}")
        if isinstance(self.accounts, (bool, np.bool_)) or not isinstance(self.accounts, (int, np.integer)) \
                or self.accounts < 1:
            raise ProblemError(f"accounts must be a whole number >= 1, got {self.accounts!r}")
        object.__setattr__(self, "accounts", int(self.accounts))

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [{"name": layer.name, "size": layer.size} for layer in self.layers],
                "allocation": self.allocation, "accounts": self.accounts}


@dataclass(frozen=True, eq=False)
class WaterfallResult:
    """Per scenario, what each part of the waterfall paid (currency units, over the horizon).

    Attributes
    ----------
    waterfall : Waterfall
    markets : tuple of str
    need : (N,) beyond the fund (its trigger level), what the layers and ADL were asked for
    layers : (N, L) paid by each layer
    adl : (N,) taken from winners (including overshoot)
    adl_by_market : (N, J)
    overshoot : (N,) taken beyond the need (the queue's whole accounts)
    uncovered : (N,) beyond every winner's profit: the venue's default
    largest_haircut, median_haircut : (N,) fairness (module notes); nan without ADL
    winners_profit : (N,) the winners' profit over the horizon (what ADL could take from)
    is_stress : (N,) bool
    """

    waterfall: Waterfall
    markets: tuple[str, ...]
    need: np.ndarray
    layers: np.ndarray
    adl: np.ndarray
    adl_by_market: np.ndarray
    overshoot: np.ndarray
    uncovered: np.ndarray
    largest_haircut: np.ndarray
    median_haircut: np.ndarray
    winners_profit: np.ndarray
    is_stress: np.ndarray = field(repr=False)

    def summary(self, level: float = 0.99) -> dict[str, Any]:
        """Aggregates over the random scenarios: P(ADL), expected and tail ADL (value at risk and
        CVaR at ``level``), the expected cost to winners, P(uncovered) and fairness."""
        keep = ~self.is_stress
        adl, n = self.adl[keep], int(keep.sum())
        hit = adl > 0.0
        order = np.sort(adl)
        tail_index = min(n - 1, int(math.floor(level * n)))
        tail = order[tail_index:]
        haircut = self.largest_haircut[keep][hit]
        median = self.median_haircut[keep][hit]
        return {
            "allocation": self.waterfall.allocation,
            "layers": [layer.name for layer in self.waterfall.layers],
            "n_scenarios": n,
            "p_need": float(np.mean(self.need[keep] > 0.0)),
            "p_adl": float(np.mean(hit)),
            "expected_adl": float(np.mean(adl)),
            "adl_given_adl": float(np.mean(adl[hit])) if hit.any() else 0.0,
            "adl_max": float(order[-1]),
            f"adl_var_{level:g}": float(order[tail_index]),
            f"adl_cvar_{level:g}": float(np.mean(tail)),
            "expected_overshoot": float(np.mean(self.overshoot[keep])),
            "expected_layers": {layer.name: float(np.mean(self.layers[keep, k]))
                                for k, layer in enumerate(self.waterfall.layers)},
            "p_uncovered": float(np.mean(self.uncovered[keep] > 0.0)),
            "expected_uncovered": float(np.mean(self.uncovered[keep])),
            "largest_haircut_mean": float(np.mean(haircut)) if haircut.size else math.nan,
            "largest_haircut_max": float(np.max(haircut)) if haircut.size else math.nan,
            "median_haircut_mean": float(np.mean(median)) if median.size else math.nan,
        }


def _cohorts(markets: Sequence[str], tiers: Mapping[str, Sequence[LeverageTier]] | None) -> tuple[np.ndarray, np.ndarray]:
    """(J, K) shares and leverages of each market's winner cohorts, padded with zero shares."""
    per_market = [tuple((tiers or {}).get(name, DEFAULT_TIERS)) for name in markets]
    k = max(len(t) for t in per_market)
    shares, leverage = np.zeros((len(markets), k)), np.ones((len(markets), k))
    for j, market_tiers in enumerate(per_market):
        for i, tier in enumerate(market_tiers):
            if not isinstance(tier, LeverageTier):
                raise ProblemError(f"tiers[{markets[j]!r}][{i}] must be a LeverageTier, got {type(tier).__name__}")
            shares[j, i], leverage[j, i] = tier.share, tier.leverage
        total = shares[j].sum()
        if abs(total - 1.0) > 1e-6:
            raise ProblemError(f"tiers of market {markets[j]!r} must have shares summing to 1, got {total:.6g}")
    return shares, leverage


def allocate(need: np.ndarray, profit: np.ndarray, leverage: np.ndarray, rule: str, accounts: int = 1
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Take ``need`` (n,) from cohorts with period profits ``profit`` (n, K) by ``rule``.

    ``leverage`` (K,) ranks the cohorts for the queue rules (highest first). Returns the (n, K)
    value taken from each cohort (the queue's overshoot included), the (n,) need left uncovered
    (beyond every cohort's profit) and the (n,) overshoot (taken beyond the need: the queue's
    whole accounts; zero for the other rules).
    """
    need = np.asarray(need, dtype=np.float64)
    available = profit.sum(axis=1)
    covered = np.minimum(need, available)
    uncovered = need - covered
    taken = np.zeros_like(profit)
    if rule == "pro_rata":
        share = np.divide(covered, available, out=np.zeros_like(covered), where=available > 0.0)
        taken = profit * share[:, None]
        return taken, uncovered, np.zeros_like(need)
    if rule not in ("queue", "min_overshoot"):
        raise ProblemError(f"allocation must be one of {ALLOCATION_RULES}, got {rule!r}")
    left = covered.copy()
    overshoot = np.zeros_like(need)
    for k in np.argsort(-leverage, kind="stable"):
        part = np.minimum(left, profit[:, k])
        left = np.maximum(left - part, 0.0)
        if rule == "queue":
            # whole accounts: round the part up to a multiple of one account's profit, within the cohort
            unit = profit[:, k] / accounts
            whole = np.where(unit > 0.0, np.ceil(part / np.where(unit > 0.0, unit, 1.0) - 1e-12) * unit, 0.0)
            rounded = np.minimum(np.maximum(whole, part), profit[:, k])
            overshoot += rounded - part
            part = rounded
        taken[:, k] = part
    return taken, uncovered, overshoot


def run_waterfall(policy: Policy, scenarios: ScenarioSet, waterfall: Waterfall,
                  tiers: Mapping[str, Sequence[LeverageTier]] | None = None) -> WaterfallResult:
    """Follow ``policy``'s fund and what comes after it through every scenario (module notes).

    Parameters
    ----------
    policy : Policy
        Its fund target, rates, floor, ruin rule and participation (the book scaled at its rates).
    scenarios : ScenarioSet
        With ``winners`` and ``losses_by_market`` (the stateful book gives both).
    waterfall : Waterfall
    tiers : mapping market -> sequence of LeverageTier, optional
        The winners' cohorts per market (default ``DEFAULT_TIERS``): the venue's ``Market.tiers``.
    """
    if not isinstance(policy, Policy):
        raise ProblemError(f"policy must be a Policy, got {type(policy).__name__}")
    if not isinstance(waterfall, Waterfall):
        raise ProblemError(f"waterfall must be a Waterfall, got {type(waterfall).__name__}")
    if not isinstance(scenarios, ScenarioSet):
        raise ScenarioError(f"scenarios must be a ScenarioSet, got {type(scenarios).__name__}")
    if tuple(scenarios.markets) != tuple(policy.markets):
        raise ScenarioError(f"scenarios have markets {list(scenarios.markets)}, the policy {list(policy.markets)}")
    if scenarios.winners is None or scenarios.losses_by_market is None:
        raise ScenarioError("the waterfall needs the winners' profits and the losses by market (ScenarioSet.winners "
                            "and .losses_by_market; the stateful loss model gives both)")
    if policy.participation is not None:
        scenarios = policy.participation.scaled(scenarios, policy.premium_rates)
    rule: RuinRule = getattr(policy, "ruin", FLOOR)
    shares, leverage = _cohorts(scenarios.markets, tiers)
    n, horizon, n_markets = scenarios.premium_base.shape
    rates = np.asarray(policy.premium_rates, dtype=np.float64)
    floor = float(policy.floor)
    n_layers = len(waterfall.layers)
    layer_left = np.tile(np.array([layer.size for layer in waterfall.layers]), (n, 1)) if n_layers else np.zeros((n, 0))
    paid_layers = np.zeros((n, n_layers))
    need_total, adl, overshoot, uncovered = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    adl_by_market = np.zeros((n, n_markets))
    largest = np.full(n, np.nan)
    weighted = []  # per period: (haircut (n, J, K), profit (n, J, K)) where ADL happened, for the medians
    levels = np.empty((n, horizon + 1))
    levels[:, 0] = policy.fund_target
    window = 0 if rule.is_floor else int(rule.window)
    keep = 1.0 if rule.is_floor else 1.0 - float(rule.fraction)
    for t in range(horizon):
        losses_t = scenarios.losses_by_market[:, t, :]
        flow = scenarios.premium_base[:, t, :] @ rates - losses_t.sum(axis=1)
        trigger = np.full(n, floor)
        if window:
            recent = levels[:, max(0, t + 1 - window):t + 1]
            trigger = np.maximum(trigger, floor + keep * (recent.max(axis=1) - floor))
        level = levels[:, t] + flow
        short = np.maximum(trigger - level, 0.0)
        levels[:, t + 1] = np.maximum(level, trigger)
        need_total += short
        remaining = short
        for k in range(n_layers):
            pay = np.minimum(remaining, layer_left[:, k])
            layer_left[:, k] -= pay
            paid_layers[:, k] += pay
            remaining = remaining - pay
        rows = np.flatnonzero(remaining > 0.0)
        if rows.size == 0:
            continue
        losses_rows = losses_t[rows]
        total_loss = losses_rows.sum(axis=1, keepdims=True)
        split = np.divide(losses_rows, total_loss, out=np.full_like(losses_rows, 1.0 / n_markets),
                          where=total_loss > 0.0)
        market_need = remaining[rows, None] * split
        haircut = np.zeros((rows.size, n_markets, shares.shape[1]))
        profit = scenarios.winners[rows, t, :, None] * shares[None, :, :]
        for j in range(n_markets):
            taken, left, extra = allocate(market_need[:, j], profit[:, j, :], leverage[j], waterfall.allocation,
                                          waterfall.accounts)
            adl[rows] += taken.sum(axis=1)
            adl_by_market[rows, j] += taken.sum(axis=1)
            overshoot[rows] += extra
            uncovered[rows] += left
            np.divide(taken, profit[:, j, :], out=haircut[:, j, :], where=profit[:, j, :] > 0.0)
        period_largest = haircut.reshape(rows.size, -1).max(axis=1)
        largest[rows] = np.fmax(largest[rows], period_largest)
        weighted.append((rows, haircut.reshape(rows.size, -1), profit.reshape(rows.size, -1)))
    median = _weighted_medians(n, weighted)
    return WaterfallResult(waterfall, tuple(scenarios.markets), need_total, paid_layers, adl, adl_by_market, overshoot,
                           uncovered, largest, median, scenarios.winners.sum(axis=(1, 2)),
                           np.asarray(scenarios.is_stress))


def _weighted_medians(n: int, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
    """Per scenario the profit-weighted median haircut over its ADL periods' cohorts (nan without ADL)."""
    out = np.full(n, np.nan)
    if not parts:
        return out
    rows = np.concatenate([p[0] for p in parts])
    haircuts = np.concatenate([p[1] for p in parts])
    weights = np.concatenate([p[2] for p in parts])
    for s in np.unique(rows):
        mask = rows == s
        h, w = haircuts[mask].ravel(), weights[mask].ravel()
        if w.sum() <= 0.0:
            continue
        order = np.argsort(h, kind="stable")
        cumulative = np.cumsum(w[order])
        out[s] = float(h[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])
    return out
