"""The mean and variance recursion of every market: the one step random and stress paths share.

Each market follows its fitted recursion (arch's conventions, see ``models.volatility``):

* GARCH / GJR:  sigma_{t+1}^2 = omega + (alpha + gamma 1[eps_t < 0]) eps_t^2 + beta sigma_t^2
* EGARCH:       ln sigma_{t+1}^2 = omega + alpha (|z_t| - sqrt(2/pi)) + gamma z_t + beta ln sigma_t^2

with r_t = mu + eps_t, eps_t = sigma_t z_t. A period is driven either by its innovation z_t
(:meth:`Dynamics.step`: simulation, replays scaled to today) or by its return r_t
(:meth:`Dynamics.step_given_return`: eps_t = r_t - mu, z_t = eps_t / sigma_t; shocks and the
still periods after a stress window).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..volatility import VolModel

__all__ = ["Dynamics"]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_RECURSION_PARAMS = ("mu", "omega", "alpha", "gamma", "beta")


class Dynamics:
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
        """sigma_t of the (m, J) ``state`` (sigma^2, or ln sigma^2 for EGARCH columns), written into ``out``."""
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
        params = params if params is not None else self._own()
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

    def _own(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in _RECURSION_PARAMS}

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

    def scratch(self, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Work buffers of :meth:`step` and :meth:`step_given_return` for m paths: four (m, J) arrays."""
        j = self.mu.size
        return np.empty((m, j)), np.empty((m, j)), np.empty((m, j)), np.empty((m, j))

    def step(self, state: np.ndarray, z: np.ndarray, *, returns: np.ndarray, volatility: np.ndarray,
             scratch: tuple[np.ndarray, ...], params: dict[str, np.ndarray] | None = None) -> None:
        """One period driven by its innovations: the recursion of the module notes, in place.

        Parameters
        ----------
        state : (m, J) float64, advanced to the next period
        z : (m, J) float64, this period's innovations, unitless
        returns, volatility : (m, J) float64 outputs
            r_t = mu + sigma_t z_t and sigma_t (sigma_t from ``state`` before the step).
        scratch : the buffers of :meth:`scratch`
        params : the (m, J) arrays of :meth:`_full`, or None for the (J,) ones
        """
        params = params if params is not None else self._own()
        eps, _, work, work2 = scratch
        sigma = self.volatility(state, out=volatility)
        np.multiply(sigma, z, out=eps)
        self.update(state, eps, z, work, work2, params)
        np.add(eps, params["mu"], out=returns)

    def step_given_return(self, state: np.ndarray, returns: np.ndarray, *, volatility: np.ndarray,
                          scratch: tuple[np.ndarray, ...]) -> None:
        """One period whose return r_t is given: eps_t = r_t - mu, z_t = eps_t / sigma_t, state advanced.

        ``returns`` (m, J) is read; ``volatility`` (m, J) receives sigma_t. A still period has r_t = 0.
        """
        params = self._own()
        eps, z, work, work2 = scratch
        sigma = self.volatility(state, out=volatility)
        np.subtract(returns, params["mu"], out=eps)
        np.divide(eps, sigma, out=z)
        self.update(state, eps, z, work, work2, params)

    def run(self, z: np.ndarray, returns: np.ndarray, volatility: np.ndarray) -> None:
        """Fill (m, T, J) ``returns`` and ``volatility`` from innovations ``z`` (m, T, J)."""
        m, horizon, _ = z.shape
        state = self.initial_state(m)
        params = self._full(m)
        scratch = self.scratch(m)
        # Each step reads and writes (m, J) strided slices in place: measured faster than
        # time-major copies, which cost three extra passes.
        for t in range(horizon):
            self.step(state, z[:, t], returns=returns[:, t], volatility=volatility[:, t], scratch=scratch,
                      params=params)
