"""The copula joining the innovations of several markets (Gaussian or Student-t)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, special, stats

from ..errors import InsufficientHistoryError, SpecificationError

__all__ = ["Copula", "fit_copula"]


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

