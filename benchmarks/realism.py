"""``python -m benchmarks.realism``: does the venue loss model lose money the way real venues do?

Every figure is the default loss model (the stateful book) beside the first one (the stationary
liquidation-gap model, kept by name for comparison), on real data of the project's ``shared/data``:

1. **Events.** The BTC rows of ``public_liquidation_events.csv`` that report open interest,
   replayed as ``fundguard loss-check`` does (30 days from the steady state, then the event's UTC
   day, scaled to the row's open interest, ADV = 3 x open interest) on Binance BTCUSDT daily OHLC
   and on Bitstamp BTCUSD hourly bars: model / reported liquidated notional and fund loss.
2. **A replayed real year.** Binance BTCUSDT and ETHUSDT daily OHLC of 2025 (from December 2024):
   the mean daily liquidated share of open interest, its median on ordinary days (|close| 4-6%)
   and on calm ordinary days (EWMA volatility below the year's median), and the fund loss per
   liquidated dollar on those days (near zero: calm liquidations are not bankrupt).
3. **Implied fund / open interest.** A Binance-like BTC/ETH/BNB book (open interest 8 / 5 / 1 bn per
   side, ADV 3 x open interest; an illustrative mix, the ratio is scale-free) sized for 30 days at
   alpha = 1% (the 99% quantile of the largest cumulative fund loss over the horizon, with no fee
   income, and with liquidation fees at the fee cap), from models chosen by ``fit_volatility(spec="auto", innovations="fhs")``
   (stationary under FHS) on Binance daily closes up to four dates: a calm state (2023-09-30), today (2025-12-31), a pre-crash state
   (2020-03-11) and a 2021-like state (2021-05-20); and today's models with the starting volatility
   scaled by 0.5, 1, 2 and 3 (the state alone, everything else held).
4. **Calendar time.** The same book over the same 30 days from hourly bars and from the day bars
   chained from the same hours (Binance BTC/ETH 2020-08..2021-06; Bitstamp BTC 2018-05..2022-08):
   (a) models chosen the same way on each clock, fund targets at 99% and 95%, beside the two fits'
   own 30-day return law; (b) the loss model alone: the same hourly paths aggregated to days and
   run as daily periods; (c) no model: the real history replayed at both clocks.
5. **Stress days.** The preset-like book under instantaneous shocks of -10%..-50%: the fund's
   change on the crash day with liquidation fees charged at the cap, which must be a loss.

Writes ``realism.md`` and ``realism.json`` (``realism_quick.*`` with ``--quick``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fundguard.models import (
    Market,
    ReturnPaths,
    StatefulBook,
    VenueBook,
    build_scenarios,
    fit_volatility,
    log_returns,
    replay,
    simulate_returns,
    stress_paths,
)
from fundguard.models.errors import FundguardWarning

from . import _common

MODULE = "benchmarks.realism"
DEFAULT_SEED = 20_261_201
EVENTS_FILE = "public_liquidation_events.csv"
FILES = {
    "BTC daily": "binance_BTCUSDT_daily.csv",
    "ETH daily": "binance_ETHUSDT_daily.csv",
    "BNB daily": "binance_BNBUSDT_daily.csv",
    "BTC hourly": "binance_BTCUSDT_hourly.csv",
    "ETH hourly": "binance_ETHUSDT_hourly.csv",
    "Bitstamp hourly": "bitstamp_BTCUSD_hourly.csv",
    "events": EVENTS_FILE,
}
MODELS = ("stateful_book", "liquidation_gap")
TURNOVER = 3.0  # ADV / open interest, as in the stateful book's fit (StatefulBook's notes)
WARMUP_DAYS = 30
BOOK = {"BTC": 8e9, "ETH": 5e9, "BNB": 1e9}
STATES = {"calm (2023-09-30)": "2023-09-30", "today (2025-12-31)": "2025-12-31",
          "pre-crash (2020-03-11)": "2020-03-11", "2021-like (2021-05-20)": "2021-05-20"}
ALPHA = 0.01
HORIZON_DAYS = 30


def read_ohlc(path: Path) -> pd.DataFrame:
    """An OHLC CSV of shared/data on a UTC index (``date`` or ``timestamp`` column)."""
    frame = pd.read_csv(path)
    column = "timestamp" if "timestamp" in frame.columns else "date"
    index = pd.DatetimeIndex(pd.to_datetime(frame[column], utc=True))
    return frame[["open", "high", "low", "close"]].astype(float).set_axis(index)


def _as_model(name: str) -> Any:
    from fundguard.models import loss_model

    return loss_model(name)


# -- 1. events ----------------------------------------------------------------------------------
def event_rows(events: pd.DataFrame, prices: pd.DataFrame, model: Any, *, warmup: int = WARMUP_DAYS
               ) -> list[dict[str, Any]]:
    """Model vs reported on the BTC rows with open interest whose day the prices cover."""
    rows = []
    for _, event in events.iterrows():
        market = str(event["market"]).upper().replace("XBT", "BTC")
        oi = float(event["open_interest_before_usd"])
        if not market.startswith("BTC") or "+" in market or not math.isfinite(oi):
            continue
        day = pd.Timestamp(event["date"], tz="UTC")
        window = prices.loc[day - pd.Timedelta(days=warmup): day + pd.Timedelta(hours=23, minutes=59)]
        if len(window) < 3 or window.index[-1] < day:
            continue
        table = replay(VenueBook([Market("BTC", oi, TURNOVER * oi)]), {"BTC": window}, loss_model=model)
        table = table.xs("BTC", level="market")
        today = table.loc[table.index >= day]
        scale = oi / today["open_interest"].iloc[0] if np.isfinite(today["open_interest"].iloc[0]) else 1.0
        liquidated = float(today["liquidated"].sum()) * scale
        loss = float(today["fund_loss"].sum()) * scale
        reported_liq = float(event["liquidations_usd"])
        reported_loss = float(event["fund_loss_usd"])
        rows.append({
            "date": event["date"], "scope": event["scope"], "open_interest": oi,
            "low": float(np.expm1((np.log(window["low"]) - np.log(window["close"].shift())).loc[today.index].min())),
            "liquidated": liquidated, "reported_liquidated": reported_liq,
            "liquidated_ratio": liquidated / reported_liq if math.isfinite(reported_liq) else math.nan,
            "fund_loss": loss, "reported_fund_loss": reported_loss,
            "fund_loss_ratio": loss / reported_loss if math.isfinite(reported_loss) else math.nan,
            "uncertain": "" if pd.isna(event["uncertain"]) else str(event["uncertain"]),
        })
    return rows


# -- 2. a replayed year ---------------------------------------------------------------------------
def replayed_year(prices: Mapping[str, pd.DataFrame], model: Any, year: str = "2025") -> dict[str, Any]:
    """Daily liquidated shares of open interest over a real year, per market."""
    out = {}
    for name, frame in prices.items():
        start = pd.Timestamp(f"{int(year) - 1}-12-01", tz="UTC")
        window = frame.loc[start: pd.Timestamp(f"{year}-12-31", tz="UTC")]
        table = replay(VenueBook([Market(name, 1e9, TURNOVER * 1e9)]), {name: window}, loss_model=model)
        table = table.xs(name, level="market").loc[year]
        oi = table["open_interest"].where(np.isfinite(table["open_interest"]), 1e9)
        share = table["liquidated"] / oi
        ordinary = (table["return"].abs() > 0.04) & (table["return"].abs() < 0.06)
        calm = ordinary & (table["volatility"] < table["volatility"].median())
        per_dollar = table["fund_loss"] / table["liquidated"].where(table["liquidated"] > 0)
        out[name] = {
            "days": int(len(table)),
            "mean_daily_share": float(share.mean()),
            "ordinary_days": int(ordinary.sum()),
            "ordinary_median_share": float(share[ordinary].median()) if ordinary.any() else math.nan,
            "calm_ordinary_days": int(calm.sum()),
            "calm_ordinary_median_share": float(share[calm].median()) if calm.any() else math.nan,
            "calm_loss_per_liquidated": float(per_dollar[calm].median()) if calm.any() else math.nan,
            "largest_day_share": float(share.max()),
        }
    return out


# -- 3. implied fund / open interest -----------------------------------------------------------
def fit_models(closes: Mapping[str, pd.Series], end: str, *, lookback: int = 1500) -> dict[str, Any]:
    """GJR-t models fitted to the last ``lookback`` daily returns up to ``end``."""
    models = {}
    for name, series in closes.items():
        returns = log_returns(series.loc[:end].to_frame(name))[name].iloc[-lookback:]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FundguardWarning)
            models[name] = fit_volatility(returns, spec="auto", innovations="fhs")
    return models


def fund_targets(paths: ReturnPaths, book: VenueBook, model: Any, alphas: Sequence[float] = (ALPHA,),
                 fee_rate: float = 0.0) -> dict[float, float]:
    """The (1 - alpha) quantile of the largest cumulative net fund loss over the horizon."""
    scenarios = build_scenarios(paths, book, loss_model=model)
    net = scenarios.losses - fee_rate * scenarios.premium_base.sum(axis=2)
    need = np.maximum(np.cumsum(net, axis=1).max(axis=1), 0.0)
    return {a: float(np.quantile(need, 1.0 - a)) for a in alphas}


def implied_funds(closes: Mapping[str, pd.Series], n: int, seed: int) -> list[dict[str, Any]]:
    book = VenueBook([Market(name, oi, TURNOVER * oi) for name, oi in BOOK.items()])
    total = sum(BOOK.values())
    rows = []
    for k, (label, end) in enumerate(STATES.items()):
        models = fit_models(closes, end)
        paths = simulate_returns(models, HORIZON_DAYS, n, innovations="fhs", seed=seed + k)
        row = {"state": label, "btc_volatility": float(np.sqrt(models["BTC"].next_variance)
                                                       if hasattr(models["BTC"], "next_variance")
                                                       else np.sqrt(models["BTC"].last_variance))}
        for name in MODELS:
            model = _as_model(name)
            cap = float(getattr(model, "fee_cap", 0.0125))
            row[name] = fund_targets(paths, book, model)[ALPHA] / total
            row[f"{name}_with_fees"] = fund_targets(paths, book, model, fee_rate=cap)[ALPHA] / total
        rows.append(row)
    return rows


def volatility_sweep(closes: Mapping[str, pd.Series], n: int, seed: int,
                     factors: Sequence[float] = (0.5, 1.0, 2.0, 3.0)) -> list[dict[str, Any]]:
    """Today's models with the starting volatility of every market scaled: the fund against the state alone."""
    models = fit_models(closes, STATES["today (2025-12-31)"])
    book = VenueBook([Market(name, oi, TURNOVER * oi) for name, oi in BOOK.items()])
    total = sum(BOOK.values())
    rows = []
    for factor in factors:
        scaled = {name: dataclasses.replace(m, next_variance=m.next_variance * factor**2) for name, m in models.items()}
        paths = simulate_returns(scaled, HORIZON_DAYS, n, innovations="fhs", seed=seed)
        row = {"factor": factor, "btc_volatility": float(np.sqrt(scaled["BTC"].next_variance))}
        for name in MODELS:
            row[name] = fund_targets(paths, book, _as_model(name))[ALPHA] / total
        rows.append(row)
    return rows


# -- 4. calendar time ---------------------------------------------------------------------------
def day_bars(hourly: pd.DataFrame) -> pd.DataFrame:
    """Hourly OHLC bars chained into UTC day bars (whole days only): the same data at a coarser clock."""
    step = pd.Timedelta(hours=1)
    first = hourly.index[0].ceil("D")
    last = (hourly.index[-1] + step).floor("D")  # the end of the last whole day
    frame = hourly.loc[first: last - step]
    days = frame.resample("1D").agg({"open": "first", "high": "max", "low": "min", "close": "last"})
    return days.dropna()


def calendar(samples: Mapping[str, Mapping[str, pd.DataFrame]], n_hourly: int, n_daily: int,
             seed: int) -> dict[str, Any]:
    """Hourly vs daily fund targets of the same book over the same 30 days, per sample of hourly bars.

    For each sample: (a) models fitted to the hourly bars and to the day bars chained from the
    same hours, 30 days simulated from each; (b) the loss model alone: those hourly paths
    aggregated to days; (c) no model at all: the real history replayed at both clocks.
    """
    out: dict[str, Any] = {}
    for sample, hourly in samples.items():
        first = max(frame.index[0] for frame in hourly.values()).ceil("D")
        last = (min(frame.index[-1] for frame in hourly.values()) + pd.Timedelta(hours=1)).floor("D")
        hourly = {name: frame.loc[first: last - pd.Timedelta(hours=1)] for name, frame in hourly.items()}
        daily = {name: day_bars(frame) for name, frame in hourly.items()}
        book = VenueBook([Market(name, BOOK[name], TURNOVER * BOOK[name]) for name in hourly])
        total = sum(BOOK[m] for m in hourly)
        row: dict[str, Any] = {"fit_sample": f"{first.date()}..{(last - pd.Timedelta(days=1)).date()}",
                               "markets": list(hourly)}
        specs = {}
        for label, frames, horizon, n in (("daily", daily, HORIZON_DAYS, n_daily),
                                          ("hourly", hourly, 24 * HORIZON_DAYS, n_hourly)):
            models = {}
            for name, frame in frames.items():
                returns = log_returns(frame["close"].to_frame(name))[name]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FundguardWarning)
                    models[name] = fit_volatility(returns, spec="auto", innovations="fhs")
            specs[label] = {name: {"spec": str(m.spec), **{k: round(float(v), 6) for k, v in m.params.items()}}
                            for name, m in models.items()}
            clock = time.perf_counter()
            paths = simulate_returns(models, horizon, n, innovations="fhs", seed=seed)
            as_days = daily_of(paths) if label == "hourly" else paths
            # the models' own 30-day law, beside the funds: how far apart the two fits are
            month = as_days.returns.sum(axis=1)
            row[f"{label}_month_std"] = {name: float(month[:, j].std()) for j, name in enumerate(paths.markets)}
            row[f"{label}_month_q01"] = {name: float(np.quantile(month[:, j], 0.01))
                                         for j, name in enumerate(paths.markets)}
            if label == "hourly":  # the same hourly paths, aggregated to days: the loss model alone
                for name in MODELS:
                    targets = fund_targets(as_days, book, _as_model(name), alphas=(0.01, 0.05))
                    row[f"same_paths_daily_{name}"] = {str(a): v / total for a, v in targets.items()}
            for name in MODELS:
                targets = fund_targets(paths, book, _as_model(name), alphas=(0.01, 0.05))
                row[f"{label}_{name}"] = {str(a): v / total for a, v in targets.items()}
            row[f"{label}_seconds"] = time.perf_counter() - clock
            row[f"{label}_n"] = n
        row["params"] = specs
        # (c) the real history at both clocks: rolling 30-day fund loss of the replayed book
        for name in MODELS:
            found = {}
            for label, frames in (("hourly", hourly), ("daily", daily)):
                table = replay(book, frames, loss_model=_as_model(name), fee_rate=0.0)
                loss = table["fund_loss"].groupby(level=0).sum()
                per_day = loss.groupby(loss.index.floor("D")).sum()
                month = per_day.rolling(HORIZON_DAYS).sum().dropna()
                found[label] = {"total": float(per_day.sum()) / total, "largest_month": float(month.max()) / total,
                                "month_q95": float(month.quantile(0.95)) / total,
                                "liquidated": float(table["liquidated"].sum()) / total}
            row[f"replay_{name}"] = found
        out[sample] = row
    return out


def daily_of(paths: ReturnPaths) -> ReturnPaths:
    """Hourly paths as daily ones: summed returns, the day's extremes chained from its hours,
    volatility sqrt(sum of hourly variances), long-run volatility x sqrt(24)."""
    n, horizon, j = paths.returns.shape
    days = horizon // 24
    shape = (n, days, 24, j)
    returns = paths.returns[:, : 24 * days].reshape(shape)
    level = np.cumsum(returns, axis=2) - returns  # log price at each hour's open, from the day's open
    low = (level + paths.low[:, : 24 * days].reshape(shape)).min(axis=2)
    high = (level + paths.high[:, : 24 * days].reshape(shape)).max(axis=2)
    total = returns.sum(axis=2)
    volatility = np.sqrt((paths.volatility[:, : 24 * days].reshape(shape) ** 2).sum(axis=2))
    return ReturnPaths(total, volatility, paths.markets, period=pd.Timedelta(days=1),
                       long_run_volatility=None if paths.long_run_volatility is None
                       else paths.long_run_volatility * math.sqrt(24),
                       low=np.minimum(low, np.minimum(total, 0.0)), high=np.maximum(high, np.maximum(total, 0.0)))


# -- 5. stress days -----------------------------------------------------------------------------
def stress_days(closes: Mapping[str, pd.Series]) -> list[dict[str, Any]]:
    models = fit_models(closes, "2025-12-31")
    book = VenueBook([Market(name, oi, TURNOVER * oi) for name, oi in BOOK.items()])
    shocks = [-0.1, -0.2, -0.3, -0.4, -0.5]
    paths = stress_paths(models, HORIZON_DAYS, shocks=shocks)
    rows = []
    for name in MODELS:
        model = _as_model(name)
        cap = float(getattr(model, "fee_cap", 0.0125))
        scenarios = build_scenarios(paths, book, loss_model=model)
        for i, shock in enumerate(shocks):
            loss = float(scenarios.losses[i, 0])
            fees = float(cap * scenarios.premium_base[i, 0].sum())
            rows.append({"model": name, "shock": shock, "loss": loss, "fee_income": fees, "fund_change": fees - loss})
    return rows


# -- the report ---------------------------------------------------------------------------------
def _pct(x: float, digits: int = 2) -> str:
    return _common.percent(x, digits)


def _m(x: float) -> str:
    return _common.millions(x, "m")


def report(results: Mapping[str, Any], prov: _common.Provenance) -> str:
    lines = [f"# Realism of the venue loss model", "", prov.markdown(), ""]
    lines += ["## 1. Event days (BTC rows of public_liquidation_events.csv with open interest)", "",
              "Model / reported; a row's `uncertain` note is shown. Liquidated within 1/2..2 and fund loss within "
              "1/3..3 are the issue's bands.", ""]
    for source, per_model in results["events"].items():
        header = ["date", "scope", "low", "open interest", "reported liq.", "reported loss"]
        for name in MODELS:
            header += [f"{name} liq. (ratio)", f"{name} loss (ratio)"]
        header.append("uncertain")
        table = []
        base = per_model[MODELS[0]]
        for i, row in enumerate(base):
            cells = [row["date"], row["scope"], _pct(row["low"], 1), _m(row["open_interest"]),
                     _m(row["reported_liquidated"]), _m(row["reported_fund_loss"])]
            for name in MODELS:
                other = per_model[name][i]
                cells += [f"{_m(other['liquidated'])} ({other['liquidated_ratio']:.2f})",
                          f"{_m(other['fund_loss'])} ({other['fund_loss_ratio']:.2f})"]
            cells.append(row["uncertain"] or "")
            table.append(cells)
        lines += [f"**{source}**", "", _common.markdown_table(header, table), ""]
    lines += ["## 2. A replayed real year (2025, Binance daily OHLC, open interest 1bn per side)", ""]
    header = ["model", "market", "mean daily share", "ordinary days (4-6%)", "median share", "calm ordinary days",
              "median share (calm)", "loss per liquidated $ (calm)", "largest day"]
    table = []
    for name in MODELS:
        for market, row in results["year"][name].items():
            table.append([name, market, _pct(row["mean_daily_share"]), row["ordinary_days"],
                          _pct(row["ordinary_median_share"]), row["calm_ordinary_days"],
                          _pct(row["calm_ordinary_median_share"]), _pct(row["calm_loss_per_liquidated"], 3),
                          _pct(row["largest_day_share"], 1)])
    lines += [_common.markdown_table(header, table), ""]
    lines += [f"## 3. Implied 30-day fund / open interest at alpha = {ALPHA:.0%} (Binance-like BTC/ETH/BNB book)", "",
              f"{results['n_implied']:,} scenarios per state, FHS innovations, models chosen by fit_volatility(spec='auto', "
              "innovations='fhs') on 1,500 daily returns up to the state's date. Real funds hold roughly 1-5% of open interest.", ""]
    header = ["state", "BTC daily vol."] + [f"{name}" for name in MODELS] + [f"{name}, fees at cap" for name in MODELS]
    table = [[r["state"], _pct(r["btc_volatility"])] + [_pct(r[name]) for name in MODELS]
             + [_pct(r[f"{name}_with_fees"]) for name in MODELS] for r in results["implied"]]
    lines += [_common.markdown_table(header, table), ""]
    lines += ["The same models as 'today', with every market's starting volatility scaled (the state alone):", ""]
    header = ["starting volatility", "BTC daily vol."] + list(MODELS)
    table = [[f"x {r['factor']:g}", _pct(r["btc_volatility"])] + [_pct(r[name]) for name in MODELS]
             for r in results["sweep"]]
    lines += [_common.markdown_table(header, table), ""]
    lines += ["## 4. Calendar time: the same book over the same 30 days, from hourly and from daily bars", "",
              "Per sample of hourly bars: (a) models chosen by fit_volatility(spec='auto', innovations='fhs') on the "
              "hourly bars and on the day bars chained from the same hours, 30 days simulated from each (fund / open "
              "interest at 99% and 95%; the models' own 30-day return law beside it); (b) the loss model alone: the "
              "hourly paths of (a) aggregated to days (returns summed, each day's low and high chained from its hours) "
              "and run as daily periods; (c) no model: the real history replayed at both clocks (rolling 30-day fund "
              "loss / open interest). The acceptance asks hourly / daily within 0.8..1.25.", ""]
    for sample, cal in results["calendar"].items():
        markets = cal["markets"]
        lines += [f"**{sample}**, {cal['fit_sample']} ({cal['hourly_n']:,} hourly and {cal['daily_n']:,} daily "
                  "scenarios)", ""]
        header = ["", "model", "daily 99%", "hourly 99%", "hourly / daily", "daily 95%", "hourly 95%",
                  "hourly / daily"]
        table = []
        for name in MODELS:
            d, h = cal[f"daily_{name}"], cal[f"hourly_{name}"]
            table.append(["(a) fitted separately", name, _pct(d["0.01"]), _pct(h["0.01"]),
                          f"{h['0.01'] / d['0.01']:.2f}", _pct(d["0.05"]), _pct(h["0.05"]),
                          f"{h['0.05'] / d['0.05']:.2f}"])
        for name in MODELS:
            d, h = cal[f"same_paths_daily_{name}"], cal[f"hourly_{name}"]
            table.append(["(b) the same paths", name, _pct(d["0.01"]), _pct(h["0.01"]),
                          f"{h['0.01'] / d['0.01']:.2f}", _pct(d["0.05"]), _pct(h["0.05"]),
                          f"{h['0.05'] / d['0.05']:.2f}"])
        lines += [_common.markdown_table(header, table), ""]
        header = ["", "daily model", "hourly model", "hourly / daily"]
        table = []
        for m in markets:
            d, h = cal["daily_month_std"][m], cal["hourly_month_std"][m]
            table.append([f"{m} 30-day return std", _pct(d), _pct(h), f"{h / d:.2f}"])
            d, h = cal["daily_month_q01"][m], cal["hourly_month_q01"][m]
            table.append([f"{m} 30-day return 1% quantile", _pct(d), _pct(h), f"{h / d:.2f}"])
        lines += ["The two fits' own 30-day law (the part of (a) that is not the loss model):", "",
                  _common.markdown_table(header, table), ""]
        header = ["(c) replayed history", "daily: largest 30 days", "hourly: largest 30 days", "hourly / daily",
                  "daily: 95% of 30-day windows", "hourly: 95%", "hourly / daily", "liquidated hourly / daily"]
        table = []
        for name in MODELS:
            d, h = cal[f"replay_{name}"]["daily"], cal[f"replay_{name}"]["hourly"]
            ratio = (lambda a, b: f"{a / b:.2f}" if b > 0 else "n/a")
            table.append([name, _pct(d["largest_month"], 3), _pct(h["largest_month"], 3),
                          ratio(h["largest_month"], d["largest_month"]), _pct(d["month_q95"], 3),
                          _pct(h["month_q95"], 3), ratio(h["month_q95"], d["month_q95"]),
                          ratio(h["liquidated"], d["liquidated"])])
        lines += [_common.markdown_table(header, table), ""]
    lines += ["## 5. Stress days: the fund's change on the crash day (fees charged at the cap)", ""]
    header = ["model", "shock", "fund loss", "fee income", "fund change"]
    table = [[r["model"], f"{r['shock']:.0%}", _m(r["loss"]), _m(r["fee_income"]), _m(r["fund_change"])]
             for r in results["stress"]]
    lines += [_common.markdown_table(header, table), "", f"Total time {results['seconds']:.0f} s.", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cli = _common.parser(f"python -m {MODULE}", __doc__.splitlines()[0], seed=DEFAULT_SEED)
    args = cli.parse_args(argv)
    missing = _common.data_available(args.data, tuple(FILES.values()))
    if missing:
        return _common.fail(f"{MODULE}: {args.data} lacks {', '.join(missing)} ({_common.DATA_HELP})")
    prov = _common.provenance(MODULE, argv, args.seed)
    clock = time.perf_counter()
    data = {label: read_ohlc(args.data / name) for label, name in FILES.items() if label != "events"}
    events = pd.read_csv(args.data / EVENTS_FILE)
    results: dict[str, Any] = {"events": {}, "year": {}}
    for source, frame in (("Binance BTCUSDT daily OHLC", data["BTC daily"]),
                          ("Bitstamp BTCUSD hourly OHLC", data["Bitstamp hourly"])):
        results["events"][source] = {name: event_rows(events, frame, _as_model(name)) for name in MODELS}
    year_prices = {"BTC": data["BTC daily"], "ETH": data["ETH daily"]}
    for name in MODELS:
        results["year"][name] = replayed_year(year_prices, _as_model(name))
    closes = {name: data[f"{name} daily"]["close"] for name in BOOK}
    n_implied = 4_000 if args.quick else 20_000
    results["n_implied"] = n_implied
    results["implied"] = implied_funds(closes, n_implied, args.seed)
    results["sweep"] = volatility_sweep(closes, n_implied, args.seed)
    samples = {"Binance BTC/ETH hourly": {"BTC": data["BTC hourly"], "ETH": data["ETH hourly"]},
               "Bitstamp BTC hourly": {"BTC": data["Bitstamp hourly"]}}
    results["calendar"] = calendar(samples, 500 if args.quick else 4_000, 2_000 if args.quick else 20_000, args.seed)
    results["stress"] = stress_days(closes)
    results["seconds"] = time.perf_counter() - clock
    stem = "realism_quick" if args.quick else "realism"
    out = Path(args.out)
    _common.write_text(out / f"{stem}.md", report(results, prov))
    _common.write_text(out / f"{stem}.json", json.dumps({"provenance": prov.__dict__, **results}, indent=1,
                                                        default=float, allow_nan=True) + "\n")
    print(f"wrote {out / (stem + '.md')} in {results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
