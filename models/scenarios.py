"""Joint return scenarios from fitted volatility models: random paths and stress paths.

``simulate_returns`` turns fitted GARCH-family models (one per market) into N joint return
paths of T periods that start from today's state of every model. ``stress_paths`` builds
deterministic paths: historical windows replayed (as they happened, or rescaled to today's
volatility) and hypothetical instantaneous shocks. Both return :class:`ReturnPaths`, which
``fundguard.models.venue.build_scenarios`` turns into a :class:`ScenarioSet`.

Notes
-----
Each market follows its fitted recursion (arch's conventions, see ``models.volatility``):

* GARCH / GJR:  sigma_{t+1}^2 = omega + (alpha + gamma 1[eps_t < 0]) eps_t^2 + beta sigma_t^2
* EGARCH:       ln sigma_{t+1}^2 = omega + alpha (|z_t| - sqrt(2/pi)) + gamma z_t + beta ln sigma_t^2

with r_t = mu + eps_t, eps_t = sigma_t z_t. Paths start at sigma_1^2 = the model's
``next_variance``, the one-step forecast made from the last observed variance and residual,
so a calm day and a stormy day give different scenarios.

Innovations z_t (unit variance, i.i.d. over time, dependent across markets):

* ``"parametric"``: each market's fitted distribution (normal, t, skewed t, GED), joined by a
  Student-t copula (default; crypto markets crash together, and the t copula has the tail
  dependence a Gaussian copula lacks) or a Gaussian copula, fitted to the standardized residuals
  on common dates (:func:`fit_copula`).
* ``"fhs"``: filtered historical simulation (Barone-Adesi et al. 1999): whole dates of the joint
  standardized-residual matrix are bootstrapped, so every draw is an observed residual vector.
* ``"evt"``: GARCH-EVT (McNeil & Frey 2000): whole dates are drawn as in ``"fhs"``; a residual in
  the body is used as observed, one among the k most extreme of its side is replaced by a draw
  from the generalized Pareto tail fitted to those k exceedances (:func:`fit_tails`), so draws
  can be worse than anything in the history while the dates' ranks keep the dependence.

Random numbers come in fixed blocks of ``SCENARIO_BLOCK`` scenarios, each block with its own
streams spawned from the seed (``SeedSequence`` spawn keys ``(block, stream)``); the memory
chunks the work is done in are whole blocks. So a seed gives the same paths whatever the chunk
size, and the first n paths of a run with N > n scenarios equal a run with n scenarios.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import interpolate, optimize, special, stats

from .data import MIN_RETURNS
from .errors import HeavyTailWarning, InsufficientHistoryError, ScenarioError, SpecificationError
from .volatility import VolModel

__all__ = [
    "INNOVATIONS",
    "SCENARIO_BLOCK",
    "ReturnPaths",
    "Copula",
    "fit_copula",
    "GPDTail",
    "TailFit",
    "fit_tails",
    "simulate_returns",
    "SimulationPlan",
    "plan_simulation",
    "stress_paths",
]

#: Innovation schemes of :func:`simulate_returns`.
INNOVATIONS = ("parametric", "fhs", "evt")

#: Scenarios per random-number block. Fixed: changing it changes every seeded result.
SCENARIO_BLOCK = 1024

# Scenario-period-market elements per chunk of work (whole blocks, at least one). Measured on
# a 2-core machine: the transform and the recursion run 2-5x faster when a chunk's half-dozen
# (n, T, J) float64 buffers stay in cache (2**18 elements: 2 MiB each) than on 100,000
# scenarios at once. Working memory is those buffers; the returned arrays are the result.
_CHUNK_ELEMENTS = 2**18
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_RECURSION_PARAMS = ("mu", "omega", "alpha", "gamma", "beta")
# Innovation transforms are tabulated for scores whose tail probability is above this; the
# rare scores beyond are transformed exactly.
_TABLE_TAIL = 1e-12
_TABLE_TOLERANCE = 1e-8


# --------------------------------------------------------------------------------------------
# Result type
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ReturnPaths:
    """Joint return paths of J markets over T periods, N scenarios.

    Parameters
    ----------
    returns : (N, T, J) array of float64, log returns per period, unitless
        ``returns[s, t, j]``: log return of market j in period t + 1 of scenario s.
    volatility : (N, T, J) array of float64, > 0, same units as ``returns``
        Conditional standard deviation of that return, known at the start of the period.
    markets : sequence of J str
        Market names, in the order of the last axis.
    period : pandas.Timedelta, optional
        Length of one period (``Timedelta("1D")`` for daily models); None when unknown.
    long_run_volatility : (J,) array of float64, optional
        A typical per-period volatility of each market (the median fitted conditional volatility
        over the fit sample), the reference the "volume" premium base is scaled by.
    is_stress : (N,) array of bool, optional
        True for deterministic stress paths (default all False).
    labels : sequence of N str, optional
        What each stress path is ("replay 2020-03-12 scaled", "shock BTC -30%").
    tails : mapping of market -> TailFit
        The fitted generalized Pareto tails (``innovations="evt"`` only).
    copula : Copula, optional
        The copula joining the markets (``innovations="parametric"`` with J >= 2 only).
    metadata : mapping
        JSON-serialisable description: innovations, seed, model specifications, horizon.
    """

    returns: np.ndarray = field(repr=False)
    volatility: np.ndarray = field(repr=False)
    markets: tuple[str, ...]
    period: pd.Timedelta | None = None
    long_run_volatility: np.ndarray | None = field(default=None, repr=False)
    is_stress: np.ndarray | None = field(default=None, repr=False)
    labels: tuple[str, ...] | None = field(default=None, repr=False)
    tails: Mapping[str, TailFit] = field(default_factory=dict, repr=False)
    copula: Copula | None = field(default=None, repr=False)
    metadata: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        returns = np.asarray(self.returns, dtype=np.float64)
        volatility = np.asarray(self.volatility, dtype=np.float64)
        if isinstance(self.markets, str):
            raise ScenarioError(f"markets must be a sequence of names, got the string {self.markets!r}")
        markets = tuple(self.markets)
        if returns.ndim != 3:
            raise ScenarioError(f"returns must be a 3-d (N, T, J) array, got shape {returns.shape}")
        n, t, j = returns.shape
        if n < 1 or t < 1:
            raise ScenarioError(f"returns must have at least one scenario and one period, got shape {returns.shape}")
        if j != len(markets) or len(set(markets)) != len(markets) or not all(isinstance(m, str) and m for m in markets):
            raise ScenarioError(f"markets must be {j} unique non-empty names (one per column), got {list(markets)}")
        if volatility.shape != returns.shape:
            raise ScenarioError(f"volatility must have the shape of returns {returns.shape}, got {volatility.shape}")
        _check_finite("returns", returns)
        _check_finite("volatility", volatility)
        if volatility.min() <= 0.0:
            where = tuple(int(i) for i in np.argwhere(volatility <= 0)[0])
            raise ScenarioError(f"volatility must be > 0; volatility{list(where)} = {float(volatility[where])!r}")
        stress = np.zeros(n, dtype=bool) if self.is_stress is None else np.asarray(self.is_stress)
        if stress.shape != (n,) or stress.dtype != bool:
            raise ScenarioError(f"is_stress must be a boolean array of shape ({n},), got {stress.dtype} {stress.shape}")
        long_run = None
        if self.long_run_volatility is not None:
            long_run = np.asarray(self.long_run_volatility, dtype=np.float64)
            if long_run.shape != (j,) or not np.all(np.isfinite(long_run) & (long_run > 0)):
                raise ScenarioError(f"long_run_volatility must be {j} finite values > 0, got {long_run!r}")
        labels = None
        if self.labels is not None:
            labels = tuple(str(label) for label in self.labels)
            if len(labels) != n:
                raise ScenarioError(f"labels must name all {n} scenarios, got {len(labels)}")
        period = None if self.period is None else pd.Timedelta(self.period)
        if period is not None and period <= pd.Timedelta(0):
            raise ScenarioError(f"period must be a positive duration, got {self.period!r}")
        object.__setattr__(self, "returns", returns)
        object.__setattr__(self, "volatility", volatility)
        object.__setattr__(self, "markets", markets)
        object.__setattr__(self, "period", period)
        object.__setattr__(self, "long_run_volatility", long_run)
        object.__setattr__(self, "is_stress", stress)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "tails", dict(self.tails))
        object.__setattr__(self, "metadata", dict(self.metadata))

    @property
    def n_scenarios(self) -> int:
        """N, the number of paths."""
        return self.returns.shape[0]

    @property
    def horizon(self) -> int:
        """T, the number of periods."""
        return self.returns.shape[1]

    @property
    def n_markets(self) -> int:
        """J, the number of markets."""
        return self.returns.shape[2]

    def __repr__(self) -> str:
        return (
            f"ReturnPaths(n_scenarios={self.n_scenarios}, horizon={self.horizon}, markets={list(self.markets)}, "
            f"period={self.period}, n_stress={int(self.is_stress.sum())})"
        )


def _check_finite(name: str, array: np.ndarray) -> None:
    # min and max propagate NaN, so two fast reductions check every element.
    if np.isfinite(array.min()) and np.isfinite(array.max()):
        return
    where = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
    raise ScenarioError(
        f"{name} must be finite; {name}{list(where)} = {float(array[where])!r} (an explosive volatility model or a "
        "tail index >= 1 can overflow: check the fit or shorten the horizon)"
    )


# --------------------------------------------------------------------------------------------
# Copula
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Copula:
    """A Gaussian or Student-t copula joining the innovations of J markets.

    Attributes
    ----------
    family : {"t", "gaussian"}
    correlation : (J, J) float64 array
        Positive-definite correlation matrix R of the copula.
    nu : float
        Degrees of freedom of the t copula (``inf`` for the Gaussian copula).
    markets : tuple of J str
    kendall_tau : (J, J) float64 array, optional
        Kendall's tau of the residuals it was fitted to; the copula reproduces it:
        tau = (2 / pi) arcsin(R) holds for both families.

    Notes
    -----
    Scores x ~ N(0, R) (Gaussian) or x = y / sqrt(W / nu), y ~ N(0, R), W ~ chi2(nu) (t) are
    turned into innovations by each market's quantile function, z_j = F_j^{-1}(C(x_j)), with C
    the standard normal or t(nu) distribution function.
    """

    family: str
    correlation: np.ndarray
    nu: float
    markets: tuple[str, ...]
    kendall_tau: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.family not in ("t", "gaussian"):
            raise SpecificationError(f"Copula.family must be 't' or 'gaussian', got {self.family!r}")
        corr = np.asarray(self.correlation, dtype=np.float64)
        j = len(self.markets)
        if corr.shape != (j, j) or not np.allclose(corr, corr.T) or not np.allclose(np.diag(corr), 1.0):
            raise SpecificationError(f"Copula.correlation must be a symmetric ({j}, {j}) matrix with unit diagonal")
        try:
            np.linalg.cholesky(corr)
        except np.linalg.LinAlgError:
            raise SpecificationError("Copula.correlation must be positive definite") from None
        nu = float(self.nu)
        if self.family == "t" and not (0.5 < nu < math.inf):
            raise SpecificationError(f"Copula.nu of a t copula must be finite and > 0.5, got {self.nu!r}")
        object.__setattr__(self, "correlation", corr)
        object.__setattr__(self, "nu", nu if self.family == "t" else math.inf)
        object.__setattr__(self, "markets", tuple(self.markets))

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable summary."""
        return {"family": self.family, "nu": None if math.isinf(self.nu) else self.nu,
                "correlation": self.correlation.tolist(), "markets": list(self.markets)}


def fit_copula(residuals: np.ndarray, family: str = "t", markets: Sequence[str] | None = None) -> Copula:
    """Fit a Gaussian or Student-t copula to standardized residuals of J markets.

    Parameters
    ----------
    residuals : (n, J) float64 array, unitless
        Standardized residuals on common dates, one column per market.
    family : {"t", "gaussian"}
    markets : sequence of J str, optional

    Returns
    -------
    Copula

    Notes
    -----
    The correlation comes from Kendall's tau, R_ij = sin(pi tau_ij / 2), valid for every
    elliptical copula and robust to the heavy tails of the residuals (Lindskog, McNeil & Schmock
    2003); a matrix that is not positive definite is repaired by clipping its eigenvalues. For
    the t copula, nu maximises the copula likelihood of the pseudo-observations
    u = rank / (n + 1) with R held fixed (Demarta & McNeil 2005), searched in [1, 200].
    """
    z = np.asarray(residuals, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 1:
        raise SpecificationError(f"residuals must be a 2-d (n, J) array, got shape {z.shape}")
    n, j = z.shape
    names = tuple(markets) if markets is not None else tuple(f"m{i}" for i in range(j))
    if len(names) != j:
        raise SpecificationError(f"markets must name {j} columns, got {list(names)}")
    if family not in ("t", "gaussian"):
        raise SpecificationError(f"copula family must be 't' or 'gaussian', got {family!r}")
    if j < 2:
        raise SpecificationError(f"a copula joins two or more markets, got {j} column(s)")
    if n < 30:
        raise InsufficientHistoryError(f"a copula fit needs at least 30 common dates, got {n}")
    tau = np.eye(j)
    for a in range(j):
        for b in range(a + 1, j):
            tau[a, b] = tau[b, a] = stats.kendalltau(z[:, a], z[:, b]).statistic
    corr = _nearest_correlation(np.sin(0.5 * np.pi * tau))
    if family == "gaussian":
        return Copula("gaussian", corr, math.inf, names, tau)
    u = (stats.rankdata(z, axis=0) / (n + 1)).astype(np.float64)
    inv_corr = np.linalg.inv(corr)
    _, logdet = np.linalg.slogdet(corr)

    def negative_loglik(log_nu: float) -> float:
        nu = math.exp(log_nu)
        x = special.stdtrit(nu, u)
        quad = np.einsum("ij,jk,ik->i", x, inv_corr, x)
        ll = (special.gammaln((nu + j) / 2) + (j - 1) * special.gammaln(nu / 2) - j * special.gammaln((nu + 1) / 2)
              - 0.5 * logdet - 0.5 * (nu + j) * np.log1p(quad / nu) + 0.5 * (nu + 1) * np.log1p(x**2 / nu).sum(axis=1))
        return -float(ll.sum())

    best = optimize.minimize_scalar(negative_loglik, bounds=(0.0, math.log(200.0)), method="bounded",
                                    options={"xatol": 1e-4})
    return Copula("t", corr, float(math.exp(best.x)), names, tau)


def _nearest_correlation(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(0.5 * (matrix + matrix.T))
    if values.min() > 1e-8:
        return matrix
    fixed = vectors @ np.diag(np.maximum(values, 1e-6)) @ vectors.T
    d = np.sqrt(np.diag(fixed))
    fixed = fixed / np.outer(d, d)
    np.fill_diagonal(fixed, 1.0)
    return fixed


# --------------------------------------------------------------------------------------------
# Extreme value tails
# --------------------------------------------------------------------------------------------


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
    tails = _fit_tails(std_resid, tail_fraction, market)
    _warn_if_heavy(tails, stacklevel=3)
    return tails


def _fit_tails(std_resid: np.ndarray, tail_fraction: float, market: str | None) -> TailFit:
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


def _warn_if_heavy(tails: TailFit, stacklevel: int) -> None:
    name = repr(tails.market) if tails.market is not None else "residuals"
    for tail in (tails.lower, tails.upper):
        if tail.shape >= 0.5:
            warnings.warn(
                f"market {name}: {tail.side}-tail index {tail.shape:.3f} >= 0.5; the innovations have infinite "
                "variance in that tail, so extreme draws dominate simulated variances",
                HeavyTailWarning,
                stacklevel=stacklevel,
            )


def _gpd_excess(p: np.ndarray, shape: np.ndarray, scale: np.ndarray) -> np.ndarray:
    # Inverse survival function of the GPD: beta ((p^-xi) - 1) / xi, -beta ln p at xi = 0.
    log_p = np.log(p)
    small = np.abs(shape) < 1e-12
    safe = np.where(small, 1.0, shape)
    return scale * np.where(small, -log_p, np.expm1(-safe * log_p) / safe)


# --------------------------------------------------------------------------------------------
# Innovation distributions: exact quantiles and a tabulated score -> innovation transform
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Marginal:
    """Unit-variance innovation distribution of one market, with tail-accurate quantiles."""

    dist: str
    nu: float = math.nan
    lam: float = 0.0

    @classmethod
    def of(cls, model: VolModel) -> _Marginal:
        return cls(model.spec.dist, float(model.params.get("nu", math.nan)), float(model.params.get("lambda", 0.0)))

    def lower(self, p: np.ndarray) -> np.ndarray:
        """Quantile at probability p (accurate for small p)."""
        if self.dist == "normal":
            return special.ndtri(p)
        if self.dist == "t":
            return math.sqrt((self.nu - 2.0) / self.nu) * special.stdtrit(self.nu, p)
        if self.dist == "ged":
            # P(Z < -y s) = Q(1/nu, y^nu) / 2 (Q the regularized upper incomplete gamma)
            p = np.asarray(p, dtype=np.float64)
            side = np.where(p <= 0.5, -1.0, 1.0)
            y = special.gammainccinv(1.0 / self.nu, 2.0 * np.minimum(p, 1.0 - p)) ** (1.0 / self.nu)
            return side * self._ged_scale() * y
        a, b, c, lam = self._skewt_constants()
        p = np.asarray(p, dtype=np.float64)
        left = p < (1.0 - lam) / 2.0
        t = np.where(left, special.stdtrit(self.nu, np.where(left, p / (1.0 - lam), 0.5)),
                     special.stdtrit(self.nu, np.where(left, 0.5, 0.5 + (p - (1.0 - lam) / 2.0) / (1.0 + lam))))
        return (np.where(left, 1.0 - lam, 1.0 + lam) * c * t - a) / b

    def upper(self, q: np.ndarray) -> np.ndarray:
        """Quantile at probability 1 - q (accurate for small q)."""
        if self.dist == "normal":
            return -special.ndtri(q)
        if self.dist == "t":
            return -math.sqrt((self.nu - 2.0) / self.nu) * special.stdtrit(self.nu, q)
        if self.dist == "ged":
            return -self.lower(q)
        a, b, c, lam = self._skewt_constants()
        q = np.asarray(q, dtype=np.float64)
        right = q <= (1.0 + lam) / 2.0
        upper_z = ((1.0 + lam) * c * -special.stdtrit(self.nu, np.where(right, q / (1.0 + lam), 0.5)) - a) / b
        return np.where(right, upper_z, self.lower(np.where(right, 0.5, 1.0 - q)))

    def _ged_scale(self) -> float:
        return math.sqrt(math.exp(special.gammaln(1.0 / self.nu) - special.gammaln(3.0 / self.nu)))

    def _skewt_constants(self) -> tuple[float, float, float, float]:
        # Hansen (1994) as in arch's SkewStudent: a = 4 lam C (eta-2)/(eta-1), b^2 = 1 + 3 lam^2 - a^2.
        eta, lam = self.nu, self.lam
        log_c = special.gammaln((eta + 1) / 2) - special.gammaln(eta / 2) - 0.5 * math.log(math.pi * (eta - 2))
        a = 4.0 * lam * math.exp(log_c) * (eta - 2) / (eta - 1)
        b = math.sqrt(1.0 + 3.0 * lam**2 - a**2)
        return a, b, math.sqrt(1.0 - 2.0 / eta), lam


@dataclass(frozen=True)
class _Score:
    """Distribution of the copula scores: standard normal (nu = inf) or standard t(nu)."""

    nu: float

    def cdf(self, x: np.ndarray) -> np.ndarray:
        return special.ndtr(x) if math.isinf(self.nu) else special.stdtr(self.nu, x)

    def isf(self, p: float) -> float:
        return float(-special.ndtri(p)) if math.isinf(self.nu) else float(-special.stdtrit(self.nu, p))


def _exact_transform(x: np.ndarray, score: _Score, marginal: _Marginal) -> np.ndarray:
    """z = F^{-1}(C(x)), through the lower tail for x <= 0 and the upper tail for x > 0."""
    x = np.asarray(x, dtype=np.float64)
    negative = x <= 0
    tail = score.cdf(-np.abs(x))
    return np.where(negative, marginal.lower(tail), marginal.upper(tail))


class _ScoreTransform:
    """Score -> innovation map of every market, tabulated for speed.

    The exact map needs an inverse incomplete beta or gamma function per draw (about 0.7 us).
    y = asinh(z) is a smooth function of s = asinh(x), nearly linear in both tails, so it is
    replaced by cubic splines on a uniform grid of s (about 0.03 us per draw), one on each side
    of s = 0, where a GED density with shape <= 2 makes the map non-smooth. The grid is refined
    until the splines are within 1e-8 of the exact y at every interval's midpoint (2049 nodes
    give about 1e-11 for t and skewed t marginals; GED with shape near 1 needs up to 32769).
    Scores beyond the grid (probability 2e-12 each) are transformed exactly.
    """

    def __init__(self, score: _Score, marginals: Sequence[_Marginal], scale: np.ndarray | None) -> None:
        self.score = score
        self.marginals = tuple(marginals)
        # A pure rescaling (t marginal with the score's own nu, or normal marginal with a
        # Gaussian score) needs no table.
        self.scale = scale
        if scale is not None:
            return
        s_max = math.asinh(score.isf(_TABLE_TAIL))
        def exact(s: np.ndarray) -> np.ndarray:
            return np.arcsinh(np.stack([_exact_transform(np.sinh(s), score, m) for m in self.marginals]))

        n_nodes = 2**11 + 1
        while True:
            nodes = np.linspace(-s_max, s_max, n_nodes)
            values = exact(nodes)
            middle = n_nodes // 2  # nodes[middle] == 0
            halves = [interpolate.CubicSpline(nodes[part], values[:, part], axis=1)
                      for part in (slice(0, middle + 1), slice(middle, None))]
            spline = interpolate.PPoly(np.concatenate([h.c for h in halves], axis=1), nodes)
            check = 0.5 * (nodes[1:] + nodes[:-1])
            error = float(np.max(np.abs(spline(check).T - exact(check))))
            if error < _TABLE_TOLERANCE or n_nodes > 2**15:
                break
            n_nodes = 2 * n_nodes - 1
        self.max_error = error
        step = nodes[1] - nodes[0]
        # spline.c[k, i, j]: coefficient of (s - s_i)^(3-k) on interval i of market j; rescaled
        # to powers of the unit position u = (s - s_i) / step and stored as coef[power] of
        # length J * intervals (one gather per power is twice as fast as gathering rows).
        coef = spline.c[::-1] * (step ** np.arange(4))[:, None, None]
        self.coef = np.ascontiguousarray(coef.transpose(0, 2, 1)).reshape(4, -1)
        self.s_min = -s_max
        self.inv_step = 1.0 / step
        self.n_intervals = n_nodes - 1
        self.offset = (np.arange(len(self.marginals)) * self.n_intervals).astype(np.intp)
        self._offset_cache: dict[tuple[int, ...], np.ndarray] = {}

    def _offsets(self, shape: tuple[int, ...]) -> np.ndarray:
        # Each market's first interval in ``coef``, as a contiguous array of ``shape``: adding a
        # broadcast (J,) vector runs short inner loops, measured 8x slower than a flat add.
        offsets = self._offset_cache.get(shape)
        if offsets is None:
            offsets = np.ascontiguousarray(np.broadcast_to(self.offset, shape))
            self._offset_cache[shape] = offsets  # same value from any thread: no lock needed
        return offsets

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Innovations for scores ``x`` of shape (..., J); ``x`` may be overwritten."""
        if self.scale is not None:
            x *= self.scale
            return x
        u = np.arcsinh(x)
        u -= self.s_min
        u *= self.inv_step
        outside = None
        if u.min() < 0.0 or u.max() > self.n_intervals:
            outside = np.nonzero((u < 0.0) | (u > self.n_intervals))
            np.clip(u, 0.0, self.n_intervals, out=u)
        interval = u.astype(np.intp)
        np.minimum(interval, self.n_intervals - 1, out=interval)
        u -= interval
        interval += self._offsets(interval.shape)
        # Horner: c0 + u (c1 + u (c2 + u c3))
        y = self.coef[3].take(interval)
        for power in (2, 1, 0):
            y *= u
            y += self.coef[power].take(interval)
        z = np.sinh(y, out=y)
        if outside is not None:
            columns = outside[-1]
            for j in np.unique(columns):
                sel = tuple(axis[columns == j] for axis in outside)
                z[sel] = _exact_transform(x[sel], self.score, self.marginals[j])
        return z


# --------------------------------------------------------------------------------------------
# Innovation samplers: draws per block of scenarios, transforms per chunk
# --------------------------------------------------------------------------------------------


class _Parametric:
    """Copula scores -> fitted marginal innovations."""

    n_streams = 2

    def __init__(self, marginals: Sequence[_Marginal], copula: Copula | None) -> None:
        j = len(marginals)
        if copula is None:
            # One market: draw from its own distribution directly (t through a t score).
            nu = marginals[0].nu if marginals[0].dist == "t" else math.inf
            self.chol = None
        else:
            nu = copula.nu
            self.chol = np.linalg.cholesky(copula.correlation).T.copy() if j > 1 else None
        self.score = _Score(nu)
        scale = None
        if all(m.dist == "t" and m.nu == nu for m in marginals):
            scale = np.full(j, math.sqrt((nu - 2.0) / nu))
        elif math.isinf(nu) and all(m.dist == "normal" for m in marginals):
            scale = np.ones(j)
        self.transform = _ScoreTransform(self.score, marginals, scale)
        self.n_markets = j

    def innovations(
        self, streams: Sequence[Sequence[np.random.Generator]], sizes: Sequence[int], horizon: int
    ) -> np.ndarray:
        """(sum(sizes), T, J) innovations; block b's draws come from ``streams[b]`` only."""
        m = sum(sizes)
        x = np.empty((m, horizon, self.n_markets))
        t_score = not math.isinf(self.score.nu)
        chi2 = np.empty((m, horizon)) if t_score else None
        row = 0
        for gens, size in zip(streams, sizes):
            gens[0].standard_normal(out=x[row:row + size])
            if t_score:
                gens[1].standard_gamma(self.score.nu / 2.0, out=chi2[row:row + size])
            row += size
        if self.chol is not None:
            x = np.matmul(x, self.chol, out=np.empty_like(x))
        if t_score:
            # x / sqrt(W / nu) with W = 2 Gamma(nu / 2) ~ chi2(nu)
            np.multiply(chi2, 2.0 / self.score.nu, out=chi2)
            np.sqrt(chi2, out=chi2)
            x /= chi2[..., None]
        return self.transform(x)


class _Bootstrap:
    """Whole dates of the joint standardized residual matrix ("fhs"), with GPD tails ("evt")."""

    def __init__(self, residuals: np.ndarray, tails: Sequence[TailFit] | None) -> None:
        self.residuals = residuals
        self.tails = tails
        self.n_streams = 1 if tails is None else 2
        if tails is not None:
            n, j = residuals.shape
            rank = np.argsort(np.argsort(residuals, axis=0, kind="stable"), axis=0, kind="stable")
            k_lower = np.array([t.lower.n_exceedances for t in tails])
            k_upper = np.array([t.upper.n_exceedances for t in tails])
            # Per (date, market): 1 in the lower tail, 2 in the upper tail, 0 in the body; and the
            # position within the tail, 0 for the most extreme residual.
            self.side = np.where(rank < k_lower, 1, np.where(rank >= n - k_upper, 2, 0)).astype(np.int8)
            self.position = np.where(self.side == 1, rank, n - 1 - rank).astype(np.float64)
            self.params = {code: tuple(np.array([getattr(getattr(t, side), attr) for t in tails])
                                       for attr in ("threshold", "shape", "scale", "n_exceedances"))
                           for code, side in ((1, "lower"), (2, "upper"))}

    def innovations(
        self, streams: Sequence[Sequence[np.random.Generator]], sizes: Sequence[int], horizon: int
    ) -> np.ndarray:
        """(sum(sizes), T, J) innovations; block b's draws come from ``streams[b]`` only."""
        m = sum(sizes)
        n, j = self.residuals.shape
        dates = np.empty((m, horizon), dtype=np.intp)
        uniform = np.empty((m, horizon, j)) if self.tails is not None else None
        row = 0
        for gens, size in zip(streams, sizes):
            dates[row:row + size] = gens[0].integers(0, n, size=(size, horizon))
            if uniform is not None:
                gens[1].random(out=uniform[row:row + size])
            row += size
        z = self.residuals[dates]
        if self.tails is None:
            return z
        flat_z, flat_u = z.reshape(-1), uniform.reshape(-1)
        side = self.side[dates].reshape(-1)
        for code, sign in ((1, -1.0), (2, 1.0)):
            # The drawn date's cell within its tail: p = (position + V) / k, V in (0, 1], is
            # uniform on (0, 1] given the tail, so the excess beta (p^-xi - 1) / xi is a GPD draw
            # and the dates' ranks (the dependence) are kept.
            hit = np.flatnonzero(side == code)
            date, col = dates.reshape(-1)[hit // j], hit % j
            threshold, shape, scale, k = (values[col] for values in self.params[code])
            p = (self.position[date, col] + (1.0 - flat_u[hit])) / k
            flat_z[hit] = threshold + sign * _gpd_excess(p, shape, scale)
        return z


# --------------------------------------------------------------------------------------------
# Variance recursion
# --------------------------------------------------------------------------------------------


class _Dynamics:
    """Per-market parameters of the mean and variance recursions, as (J,) arrays."""

    def __init__(self, models: Sequence[VolModel]) -> None:
        get = lambda key, default=0.0: np.array([float(m.params.get(key, default)) for m in models])  # noqa: E731
        self.mu = get("mu")
        self.omega = get("omega")
        self.alpha = get("alpha")
        self.gamma = get("gamma")
        self.beta = get("beta")
        self.egarch = np.array([m.spec.vol == "EGARCH" for m in models])
        self.start_variance = np.array([float(m.next_variance) for m in models])
        self.asymmetric = bool(np.any(self.gamma[~self.egarch] != 0.0))
        self.all_egarch = bool(self.egarch.all())
        self.any_egarch = bool(self.egarch.any())

    def initial_state(self, m: int) -> np.ndarray:
        """(m, J) state: sigma^2 for GARCH/GJR columns, ln sigma^2 for EGARCH columns."""
        state = np.broadcast_to(self.start_variance, (m, self.mu.size)).copy()
        if self.egarch.any():
            state[:, self.egarch] = np.log(state[:, self.egarch])
        return state

    def volatility(self, state: np.ndarray, out: np.ndarray) -> np.ndarray:
        if self.all_egarch:
            np.multiply(state, 0.5, out=out)
            return np.exp(out, out=out)
        if not self.any_egarch:
            return np.sqrt(state, out=out)
        out[...] = np.where(self.egarch, np.exp(0.5 * state), np.sqrt(np.abs(state)))
        return out

    def update(self, state: np.ndarray, eps: np.ndarray, z: np.ndarray, work: np.ndarray, work2: np.ndarray,
               params: dict[str, np.ndarray] | None = None) -> None:
        """Advance ``state`` one period in place, given this period's residual eps and innovation z.

        ``params``: the (m, J) parameter arrays of :meth:`_full` (the (J,) ones by default).
        """
        params = params if params is not None else {k: getattr(self, k) for k in _RECURSION_PARAMS}
        if self.all_egarch:
            self._update_egarch(state, z, work, work2, params)
        elif not self.any_egarch:
            self._update_garch(state, eps, work, work2, params)
        else:
            log_state = state.copy()
            variance = state.copy()
            self._update_egarch(log_state, z, work, work2, params)
            self._update_garch(variance, eps, work, work2, params)
            state[...] = np.where(self.egarch, log_state, variance)

    def _full(self, m: int) -> dict[str, np.ndarray]:
        # Contiguous (m, J) copies of the (J,) parameters: an ufunc between two contiguous
        # (m, J) arrays runs one flat loop, while broadcasting a (J,) vector runs m loops of
        # length J (measured 2x slower for the whole recursion at J = 3).
        return {k: np.ascontiguousarray(np.broadcast_to(getattr(self, k), (m, self.mu.size)))
                for k in _RECURSION_PARAMS}

    def _update_garch(self, s2: np.ndarray, eps: np.ndarray, work: np.ndarray, work2: np.ndarray,
                      params: dict[str, np.ndarray]) -> None:
        # (alpha + gamma 1[eps < 0]) eps^2 = alpha eps^2 + gamma min(eps, 0)^2
        np.multiply(eps, eps, out=work)
        work *= params["alpha"]
        if self.asymmetric:
            np.minimum(eps, 0.0, out=work2)
            work2 *= work2
            work2 *= params["gamma"]
            work += work2
        s2 *= params["beta"]
        s2 += work
        s2 += params["omega"]

    def _update_egarch(self, log_s2: np.ndarray, z: np.ndarray, work: np.ndarray, work2: np.ndarray,
                       params: dict[str, np.ndarray]) -> None:
        np.abs(z, out=work)
        work -= _SQRT_2_OVER_PI
        work *= params["alpha"]
        np.multiply(z, params["gamma"], out=work2)
        work += work2
        log_s2 *= params["beta"]
        log_s2 += work
        log_s2 += params["omega"]

    def run(self, z: np.ndarray, returns: np.ndarray, volatility: np.ndarray) -> None:
        """Fill (m, T, J) ``returns`` and ``volatility`` from innovations ``z`` (m, T, J)."""
        m, horizon, j = z.shape
        state = self.initial_state(m)
        params = self._full(m)
        eps, work, work2 = np.empty((m, j)), np.empty((m, j)), np.empty((m, j))
        # Each step reads and writes (m, J) strided slices in place: measured faster than
        # time-major copies, which cost three extra passes.
        for t in range(horizon):
            sigma = self.volatility(state, out=volatility[:, t])
            np.multiply(sigma, z[:, t], out=eps)
            self.update(state, eps, z[:, t], work, work2, params)
            np.add(eps, params["mu"], out=returns[:, t])


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def simulate_returns(
    models: Mapping[str, VolModel],
    horizon: int,
    n_scenarios: int,
    *,
    innovations: str = "parametric",
    seed: int | np.random.SeedSequence | None = None,
    copula: str | Copula = "t",
    tail_fraction: float = 0.1,
    chunk_size: int | None = None,
    threads: int | None = None,
) -> ReturnPaths:
    """Simulate N joint return paths of T periods from today's state of fitted models.

    Parameters
    ----------
    models : mapping of market name -> VolModel
        One fitted model per market (``fit_volatility``), all at the same sampling frequency.
    horizon : int >= 1
        T, periods per path (in the models' frequency: days for daily models).
    n_scenarios : int >= 1
        N, the number of paths.
    innovations : {"parametric", "fhs", "evt"}, default "parametric"
        How innovations are drawn (see the module notes): the fitted distributions joined by a
        copula; bootstrapped whole dates of standardized residuals (filtered historical
        simulation); or bootstrapped dates with generalized Pareto tails (GARCH-EVT).
    seed : int, SeedSequence or None
        None draws fresh entropy, recorded in ``metadata["seed"]`` so the run can be repeated.
    copula : {"t", "gaussian"} or Copula, default "t"
        "parametric" with two or more markets: the copula family fitted to the standardized
        residuals on common dates (:func:`fit_copula`), or a given Copula (for example with
        stressed correlations). Ignored otherwise.
    tail_fraction : float, default 0.1
        "evt": share of residuals in each tail (:func:`fit_tails`).
    chunk_size : int, optional
        Scenarios per chunk of work, rounded up to a multiple of ``SCENARIO_BLOCK``; by default
        about 2**18 / (T J) scenarios, so that working buffers stay in cache (a few MiB). Does
        not change the result.
    threads : int, optional
        Chunks worked on at once, each in its own thread (numpy releases the GIL in the heavy
        loops). Default: the CPUs this process may run on. 1 works in the calling thread only
        (use it inside a process pool or a Dask worker that already fills the cores). Does not
        change the result.

    Returns
    -------
    ReturnPaths
        ``returns`` and ``volatility`` (N, T, J) float64 in the models' units; ``tails``
        ("evt") and ``copula`` ("parametric", J >= 2) as fitted; ``metadata`` with the seed.
        Peak memory is the two returned arrays plus the chunk buffers.

    Raises
    ------
    SpecificationError
        Bad arguments, or models at different frequencies.
    InsufficientHistoryError
        "fhs", "evt" or a copula fit with fewer than 250 dates common to all markets.

    Warns
    -----
    HeavyTailWarning
        "evt": a fitted tail index >= 0.5.

    Notes
    -----
    For "fhs" and "evt" with several markets, and for the copula fit, residuals are aligned on
    the dates common to all markets; "evt" tails are fitted on those dates. The recursions and
    the starting point are in the module notes.
    """
    plan = plan_simulation(models, horizon, n_scenarios, innovations=innovations, seed=seed,
                           copula=copula, tail_fraction=tail_fraction)
    return plan.simulate(chunk_size=chunk_size, threads=threads)


@dataclass(frozen=True, eq=False)
class SimulationPlan:
    """Everything :func:`simulate_returns` needs to draw any range of its paths.

    Built once by :func:`plan_simulation` (validation, copula and tail fits, tabulated
    transforms); holds only numpy arrays and plain values, so it pickles small and can be
    sent to other processes (the Dask workers of ``fundguard.models.chunked``), which then
    draw their own blocks of scenarios: blocks ``[b0, b1)`` give rows
    ``b0 * SCENARIO_BLOCK .. min(b1 * SCENARIO_BLOCK, N)`` of the full run, bit for bit.
    """

    names: tuple[str, ...]
    horizon: int
    n_scenarios: int
    innovations: str
    root: np.random.SeedSequence
    sampler: Any
    dynamics: Any
    period: pd.Timedelta | None
    long_run_volatility: np.ndarray
    tails: Mapping[str, TailFit]
    copula: Copula | None
    metadata: Mapping[str, Any]

    @property
    def n_blocks(self) -> int:
        """Number of random-number blocks, ``ceil(N / SCENARIO_BLOCK)``."""
        return -(-self.n_scenarios // SCENARIO_BLOCK)

    def simulate(self, first_block: int = 0, stop_block: int | None = None, *,
                 chunk_size: int | None = None, threads: int | None = None) -> ReturnPaths:
        """Paths of blocks ``[first_block, stop_block)`` (all by default) as a ReturnPaths.

        ``metadata["rows"]`` records the rows ``[start, stop)`` of the full run they are.
        ``chunk_size`` and ``threads`` are those of :func:`simulate_returns`.
        """
        stop_block = self.n_blocks if stop_block is None else int(stop_block)
        first_block = int(first_block)
        if not 0 <= first_block < stop_block <= self.n_blocks:
            raise SpecificationError(
                f"block range [{first_block}, {stop_block}) is outside [0, {self.n_blocks}) "
                f"of a {self.n_scenarios}-scenario plan")
        start = first_block * SCENARIO_BLOCK
        stop = min(stop_block * SCENARIO_BLOCK, self.n_scenarios)
        j = len(self.names)
        returns = np.empty((stop - start, self.horizon, j))
        volatility = np.empty((stop - start, self.horizon, j))
        blocks_per_chunk = _blocks_per_chunk(chunk_size, self.horizon, j)

        def work(first: int) -> None:
            blocks = range(first, min(first + blocks_per_chunk, stop_block))
            sizes = [min(SCENARIO_BLOCK, self.n_scenarios - b * SCENARIO_BLOCK) for b in blocks]
            streams = [_block_streams(self.root, b, self.sampler.n_streams) for b in blocks]
            z = self.sampler.innovations(streams, sizes, self.horizon)
            row = first * SCENARIO_BLOCK - start
            rows = slice(row, row + sum(sizes))
            self.dynamics.run(z, returns[rows], volatility[rows])

        # chunks are independent: own streams, own output rows
        _in_threads(work, range(first_block, stop_block, blocks_per_chunk), threads, "fundguard-simulate")
        metadata = dict(self.metadata)
        if (start, stop) != (0, self.n_scenarios):
            metadata["rows"] = [start, stop]
        return ReturnPaths(
            returns=returns,
            volatility=volatility,
            markets=self.names,
            period=self.period,
            long_run_volatility=self.long_run_volatility,
            tails=dict(self.tails),
            copula=self.copula,
            metadata=metadata,
        )


def plan_simulation(
    models: Mapping[str, VolModel],
    horizon: int,
    n_scenarios: int,
    *,
    innovations: str = "parametric",
    seed: int | np.random.SeedSequence | None = None,
    copula: str | Copula = "t",
    tail_fraction: float = 0.1,
) -> SimulationPlan:
    """Validate and fit what :func:`simulate_returns` needs, without drawing any path.

    Arguments, errors and warnings are those of :func:`simulate_returns`. ``plan.simulate()``
    gives exactly ``simulate_returns(...)``; ``plan.simulate(b0, b1)`` a range of its blocks.
    """
    names, fitted = _validate_models(models)
    horizon = _positive_int("horizon", horizon)
    n_scenarios = _positive_int("n_scenarios", n_scenarios)
    if innovations not in INNOVATIONS:
        raise SpecificationError(f"innovations must be one of {INNOVATIONS}, got {innovations!r}")
    if not isinstance(copula, Copula) and copula not in ("t", "gaussian"):
        raise SpecificationError(f"copula must be 't', 'gaussian' or a Copula, got {copula!r}")
    root = _seed_sequence(seed)
    period = _common_period(names, fitted)
    j = len(fitted)

    fitted_copula: Copula | None = None
    tails: dict[str, TailFit] = {}
    if innovations == "parametric":
        if j > 1:
            if isinstance(copula, Copula):
                if copula.markets != names:
                    raise SpecificationError(f"copula markets {list(copula.markets)} differ from models {list(names)}")
                fitted_copula = copula
            else:
                _, residuals = _common_residuals(names, fitted, "fitting the copula (or pass copula=a fitted Copula)")
                fitted_copula = fit_copula(residuals, family=copula, markets=names)
        sampler: _Parametric | _Bootstrap = _Parametric([_Marginal.of(m) for m in fitted], fitted_copula)
    else:
        _, residuals = _common_residuals(names, fitted, f"innovations={innovations!r}")
        if innovations == "evt":
            fits = [_fit_tails(residuals[:, i], tail_fraction, name) for i, name in enumerate(names)]
            for fit in fits:
                _warn_if_heavy(fit, stacklevel=4)
            tails = dict(zip(names, fits))
            sampler = _Bootstrap(residuals, fits)
        else:
            sampler = _Bootstrap(residuals, None)

    metadata = {
        "generator": "fundguard.models.simulate_returns",
        "innovations": innovations,
        "horizon": horizon,
        "period": None if period is None else str(period),
        "n_scenarios": n_scenarios,
        "seed": {"entropy": root.entropy, "spawn_key": list(root.spawn_key)},
        "scenario_block": SCENARIO_BLOCK,
        "models": {name: {"spec": str(m.spec), "params": dict(m.params), "next_variance": m.next_variance}
                   for name, m in zip(names, fitted)},
    }
    if fitted_copula is not None:
        metadata["copula"] = fitted_copula.describe()
    if tails:
        metadata["tails"] = {name: fit.describe() for name, fit in tails.items()}
    return SimulationPlan(
        names=names,
        horizon=horizon,
        n_scenarios=n_scenarios,
        innovations=innovations,
        root=root,
        sampler=sampler,
        dynamics=_Dynamics(fitted),
        period=period,
        long_run_volatility=_long_run_volatility(fitted),
        tails=tails,
        copula=fitted_copula,
        metadata=_jsonable(metadata),
    )


def stress_paths(
    models: Mapping[str, VolModel],
    horizon: int,
    *,
    dates: Sequence[Any] = (),
    scale_to_today: bool = True,
    shocks: Sequence[float | Mapping[str, float]] = (),
) -> ReturnPaths:
    """Deterministic stress paths: replayed historical windows and hypothetical shocks.

    Parameters
    ----------
    models : mapping of market name -> VolModel
        The fitted models; their own history (``index``, ``std_resid``, conditional volatility)
        is replayed.
    horizon : int >= 1
        T, periods per path; equal to the random paths' horizon so the sets can be joined.
    dates : sequence of date-like or (start, end) pairs
        One path per entry. A date replays ``horizon`` periods starting at that date's return
        (the return whose period ends on it: "2020-03-12" is the crash day itself); a pair
        replays start..end inclusive (at most ``horizon`` periods). Periods after the window, or
        after the history ends, are still: zero return.
    scale_to_today : bool, default True
        True: replay the window's standardized residuals z_t through each model's recursion
        started from today's state (r_t = mu + sigma_t z_t, the filtered-historical-simulation
        replay: the same shock, today's volatility). False: replay the historical returns as
        they were, with the historical conditional volatilities.
    shocks : sequence of float or mapping of market -> float
        One path per entry: an instantaneous simple return (-0.3 is a 30% fall) in the first
        period, the same for every market (float) or per market (mapping; markets left out do
        not move); zero returns afterwards. Volatility starts from today's state and follows the
        recursion, the shock feeding it.

    Returns
    -------
    ReturnPaths
        ``is_stress`` all True, ``labels`` naming each path, replays first then shocks.

    Raises
    ------
    ScenarioError
        A date not in the history common to all markets, an empty window, a shock <= -100%
        or naming an unknown market, no dates and no shocks, or dates for a model rebuilt
        from numbers (no history to replay).
    """
    names, fitted = _validate_models(models)
    horizon = _positive_int("horizon", horizon)
    if isinstance(dates, (pd.Index, np.ndarray)):
        dates = list(dates)
    elif isinstance(dates, (str, pd.Timestamp)) or not isinstance(dates, Sequence):
        dates = [dates]
    if isinstance(shocks, (int, float, Mapping)):
        shocks = [shocks]
    if not dates and not shocks:
        raise ScenarioError("stress_paths needs at least one date or shock")
    dynamics = _Dynamics(fitted)
    j = len(fitted)
    all_returns, all_vols, labels = [], [], []

    if dates:
        for name, m in zip(names, fitted):
            if not m.has_history:
                raise ScenarioError(
                    f"stress_paths(dates=...) replays the fitted history, but models[{name!r}] has none (rebuilt from "
                    "numbers: VolModel.from_dict, a preset); fit it to returns with fit_volatility, or use shocks=..."
                )
        index = fitted[0].index
        for m in fitted[1:]:
            index = index.intersection(m.index)
        hist_z = np.column_stack([pd.Series(m.std_resid, index=m.index).reindex(index).to_numpy() for m in fitted])
        hist_vol = np.column_stack([m.conditional_volatility.reindex(index).to_numpy() for m in fitted])
        for entry in dates:
            start, stop = (entry if isinstance(entry, tuple) else (entry, None))
            first = _locate(index, start, names)
            last = len(index) - 1 if stop is None else _locate(index, stop, names)
            if last < first:
                raise ScenarioError(f"stress window {start}..{stop} is empty (end before start)")
            n_hist = min(horizon, last - first + 1)
            rets, vols = np.zeros((1, horizon, j)), np.zeros((1, horizon, j))
            if scale_to_today:
                state = dynamics.initial_state(1)
                work, work2 = np.empty((1, j)), np.empty((1, j))
                for t in range(horizon):
                    sigma = dynamics.volatility(state, out=np.empty((1, j)))
                    vols[:, t] = sigma
                    if t < n_hist:
                        z_t = hist_z[first + t][None, :]
                        eps = sigma * z_t
                        rets[:, t] = dynamics.mu + eps
                    else:  # still price after the window: r = 0, eps = -mu
                        eps = -dynamics.mu[None, :]
                        z_t = eps / sigma
                    dynamics.update(state, eps, z_t, work, work2)
            else:
                window = slice(first, first + n_hist)
                vols[0, :n_hist] = hist_vol[window]
                rets[0, :n_hist] = dynamics.mu + hist_vol[window] * hist_z[window]
                state = vols[:, n_hist - 1] ** 2
                state[:, dynamics.egarch] = np.log(state[:, dynamics.egarch])
                _still(dynamics, state, eps=rets[:, n_hist - 1] - dynamics.mu, z=hist_z[first + n_hist - 1][None, :],
                       returns=rets[:, n_hist:], volatility=vols[:, n_hist:])
            all_returns.append(rets)
            all_vols.append(vols)
            when = str(index[first].date()) if isinstance(index, pd.DatetimeIndex) else str(index[first])
            labels.append(f"replay {when} ({n_hist} periods, {'scaled to today' if scale_to_today else 'as it was'})")

    for shock in shocks:
        moves = _shock_moves(shock, names)
        rets, vols = np.zeros((1, horizon, j)), np.zeros((1, horizon, j))
        state = dynamics.initial_state(1)
        sigma = dynamics.volatility(state, out=np.empty((1, j)))
        rets[0, 0], vols[0, 0] = np.log1p(moves), sigma[0]
        eps = rets[:, 0] - dynamics.mu
        _still(dynamics, state, eps=eps, z=eps / sigma, returns=rets[:, 1:], volatility=vols[:, 1:])
        all_returns.append(rets)
        all_vols.append(vols)
        moved = [f"{n} {100 * x:+.4g}%" for n, x in zip(names, moves) if x != 0.0]
        labels.append("shock " + (", ".join(moved) if moved else "(no move)"))

    returns = np.concatenate(all_returns)
    metadata = {
        "generator": "fundguard.models.stress_paths",
        "horizon": horizon,
        "scale_to_today": bool(scale_to_today),
        "labels": labels,
        "models": {name: {"spec": str(m.spec), "next_variance": m.next_variance} for name, m in zip(names, fitted)},
    }
    return ReturnPaths(
        returns=returns,
        volatility=np.concatenate(all_vols),
        markets=names,
        period=_common_period(names, fitted),
        long_run_volatility=_long_run_volatility(fitted),
        is_stress=np.ones(returns.shape[0], dtype=bool),
        labels=tuple(labels),
        metadata=_jsonable(metadata),
    )


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _still(dynamics: _Dynamics, state: np.ndarray, *, eps: np.ndarray, z: np.ndarray,
           returns: np.ndarray, volatility: np.ndarray) -> None:
    """Zero returns after a shock: the variance recursion continues from (state, eps, z)."""
    j = state.shape[1]
    work, work2 = np.empty((1, j)), np.empty((1, j))
    dynamics.update(state, eps, z, work, work2)
    for t in range(returns.shape[1]):
        sigma = dynamics.volatility(state, out=np.empty((1, j)))
        volatility[:, t] = sigma
        returns[:, t] = 0.0
        eps = -dynamics.mu[None, :]
        dynamics.update(state, eps, eps / sigma, work, work2)


def _shock_moves(shock: float | Mapping[str, float], names: tuple[str, ...]) -> np.ndarray:
    if isinstance(shock, Mapping):
        unknown = [k for k in shock if k not in names]
        if unknown:
            raise ScenarioError(f"shock names unknown market(s) {unknown}; markets are {list(names)}")
        moves = np.array([float(shock.get(n, 0.0)) for n in names])
    else:
        moves = np.full(len(names), float(shock))
    bad = ~np.isfinite(moves) | (moves <= -1.0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ScenarioError(f"shock for market {names[i]!r} is {moves[i]!r}; a simple return must be finite and > -1")
    return moves


def _locate(index: pd.Index, when: Any, names: tuple[str, ...]) -> int:
    try:
        stamp = pd.Timestamp(when)
        if isinstance(index, pd.DatetimeIndex) and index.tz is not None and stamp.tzinfo is None:
            stamp = stamp.tz_localize(index.tz)
        return int(index.get_loc(stamp))
    except (KeyError, ValueError, TypeError):
        span = f"{index[0]} .. {index[-1]}" if len(index) else "empty"
        raise ScenarioError(
            f"stress date {when!r} is not in the history common to markets {list(names)} ({span})"
        ) from None


def _validate_models(models: Mapping[str, VolModel]) -> tuple[tuple[str, ...], list[VolModel]]:
    if not isinstance(models, Mapping):
        raise SpecificationError(
            f"models must be a mapping of market name -> VolModel, got {type(models).__name__}"
        )
    if not models:
        raise SpecificationError("models must name at least one market")
    for name, model in models.items():
        if not isinstance(name, str) or not name:
            raise SpecificationError(f"market names must be non-empty strings, got {name!r}")
        if not isinstance(model, VolModel):
            raise SpecificationError(f"models[{name!r}] must be a VolModel, got {type(model).__name__}")
        bad = {k: v for k, v in model.params.items() if not math.isfinite(v)}
        if bad or not (math.isfinite(model.next_variance) and model.next_variance > 0):
            raise SpecificationError(f"models[{name!r}] has non-finite parameters {bad} or next_variance "
                                     f"{model.next_variance!r}")
    return tuple(models), list(models.values())


def _common_residuals(names: tuple[str, ...], models: Sequence[VolModel], purpose: str) -> tuple[pd.Index, np.ndarray]:
    for name, m in zip(names, models):
        if not len(m.std_resid):
            raise InsufficientHistoryError(
                f"models[{name!r}] has no standardized residuals (rebuilt from numbers: VolModel.from_dict, a preset), "
                f"which {purpose} needs; fit it to returns with fit_volatility"
            )
    if len(models) == 1:
        return models[0].index, np.asarray(models[0].std_resid, dtype=np.float64)[:, None]
    index = models[0].index
    for m in models[1:]:
        index = index.intersection(m.index)
    if len(index) < MIN_RETURNS:
        raise InsufficientHistoryError(
            f"markets {list(names)} share {len(index)} dates of standardized residuals; joint innovations need at "
            f"least {MIN_RETURNS}"
        )
    columns = [pd.Series(m.std_resid, index=m.index).reindex(index).to_numpy() for m in models]
    return index, np.ascontiguousarray(np.column_stack(columns))


def _common_period(names: tuple[str, ...], models: Sequence[VolModel]) -> pd.Timedelta | None:
    periods = {m.frequency.period if m.frequency is not None else None for m in models}
    if len(periods) > 1:
        found = {n: (str(m.frequency.period) if m.frequency is not None else None) for n, m in zip(names, models)}
        raise SpecificationError(f"models must share one sampling frequency, got {found}")
    return periods.pop()


def _long_run_volatility(models: Sequence[VolModel]) -> np.ndarray:
    # The median conditional volatility over the fit sample: the level of a typical day, at which
    # a typical day's volume is traded. (The unconditional variance is infinite or nearly so for
    # integrated fits, common on crypto.)
    return np.array([m.typical_volatility if m.typical_volatility is not None else math.sqrt(m.next_variance)
                     for m in models])


def _seed_sequence(seed: int | np.random.SeedSequence | None) -> np.random.SeedSequence:
    if seed is None or isinstance(seed, np.random.SeedSequence):
        return seed if seed is not None else np.random.SeedSequence()
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        return np.random.SeedSequence(int(seed))
    raise SpecificationError(f"seed must be a non-negative int, a numpy SeedSequence or None, got {seed!r}")


def _block_streams(root: np.random.SeedSequence, block: int, n_streams: int) -> list[np.random.Generator]:
    # Exactly what root.spawn(...)[block].spawn(n_streams) gives, without mutating the caller's
    # SeedSequence (spawn() advances its child counter).
    node = np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, block), pool_size=root.pool_size)
    return [np.random.Generator(np.random.PCG64(child)) for child in node.spawn(n_streams)]


def _blocks_per_chunk(chunk_size: int | None, horizon: int, n_markets: int) -> int:
    if chunk_size is None:
        return max(1, _CHUNK_ELEMENTS // (SCENARIO_BLOCK * horizon * n_markets))
    return -(-_positive_int("chunk_size", chunk_size) // SCENARIO_BLOCK)


def _in_threads(work: Callable[[int], None], items: Sequence[int], threads: int | None, name: str) -> None:
    """``work(item)`` for every item, several at once in threads (``threads``: None for the
    usable CPUs, 1 for the calling thread only). The items must write disjoint outputs; numpy
    releases the GIL in the random fills, ufuncs and gathers the work is made of. The first
    exception raised by a call is raised here."""
    n_threads = min(_thread_count(threads), len(items))
    if n_threads <= 1:
        for item in items:
            work(item)
        return
    with ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix=name) as pool:
        for _ in pool.map(work, items):
            pass


def _thread_count(threads: int | None) -> int:
    if threads is None:
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            return os.cpu_count() or 1
    return _positive_int("threads", threads)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise SpecificationError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else str(float(value))
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    return value
