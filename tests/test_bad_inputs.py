"""Issue 8's catalogue of bad inputs: every one is rejected with a documented error naming the problem.

Each case is one entry of ``CASES``: a call, the error class it must raise (always a
``FundguardError``) and a fragment the message must contain. ``conftest.py`` reports how many
distinct cases ran.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fundguard.models import (
    DEFAULT_EXCURSIONS,
    ConfigError,
    DataError,
    ExcursionModel,
    ReturnPaths,
    DateParseError,
    DuplicateTimestampsError,
    FundguardError,
    InsufficientHistoryError,
    InvalidPriceError,
    LeverageTier,
    Market,
    ScenarioError,
    ScenarioSet,
    SpecificationError,
    UnsortedTimestampsError,
    VenueBook,
    fit_excursions,
    fit_volatility,
    load_ohlc,
    load_prices,
    simulate_returns,
    stress_paths,
)
from fundguard.models import FitError, VolSpec
from fundguard.models.errors import InfeasibleError, ProblemError
from fundguard.models.venue.losses import VenueLosses
from fundguard.models.scenarios.bounds import check_paths, period_bound
from fundguard.optimizer import PolicyProblem, certify, scenario_sample_size, solve
from fundguard.optimizer.job.config import parse_config
from fundguard.optimizer.job.balance import check_balance
from fundguard.optimizer.job.calibrate import calibrate
from fundguard.optimizer.job.losscheck import check_events, parse_band, parse_prices_option, read_events, read_ohlc
from fundguard.optimizer.job.lossfit import fit_loss_model, read_snapshots, read_venue_data
from fundguard.optimizer.job.preset import build_preset

RNG = np.random.default_rng(0)
N, T, J = 400, 5, 2
LOSSES = RNG.exponential(1e6, (N, T)) * (RNG.random((N, T)) < 0.05)
BASE = RNG.exponential(1e7, (N, T, J))
GOOD = ScenarioSet(LOSSES, BASE, ["A", "B"])


def _prices(n: int = 300, **columns) -> pd.DataFrame:
    frame = pd.DataFrame({"date": pd.date_range("2022-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
                          "BTC": 100 * np.exp(np.cumsum(RNG.normal(0, 0.03, n)))})
    for name, (row, value) in columns.items():
        frame[name] = frame[name].astype(object) if isinstance(value, str) else frame[name]
        frame.loc[row, name] = value
    return frame


def _with(**changes):
    frame = _prices()
    for column, (row, value) in changes.items():
        frame.loc[row, column] = value
    return frame


def _losses(value, where=(3, 2)):
    losses = LOSSES.astype(object) if value is None else LOSSES.copy()
    losses[where] = value
    return losses


def _policy():
    return solve(PolicyProblem(alpha=0.05, cost_of_capital=0.1, premium_max=0.0), GOOD, method="exact")


def _book(**market):
    return VenueBook([Market("BTC", **{"open_interest": 1e9, "daily_volume": 3e9, **market})])


def _config(**problem):
    return parse_config({"problem": problem, "markets": [{"name": "X", "open_interest": 1, "daily_volume": 1}]})


def _sized(**scenarios):
    """A preset-market config (no price files) with these scenario sizes, as a mapping."""
    return {"scenarios": {"innovations": "parametric", **scenarios},
            "markets": [{"name": "BTC", "open_interest": 1e9, "daily_volume": 3e9}]}


def _market_config(**market):
    return parse_config({"markets": [{"name": "X", "open_interest": 1, "daily_volume": 1, **market}]})


CASES = {
    # prices
    "price NaN": (lambda: load_prices(_with(BTC=(50, np.nan))), InvalidPriceError, "missing"),
    "price inf": (lambda: load_prices(_with(BTC=(50, np.inf))), InvalidPriceError, "inf"),
    "price zero": (lambda: load_prices(_with(BTC=(50, 0.0))), InvalidPriceError, "'BTC'"),
    "price negative": (lambda: load_prices(_with(BTC=(50, -3.0))), InvalidPriceError, "-3.0"),
    "price text": (lambda: load_prices(_prices(BTC=(50, "n/a"))), InvalidPriceError, "n/a"),
    "duplicate timestamps": (lambda: load_prices(pd.concat([_prices().iloc[:5], _prices().iloc[4:]])),
                             DuplicateTimestampsError, "duplicate"),
    "unsorted timestamps": (lambda: load_prices(_prices().iloc[::-1]), UnsortedTimestampsError, "not increasing"),
    "too short to fit": (lambda: load_prices(_prices(100)), InsufficientHistoryError, "99 returns"),
    "constant prices": (lambda: fit_volatility(pd.Series(np.zeros(400), name="USDC")), DataError, "constant"),
    "no common dates": (lambda: load_prices({"A": _prices(), "B": _prices().assign(
        date=pd.date_range("2030-01-01", periods=300, freq="D").strftime("%Y-%m-%d"))}), DataError, "no timestamps"),
    "returns not finite": (lambda: fit_volatility(pd.Series([0.01, -0.02] * 200 + [np.inf], name="X")), DataError, "'X'"),
    # -- issue 13: data --
    "timestamps in days since 1970": (lambda: load_prices(_stamped(np.arange(18628, 18928))), DateParseError,
                                      "timestamp 18628 in row 0 of column 'timestamp'"),
    "timestamps mixing seconds and milliseconds": (
        lambda: load_prices(_stamped(np.r_[_EPOCH_S[:7] * 1000, _EPOCH_S[7:]])), DateParseError,
        "row 7 (1641600000) as epoch seconds"),
    "numeric timestamp missing": (lambda: load_prices(_stamped(np.r_[_EPOCH_S[:3], np.nan, _EPOCH_S[4:]])),
                                  DateParseError, "missing timestamp in row 3"),
    "YYYYMMDD timestamp not a calendar date": (lambda: load_prices(_stamped(np.r_[20220101, 20220230, np.arange(
        20220301, 20220599)])), DateParseError, "row 1 of column 'timestamp' reads as YYYYMMDD"),
    "timestamps true/false": (lambda: load_prices(_stamped(np.arange(300) % 2 == 0)), DateParseError, "true/false"),
    "date past 2262": (lambda: load_prices(_stamped(pd.date_range("2300-01-01", periods=300, freq="D", unit="s").strftime(
        "%Y-%m-%d"))), DateParseError, "2300-01-01"),
    "price file is a directory": (lambda: load_prices(Path(__file__).parent), DataError, "is a directory"),
    "fat-finger print under strict": (lambda: load_prices(_stamped(_EPOCH_S, jump_at=150), strict=True),
                                      InvalidPriceError, "at 2022-05-31"),
    "config strict_prices not true/false": (lambda: parse_config({"markets": [
        {"name": "X", "open_interest": 1, "daily_volume": 1, "strict_prices": "yes"}]}), ConfigError,
        "markets[0].strict_prices must be true or false"),
    # scenario sets
    "losses NaN": (lambda: ScenarioSet(_losses(np.nan), BASE, ["A", "B"]), ScenarioError, "losses[3, 2]"),
    "losses inf": (lambda: ScenarioSet(_losses(np.inf), BASE, ["A", "B"]), ScenarioError, "losses[3, 2]"),
    "losses negative": (lambda: ScenarioSet(_losses(-1.0), BASE, ["A", "B"]), ScenarioError, ">= 0"),
    "premium base negative": (lambda: ScenarioSet(LOSSES, -BASE, ["A", "B"]), ScenarioError, "premium_base"),
    "shapes mismatched": (lambda: ScenarioSet(LOSSES, BASE[:, :3], ["A", "B"]), ScenarioError, "(N, T, J)"),
    "zero scenarios": (lambda: ScenarioSet(np.zeros((0, T)), np.zeros((0, T, J)), ["A", "B"]), ScenarioError,
                       "at least one scenario"),
    "markets mismatched": (lambda: ScenarioSet(LOSSES, BASE, ["A"]), ScenarioError, "1 markets"),
    "duplicate market names": (lambda: ScenarioSet(LOSSES, BASE, ["A", "A"]), ScenarioError, "unique"),
    # -- issue 13: numerics --
    "losses overflowing over the horizon": (lambda: ScenarioSet(_losses(1e308, (7, slice(None))), BASE, ["A", "B"]),
                                            ScenarioError, "scenario 7 sum to inf"),
    "premium base overflowing over the horizon": (lambda: ScenarioSet(LOSSES, np.where(np.arange(N)[:, None, None] == 9,
                                                                                       1e308, BASE), ["A", "B"]),
                                                  ScenarioError, "premium_base of scenario 9"),
    "losses complex": (lambda: ScenarioSet(LOSSES + 1j, BASE, ["A", "B"]), ScenarioError, "complex"),
    "losses ragged": (lambda: ScenarioSet([[1.0, 2.0], [3.0]], BASE[:2, :2], ["A", "B"]), ScenarioError, "ragged"),
    "losses object with None": (lambda: ScenarioSet(_losses(None), BASE, ["A", "B"]), ScenarioError,
                                "losses[3, 2]"),
    "losses text": (lambda: ScenarioSet(LOSSES.astype(str), BASE, ["A", "B"]), ScenarioError, "dtype <U"),
    "floor swallowing the losses": (lambda: solve(PolicyProblem(alpha=0.05, cost_of_capital=0.1, floor=1e20), GOOD),
                                    ProblemError, "floor = 1e+20"),
    "objective overflowing": (lambda: solve(PolicyProblem(alpha=0.05, cost_of_capital=1e305), GOOD, method="exact"),
                              ProblemError, "cost_of_capital = 1e+305"),
    "premium income overflowing": (lambda: solve(PolicyProblem(alpha=0.05, cost_of_capital=0.1, premium_max=1e305), GOOD),
                                   ProblemError, "premium_max = 1e+305"),
    # -- seam (issue 15): per-market fields --
    "losses not the sum of losses_by_market": (lambda: ScenarioSet(LOSSES + 1.0, BASE, ["A", "B"],
                                                                   losses_by_market=_by_market()),
                                                ScenarioError, "losses must equal losses_by_market summed over markets"),
    "losses_by_market of wrong shape": (lambda: ScenarioSet(LOSSES, BASE, ["A", "B"],
                                                            losses_by_market=_by_market()[:, :, :1]),
                                        ScenarioError, "losses_by_market must have shape (N, T, J) = (400, 5, 2)"),
    "liquidated negative": (lambda: ScenarioSet(LOSSES, BASE, ["A", "B"], liquidated=-BASE), ScenarioError,
                            "liquidated[0, 0, 0] = "),
    "winners NaN": (lambda: ScenarioSet(LOSSES, BASE, ["A", "B"], winners=np.where(BASE > 0, np.nan, 0.0)),
                    ScenarioError, "(market 'A')"),
    "loss model returning a triple": (lambda: _build_with(lambda market, returns, volatility, **_: (
        returns * 0, returns * 0, returns * 0)), ScenarioError, "returned a tuple of length 3 for market 'BTC'"),
    "loss model winners of wrong shape": (lambda: _build_with(lambda market, returns, volatility, **_: VenueLosses(
        returns * 0, returns * 0, winners=returns[:, :1] * 0)), ScenarioError, "returned winners of shape (7, 1)"),
    # problem
    "alpha zero": (lambda: PolicyProblem(alpha=0.0, cost_of_capital=0.1), ProblemError, "alpha"),
    "alpha one": (lambda: PolicyProblem(alpha=1.0, cost_of_capital=0.1), ProblemError, "alpha"),
    "negative cost of capital": (lambda: PolicyProblem(alpha=0.01, cost_of_capital=-0.1), ProblemError,
                                 "cost_of_capital"),
    "negative premium weight": (lambda: PolicyProblem(alpha=0.01, cost_of_capital=0.1, premium_weight=-1.0),
                                ProblemError, "premium_weight"),
    "premium_min above premium_max": (lambda: PolicyProblem(alpha=0.01, cost_of_capital=0.1, premium_min=0.02,
                                                            premium_max=0.01), ProblemError, "premium_min"),
    "per-market bounds of wrong length": (lambda: solve(PolicyProblem(alpha=0.01, cost_of_capital=0.1,
                                                                      premium_max=[0.01, 0.01, 0.01]), GOOD),
                                          ProblemError, "premium_max"),
    "fund_max below what alpha needs": (lambda: solve(PolicyProblem(alpha=0.01, cost_of_capital=0.1, premium_max=0.0,
                                                                    fund_max=1.0), GOOD, method="exact"),
                                        InfeasibleError, "fund_max"),
    "confidence zero": (lambda: certify(_policy(), GOOD, confidence=0.0), FundguardError, "confidence"),
    "confidence one": (lambda: certify(_policy(), GOOD, confidence=1.0), FundguardError, "confidence"),
    "unknown method": (lambda: solve(PolicyProblem(alpha=0.01, cost_of_capital=0.1), GOOD, method="magic"),
                       FundguardError, "magic"),
    "too few scenarios for the scenario approach": (
        lambda: solve(PolicyProblem(alpha=0.001, cost_of_capital=0.1), GOOD, method="scenario", beta=1e-9),
        ProblemError, "scenarios"),
    "scenario sample size epsilon out of range": (lambda: scenario_sample_size(1.5, 1e-6, 2), FundguardError, "epsilon"),
    # -- issue 13: library --
    "daily volume implausibly small": (lambda: _book(daily_volume=1e-100), SpecificationError, "daily_volume = 1e-100"),
    "forecast on a numbers-only model": (lambda: _numbers_only().forecast_variance(5), SpecificationError,
                                         "forecast_variance needs a model fitted"),
    "conditional volatility of a numbers-only model": (lambda: _numbers_only().conditional_volatility,
                                                       SpecificationError, "has no fitted sample"),
    "replay on a numbers-only model": (lambda: stress_paths({"X": _numbers_only()}, 5, dates=["2021-01-05"]),
                                       ScenarioError, "models['X'] has none"),
    "bootstrap on a numbers-only model": (lambda: simulate_returns({"X": _numbers_only()}, 5, 100, innovations="fhs"),
                                          InsufficientHistoryError, "no standardized residuals"),
    # venue book
    "leverage below one": (lambda: LeverageTier(1.0, 0.5, 0.01), SpecificationError, "leverage"),
    "maintenance margin at initial margin": (lambda: LeverageTier(1.0, 10.0, 0.1), SpecificationError,
                                             "maintenance_margin"),
    "tier shares not summing to one": (lambda: _book(tiers=(LeverageTier(0.5, 10, 0.01), LeverageTier(0.3, 5, 0.01))),
                                       SpecificationError, "sum"),
    "negative open interest": (lambda: _book(open_interest=-1e9), SpecificationError, "open_interest"),
    "negative daily volume": (lambda: _book(daily_volume=-1.0), SpecificationError, "daily_volume"),
    "unknown premium kind": (lambda: _book(premium_kind="funding"), SpecificationError, "premium_kind"),
    # -- issue 13: sizes --
    "n_scenarios beyond memory": (lambda: calibrate(_sized(n_scenarios=10**9)), ConfigError,
                                  "scenarios.n_scenarios = 1,000,000,000 needs about"),
    "certify_scenarios beyond memory": (lambda: calibrate(_sized(certify_scenarios=10**12)), ConfigError,
                                        "scenarios.certify_scenarios = 1,000,000,000,000 needs about"),
    "horizon beyond memory": (lambda: calibrate(_sized(horizon=10**6)), ConfigError, "GB is available"),
    "check certify_scenarios beyond memory": (lambda: check_balance(1e6, _sized(certify_scenarios=10**12)),
                                              ConfigError, "scenarios.certify_scenarios"),
    "too many local workers": (lambda: calibrate({**_sized(), "compute": {"workers": 10**4}}, method="cvar"),
                               ConfigError, "compute.workers = 10000 would start 10000 worker processes"),
    "negative seed": (lambda: calibrate(_sized(), seed=-5), ConfigError, "seed must be an integer >= 0, got -5"),
    # scenario generation
    "horizon zero": (lambda: simulate_returns({"X": _model()}, 0, 100), FundguardError, "horizon"),
    "unknown innovations": (lambda: simulate_returns({"X": _model()}, 5, 100, innovations="magic"), FundguardError,
                            "innovations"),
    # -- issue 13: config --
    "config market name with a newline": (lambda: _market_config(name="BTC\n| x |"), ConfigError,
                                          "markets[0].name must not contain control characters"),
    "preset build with a market twice": (lambda: build_preset([("BTC", _prices()), ("BTC", _prices())]), ConfigError,
                                         "repeated: ['BTC']"),
    "config cost_of_capital inf": (lambda: _config(cost_of_capital=float("inf")), ConfigError,
                                   "problem.cost_of_capital must be a finite number, got inf"),
    "config rate_change_penalty nan": (lambda: _config(rate_change_penalty=float("nan")), ConfigError,
                                       "problem.rate_change_penalty must be a finite number"),
    "config current_rate inf": (lambda: _market_config(current_rate=float("inf")), ConfigError,
                                "markets[0].current_rate must be a finite number"),
    "config open_interest inf": (lambda: _market_config(open_interest=float("inf")), ConfigError,
                                 "markets[0].open_interest must be a finite number"),
    "config impact inf": (lambda: _market_config(impact=float("inf")), ConfigError, "markets[0].impact"),
    "config gap nan": (lambda: _market_config(gap=float("nan")), ConfigError, "markets[0].gap"),
    "config premium_max above one": (lambda: _config(premium_max=1.5), ConfigError,
                                     "problem.premium_max must be a premium rate in [0, 1]"),
    "config premium_min above premium_max": (lambda: _config(premium_min=0.02, premium_max=0.01), ConfigError,
                                             "problem.premium_min 0.02 is above problem.premium_max 0.01"),
    "config impossible stress date": (lambda: parse_config({"scenarios": {"stress_dates": ["2021-02-30"]},
                                                            "markets": [{"name": "X", "open_interest": 1,
                                                                         "daily_volume": 1}]}),
                                      ConfigError, "stress_dates[0] is not a calendar date: '2021-02-30'"),
    # -- excursions: intraday low/high --
    "OHLC low above open and close": (lambda: load_ohlc(_ohlc(low=(40, 1e9)), name="BTC"), InvalidPriceError,
                                      "market 'BTC': low 1000000000 at 2022-02-10 00:00:00+00:00 is above min(open"),
    "OHLC high below open and close": (lambda: load_ohlc(_ohlc(high=(41, 1.0)), name="BTC"), InvalidPriceError,
                                       "high 1 at 2022-02-11 00:00:00+00:00 is below max(open, close)"),
    "OHLC price zero": (lambda: load_ohlc(_ohlc(open=(7, 0.0)), name="BTC"), InvalidPriceError,
                        "market 'BTC': open at 2022-01-08 00:00:00+00:00 is 0.0"),
    "OHLC column missing": (lambda: load_ohlc(_ohlc().drop(columns=["low"]), name="BTC"), DataError,
                            "OHLC columns ['low'] not found"),
    "paths low above the close": (lambda: ReturnPaths(np.full((2, 3, 1), -0.01), np.full((2, 3, 1), 0.02), ("A",),
                                                      low=np.zeros((2, 3, 1))), ScenarioError,
                                  "low must be <= min(0, returns)"),
    "paths high not finite": (lambda: ReturnPaths(np.zeros((2, 3, 1)), np.full((2, 3, 1), 0.02), ("A",),
                                                  high=np.full((2, 3, 1), np.inf)), ScenarioError,
                              "high must be finite; high[0, 0, 0] = inf"),
    "paths low of the wrong shape": (lambda: ReturnPaths(np.zeros((2, 3, 1)), np.full((2, 3, 1), 0.02), ("A",),
                                                         low=np.zeros((2, 3))), ScenarioError,
                                     "low must have the shape of returns (2, 3, 1)"),
    "excursions missing a market": (lambda: simulate_returns({"X": _model()}, 5, 100,
                                                             excursions={"Y": DEFAULT_EXCURSIONS}),
                                    SpecificationError, "missing ['X'], unknown ['Y']"),
    "excursions of an unknown kind": (lambda: simulate_returns({"X": _model()}, 5, 100, excursions="wicks"),
                                      SpecificationError, "excursions must be 'default', 'bridge'"),
    "excursion fit on a zero volatility": (lambda: fit_excursions(load_ohlc(_ohlc(), name="X")["X"],
                                                                  _sigma(zero_at=12)),
                                           SpecificationError, "volatility['X'] at 2022-01-13"),
    "excursion quantiles decreasing": (lambda: ExcursionModel.from_dict(
        {**DEFAULT_EXCURSIONS.to_dict(), "up": np.flip(DEFAULT_EXCURSIONS.up, axis=1)}), SpecificationError,
        "ExcursionModel.up[0] must be finite quantiles >= 0, non-decreasing"),
    # config
    "config alpha out of range": (lambda: _config(alpha=2.0), ConfigError, "problem.alpha"),
    "config unknown key": (lambda: _config(alfa=0.1), ConfigError, "problem.alfa"),
    "config wrong type": (lambda: _config(confidence="high"), ConfigError, "problem.confidence"),
    # -- explosive (issue 15, item 6) --
    "fit innovations unknown": (lambda: fit_volatility(_explosive(), VolSpec("GARCH", "normal"), innovations="bootstrap"),
                                SpecificationError, "innovations must be one of ('parametric', 'fhs', 'evt') or None, "
                                                    "got 'bootstrap'"),
    "explosive_reason innovations unknown": (lambda: _model().explosive_reason("historical"), SpecificationError,
                                             "innovations must be one of ('parametric', 'fhs', 'evt'), got 'historical'"),
    "auto with every candidate explosive": (lambda: fit_volatility(_explosive(), candidates=[VolSpec("GARCH", "normal")],
                                                                   innovations="fhs"),
                                            FitError, "market 'BOOM': no candidate gave a converged, stationary fit "
                                                      "safe to simulate with innovations 'fhs'"),
    "path check on an array": (lambda: check_paths(np.zeros((2, 3, 1))), ScenarioError,
                               "check_paths needs a ReturnPaths, got ndarray"),
    "path bound not positive": (lambda: period_bound(pd.Timedelta("1D"), -2.0), ScenarioError,
                                "max_daily_log_return must be a positive finite number, got -2.0"),
    # -- losskit (loss-check, loss-fit)
    "events missing column": (lambda: read_events(_events().drop(columns=["open_interest_before_usd"])), DataError,
                              "missing column(s) ['open_interest_before_usd']"),
    "events bad date": (lambda: read_events(_events(date="2020-13-45")), DataError, "line 2: date '2020-13-45'"),
    "events bad number": (lambda: read_events(_events(liquidations_usd="lots")), DataError,
                          "line 2: liquidations_usd 'lots' is not a number"),
    "events negative open interest": (lambda: read_events(_events(open_interest_before_usd="-5")), DataError,
                                      "open_interest_before_usd must be a finite amount >= 0"),
    "loss-check prices without '='": (lambda: parse_prices_option(["BTC"]), SpecificationError,
                                      "--prices takes MARKET=FILE, got 'BTC'"),
    "loss-check prices twice": (lambda: parse_prices_option(["BTC=a.csv", "btc=b.csv"]), SpecificationError,
                                "--prices names a market twice"),
    "loss-check unknown market": (lambda: check_events(_events(), {"ZEC": _bars()}), SpecificationError,
                                  "prices for market 'ZEC': no event row's market matches it"),
    "loss-check band LO > HI": (lambda: parse_band("3,1"), SpecificationError, "--band needs 0 < LO <= HI"),
    "loss-check band not numbers": (lambda: parse_band("a,b"), SpecificationError, "--band takes LO,HI"),
    "loss-check band LO > HI (library)": (lambda: check_events(_events(), {"BTC": _bars()}, band=(3, 1)),
                                          SpecificationError, "band needs 0 < LO <= HI"),
    "loss-check turnover zero": (lambda: check_events(_events(), {"BTC": _bars()}, turnover=0.0), SpecificationError,
                                 "turnover must be a number > 0"),
    "loss-check prices not OHLC": (lambda: check_events(_events(), {"BTC": _bars()[["close"]]}), DataError,
                                   "prices['BTC'] must be OHLC bars"),
    "loss-check bar low above close": (lambda: read_ohlc(_bars(low=(5, 1e6)).reset_index(), "BTC"), DataError,
                                       "market 'BTC': low 1000000 at 2024-01-06"),
    "venue data missing column": (lambda: read_venue_data(_venue().drop(columns=["liquidated_short"])), DataError,
                                  "missing column(s) ['liquidated_short']"),
    "venue data bad open interest": (lambda: read_venue_data(_venue(open_interest=(3, "0"))), DataError,
                                     "line 5: open_interest must be a finite number > 0"),
    "venue data bad time": (lambda: read_venue_data(_venue(time=(2, "yesterday"))), DataError,
                            "line 4: time 'yesterday'"),
    "venue data row twice": (lambda: read_venue_data(_venue(time=(2, "2024-01-02"))), DataError,
                             "market 'BTC' at 2024-01-02 00:00:00+00:00 given twice"),
    "loss-fit market without prices": (lambda: fit_loss_model(read_venue_data(_venue()), {}), SpecificationError,
                                       "venue market(s) ['BTC'] have no prices"),
    "loss-fit prices for unknown market": (lambda: fit_loss_model(read_venue_data(_venue()), {"BTC": _bars(),
                                                                                             "ETH": _bars()}),
                                           SpecificationError, "prices for market(s) ['ETH']"),
    "loss-fit bars missing": (lambda: fit_loss_model(read_venue_data(_venue(start="2023-12-01")), {"BTC": _bars()}),
                              DataError, "prices 'BTC' have no bar at 2023-11-30"),
    "snapshots missing distance": (lambda: read_snapshots(pd.DataFrame({"market": ["BTC"], "side": ["long"],
                                                                        "notional": ["1"]})),
                                   DataError, "missing column(s) ['distance or leverage']"),
    "snapshots bad side": (lambda: read_snapshots(pd.DataFrame({"market": ["BTC"], "side": ["up"], "distance": ["0.1"],
                                                                "notional": ["1"]})),
                           DataError, "line 2: side must be 'long' or 'short', got 'up'"),
}


def _events(**row) -> pd.DataFrame:
    """One event row in the columns of public_liquidation_events.csv (text, as read from a CSV)."""
    base = {"date": "2024-02-20", "scope": "X", "market": "BTCUSDT", "open_interest_before_usd": "1e9",
            "liquidations_usd": "1e8", "fund_loss_usd": "", "uncertain": ""}
    return pd.DataFrame([{**base, **row}])


def _bars(n: int = 60, **changes) -> pd.DataFrame:
    """Smooth daily OHLC bars from 2024-01-01; ``column=(row, value)`` plants a bad value."""
    close = 100.0 * np.exp(0.01 * np.sin(np.arange(n)))
    open_ = np.r_[100.0, close[:-1]]
    bars = pd.DataFrame({"open": open_, "high": np.maximum(open_, close) * 1.01, "low": np.minimum(open_, close) * 0.99,
                         "close": close}, index=pd.date_range("2024-01-01", periods=n, freq="D", tz="UTC", name="time"))
    for column, (row, value) in changes.items():
        bars.iloc[row, bars.columns.get_loc(column)] = value
    return bars


def _venue(start: str = "2024-01-02", n: int = 20, **changes) -> pd.DataFrame:
    """A venue's per-period file (text cells): constant open interest, small liquidations."""
    frame = pd.DataFrame({"time": pd.date_range(start, periods=n, freq="D").strftime("%Y-%m-%d"), "market": "BTC",
                          "open_interest": "1e9", "liquidated_long": "1e6", "liquidated_short": "1e6"})
    for column, (row, value) in changes.items():
        frame.loc[row, column] = value
    return frame

def _by_market():
    """LOSSES split between the two markets: a quarter to A, the rest to B."""
    return np.stack([0.25 * LOSSES, LOSSES - 0.25 * LOSSES], axis=-1)


def _build_with(loss_model):
    from fundguard.models import ReturnPaths, build_scenarios

    paths = ReturnPaths(np.zeros((7, 3, 1)), np.full((7, 3, 1), 0.02), ("BTC",))
    return build_scenarios(paths, _book(), loss_model=loss_model)


def _explosive() -> pd.Series:
    """Returns of a GARCH(1,1)-normal with alpha + beta = 1.04 (its fit lands on arch's bound, persistence 1)."""
    rng = np.random.default_rng(3)
    returns, variance = np.empty(800), 1e-4
    for t in range(800):
        returns[t] = variance**0.5 * rng.standard_normal()
        variance = 1e-5 + 0.12 * returns[t] ** 2 + 0.92 * variance
    return pd.Series(returns, index=pd.date_range("2020-01-01", periods=800, freq="D", tz="UTC"), name="BOOM")

_MODEL = []


def _numbers_only():
    """A model rebuilt from numbers, as the built-in preset's are: no fitted sample, no arch result."""
    from fundguard.models import VolModel

    return VolModel.from_dict(_model().to_dict())


def _model():
    if not _MODEL:
        series = pd.Series(RNG.standard_t(5, 600) * 0.02, name="X",
                           index=pd.date_range("2020-01-01", periods=600, freq="D", tz="UTC"))
        from fundguard.models import VolSpec

        _MODEL.append(fit_volatility(series, VolSpec("GARCH", "t")))
    return _MODEL[0]


_EPOCH_S = pd.date_range("2022-01-01", periods=300, freq="D").as_unit("s").asi8  # epoch seconds, 2022


def _stamped(stamps, jump_at: int | None = None) -> pd.DataFrame:
    """Smooth prices on the given timestamps; a 1e6x print at row ``jump_at``."""
    close = 100.0 * np.exp(0.01 * np.sin(np.arange(len(stamps))))
    if jump_at is not None:
        close[jump_at] *= 1e6
    return pd.DataFrame({"timestamp": stamps, "close": close})


def _ohlc(n: int = 300, **changes) -> pd.DataFrame:
    """Daily bars opening at the previous close, 1% wicks; ``column=(row, value)`` overwrites a cell."""
    close = _prices(n)["BTC"].to_numpy()
    open_ = np.r_[close[0], close[:-1]]
    frame = pd.DataFrame({"date": pd.date_range("2022-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
                          "open": open_, "high": np.maximum(open_, close) * 1.01,
                          "low": np.minimum(open_, close) * 0.99, "close": close})
    for column, (row, value) in changes.items():
        frame.loc[row, column] = value
    return frame


def _sigma(zero_at: int) -> pd.Series:
    """A conditional volatility of the bars of ``_ohlc`` (on their returns' dates), zero at one row."""
    sigma = pd.Series(0.03, index=pd.date_range("2022-01-02", periods=299, freq="D", tz="UTC", name="time"))
    sigma.iloc[zero_at - 1] = 0.0
    return sigma


def test_catalogue_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_rejected_clearly(name, bad_input_cases):
    call, error, fragment = CASES[name]
    with pytest.raises(error) as info:
        call()
    assert isinstance(info.value, FundguardError), type(info.value)
    message = str(info.value)
    assert fragment in message, message
    assert "\n" not in message.strip() and "Traceback" not in message
    bad_input_cases.add(name)
