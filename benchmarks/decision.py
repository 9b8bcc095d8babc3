"""``python -m benchmarks.decision``: are the optimal premium rates interior and stable across seeds?

With participation on (``[problem] participation_elasticity = 1``, the job layer's default) each
market's book shrinks with its liquidation fee and the fee's cost is derived
(:mod:`fundguard.optimizer.participation`), so the optimal rates should sit strictly inside their
bounds and move little from seed to seed. This benchmark measures it, through the library entry
point :func:`fundguard.optimizer.calibrate` (fit, simulate, build losses, solve, certify), for:

(a) **the preset**: ``calibrate(None)`` (BTC, ETH, SOL; the built-in preset's models, illustrative
    book and problem; 20,000 parametric scenarios, 100,000 to certify);
(b) **a 5-market book** BTC, ETH, SOL, XRP, DOGE fitted on the Binance daily files of
    ``shared/data`` (open interest / daily volume roughly proportional to the real sizes: BTC 8 / 24
    bn, ETH 5 / 15, SOL 1.5 / 5, XRP 1 / 3, DOGE 0.8 / 2.5), filtered-historical-simulation
    innovations, 30 days, 10,000 scenarios and 20,000 to certify; the problem settings of
    ``ILLUSTRATIVE_PROBLEM`` (alpha 1%, cost of capital 15% a year for 30 days, rates in [0, 1.25%])
    with ``premium_weight`` 0 (the fee's cost derived), rates in force 0.5%.

over 6 seeds (``--seed`` .. ``--seed + 5``) and the methods "exact", "certified", "scenario" (and
"cvar" with ``--methods``): per run the fund target, each market's rate, the objective, whether
each rate is strictly inside its bounds (more than 1e-5 from 0 and from the cap), the certificate
and the count of implausible paths. Per (book, method): each rate's mean and coefficient of
variation across seeds (sample std / mean), the share of rates strictly inside, the fund target's
min / mean / max; per book the spread of fund targets across methods. Against the acceptance:
"optimal rates strictly inside their bounds for at least half of the markets, and stable across 6
seeds (each rate's coefficient of variation under 10%)".

Writes ``decision.md`` and ``decision.json`` (``decision_quick.*`` with ``--quick``).
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fundguard.models.errors import FundguardError
from fundguard.optimizer import calibrate
from fundguard.optimizer.job.config import ScenarioConfig
from fundguard.optimizer.job.preset import ILLUSTRATIVE_PROBLEM, default_config

from . import _common

MODULE = "benchmarks.decision"
DEFAULT_SEED = ScenarioConfig.seed  # the config's default seed: the preset's published answer
N_SEEDS = 6
METHODS = ("exact", "certified", "scenario")
ALL_METHODS = ("exact", "certified", "scenario", "cvar")
INSIDE_TOL = 1e-5
CV_LIMIT = 0.10
#: Open interest (notional per side) and daily volume, USD: round numbers roughly proportional to
#: the markets' real perpetual sizes (not any one venue's).
BOOK5 = {"BTC": (8e9, 24e9), "ETH": (5e9, 15e9), "SOL": (1.5e9, 5e9), "XRP": (1e9, 3e9), "DOGE": (8e8, 2.5e9)}
FILES = {name: f"binance_{name}USDT_daily.csv" for name in BOOK5}
CURRENT_RATE = 0.005
HORIZON = 30
#: (n_scenarios, certify_scenarios) of the 5-market book; the preset keeps its own unless --quick.
SIZES = {"full": (10_000, 20_000), "quick": (2_500, 5_000)}
PRESET_QUICK = (2_500, 5_000)
QUICK_SEEDS = 2


def five_market_config(data: Path, n_scenarios: int, certify_scenarios: int) -> dict[str, Any]:
    """The 5-market book as a config mapping (what a TOML file would hold)."""
    problem = {k: ILLUSTRATIVE_PROBLEM[k] for k in ("alpha", "cost_of_capital", "premium_min", "premium_max",
                                                    "confidence")}
    problem["premium_weight"] = 0.0
    return {
        "markets": [{"name": name, "prices": str(Path(data) / FILES[name]), "open_interest": oi,
                     "daily_volume": volume, "current_rate": CURRENT_RATE} for name, (oi, volume) in BOOK5.items()],
        "scenarios": {"n_scenarios": n_scenarios, "certify_scenarios": certify_scenarios, "horizon": HORIZON,
                      "innovations": "fhs"},
        "problem": problem,
    }


def preset_config(sizes: tuple[int, int] | None) -> Any:
    """None (``calibrate()``'s own preset) or the preset's config with smaller scenario counts."""
    if sizes is None:
        return None
    import dataclasses

    cfg = default_config()
    return dataclasses.replace(cfg, scenarios=dataclasses.replace(cfg.scenarios, n_scenarios=sizes[0],
                                                                   certify_scenarios=sizes[1]))


def premium_max_of(config: Any) -> float:
    if config is None or not isinstance(config, Mapping):
        cfg = config if config is not None else default_config()
        value = cfg.problem.premium_max
    else:
        value = config["problem"]["premium_max"]
    if isinstance(value, Mapping):
        raise ValueError("the benchmark's books use one premium_max for every market")
    return float(value)


def run_one(config: Any, seed: int, method: str, premium_max: float) -> dict[str, Any]:
    """One calibration: its policy, certificate, interior flags, implausible paths and time."""
    clock = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = calibrate(config, seed=seed, method=method)
    except FundguardError as exc:  # recorded, not fatal: a method may have no answer at a size
        return {"seed": seed, "method": method, "error": f"{type(exc).__name__}: {exc}",
                "seconds": time.perf_counter() - clock}
    seconds = time.perf_counter() - clock
    policy = result.policy
    rates = {m: float(r) for m, r in policy.rates_by_market().items()}
    inside = {m: bool(r > INSIDE_TOL and r < premium_max - INSIDE_TOL) for m, r in rates.items()}
    return {
        "seed": seed, "method": method, "fund_target": float(policy.fund_target), "rates": rates,
        "objective": float(policy.objective), "inside": inside,
        "certificate_upper": float(result.certificate.upper_bound), "meets_target": bool(result.meets_target),
        "implausible_paths": int(result.implausible_paths), "seconds": seconds,
        "notes": list(result.notes),
        "timings": {k: float(v) for k, v in result.timings.items()},
    }


def _cv(values: Sequence[float]) -> float:
    x = np.asarray(values, float)
    mean = float(x.mean())
    if x.size < 2 or mean == 0.0:
        return math.nan
    return float(x.std(ddof=1) / abs(mean))


def summarise(runs: Sequence[Mapping[str, Any]], markets: Sequence[str], methods: Sequence[str]) -> dict[str, Any]:
    """Per method: rate means and CVs, interior shares, fund-target range; across methods: the spread."""
    out: dict[str, Any] = {"methods": {}}
    for method in methods:
        rows = [r for r in runs if r["method"] == method and "error" not in r]
        errors = [r["error"] for r in runs if r["method"] == method and "error" in r]
        if not rows:
            out["methods"][method] = {"n_seeds": 0, "errors": errors}
            continue
        funds = np.array([r["fund_target"] for r in rows])
        per_market = {}
        for m in markets:
            rates = [r["rates"][m] for r in rows]
            per_market[m] = {"mean": float(np.mean(rates)), "cv": _cv(rates), "min": float(np.min(rates)),
                             "max": float(np.max(rates)),
                             "inside_share": float(np.mean([r["inside"][m] for r in rows]))}
        inside_all = [m for m in markets if per_market[m]["inside_share"] == 1.0]
        stable = [m for m in markets if math.isfinite(per_market[m]["cv"]) and per_market[m]["cv"] < CV_LIMIT]
        share = float(np.mean([r["inside"][m] for r in rows for m in markets]))
        out["methods"][method] = {
            "n_seeds": len(rows), "errors": errors, "markets": per_market, "inside_share": share,
            "markets_inside_every_seed": inside_all, "markets_cv_under_limit": stable,
            "fund_target": {"min": float(funds.min()), "mean": float(funds.mean()), "max": float(funds.max()),
                            "cv": _cv(funds)},
            "objective_mean": float(np.mean([r["objective"] for r in rows])),
            "meets_target_share": float(np.mean([r["meets_target"] for r in rows])),
            "implausible_paths_max": int(max(r["implausible_paths"] for r in rows)),
            "seconds_mean": float(np.mean([r["seconds"] for r in rows])),
            "acceptance": {
                "interior_half": 2 * len(inside_all) >= len(markets),
                "stable": len(stable) == len(markets),
            },
        }
        acc = out["methods"][method]["acceptance"]
        acc["meets"] = bool(acc["interior_half"] and acc["stable"] and not errors)
    means = {m: s["fund_target"]["mean"] for m, s in out["methods"].items() if s["n_seeds"]}
    seeds = sorted({r["seed"] for r in runs})
    per_seed = []
    for seed in seeds:
        funds = [r["fund_target"] for r in runs if r["seed"] == seed and "error" not in r]
        if len(funds) > 1 and min(funds) > 0:
            per_seed.append(max(funds) / min(funds))
    out["fund_spread"] = {
        "mean_by_method": means,
        "ratio_of_means": (max(means.values()) / min(means.values())) if means and min(means.values()) > 0
        else math.nan,
        "per_seed_ratio_max": max(per_seed) if per_seed else math.nan,
        "per_seed_ratio_mean": float(np.mean(per_seed)) if per_seed else math.nan,
    }
    return out


def _pct(x: float, digits: int = 3) -> str:
    return _common.percent(x, digits)


def _m(x: float) -> str:
    return _common.millions(x, "M")


def report(results: Mapping[str, Any], prov: _common.Provenance) -> str:
    lines = ["# Decision: are the optimal premium rates interior and stable across seeds?", "",
             prov.markdown(), "",
             "Each run is `fundguard.optimizer.calibrate(config, seed=s, method=m)` with participation on "
             "(elasticity 1, the job default; the fee's cost derived, premium_weight 0). "
             f"Seeds {results['seeds'][0]}..{results['seeds'][-1]} ({len(results['seeds'])}); a rate is "
             f"*inside* when it is more than {INSIDE_TOL:g} from 0 and from premium_max; CV = sample std / mean "
             "across seeds.", "",
             "**Acceptance:** optimal rates strictly inside their bounds for at least half of the markets, and "
             "stable across 6 seeds (each rate's coefficient of variation under 10%). Here a market counts as "
             "inside when its rate is inside at every seed.", ""]
    if results.get("size_note"):
        lines += [f"**Sizes:** {results['size_note']}", ""]
    for key, book in results["books"].items():
        markets = book["markets"]
        summary = book["summary"]
        lines += [f"## {book['label']}", "", book["description"], ""]
        header = ["method", *[f"{m} mean (CV)" for m in markets], "inside share", "fund min / mean / max",
                  "objective mean", "meets alpha", "acceptance"]
        table = []
        for method, s in summary["methods"].items():
            if not s["n_seeds"]:
                table.append([method, *["n/a"] * len(markets), "n/a", "n/a", "n/a", "n/a",
                              f"FAILS (no answer: {s['errors'][0]})"])
                continue
            cells = [f"{_pct(s['markets'][m]['mean'])} ({s['markets'][m]['cv']:.1%})"
                     if math.isfinite(s['markets'][m]['cv']) else f"{_pct(s['markets'][m]['mean'])} (n/a)"
                     for m in markets]
            acc = s["acceptance"]
            verdict = "meets" if acc["meets"] else "FAILS (" + ", ".join(
                [w for w, ok in (("interior", acc["interior_half"]), ("stability", acc["stable"]),
                                 (f"{len(s['errors'])} seed(s) without an answer", not s["errors"])) if not ok]) + ")"
            ft = s["fund_target"]
            table.append([method, *cells, f"{s['inside_share']:.0%}",
                          f"{_m(ft['min'])} / {_m(ft['mean'])} / {_m(ft['max'])}", _m(s["objective_mean"]),
                          f"{s['meets_target_share']:.0%}", verdict])
        lines += [_common.markdown_table(header, table), ""]
        header = ["method", *[f"{m} inside" for m in markets], "implausible paths (max)", "s / run"]
        table = [[method, *[f"{s['markets'][m]['inside_share']:.0%} ({_pct(s['markets'][m]['min'], 2)}.."
                            f"{_pct(s['markets'][m]['max'], 2)})" for m in markets],
                  f"{s['implausible_paths_max']:,}", f"{s['seconds_mean']:.0f}"]
                 for method, s in summary["methods"].items() if s["n_seeds"]]
        lines += ["Per market: share of seeds with the rate inside (its range across seeds):", "",
                  _common.markdown_table(header, table), ""]
        spread = summary["fund_spread"]
        lines += [f"Fund target across methods: largest / smallest method mean {spread['ratio_of_means']:.2f}; "
                  f"per seed, largest / smallest method {spread['per_seed_ratio_mean']:.2f} on average, "
                  f"{spread['per_seed_ratio_max']:.2f} at most.", ""]
        if max([s.get("implausible_paths_max", 0) for s in summary["methods"].values()] or [0]) > 0:
            lines += ["**Implausible paths:** some runs simulate one-period |log returns| above the stated bound "
                      "(fundguard.models.scenarios.bounds); their fund targets are not credible "
                      "(`CalibrationResult.implausible_paths`; the CLI would exit non-zero). Per-run counts are in "
                      "the JSON.", ""]
        if book.get("notes"):
            lines += ["Notes of the first run: " + " / ".join(book["notes"]), ""]
    lines += [f"Total time {results['seconds']:.0f} s ({results['n_runs']} calibrations).", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cli = _common.parser(f"python -m {MODULE}", __doc__.splitlines()[0], seed=DEFAULT_SEED)
    cli.add_argument("--methods", default=",".join(METHODS),
                     help=f"comma-separated methods among {', '.join(ALL_METHODS)} (default {','.join(METHODS)})")
    cli.add_argument("--n-scenarios", type=int, default=None,
                     help="override the 5-market book's fit scenarios (certify = 2 x); the size note says so")
    args = cli.parse_args(argv)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    unknown = [m for m in methods if m not in ALL_METHODS]
    if unknown:
        return _common.fail(f"{MODULE}: unknown method(s) {', '.join(unknown)}; choose among {', '.join(ALL_METHODS)}")
    missing = _common.data_available(args.data, tuple(FILES.values()))
    if missing:
        return _common.fail(f"{MODULE}: {args.data} lacks {', '.join(missing)} ({_common.DATA_HELP}; the 5-market "
                            "book also needs binance_XRPUSDT_daily.csv and binance_DOGEUSDT_daily.csv); pass --data")
    prov = _common.provenance(MODULE, argv, args.seed)
    clock = time.perf_counter()
    n_seeds = QUICK_SEEDS if args.quick else N_SEEDS
    seeds = [args.seed + i for i in range(n_seeds)]
    n5, c5 = SIZES["quick" if args.quick else "full"]
    size_note = ""
    if args.n_scenarios is not None:
        n5, c5 = args.n_scenarios, 2 * args.n_scenarios
        size_note = f"the 5-market book reduced to {n5:,} fit / {c5:,} certify scenarios (--n-scenarios) to bound the time"
    if args.quick:
        size_note = (f"--quick: {n_seeds} seeds, the preset at {PRESET_QUICK[0]:,} / {PRESET_QUICK[1]:,} scenarios, "
                     f"the 5-market book at {n5:,} / {c5:,}: not the acceptance's 6 seeds")
    preset_cfg = preset_config(PRESET_QUICK if args.quick else None)
    pcfg = preset_cfg or default_config()
    books = {
        "preset": {
            "label": "(a) the preset: BTC, ETH, SOL (`calibrate()`)",
            "description": (f"The built-in preset's models, illustrative book and problem; {pcfg.scenarios.n_scenarios:,} "
                            f"{pcfg.scenarios.innovations} scenarios of {pcfg.scenarios.horizon} days, "
                            f"{pcfg.scenarios.certify_scenarios:,} to certify, premium_weight "
                            f"{pcfg.problem.premium_weight:g}, rates in [0, {pcfg.problem.premium_max:.2%}]."),
            "config": preset_cfg, "markets": list(pcfg.market_names),
        },
        "five": {
            "label": "(b) 5-market book: BTC, ETH, SOL, XRP, DOGE (Binance daily files)",
            "description": (f"Fitted on shared/data's Binance daily closes (spec auto, fhs innovations); open interest / "
                            "daily volume " + ", ".join(f"{m} {oi / 1e9:g} / {v / 1e9:g} bn" for m, (oi, v) in BOOK5.items())
                            + f"; {n5:,} scenarios of {HORIZON} days, {c5:,} to certify; alpha "
                            f"{ILLUSTRATIVE_PROBLEM['alpha']:g}, cost of capital {ILLUSTRATIVE_PROBLEM['cost_of_capital']:g}, "
                            f"premium_weight 0, rates in [0, {ILLUSTRATIVE_PROBLEM['premium_max']:.2%}], in force "
                            f"{CURRENT_RATE:.2%}."),
            "config": five_market_config(args.data, n5, c5), "markets": list(BOOK5),
        },
    }
    results: dict[str, Any] = {"quick": bool(args.quick), "seeds": seeds, "methods": list(methods),
                               "inside_tol": INSIDE_TOL, "cv_limit": CV_LIMIT, "size_note": size_note, "books": {}}
    n_runs = 0
    for key, book in books.items():
        premium_max = premium_max_of(book["config"])
        runs = []
        notes: list[str] = []
        for seed in seeds:
            for method in methods:
                row = run_one(book["config"], seed, method, premium_max)
                runs.append(row)
                if not notes:
                    notes = [n for n in row["notes"]]
                n_runs += 1
                print(f"{key} seed {seed} {method}: fund {row['fund_target']:.4g}, rates "
                      + ", ".join(f"{m} {r:.4%}" for m, r in row["rates"].items())
                      + f" ({row['seconds']:.0f} s)", flush=True)
        summary = summarise(runs, book["markets"], methods)
        results["books"][key] = {
            "label": book["label"], "description": book["description"], "markets": book["markets"],
            "premium_max": premium_max, "runs": runs, "summary": summary, "notes": notes,
        }
    results["n_runs"] = n_runs
    results["seconds"] = time.perf_counter() - clock
    acc = {f"{key}/{method}": s["acceptance"]["meets"] for key, b in results["books"].items()
           for method, s in b["summary"]["methods"].items()}
    results["acceptance"] = acc
    stem = "decision_quick" if args.quick else "decision"
    out = Path(args.out)
    _common.write_text(out / f"{stem}.md", report(results, prov))
    _common.write_text(out / f"{stem}.json", json.dumps({"provenance": prov.__dict__, **results}, indent=1,
                                                        default=float, allow_nan=True) + "\n")
    print(f"wrote {out / (stem + '.md')} in {results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
