"""``python -m benchmarks.backtest``: would the fund have held up on real crypto history?

Walk-forward on real daily BTC, ETH and SOL prices (Binance spot closes, the project's
``shared/data``). At the end of every month:

1. recalibrate on the trailing ``WINDOW`` days: GJR-GARCH per market (GJR-normal for the
   "normal" variant, GJR-t for the others), copula or bootstrap as the innovation scheme says;
2. simulate N scenarios of the next month and choose the fund target and fees with each method;
3. carry the fund through the next month: the *realised* returns, with the model's conditional
   volatility filtered through them day by day (parameters frozen at the recalibration), are
   pushed through the venue's loss model (a one-path :class:`ReturnPaths`), and the fund
   ``F0 + cumsum(p . B - L)`` is followed; the month's drawdown is compared with the target
   and a month whose fund would have gone below zero is an *exhaustion*;
4. every day, the model's one-day-ahead 99 % quantile of the venue's loss (from the same
   state, the innovation law of the variant) is compared with the realised loss: breaches are
   tested with Kupiec's proportion-of-failures test and Christoffersen's independence test.

Innovation variants: "normal" (GJR-normal, Gaussian copula), "student-t" (GJR-t, t copula),
"fhs" (GJR-t filter, whole dates of residuals bootstrapped), "evt" (FHS with generalized Pareto
tails). Methods: "cvar", "exact", "certified" ("scenario" is too slow to re-run every month; the
methods benchmark places it).

Markets join the book once they have a whole trailing window (SOL from 2022-08). The book and
the problem are the methods benchmark's (``benchmarks.methods.BOOK`` / ``PROBLEM``): an
illustrative book held fixed through time, so months are comparable. The economics too
(issue 16): the book answers its fees (participation, elasticity 1, observed at the rates in
force 0.5 %; ``benchmarks.methods.world_problem`` from each month's simulated fee base and the
book's daily volume x the month's days), each method searches its rates, the fee's cost is
derived, and the realised month is carried through the book at the policy's fees (each
market's losses and fee base times its participation share).

Finally the reported insurance-fund drawdowns of March and May 2020
(``insurance_fund_events_reported.csv``, press-reported, approximate) are placed next to the
model's predicted distribution of the fund's drawdown over the same days, relative to the
fund target in force.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import special, stats

from fundguard.models import (
    Copula,
    Market,
    ReturnPaths,
    VenueBook,
    VolModel,
    VolSpec,
    build_scenarios,
    fit_copula,
    fit_volatility,
    load_prices,
    log_returns,
    simulate_returns,
)
from fundguard.models.errors import FundguardError
from fundguard.optimizer import compare_methods
from fundguard.optimizer.participation import mean_market_bases

from . import _common
from .methods import BOOK, ELASTICITY, PROBLEM, RATES_IN_FORCE, world_problem

MODULE = "benchmarks.backtest"
SEED = 7

#: Trailing calibration window, days (two years: enough for GJR-t and the EVT tails, short
#: enough to follow regime changes).
WINDOW = 730
#: The daily loss quantile that is backtested.
QUANTILE = 0.99
EVENTS_FILE = "insurance_fund_events_reported.csv"
#: Fund targets above this (millions) are drawn at it: a fitted t with nu < 3 can put an exploding
#: path in the simulated tail, which CVaR averages in.
FIGURE_CAP = 1e5

#: Innovation variants: (volatility spec, innovations of simulate_returns, copula family).
VARIANTS: dict[str, tuple[VolSpec, str, str]] = {
    "normal": (VolSpec("GJR", "normal"), "parametric", "gaussian"),
    "student-t": (VolSpec("GJR", "t"), "parametric", "t"),
    "fhs": (VolSpec("GJR", "t"), "fhs", "t"),
    "evt": (VolSpec("GJR", "t"), "evt", "t"),
}
#: Methods compared month by month. "scenario" is left out: its greedy discarding re-solves a linear
#: program some 60 times per month and variant (15 of 21 s of a three-market month, measured), and
#: the methods benchmark already places it. "cvar" and "certified" use the cutting-plane engine
#: (the same optimum as the cvxpy program, to 1e-9, several times faster).
METHODS = ("cvar", "exact", "certified")
#: "exact" gets 10 s a month (default 60): in calm months, where fees nearly cover the tail, its
#: mixed-integer program has thousands of candidate scenarios; a time-limited answer still has at
#: most floor(alpha N) ruins (status "feasible", counted in the report).
METHOD_OPTIONS = {"cvar": {"engine": "cutting-plane"}, "certified": {"engine": "cutting-plane"},
                  "exact": {"time_limit": 10.0}}

#: Event windows (first day, last day) whose fund drawdowns are compared with the reports.
#: May 2021 is named by the issue but the events file has no row for it: the model's side is
#: shown for the 19 May 2021 crash anyway.
EVENT_WINDOWS: dict[str, tuple[str, str]] = {
    "March 2020": ("2020-03-12", "2020-03-13"),
    "May 2020": ("2020-05-10", "2020-05-11"),
    "May 2021": ("2021-05-19", "2021-05-20"),
}


@dataclass(frozen=True)
class Sizes:
    """n_scenarios: scenarios per recalibration and variant; n_quantile: one-day draws for the
    daily loss quantile; n_event: paths of each event window's predicted distribution;
    months: the test months (None: every month with a whole window before it)."""

    n_scenarios: int
    n_quantile: int
    n_event: int
    months: tuple[str, str] | None


# Full: 76 months x 4 variants x 3 methods. 8,000 scenarios per recalibration keep the run to a
# few minutes on 2 cores (about 0.2-2 s of solving per month and variant) and leave 2,000 for the
# certificate of "certified" (459 are needed at 1 %, 99 % with no ruin; with 4,000 scenarios it
# could not certify in 16 of 304 month-variants).
# With participation every method searches its rates (some 200 solves at fixed rates each): a
# month and variant then takes about 150-165 s on 2 shared cores (measured 2026-12-01, March 2023,
# exact 21-31 s, cvar 20-28 s, certified 92-96 s), so the full run's 304 month-variants take some
# 13 hours there. The quick mode (the test suite's) runs March 2020 alone, 4 month-variants.
FULL = Sizes(n_scenarios=8_000, n_quantile=10_000, n_event=50_000, months=None)
QUICK = Sizes(n_scenarios=3_000, n_quantile=4_000, n_event=10_000, months=("2020-03", "2020-03"))


# --------------------------------------------------------------------------------------------
# Coverage tests
# --------------------------------------------------------------------------------------------


def kupiec_pof(breaches: Sequence[bool] | np.ndarray, p: float) -> tuple[float, float]:
    """Kupiec's proportion-of-failures likelihood ratio and its chi-square(1) p-value.

    Parameters
    ----------
    breaches : (n,) bool, True on a day the realised loss exceeded the forecast quantile
    p : float in (0, 1), the expected breach probability (1 - quantile level)

    Returns
    -------
    (LR, p-value)

    Notes
    -----
    With x breaches in n days (Kupiec 1995)::

        LR = -2 ln[ (1 - p)^(n - x) p^x ] + 2 ln[ (1 - x/n)^(n - x) (x/n)^x ]  ~  chi2(1)

    with 0 ln 0 = 0.
    """
    hits = np.asarray(breaches, dtype=bool)
    n, x = hits.size, int(hits.sum())
    rate = x / n
    null = special.xlogy(n - x, 1.0 - p) + special.xlogy(x, p)
    alternative = special.xlogy(n - x, 1.0 - rate) + special.xlogy(x, rate)
    lr = max(0.0, float(-2.0 * (null - alternative)))
    return lr, float(stats.chi2.sf(lr, 1))


def christoffersen_independence(breaches: Sequence[bool] | np.ndarray) -> tuple[float, float]:
    """Christoffersen's test that breaches do not cluster: LR and its chi-square(1) p-value.

    Notes
    -----
    With n_ij the number of days in state j after a day in state i (1 = breach),
    pi_0 = n01 / (n00 + n01), pi_1 = n11 / (n10 + n11), pi = (n01 + n11) / (n - 1)
    (Christoffersen 1998)::

        LR = -2 ln[ (1 - pi)^(n00 + n10) pi^(n01 + n11) ]
             + 2 ln[ (1 - pi_0)^n00 pi_0^n01 (1 - pi_1)^n10 pi_1^n11 ]  ~  chi2(1)

    with 0 ln 0 = 0 (a sample without breaches, or without a breach followed by anything,
    gives LR = 0).
    """
    hits = np.asarray(breaches, dtype=bool)
    before, after = hits[:-1], hits[1:]
    n00 = int(np.sum(~before & ~after))
    n01 = int(np.sum(~before & after))
    n10 = int(np.sum(before & ~after))
    n11 = int(np.sum(before & after))
    pi = (n01 + n11) / max(1, n00 + n01 + n10 + n11)
    pi0 = n01 / (n00 + n01) if n00 + n01 else 0.0
    pi1 = n11 / (n10 + n11) if n10 + n11 else 0.0
    null = special.xlogy(n00 + n10, 1.0 - pi) + special.xlogy(n01 + n11, pi)
    alternative = (special.xlogy(n00, 1.0 - pi0) + special.xlogy(n01, pi0)
                   + special.xlogy(n10, 1.0 - pi1) + special.xlogy(n11, pi1))
    lr = max(0.0, float(-2.0 * (null - alternative)))
    return lr, float(stats.chi2.sf(lr, 1))


def binomial_excess_pvalue(count: int, n: int, p: float) -> float:
    """P(X >= count) for X ~ Binomial(n, p): how surprising ``count`` exhaustions are."""
    return float(stats.binom.sf(count - 1, n, p)) if count > 0 else 1.0


# --------------------------------------------------------------------------------------------
# Data and models
# --------------------------------------------------------------------------------------------


def load_returns(data: Path) -> pd.DataFrame:
    """Daily log returns of BTC, ETH, SOL (SOL NaN before its listing), UTC dates."""
    columns = []
    for name, filename in _common.DAILY_FILES.items():
        prices = load_prices(data / filename, name=name)
        columns.append(log_returns(prices)[name])
    return pd.concat(columns, axis=1, join="outer").sort_index()


def gjr_filter(model: VolModel, returns: np.ndarray) -> np.ndarray:
    """Conditional volatility (D,) of the days of ``returns`` (D,), parameters frozen.

    sigma_1^2 is the model's one-step forecast; then
    sigma_{t+1}^2 = omega + (alpha + gamma 1[eps_t < 0]) eps_t^2 + beta sigma_t^2, eps_t = r_t - mu.
    """
    p = model.params
    variance = np.empty(returns.size)
    s2 = model.next_variance
    for t, r in enumerate(returns):
        variance[t] = s2
        eps = r - p.get("mu", 0.0)
        s2 = p["omega"] + (p["alpha"] + p.get("gamma", 0.0) * (eps < 0.0)) * eps * eps + p["beta"] * s2
    return np.sqrt(variance)


def book(markets: Sequence[str]) -> VenueBook:
    """The methods benchmark's book restricted to ``markets``."""
    return VenueBook([Market(n, open_interest=oi, daily_volume=adv) for n, oi, adv in BOOK if n in markets])


@dataclass
class Calibration:
    """One variant's models at one recalibration date."""

    models: dict[str, VolModel]
    copula: Copula | None

    def simulate(self, variant: str, horizon: int, n: int, seed: np.random.SeedSequence,
                 models: Mapping[str, VolModel] | None = None):
        _, innovations, _ = VARIANTS[variant]
        return simulate_returns(models or self.models, horizon, n, innovations=innovations, seed=seed,
                                copula=self.copula if self.copula is not None else "t")


def calibrate(window: pd.DataFrame, spec: VolSpec, family: str) -> Calibration:
    """Fit ``spec`` to every column of ``window`` and the copula of the residuals."""
    models = {}
    for name in window:
        series = window[name].rename(name)
        models[name] = fit_volatility(series, spec)
    residuals = np.column_stack([m.std_resid for m in models.values()])
    copula = fit_copula(residuals, family, tuple(models)) if len(models) > 1 else None
    return Calibration(models, copula)


def innovation_draws(calibration: Calibration, variant: str, n: int, seed: np.random.SeedSequence) -> np.ndarray:
    """(n, J) joint one-day innovations of the variant (unit variance, zero mean)."""
    unit = {name: dataclasses.replace(m, params={**m.params, "mu": 0.0}, next_variance=1.0)
            for name, m in calibration.models.items()}
    # With mu = 0 and sigma_1 = 1 the first simulated return is the innovation itself.
    return calibration.simulate(variant, 1, n, seed, models=unit).returns[:, 0, :]


# --------------------------------------------------------------------------------------------
# One month
# --------------------------------------------------------------------------------------------


@dataclass
class MonthResult:
    """What one variant did in one test month."""

    month: str
    variant: str
    markets: tuple[str, ...]
    days: pd.DatetimeIndex
    realised_loss: np.ndarray          # (D,) currency units
    quantile: np.ndarray               # (D,) forecast 99 % quantile of the day's loss
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> fund, rates, drawdown


def run_month(returns: pd.DataFrame, month: pd.Period, variant: str, calibration: Calibration, sizes: Sizes,
              seed: np.random.SeedSequence) -> MonthResult:
    """Choose the policies for ``month`` and carry them through its realised days."""
    days = returns.loc[str(month)].index
    markets = tuple(calibration.models)
    venue = book(markets)
    horizon = days.size
    seeds = seed.spawn(2)

    # 2. policies on simulated scenarios of the month; the book answers the fees (participation
    # from the month's mean fee base and the book's volume over the month, rates in force 0.5 %)
    scenarios = build_scenarios(calibration.simulate(variant, horizon, sizes.n_scenarios, seeds[0]), venue)
    problem = world_problem(mean_market_bases(scenarios), days=horizon, markets=markets)
    table = compare_methods(problem, scenarios, METHODS, errors="record", options=METHOD_OPTIONS)

    # 3. the realised month, with the model's volatility filtered through it
    realised_r = returns.loc[days, list(markets)].to_numpy()
    sigma = np.column_stack([gjr_filter(calibration.models[m], realised_r[:, j]) for j, m in enumerate(markets)])
    realised = build_scenarios(ReturnPaths(returns=realised_r[None], volatility=sigma[None], markets=markets,
                                           period=pd.Timedelta("1D")), venue)
    # 4. one-day-ahead loss quantiles: today's sigma, the variant's innovations (same draws every day)
    z = innovation_draws(calibration, variant, sizes.n_quantile, seeds[1])
    mu = np.array([calibration.models[m].params.get("mu", 0.0) for m in markets])
    forecast = ReturnPaths(returns=mu + sigma[None] * z[:, None, :],
                           volatility=np.broadcast_to(sigma[None], (z.shape[0], *sigma.shape)).copy(),
                           markets=markets, period=pd.Timedelta("1D"))
    quantile = np.quantile(build_scenarios(forecast, venue).losses, QUANTILE, axis=0)

    result = MonthResult(str(month), variant, markets, days, realised.losses[0], quantile)
    rate_columns = [f"rate[{m}]" for m in markets]
    for method, row in table.iterrows():
        if str(row["status"]).startswith("error"):
            result.policies[method] = {"error": str(row["status"])}
            continue
        rates = row[rate_columns].to_numpy(dtype=np.float64)
        fund = float(row["fund_target"])
        # the realised month through the book at the policy's fees (S(p): each market times its share)
        shares = problem.participation.shares(rates)
        net = np.cumsum(realised.losses_by_market[0] @ shares - realised.premium_base[0] @ (rates * shares))
        drawdown = float(max(0.0, net.max()))
        open_interest = float(sum(oi * shares[markets.index(n)] for n, oi, _ in BOOK if n in markets))
        result.policies[method] = {
            "fund_target": fund, "rates": dict(zip(markets, map(float, rates))), "objective": float(row["objective"]),
            "shares": dict(zip(markets, map(float, shares))), "fund_share_of_open_interest": fund / open_interest,
            # a fund target below one currency unit is no fund: any drawdown exhausts it
            "drawdown": drawdown, "drawdown_share": drawdown / fund if fund >= 1.0 else (math.inf if drawdown > 0 else 0.0),
            "exhausted": bool(fund + (-net).min() < PROBLEM.floor) if net.size else False,
            "status": str(row["status"]), "in_sample_ruin": float(row["in_sample_ruin"]),
            "solve_seconds": float(row["solve_seconds"]),
        }
    return result


# --------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------


def reported_drawdowns(path: Path) -> pd.DataFrame:
    """Fund drawdowns that the events file lets one express as a share of the fund.

    A row with a negative ``change`` and a ``balance`` after it: share = -change / (balance -
    change). A row with a change and no balance: the previous balance of the same fund, when
    one is reported (BitMEX's intraday figure). Rows with no fund size are kept with share NaN.
    """
    frame = pd.read_csv(path, parse_dates=["date"])
    rows = []
    last_balance: dict[tuple[str, str], float] = {}
    for _, r in frame.iterrows():
        key = (r["exchange"], str(r["fund"]).replace(" (intraday)", ""))
        change, balance = r["change"], r["balance"]
        if pd.notna(change) and change < 0:
            if pd.notna(balance):
                before = balance - change
            else:
                before = last_balance.get(key, math.nan)
            rows.append({"date": r["date"], "exchange": r["exchange"], "fund": r["fund"], "currency": r["currency"],
                         "change": change, "before": before, "share": -change / before if before == before else math.nan,
                         "note": r["note"]})
        if pd.notna(balance):
            last_balance[key] = float(balance)
    return pd.DataFrame(rows)


@dataclass
class EventResult:
    name: str
    window: tuple[str, str]
    month: str
    predicted: dict[str, np.ndarray]   # variant -> predicted drawdown shares (n_event,)
    fund: dict[str, float]             # variant -> certified fund target of the month
    realised: dict[str, float]         # variant -> realised drawdown share of the window
    reported: pd.DataFrame


def event_distribution(returns: pd.DataFrame, calibration: Calibration, variant: str, window: tuple[str, str],
                       rates: np.ndarray, n: int, seed: np.random.SeedSequence,
                       shares: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Predicted and realised required fund of the event window, from the state of its first day;
    on the book at the policy's fees when its participation ``shares`` (J,) are given."""
    shares = np.ones(len(rates)) if shares is None else np.asarray(shares, dtype=np.float64)
    first, last = pd.Timestamp(window[0], tz="UTC"), pd.Timestamp(window[1], tz="UTC")
    month_start = first.to_period("M").start_time.tz_localize("UTC")
    markets = tuple(calibration.models)
    before = returns.loc[month_start:first, list(markets)].to_numpy()  # month's days up to the event's first day
    sigma = np.column_stack([gjr_filter(calibration.models[m], before[:, j]) for j, m in enumerate(markets)])
    start = {m: dataclasses.replace(calibration.models[m], next_variance=float(sigma[-1, j] ** 2))
             for j, m in enumerate(markets)}
    horizon = int((last - first).days) + 1
    venue = book(markets)
    predicted = build_scenarios(calibration.simulate(variant, horizon, n, seed, models=start), venue)
    required = np.maximum(0.0, np.cumsum(predicted.losses_by_market @ shares - predicted.premium_base @ (rates * shares),
                                         axis=1).max(axis=1))
    realised_r = returns.loc[first:last, list(markets)].to_numpy()
    realised_sigma = np.column_stack([gjr_filter(start[m], realised_r[:, j]) for j, m in enumerate(markets)])
    realised = build_scenarios(ReturnPaths(returns=realised_r[None], volatility=realised_sigma[None], markets=markets,
                                           period=pd.Timedelta("1D")), venue)
    realised_required = float(max(0.0, np.cumsum(realised.losses_by_market[0] @ shares
                                                 - realised.premium_base[0] @ (rates * shares)).max()))
    return required, realised_required


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def coverage_rows(months: Sequence[MonthResult]) -> list[dict[str, Any]]:
    """Per variant: breaches of the daily 99 % loss quantile and the two tests."""
    rows = []
    for variant in VARIANTS:
        mine = [m for m in months if m.variant == variant]
        if not mine:
            continue
        realised = np.concatenate([m.realised_loss for m in mine])
        quantile = np.concatenate([m.quantile for m in mine])
        hits = realised > quantile
        lr_pof, p_pof = kupiec_pof(hits, 1.0 - QUANTILE)
        lr_ind, p_ind = christoffersen_independence(hits)
        rows.append({"variant": variant, "days": int(hits.size), "breaches": int(hits.sum()),
                     "expected": (1.0 - QUANTILE) * hits.size, "rate": float(hits.mean()),
                     "kupiec_lr": lr_pof, "kupiec_p": p_pof, "christoffersen_lr": lr_ind, "christoffersen_p": p_ind,
                     "conditional_coverage_p": float(stats.chi2.sf(lr_pof + lr_ind, 2)),
                     "breach_days": [str(d.date()) for m in mine for d, h in zip(m.days, m.realised_loss > m.quantile) if h]})
    return rows


def fund_rows(months: Sequence[MonthResult]) -> list[dict[str, Any]]:
    """Per (variant, method): fund targets, realised drawdowns, exhausted months."""
    rows = []
    for variant in VARIANTS:
        for method in METHODS:
            records = [(m.month, m.policies[method]) for m in months
                       if m.variant == variant and "error" not in m.policies.get(method, {"error": 1})]
            errors = [m.month for m in months if m.variant == variant and "error" in m.policies.get(method, {})]
            if not records:
                rows.append({"variant": variant, "method": method, "months": 0, "errors": errors})
                continue
            funds = np.array([p["fund_target"] for _, p in records])
            shares = np.array([p["drawdown_share"] for _, p in records])
            exhausted = [month for month, p in records if p["exhausted"]]
            rates = {m: float(np.median([p["rates"][m] for _, p in records if m in p["rates"]]))
                     for m in dict.fromkeys(m for _, p in records for m in p["rates"])}
            rows.append({
                "variant": variant, "method": method, "months": len(records), "errors": errors,
                "median_fund": float(np.median(funds)), "max_fund": float(funds.max()),
                "median_fund_share_of_open_interest": float(np.median([p["fund_share_of_open_interest"]
                                                                       for _, p in records])),
                "median_rates": rates,
                "max_fund_month": records[int(funds.argmax())][0],
                "median_cost": float(np.median([p["objective"] for _, p in records])),
                "median_drawdown_share": float(np.median(shares)), "max_drawdown_share": float(shares.max()),
                "exhausted": exhausted, "expected_exhausted": PROBLEM.alpha * len(records),
                "not_proven_optimal": [month for month, p in records if p["status"] == "feasible"],
                "median_solve_seconds": float(np.median([p["solve_seconds"] for _, p in records])),
                "max_solve_seconds": float(max(p["solve_seconds"] for _, p in records)),
                "exhaustion_p": binomial_excess_pvalue(len(exhausted), len(records), PROBLEM.alpha),
            })
    return rows


def previous_rows(months: Sequence[MonthResult], previous: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per (variant, method), on the months both runs have: this run's median fund target, fees
    and exhausted months next to a previous run's (its JSON payload)."""
    then = {(m["month"], m["variant"]): m["policies"] for m in previous.get("months", [])}
    rows = []
    for variant in VARIANTS:
        for method in METHODS:
            pairs = [(m.month, then[(m.month, variant)][method], m.policies[method]) for m in months
                     if m.variant == variant and (m.month, variant) in then
                     and "error" not in then[(m.month, variant)].get(method, {"error": 1})
                     and "error" not in m.policies.get(method, {"error": 1})]
            if not pairs:
                continue
            row: dict[str, Any] = {"variant": variant, "method": method, "months": len(pairs)}
            for side, index in (("then", 1), ("now", 2)):
                policies = [p[index] for p in pairs]
                row[f"{side}_median_fund"] = float(np.median([p["fund_target"] for p in policies]))
                names = list(dict.fromkeys(m for p in policies for m in p["rates"]))
                row[f"{side}_median_rates"] = {m: float(np.median([p["rates"][m] for p in policies if m in p["rates"]]))
                                               for m in names}
                row[f"{side}_exhausted"] = [month for month, *both in pairs if both[index - 1]["exhausted"]]
            rows.append(row)
    return rows


def _fees(rates: Mapping[str, float]) -> str:
    return " / ".join(f"{100 * v:.2f}" for v in rates.values()) if rates else "n/a"


def _money(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{x:.2g}" if x >= 1e15 else f"{x / 1e6:,.1f}m"


def _share(x: float) -> str:
    return "no fund" if math.isinf(x) else (f"{x:.0f}x" if x >= 10 else f"{x:.0%}")


def figure_breaches(months: Sequence[MonthResult], prov: _common.Provenance, path: Path) -> Path:
    """Realised daily venue loss against each variant's forecast 99 % quantile."""
    fig, axes = plt.subplots(len(VARIANTS), 1, figsize=(12, 2.4 * len(VARIANTS)), sharex=True, squeeze=False)
    for ax, variant in zip(axes[:, 0], VARIANTS):
        mine = [m for m in months if m.variant == variant]
        days = np.concatenate([m.days.to_numpy() for m in mine])
        realised = np.concatenate([m.realised_loss for m in mine])
        quantile = np.concatenate([m.quantile for m in mine])
        hits = realised > quantile
        ax.plot(days, np.maximum(quantile, 1.0), color="tab:blue", lw=0.8, label="forecast 99% quantile")
        ax.plot(days, np.maximum(realised, 1.0), color="0.5", lw=0.5, label="realised loss")
        ax.plot(days[hits], realised[hits], "v", color="tab:red", ms=4, label=f"breach ({hits.sum()} of {hits.size})")
        ax.set_yscale("log")
        ax.set_ylim(1e4, None)
        ax.set_ylabel(variant)
        ax.legend(loc="upper left", fontsize=7, ncol=3)
    axes[0, 0].set_title("Daily venue loss (currency units, log scale) vs the model's one-day-ahead 99% quantile")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return _common.save_figure(fig, path, prov)


def figure_funds(months: Sequence[MonthResult], prov: _common.Provenance, path: Path, method: str = "certified") -> Path:
    """Monthly fund target of ``method`` per variant against the realised drawdown of the month."""
    fig, axes = plt.subplots(2, 1, figsize=(12, 7), sharex=True)
    colours = {"normal": "tab:orange", "student-t": "tab:blue", "fhs": "tab:green", "evt": "tab:purple"}
    for variant, colour in colours.items():
        mine = [m for m in months if m.variant == variant and "error" not in m.policies.get(method, {"error": 1})]
        if not mine:
            continue
        x = [pd.Timestamp(m.month) for m in mine]
        funds = np.array([m.policies[method]["fund_target"] for m in mine])
        drawdowns = np.array([m.policies[method]["drawdown"] for m in mine])
        shares = np.array([m.policies[method]["drawdown_share"] for m in mine])
        axes[0].step(x, np.clip(funds / 1e6, 0.1, FIGURE_CAP), where="post", color=colour, label=f"{variant}: fund target")
        axes[1].plot(x, np.minimum(shares, 2.0), "o-", color=colour, ms=3, lw=0.8, label=variant)
        if variant == "student-t":
            axes[0].bar(x, drawdowns / 1e6, width=20, color="0.6", label="realised drawdown (student-t rates)")
    axes[0].set_ylabel("fund, millions (log)")
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=7, ncol=3)
    axes[0].set_title(f"Method '{method}': fund target set each month vs the month's realised drawdown")
    axes[1].axhline(1.0, color="tab:red", ls="--", lw=1, label="fund exhausted")
    axes[1].set_ylabel("drawdown / target (cap 2)")
    axes[1].legend(fontsize=7, ncol=5)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return _common.save_figure(fig, path, prov)


def figure_events(events: Sequence[EventResult], prov: _common.Provenance, path: Path) -> Path | None:
    """Predicted drawdown-share distributions of each event window with the reported drawdowns."""
    if not events:
        return None
    fig, axes = plt.subplots(1, len(events), figsize=(5.5 * len(events), 4.6), squeeze=False)
    colours = {"normal": "tab:orange", "student-t": "tab:blue", "fhs": "tab:green", "evt": "tab:purple"}
    for ax, event in zip(axes[0], events):
        grid = np.logspace(-4, 1, 400)
        for variant, shares in event.predicted.items():
            ax.plot(grid, [(shares > g).mean() for g in grid], color=colours[variant], label=f"{variant} (predicted)")
            realised = event.realised[variant]
            if variant == "student-t":
                ax.axvline(max(realised, 1e-4), color="k", lw=1.2, label=f"realised through our book: {realised:.1%}")
        for i, (_, r) in enumerate(event.reported.dropna(subset=["share"]).iterrows()):
            ax.axvline(r["share"], color="tab:red", ls=":", lw=1)
            ax.text(r["share"], 0.5 ** (i + 1), f" {r['exchange']} {r['share']:.0%}", color="tab:red", fontsize=7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(1e-4, 1.2)
        ax.set_xlabel("drawdown over the window / fund target in force")
        ax.set_ylabel("P(drawdown share > x)")
        ax.set_title(f"{event.name}: {event.window[0]} .. {event.window[1]}", fontsize=10)
        ax.legend(fontsize=6, loc="lower left")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _common.save_figure(fig, path, prov)


def report(months: Sequence[MonthResult], events: Sequence[EventResult], sizes: Sizes, prov: _common.Provenance,
           quick: bool, figures: Sequence[str], seconds: float, span: str,
           previous: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    coverage = coverage_rows(months)
    funds = fund_rows(months)
    against = previous_rows(months, previous) if previous else []
    lines = ["# Walk-forward backtest on real BTC / ETH / SOL history" + (" (QUICK MODE)" if quick else ""), "",
             prov.markdown(), f"- wall time: {seconds:.0f} s", ""]
    if quick:
        lines += [f"> Quick mode: test months {span} only, {sizes.n_scenarios:,} scenarios per recalibration; "
                  "for tests, not for conclusions.", ""]
    lines += [
        "## Setup", "",
        f"- Test months: {span} ({len({m.month for m in months})} months); recalibrated at each month end on the "
        f"trailing {WINDOW} days; a market joins the book once it has a whole window.",
        "- Book and problem: the methods benchmark's (illustrative book BTC 2bn / ETH 1bn / SOL 0.3bn open interest, "
        f"alpha = {PROBLEM.alpha:.0%} over the month, fees 0-{PROBLEM.premium_max:.2%}); the fund is reset to its "
        "target at each month start.",
        f"- Economics (issue 16), as in the methods benchmark: the book answers its fees (participation share "
        f"pi_j = 1 - eps_j (p_j - r_j), elasticity {ELASTICITY:g}, observed at the rates in force r_j = "
        f"{RATES_IN_FORCE:.2%}; eps_j from the month's simulated mean fee base and the book's daily volume x the "
        "month's days); the fee's cost is derived (premium_weight 0); each method searches its rates. The realised "
        "month is carried through the book at the policy's fees (each market's losses and fee base times pi_j).",
        f"- {sizes.n_scenarios:,} scenarios per recalibration and variant (bounded so the full run takes a few "
        f"minutes on 2 cores); {sizes.n_quantile:,} one-day draws per day for the loss quantile.",
        "- Realised losses: the month's real returns with the variant's conditional volatility filtered through them "
        "(parameters frozen at the recalibration), through the default loss model (the stateful book; closes only, so its intraday extremes are the Brownian-bridge fallback). The normal variant's "
        "volatility filter differs from the GJR-t one, so its realised losses differ slightly.",
        "",
        f"## Daily loss quantile ({QUANTILE:.0%}, one day ahead)", "",
    ]
    lines.append(_common.markdown_table(
        ["Innovations", "Days", "Breaches", "Expected", "Rate", "Kupiec LR (p)", "Christoffersen LR (p)",
         "Cond. coverage p"],
        [[r["variant"], r["days"], r["breaches"], f"{r['expected']:.1f}", f"{r['rate']:.2%}",
          f"{r['kupiec_lr']:.2f} ({r['kupiec_p']:.3f})", f"{r['christoffersen_lr']:.2f} ({r['christoffersen_p']:.3f})",
          f"{r['conditional_coverage_p']:.3f}"] for r in coverage]))
    lines += ["", "Breach days: " + "; ".join(f"{r['variant']}: {', '.join(r['breach_days']) or 'none'}"
                                               for r in coverage), ""]
    lines += ["## Fund targets and realised drawdowns", ""]
    lines.append(_common.markdown_table(
        ["Innovations", "Method", "Months", "Median fund target", "Median fund / OI", "Median fees % (BTC/ETH/SOL)",
         "Largest fund target (month)", "Median objective", "Median drawdown / target", "Max drawdown / target",
         "Months exhausted (expected)", "P(as many or more)"],
        [[r["variant"], r["method"], r["months"], _money(r.get("median_fund", math.nan)),
          _common.percent(r.get("median_fund_share_of_open_interest", math.nan)), _fees(r.get("median_rates", {})),
          f"{_money(r['max_fund'])} ({r['max_fund_month']})" if r["months"] else "n/a",
          _money(r.get("median_cost", math.nan)),
          f"{r['median_drawdown_share']:.1%}" if r["months"] else "n/a",
          _share(r["max_drawdown_share"]) if r["months"] else "n/a",
          (f"{len(r['exhausted'])} ({r['expected_exhausted']:.2f})" + (": " + ", ".join(r["exhausted"])
                                                                         if r["exhausted"] else "")) if r["months"] else "n/a",
          f"{r['exhaustion_p']:.3f}" if r["months"] else "n/a"] for r in funds], "llrrrrrrrrlr"))
    lines += ["", "Fund / OI: the fund target over the open interest of the month's book at the policy's fees (sum_j "
              "pi_j OI_j); real venues' funds hold roughly 1-5 % of their open interest. The objective is the full "
              "cost with the book answering the fees (cost_of_capital x F0 + C(p): lost trading revenue - fee income "
              "+ the month's expected losses, which no policy avoids)."]
    exploded = [f"{r['variant']}/{r['method']} {r['max_fund_month']}" for r in funds
                if r["months"] and r["max_fund"] > 100 * sum(oi for _, oi, _ in BOOK)]
    if exploded:
        lines += ["", "Fund targets above 100 times the open interest (" + ", ".join(exploded) + ") come from simulated "
                  "paths that explode: the GJR-t fitted in those months has nu below 3 and persistence near 1, and a "
                  "30-day path with a return of several hundred percent makes the short side's gap loss enormous. "
                  "\"exact\", a quantile, ignores such a path; CVaR averages it in, and so can \"certified\", whose "
                  "candidates are CVaR solutions."]
    limited = [f"{r['variant']}/{r['method']} {len(r['not_proven_optimal'])}" for r in funds
               if r["months"] and r["not_proven_optimal"]]
    if limited:
        lines += ["", "Months where the method stopped at its time limit (policy feasible, optimality not proven): "
                  + ", ".join(limited) + "."]
    lines += ["", "Solve time per month, median (max): " + "; ".join(
        f"{r['variant']}/{r['method']} {r['median_solve_seconds']:.2f} s ({r['max_solve_seconds']:.1f} s)"
        for r in funds if r["months"]) + "."]
    failures = [f"{r['variant']}/{r['method']}: {len(r['errors'])} month(s) without a policy ({r['errors'][0]} ...)"
                for r in funds if r["errors"]]
    errors_seen = sorted({m.policies[k]["error"].split(":")[1].strip() if ":" in m.policies[k]["error"] else
                          m.policies[k]["error"] for m in months for k in m.policies if "error" in m.policies[k]})
    if failures:
        lines += ["", "Months where a method gave no policy: " + "; ".join(failures) + ". Errors: "
                  + "; ".join(errors_seen) + "."]
    if against:
        then = previous.get("provenance", {}) if previous else {}
        lines += ["", f"### Against the previous run ({then.get('code', 'previous run')}, {then.get('date', '')}: "
                  "premium_weight 0.005, no participation), on the same months", ""]
        lines.append(_common.markdown_table(
            ["Innovations", "Method", "Months", "Median fund target, then → now", "Median fees %, then → now",
             "Months exhausted, then → now"],
            [[r["variant"], r["method"], r["months"], f"{_money(r['then_median_fund'])} → {_money(r['now_median_fund'])}",
              f"{_fees(r['then_median_rates'])} → {_fees(r['now_median_rates'])}",
              f"{len(r['then_exhausted'])} → {len(r['now_exhausted'])}"
              + (f" ({', '.join(r['then_exhausted'])} → {', '.join(r['now_exhausted']) or 'none'})"
                 if r["then_exhausted"] or r["now_exhausted"] else "")] for r in against], "llrrrl"))
        then_sizes = previous.get("sizes", {}) if previous else {}
        then_span = previous.get("span", "?") if previous else "?"
        then_n = then_sizes.get("n_scenarios")
        then_n_text = f"{then_n:,}" if isinstance(then_n, int) else "?"
        lines += ["", f"The previous run drew {then_n_text} scenarios per recalibration over {then_span}, this one "
                  f"{sizes.n_scenarios:,} over {span}. Each month's seed is addressed by its position in the run's "
                  "months, so unless both runs start in the same month the same month was simulated from other draws: "
                  "differences then mix sampling (size, seed) with the economics. Compare like with like across full "
                  "runs only."]
    lines += ["", "## Reported insurance-fund drawdowns vs the model", ""]
    event_rows = []
    for event in events:
        for _, r in (event.reported.iterrows() if len(event.reported) else iter(())):
            cells = [event.name, f"{r['date'].date()}", f"{r['exchange']} {r['fund']}",
                     "n/a (no fund size)" if not r["share"] == r["share"] else f"{r['share']:.1%}"]
            for variant in VARIANTS:
                shares = event.predicted.get(variant)
                cells.append("n/a" if shares is None or not r["share"] == r["share"]
                             else f"{(shares >= r['share']).mean():.2%}")
            event_rows.append(cells)
        realised = ", ".join(f"{v} {event.realised[v]:.1%} of {_money(event.fund[v])}" for v in event.predicted)
        event_rows.append([event.name, f"{event.window[0]}..{event.window[1]}", "our book, realised (model venue)",
                           realised, *[f"P(>= 50%): {(event.predicted[v] >= 0.5).mean():.2%}" if v in event.predicted
                                       else "n/a" for v in VARIANTS]])
    lines.append(_common.markdown_table(
        ["Event", "Date", "Fund", "Drawdown / fund", *[f"P(model drawdown >= it), {v}" for v in VARIANTS]],
        event_rows, "llllrrrr"))
    lines += ["",
              "Reported figures are press-reported and approximate (see the events file's sources); each exchange's "
              "fund was sized by its own rule for its own book, so only the drawdown *as a share of the fund* is "
              "compared. The model's distribution is the drawdown of the 'certified' fund target of the month over "
              "the window's days, simulated from the state of the window's first day (volatility filtered through the "
              "month so far). The events file has no May 2021 row (the issue names May 2021; the file's second event "
              "is May 2020): the 19-20 May 2021 window shows the model's side only.", ""]
    lines += ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    payload = {"coverage": coverage, "funds": funds, "against_previous": against}
    return "\n".join(lines), payload


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def backtest_months(returns: pd.DataFrame, sizes: Sizes) -> list[pd.Period]:
    """Months with a whole window of BTC and ETH before them and complete data in them."""
    first_valid = returns[["BTC", "ETH"]].dropna().index.tz_localize(None)
    earliest = first_valid[WINDOW - 1].to_period("M") + 1
    final_day = returns.index[-1].tz_localize(None)
    last = final_day.to_period("M")
    if final_day != last.end_time.normalize():
        last -= 1  # the last month is incomplete
    months = list(pd.period_range(earliest, last, freq="M"))
    if sizes.months is not None:
        low, high = (pd.Period(m, freq="M") for m in sizes.months)
        months = [m for m in months if low <= m <= high]
    return months


def main(argv: Sequence[str] | None = None) -> int:
    """Run the backtest; returns the exit code (2 when the data folder is missing)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cli = _common.parser(f"python -m {MODULE}", __doc__.splitlines()[0], seed=SEED)
    cli.add_argument("--previous", type=Path, default=None,
                     help="a previous run's backtest JSON: its policies are set beside this run's on the common months")
    args = cli.parse_args(argv)
    previous = json.loads(args.previous.read_text()) if args.previous is not None else None
    missing = _common.data_available(args.data, [*_common.DAILY_FILES.values(), EVENTS_FILE])
    if missing:
        return _common.fail(
            f"backtest: the data folder {args.data} lacks {', '.join(missing)}.\n"
            f"Pass --data DIR with {_common.DATA_HELP}. Nothing was written."
        )
    sizes = QUICK if args.quick else FULL
    stem = "backtest_quick" if args.quick else "backtest"
    prov = _common.provenance(MODULE, argv, args.seed)

    start = time.perf_counter()
    returns = load_returns(args.data)
    months = backtest_months(returns, sizes)
    span = f"{months[0]} .. {months[-1]}"
    results: list[MonthResult] = []
    calibrations: dict[tuple[str, str], Calibration] = {}
    event_months = {pd.Period(w[0], freq="M"): name for name, w in EVENT_WINDOWS.items()}
    root = np.random.SeedSequence(args.seed)
    for i, month in enumerate(months):
        end = month.start_time.tz_localize("UTC") - pd.Timedelta("1D")
        window = returns.loc[:end].iloc[-WINDOW:]
        window = window[[c for c in window if window[c].notna().all()]]
        fits: dict[tuple[str, str], Calibration] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence / persistence / heavy-tail warnings: counted, not shown
            for variant, (spec, _, family) in VARIANTS.items():
                key = (str(spec), family)
                if key not in fits:
                    fits[key] = calibrate(window, spec, family)
                seed = np.random.SeedSequence(root.entropy, spawn_key=(i, list(VARIANTS).index(variant)))
                try:
                    results.append(run_month(returns, month, variant, fits[key], sizes, seed))
                except FundguardError as exc:
                    print(f"{month} {variant}: {exc}", file=sys.stderr)
                if month in event_months:
                    calibrations[(str(month), variant)] = fits[key]
        print(f"{month}: {len(window.columns)} markets, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)

    reported = reported_drawdowns(args.data / EVENTS_FILE)
    events: list[EventResult] = []
    for name, window_days in EVENT_WINDOWS.items():
        month = str(pd.Period(window_days[0], freq="M"))
        if not any((month, v) in calibrations for v in VARIANTS):
            continue
        first = pd.Timestamp(window_days[0])
        mask = (reported["date"] >= first.to_period("M").start_time) & (reported["date"] <= first.to_period("M").end_time)
        event = EventResult(name, window_days, month, {}, {}, {}, reported[mask].reset_index(drop=True))
        for j, variant in enumerate(VARIANTS):
            month_result = next((m for m in results if m.month == month and m.variant == variant), None)
            if month_result is None or "error" in month_result.policies.get("certified", {"error": 1}):
                continue
            policy = month_result.policies["certified"]
            rates = np.array([policy["rates"][m] for m in month_result.markets])
            shares = np.array([policy["shares"][m] for m in month_result.markets])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                required, realised = event_distribution(
                    returns, calibrations[(month, variant)], variant, window_days, rates, sizes.n_event,
                    np.random.SeedSequence(root.entropy, spawn_key=(10_000 + list(EVENT_WINDOWS).index(name), j)),
                    shares)
            fund = policy["fund_target"]
            event.fund[variant] = fund
            event.predicted[variant] = required / fund
            event.realised[variant] = realised / fund
        events.append(event)
    seconds = time.perf_counter() - start

    out: Path = args.out
    figures = [f"{stem}_breaches.png", f"{stem}_funds.png"]
    figure_breaches(results, prov, out / figures[0])
    figure_funds(results, prov, out / figures[1])
    if figure_events(events, prov, out / f"{stem}_events.png") is not None:
        figures.append(f"{stem}_events.png")
    text, payload = report(results, events, sizes, prov, args.quick, figures, seconds, span, previous)
    _common.write_text(out / f"{stem}.md", text)
    payload.update({
        "provenance": dataclasses.asdict(prov), "quick": args.quick, "sizes": dataclasses.asdict(sizes),
        "window": WINDOW, "quantile": QUANTILE, "wall_seconds": seconds, "span": span,
        "months": [{"month": m.month, "variant": m.variant, "markets": list(m.markets), "policies": m.policies,
                    "realised_loss": m.realised_loss.tolist(), "quantile": m.quantile.tolist()} for m in results],
        "events": [{"name": e.name, "window": list(e.window), "fund": e.fund, "realised_share": e.realised,
                    "predicted_share_quantiles": {v: np.quantile(s, [0.5, 0.9, 0.99, 0.999]).tolist()
                                                  for v, s in e.predicted.items()},
                    "reported": e.reported.assign(date=e.reported["date"].astype(str)).to_dict("records")
                    if len(e.reported) else []} for e in events],
    })
    _common.write_text(out / f"{stem}.json", json.dumps(payload, indent=1, default=str) + "\n")
    print(f"wrote {out / (stem + '.md')} in {seconds:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
