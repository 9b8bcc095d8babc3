"""GARCH-family volatility models, fitted with ``arch``.

A :class:`VolSpec` says *what* to fit (volatility process, innovation distribution, mean); a
:class:`VolModel` is a fitted result: parameters in the input's units, today's state
(the last conditional variance and residual, and the next period's variance), the
standardized residuals later bootstrapped by the scenario engine, information criteria and
diagnostics.

Notes
-----
For returns r_t = mu + eps_t, eps_t = sigma_t z_t, z_t i.i.d. with unit variance:

* GARCH(1,1):   sigma_t^2 = omega + alpha eps_{t-1}^2 + beta sigma_{t-1}^2
* GJR(1,1,1):   sigma_t^2 = omega + (alpha + gamma 1[eps_{t-1} < 0]) eps_{t-1}^2 + beta sigma_{t-1}^2
* EGARCH(1,1,1): ln sigma_t^2 = omega + alpha (|z_{t-1}| - sqrt(2/pi)) + gamma z_{t-1} + beta ln sigma_{t-1}^2

(arch's conventions). ``arch`` optimises best on returns of order one, so returns are multiplied
by a power of ten ``scale`` before fitting and every output is converted back: mu / scale,
omega / scale^2 (GARCH, GJR) or omega - 2 (1 - beta) ln(scale) (EGARCH), variances / scale^2,
log-likelihood + n ln(scale).
"""

from __future__ import annotations

import contextlib
import math
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from arch import arch_model
from arch.univariate import SkewStudent
from arch.univariate.base import ARCHModelResult
from scipy import stats
from threadpoolctl import threadpool_limits

from .data import MIN_RETURNS, Frequency, detect_frequency
from .errors import (
    ConvergenceWarning,
    DataError,
    FitError,
    InsufficientHistoryError,
    NonStationaryWarning,
    SpecificationError,
)
from .serial import json_safe

__all__ = ["VolSpec", "VolDiagnostics", "VolModel", "fit_volatility", "AUTO_CANDIDATES", "SIMULATION_CANDIDATES", "ljung_box",
           "ExplosiveVolatilityWarning", "SIMULATION_INNOVATIONS"]

VOLS = ("GARCH", "GJR", "EGARCH")
DISTS = ("normal", "t", "skewt", "ged")
MEANS = ("constant", "zero")

_ARCH_DIST = {"normal": "normal", "t": "t", "skewt": "skewt", "ged": "ged"}
# arch parameter names -> ours; skewt's degrees of freedom is "eta" in arch, "nu" here.
_PARAM_NAMES = {"mu": "mu", "omega": "omega", "alpha[1]": "alpha", "gamma[1]": "gamma", "beta[1]": "beta",
                "nu": "nu", "eta": "nu", "lambda": "lambda"}
_LJUNG_BOX_LAGS = 10
# arch bounds persistence at 1 and lands a hair below it (1 - 1e-13) for integrated data;
# anything this close to 1 is treated as non-stationary (half-life > 690,000 periods).
_STATIONARITY_TOL = 1e-6
#: The innovations a model can be simulated with (``models.scenarios.simulate_returns``); the
#: ``innovations`` argument of :func:`fit_volatility` checks stationarity under one of them.
SIMULATION_INNOVATIONS = ("parametric", "fhs", "evt")


class ExplosiveVolatilityWarning(NonStationaryWarning):
    """A model whose simulated variance has no finite expectation several periods ahead.

    Persistence >= 1 under the fitted law or, for bootstrapped innovations, under the residuals
    themselves, or an EGARCH whose innovation law lacks the exponential moment the variance
    recursion needs (see :meth:`VolModel.explosive_reason`). A subclass of
    ``NonStationaryWarning``, so filters of that warning keep working.
    """


@dataclass(frozen=True)
class VolSpec:
    """What to fit: volatility process, innovation distribution and mean.

    Parameters
    ----------
    vol : {"GARCH", "GJR", "EGARCH"}
        All of order (1, 1); GJR and EGARCH add one asymmetry term (``gamma``).
    dist : {"normal", "t", "skewt", "ged"}
        Standardized innovation distribution: Gaussian, Student-t (``nu``), Hansen's skewed t
        (``nu``, ``lambda``), generalised error (shape ``nu``; 2 is Gaussian).
    mean : {"constant", "zero"}
        Constant drift ``mu`` or none.
    """

    vol: str = "GJR"
    dist: str = "t"
    mean: str = "constant"

    def __post_init__(self) -> None:
        vol = str(self.vol).upper().replace("-GARCH", "").replace("GJRGARCH", "GJR")
        dist = {"studentst": "t", "student-t": "t", "student": "t", "skew-t": "skewt", "skewstudent": "skewt",
                "gaussian": "normal"}.get(str(self.dist).lower(), str(self.dist).lower())
        mean = str(self.mean).lower()
        if vol not in VOLS:
            raise SpecificationError(f"VolSpec.vol must be one of {VOLS}, got {self.vol!r}")
        if dist not in DISTS:
            raise SpecificationError(f"VolSpec.dist must be one of {DISTS}, got {self.dist!r}")
        if mean not in MEANS:
            raise SpecificationError(f"VolSpec.mean must be one of {MEANS}, got {self.mean!r}")
        object.__setattr__(self, "vol", vol)
        object.__setattr__(self, "dist", dist)
        object.__setattr__(self, "mean", mean)

    def __str__(self) -> str:
        return f"{self.vol}-{self.dist}" + (" (zero mean)" if self.mean == "zero" else "")

    @classmethod
    def parse(cls, text: str) -> VolSpec:
        """The spec written ``VOL-DIST`` (``"GJR-t"``, ``"egarch-ged"``), constant mean.

        The one parser of that notation (command line ``--spec``, configuration
        ``[volatility] spec``). ``"auto"`` is not a spec: callers that accept it test for it first.

        Raises
        ------
        SpecificationError
            ``text`` is not ``VOL-DIST`` with VOL in ``VOLS`` and DIST in ``DISTS``; the message
            names ``text``.
        """
        vol, sep, dist = str(text).partition("-")
        try:
            if not sep:
                raise SpecificationError("no '-' between VOL and DIST")
            return cls(vol, dist)
        except SpecificationError as exc:
            raise SpecificationError(
                f"volatility spec must be VOL-DIST with VOL in {', '.join(VOLS)} and DIST in {', '.join(DISTS)} "
                f"(e.g. 'GJR-t'), got {text!r} ({exc})") from None


#: Candidates of ``spec="auto"``: every volatility process x every distribution, constant mean
#: (12 fits). The constant mean costs one parameter of BIC and guards against drift bias.
AUTO_CANDIDATES: tuple[VolSpec, ...] = tuple(VolSpec(v, d, "constant") for v in VOLS for d in DISTS)

#: Candidates for models that will be *simulated* several periods ahead: AUTO_CANDIDATES less
#: EGARCH with t or skewed-t innovations. Under EGARCH, sigma^2_{t+2} contains exp(alpha |z_{t+1}|),
#: whose expectation is infinite when z has power-law tails, so multi-step variance forecasts do
#: not exist and simulated paths occasionally explode (a 30-day BTC EGARCH-t simulation produced
#: fund losses 20x the open interest). GED tails are exponential, so EGARCH-GED is kept.
SIMULATION_CANDIDATES: tuple[VolSpec, ...] = tuple(
    spec for spec in AUTO_CANDIDATES if not (spec.vol == "EGARCH" and spec.dist in ("t", "skewt"))
)


@dataclass(frozen=True)
class VolDiagnostics:
    """Diagnostics of a fitted volatility model.

    Attributes
    ----------
    converged : bool
        The likelihood optimiser reported success.
    persistence : float
        Under the fitted innovation law: GARCH alpha + beta; GJR alpha + beta + gamma E[z^2 1{z<0}]
        (1/2 for the symmetric laws, arch's partial moment for the skewed t); EGARCH beta. Below 1
        for a covariance-stationary GARCH/GJR; abs(beta) < 1 for a stationary EGARCH.
    half_life : float
        Periods for a variance shock to halve: ln(0.5) / ln(persistence); inf when persistence >= 1.
    unconditional_variance : float
        Long-run variance per period, in (input units)^2: omega / (1 - persistence) for
        GARCH/GJR; for EGARCH the exponential of the long-run mean log-variance,
        exp((omega + alpha (Eabs(z) - sqrt(2/pi)) + gamma E z) / (1 - beta)) with the residuals'
        sample moments (an underestimate by Jensen's inequality). inf when non-stationary.
    annualized_volatility : float
        sqrt(unconditional_variance * periods_per_year), in input units per sqrt(year).
    periods_per_year : float
        From the data's frequency (365.25 days a year; crypto trades every day).
    ljung_box_pvalue : float
        Ljung-Box test of no autocorrelation in squared standardized residuals at
        ``ljung_box_lags`` lags; small values mean volatility clustering the model missed.
    ljung_box_lags : int
    stationary : bool or None
        Under the fitted law: persistence below 1 (within 1e-6, arch's stationarity bound) and
        every multi-step variance E_T[sigma_{T+h}^2] finite (EGARCH: the exponential moment of
        :meth:`VolModel.explosive_reason`). Always set by :func:`fit_volatility` and
        :meth:`VolModel.from_dict` (which recomputes it, for descriptions written before it existed).
    residual_persistence : float
        The persistence filtered historical simulation runs at, with the standardized residuals'
        own moments in place of the law's: GARCH/GJR alpha mean(z^2) + gamma mean(z^2 1{z<0}) + beta
        (a misspecified law leaves mean(z^2) above 1: DOGE daily GARCH-ged, mean(z^2) = 1.31, has
        persistence 0.960 but residual persistence 1.067); EGARCH beta. nan without residuals.
    residual_stationary : bool or None
        ``residual_persistence`` below 1 (EGARCH: abs(beta) < 1; the residuals' exponential moments
        are finite); None without residuals.
    residual_variance_ratio : float
        The long-run variance of the model driven by its own standardized residuals rescaled to
        unit mean square (what filtered historical simulation draws), over the sample variance of
        the returns it was fitted on. GARCH/GJR: omega / (1 - residual persistence); EGARCH:
        exp(E ln v) prod_k mean_i exp(beta^k g(z_i)), g(z) = alpha (abs(z) - sqrt(2/pi)) + gamma z,
        which one extreme residual can blow up: DOGE daily EGARCH-ged (alpha 0.50, largest abs(z) 20)
        has 18.8, against 0.24-2.5 for the specs "auto" picks on every other market of
        shared/data, daily and hourly (measured; GJR-t fits near a unit root reach 8-140). nan
        without residuals.
    """

    converged: bool
    persistence: float
    half_life: float
    unconditional_variance: float
    annualized_volatility: float
    periods_per_year: float
    ljung_box_pvalue: float
    ljung_box_lags: int
    stationary: bool | None = None
    residual_persistence: float = math.nan
    residual_stationary: bool | None = None
    residual_variance_ratio: float = math.nan


@dataclass(frozen=True, eq=False)
class VolModel:
    """A fitted volatility model of one market's returns.

    Attributes
    ----------
    spec : VolSpec
    params : dict of str -> float
        In the input's units: ``mu`` (per period), ``omega``, ``alpha``, ``beta``, ``gamma``
        (GJR, EGARCH), ``nu`` (t, skewt, ged shape), ``lambda`` (skewt).
    last_variance : float
        sigma_T^2, the conditional variance of the last observed period, (input units)^2.
    next_variance : float
        sigma_{T+1}^2, the one-step-ahead variance forecast: today's state, where simulations start.
    last_residual : float
        eps_T = r_T - mu, the last residual, input units.
    std_resid : (n,) float64 array
        Standardized residuals z_t = eps_t / sigma_t, unitless, aligned with ``index``.
    index : pandas.Index
        Timestamps of the fitted returns.
    loglikelihood, aic, bic : float
        Of the returns in the input's units.
    nobs : int
    diagnostics : VolDiagnostics
    scale : float
        Power of ten the returns were multiplied by for ``arch``.
    frequency : Frequency or None
        Sampling frequency of the returns, when known.
    name : str or None
        Market name (the Series name).
    selection : dict of str -> float
        For ``spec="auto"``: BIC of every candidate that converged (label -> BIC); else empty.
    rejected : dict of str -> str
        For ``spec="auto"``: candidates left out, with the reason (no convergence, non-finite
        fit, or non-stationary: persistence >= 1 at arch's stationarity bound, and with
        ``fit_volatility(innovations=...)`` any reason of :meth:`explosive_reason`).
    typical_volatility : float or None
        Median conditional volatility over the fitted sample, input units per period: the
        "normal" level volume and impact are measured against (robust to persistence near 1,
        where the unconditional variance does not exist).
    result : arch ARCHModelResult or None
        arch's own result on the *scaled* returns, for anything not exposed here; None for a
        model rebuilt from numbers (:meth:`from_dict`, the built-in preset).
    """

    spec: VolSpec
    params: Mapping[str, float]
    last_variance: float
    next_variance: float
    last_residual: float
    std_resid: np.ndarray = field(repr=False)
    index: pd.Index = field(repr=False)
    loglikelihood: float
    aic: float
    bic: float
    nobs: int
    diagnostics: VolDiagnostics
    scale: float
    frequency: Frequency | None = None
    name: str | None = None
    selection: Mapping[str, float] = field(default_factory=dict, repr=False)
    rejected: Mapping[str, str] = field(default_factory=dict, repr=False)
    typical_volatility: float | None = None
    result: ARCHModelResult | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The model as JSON-serialisable numbers: spec, parameters, today's state, diagnostics.

        The residual history and arch's result are left out; :meth:`from_dict` rebuilds a model
        that simulates ("parametric" innovations) exactly like this one.
        """
        return {
            "name": self.name,
            "spec": {"vol": self.spec.vol, "dist": self.spec.dist, "mean": self.spec.mean},
            "params": dict(self.params),
            "last_variance": self.last_variance,
            "next_variance": self.next_variance,
            "last_residual": self.last_residual,
            "typical_volatility": self.typical_volatility,
            "loglikelihood": self.loglikelihood,
            "aic": self.aic,
            "bic": self.bic,
            "nobs": self.nobs,
            "scale": self.scale,
            "period_seconds": None if self.frequency is None else self.frequency.period.total_seconds(),
            "first": None if len(self.index) == 0 else str(self.index[0]),
            "last": None if len(self.index) == 0 else str(self.index[-1]),
            "diagnostics": json_safe(self.diagnostics.__dict__),  # an infinite half-life as None
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VolModel:
        """Rebuild a model from :meth:`to_dict` output (no residual history, no arch result)."""
        try:
            diagnostics = {k: (math.inf if v is None else v) for k, v in data["diagnostics"].items()
                           if k not in ("stationary", "residual_persistence", "residual_stationary",
                                         "residual_variance_ratio")}
            period = data.get("period_seconds")
            spec = VolSpec(**data["spec"])
            params = {k: float(v) for k, v in data["params"].items()}
            # A rebuilt model has no residuals: the residual fields stay empty, the law's are recomputed.
            diagnostics["stationary"] = _law_explosive_reason(params, spec, float(diagnostics["persistence"])) is None
            return cls(
                spec=spec,
                params=params,
                last_variance=float(data["last_variance"]),
                next_variance=float(data["next_variance"]),
                last_residual=float(data["last_residual"]),
                std_resid=np.empty(0),
                index=pd.DatetimeIndex([], tz="UTC"),
                loglikelihood=float(data["loglikelihood"]),
                aic=float(data["aic"]),
                bic=float(data["bic"]),
                nobs=int(data["nobs"]),
                diagnostics=VolDiagnostics(**diagnostics),
                scale=float(data["scale"]),
                frequency=None if period is None else Frequency.from_period(pd.Timedelta(seconds=float(period))),
                name=data.get("name"),
                typical_volatility=data.get("typical_volatility"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SpecificationError(f"not a VolModel description: {exc!r}") from None

    @property
    def has_history(self) -> bool:
        """Whether the model carries its fitted sample (False for a model rebuilt from numbers)."""
        return self.result is not None and len(self.index) > 0

    def _fitted(self, what: str) -> ARCHModelResult:
        """arch's result, or SpecificationError saying that ``what`` needs it (not a bare AttributeError)."""
        if self.result is None:
            raise SpecificationError(
                f"VolModel {self.name!r} was rebuilt from numbers (VolModel.from_dict, a preset) and has no fitted "
                f"sample: {what} needs a model fitted to returns with fit_volatility"
            )
        return self.result

    @property
    def conditional_volatility(self) -> pd.Series:
        """sigma_t over the fitted sample, input units.

        Raises
        ------
        SpecificationError
            For a model rebuilt from numbers (:meth:`from_dict`), which has no fitted sample.
        """
        result = self._fitted("conditional_volatility")
        return pd.Series(np.asarray(result.conditional_volatility) / self.scale, index=self.index, name=self.name)

    def explosive_reason(self, innovations: str = "parametric") -> str | None:
        """Why simulating this model with ``innovations`` has no finite variance ahead, or None.

        Parameters
        ----------
        innovations : {"parametric", "fhs", "evt"}, default "parametric"
            How the simulation draws z (``models.scenarios.simulate_returns``).

        Returns
        -------
        str or None
            None when the model is safe to simulate; else one phrase naming the failed check.

        Notes
        -----
        What is checked, with v = sigma^2:

        * every innovation: the fitted law's persistence (``VolDiagnostics.persistence``) below
          ``1 - 1e-6``. GARCH/GJR: E[v_{t+1}] = omega + (alpha + beta + gamma E[z^2 1{z<0}]) E[v_t],
          finite for every horizon and converging iff that persistence is below 1. EGARCH:
          abs(beta) < 1.
        * EGARCH only: ln v_{t+h} sums beta^k (alpha abs(z) + gamma z) over the h - 1 innovations in
          between, so E[v_{t+h}] needs E[exp(c z)] for z > 0 and E[exp(c abs(z))] for z < 0 at the
          coefficients c = beta^k (alpha +- gamma), k >= 0, whose largest positive values are c
          and beta c at k = 0, 1. Infinite for the t and skewed t with any positive c (power-law
          tails have no exponential moment); finite for the normal and the GED with shape nu > 1;
          for nu = 1 (Laplace, density exp(-sqrt(2) abs(z))) iff c < sqrt(2); for nu < 1 iff no c > 0.
          "evt" is refused for EGARCH outright: its generalized Pareto tails have no exponential
          moments when their index is positive, which fitted crypto tails are (0.13 to 0.25 on the
          EGARCH-ged residuals of BTC, TRX and DOGE daily and BTC hourly, measured).
        * "fhs" and "evt" on GARCH/GJR: the residuals' persistence
          (``VolDiagnostics.residual_persistence``) below ``1 - 1e-6`` too, since the bootstrap
          draws z with the residuals' moments, not the law's ("evt" replaces tail draws by GPD
          draws with the same second moment to sampling error when the tail index is below 1/2,
          the condition ``HeavyTailWarning`` watches). Without residuals (a rebuilt model) "fhs"
          and "evt" cannot run, and only the law is checked.
        * "fhs" and "evt", every spec: the long-run variance with the residuals' own moments
          (``VolDiagnostics.residual_variance_ratio``) at most ``RESIDUAL_VARIANCE_RATIO_LIMIT``
          (4) times the returns' sample variance. Stationary is not enough: EGARCH's exponential
          response turns one extreme residual into a variance jump of exp(alpha abs(z)) (DOGE daily
          EGARCH-ged: 18.8x the data's variance, 0.7% of 30-day filtered paths with a one-day
          |log return| above 2).
        """
        if innovations not in SIMULATION_INNOVATIONS:
            raise SpecificationError(f"innovations must be one of {SIMULATION_INNOVATIONS}, got {innovations!r}")
        reason = _law_explosive_reason(self.params, self.spec, self.diagnostics.persistence)
        if reason is not None:
            return reason
        if innovations == "evt" and self.spec.vol == "EGARCH":
            return "EGARCH with generalized Pareto tails ('evt') has no finite multi-step variance"
        if innovations == "parametric":
            return None
        residual = self.diagnostics.residual_persistence
        if math.isfinite(residual) and abs(residual) >= 1.0 - _STATIONARITY_TOL:
            return f"persistence with the residuals' own moments {residual:.4f} >= 1 ({innovations!r} draws those)"
        ratio = self.diagnostics.residual_variance_ratio
        if math.isfinite(ratio) and ratio > RESIDUAL_VARIANCE_RATIO_LIMIT:
            return (f"the long-run variance with the residuals' own moments is {ratio:.1f}x the returns' sample "
                    f"variance (limit {RESIDUAL_VARIANCE_RATIO_LIMIT:g}x; {innovations!r} draws those residuals, "
                    "and a few extreme ones compound into explosive paths)")
        return None

    def forecast_variance(self, horizon: int, *, simulations: int = 20_000, seed: int | None = 0) -> np.ndarray:
        """Expected conditional variance of the next ``horizon`` periods, (input units)^2.

        Parameters
        ----------
        horizon : int >= 1
        simulations, seed
            Used only for EGARCH at horizons > 1, where arch has no closed form and simulates.

        Returns
        -------
        (horizon,) float64 array: E_T[sigma_{T+h}^2] for h = 1..horizon (analytic for GARCH/GJR).

        Raises
        ------
        SpecificationError
            ``horizon`` below one, or a model rebuilt from numbers (:meth:`from_dict`): the
            forecast is arch's, which needs the fit.
        """
        if int(horizon) < 1:
            raise SpecificationError(f"horizon must be >= 1, got {horizon!r}")
        result = self._fitted("forecast_variance")
        method = "simulation" if (self.spec.vol == "EGARCH" and horizon > 1) else "analytic"
        kwargs: dict[str, Any] = {}
        if method == "simulation":
            kwargs = {"simulations": simulations, "random_state": np.random.RandomState(seed)}
        fc = result.forecast(horizon=int(horizon), reindex=False, method=method, **kwargs)
        return np.asarray(fc.variance.values[-1], dtype=np.float64) / self.scale**2


def fit_volatility(
    returns: pd.Series | np.ndarray | Sequence[float],
    spec: str | VolSpec = "auto",
    *,
    candidates: Sequence[VolSpec] = AUTO_CANDIDATES,
    min_observations: int = MIN_RETURNS,
    name: str | None = None,
    innovations: str | None = None,
) -> VolModel:
    """Fit a GARCH-family model to one market's returns.

    Parameters
    ----------
    returns : Series (preferably on a DatetimeIndex) or 1-d array of log returns, unitless
        Leading NaN (a market that started trading later) are dropped; any other NaN or
        non-finite value is an error.
    spec : VolSpec or "auto"
        "auto" fits every spec in ``candidates`` and keeps the lowest BIC among those that
        converged to a finite, stationary fit (see ``AUTO_CANDIDATES``); with ``innovations``,
        among those safe to simulate with them (:meth:`VolModel.explosive_reason`).
    candidates : sequence of VolSpec
        The candidate set of "auto".
    min_observations : int, default 250
        Fewer returns raise ``InsufficientHistoryError``.
    name : str, optional
        Market name; default the Series name.
    innovations : {"parametric", "fhs", "evt"} or None, default None
        How the model will be simulated. None (a fit for one-step use) checks the fitted law's
        persistence only; a value also checks that every multi-step variance is finite under
        those innovations (the checks of :meth:`VolModel.explosive_reason`, also stated there).

    Returns
    -------
    VolModel
        In the input's units (see the module notes on scaling). ``diagnostics`` records the
        persistence, the residuals' persistence and whether each is stationary; ``rejected``
        the candidates "auto" left out and why.

    Raises
    ------
    DataError, InsufficientHistoryError
        Bad or too few returns.
    FitError
        The likelihood optimiser produced non-finite parameters or likelihood; for "auto": no
        candidate converged to a finite fit that passes the checks (one line naming the market
        and each candidate's reason).
    SpecificationError
        ``innovations`` not one of ``SIMULATION_INNOVATIONS`` or None.

    Warns
    -----
    ConvergenceWarning
        The optimiser did not report convergence (the model is returned; check it).
    ExplosiveVolatilityWarning
        An explicit ``spec`` that fails the checks (persistence >= 1: no finite long-run
        variance; with ``innovations``, also an infinite multi-step variance): the model is
        returned, as asked for. A subclass of ``NonStationaryWarning``.
    """
    if innovations is not None and innovations not in SIMULATION_INNOVATIONS:
        raise SpecificationError(f"innovations must be one of {SIMULATION_INNOVATIONS} or None, got {innovations!r}")
    series = _validate_returns(returns, name)
    if len(series) < min_observations:
        raise InsufficientHistoryError(
            f"market {series.name!r}: {len(series)} returns, fewer than the {min_observations} a volatility fit needs"
        )
    frequency = None
    if "period" in series.attrs:
        frequency = Frequency.from_period(pd.Timedelta(series.attrs["period"]))
    elif isinstance(series.index, pd.DatetimeIndex):
        try:
            frequency = detect_frequency(series.index, max_gap=np.inf)
        except DataError:
            frequency = None
    scale = _choose_scale(series.to_numpy())

    if isinstance(spec, str):
        if spec != "auto":
            raise SpecificationError(f"spec must be a VolSpec or 'auto', got {spec!r}")
        return _fit_auto(series, candidates, scale, frequency, innovations)
    if not isinstance(spec, VolSpec):
        raise SpecificationError(f"spec must be a VolSpec or 'auto', got {type(spec).__name__}")
    model, converged, message = _fit_one(series, spec, scale, frequency)
    if not converged:
        warnings.warn(
            f"market {series.name!r}: {spec} fit did not converge ({message}); the parameters may not be the MLE",
            ConvergenceWarning,
            stacklevel=2,
        )
    reason = _explosive_reason(model, innovations)
    if reason is not None:
        warnings.warn(f"market {model.name!r}: {model.spec} {reason}; simulated variance and paths can explode",
                      ExplosiveVolatilityWarning, stacklevel=2)
    return model


def ljung_box(x: np.ndarray, lags: int) -> tuple[float, float]:
    """Ljung-Box Q statistic and its chi-square(lags) p-value for no autocorrelation in ``x``.

    Q = n (n + 2) sum_{k=1}^{lags} rho_k^2 / (n - k), rho_k the lag-k sample autocorrelation.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    d = x - x.mean()
    # np.sum of products, not BLAS dot: OpenBLAS splits dots of more than about 50,000 terms
    # (an hourly series) across threads, so their last digits follow the thread count.
    denom = float(np.sum(d * d))
    if denom == 0.0:
        return 0.0, 1.0
    rho = np.array([float(np.sum(d[k:] * d[:-k])) / denom for k in range(1, lags + 1)])
    q = n * (n + 2) * float(np.sum(rho**2 / (n - np.arange(1, lags + 1))))
    return q, float(stats.chi2.sf(q, lags))


def _validate_returns(returns: Any, name: str | None) -> pd.Series:
    if isinstance(returns, pd.DataFrame):
        if returns.shape[1] != 1:
            raise DataError(
                f"fit_volatility fits one market; got a DataFrame with columns {list(returns.columns)}: pass returns['<market>']"
            )
        returns = returns.iloc[:, 0]
    if not isinstance(returns, pd.Series):
        values = np.asarray(returns, dtype=np.float64)
        if values.ndim != 1:
            raise DataError(f"returns must be one-dimensional, got shape {values.shape}")
        returns = pd.Series(values)
    attrs = dict(returns.attrs)
    series = pd.to_numeric(returns, errors="coerce").astype(np.float64)
    series.name = name if name is not None else (returns.name if returns.name is not None else "returns")
    values = series.to_numpy()
    started = np.maximum.accumulate(~np.isnan(values))
    bad = started & ~np.isfinite(values)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"market {series.name!r}: return at {series.index[i]} is {float(values[i])!r}; returns must be finite")
    series = series[started]
    if len(series) and np.all(series.to_numpy() == series.iloc[0]):
        raise DataError(f"market {series.name!r}: returns are constant; there is no volatility to fit")
    series.attrs = attrs
    return series


def _choose_scale(values: np.ndarray) -> float:
    # A power of ten that puts the sample standard deviation in [1, 10): arch's optimiser is
    # tuned for percent-like magnitudes and warns (DataScaleWarning) outside them.
    std = float(np.std(values))
    return float(10.0 ** math.ceil(-math.log10(std))) if std > 0 else 1.0


def _fit_one(series: pd.Series, spec: VolSpec, scale: float, frequency: Frequency | None) -> tuple[VolModel, bool, str]:
    am = arch_model(
        series.to_numpy() * scale,
        mean="Constant" if spec.mean == "constant" else "Zero",
        vol="EGARCH" if spec.vol == "EGARCH" else "GARCH",
        p=1,
        o=0 if spec.vol == "GARCH" else 1,
        q=1,
        dist=_ARCH_DIST[spec.dist],
        rescale=False,
    )
    with warnings.catch_warnings(), _one_blas_thread():
        # arch's own ConvergenceWarning is re-issued as ours by the caller.
        warnings.simplefilter("ignore")
        try:
            res = am.fit(disp="off", show_warning=False)
        except (ValueError, np.linalg.LinAlgError, ZeroDivisionError) as exc:
            raise FitError(f"market {series.name!r}: {spec} fit failed in arch: {exc}") from None
    raw = {_PARAM_NAMES[k]: float(v) for k, v in res.params.items()}
    if not all(math.isfinite(v) for v in raw.values()) or not math.isfinite(res.loglikelihood):
        raise FitError(f"market {series.name!r}: {spec} fit produced non-finite parameters {raw} or likelihood")
    params = _unscale_params(raw, spec, scale)
    variance = np.asarray(res.conditional_volatility, dtype=np.float64) ** 2 / scale**2
    std_resid = np.asarray(res.std_resid, dtype=np.float64)
    n = len(series)
    one_step = float(res.forecast(horizon=1, reindex=False).variance.values[-1, 0]) / scale**2
    if not (math.isfinite(one_step) and one_step > 0 and np.all(np.isfinite(std_resid))):
        raise FitError(f"market {series.name!r}: {spec} fit gives a non-finite or non-positive variance")
    log_scale = n * math.log(scale)
    diagnostics = _diagnostics(params, spec, std_resid, frequency, converged=res.convergence_flag == 0,
                               sample_variance=float(np.var(series.to_numpy())))
    model = VolModel(
        spec=spec,
        params=params,
        last_variance=float(variance[-1]),
        next_variance=one_step,
        last_residual=float(series.iloc[-1] - params.get("mu", 0.0)),
        std_resid=std_resid,
        index=series.index,
        loglikelihood=float(res.loglikelihood) + log_scale,
        aic=float(res.aic) - 2 * log_scale,
        bic=float(res.bic) - 2 * log_scale,
        nobs=n,
        diagnostics=diagnostics,
        scale=scale,
        frequency=frequency,
        name=str(series.name),
        typical_volatility=float(np.median(np.sqrt(variance))),
        result=res,
    )
    return model, res.convergence_flag == 0, str(res.optimization_result.message)


_FIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """BLAS on one thread for the fit, so a fit is the same whatever the thread settings.

    arch's optimiser (scipy's SLSQP) calls BLAS/LAPACK, whose last digits depend on the thread
    count: OPENBLAS_NUM_THREADS=1 vs 2 moved fitted GARCH parameters by about 1e-5 relative, and
    the fund target with them (measured, scipy 1.17.1 with its OpenBLAS 0.3.31, arch 8.0; a
    6-variable SLSQP toy problem differs the same way, so it is SLSQP's BLAS, not arch's code).
    No argument of arch or scipy makes SLSQP order-independent, so the thread count is fixed.

    The limit is process-wide (OpenBLAS with pthreads has one pool), and threadpoolctl lets
    only the thread that set it change it back, so fits take turns under a lock, each setting
    and restoring the limit itself; overlapping limits would let one fit's restore end another's
    limit mid-fit. Fits are short (about 0.1 s each); the rest of a calibration runs
    concurrently. Other threads' BLAS calls run on one thread meanwhile: slower, and for
    products of a few terms per sum (the scenario engine's) not different; a BLAS dot over more
    than about 10,000 terms does differ with the thread count (measured), in or out of a fit.
    """
    with _FIT_LOCK, threadpool_limits(limits=1, user_api="blas"):
        yield


def _explosive_reason(model: VolModel, innovations: str | None) -> str | None:
    """Why ``model`` fails the checks for ``innovations`` (None: the fitted law's persistence only), or None."""
    if innovations is None:
        return _persistence_reason(model.diagnostics.persistence)
    return model.explosive_reason(innovations)


def _fit_auto(series: pd.Series, candidates: Sequence[VolSpec], scale: float, frequency: Frequency | None,
              innovations: str | None) -> VolModel:
    if not candidates:
        raise SpecificationError("candidates must name at least one VolSpec")
    fitted: list[VolModel] = []
    rejected: dict[str, str] = {}
    for spec in candidates:
        try:
            model, converged, message = _fit_one(series, spec, scale, frequency)
        except FitError as exc:
            rejected[str(spec)] = str(exc)
            continue
        reason = _explosive_reason(model, innovations)
        if not converged:
            rejected[str(spec)] = f"did not converge ({message})"
        elif reason is not None:
            rejected[str(spec)] = f"non-stationary: {reason}"
        else:
            fitted.append(model)
    if not fitted:
        reasons = "; ".join(f"{k}: {v}" for k, v in rejected.items())
        purpose = "" if innovations is None else f" safe to simulate with innovations {innovations!r}"
        raise FitError(f"market {series.name!r}: no candidate gave a converged, stationary fit{purpose}: {reasons}")
    best = min(fitted, key=lambda m: m.bic)
    selection = {str(m.spec): m.bic for m in fitted}
    return VolModel(**{**best.__dict__, "selection": selection, "rejected": rejected})


def _unscale_params(raw: Mapping[str, float], spec: VolSpec, scale: float) -> dict[str, float]:
    params = dict(raw)
    if "mu" in params:
        params["mu"] /= scale
    if spec.vol == "EGARCH":
        params["omega"] -= 2.0 * (1.0 - params["beta"]) * math.log(scale)
    else:
        params["omega"] /= scale**2
    return params


def _persistence(params: Mapping[str, float], spec: VolSpec) -> float:
    if spec.vol == "EGARCH":
        return params["beta"]
    return params["alpha"] + params["beta"] + params.get("gamma", 0.0) * _negative_share(params, spec)


def _negative_share(params: Mapping[str, float], spec: VolSpec) -> float:
    """E[z^2 1{z<0}] of the fitted unit-variance law: 1/2 for the symmetric ones; arch's partial
    moment for Hansen's skewed t (0.383 at nu = 5, lambda = 0.3)."""
    if spec.dist != "skewt":
        return 0.5
    return float(SkewStudent().partial_moment(2, 0.0, [params["nu"], params["lambda"]]))


def _residual_persistence(params: Mapping[str, float], spec: VolSpec, std_resid: np.ndarray) -> float:
    if std_resid.size == 0:
        return math.nan
    if spec.vol == "EGARCH":
        return params["beta"]
    z2 = std_resid * std_resid
    return params["alpha"] * float(np.mean(z2)) + params.get("gamma", 0.0) * float(np.mean(z2 * (std_resid < 0))) \
        + params["beta"]


#: Largest ``VolDiagnostics.residual_variance_ratio`` a model may have to simulate with "fhs" or "evt"
#: innovations: measured 0.24-2.5 for the specs "auto" picks on every daily and hourly market of
#: shared/data, 18.8 for DOGE daily EGARCH-ged (whose filtered paths reached one-day |log returns|
#: of 80 in benchmarks.decision); 4 leaves room for sampling error and flags only a model whose own
#: draws imply several times the data's variance.
RESIDUAL_VARIANCE_RATIO_LIMIT = 4.0


def _residual_variance_ratio(params: Mapping[str, float], spec: VolSpec, std_resid: np.ndarray,
                             sample_variance: float) -> float:
    """``VolDiagnostics.residual_variance_ratio`` (see there)."""
    if std_resid.size == 0 or not (sample_variance > 0.0):
        return math.nan
    z = std_resid / math.sqrt(float(np.mean(std_resid * std_resid)))
    if spec.vol == "EGARCH":
        beta = params["beta"]
        if abs(beta) >= 1.0 - _STATIONARITY_TOL:
            return math.inf
        g = params["alpha"] * (np.abs(z) - math.sqrt(2.0 / math.pi)) + params.get("gamma", 0.0) * z
        log_mean = params["omega"] / (1.0 - beta)
        coefficient = 1.0
        while coefficient > 1e-12 and log_mean < 700.0:  # beta^k, k = 0, 1, ...: sum log mean exp(beta^k g)
            top = float(np.max(coefficient * g))
            log_mean += top + math.log(float(np.mean(np.exp(coefficient * g - top))))
            coefficient *= abs(beta)
        return math.exp(log_mean - math.log(sample_variance)) if log_mean < 700.0 else math.inf
    persistence = params["alpha"] + params["beta"] + params.get("gamma", 0.0) * float(np.mean(z * z * (z < 0)))
    if persistence >= 1.0 - _STATIONARITY_TOL:
        return math.inf
    return params["omega"] / (1.0 - persistence) / sample_variance


#: Exponential-moment rate of the unit-variance Laplace law (GED shape 1): density exp(-sqrt(2) |z|) / sqrt(2).
_LAPLACE_RATE = math.sqrt(2.0)


def _persistence_reason(persistence: float) -> str | None:
    if abs(persistence) < 1.0 - _STATIONARITY_TOL:
        return None
    return f"persistence {persistence:.6f} >= 1 (no finite long-run variance)"  # nan lands here too


def _law_explosive_reason(params: Mapping[str, float], spec: VolSpec, persistence: float) -> str | None:
    """The fitted law's checks of :meth:`VolModel.explosive_reason` (see its Notes)."""
    reason = _persistence_reason(persistence)
    if reason is not None or spec.vol != "EGARCH":
        return reason
    beta, alpha, gamma = params["beta"], params["alpha"], params.get("gamma", 0.0)
    # Coefficients of z (z > 0) and |z| (z < 0) in ln v_{t+h}: beta^k (alpha +- gamma); the largest at k = 0, 1.
    largest = max(c for side in (alpha + gamma, alpha - gamma) for c in (side, beta * side))
    if largest <= 0.0:
        return None
    nu = params.get("nu", math.inf)
    if spec.dist in ("t", "skewt"):
        finite = False
    elif spec.dist == "ged":
        finite = nu > 1.0 or (nu == 1.0 and largest < _LAPLACE_RATE)
    else:
        finite = True
    if finite:
        return None
    return (f"E[exp({largest:.3g} |z|)] is infinite under the {spec.dist} law, so the EGARCH variance two or more "
            "periods ahead is infinite")


def _diagnostics(
    params: Mapping[str, float], spec: VolSpec, std_resid: np.ndarray, frequency: Frequency | None, *, converged: bool,
    sample_variance: float = math.nan,
) -> VolDiagnostics:
    persistence = _persistence(params, spec)
    stationary = persistence < 1.0 - _STATIONARITY_TOL
    if spec.vol == "EGARCH":
        # E[ln sigma^2] = (omega + alpha (E|z| - sqrt(2/pi)) + gamma E[z]) / (1 - beta); arch centres
        # |z| with the Gaussian sqrt(2/pi) whatever the distribution, so the fitted residuals'
        # own moments are used (for t(3) innovations the difference moves the level by 10x).
        drift = params["alpha"] * (float(np.mean(np.abs(std_resid))) - math.sqrt(2.0 / math.pi))
        drift += params.get("gamma", 0.0) * float(np.mean(std_resid))
        log_uncond = (params["omega"] + drift) / (1.0 - params["beta"]) if stationary else math.inf
        # beta near 1 on a short history can put the long-run log variance past float range (e.g. 300
        # daily returns): that level is infinite for every purpose, as for a non-stationary fit.
        uncond = math.exp(log_uncond) if log_uncond < math.log(np.finfo(float).max) else math.inf
    else:
        uncond = params["omega"] / (1.0 - persistence) if stationary else math.inf
    if not stationary:
        half_life = math.inf
    else:
        half_life = math.log(0.5) / math.log(persistence) if persistence > 0.0 else 0.0
    ppy = frequency.periods_per_year if frequency is not None else math.nan
    _, pvalue = ljung_box(std_resid**2, _LJUNG_BOX_LAGS)
    residual_persistence = _residual_persistence(params, spec, std_resid)
    return VolDiagnostics(
        converged=converged,
        persistence=persistence,
        half_life=half_life,
        unconditional_variance=uncond,
        annualized_volatility=math.sqrt(uncond * ppy) if math.isfinite(uncond) else math.inf,
        periods_per_year=ppy,
        ljung_box_pvalue=pvalue,
        ljung_box_lags=_LJUNG_BOX_LAGS,
        stationary=_law_explosive_reason(params, spec, persistence) is None,
        residual_persistence=residual_persistence,
        residual_stationary=None if math.isnan(residual_persistence) else residual_persistence < 1.0 - _STATIONARITY_TOL,
        residual_variance_ratio=_residual_variance_ratio(params, spec, std_resid, sample_variance),
    )
