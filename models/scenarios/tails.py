"""Generalized Pareto tails of standardized residuals (the "evt" innovations, McNeil & Frey 2000)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from ..errors import HeavyTailWarning, InsufficientHistoryError, SpecificationError

__all__ = ["GPDTail", "TailFit", "fit_tails", "fit_tails_quietly", "warn_if_heavy", "gpd_excess"]


@dataclass(frozen=True)
class GPDTail:
    """A generalized Pareto tail of standardized residuals beyond a threshold (one side).

    Attributes
    ----------
    side : {"lower", "upper"}
    threshold : float
        u, the (k+1)-th most extreme residual of that side, unitless.
    shape : float
        xi, the tail index: > 0 heavy (power-law, moments of order >= 1/xi infinite), 0
        exponential, < 0 bounded.
    scale : float
        beta > 0, unitless.
    n_exceedances : int
        k, residuals beyond the threshold the tail was fitted to.
    probability : float
        k / n, the probability of landing beyond the threshold.

    Notes
    -----
    For an excess y >= 0 beyond the threshold (downwards for the lower tail),
    P(excess > y | beyond) = (1 + xi y / beta)^(-1/xi) (exp(-y / beta) when xi = 0).
    """

    side: str
    threshold: float
    shape: float
    scale: float
    n_exceedances: int
    probability: float

    def tail_probability(self, level: float | np.ndarray) -> float | np.ndarray:
        """P(z beyond ``level``): below it for the lower tail, above it for the upper tail.

        Valid for levels at or beyond the threshold (unitless residual values).
        """
        excess = (self.threshold - np.asarray(level, dtype=np.float64)) if self.side == "lower" else (
            np.asarray(level, dtype=np.float64) - self.threshold)
        excess = np.maximum(excess, 0.0)
        if self.shape == 0.0:
            survival = np.exp(-excess / self.scale)
        else:
            base = np.maximum(1.0 + self.shape * excess / self.scale, 0.0)
            with np.errstate(divide="ignore"):
                survival = np.where(base > 0, base ** (-1.0 / self.shape), 0.0)
        result = self.probability * survival
        return float(result) if np.ndim(result) == 0 else result


@dataclass(frozen=True)
class TailFit:
    """Both generalized Pareto tails of one market's standardized residuals (McNeil & Frey 2000).

    Attributes
    ----------
    lower, upper : GPDTail
    n : int
        Residuals the tails were fitted on.
    market : str or None
    """

    lower: GPDTail
    upper: GPDTail
    n: int
    market: str | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable summary."""
        side = lambda g: {"threshold": g.threshold, "shape": g.shape, "scale": g.scale,  # noqa: E731
                          "n_exceedances": g.n_exceedances, "probability": g.probability}
        return {"lower": side(self.lower), "upper": side(self.upper), "n": self.n}


def fit_tails(std_resid: np.ndarray, *, tail_fraction: float = 0.1, market: str | None = None) -> TailFit:
    """Fit generalized Pareto tails to both sides of standardized residuals.

    Parameters
    ----------
    std_resid : (n,) float64 array, unitless
    tail_fraction : float in (0, 0.5), default 0.1
        Share of residuals in each tail: k = floor(tail_fraction * n) exceedances per side above
        the (k+1)-th most extreme residual. McNeil & Frey (2000) use k = 100 of n = 1000 and
        find their estimates insensitive for k in roughly 50..150; it leaves about 300
        exceedances per side on eight years of daily crypto data.
    market : str, optional
        Name used in messages.

    Returns
    -------
    TailFit

    Raises
    ------
    InsufficientHistoryError
        Fewer than 20 exceedances in a tail.

    Warns
    -----
    HeavyTailWarning
        A tail index >= 0.5: the innovations have infinite variance in that tail, and simulated
        variances are dominated by rare extreme draws.

    Notes
    -----
    Maximum likelihood (scipy's ``genpareto.fit`` with location 0) on the excesses
    u - z_(i), i = 1..k, for the lower tail and z_(n+1-i) - u for the upper tail.
    """
    tails = fit_tails_quietly(std_resid, tail_fraction, market)
    warn_if_heavy(tails, stacklevel=3)
    return tails


def fit_tails_quietly(std_resid: np.ndarray, tail_fraction: float, market: str | None) -> TailFit:
    """:func:`fit_tails` without the HeavyTailWarning (the caller warns, with its own stack level)."""
    z = np.sort(np.asarray(std_resid, dtype=np.float64))
    n = z.size
    if not 0.0 < tail_fraction < 0.5:
        raise SpecificationError(f"tail_fraction must be in (0, 0.5), got {tail_fraction!r}")
    k = int(math.floor(tail_fraction * n))
    name = repr(market) if market is not None else "residuals"
    if k < 20:
        raise InsufficientHistoryError(
            f"market {name}: tail_fraction={tail_fraction} of {n} residuals leaves {k} exceedances per tail; "
            "an EVT tail fit needs at least 20"
        )
    tails = []
    for side, threshold, excess in (("lower", z[k], z[k] - z[:k]), ("upper", z[n - 1 - k], z[n - k:] - z[n - 1 - k])):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            shape, _, scale = stats.genpareto.fit(excess, floc=0.0)
        if not (math.isfinite(shape) and math.isfinite(scale) and scale > 0):
            raise SpecificationError(f"market {name}: generalized Pareto fit of the {side} tail failed "
                                     f"(shape {shape}, scale {scale})")
        tails.append(GPDTail(side, float(threshold), float(shape), float(scale), k, k / n))
    return TailFit(lower=tails[0], upper=tails[1], n=n, market=market)


def warn_if_heavy(tails: TailFit, stacklevel: int) -> None:
    """HeavyTailWarning for each tail of ``tails`` with index >= 0.5, attributed ``stacklevel`` frames up."""
    name = repr(tails.market) if tails.market is not None else "residuals"
    for tail in (tails.lower, tails.upper):
        if tail.shape >= 0.5:
            warnings.warn(
                f"market {name}: {tail.side}-tail index {tail.shape:.3f} >= 0.5; the innovations have infinite "
                "variance in that tail, so extreme draws dominate simulated variances",
                HeavyTailWarning,
                stacklevel=stacklevel,
            )


def gpd_excess(p: np.ndarray, shape: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Excess beyond the threshold exceeded with probability ``p`` given the tail (arrays broadcast, unitless)."""
    # Inverse survival function of the GPD: beta ((p^-xi) - 1) / xi, -beta ln p at xi = 0.
    log_p = np.log(p)
    small = np.abs(shape) < 1e-12
    safe = np.where(small, 1.0, shape)
    return scale * np.where(small, -log_p, np.expm1(-safe * log_p) / safe)

