"""The venue's book: its markets, their open interest and volume, and the leverage tiers positions sit in."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import SpecificationError

__all__ = ["PREMIUM_KINDS", "MAX_OI_PER_ADV", "LeverageTier", "DEFAULT_TIERS", "Market", "VenueBook"]

#: Premium bases: liquidation fees on non-bankrupt liquidated notional, or fees on traded volume.
PREMIUM_KINDS = ("liquidation", "volume")

# Largest open_interest / daily_volume accepted. The square-root impact of liquidating a whole side,
# Y sigma_d sqrt(OI / ADV), is then 0.95 per unit notional at Y = 1 and sigma_d = 3%: the impact
# alone costs the notional itself, far outside the range the square-root law was measured on
# (orders of a few percent of daily volume). Real books sit near OI / ADV = 0.3-3 (the presets:
# 1/3). Issue 13: daily_volume = 1e-100 (a units slip) gave a fund target of 2.8e95 as an answer.
MAX_OI_PER_ADV = 1000.0


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

