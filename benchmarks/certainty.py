"""The methods over many training samples: cost against the oracle, true ruin, and how often a bound fails.

``python -m benchmarks.methods`` (this module's :func:`main`) writes ``results/methods.md``. For each
world (a known generating model) and each solvency level alpha, every method is solved on
``seeds`` independent training samples of N scenarios each, and each answer is judged against

* the **oracle**: method "exact" on ``n_oracle`` scenarios of the world (its rates searched on the
  first ``n_oracle_search``, its fund target the exact sample quantile on all of them at those
  rates: the ``(floor(alpha N) + 1)``-th largest need), the world's chance-constrained optimum up
  to sampling error;
* the **truth**: its ruin probability counted on ``n_reference`` fresh scenarios of the world.

Costs are the library's full objective with the book answering the fees (``benchmarks.methods``:
participation elasticity 1, rates in force 0.5 %, fee cost derived), expectations from the
oracle's sample. Method "certified" draws its fresh scenarios from the world (its default M,
:func:`fundguard.optimizer.fresh_size`); "certified (split)" has none (``fresh=None``) and splits
its N in halves.

Worlds: the fat-tailed BTC/ETH/SOL book and its calm regime (``benchmarks.methods``), and a
**heavy** 4-market world: GJR-t with nu = 3.5 innovations for BTC/ETH/SOL/DOGE, a t(3.5) copula,
persistence 0.97, starting at 1.8x the long-run volatility (a stressed day), on the illustrative
book plus DOGE.

Work is shared where the method's own code allows it: "certified" is
:func:`~fundguard.optimizer.methods.certified.solve_certified` with its ``inner`` solve memoised, so
its rate stage is the "exact" policy already solved on the same training sample (the method calls
exactly that); fresh scenarios are drawn in fixed chunks per (world, seed), so alpha = 0.1 %'s
larger M extends alpha = 1 %'s draw instead of repeating it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from fundguard.models import ScenarioSet
from fundguard.optimizer import PolicyProblem, solve
from fundguard.optimizer.methods.certified import solve_certified
from fundguard.optimizer.participation import mean_market_bases, mean_market_losses

from . import _common
from .methods import (
    BOOK,
    CALM_FIXED,
    CONFIDENCE,
    FAT_TAILED_FIXED,
    HORIZON,
    Contestant,
    World,
    _json_default,
    _seed,
    calm_world,
    capital_cost,
    evaluate,
    fat_tailed_world,
    large_sample,
    required_fund,
    ruin_interval,
    with_shares,
    world_from_numbers,
    world_problem,
    world_scenarios,
)

MODULE = "benchmarks.methods"
DEFAULT_SEED = 20261201

#: The methods, in table order. "certified (split)" is method "certified" without fresh scenarios.
METHODS = ("exact", "certified", "certified (split)", "cvar", "scenario")

#: The heavy world: nu = 3.5 innovations and copula, persistence 0.97 (half-life 23 days), long-run
#: volatility the fat-tailed world's typical one (DOGE: 6 % a day, about its 2021-2025 median),
#: the news responses (alpha, gamma) of the fat-tailed fit (DOGE: SOL's), and today at 1.8x the
#: long-run volatility. Illustrative, not fitted.
HEAVY_NU = 3.5
HEAVY_START = 1.8
HEAVY_PERSISTENCE = 0.97
_HEAVY_BASE = {**FAT_TAILED_FIXED["models"], "DOGE": {**FAT_TAILED_FIXED["models"]["SOL"], "typical": 0.06}}
HEAVY_FIXED: dict[str, Any] = {
    "models": {
        name: {**p, "mu": 0.0, "nu": HEAVY_NU,
               "beta": HEAVY_PERSISTENCE - p["alpha"] - 0.5 * p["gamma"],
               "omega": p["typical"] ** 2 * (1.0 - HEAVY_PERSISTENCE)}
        for name, p in _HEAVY_BASE.items()
    },
    "copula_nu": HEAVY_NU,
    "copula_correlation": [[1.0, 0.83, 0.69, 0.65],
                           [0.83, 1.0, 0.72, 0.68],
                           [0.69, 0.72, 1.0, 0.62],
                           [0.65, 0.68, 0.62, 1.0]],
}
#: The heavy world's book: the illustrative one plus DOGE (OI 150m, volume 600m a day).
HEAVY_BOOK = (*BOOK, ("DOGE", 1.5e8, 6.0e8))


def heavy_world() -> World:
    """The heavy 4-market world, ``HEAVY_FIXED``, today at ``HEAVY_START`` x the long-run volatility."""
    return world_from_numbers(
        "heavy", f"heavy: 4 markets, t({HEAVY_NU:g}) innovations and copula, today {HEAVY_START:g}x long-run vol",
        HEAVY_FIXED, "fixed parameters HEAVY_FIXED (illustrative)", book=HEAVY_BOOK, start=HEAVY_START)


@dataclass(frozen=True)
class StudySizes:
    """Scenario counts and repetitions of one mode (see the module notes)."""

    n_train: int
    n_oracle: int
    n_oracle_search: int
    n_reference: int
    chunk: int
    seeds: int
    alphas: tuple[float, ...]
    fresh_chunk: int
    #: the cost tolerance passed to "certified" (None: its default)
    tolerance: float | None = None
    #: "cvar" and "scenario" run on the first this many seeds only (None: all): with the rate
    #: search each costs as much as "exact", and neither claims a bound to check over many samples
    slow_seeds: int | None = None
    oracle_time_limit: float = 1800.0


# Full: on 2 shared cores one seed of every method at both levels took some 12 minutes per world
# (three worlds side by side), so "cvar" and "scenario" run on 2 of the 10 seeds.
FULL = StudySizes(n_train=100_000, n_oracle=2_000_000, n_oracle_search=100_000, n_reference=2_000_000,
                  chunk=250_000, seeds=10, alphas=(0.01, 0.001), fresh_chunk=50_000, slow_seeds=2)
#: Quick (the test suite): one world, alpha 1 %, 2 seeds, and "certified" at a 10 % tolerance so
#: that its fresh draw stays small.
QUICK = StudySizes(n_train=3_000, n_oracle=30_000, n_oracle_search=3_000, n_reference=60_000, chunk=30_000,
                   seeds=2, alphas=(0.01,), fresh_chunk=10_000, tolerance=0.1, oracle_time_limit=120.0)

_PURPOSE = {"oracle": 2, "reference": 3, "train": 11, "fresh": 12}


def worlds_for(keys: Sequence[str], data: Path) -> list[tuple[int, World]]:
    """(index, world) for each key; the index seeds the world's streams."""
    makers: dict[str, Callable[[], World]] = {"fat_tailed": lambda: fat_tailed_world(data), "calm": calm_world,
                                              "heavy": heavy_world}
    order = list(makers)
    unknown = [k for k in keys if k not in makers]
    if unknown:
        raise SystemExit(f"unknown world {unknown[0]!r}; choose from {order}")
    return [(order.index(k), makers[k]()) for k in keys]


class FreshStream:
    """Fresh scenarios of one (world, seed), drawn in fixed chunks on demand: ``stream(n, seed)``
    is the first n of them (a callable ``fresh`` for method "certified"). Chunk c is seeded by
    (world, "fresh", seed, c), so a larger request extends a smaller one. Only what the fund
    equation reads is kept (losses, premium bases, each market's losses)."""

    def __init__(self, world: World, root: int, world_index: int, sample: int, chunk: int) -> None:
        self.world, self.root, self.world_index, self.sample, self.chunk = world, root, world_index, sample, chunk
        self.whole: ScenarioSet | None = None
        self.chunks = 0
        self.requests: list[int] = []

    def __call__(self, n: int, seed: int | None = None) -> ScenarioSet:
        self.requests.append(int(n))
        parts = [] if self.whole is None else [self.whole]
        have = self.drawn()
        while have < n:
            part = world_scenarios(self.world, self.chunk,
                                   _seed(self.root, self.world_index, _PURPOSE["fresh"], self.sample, self.chunks))
            parts.append(ScenarioSet(losses=part.losses, premium_base=part.premium_base,
                                     losses_by_market=part.losses_by_market, markets=part.markets))
            del part
            self.chunks += 1
            have += self.chunk
        if len(parts) > 1 or self.whole is None:
            self.whole = parts[0] if len(parts) == 1 else ScenarioSet.concat(parts)
        del parts
        return self.whole.subset(slice(0, int(n))) if self.whole.n_scenarios > n else self.whole

    def drawn(self) -> int:
        return 0 if self.whole is None else self.whole.n_scenarios


@dataclass
class Oracle:
    alpha: float
    fund_target: float
    rates: np.ndarray
    shares: np.ndarray
    cost: float
    seconds: float
    search_fund: float
    evaluations: int


def oracle_at(problem: PolicyProblem, sample: ScenarioSet, sizes: StudySizes) -> Oracle:
    """Method "exact" with its rates searched on the first ``n_oracle_search`` scenarios of ``sample``
    and its fund target exact on all of them at those rates (the (floor(alpha N) + 1)-th largest need
    on S(p), computed here in chunks with the benchmark's own fund equation)."""
    start = time.perf_counter()
    search = sample.subset(slice(0, min(sizes.n_oracle_search, sample.n_scenarios)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        searched = solve(problem, search, "exact", time_limit=sizes.oracle_time_limit)
    del search
    rates = np.asarray(searched.premium_rates, dtype=np.float64)
    shares = problem.participation.shares(rates)
    need = np.concatenate([
        required_fund(sample.losses_by_market[a:a + sizes.chunk], sample.premium_base[a:a + sizes.chunk], rates, shares)
        for a in range(0, sample.n_scenarios, sizes.chunk)])
    n = need.size
    allowed = int(math.floor(problem.alpha * n))
    fund = float(np.partition(need, n - allowed - 1)[n - allowed - 1])
    return Oracle(problem.alpha, fund, rates, shares, 0.0, time.perf_counter() - start, searched.fund_target,
                  int(searched.details.get("participation", {}).get("evaluations", 0)))


def solve_methods(problem: PolicyProblem, train: ScenarioSet, fresh: FreshStream, sizes: StudySizes,
                  seed: int) -> list[tuple[str, Any, float]]:
    """(method, policy or error text, seconds) for every method of :data:`METHODS` on ``train``."""
    out: list[tuple[str, Any, float]] = []
    solved: dict[str, Any] = {}

    def timed(name: str, run: Callable[[], Any]) -> None:
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                policy = run()
        except Exception as exc:  # noqa: BLE001 - a method's failure is a result of the benchmark
            policy = f"error: {type(exc).__name__}: {exc}"
        out.append((name, policy, time.perf_counter() - start))
        solved[name] = policy

    def memo_inner(p: PolicyProblem, scenarios: ScenarioSet, method: str, **options: Any) -> Any:
        # the "exact" policy on this very training sample was solved just before, with these options
        if method == "exact" and scenarios is train and not isinstance(solved.get("exact"), str):
            return solved["exact"]
        return solve(p, scenarios, method, **options)

    tolerance = {} if sizes.tolerance is None else {"tolerance": sizes.tolerance}
    timed("exact", lambda: solve(problem, train, "exact"))
    exact_seconds = out[-1][2]
    timed("certified", lambda: solve_certified(problem, train, inner=memo_inner, fresh=fresh, seed=seed,
                                               confidence=CONFIDENCE, **tolerance))
    # its time includes the rate stage it shares with "exact"
    out[-1] = (out[-1][0], out[-1][1], out[-1][2] + exact_seconds)
    timed("certified (split)", lambda: solve(problem, train, "certified", seed=seed, confidence=CONFIDENCE))
    if sizes.slow_seeds is None or seed < sizes.slow_seeds:
        timed("cvar", lambda: solve(problem, train, "cvar"))
        timed("scenario", lambda: solve(problem, train, "scenario"))
    return out


def as_contestant(name: str, policy: Any, seconds: float, problem: PolicyProblem, n_markets: int) -> Contestant:
    """The benchmark's row of a method's answer (an error text: no fund target, NaN rates)."""
    if isinstance(policy, str):
        return Contestant(name, "method", math.nan, np.full(n_markets, math.nan), "n/a", seconds, status=policy)
    claims = ""
    if policy.certificate is not None:
        claims = f"{policy.certificate.upper_bound:.6g}"
    contestant = Contestant(name, "method", float(policy.fund_target), np.asarray(policy.premium_rates, dtype=np.float64),
                            claims, seconds, in_sample_ruin=float(policy.in_sample_ruin), status=policy.status)
    return with_shares(contestant, problem)


def run_world(world: World, world_index: int, sizes: StudySizes, root: int, log: Callable[[str], None],
              deadline: float | None = None,
              checkpoint: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every (alpha, seed, method) on one world; returns the world's JSON-ready result.

    ``deadline`` (a ``time.time()``): no seed is started that the last one's duration says would end
    after it. ``checkpoint(result)`` is called after every seed with the result so far."""
    seconds: dict[str, float] = {}
    tick = time.perf_counter()
    sample = large_sample(world, sizes.n_oracle, sizes.chunk, root, world_index, "oracle")
    mean_base, mean_loss = mean_market_bases(sample), mean_market_losses(sample)
    markets = [n for n, _, _ in world.book]
    base_problem = world_problem(mean_base, markets=markets, book=world.book)
    seconds["oracle sample"] = time.perf_counter() - tick
    oracles: dict[float, Oracle] = {}
    for alpha in sizes.alphas:
        problem = dataclasses.replace(base_problem, alpha=alpha)
        found = oracle_at(problem, sample, sizes)
        found.cost = capital_cost(problem, found.fund_target, found.rates, mean_base, mean_loss)
        oracles[alpha] = found
        log(f"[{world.key}] oracle alpha {alpha:g}: F0 {found.fund_target:,.0f} rates {found.rates} cost "
            f"{found.cost:,.0f} ({found.seconds:.0f} s)")
    seconds["oracle searches"] = time.perf_counter() - tick - seconds["oracle sample"]
    del sample

    # The reference sample is held in memory and every answer is counted on it as soon as it is
    # solved, so that each finished seed can be written out (checkpoint) and a run with a deadline
    # reports the seeds it completed.
    tick = time.perf_counter()
    reference = large_sample(world, sizes.n_reference, sizes.chunk, root, world_index, "reference")
    oracle_contestants = {a: with_shares(Contestant(f"oracle {a:g}", "oracle", o.fund_target, o.rates, "", o.seconds),
                                         dataclasses.replace(base_problem, alpha=a)) for a, o in oracles.items()}
    n_reference = evaluate(list(oracle_contestants.values()), iter([reference]))
    seconds["reference sample"] = time.perf_counter() - tick
    open_interest = np.array([oi for _, oi, _ in world.book])

    entries: list[dict[str, Any]] = []
    fresh_drawn: list[int] = []

    def result() -> dict[str, Any]:
        rows = []
        for e in entries:
            c: Contestant = e["contestant"]
            problem = dataclasses.replace(base_problem, alpha=e["alpha"])
            oracle = oracles[e["alpha"]]
            finite = math.isfinite(c.fund_target)
            cost = capital_cost(problem, c.fund_target, c.premium_rates, mean_base, mean_loss) if finite else math.nan
            shares = np.ones(len(markets)) if c.shares is None else np.asarray(c.shares)
            rows.append({
                "alpha": e["alpha"], "seed": e["seed"], "method": e["method"], "status": c.status,
                "fund_target": c.fund_target, "fund_ratio": c.fund_target / oracle.fund_target if finite else math.nan,
                "share_of_open_interest": c.fund_target / float(open_interest @ shares) if finite else math.nan,
                "rates": dict(zip(markets, map(float, c.premium_rates))),
                "cost": cost, "cost_ratio": cost / oracle.cost if finite and oracle.cost > 0 else math.nan,
                "excess": cost - oracle.cost if finite else math.nan,
                "true_ruin": c.ruin_rate(), "ruins": c.ruins, "n_reference": c.n_reference,
                "bound": e["bound"], "n_fresh": e["n_fresh"], "tail_elasticity": e["tail_elasticity"],
                "set_by": e["set_by"], "in_sample_ruin": c.in_sample_ruin, "seconds": c.seconds,
            })
        return {
            "key": world.key, **world.describe(), "book": [list(b) for b in world.book],
            "participation": {"semi_elasticity": list(np.atleast_1d(base_problem.participation.semi_elasticity)),
                              "mean_base": mean_base.tolist(), "mean_loss": mean_loss.tolist()},
            "oracles": {str(a): {"fund_target": o.fund_target, "rates": o.rates.tolist(), "cost": o.cost,
                                 "true_ruin": oracle_contestants[a].ruin_rate(), "ruins": oracle_contestants[a].ruins,
                                 "share_of_open_interest": o.fund_target / float(open_interest @ o.shares),
                                 "seconds": o.seconds, "search_fund": o.search_fund, "evaluations": o.evaluations}
                        for a, o in oracles.items()},
            "n_reference": n_reference, "seeds_completed": len(fresh_drawn), "fresh_drawn": list(fresh_drawn),
            "rows": rows, "seconds": dict(seconds),
        }

    tick = time.perf_counter()
    last = 0.0
    for s in range(sizes.seeds):
        if deadline is not None and time.time() + last > deadline:
            log(f"[{world.key}] deadline: stopping after {s} seeds")
            break
        started = time.perf_counter()
        train = world_scenarios(world, sizes.n_train, _seed(root, world_index, _PURPOSE["train"], s))
        stream = FreshStream(world, root, world_index, s, sizes.fresh_chunk)
        for alpha in sizes.alphas:
            problem = dataclasses.replace(base_problem, alpha=alpha)
            batch = []
            for name, policy, took in solve_methods(problem, train, stream, sizes, s):
                c = as_contestant(name, policy, took, problem, len(markets))
                batch.append(c)
                info = {} if isinstance(policy, str) else policy.details.get("certified", {})
                entries.append({"alpha": alpha, "seed": s, "method": name, "contestant": c,
                                "n_fresh": info.get("n_fresh"), "tail_elasticity": info.get("tail_elasticity"),
                                "set_by": info.get("set_by"),
                                "bound": (policy.certificate.upper_bound if not isinstance(policy, str)
                                          and policy.certificate is not None else None)})
            evaluate(batch, iter([reference]))
            log(f"[{world.key}] seed {s} alpha {alpha:g}: " + ", ".join(
                f"{c.label} {c.fund_target:,.0f} ({c.ruin_rate():.3%})" for c in batch)
                + f" ({time.perf_counter() - tick:.0f} s)")
        fresh_drawn.append(stream.drawn())
        del train, stream
        seconds["methods"] = time.perf_counter() - tick
        last = time.perf_counter() - started
        if checkpoint is not None:
            checkpoint(result())
    return result()


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def summary(world: Mapping[str, Any], alpha: float) -> list[dict[str, Any]]:
    """Per method at ``alpha``: means and ranges over the seeds."""
    out = []
    for method in METHODS:
        rows = [r for r in world["rows"] if r["method"] == method and r["alpha"] == alpha]
        ok = [r for r in rows if math.isfinite(r["fund_target"])]
        if not rows:
            continue
        ratio = np.array([r["cost_ratio"] for r in ok])
        fund = np.array([r["fund_ratio"] for r in ok])
        ruin = np.array([r["true_ruin"] for r in ok])
        bounds = [r for r in ok if r["bound"] is not None]
        out.append({
            "method": method, "samples": len(rows), "failed": len(rows) - len(ok),
            "cost_ratio_mean": float(ratio.mean()) if ok else math.nan,
            "cost_ratio_min": float(ratio.min()) if ok else math.nan,
            "cost_ratio_max": float(ratio.max()) if ok else math.nan,
            "fund_ratio_mean": float(fund.mean()) if ok else math.nan,
            "fund_ratio_min": float(fund.min()) if ok else math.nan,
            "fund_ratio_max": float(fund.max()) if ok else math.nan,
            "ruin_mean": float(ruin.mean()) if ok else math.nan,
            "ruin_min": float(ruin.min()) if ok else math.nan,
            "ruin_max": float(ruin.max()) if ok else math.nan,
            "above_alpha": int(np.count_nonzero(ruin > alpha)),
            "above_bound": sum(r["true_ruin"] > r["bound"] for r in bounds) if bounds else None,
            "n_fresh_mean": float(np.mean([r["n_fresh"] for r in bounds])) if bounds else None,
            "seconds_mean": float(np.mean([r["seconds"] for r in rows])),
            "share_mean": float(np.mean([r["share_of_open_interest"] for r in ok])) if ok else math.nan,
        })
    return out


def _x(v: float, digits: int = 3) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def report(worlds: Sequence[Mapping[str, Any]], sizes: StudySizes, prov: _common.Provenance, quick: bool,
           figures: Sequence[str], commands: Sequence[str], wall: float) -> str:
    lines = [
        "# Methods benchmark: cost against the oracle and true ruin over many training samples"
        + (" (QUICK MODE)" if quick else ""),
        "",
        prov.markdown(),
    ]
    lines += ["- commands: " + "; ".join(f"`{c}`" for c in commands), f"- wall time: {wall:.0f} s", ""]
    lines += [
        "## Setup", "",
        f"- {HORIZON}-day horizon; alpha = " + ", ".join(f"{a:.1%}" for a in sizes.alphas)
        + f"; confidence of every certificate {CONFIDENCE:.0%}; cost of capital 15 %/year; fees 0-1.25 %.",
        f"- Each method is solved on N = {sizes.n_train:,} scenarios of the world, for {sizes.seeds} independent "
        "training samples (seeds)" + ("" if sizes.slow_seeds is None else
                                      f"; \"cvar\" and \"scenario\" on the first {sizes.slow_seeds} of them (their "
                                      "rate searches cost as much as \"exact\"'s, and neither claims a bound to "
                                      "check over many samples)") + "; with the book answering the fees (participation elasticity 1, rates in force "
        "0.5 %, fee cost derived: the economics of `python -m benchmarks.methods --rules`), each searches its rates.",
        "- \"certified\" draws its fresh scenarios from the world (its default M = (eta z / tolerance)^2 / alpha, "
        "tolerance " + ("10 %, its default" if sizes.tolerance is None else f"{sizes.tolerance:.0%}") + ", eta the tail "
        "elasticity it measures on the training sample); \"certified (split)\" gets none and splits N in halves "
        "(rates on one, the fund target on the other).",
        f"- Oracle: method \"exact\" on {sizes.n_oracle:,} scenarios (rates searched on the first "
        f"{sizes.n_oracle_search:,}, the fund target exact on all at those rates). True ruin: counted on "
        f"{sizes.n_reference:,} fresh scenarios (a 1 % rate is known to about +-0.014 % at 95 %, 0.1 % to +-0.0044 %).",
        "- Cost: the full objective (cost of capital x F0 + lost trading revenue - fee income + expected losses "
        "paid), expectations from the oracle's sample. `× oracle` is its ratio to the oracle's; `fund ×` the fund "
        "target's ratio. Real funds hold roughly 1-5 % of open interest.",
        "",
    ]
    for world in worlds:
        lines += [f"## World: {world['title']}", "", f"Parameters: {world['source']}.", ""]
        done = world.get("seeds_completed", sizes.seeds)
        if done < sizes.seeds:
            lines += [f"**{done} of the {sizes.seeds} training samples completed** (the run's deadline stopped it).", ""]
        model_rows = [[n, m["spec"], ", ".join(f"{k} {v:.4g}" for k, v in m["params"].items()),
                       f"{m['today_volatility']:.2%}"] for n, m in world["models"].items()]
        lines += [_common.markdown_table(["market", "model", "parameters", "today's vol"], model_rows), ""]
        lines += [f"Copula: {world['copula']['family']}, nu {world['copula']['nu']:.2f}. Book: "
                  + ", ".join(f"{n} OI {oi / 1e9:g}bn, volume {v / 1e9:g}bn a day" for n, oi, v in world["book"]) + ".", ""]
        for alpha in sizes.alphas:
            o = world["oracles"][str(alpha)]
            lines += [f"### alpha = {alpha:.1%}", "",
                      f"Oracle: fund target {o['fund_target'] / 1e6:,.1f}m ({o['share_of_open_interest']:.2%} of open "
                      f"interest), fees " + " / ".join(f"{r:.2%}" for r in o["rates"]) + f", cost {o['cost'] / 1e6:,.2f}m; "
                      f"its true ruin {o['true_ruin']:.3%} ({o['ruins']:,} of {world['n_reference']:,}).", ""]
            header = ["Method", "× oracle, mean (min-max)", "fund ×, mean (min-max)", "% of OI", "True ruin, mean (min-max)",
                      f"samples above α", "above own bound", "M fresh", "time, s"]
            table = []
            for r in summary(world, alpha):
                table.append([
                    r["method"] + (f" ({r['failed']} failed)" if r["failed"] else ""),
                    f"{_x(r['cost_ratio_mean'])} ({_x(r['cost_ratio_min'])}-{_x(r['cost_ratio_max'])})",
                    f"{_x(r['fund_ratio_mean'], 2)} ({_x(r['fund_ratio_min'], 2)}-{_x(r['fund_ratio_max'], 2)})",
                    f"{r['share_mean']:.2%}" if math.isfinite(r["share_mean"]) else "n/a",
                    f"{r['ruin_mean']:.3%} ({r['ruin_min']:.3%}-{r['ruin_max']:.3%})" if math.isfinite(r["ruin_mean"]) else "n/a",
                    f"{r['above_alpha']} of {r['samples'] - r['failed']}",
                    "n/a" if r["above_bound"] is None else f"{r['above_bound']} of {r['samples'] - r['failed']}",
                    "n/a" if r["n_fresh_mean"] is None else f"{r['n_fresh_mean']:,.0f}",
                    f"{r['seconds_mean']:.1f}",
                ])
            lines += [_common.markdown_table(header, table), ""]
        lines += ["Time: " + ", ".join(f"{k} {v:.0f} s" for k, v in world["seconds"].items()) + ".", ""]
    lines += ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    return "\n".join(lines)


def figure(worlds: Sequence[Mapping[str, Any]], sizes: StudySizes, prov: _common.Provenance, path: Path) -> Path:
    """Per world and alpha: each sample's cost ratio against its true ruin, one colour per method."""
    colours = {"exact": "tab:red", "certified": "tab:green", "certified (split)": "tab:olive", "cvar": "tab:blue",
               "scenario": "tab:purple"}
    fig, axes = plt.subplots(len(worlds), len(sizes.alphas), figsize=(6.5 * len(sizes.alphas), 4.3 * len(worlds)),
                             squeeze=False)
    for row, world in zip(axes, worlds):
        for ax, alpha in zip(row, sizes.alphas):
            for method in METHODS:
                rs = [r for r in world["rows"] if r["method"] == method and r["alpha"] == alpha
                      and math.isfinite(r["fund_target"])]
                ax.scatter([r["true_ruin"] for r in rs], [r["cost_ratio"] for r in rs], s=18, alpha=0.75,
                           color=colours[method], label=method)
            ax.axvline(alpha, color="k", ls="--", lw=1, label=f"alpha = {alpha:.1%}")
            ax.axhline(1.0, color="0.5", lw=0.8)
            ax.set_xscale("log")
            ax.set_xlabel(f"true P(ruin over {HORIZON} days), {world['n_reference']:,} fresh scenarios")
            ax.set_ylabel("cost / oracle's cost")
            ax.set_title(f"{world['title']}\nalpha = {alpha:.1%}, {world.get('seeds_completed', sizes.seeds)} samples of N = {sizes.n_train:,}",
                         fontsize=9)
            ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return _common.save_figure(fig, path, prov)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the study (all worlds, or ``--world`` ones into ``methods_<world>.json``), or ``--merge``
    the per-world files into the report."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cli = _common.parser(f"python -m {MODULE}", __doc__.splitlines()[0], seed=DEFAULT_SEED)
    cli.add_argument("--world", action="append", default=None, choices=["fat_tailed", "calm", "heavy"],
                     help="run only this world (repeatable) and write methods_<world>.json, for --merge")
    cli.add_argument("--merge", action="store_true", help="write the report from the methods_<world>.json files in --out")
    cli.add_argument("--n-oracle", type=int, default=None, help="override the oracle's sample size")
    cli.add_argument("--n-reference", type=int, default=None, help="override the reference sample size")
    cli.add_argument("--deadline", default=None,
                     help="UTC time HH:MM today after which no seed is started (the seeds done are reported)")
    args = cli.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.n_oracle or args.n_reference:
        sizes = dataclasses.replace(sizes, n_oracle=args.n_oracle or sizes.n_oracle,
                                    n_reference=args.n_reference or sizes.n_reference)
    deadline = None
    if args.deadline:
        import datetime as dt
        hour, minute = (int(x) for x in args.deadline.split(":"))
        now = dt.datetime.now(dt.timezone.utc)
        deadline = now.replace(hour=hour, minute=minute, second=0, microsecond=0).timestamp()
    stem = "methods_quick" if args.quick else "methods"
    prov = _common.provenance(MODULE, argv, args.seed)
    out: Path = args.out

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    start = time.perf_counter()
    keys = args.world or (["calm"] if args.quick else ["fat_tailed", "calm", "heavy"])
    if args.merge:
        worlds, commands, wall = [], [], 0.0
        for key in ["fat_tailed", "calm", "heavy"]:
            path = out / f"{stem}_{key}.json"
            if path.exists():
                kept = json.loads(path.read_text())
                worlds.append(kept["world"])
                sizes = StudySizes(**{**kept["sizes"], "alphas": tuple(kept["sizes"]["alphas"])})
                commands.append(kept["provenance"]["command"])
                wall = max(wall, kept["wall_seconds"])
        if not worlds:
            return _common.fail(f"no {stem}_<world>.json in {out} to merge")
    else:
        worlds = []
        for index, world in worlds_for(keys, args.data):
            log(f"[{world.key}] {world.source}")

            def save(partial: dict[str, Any], key: str = world.key) -> None:
                _common.write_text(out / f"{stem}_{key}.json", json.dumps(
                    {"provenance": dataclasses.asdict(prov), "sizes": dataclasses.asdict(sizes), "world": partial,
                     "wall_seconds": time.perf_counter() - start}, indent=1, default=_json_default) + "\n")

            worlds.append(run_world(world, index, sizes, args.seed, log, deadline, save if args.world else None))
            if args.world:
                save(worlds[-1])
        if args.world:
            log(f"wrote {len(worlds)} world file(s); --merge writes the report")
            return 0
        commands, wall = [prov.command], time.perf_counter() - start
    figures = [f"{stem}_cost_ruin.png"]
    figure(worlds, sizes, prov, out / figures[0])
    payload = {"sizes": dataclasses.asdict(sizes), "worlds": worlds, "commands": commands, "wall_seconds": wall,
               "summary": {w["key"]: {str(a): summary(w, a) for a in sizes.alphas} for w in worlds}}
    _common.write_results(out, stem, report(worlds, sizes, prov, args.quick, figures, commands, wall), payload, prov)
    log(f"wrote {out / (stem + '.md')} in {time.perf_counter() - start:.0f} s")
    return 0

