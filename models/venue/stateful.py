"""The stateful book: the default loss model (docs/design.md, "The venue loss model").

Per market and side the book is state carried through the horizon: the open interest that is left
and how far each position is from its liquidation price. A period's intraday adverse excursion
liquidates the positions it reaches; the survivors' distances move with the price; traders close
and reopen positions, which pulls the book back toward its steady state with a half-life.

Notes
-----
Distances are measured in log price: a long at log-distance u is liquidated when the price falls
below exp(-u) of the price it was measured at (simple distance d = 1 - exp(-u)); a short when it
rises above exp(u) (d = exp(u) - 1).

Steady state (``distance_scale`` rho, ``distance_spread`` s): in tier k (share w_k, leverage l_k,
maintenance margin m_k, nominal distance D_k = 1/l_k - m_k) the simple distance is lognormal
with median rho D_k and log standard deviation s. rho > 1 because the equity behind a position
is more than its initial margin (cross-margin balances, unrealised profit, margin added later):
effective leverage sits well below the leverage chosen. The lognormal puts little mass near zero.

Cohorts: the book at the start is cohort 0 (open interest OI, the steady state at the start
price). Every period a fraction lambda = 1 - 2**(-period_days / half_life_days) of every
cohort's surviving positions closes, and new positions of notional lambda * OI open at the
current price in the steady state (a new cohort; for periods shorter than a day the day's
inflow forms one cohort at the day's opening price). Without liquidations open interest stays
at OI; after liquidations it recovers with the half-life.

Liquidation: cohort c anchored at log price A_c has depth D_c,t, the largest adverse move of
the period extremes since it opened (longs: A_c - (X_{t-1} + low_t); shorts: X_{t-1} + high_t -
A_c); its positions with u <= D_c,t are gone. A period liquidates the slice (D_c,t-1, D_c,t].

Execution: a liquidated position loses, per unit notional, the overshoot
o = kappa (sigma_d - c sigma_ref)^+ (the price moves past the liquidation price while the engine
executes: within a margin on an ordinary day, a great deal when liquidity is withdrawn; sigma_d the
daily volatility, sigma_ref its long-run level: calendar-time figures, the same for hourly and
daily periods) plus the
square-root impact of the side's liquidation flow: the
flow of a day is one metaorder, so a unit pays on average (2/3) Y sigma_d sqrt(Q / ADV) for a day's
flow Q (2/3 of the peak impact; for periods shorter than a day, the increment over the day's
earlier liquidations). With margin m_k left at the liquidation price the
fund pays (o + I - m_k)^+ per unit, and a liquidation fee can be taken from what is left:
min(fee, m_k - o - I). The premium base (kind "liquidation") weighs each liquidated unit by
min(1, margin left / fee_cap), ``fee_cap`` the highest fee the venue charges: the chord of the
concave income min(p, margin left) between p = 0 and p = fee_cap, so sum_j p_j B_j with
p_j <= fee_cap never takes more than the margin left. A lower bound of the fee income, exact at 0
and at the cap, that keeps the fund affine in the rates (docs/design.md).

Calendar time: the half-life, the impact (sigma_d, ADV per day) and the cohorts are in days, and
the extremes of hourly periods chain into the day's extreme, so hourly and daily paths of the same
days give the same liquidations; the overshoot is measured inside each period, which makes hourly
losses somewhat lower on slow slides (measured in ``python -m benchmarks.realism``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from scipy.special import ndtr

from ..errors import ScenarioError, SpecificationError
from .book import LeverageTier, Market
from .losses import VenueLosses

__all__ = ["StatefulBook", "DEFAULT_BOOK", "LOSS_MODEL_SCHEMA", "stateful_book", "bridge_extremes", "realized_volatility"]

# The u-grid the tier CDFs are tabulated on: 0..3 in log price (a 95% fall or a 20x rise) in
# steps of 5e-4 (linear interpolation error below 1e-6 of open interest for the defaults).
_GRID_STEP = 5e-4
_GRID_MAX = 3.0
_MAX_AGE_HALF_LIVES = 5
# Tier CDF values below this are set to 0 (at most 1e-13 of open interest per tier is moved to
# the first grid point above the floor), so depths short of every tier's mass cost no work.
_MASS_FLOOR = 1e-7
#: Version of the loss_model.json layout (:meth:`StatefulBook.to_dict`).
LOSS_MODEL_SCHEMA = 1


@dataclass(frozen=True)
class StatefulBook:
    """The stateful-book loss model and its parameters (defaults: fitted to public data, sources below).

    Parameters
    ----------
    distance_scale : float > 0, default 3.8
        rho, the median distance to liquidation of a tier's positions in the book at the start,
        over the tier's nominal distance D_k = 1/l_k - m_k.
    distance_spread : float > 0, default 0.30
        s, the log standard deviation of the distance within a tier.
    fresh_scale : float > 0, default 4.0
        The same ratio for positions opened during the horizon (closer to liquidation than the
        aged book, whose closest positions have been liquidated already).
    overshoot : float >= 0, default 0.30
        kappa: a liquidated position's execution price falls short of its liquidation price by
        kappa sigma_d, sigma_d the daily volatility (the larger of the forecast and the range
        estimate of the period's day bar when ``range_volatility``): stated in calendar time, so
        hourly and daily periods of the same days agree. Only the volatility beyond
        ``overshoot_threshold`` times the long-run level counts: kappa (sigma_d - c sigma_ref)^+.
    overshoot_threshold : float >= 0, default 1.0
        c: on a day no more turbulent than usual the engine executes within seconds of a liquid
        book (the price moves sigma_d sqrt(10 s / 1 day) ~ 0.03% at sigma_d = 3%), so execution
        slips nothing a margin does not cover; the overshoot grows with the volatility beyond
        c sigma_ref, sigma_ref the long-run daily volatility (the market's or the paths'; when it
        is unknown the overshoot is kappa sigma_d).
    half_life_days : float > 0, default 2.1
        How fast the book returns to its steady state (open interest and distances), in days.
    fee_cap : float in [0, 1), default 0.0125
        The highest liquidation fee per unit notional (Binance USDⓈ-M's liquidation clearance fee
        is at most 1.25%; its "Liquidation Protocols" page): the premium base weighs each
        liquidated unit by min(1, margin left / fee_cap) (the chord of the concave fee income).
    range_volatility : bool, default True
        sigma_d (of the overshoot and the impact) is the larger of the forecast and the realized
        range-based volatility of the period's day (:func:`realized_volatility`, Garman-Klass 1980):
        a crash period's execution meets the crash's volatility.
    volume_response : bool, default True
        Liquidations are absorbed by the period's volume ADV (sigma / sigma_long_run)^eta
        (``Market.volume_elasticity``), not by a calm day's.
    source : str
        Where the numbers come from (kept in the scenario metadata and loss_model.json).

    Notes
    -----
    The defaults are one fit (``benchmarks/realism.py`` prints the figures; docs/design.md the
    procedure): a random search of 50 parameter sets over (rho, fresh, s, kappa, half-life), then
    a grid over kappa (with Garman-Klass realized volatility), scored on (a) the BTC rows of shared/data's ``public_liquidation_events.csv``
    replayed as ``fundguard loss-check`` does (30 days from the steady state, each row's open
    interest, ADV = 3 x open interest) on Bitstamp BTCUSD hourly and Binance BTCUSDT daily OHLC
    (liquidated notional within 1/2..2, fund loss within 1/3..3 of reported), (b) 2025's Binance BTC
    and ETH daily OHLC: median liquidated share on 4-6% days under 4%, mean daily share under 0.9%
    (public aggregates put it at a fraction of a percent), calm ordinary days losing under 0.2% per
    liquidated dollar, (c) the 30-day 99% fund of a Binance-like BTC/ETH/BNB book in today's state
    (models fitted up to 2025-12-31) at least 0.7% of open interest (real funds hold 1-5%).
    No parameter set meets every band. On hourly bars BitMEX's 10 May 2020 liquidations (42% of its
    post-event open interest on a -16% day; a 100x retail venue) and BitMEX's 12 March 2020 fund
    loss (7.8m, net of its own liquidation income: the fund gained 992 BTC over 12-13 March) stay
    outside, and on daily bars Binance's 10 May 2020 fund loss too (4.2% of its post-event open
    interest, lost inside one hourly candle that daily bars cannot see);
    benchmarks/results/realism.md shows every row. The half-life is short (it also stands for
    traders' turnover): ``fundguard loss-fit`` estimates it from a venue's open-interest history.
    """

    distance_scale: float = 3.8
    distance_spread: float = 0.30
    fresh_scale: float = 4.0
    overshoot: float = 0.30
    overshoot_threshold: float = 1.0
    half_life_days: float = 2.1
    fee_cap: float = 0.0125
    range_volatility: bool = True
    volume_response: bool = True
    source: str = "fundguard defaults (docs/design.md, 'The venue loss model')"
    _tables: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, low, high in (("distance_scale", 0.0, math.inf), ("distance_spread", 0.0, 5.0), ("fresh_scale", 0.0, math.inf),
                                ("half_life_days", 0.0, math.inf)):
            value = _number(self, name)
            if not (low < value < high or (high == math.inf and value > low and math.isfinite(value))):
                raise SpecificationError(f"StatefulBook.{name} must be in ({low:g}, {high:g}), got {value!r}")
        if not 0.0 <= _number(self, "overshoot") <= 100.0:
            raise SpecificationError(f"StatefulBook.overshoot must be in [0, 100], got {self.overshoot!r}")
        if not 0.0 <= _number(self, "fee_cap") < 1.0:
            raise SpecificationError(f"StatefulBook.fee_cap must be in [0, 1), got {self.fee_cap!r}")
        if not 0.0 <= _number(self, "overshoot_threshold") <= 100.0:
            raise SpecificationError(f"StatefulBook.overshoot_threshold must be in [0, 100], got {self.overshoot_threshold!r}")
        if not isinstance(self.source, str):
            raise SpecificationError(f"StatefulBook.source must be a string, got {self.source!r}")

    @property
    def __name__(self) -> str:  # the name build_scenarios records in the metadata
        return "stateful_book"

    def parameters(self) -> dict[str, Any]:
        """The parameters as a JSON-serialisable dict (what loss_model.json holds)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}  # not asdict: the cache

    def to_dict(self, **provenance: Any) -> dict[str, Any]:
        """What ``loss_model.json`` holds: the model's name, its parameters, and any provenance given."""
        return {"schema": LOSS_MODEL_SCHEMA, "loss_model": "stateful_book", "parameters": self.parameters(),
                **provenance}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "loss model") -> StatefulBook:
        """The model a :meth:`to_dict` (or ``loss_model.json``) describes; unknown parameters are an error."""
        if not isinstance(data, Mapping) or data.get("loss_model") != "stateful_book":
            raise SpecificationError(f"{where}: expected a 'stateful_book' loss model, got "
                                     f"{data.get('loss_model') if isinstance(data, Mapping) else type(data).__name__!r}")
        if data.get("schema", LOSS_MODEL_SCHEMA) != LOSS_MODEL_SCHEMA:
            raise SpecificationError(f"{where}: schema {data.get('schema')!r} is not {LOSS_MODEL_SCHEMA}")
        params = data.get("parameters")
        if not isinstance(params, Mapping):
            raise SpecificationError(f"{where}: 'parameters' must be a table of the model's parameters")
        known = {f.name for f in fields(cls) if f.init}
        unknown = sorted(set(params) - known)
        if unknown:
            raise SpecificationError(f"{where}: unknown parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(params))

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> StatefulBook:
        """Read ``loss_model.json`` (as written by ``fundguard loss-fit``)."""
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            raise SpecificationError(f"loss model file {os.fspath(path)!r} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SpecificationError(f"loss model file {os.fspath(path)!r} is not readable JSON: {exc}") from None
        return cls.from_dict(data, where=f"loss model file {os.fspath(path)!r}")

    # -- the loss model ------------------------------------------------------------------------
    def __call__(
        self,
        market: Market,
        returns: np.ndarray,
        volatility: np.ndarray,
        *,
        period_days: float = 1.0,
        long_run_volatility: float | None = None,
        low: np.ndarray | None = None,
        high: np.ndarray | None = None,
    ) -> VenueLosses:
        """One market's losses over (n, T) paths (:meth:`run` without the open interest)."""
        out = self.run(market, returns, volatility, period_days=period_days,
                       long_run_volatility=long_run_volatility, low=low, high=high)
        return VenueLosses(out["loss"], out["premium_base"], out["liquidated"], out["winners"])

    def run(
        self,
        market: Market,
        returns: np.ndarray,
        volatility: np.ndarray,
        *,
        period_days: float = 1.0,
        long_run_volatility: float | None = None,
        low: np.ndarray | None = None,
        high: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """One market's book over (n, T) paths: see the module notes.

        Parameters
        ----------
        market : Market
        returns, volatility : (n, T) float64 arrays
            Log returns per period and their conditional standard deviation (same units).
        period_days : float, default 1.0
        long_run_volatility : float, optional
            Only for ``premium_kind="volume"``.
        low, high : (n, T) float64 arrays, optional
            Log of the period's lowest / highest price over its opening price. Default: the
            median extremes of a Brownian bridge from 0 to the return (:func:`bridge_extremes`),
            which are too thin in the tails: give the excursions when you have them.

        Returns
        -------
        dict of (n, T) float64 arrays, currency units
            ``loss``, ``premium_base``, ``liquidated`` (both sides), ``winners``, and
            ``open_interest_long`` / ``open_interest_short`` at each period's open.
        """
        returns = np.atleast_2d(np.asarray(returns, dtype=np.float64))
        volatility = np.broadcast_to(np.asarray(volatility, dtype=np.float64), returns.shape)
        if not (math.isfinite(period_days) and period_days > 0):
            raise ScenarioError(f"period_days must be > 0, got {period_days!r}")
        if low is None or high is None:
            bridge_low, bridge_high = bridge_extremes(returns, volatility)
            low = bridge_low if low is None else low
            high = bridge_high if high is None else high
        low = np.minimum(np.asarray(low, dtype=np.float64), np.minimum(returns, 0.0))
        high = np.maximum(np.asarray(high, dtype=np.float64), np.maximum(returns, 0.0))
        # sigma_d is a figure of the period's day, whatever the clock: for periods shorter than a
        # day, the day's forecast variance (the mean of its periods', scaled to a day) and its
        # day bar's range, so an hourly day and its daily bar meet the same volatility
        daily_vol = _day_forecast(np.asarray(volatility, dtype=np.float64), period_days)
        if self.range_volatility:
            daily_vol = np.maximum(daily_vol, realized_volatility(low, high, period_days, returns))
        level = np.cumsum(returns, axis=1)
        start = level - returns  # log price at each period's open
        reference = market.long_run_volatility if market.long_run_volatility is not None else long_run_volatility
        if reference is not None and not (math.isfinite(reference) and reference > 0.0):
            reference = None  # a flat history has no volatility to scale by
        # the period's volume rises with volatility (Market.volume_elasticity): liquidations are
        # absorbed by V_t = ADV (sigma_t / sigma_long_run)^eta, so impact uses sqrt(Q / V_t)
        if reference is not None and self.volume_response:
            volume_scale = (daily_vol * math.sqrt(period_days) / reference) ** market.volume_elasticity
            impact_vol = daily_vol / np.sqrt(np.maximum(volume_scale, 1e-12))
        else:
            impact_vol = daily_vol
        # the overshoot per unit: kappa (sigma_d - c sigma_ref)^+, sigma_ref the long-run daily
        # volatility (kappa sigma_d when unknown): nothing beyond the margin on an ordinary day
        if reference is not None:
            calm = self.overshoot_threshold * reference / math.sqrt(period_days)
            overshoot = self.overshoot * np.maximum(daily_vol - calm, 0.0)
        else:
            overshoot = self.overshoot * daily_vol
        vols = (overshoot, impact_vol)
        long = _side(self, market, market.tiers, -(start + low), start, vols, period_days, sign=-1.0)
        short_tiers = market.tiers if market.short_tiers is None else market.short_tiers
        short = _side(self, market, short_tiers, start + high, start, vols, period_days, sign=1.0)
        loss = long[0] + short[0]
        fee_base = long[1] + short[1]
        liquidated = long[2] + short[2]
        simple = np.expm1(returns)
        # winners: the shorts gain on a fall, the longs on a rise, on the open interest at the open
        winners = np.where(simple < 0.0, short[3] * -simple, long[3] * simple)
        if market.premium_kind == "volume":
            reference = market.long_run_volatility if market.long_run_volatility is not None else long_run_volatility
            if reference is None:
                raise ScenarioError(f"market {market.name!r}: premium_kind='volume' needs a long_run_volatility")
            fee_base = market.daily_volume * period_days * (volatility / reference) ** market.volume_elasticity
        return {"loss": loss, "premium_base": fee_base, "liquidated": liquidated, "winners": winners,
                "open_interest_long": long[3], "open_interest_short": short[3]}

    # -- tabulated tier laws -------------------------------------------------------------------
    def tables(self, tiers: Sequence[LeverageTier], sign: float) -> np.ndarray:
        """G: the CDF of log-distance u on the u-grid, (2K, grid): rows
        0..K-1 the book's tiers at the start (``distance_scale``), rows K..2K-1 new positions'
        (``fresh_scale``)."""
        key = (tuple(tiers), sign)
        cached = self._tables.get(key)
        if cached is not None:
            return cached
        u = np.arange(0.0, _GRID_MAX + _GRID_STEP / 2, _GRID_STEP)
        simple = -np.expm1(-u) if sign < 0 else np.expm1(u)
        with np.errstate(divide="ignore"):
            log_d = np.log(simple)
        G = np.empty((2 * len(tiers), u.size))
        for k, tier in enumerate(tiers):
            G[k] = ndtr((log_d - math.log(self.distance_scale * tier.distance)) / self.distance_spread)
            G[len(tiers) + k] = ndtr((log_d - math.log(self.fresh_scale * tier.distance)) / self.distance_spread)
        G[G < _MASS_FLOOR] = 0.0  # exactly nothing below each tier's floor (see floors())
        G[:, 0] = 0.0
        G[:, -1] = 1.0  # the mass beyond the grid sits at its end (liquidated only by a 95% fall)
        self._tables[key] = G
        return G

    def floors(self, tiers: Sequence[LeverageTier], sign: float) -> np.ndarray:
        """Per tier, the largest u-grid point below which both its laws hold no mass, (K,)."""
        G = self.tables(tiers, sign)
        k = len(tiers)
        first = np.minimum(np.argmax(G[:k] > 0.0, axis=1), np.argmax(G[k:] > 0.0, axis=1))
        return np.maximum(first - 1, 0) * _GRID_STEP


def realized_volatility(low: np.ndarray, high: np.ndarray, period_days: float,
                        returns: np.ndarray | None = None) -> np.ndarray:
    """Range-based realized volatility of each period's day, per day, (n, T).

    Garman & Klass's (1980) variance 0.5 (high - low)^2 - (2 ln 2 - 1) r^2 of the period's *day
    bar* (r its open-to-close log return; Parkinson's (high - low)^2 / (4 ln 2) without returns).
    For daily periods the bar is the period itself; for shorter ones (blocks of 1 / period_days
    periods from the first) the day's bar is chained from its periods: open the day's first
    open, close its last close, low and high the lowest low and highest high on the way. The
    estimate is therefore the same for a day whatever the data's resolution: a daily bar and its
    24 hourly bars give one sigma_d (summing 24 hourly estimates instead is far less noisy than one
    bar's, so the hinge in the overshoot would read the same days differently, and hourly funds
    came out 0.73x daily ones on the same paths). A partial last day is its own bar, scaled to a
    whole day. Garman-Klass takes the drift out of the range, so a steady slide does not read as
    turbulence. Without ``returns`` the periods cannot be chained: Parkinson's variance of each
    period, summed over its day.
    """
    per_day = max(1, int(round(1.0 / period_days))) if period_days < 1.0 else 1
    n, horizon = np.shape(low)
    blocks = -(-horizon // per_day)
    count = np.full(blocks, float(per_day))
    count[-1] = horizon - (blocks - 1) * per_day
    gk = 2.0 * math.log(2.0) - 1.0
    if per_day == 1:
        span = high - low
        if returns is None:
            variance = span * span * (1.0 / (4.0 * math.log(2.0)))
        else:
            variance = np.maximum(0.5 * span * span - gk * returns * returns, 0.0)
        return np.sqrt(variance / period_days)
    if returns is None:  # no closes to chain the periods with: Parkinson per period, summed per day
        padded = np.zeros((n, blocks * per_day))
        padded[:, :horizon] = (high - low) ** 2 * (1.0 / (4.0 * math.log(2.0)))
        variance = padded.reshape(n, blocks, per_day).sum(axis=2)
    else:
        r = np.zeros((n, blocks * per_day))
        r[:, :horizon] = returns
        r = r.reshape(n, blocks, per_day)
        level = np.cumsum(r, axis=2) - r  # each period's open, from its day's open
        lo = np.zeros((n, blocks * per_day))
        hi = np.zeros((n, blocks * per_day))
        lo[:, :horizon] = low
        hi[:, :horizon] = high
        close = r.sum(axis=2)
        day_low = np.minimum((level + lo.reshape(r.shape)).min(axis=2), np.minimum(close, 0.0))
        day_high = np.maximum((level + hi.reshape(r.shape)).max(axis=2), np.maximum(close, 0.0))
        span = day_high - day_low
        variance = np.maximum(0.5 * span * span - gk * close * close, 0.0)
    variance *= per_day / count  # a partial day scaled up to a whole one
    return np.sqrt(np.repeat(variance, per_day, axis=1)[:, :horizon] / (per_day * period_days))


def _day_forecast(volatility: np.ndarray, period_days: float) -> np.ndarray:
    """The forecast daily volatility of each period's day, (n, T): sigma / sqrt(period_days) for
    daily or longer periods; for shorter ones sqrt(mean variance of the day's periods / period_days),
    the day being the block of 1 / period_days periods from the first (a partial last day its own)."""
    per_day = max(1, int(round(1.0 / period_days))) if period_days < 1.0 else 1
    if per_day == 1:
        return volatility / math.sqrt(period_days)
    n, horizon = volatility.shape
    blocks = -(-horizon // per_day)
    padded = np.zeros((n, blocks * per_day))
    padded[:, :horizon] = volatility * volatility
    count = np.full(blocks, float(per_day))
    count[-1] = horizon - (blocks - 1) * per_day
    mean = padded.reshape(n, blocks, per_day).sum(axis=2) / count
    return np.sqrt(np.repeat(mean, per_day, axis=1)[:, :horizon] / period_days)


def stateful_book(market: Market, returns: np.ndarray, volatility: np.ndarray, *, period_days: float = 1.0,
                  long_run_volatility: float | None = None, low: np.ndarray | None = None,
                  high: np.ndarray | None = None) -> VenueLosses:
    """The default loss model: :class:`StatefulBook` with its default parameters (module notes)."""
    return DEFAULT_BOOK(market, returns, volatility, period_days=period_days, long_run_volatility=long_run_volatility,
                    low=low, high=high)




def bridge_extremes(returns: np.ndarray, volatility: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median low and high of a Brownian bridge from 0 to ``returns`` with standard deviation ``volatility``.

    P(min < m | r) = exp(-2 m (m - r) / sigma^2) for m <= min(0, r), so the median low solves
    m^2 - r m - sigma^2 ln 2 / 2 = 0: m = (r - sqrt(r^2 + 2 sigma^2 ln 2)) / 2; the high by symmetry.
    A fallback only: real extremes have far heavier tails beyond about 10%.
    """
    root = np.sqrt(returns * returns + (2.0 * math.log(2.0)) * volatility * volatility)
    return (returns - root) / 2.0, (returns + root) / 2.0


def _side(model: StatefulBook, market: Market, tiers: Sequence[LeverageTier], adverse: np.ndarray,
          start: np.ndarray, vols: tuple[np.ndarray, np.ndarray], period_days: float, *, sign: float
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One side over (n, T): fund loss, fee-paying notional, liquidated notional, open interest at each open.

    ``adverse[s, t]``: the period extreme's adverse log level against the start price (longs:
    -(X_{t-1} + low_t); shorts: X_{t-1} + high_t); ``start``: X_{t-1}.
    """
    n, horizon = adverse.shape
    G = model.tables(tiers, sign)
    width = G.shape[1]
    G_flat = G.ravel()
    tier_rows = (np.arange(len(tiers)) * width)[:, None]
    fresh_rows = len(tiers) * width
    shares = np.array([t.share for t in tiers])
    margins = np.array([t.maintenance_margin for t in tiers])[:, None]
    oi = market.open_interest
    overshoot, impact_vol = vols
    lam = -math.expm1(-math.log(2.0) * period_days / model.half_life_days)
    # a new cohort every period, or once a day for periods shorter than a day (module notes)
    per_day = max(1, int(round(1.0 / period_days))) if period_days < 1.0 else 1
    opens = {t for t in range(1, horizon) if per_day == 1 or t == 1 or t % per_day == 0}
    # cohorts older than _MAX_AGE_HALF_LIVES half-lives hold under 2**-5 of what entered: their
    # slot is reused, and their survivors join the new cohort (as if they reopened at the price)
    max_slots = 1 + math.ceil(_MAX_AGE_HALF_LIVES * model.half_life_days / max(period_days, 1.0))
    n_cohorts = min(1 + len(opens), max_slots)
    # per (scenario, cohort): anchor (longs: X at the cohort's open; shorts: -X; -inf until it
    # opens), depth (largest adverse move since it opened), weight (the notional its survivors are
    # a fraction of), survivors, and G_k(depth) per tier (flattened)
    anchor = np.full((n, n_cohorts), -np.inf)
    anchor[:, 0] = 0.0
    depth = np.zeros((n, n_cohorts))
    weight = np.zeros((n, n_cohorts))
    weight[:, 0] = oi
    g_state = np.zeros((len(tiers), n * n_cohorts))
    survivors = np.ones((n, n_cohorts))
    floors = model.floors(tiers, sign)
    floor_min = float(floors.min())
    loss = np.zeros((n, horizon))
    fee_base = np.zeros((n, horizon))
    liquidated = np.zeros((n, horizon))
    open_interest = np.zeros((n, horizon))
    newest = 0
    reused = False
    for t in range(horizon):
        if t > 0:
            weight *= 1.0 - lam  # turnover: a fraction lam of every position closes...
            if t in opens:
                newest = (newest + 1) % n_cohorts
                if anchor[0, newest] != -np.inf:  # a reused slot: its survivors carry over
                    reused = True
                    carried = weight[:, newest] * survivors[:, newest]
                    depth[:, newest] = 0.0
                    g_state.reshape(len(tiers), n, n_cohorts)[:, :, newest] = 0.0
                    survivors[:, newest] = 1.0
                    weight[:, newest] = carried
                anchor[:, newest] = start[:, t] if sign < 0 else -start[:, t]
            # ...and reopens at the current price: the newest cohort takes lam * OI of survivors
            weight[:, newest] += lam * oi / survivors[:, newest]
        open_interest[:, t] = np.einsum("ns,ns->n", survivors, weight)
        new_depth = np.maximum(depth, adverse[:, t, None] + anchor)
        # only depths that reach some tier's mass do work (the tables are exactly 0 below each
        # tier's floor); the rest just remember how deep they went
        flat = np.flatnonzero((new_depth > depth) & (new_depth > floor_min))
        depth = new_depth
        if flat.size == 0:
            continue
        hi = depth.ravel()[flat]
        rows = flat // n_cohorts
        w = weight.ravel()[flat]
        # the book's own law for cohort 0 until its slot is reused, new positions' law otherwise
        row_of = tier_rows[:, 0][:, None] + fresh_rows * ((flat % n_cohorts != 0) | reused)[None, :]
        # pass 1, every tier at once: notional liquidated (the slice of each tier's law between
        # the cached G_k(old depth) and G_k(new depth))
        x = np.minimum(hi, _GRID_MAX) * (1.0 / _GRID_STEP)
        i = np.minimum(x.astype(np.intp), width - 2)
        x -= i
        where = row_of + i[None, :]
        low_value = G_flat.take(where)
        g_hi = low_value + (G_flat.take(where + 1) - low_value) * x[None, :]
        g_lo = g_state[:, flat]
        slices = (g_hi - g_lo) * shares[:, None]  # (K, m) shares of each cohort's notional
        notional = slices.sum(axis=0)
        q = np.bincount(rows, weights=notional * w, minlength=n)
        g_state[:, flat] = g_hi
        survivors.ravel()[flat] -= notional
        imp = _impact(q, liquidated, t, per_day, market, impact_vol[:, t])[rows]
        lag = overshoot[rows, t]  # per unit, past the liquidation price
        # pass 2: every unit overshoots kappa sigma_d past its liquidation price, so a tier's
        # shortfall is the same for its whole slice: bankrupt when kappa sigma_d + I > m_k (the fund
        # pays the excess); otherwise its margin left m_k - kappa sigma_d - I pays the fee
        shortfall = (lag + imp)[None, :] - margins  # (K, m)
        per_tier = slices * w[None, :]
        loss[:, t] = np.bincount(rows, weights=(np.maximum(shortfall, 0.0) * per_tier).sum(axis=0), minlength=n)
        # premium base: the chord of the concave fee income min(p, margin left) between p = 0 and
        # p = fee_cap, so p * base <= the fee actually taken for every rate up to the cap
        if model.fee_cap > 0.0:
            weight_paid = np.clip(-shortfall * (1.0 / model.fee_cap), 0.0, 1.0)
        else:
            weight_paid = (shortfall <= 0.0).astype(np.float64)
        paying = (weight_paid * per_tier).sum(axis=0)
        fee_base[:, t] = np.bincount(rows, weights=np.maximum(paying, 0.0), minlength=n)
        liquidated[:, t] = q
    return loss, fee_base, liquidated, open_interest


def _impact(q: np.ndarray, liquidated: np.ndarray, t: int, per_day: int, market: Market,
            daily_vol: np.ndarray) -> np.ndarray:
    """Per unit liquidated in period t, the average square-root impact of the side's flow.

    The flow of a day is one metaorder: this period's units pay on average
    (2/3) Y sigma_d [(P + q)^1.5 - P^1.5] / (q sqrt(ADV)), P the notional liquidated in the day's
    earlier periods (0 for daily periods), so the day's cost is the same whatever the period
    length (the average cost of a square-root metaorder is 2/3 of its peak). The day is the
    calendar block of 1 / period_days periods from the first (as in :func:`realized_volatility`),
    not a trailing window: a trailing window would join a crash that spans midnight into one
    metaorder that daily bars split in two, and hourly funds came out 1.1-1.25x daily ones.
    """
    before = liquidated[:, t - t % per_day: t].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        average = ((before + q) ** 1.5 - before**1.5) / q
    average = np.where(q > 0, average, np.sqrt(before))
    return (2.0 / 3.0) * market.impact * daily_vol * average / math.sqrt(market.daily_volume)


def _number(model: StatefulBook, name: str) -> float:
    value = getattr(model, name)
    if isinstance(value, bool):
        raise SpecificationError(f"StatefulBook.{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SpecificationError(f"StatefulBook.{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise SpecificationError(f"StatefulBook.{name} must be finite, got {value!r}")
    object.__setattr__(model, name, number)
    return number


#: The stateful book with its shipped default parameters (what ``loss_model("stateful_book")`` is).
DEFAULT_BOOK = StatefulBook()
