"""The venue's book and the loss model that turns return paths into fund losses.

A :class:`VenueBook` lists the venue's :class:`Market` s: open interest, typical volume, the
leverage tiers positions sit in, and the execution parameters of liquidations.
:func:`build_scenarios` runs a loss model over :class:`~fundguard.models.scenarios.ReturnPaths`
and returns the :class:`ScenarioSet` the optimizer consumes. The default model is
:func:`liquidation_gap` (DESIGN.md, "The default venue loss model"); any function with the
:class:`LossModel` signature can replace it.

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
* the fund pays q_k max(0, slip_k - m_k); liquidations with slip_k < m_k pay a fee instead.

The book is stationary: every period starts with the same open interest spread the same way
(liquidated positions are replaced), and only the period's close-to-close move is seen (the
gap coefficient stands in for the intraperiod path).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from .errors import ScenarioError, SpecificationError
from .parallel import in_threads
from .scenarios import ReturnPaths
from .scenarioset import ScenarioSet

__all__ = [
    "LeverageTier",
    "DEFAULT_TIERS",
    "Market",
    "VenueBook",
    "LossModel",
    "liquidation_gap",
    "build_scenarios",
    "PREMIUM_KINDS",
]

#: Premium bases: liquidation fees on non-bankrupt liquidated notional, or fees on traded volume.
PREMIUM_KINDS = ("liquidation", "volume")

# Largest open_interest / daily_volume accepted. The square-root impact of liquidating a whole side,
# Y sigma_d sqrt(OI / ADV), is then 0.95 per unit notional at Y = 1 and sigma_d = 3%: the impact
# alone costs the notional itself, far outside the range the square-root law was measured on
# (orders of a few percent of daily volume). Real books sit near OI / ADV = 0.3-3 (the presets:
# 1/3). Issue 13: daily_volume = 1e-100 (a units slip) gave a fund target of 2.8e95 as an answer.
MAX_OI_PER_ADV = 1000.0

# Scenario-periods per chunk of build_scenarios: 512 KiB per (rows, T) float64 temporary, so the
# loss model's dozen temporaries stay in cache (measured 10-20% faster than 2**18, 2x faster
# than 100,000 x 30 at once).
_CHUNK_ELEMENTS = 2**16


@dataclass(frozen=True)
class LeverageTier:
    """A slice of a market's open interest at one leverage.

    Parameters
    ----------
    share : float in (0, 1]
        w_k, the fraction of open interest (per side) in this tier.
    leverage : float >= 1
        l_k, notional / initial margin of a fresh position.
    maintenance_margin : float in [0, 1/leverage)
        m_k, the margin (fraction of notional) below which the position is liquidated; what a
        liquidation can lose before the position is bankrupt.

    Notes
    -----
    A fresh position is liquidated after an adverse move D_k = 1/l_k - m_k (``distance``).
    """

    share: float
    leverage: float
    maintenance_margin: float

    def __post_init__(self) -> None:
        share, leverage, margin = (float(self.share), float(self.leverage), float(self.maintenance_margin))
        if not (math.isfinite(share) and 0.0 < share <= 1.0):
            raise SpecificationError(f"LeverageTier.share must be in (0, 1], got {self.share!r}")
        if not (math.isfinite(leverage) and leverage >= 1.0):
            raise SpecificationError(f"LeverageTier.leverage must be finite and >= 1, got {self.leverage!r}")
        if not (math.isfinite(margin) and 0.0 <= margin < 1.0 / leverage):
            raise SpecificationError(
                f"LeverageTier.maintenance_margin must be in [0, 1/leverage) = [0, {1.0 / leverage:.6g}) at leverage "
                f"{leverage:g}, got {self.maintenance_margin!r}"
            )
        object.__setattr__(self, "share", share)
        object.__setattr__(self, "leverage", leverage)
        object.__setattr__(self, "maintenance_margin", margin)

    @property
    def distance(self) -> float:
        """D_k = 1/leverage - maintenance_margin, the adverse move that liquidates a fresh position."""
        return 1.0 / self.leverage - self.maintenance_margin


#: The default ladder: how one side's open interest spreads over leverage, with each tier's
#: maintenance margin from the position-size bracket its positions fall in on Binance's BTCUSDT
#: USDⓈ-M table (announcement of 2021-03-18: 0.5% up to 250k notional, 1% to 1m, 2.5% to 10m,
#: 5% to 20m). Leverage and shares are assumptions of a typical large venue: a thin retail tail
#: at 50x (small positions, 0.5%) and 20x (1%), most open interest at 10x and 5x in mid-size
#: positions (2.5%) and at 2x in large ones (5%). Under the uniform-distance model a 5% adverse day
#: liquidates 48% of a side's open interest with this ladder (real venues report far less on
#: such days): the shares are the first thing to calibrate to your own book.
DEFAULT_TIERS: tuple[LeverageTier, ...] = (
    LeverageTier(share=0.05, leverage=50.0, maintenance_margin=0.005),   # D = 1.5%
    LeverageTier(share=0.15, leverage=20.0, maintenance_margin=0.010),   # D = 4%
    LeverageTier(share=0.25, leverage=10.0, maintenance_margin=0.025),   # D = 7.5%
    LeverageTier(share=0.30, leverage=5.0, maintenance_margin=0.025),    # D = 17.5%
    LeverageTier(share=0.25, leverage=2.0, maintenance_margin=0.050),    # D = 45%
)


@dataclass(frozen=True)
class Market:
    """One perpetual market of the venue.

    Parameters
    ----------
    name : str
        Must match a market of the return paths.
    open_interest : float > 0, currency units
        OI, notional open on each side (longs = shorts).
    daily_volume : float > 0, currency units per day
        ADV, typical traded notional per day: the liquidity liquidations are absorbed by. At
        least ``open_interest / 1000``: a thinner market would lose more than the notional to
        the square-root impact alone (see ``MAX_OI_PER_ADV``), which is a units mistake, not a book.
    tiers : sequence of LeverageTier, default ``DEFAULT_TIERS``
        How the open interest of each side spreads over leverage; shares sum to 1.
        Default: the ladder documented at ``DEFAULT_TIERS`` (Binance-bracket maintenance margins).
    impact : float >= 0, default 1.0
        Y, the square-root impact prefactor: executing Q costs Y sigma_d sqrt(Q / ADV) per unit.
        Default 1.0: the square-root law's prefactor is of order one in every market measured,
        about 0.5-1 (Toth et al. 2011, Phys. Rev. X 1, 021006; for Bitcoin, Donier & Bonart
        2015, Market Microstructure and Liquidity 1, 1550008); liquidations are urgent market
        orders into a thinning book, so the top of that range.
    gap : float in [0, 1], default 0.05
        g, the share of the close-to-close move beyond a fresh position's liquidation point that
        the liquidation engine fails to catch. Default 0.05: puts the 2020-03-12 replay of a
        1bn book trading 3bn a day at roughly 10m of fund loss, the order reported that day
        (BitMEX about 1,600 BTC = 8m USD, Binance about 6.6m USDT; see shared/data's
        insurance_fund_events_reported.csv). An order-of-magnitude anchor, not a fit.
    premium_kind : {"liquidation", "volume"}, default "liquidation"
        What the premium rate of this market is charged on: the notional of liquidations that
        leave margin to pay a fee (default: the usual insurance-fund feed of perpetual venues),
        or the period's traded volume.
    volume_elasticity : float >= 0, default 1.35
        eta, volume per period = ADV * period_days * (sigma / sigma_long_run)^eta. Default 1.35:
        the slope of log quote volume on log fitted conditional volatility, both detrended by a
        180-day rolling median, on Binance BTCUSDT and ETHUSDT daily data 2017-2025 (1.34, 1.38).
    long_run_volatility : float > 0, optional, per period in the paths' units
        sigma_long_run, the volatility at which ADV is typical. Default: the paths' own
        (the median fitted conditional volatility over the fit sample).
    short_tiers : sequence of LeverageTier, optional
        A different ladder for the short side (for example hedged basis traders at low
        leverage); default the same as ``tiers``.
    """

    name: str
    open_interest: float
    daily_volume: float
    tiers: Sequence[LeverageTier] = DEFAULT_TIERS
    impact: float = 1.0
    gap: float = 0.05
    premium_kind: str = "liquidation"
    volume_elasticity: float = 1.35
    long_run_volatility: float | None = None
    short_tiers: Sequence[LeverageTier] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SpecificationError(f"Market.name must be a non-empty string, got {self.name!r}")
        where = f"market {self.name!r}"
        for attr in ("open_interest", "daily_volume"):
            value = _finite(self, attr)
            if value <= 0.0:
                raise SpecificationError(f"{where}: {attr} must be > 0, got {value!r}")
        if self.open_interest > MAX_OI_PER_ADV * self.daily_volume:
            raise SpecificationError(
                f"{where}: daily_volume = {self.daily_volume!r} is implausibly small for open_interest = "
                f"{self.open_interest!r} (ratio {self.open_interest / self.daily_volume:.3g}, at most "
                f"{MAX_OI_PER_ADV:g}): liquidating the book would cost more than its notional in impact alone"
            )
        for attr in ("impact", "volume_elasticity"):
            if _finite(self, attr) < 0.0:
                raise SpecificationError(f"{where}: {attr} must be >= 0, got {getattr(self, attr)!r}")
        if not 0.0 <= _finite(self, "gap") <= 1.0:
            raise SpecificationError(f"{where}: gap must be in [0, 1], got {self.gap!r}")
        if self.premium_kind not in PREMIUM_KINDS:
            raise SpecificationError(f"{where}: premium_kind must be one of {PREMIUM_KINDS}, got {self.premium_kind!r}")
        if self.long_run_volatility is not None and not _finite(self, "long_run_volatility") > 0.0:
            raise SpecificationError(f"{where}: long_run_volatility must be > 0, got {self.long_run_volatility!r}")
        object.__setattr__(self, "tiers", _validate_tiers(self.tiers, f"{where}: tiers"))
        if self.short_tiers is not None:
            object.__setattr__(self, "short_tiers", _validate_tiers(self.short_tiers, f"{where}: short_tiers"))


def _finite(market: Market, attr: str) -> float:
    value = getattr(market, attr)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise SpecificationError(f"market {market.name!r}: {attr} must be a finite number, got {value!r}")
    object.__setattr__(market, attr, number)
    return number


def _validate_tiers(tiers: Sequence[LeverageTier], where: str) -> tuple[LeverageTier, ...]:
    tiers = tuple(tiers)
    if not tiers:
        raise SpecificationError(f"{where} must list at least one LeverageTier")
    for i, tier in enumerate(tiers):
        if not isinstance(tier, LeverageTier):
            raise SpecificationError(f"{where}[{i}] must be a LeverageTier, got {type(tier).__name__}")
    total = sum(t.share for t in tiers)
    if abs(total - 1.0) > 1e-9:
        raise SpecificationError(f"{where}: shares must sum to 1, got {total!r}")
    return tiers


@dataclass(frozen=True)
class VenueBook:
    """The venue: its markets, in the order premium rates are given.

    Parameters
    ----------
    markets : sequence of Market
        At least one, with unique names.
    """

    markets: Sequence[Market]

    def __post_init__(self) -> None:
        markets = tuple(self.markets)
        if not markets:
            raise SpecificationError("VenueBook.markets must list at least one Market")
        for i, market in enumerate(markets):
            if not isinstance(market, Market):
                raise SpecificationError(f"VenueBook.markets[{i}] must be a Market, got {type(market).__name__}")
        names = [m.name for m in markets]
        if len(set(names)) != len(names):
            raise SpecificationError(f"VenueBook market names must be unique, got {names}")
        object.__setattr__(self, "markets", markets)

    @property
    def names(self) -> tuple[str, ...]:
        """Market names, in order."""
        return tuple(m.name for m in self.markets)

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable description (every parameter of every market)."""
        return {"markets": [asdict(m) for m in self.markets]}


class LossModel(Protocol):
    """What a venue loss model is: one market's losses and premium base over a chunk of paths.

    Parameters
    ----------
    market : Market
    returns : (n, T) float64 array, log returns of this market
    volatility : (n, T) float64 array, conditional standard deviation per period, same units
    period_days : float
        Length of a period in days (1.0 for daily paths, 1/24 for hourly).
    long_run_volatility : float or None
        sigma_long_run per period (``Market.long_run_volatility`` or the paths').

    Returns
    -------
    (loss, premium_base) : two (n, T) float64 arrays >= 0, currency units
        What the fund pays, and what this market's premium rate is charged on, per period.
    """

    def __call__(
        self,
        market: Market,
        returns: np.ndarray,
        volatility: np.ndarray,
        *,
        period_days: float,
        long_run_volatility: float | None,
    ) -> tuple[np.ndarray, np.ndarray]: ...


def liquidation_gap(
    market: Market,
    returns: np.ndarray,
    volatility: np.ndarray,
    *,
    period_days: float = 1.0,
    long_run_volatility: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
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
    loss : array of the shape of ``returns``, currency units
        sum over sides and tiers of q_k max(0, slip_k - m_k).
    premium_base : array of the shape of ``returns``, currency units
        "liquidation": sum over sides and tiers of q_k 1[slip_k < m_k]; "volume":
        ADV period_days (sigma / sigma_long_run)^eta.

    Notes
    -----
    The formulas are in the module notes. Only one side has an adverse move in a period, so
    with one ladder for both sides the model runs once on a = |R|.
    """
    returns = np.asarray(returns, dtype=np.float64)
    volatility = np.asarray(volatility, dtype=np.float64)
    simple = np.expm1(returns)
    daily_vol = volatility * (1.0 / math.sqrt(period_days)) if period_days != 1.0 else volatility
    if market.short_tiers is None:
        loss, fee_base = _side_losses(np.abs(simple), daily_vol, market, market.tiers)
    else:
        loss, fee_base = _side_losses(np.maximum(-simple, 0.0), daily_vol, market, market.tiers)
        short_loss, short_fee = _side_losses(np.maximum(simple, 0.0), daily_vol, market, market.short_tiers)
        loss += short_loss
        fee_base += short_fee
    if market.premium_kind == "liquidation":
        return loss, fee_base
    reference = market.long_run_volatility if market.long_run_volatility is not None else long_run_volatility
    if reference is None:
        raise ScenarioError(f"market {market.name!r}: premium_kind='volume' needs a long_run_volatility")
    base = np.divide(volatility, reference, out=fee_base)
    base **= market.volume_elasticity
    base *= market.daily_volume * period_days
    return loss, base


def _side_losses(
    adverse: np.ndarray, daily_vol: np.ndarray, market: Market, tiers: Sequence[LeverageTier]
) -> tuple[np.ndarray, np.ndarray]:
    """Fund loss and fee-paying liquidated notional of one side, for adverse moves ``adverse``."""
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
    impact = np.multiply(total, 1.0 / market.daily_volume, out=total)
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
    return loss, fee_base


def build_scenarios(
    paths: ReturnPaths,
    venue: VenueBook,
    *,
    loss_model: LossModel = liquidation_gap,
    chunk_size: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    threads: int | None = None,
) -> ScenarioSet:
    """Fund losses and premium bases of a venue over simulated (or stress) return paths.

    Parameters
    ----------
    paths : ReturnPaths
        (N, T, J') returns and volatilities; must contain every market of ``venue`` (by name;
        other markets are ignored).
    venue : VenueBook
    loss_model : LossModel, default :func:`liquidation_gap`
        Called once per market and chunk of scenarios.
    chunk_size : int, optional
        Scenarios per chunk (default: about 2**16 scenario-periods); does not change the result.
    metadata : mapping, optional
        Extra JSON-serialisable entries for the ScenarioSet's metadata.
    threads : int, optional
        Chunks worked on at once, each in its own thread (numpy releases the GIL in the loss
        model's array operations). Default: the CPUs this process may run on; 1 calls the loss
        model from the calling thread only (use it for a loss model that is not safe to call
        from several threads: pure functions of their arrays, like the default, are). Does not
        change the result.

    Returns
    -------
    ScenarioSet
        ``losses`` (N, T): sum over markets of the model's loss, currency units;
        ``premium_base`` (N, T, J): per venue market, in venue order; ``is_stress`` from the
        paths; ``metadata``: the paths' metadata, the venue and the loss model's name.
        Memory: the two returned arrays plus a few (chunk, T) temporaries.

    Raises
    ------
    ScenarioError
        A venue market missing from the paths, or a loss model returning arrays of the wrong
        shape or negative / non-finite values.
    """
    if not isinstance(paths, ReturnPaths):
        raise ScenarioError(f"paths must be ReturnPaths, got {type(paths).__name__}")
    if not isinstance(venue, VenueBook):
        raise ScenarioError(f"venue must be a VenueBook, got {type(venue).__name__}")
    columns = []
    for market in venue.markets:
        if market.name not in paths.markets:
            raise ScenarioError(f"venue market {market.name!r} has no return paths; paths have {list(paths.markets)}")
        column = paths.markets.index(market.name)
        columns.append(column)
        if market.premium_kind == "volume" and market.long_run_volatility is None and paths.long_run_volatility is None:
            raise ScenarioError(
                f"market {market.name!r}: premium_kind='volume' needs long_run_volatility (on the Market or the paths)"
            )
    n, horizon = paths.n_scenarios, paths.horizon
    period_days = 1.0 if paths.period is None else paths.period / pd.Timedelta(days=1)
    if chunk_size is None:
        rows = max(1, _CHUNK_ELEMENTS // horizon)
    elif isinstance(chunk_size, (int, np.integer)) and not isinstance(chunk_size, bool) and chunk_size >= 1:
        rows = int(chunk_size)
    else:
        raise ScenarioError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    model_name = getattr(loss_model, "__name__", type(loss_model).__name__)

    losses = np.zeros((n, horizon))
    premium_base = np.empty((n, horizon, len(venue.markets)))
    def work(start: int) -> None:
        block = slice(start, min(start + rows, n))
        for j, (market, column) in enumerate(zip(venue.markets, columns)):
            reference = None if paths.long_run_volatility is None else float(paths.long_run_volatility[column])
            loss, base = loss_model(
                market,
                paths.returns[block, :, column],
                paths.volatility[block, :, column],
                period_days=period_days,
                long_run_volatility=reference,
            )
            expected = (block.stop - block.start, horizon)
            for what, array in (("loss", loss), ("premium_base", base)):
                if np.shape(array) != expected:
                    raise ScenarioError(
                        f"loss model {model_name!r} returned {what} of shape {np.shape(array)} for market "
                        f"{market.name!r}, expected {expected}"
                    )
            losses[block] += loss
            premium_base[block, :, j] = base

    in_threads(work, range(0, n, rows), threads, "fundguard-losses")  # chunks write disjoint rows

    info = dict(paths.metadata)
    info.update(
        loss_model=model_name,
        venue=venue.describe(),
        period_days=period_days,
        period_assumed=paths.period is None,
    )
    if paths.labels is not None:
        info["labels"] = list(paths.labels)
    if metadata:
        info.update(metadata)
    try:
        return ScenarioSet(losses=losses, premium_base=premium_base, markets=venue.names,
                           is_stress=paths.is_stress, metadata=info)
    except ScenarioError as exc:
        raise ScenarioError(f"loss model {model_name!r}: {exc}") from None
