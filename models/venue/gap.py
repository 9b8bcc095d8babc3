"""The liquidation-gap loss model (docs/design.md, "The venue loss model": kept by name for comparison).

Its parameters are fields of each :class:`~fundguard.models.venue.book.Market`: ``tiers`` and
``short_tiers`` (w_k, l_k, m_k), ``impact`` (Y), ``gap`` (g), ``daily_volume`` (ADV),
``open_interest`` (OI), ``premium_kind``, ``volume_elasticity`` (eta) and ``long_run_volatility``.

Notes
-----
The liquidation-gap model, per market, period and side, with R = exp(r) - 1 the period's simple
return (margin distances are fractions of the price, so log returns are converted):

* adverse move: longs a = max(0, -R), shorts a = max(0, R);
* tier k (share w_k, leverage l_k, maintenance margin m_k): a fresh position is liquidated after
  an adverse move D_k = 1/l_k - m_k; positions sit uniformly between 0 and D_k from liquidation,
  so the liquidated notional is q_k = w_k OI min(1, a / D_k);
* execution shortfall per unit notional: slip_k = Y sigma_d sqrt(Q / ADV) + g max(0, a - D_k),
  Q = sum_k q_k the side's liquidated notional, sigma_d the conditional volatility per day;
* the fund pays q_k max(0, slip_k - m_k); liquidations with slip_k < m_k pay a fee instead;
* the notional liquidated is Q of the side the move was adverse to; the winners are the other
  side, whose open interest gains OI max(0, -R) (the shorts, on a fall) or OI max(0, R) (the
  longs, on a rise): the whole open interest is on each side, as every contract has both.

The book is stationary: every period starts with the same open interest spread the same way
(liquidated positions are replaced), and only the period's close-to-close move is seen (the
gap coefficient stands in for the intraperiod path).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import ScenarioError
from .book import LeverageTier, Market
from .losses import VenueLosses

__all__ = ["liquidation_gap"]


def liquidation_gap(
    market: Market,
    returns: np.ndarray,
    volatility: np.ndarray,
    *,
    period_days: float = 1.0,
    long_run_volatility: float | None = None,
) -> VenueLosses:
    """The default loss model: bankrupt liquidations from uniformly spread liquidation distances.

    Parameters
    ----------
    market : Market
    returns : (...) float64 array, log returns of ``market`` per period
    volatility : (...) float64 array, conditional standard deviation per period, same units
    period_days : float, default 1.0
        Period length in days: volatility is scaled to a day (sigma_d = sigma / sqrt(period_days))
        for the square-root law, which is stated per day of volume; the volume base is
        ADV * period_days per period.
    long_run_volatility : float, optional
        sigma_long_run per period; needed for ``premium_kind="volume"`` unless the market sets it.

    Returns
    -------
    VenueLosses
        Four arrays of the shape of ``returns``, currency units:

        loss
            sum over sides and tiers of q_k max(0, slip_k - m_k).
        premium_base
            "liquidation": sum over sides and tiers of q_k 1[slip_k < m_k]; "volume":
            ADV period_days (sigma / sigma_long_run)^eta.
        liquidated
            sum over sides and tiers of q_k (only the side the move was adverse to has any).
        winners
            OI abs(R): the profit of the side the move favoured (OI max(0, -R) for the shorts on
            a fall, OI max(0, R) for the longs on a rise).

    Notes
    -----
    The formulas are in the module notes. Only one side has an adverse move in a period, so
    with one ladder for both sides the model runs once on a = abs(R).
    """
    returns = np.asarray(returns, dtype=np.float64)
    volatility = np.asarray(volatility, dtype=np.float64)
    simple = np.expm1(returns)
    daily_vol = volatility * (1.0 / math.sqrt(period_days)) if period_days != 1.0 else volatility
    if market.short_tiers is None:
        loss, fee_base, liquidated = _side_losses(np.abs(simple), daily_vol, market, market.tiers)
    else:
        loss, fee_base, liquidated = _side_losses(np.maximum(-simple, 0.0), daily_vol, market, market.tiers)
        short_loss, short_fee, short_liquidated = _side_losses(np.maximum(simple, 0.0), daily_vol, market,
                                                               market.short_tiers)
        loss += short_loss
        fee_base += short_fee
        liquidated += short_liquidated
    # the favoured side's gain: OI max(0, -R) (shorts) + OI max(0, R) (longs), one of them zero
    winners = np.abs(simple, out=simple)
    winners *= market.open_interest
    if market.premium_kind == "liquidation":
        return VenueLosses(loss, fee_base, liquidated, winners)
    reference = market.long_run_volatility if market.long_run_volatility is not None else long_run_volatility
    if reference is None:
        raise ScenarioError(f"market {market.name!r}: premium_kind='volume' needs a long_run_volatility")
    base = np.divide(volatility, reference, out=fee_base)
    base **= market.volume_elasticity
    base *= market.daily_volume * period_days
    return VenueLosses(loss, base, liquidated, winners)


def _side_losses(
    adverse: np.ndarray, daily_vol: np.ndarray, market: Market, tiers: Sequence[LeverageTier]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fund loss, fee-paying liquidated notional and liquidated notional Q of one side, for adverse moves ``adverse``."""
    liquidated = []
    total = np.zeros_like(adverse)
    for tier in tiers:
        # q_k = w_k OI min(1, a / D_k)
        q = np.multiply(adverse, 1.0 / tier.distance)
        np.minimum(q, 1.0, out=q)
        q *= tier.share * market.open_interest
        total += q
        liquidated.append(q)
    # square-root impact Y sigma_d sqrt(Q / ADV), shared by the side's tiers
    impact = np.multiply(total, 1.0 / market.daily_volume)
    np.sqrt(impact, out=impact)
    impact *= daily_vol
    impact *= market.impact
    gap_move = np.multiply(adverse, market.gap)
    loss = np.zeros_like(adverse)
    fee_base = np.zeros_like(adverse)
    excess = np.empty_like(adverse)
    paying = np.empty_like(adverse)
    for tier, q in zip(tiers, liquidated):
        # slip_k - m_k = impact + max(0, g a - g D_k) - m_k
        np.subtract(gap_move, market.gap * tier.distance, out=excess)
        np.maximum(excess, 0.0, out=excess)
        excess += impact
        excess -= tier.maintenance_margin
        # liquidations short of bankruptcy (slip < m) pay the fee; the rest cost the fund q (slip - m)
        np.less(excess, 0.0, out=paying, casting="unsafe")
        paying *= q
        fee_base += paying
        np.maximum(excess, 0.0, out=excess)
        excess *= q
        loss += excess
    return loss, fee_base, total
