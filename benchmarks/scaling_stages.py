"""Issue 20's measurements for ``python -m benchmarks.scaling``: every stage against one pass.

Each figure sits beside a **floor**: one pass over the same scenarios, the fund equation at fixed
rates (``worst_net_flow``: the premium income of every period, minus its losses, cumulated, and
each path's lowest point), which any method has to make at least once to check its answer. A
stage's *ratio* is its seconds over that pass's, measured in the same process a moment apart.

Worlds (each states its parameters where it is built):

* ``benchmark``: issue 5's world (``benchmarks.scaling``): GJR-t paths of BTC, ETH, SOL joined by
  a t copula, the liquidation-gap venue model, no participation (premium weight 0.005);
* ``preset``: what ``fundguard calibrate`` solves with no arguments: the built-in preset's fitted
  EGARCH models and copula, its illustrative book under the stateful loss model (the default),
  the preset's problem with the book answering the fees (participation, elasticity 1) and the
  -30% crash as a stress scenario;
* ``calm``: ``benchmarks.methods``' calm world (GJR-t at 3/4 of 2025's fitted volatility,
  persistence 0.97, t(8)) under the stateful book, with participation.

Sections: the solve stage per world and N (with the float32 store beside), memory (tracemalloc's
peak of each call over the ScenarioSet's bytes), ``fundguard calibrate`` at scale (stage timings
and peak resident memory), method "exact" against the number of markets J, and hourly horizons
(T = 720 against T = 30 per scenario-period).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import numpy as np

#: Methods measured in every world.
METHODS = ("cvar", "exact", "scenario", "certified")
#: Markets of the J sweep, and the sweep's problems (``benchmarks.scaling.PROBLEMS``).
J_SIZES = (3, 10, 30)
#: Correlation of every pair of markets in the J sweep (t(4) copula), about BTC-ETH's 0.8 and
#: BTC-SOL's 0.7 (the fitted preset copula).
J_CORRELATION = 0.7
#: Hourly GJR-t of the T = 720 section, per hour, from the daily models of benchmarks.scaling:
#: the daily persistence to the power 1/24, alpha 0.02 and gamma 0.01 per hour (an hour's news
#: moves tomorrow's variance less than a day's), hourly variance the daily one over 24, t(4.5)
#: innovations (hourly returns have fatter tails than daily ones).
HOURLY = {"alpha": 0.02, "gamma": 0.01, "nu": 4.5}
#: The crash every "preset" world set carries as a stress scenario (the preset's own).
PRESET_SHOCK = -0.3


# ---------------------------------------------------------------------------------------------
# worlds
# ---------------------------------------------------------------------------------------------


def world_set(world: str, n: int, seed: int, *, dtype: str = "float64") -> Any:
    """``n`` scenarios of ``world`` (T = 30, J = 3) with only what the fund equation reads."""
    from fundguard.models import ScenarioSet, build_scenarios, simulate_returns

    if world == "benchmark":
        from . import scaling

        from fundguard.models import Copula, Market, VenueBook

        copula = Copula("t", np.array(scaling.CORRELATION), 4.0, scaling.MARKETS)
        paths = simulate_returns(scaling.volatility_models(), 30, n, innovations="parametric", seed=seed, copula=copula)
        venue = VenueBook([Market(m, open_interest=oi, daily_volume=adv) for m, (oi, adv) in scaling.VENUE.items()])
        built = build_scenarios(paths, venue, loss_model="liquidation_gap", dtype=dtype)
        stress = None
    elif world == "preset":
        from fundguard.optimizer.job.build import loss_model_of, stress_scenarios, venue_book

        cfg, preset = _preset_config(n)
        book = venue_book(cfg, preset.models)
        paths = simulate_returns(preset.models, 30, n, innovations="parametric", seed=seed, copula=preset.copula)
        built = build_scenarios(paths, book, loss_model=loss_model_of(cfg), dtype=dtype)
        stress, _ = stress_scenarios(cfg, preset.models, book)
    elif world == "calm":
        from .methods import calm_world, venue

        calm = calm_world()
        paths = simulate_returns(calm.models, 30, n, innovations="parametric", seed=seed, copula=calm.copula)
        built = build_scenarios(paths, venue(calm.book), dtype=dtype)
        stress = None
    else:
        raise ValueError(f"unknown world {world!r}")
    del paths
    lean = ScenarioSet(losses=built.losses, premium_base=built.premium_base, markets=built.markets,
                       losses_by_market=built.losses_by_market, metadata={"world": world}, dtype=dtype)
    del built
    if stress is not None:
        stress = ScenarioSet(losses=stress.losses, premium_base=stress.premium_base, markets=stress.markets,
                             losses_by_market=stress.losses_by_market, is_stress=stress.is_stress, dtype=dtype)
        lean = ScenarioSet.concat([lean, stress])
    return lean


def _preset_config(n: int) -> tuple[Any, Any]:
    from fundguard.optimizer.job.preset import default_config, load_preset

    preset = load_preset()
    cfg = default_config(preset)
    cfg = dataclasses.replace(cfg, scenarios=dataclasses.replace(cfg.scenarios, n_scenarios=n))
    return cfg, preset


def world_problem(world: str, scenarios: Any) -> Any:
    """The world's PolicyProblem; participation from the scenarios' mean premium base."""
    from fundguard.optimizer import PolicyProblem

    if world == "benchmark":
        from .scaling import PROBLEMS

        return PolicyProblem(**PROBLEMS["preset"])
    if world == "preset":
        from fundguard.optimizer.job.build import policy_problem
        from fundguard.optimizer.job.calibrate import with_participation

        cfg, _ = _preset_config(scenarios.n_random)
        return with_participation(cfg, policy_problem(cfg), scenarios, [])
    from fundguard.optimizer.participation import mean_market_bases

    from .methods import calm_world, world_problem as methods_problem

    calm = calm_world()
    return methods_problem(mean_market_bases(scenarios), markets=tuple(calm.models), book=calm.book)


# ---------------------------------------------------------------------------------------------
# measurements (in a worker process each: fresh memory)
# ---------------------------------------------------------------------------------------------


def one_pass(scenarios: Any, repeats: int = 3) -> float:
    """The floor: the fastest of ``repeats`` passes of the fund equation at mid-box rates."""
    from fundguard.optimizer.fund.equation import worst_net_flow

    rates = np.full(scenarios.n_markets, 0.00625)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        worst_net_flow(scenarios.losses, scenarios.premium_base, rates)
        best = min(best, time.perf_counter() - start)
    return best


def _measure(call: Any) -> tuple[Any, float, int]:
    """``(result, seconds of a first call, tracemalloc peak bytes of a second call)``."""
    start = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - start
    gc.collect()
    tracemalloc.start()
    call()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, seconds, peak


def _summary(policy: Any) -> dict[str, Any]:
    details = policy.details
    base = details.get("base_details", details)
    part = details.get("participation") or base.get("participation") or {}
    working = part.get("working_set") or {}
    return {
        "fund_target": policy.fund_target, "rates": [float(r) for r in policy.premium_rates], "status": policy.status,
        "objective": policy.objective, "evaluations": part.get("evaluations"),
        "working_set": working.get("scenarios"), "boxes": base.get("boxes"), "gap": base.get("gap"),
        "converged": base.get("converged"),
    }


def solve_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Every method on one world's set, float64 then float32; floor, seconds, peaks, answers."""
    from fundguard.models import ScenarioSet
    from fundguard.optimizer import solve

    scenarios = ScenarioSet.load(spec["file"])
    problem = world_problem(spec["world"], scenarios)
    out: dict[str, Any] = {**spec, "data_bytes": scenarios.nbytes, "n_random": scenarios.n_random, "runs": {}}
    for dtype in ("float64", "float32") if spec.get("float32", True) else ("float64",):
        if dtype == "float32":
            narrow = scenarios.astype("float32")
            del scenarios
            gc.collect()
            scenarios = narrow
        runs: dict[str, Any] = {"data_bytes": scenarios.nbytes, "floor": one_pass(scenarios), "methods": {}}
        for method in spec["methods"]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    policy, seconds, peak = _measure(lambda m=method: solve(problem, scenarios, m))
                except Exception as exc:  # recorded, the run goes on
                    runs["methods"][method] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
                    continue
            runs["methods"][method] = {**_summary(policy), "seconds": seconds, "traced_peak": peak,
                                       "ratio": seconds / runs["floor"],
                                       "peak_over_data": (scenarios.nbytes + peak) / scenarios.nbytes}
        out["runs"][dtype] = runs
    out["maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def j_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Method "exact" and "cvar" on J markets (T = 30): time to proof, boxes, the gap at 5x cvar."""
    from fundguard.optimizer import PolicyProblem, solve

    from .scaling import PROBLEMS

    scenarios = j_markets_set(spec["j"], spec["n"], spec["seed"])
    floor = one_pass(scenarios)
    out: dict[str, Any] = {**spec, "floor": floor, "problems": {}}
    for name in spec["problems"]:
        problem = PolicyProblem(**PROBLEMS[name])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            cvar = solve(problem, scenarios, "cvar")
            cvar_seconds = time.perf_counter() - start
            start = time.perf_counter()
            full = solve(problem, scenarios, "exact", time_limit=spec["time_limit"])
            full_seconds = time.perf_counter() - start
            budget = max(5.0 * cvar_seconds, 0.05)
            start = time.perf_counter()
            short = solve(problem, scenarios, "exact", time_limit=budget)
            short_seconds = time.perf_counter() - start
        out["problems"][name] = {
            "cvar": {"seconds": cvar_seconds, "objective": cvar.objective},
            "exact": {"seconds": full_seconds, "objective": full.objective, **_summary(full),
                      "rows": full.details.get("rows"), "root_live": full.details.get("root_live")},
            "exact_at_5x_cvar": {"seconds": short_seconds, "time_limit": budget, "objective": short.objective,
                                 **_summary(short)},
        }
    return out


def j_markets_set(j: int, n: int, seed: int) -> Any:
    """``n`` scenarios of J markets: benchmarks.scaling's three GJR-t models repeated, open interest
    and volume of its book shared out so the venue's size does not grow with J, a t(4) copula of
    equal correlations :data:`J_CORRELATION`, the liquidation-gap model."""
    from fundguard.models import Copula, Market, VenueBook, VolModel, build_scenarios, simulate_returns

    from . import scaling

    base = list(scaling.volatility_models().values())
    names = [f"M{i:02d}" for i in range(j)]
    models = {}
    for i, name in enumerate(names):
        numbers = base[i % 3].to_dict()
        numbers["name"] = name
        models[name] = VolModel.from_dict(numbers)
    correlation = np.full((j, j), J_CORRELATION)
    np.fill_diagonal(correlation, 1.0)
    venue_sizes = list(scaling.VENUE.values())
    share = 3.0 / j
    venue = VenueBook([Market(name, open_interest=venue_sizes[i % 3][0] * share, daily_volume=venue_sizes[i % 3][1] * share)
                       for i, name in enumerate(names)])
    paths = simulate_returns(models, 30, n, innovations="parametric", seed=seed,
                             copula=Copula("t", correlation, 4.0, tuple(names)))
    return build_scenarios(paths, venue, loss_model="liquidation_gap")


def hourly_models() -> dict[str, Any]:
    """benchmarks.scaling's daily GJR-t models as hourly ones (:data:`HOURLY`)."""
    from fundguard.models import VolModel

    from . import scaling

    out = {}
    for name, model in scaling.volatility_models().items():
        numbers = model.to_dict()
        daily = numbers["diagnostics"]["persistence"]
        hourly = daily ** (1 / 24)
        variance = numbers["diagnostics"]["unconditional_variance"] / 24
        numbers["params"].update(alpha=HOURLY["alpha"], gamma=HOURLY["gamma"], nu=HOURLY["nu"],
                                 beta=hourly - HOURLY["alpha"] - HOURLY["gamma"] / 2, omega=variance * (1 - hourly))
        numbers["last_variance"] = numbers["next_variance"] = numbers["last_variance"] / 24
        numbers["typical_volatility"] = math.sqrt(variance)
        numbers["period_seconds"] = 3600.0
        numbers["diagnostics"].update(persistence=hourly, unconditional_variance=variance,
                                      periods_per_year=365.25 * 24, half_life=math.log(0.5) / math.log(hourly))
        out[name] = VolModel.from_dict(numbers)
    return out


def horizon_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Every method at T periods (daily T = 30 or hourly T = 720) in the benchmark world."""
    from fundguard.models import Copula, Market, VenueBook, build_scenarios, simulate_returns
    from fundguard.optimizer import PolicyProblem, solve

    from . import scaling

    hourly = spec["horizon"] > 30
    models = hourly_models() if hourly else scaling.volatility_models()
    copula = Copula("t", np.array(scaling.CORRELATION), 4.0, scaling.MARKETS)
    paths = simulate_returns(models, spec["horizon"], spec["n"], innovations="parametric", seed=spec["seed"],
                             copula=copula)
    venue = VenueBook([Market(m, open_interest=oi, daily_volume=adv) for m, (oi, adv) in scaling.VENUE.items()])
    scenarios = build_scenarios(paths, venue, loss_model="liquidation_gap")
    del paths
    problem = PolicyProblem(**scaling.PROBLEMS["preset"])
    floor = one_pass(scenarios)
    cells = spec["n"] * spec["horizon"]
    out: dict[str, Any] = {**spec, "floor": floor, "floor_per_cell": floor / cells, "methods": {},
                           "mean_horizon_loss": float(scenarios.losses.sum(axis=1).mean())}
    for method in spec["methods"]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            policy = solve(problem, scenarios, method)
            seconds = time.perf_counter() - start
        out["methods"][method] = {**_summary(policy), "seconds": seconds, "per_cell": seconds / cells,
                                  "ratio": seconds / floor, "rows": policy.details.get("rows")}
    return out


def calibrate_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """``fundguard calibrate`` on the preset at ``n`` + ``n`` scenarios (library call, this process)."""
    from fundguard.optimizer import calibrate
    from fundguard.optimizer.job.cli import FRONTIER_ALPHAS

    cfg, preset = _preset_config(spec["n"])
    cfg = dataclasses.replace(cfg, scenarios=dataclasses.replace(cfg.scenarios, certify_scenarios=spec["n"],
                                                                 dtype=spec.get("dtype", "float64")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        result = calibrate(cfg, seed=spec["seed"], frontier_alphas=FRONTIER_ALPHAS)
        seconds = time.perf_counter() - start
    sets = [result.scenarios]
    floor = one_pass(result.scenarios)
    document = result.to_dict()
    return {
        **spec, "seconds": seconds, "timings": dict(result.timings), "floor": floor,
        "fit_set_bytes": int(result.scenarios.nbytes), "certify_set_bytes": None if result.certificate is None else
        int(result.scenarios.nbytes / max(result.scenarios.n_scenarios, 1) * result.certificate.n),
        "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "fund_target": result.policy.fund_target, "rates": [float(r) for r in result.policy.premium_rates],
        "certificate": document.get("certificate"), "n_sets": len(sets),
        "open_interest": float(sum(m.open_interest for m in cfg.markets)),
    }


WORKERS = {"solve": solve_worker, "j": j_worker, "horizon": horizon_worker, "calibrate": calibrate_worker}


def run_worker(kind: str, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """A worker in a fresh interpreter (``python -m benchmarks.scaling --worker stage:KIND SPEC``)."""
    command = [sys.executable, "-m", "benchmarks.scaling", "--worker", f"stage:{kind}", json.dumps(spec)]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              cwd=Path(__file__).resolve().parents[1])
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timed out after {timeout:.0f} s", "seconds": time.perf_counter() - start}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {**spec, "error": f"exit {done.returncode}: {tail[0][:300]}", "seconds": time.perf_counter() - start}
    return json.loads(lines[-1])


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------


def stage_plan(quick: bool) -> dict[str, Any]:
    return {
        "world_sizes": (10_000,) if quick else (100_000, 1_000_000),
        "worlds": ("benchmark", "preset", "calm"),
        "calibrate_n": 5_000 if quick else 1_000_000,
        "calibrate_dtypes": ("float64",) if quick else ("float64", "float32"),
        "j": {"sizes": (3, 10) if quick else J_SIZES, "n": 10_000 if quick else 100_000,
              "problems": ("preset",) if quick else ("preset", "interior"), "time_limit": 20.0 if quick else 120.0},
        "horizons": ((30, 5_000), (720, 3_000)) if quick else ((30, 100_000), (720, 20_000)),
        "timeout": 600 if quick else 3600,
    }


def run_stages(quick: bool, seed: int, say: Any) -> dict[str, Any]:
    """Every issue-20 section; raw results for :func:`report_stages`."""
    todo = stage_plan(quick)
    out: dict[str, Any] = {"plan": {k: v for k, v in todo.items()}, "worlds": [], "j": [], "horizons": [], "calibrate": None}
    with tempfile.TemporaryDirectory(prefix="fundguard-stages-") as scratch:
        for world in todo["worlds"]:
            largest = max(todo["world_sizes"])
            say(f"stages: generating {largest:,} scenarios of the {world} world")
            start = time.perf_counter()
            whole = world_set(world, largest, seed)
            generated = time.perf_counter() - start
            for n in todo["world_sizes"]:
                part = whole if n == whole.n_random else _first(whole, n)
                path = part.save(Path(scratch) / f"{world}_{n}.npz")
                del part
                say(f"stages: solve stage, {world} world, N = {n:,}")
                result = run_worker("solve", {"world": world, "n": n, "file": str(path), "methods": list(METHODS)},
                                    todo["timeout"])
                result["generate_seconds"] = generated if n == largest else None
                out["worlds"].append(result)
                path.unlink()
            del whole
            gc.collect()
    say(f"stages: fundguard calibrate at {todo['calibrate_n']:,} + {todo['calibrate_n']:,} scenarios")
    out["calibrate"] = [run_worker("calibrate", {"n": todo["calibrate_n"], "seed": seed, "dtype": dtype}, todo["timeout"])
                        for dtype in todo["calibrate_dtypes"]]
    for j in todo["j"]["sizes"]:
        say(f"stages: exact against J, J = {j}")
        out["j"].append(run_worker("j", {"j": j, "n": todo["j"]["n"], "seed": seed, "problems": list(todo["j"]["problems"]),
                                         "time_limit": todo["j"]["time_limit"]}, todo["timeout"]))
    for horizon, n in todo["horizons"]:
        say(f"stages: T = {horizon}, N = {n:,}")
        out["horizons"].append(run_worker("horizon", {"horizon": horizon, "n": n, "seed": seed, "methods": list(METHODS)},
                                          todo["timeout"]))
    return out


def _first(scenarios: Any, n: int) -> Any:
    """The first ``n`` random scenarios and every stress scenario."""
    from fundguard.models import ScenarioSet

    random_part = scenarios.random_part().subset(slice(0, n))
    stress = scenarios.stress_part()
    return random_part if stress is None else ScenarioSet.concat([random_part, stress])


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------


def _mb(value: float) -> str:
    return f"{value / 2**20:,.0f}"


def _money(value: float) -> str:
    return f"{value / 1e6:,.1f}m"


def report_stages(stages: dict[str, Any]) -> list[str]:
    """The issue-20 sections of scaling.md."""
    lines = [
        "## Every stage against one pass (issue 20)",
        "",
        "*Floor*: one pass of the fund equation over the same scenarios at fixed rates (`worst_net_flow`, the fastest "
        "of 3), the least any method does to check its answer; *ratio* = stage seconds / floor, measured in the same "
        "process a moment apart. Worlds: `benchmark` (issue 5's: GJR-t, liquidation-gap model, no participation), "
        "`preset` (what `fundguard calibrate` solves: the preset's fitted EGARCH models and copula, the stateful book, "
        "participation, the -30% crash as a stress scenario) and `calm` (benchmarks.methods' calm world under the "
        "stateful book, participation). *peak / data* = (ScenarioSet bytes + tracemalloc peak of a second call) / "
        "ScenarioSet bytes (the set holds losses, premium bases and per-market losses). *float32*: the same set "
        "stored as float32 (`ScenarioSet.astype`), its fund target's relative change against float64.",
        "",
        "| world | N | data MB | floor s | method | seconds | ratio | peak / data | fund target | % of OI | rate evals / working set | float32 seconds | float32 peak / data | float32 fund change |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    problems = []
    for result in stages["worlds"]:
        if "error" in result:
            problems.append(f"{result['world']} world at N = {result['n']:,}: {result['error']}")
            continue
        wide = result["runs"]["float64"]
        narrow = result["runs"].get("float32", {"methods": {}, "data_bytes": math.nan, "floor": math.nan})
        oi = _world_open_interest(result["world"])
        for method, row in wide["methods"].items():
            if "error" in row:
                problems.append(f"{method} in the {result['world']} world at N = {result['n']:,}: {row['error']}")
                continue
            other = narrow["methods"].get(method, {})
            change = (other["fund_target"] / row["fund_target"] - 1) if "fund_target" in other and row["fund_target"] else math.nan
            search = "" if row["evaluations"] is None else f"{row['evaluations']} / {row['working_set'] or 'all'}"
            lines.append(
                f"| {result['world']} | {result['n_random']:,} | {_mb(wide['data_bytes'])} | {wide['floor']:.4f} | {method} | "
                f"{row['seconds']:.2f} | {row['ratio']:.0f} | {row['peak_over_data']:.2f} | {_money(row['fund_target'])} | "
                f"{row['fund_target'] / oi:.2%} | {search} | {other.get('seconds', math.nan):.2f} | "
                f"{other.get('peak_over_data', math.nan):.2f} | {change:.1e} |")
    for result in stages["worlds"]:
        if "runs" in result and "float32" in result["runs"]:
            wide, narrow = result["runs"]["float64"], result["runs"]["float32"]
            lines.append("")
            lines.append(
                f"{result['world']}, N = {result['n_random']:,}: one pass {wide['floor']:.4f} s over {_mb(wide['data_bytes'])} MB "
                f"in float64, {narrow['floor']:.4f} s over {_mb(narrow['data_bytes'])} MB in float32; worker peak resident "
                f"{_mb(result['maxrss'])} MB"
                + (f"; the set was generated in {result['generate_seconds']:.0f} s" if result.get("generate_seconds") else "") + ".")
    lines += ["", "### `fundguard calibrate` at scale", ""]
    for run in stages.get("calibrate") or []:
        if "error" in run:
            problems.append(f"calibrate at {run['n']:,} ({run.get('dtype')}): {run['error']}")
            continue
        held = run["fit_set_bytes"] + (run["certify_set_bytes"] or 0)
        lines.append(
            f"**{run['dtype']}**, {run['n']:,} fit + {run['n']:,} certify scenarios, seed {run['seed']}: {run['seconds']:.0f} s, "
            f"fund target {_money(run['fund_target'])} ({run['fund_target'] / run['open_interest']:.2%} of open interest), "
            f"rates {', '.join(f'{r:.3%}' for r in run['rates'])}; peak resident {_mb(run['maxrss'])} MB for "
            f"{_mb(held)} MB of scenario sets (fit {_mb(run['fit_set_bytes'])} + certify {_mb(run['certify_set_bytes'] or 0)}), "
            f"{run['maxrss'] / held:.2f}x. One pass over the fit set: {run['floor']:.3f} s.")
        lines += ["", "| stage | seconds | ratio to one pass |", "|---|---:|---:|"]
        for stage, seconds in run["timings"].items():
            lines.append(f"| {stage} | {seconds:.2f} | {seconds / run['floor']:.0f} |")
        lines.append("")
    lines += ["### Method \"exact\" against the number of markets", "",
              "T = 30, the benchmark world's three GJR-t models repeated to J markets (equal correlations "
              f"{J_CORRELATION}, t(4) copula), the book's open interest shared out; \"exact\" with its time limit, then "
              "with a time limit of 5x \"cvar\"'s time (its gap: the distance from its answer to the lowest bound of "
              "the boxes left open).", "",
              "| J | N | problem | floor s | cvar s | exact s | boxes | proved | exact objective / cvar | gap at 5x cvar's time (s) |",
              "|---:|---:|---|---:|---:|---:|---:|---|---:|---|"]
    for result in stages["j"]:
        if "error" in result:
            problems.append(f"J = {result['j']}: {result['error']}")
            continue
        for name, row in result["problems"].items():
            exact, short = row["exact"], row["exact_at_5x_cvar"]
            lines.append(
                f"| {result['j']} | {result['n']:,} | {name} | {result['floor']:.3f} | {row['cvar']['seconds']:.2f} | "
                f"{exact['seconds']:.2f} | {exact['boxes']:,} | {'yes' if exact['converged'] else 'no, gap ' + format(exact['gap'], '.2%')} | "
                f"{exact['objective'] / row['cvar']['objective']:.3f} | "
                f"{'proved' if short['converged'] else format(short['gap'] or 0.0, '.2%')} ({short['seconds']:.2f}) |")
    lines += ["", "### Hourly horizons", "",
              "The benchmark world per hour (`benchmarks/scaling_stages.py` `HOURLY`: the daily persistence to the "
              "power 1/24, alpha 0.02, gamma 0.01, t(4.5)), T = 720 hours against the daily T = 30; *per cell* = "
              "seconds / (N T), microseconds.", "",
              "| T | N | floor per cell | method | seconds | per cell | per cell / T = 30's | ratio to one pass | rows |",
              "|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    daily = next((h for h in stages["horizons"] if h.get("horizon") == 30 and "floor" in h), None)
    for result in stages["horizons"]:
        if "error" in result:
            problems.append(f"T = {result['horizon']}: {result['error']}")
            continue
        for method, row in result["methods"].items():
            base = daily["methods"][method]["per_cell"] if daily else math.nan
            lines.append(
                f"| {result['horizon']} | {result['n']:,} | {result['floor_per_cell'] * 1e6:.4f} | {method} | {row['seconds']:.2f} | "
                f"{row['per_cell'] * 1e6:.4f} | {row['per_cell'] / base:.2f} | {row['ratio']:.0f} | {row['rows'] or ''} |")
    if problems:
        lines += ["", "Not run or failed:", ""] + [f"- {p}" for p in problems]
    return lines


def _world_open_interest(world: str) -> float:
    """Open interest of the world's book (one side), currency units."""
    if world == "benchmark":
        from .scaling import VENUE

        return float(sum(oi for oi, _ in VENUE.values()))
    if world == "preset":
        from fundguard.optimizer.job.preset import load_preset

        return float(sum(m["open_interest"] for m in load_preset().book))
    from .methods import calm_world

    return float(sum(oi for _, oi, _ in calm_world().book))


#: "Near one pass": the largest ratio of a solve to one pass counted as met.
NEAR_ONE_PASS = 50.0


def stage_targets(stages: dict[str, Any]) -> list[str]:
    """Issue 20's targets, as rows of the Targets table."""
    rows = []
    worlds = [r for r in stages["worlds"] if "runs" in r]
    largest = max((r["n_random"] for r in worlds), default=0)
    at_largest = [r for r in worlds if r["n_random"] == largest]
    full = largest >= 1_000_000
    for result in at_largest:
        methods = {m: row for m, row in result["runs"]["float64"]["methods"].items() if "ratio" in row}
        if not methods:
            continue
        worst = max(methods, key=lambda m: methods[m]["ratio"])
        met = methods[worst]["ratio"] <= NEAR_ONE_PASS and len(methods) == len(METHODS)
        rows.append(f"| {result['world']} world, N = {largest:,}: every method within {NEAR_ONE_PASS:.0f}x one pass | "
                    f"largest {worst} {methods[worst]['ratio']:.0f}x ({methods[worst]['seconds']:.2f} s against "
                    f"{result['runs']['float64']['floor']:.3f} s); "
                    + ", ".join(f"{m} {row['ratio']:.0f}x" for m, row in methods.items())
                    + f" | {_met(met, full)} |")
        peak = max(methods, key=lambda m: methods[m]["peak_over_data"])
        rows.append(f"| {result['world']} world, N = {largest:,}: every method's peak within 2x the ScenarioSet | "
                    f"largest {peak} {methods[peak]['peak_over_data']:.2f}x | {_met(methods[peak]['peak_over_data'] <= 2.0, full)} |")
        narrow = result["runs"].get("float32", {}).get("methods", {})
        changes = [abs(narrow[m]["fund_target"] / row["fund_target"] - 1) for m, row in methods.items()
                   if "fund_target" in narrow.get(m, {}) and row["fund_target"]]
        if changes:
            rows.append(f"| {result['world']} world, N = {largest:,}: float32 store moves every fund target < 1e-5 | "
                        f"largest {max(changes):.1e}; data {_mb(result['runs']['float32']['data_bytes'])} MB against "
                        f"{_mb(result['runs']['float64']['data_bytes'])} MB | {_met(max(changes) < 1e-5 and len(changes) == len(methods), True)} |")
    for run in stages.get("calibrate") or []:
        if "error" in run:
            rows.append(f"| calibrate at scale ({run.get('dtype')}) | {run['error']} | no |")
            continue
        held = run["fit_set_bytes"] + (run["certify_set_bytes"] or 0)
        rows.append(f"| `fundguard calibrate` ({run['dtype']}) at {run['n']:,} + {run['n']:,}: peak within 2x its scenario sets | "
                    f"{_mb(run['maxrss'])} MB for {_mb(held)} MB, {run['maxrss'] / held:.2f}x | "
                    f"{_met(run['maxrss'] <= 2 * held, run['n'] >= 1_000_000)} |")
    for result in stages["j"]:
        if "problems" not in result or result["j"] != max(r.get("j", 0) for r in stages["j"]):
            continue
        for name, row in result["problems"].items():
            exact, short = row["exact"], row["exact_at_5x_cvar"]
            proved_fast = exact["converged"] and exact["seconds"] <= 5 * row["cvar"]["seconds"]
            rows.append(
                f"| \"exact\" at J = {result['j']} ({name}, N = {result['n']:,}) proves optimality within 5x \"cvar\", or states "
                f"its gap | cvar {row['cvar']['seconds']:.2f} s; exact {'proved' if exact['converged'] else 'unproved'} in "
                f"{exact['seconds']:.1f} s ({exact['boxes']:,} boxes); at 5x cvar ({short['time_limit']:.2f} s): "
                f"{'proved' if short['converged'] else 'gap ' + format(short['gap'] or 0.0, '.2%')} | "
                f"{'yes' if proved_fast else 'gap stated'} |")
    daily = next((h for h in stages["horizons"] if h.get("horizon") == 30 and "floor" in h), None)
    hourly = next((h for h in stages["horizons"] if h.get("horizon", 0) > 30 and "floor" in h), None)
    if daily and hourly:
        ratios = {m: hourly["methods"][m]["per_cell"] / daily["methods"][m]["per_cell"] for m in hourly["methods"]
                  if m in daily["methods"]}
        worst = max(ratios, key=ratios.get)
        rows.append(f"| T = {hourly['horizon']}: every method within 10x T = 30's time per scenario-period | "
                    + ", ".join(f"{m} {r:.2f}x" for m, r in ratios.items())
                    + f" (one pass {hourly['floor_per_cell'] / daily['floor_per_cell']:.2f}x) | "
                    f"{_met(ratios[worst] <= 10.0 and len(ratios) == len(METHODS), True)} |")
    return rows


def _met(ok: bool, full: bool) -> str:
    return "yes" if ok else ("no" if full else "no (quick run)")
