"""Innovations: exact quantiles of the fitted distributions, a tabulated score -> innovation
transform, and the samplers that draw a block of scenarios' innovations from its own streams.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import interpolate, special

from ..volatility import VolModel
from .copula import Copula
from .tails import TailFit, gpd_excess

__all__ = ["Marginal", "Score", "exact_transform", "ScoreTransform", "Parametric", "Bootstrap"]

# Innovation transforms are tabulated for scores whose tail probability is above this; the
# rare scores beyond are transformed exactly.
_TABLE_TAIL = 1e-12
_TABLE_TOLERANCE = 1e-8


@dataclass(frozen=True)
class Marginal:
    """Unit-variance innovation distribution of one market, with tail-accurate quantiles."""

    dist: str
    nu: float = math.nan
    lam: float = 0.0

    @classmethod
    def of(cls, model: VolModel) -> Marginal:
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
class Score:
    """Distribution of the copula scores: standard normal (nu = inf) or standard t(nu)."""

    nu: float

    def cdf(self, x: np.ndarray) -> np.ndarray:
        return special.ndtr(x) if math.isinf(self.nu) else special.stdtr(self.nu, x)

    def isf(self, p: float) -> float:
        return float(-special.ndtri(p)) if math.isinf(self.nu) else float(-special.stdtrit(self.nu, p))


def exact_transform(x: np.ndarray, score: Score, marginal: Marginal) -> np.ndarray:
    """z = F^{-1}(C(x)), through the lower tail for x <= 0 and the upper tail for x > 0."""
    x = np.asarray(x, dtype=np.float64)
    negative = x <= 0
    tail = score.cdf(-np.abs(x))
    return np.where(negative, marginal.lower(tail), marginal.upper(tail))


class ScoreTransform:
    """Score -> innovation map of every market, tabulated for speed.

    The exact map needs an inverse incomplete beta or gamma function per draw (about 0.7 us).
    y = asinh(z) is a smooth function of s = asinh(x), nearly linear in both tails, so it is
    replaced by cubic splines on a uniform grid of s (about 0.03 us per draw), one on each side
    of s = 0, where a GED density with shape <= 2 makes the map non-smooth. The grid is refined
    until the splines are within 1e-8 of the exact y at every interval's midpoint (2049 nodes
    give about 1e-11 for t and skewed t marginals; GED with shape near 1 needs up to 32769).
    Scores beyond the grid (probability 2e-12 each) are transformed exactly.
    """

    def __init__(self, score: Score, marginals: Sequence[Marginal], scale: np.ndarray | None) -> None:
        self.score = score
        self.marginals = tuple(marginals)
        # A pure rescaling (t marginal with the score's own nu, or normal marginal with a
        # Gaussian score) needs no table.
        self.scale = scale
        if scale is not None:
            return
        s_max = math.asinh(score.isf(_TABLE_TAIL))
        def exact(s: np.ndarray) -> np.ndarray:
            return np.arcsinh(np.stack([exact_transform(np.sinh(s), score, m) for m in self.marginals]))

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
                z[sel] = exact_transform(x[sel], self.score, self.marginals[j])
        return z


# --------------------------------------------------------------------------------------------
# Innovation samplers: draws per block of scenarios, transforms per chunk
# --------------------------------------------------------------------------------------------


class Parametric:
    """Copula scores -> fitted marginal innovations."""

    n_streams = 2

    def __init__(self, marginals: Sequence[Marginal], copula: Copula | None) -> None:
        j = len(marginals)
        if copula is None:
            # One market: draw from its own distribution directly (t through a t score).
            nu = marginals[0].nu if marginals[0].dist == "t" else math.inf
            self.chol = None
        else:
            nu = copula.nu
            self.chol = np.linalg.cholesky(copula.correlation).T.copy() if j > 1 else None
        self.score = Score(nu)
        scale = None
        if all(m.dist == "t" and m.nu == nu for m in marginals):
            scale = np.full(j, math.sqrt((nu - 2.0) / nu))
        elif math.isinf(nu) and all(m.dist == "normal" for m in marginals):
            scale = np.ones(j)
        self.transform = ScoreTransform(self.score, marginals, scale)
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


class Bootstrap:
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
            flat_z[hit] = threshold + sign * gpd_excess(p, shape, scale)
        return z

