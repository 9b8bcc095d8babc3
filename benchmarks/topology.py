"""``python -m benchmarks.topology``: how much capital each fund topology needs for the same solvency.

For (a) the preset (``calibrate()``: BTC, ETH, SOL) and (b) the 5-market book of
``benchmarks.decision`` (BTC, ETH, SOL, XRP, DOGE fitted on the Binance daily files of
``shared/data``), the calibrated policy's rates are held and the fund targets of each topology are
sized on the fit scenarios (:mod:`fundguard.optimizer.topology`) for the same alpha:

* pooled: one fund for every market;
* per market: one fund each (dYdX's isolated markets);
* Binance-style: BTC and ETH each on their own, the rest pooled (Binance's published layout);
* suggested: groups of markets whose needs are tail dependent (``suggest_groups``: upper tail
  dependence at 5% above what independent markets reach by chance in three standard errors,
  complete linkage).

Each under the venue-wide event "any fund ruined" (P <= alpha, the pooled fund's meaning) and under
"per fund" (each fund at alpha on its own). Reported: each fund, the total as a share of open
interest, the in-sample share of scenarios with some fund ruined, the lower bound of the "any" total
(the per-fund order statistics), and the pairwise tail dependence of the markets' needs.

Writes ``topology.md`` and ``topology.json`` (``topology_quick.*`` with ``--quick``).
"""

from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from fundguard.optimizer import calibrate
from fundguard.optimizer.job.preset import default_config
from fundguard.optimizer.topology import TOPOLOGY_RULES, compare_topologies, group_needs, suggest_groups, tail_dependence

from . import _common
from .decision import BOOK5, FILES, five_market_config

MODULE = "benchmarks.topology"
DEFAULT_SEED = 20261125
SIZES = {"full": (10_000, 20_000), "quick": (2_000, 4_000)}


def topologies(markets: Sequence[str], suggested: Sequence[Sequence[str]]) -> dict[str, list[list[str]]]:
    out = {"pooled": [list(markets)], "per market": [[m] for m in markets]}
    majors = [m for m in ("BTC", "ETH") if m in markets]
    rest = [m for m in markets if m not in majors]
    if majors and rest:
        out["Binance-style"] = [[m] for m in majors] + [rest]
    out["suggested"] = [list(g) for g in suggested]
    return out


def run_book(config: Any, seed: int, open_interest: float) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = calibrate(config, seed=seed, sensitivities=False)
    policy, scenarios = result.policy, result.scenarios
    markets = list(policy.markets)
    scaled = scenarios if policy.participation is None else policy.participation.scaled(
        scenarios, policy.premium_rates, fund_only=True)
    needs = group_needs(scaled, policy.premium_rates, [[m] for m in markets], floor=policy.floor, ruin=policy.ruin)
    random_needs = needs[~scaled.is_stress]
    suggested = suggest_groups(random_needs, markets)
    lam = tail_dependence(random_needs)
    layouts = topologies(markets, suggested)
    sized = {rule: compare_topologies(policy, scenarios, layouts, rule=rule) for rule in TOPOLOGY_RULES}
    return {
        "markets": markets, "fund_target": policy.fund_target, "method": policy.method, "alpha": policy.alpha,
        "rates": policy.rates_by_market(), "open_interest": open_interest, "n_random": int(scenarios.n_random),
        "n_stress": int(scenarios.n_stress), "tail_dependence": lam.tolist(),
        "implausible_paths": int(getattr(result, "implausible_paths", 0) or 0),
        "topologies": {rule: {name: s.to_dict() for name, s in by_name.items()} for rule, by_name in sized.items()},
    }


def _m(x: float) -> str:
    return _common.millions(x)


def report(results: dict[str, Any], prov: _common.Provenance, quick: bool) -> str:
    lines = ["# Fund topologies: pooled, per market, grouped, for the same solvency", "", prov.markdown(), ""]
    if quick:
        lines += ["**--quick**: small scenario counts; not the committed result.", ""]
    for key, book in results["books"].items():
        oi = book["open_interest"]
        lines += [f"## {book['label']}", "",
                  f"Calibrated ({book['method']}): fund {_m(book['fund_target'])} ({book['fund_target'] / oi:.2%} of "
                  f"open interest {_m(oi)}), alpha {book['alpha']:.0%}, rates "
                  + ", ".join(f"{m} {r:.3%}" for m, r in book["rates"].items())
                  + f"; {book['n_random']:,} fit scenarios, {book['n_stress']} stress. Funds sized at those rates.", ""]
        if book.get("implausible_paths"):
            lines += [f"Note: {book['implausible_paths']} fit paths exceed the stated path bound.", ""]
        header = ["topology", "funds", "total", "% of OI", "vs pooled", "P(some fund ruined)", "lower bound"]
        for rule in TOPOLOGY_RULES:
            by_name = book["topologies"][rule]
            pooled = by_name["pooled"]["total"]
            table = []
            for name, s in by_name.items():
                funds = "; ".join(f"{'+'.join(g)} {_m(f)}" for g, f in zip(s["groups"], s["funds"], strict=True))
                table.append([name, funds, _m(s["total"]), f"{s['total'] / oi:.2%}", f"{s['total'] / pooled:.2f}x" if pooled > 0 else "n/a",
                              _common.percent(s["ruin_any"]), _m(s["lower_bound"])])
            title = ("ruin = any fund below its floor (P <= alpha for the venue)" if rule == "any"
                     else "each fund at alpha on its own")
            lines += [f"**{title}**", "", _common.markdown_table(header, table), ""]
        markets = book["markets"]
        lam = np.asarray(book["tail_dependence"])
        lines += ["Upper tail dependence of the markets' needs at 5% (1 = they crash together, 0.05 = independent):", "",
                  _common.markdown_table(["", *markets], [[m, *[f"{lam[i, j]:.2f}" for j in range(len(markets))]]
                                                          for i, m in enumerate(markets)]), ""]
    lines += ["## Reading", "",
              "- Pooled is never above the sum of separate funds for the venue-wide event (tested: the pooled need "
              "is a maximum over time of a sum, at most the sum of the groups' maxima).",
              "- Separate funds sized each at alpha on their own ('per fund') look cheap, but the venue then sees some "
              "fund ruined far more often than alpha: the column P(some fund ruined) says how often.",
              "- The 'any' sizing of separate funds is a search (common order statistic, then greedy), reported "
              "beside its lower bound (each fund at alpha on its own).", "",
              f"Total time {results['seconds']:.0f} s.", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cli = _common.parser(f"python -m {MODULE}", __doc__.splitlines()[0], seed=DEFAULT_SEED)
    args = cli.parse_args(argv)
    prov = _common.provenance(MODULE, argv, args.seed)
    clock = time.perf_counter()
    n5, c5 = SIZES["quick" if args.quick else "full"]
    preset = default_config()
    preset_config = None
    if args.quick:
        preset_config = dataclasses.replace(preset, scenarios=dataclasses.replace(
            preset.scenarios, n_scenarios=n5, certify_scenarios=c5))
    books = {"preset": {"label": "(a) the preset: BTC, ETH, SOL",
                        **run_book(preset_config, args.seed, sum(m.open_interest for m in preset.markets))}}
    missing = _common.data_available(args.data, tuple(FILES.values()))
    if missing:
        print(f"{MODULE}: the 5-market book is skipped: {args.data} lacks {', '.join(missing)}", file=sys.stderr)
    else:
        books["five"] = {"label": "(b) 5-market book: BTC, ETH, SOL, XRP, DOGE (Binance daily, fhs)",
                         **run_book(five_market_config(args.data, n5, c5), args.seed,
                                    sum(oi for oi, _ in BOOK5.values()))}
    results = {"books": books, "seconds": time.perf_counter() - clock}
    stem = "topology_quick" if args.quick else "topology"
    _common.write_results(args.out, stem, report(results, prov, args.quick), results, prov)
    print(f"wrote {args.out / (stem + '.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
