"""Scaling benchmark (issue 5): solve time and peak memory against N, the plain cvxpy model beside.

Run from the repository root::

    python -m benchmarks.scaling              # full: N = 1e3 .. 1e6 (about 10-15 minutes on 2 cores)
    python -m benchmarks.scaling --quick      # N = 1e3, 1e4 (under a minute)
    python -m benchmarks.scaling --out DIR    # where scaling.md, scaling.json and scaling.png go
                                              # (default benchmarks/results)

What it measures
----------------
* Scenario sets: fat-tailed GJR-GARCH-t return paths (three crypto-like markets, Student-t
  innovations joined by a t copula, parameters below) simulated by
  ``fundguard.models.simulate_returns`` and turned into fund losses and liquidation-fee premium
  bases by ``build_scenarios`` with a small illustrative VenueBook; T = 30 days, J = 3, seeded.
  The generation throughput (path-steps per second) of both steps is reported.
* Each fast method ("cvar", "exact", "scenario", "certified", a 10-level frontier, ``certify``)
  runs in a fresh subprocess per N that loads the ScenarioSet from raw float64 files. Time is
  wall clock of the first call. Memory is measured twice: **tracemalloc** (numpy reports its
  buffers to it) gives the peak of what the call allocates on top of the loaded ScenarioSet, so
  ``peak / data = (ScenarioSet bytes + traced peak) / ScenarioSet bytes`` (a second, traced
  call; tracemalloc slows Python code, so it is not the timed one); **ru_maxrss** of the
  subprocess (interpreter, imports, the loaded data and every call) is reported beside it.
* The plain formulation a user writes first, one cvxpy constraint per (scenario, period) row
  (Rockafellar-Uryasev for "cvar", a big-M mixed-integer program for "exact"), solved in its
  own subprocess with a timeout, with cvxpy's default solver and with HiGHS, up to the N where
  it stops being practical (the first timeout ends a series). Its objective is recomputed in
  numpy from its fund target and rates, and compared with the fast path's.

Two problems: "preset" is the built-in preset's illustrative problem (alpha = 1%, cost of
capital 15%/yr over 30 days, premium weight 0.005, rates in [0, 1.25%]), where premiums are
cheap and every rate ends at its maximum; "interior" raises the premium weight to 0.008, near
indifference, so that the optimal rates are inside their range (the harder case for "exact").
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
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

HORIZON = 30
MARKETS = ("BTC", "ETH", "SOL")
SEED = 20_251_125
COST_OF_CAPITAL = round(0.15 * 30 / 365, 6)
PROBLEMS = {
    "preset": {"alpha": 0.01, "cost_of_capital": COST_OF_CAPITAL, "premium_weight": 0.005, "premium_max": 0.0125},
    "interior": {"alpha": 0.01, "cost_of_capital": COST_OF_CAPITAL, "premium_weight": 0.008, "premium_max": 0.0125},
}
FRONTIER_ALPHAS = [float(a) for a in np.geomspace(0.001, 0.05, 10)]

#: GJR-GARCH(1,1)-t per market, daily, zero mean: (omega, alpha, gamma, beta, nu, today's volatility).
#: Round numbers of the order fitted to Binance daily closes (persistence about 0.97, tail index
#: 4.5-5), started from a moderately stressed day.
GJR_T = {
    "BTC": (2e-5, 0.05, 0.08, 0.88, 5.0, 0.035),
    "ETH": (4e-5, 0.06, 0.08, 0.86, 5.0, 0.045),
    "SOL": (8e-5, 0.07, 0.08, 0.84, 4.5, 0.060),
}
#: Student-t copula (nu = 4) correlations of the three markets' innovations.
CORRELATION = [[1.0, 0.80, 0.70], [0.80, 1.0, 0.75], [0.70, 0.75, 1.0]]
#: Illustrative venue (the preset's book): open interest per side and daily volume, USD.
VENUE = {"BTC": (2.0e9, 6.0e9), "ETH": (1.0e9, 3.0e9), "SOL": (3.0e8, 1.0e9)}

FULL_SIZES = [1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000]
QUICK_SIZES = [1_000, 10_000]


# ---------------------------------------------------------------------------------------------
# scenario sets
# ---------------------------------------------------------------------------------------------


def volatility_models() -> dict[str, Any]:
    """The GJR-t models of :data:`GJR_T` as fundguard VolModels (no fit needed)."""
    from fundguard.models import VolModel

    models = {}
    for name, (omega, alpha, gamma, beta, nu, vol_today) in GJR_T.items():
        persistence = alpha + beta + gamma / 2
        variance = omega / (1 - persistence)
        models[name] = VolModel.from_dict({
            "name": name,
            "spec": {"vol": "GJR", "dist": "t", "mean": "zero"},
            "params": {"omega": omega, "alpha": alpha, "gamma": gamma, "beta": beta, "nu": nu},
            "last_variance": vol_today**2, "next_variance": vol_today**2, "last_residual": 0.0,
            "typical_volatility": math.sqrt(variance), "loglikelihood": 0.0, "aic": 0.0, "bic": 0.0, "nobs": 3000,
            "scale": 1.0, "period_seconds": 86_400.0,
            "diagnostics": {
                "converged": True, "persistence": persistence, "half_life": math.log(0.5) / math.log(persistence),
                "unconditional_variance": variance, "annualized_volatility": math.sqrt(365.25 * variance),
                "periods_per_year": 365.25, "ljung_box_pvalue": 0.5, "ljung_box_lags": 10,
            },
        })
    return models


def generate(n: int, seed: int, folder: Path, name: str) -> dict[str, float]:
    """Simulate ``n`` scenarios, write ``<name>.losses`` / ``<name>.base`` (raw float64), return timings."""
    from fundguard.models import Copula, Market, VenueBook, build_scenarios, simulate_returns
    from fundguard.models.parallel import thread_count  # the threads simulate_returns uses by default

    copula = Copula("t", np.array(CORRELATION), 4.0, MARKETS)
    start = time.perf_counter()
    paths = simulate_returns(volatility_models(), HORIZON, n, innovations="parametric", seed=seed, copula=copula,
                             threads=1)
    single = time.perf_counter() - start
    del paths
    start = time.perf_counter()
    paths = simulate_returns(volatility_models(), HORIZON, n, innovations="parametric", seed=seed, copula=copula)
    simulate_seconds = time.perf_counter() - start
    venue = VenueBook([Market(m, open_interest=oi, daily_volume=adv) for m, (oi, adv) in VENUE.items()])
    start = time.perf_counter()
    one_thread = build_scenarios(paths, venue, threads=1)
    build_single = time.perf_counter() - start
    del one_thread
    start = time.perf_counter()
    scenarios = build_scenarios(paths, venue)
    build_seconds = time.perf_counter() - start
    del paths
    scenarios.losses.tofile(folder / f"{name}.losses")
    scenarios.premium_base.tofile(folder / f"{name}.base")
    steps = n * HORIZON
    return {
        "n": n, "seed": seed, "simulate_seconds": simulate_seconds, "build_seconds": build_seconds,
        "simulate_threads": thread_count(None), "simulate_single_thread_seconds": single,
        "simulate_single_thread_path_steps_per_second": steps * len(MARKETS) / single,
        "build_single_thread_seconds": build_single,
        "build_single_thread_path_steps_per_second": steps * len(MARKETS) / build_single,
        "simulate_path_steps_per_second_per_market": steps / simulate_seconds,
        "simulate_path_steps_per_second": steps * len(MARKETS) / simulate_seconds,
        "build_path_steps_per_second_per_market": steps / build_seconds,
        "build_path_steps_per_second": steps * len(MARKETS) / build_seconds,
    }


def load(folder: Path, name: str, n: int) -> Any:
    """The first ``n`` scenarios of a written set, read straight into fresh arrays (no memory map)."""
    from fundguard.models import ScenarioSet

    losses = np.fromfile(folder / f"{name}.losses", dtype=np.float64, count=n * HORIZON).reshape(n, HORIZON)
    base = np.fromfile(folder / f"{name}.base", dtype=np.float64, count=n * HORIZON * len(MARKETS))
    return ScenarioSet(losses=losses, premium_base=base.reshape(n, HORIZON, len(MARKETS)), markets=list(MARKETS))


# ---------------------------------------------------------------------------------------------
# workers (each in its own subprocess)
# ---------------------------------------------------------------------------------------------


def _peak_rss_bytes() -> int:
    """Peak resident set of this process since it started (VmHWM; Linux resets it at exec, while
    ru_maxrss keeps the forking parent's peak), ru_maxrss where /proc is absent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _rss_bytes() -> int:
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _measure(call: Any) -> tuple[Any, float, int]:
    """``(result, seconds of a first call, tracemalloc peak bytes of a second call)``."""
    start = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - start
    tracemalloc.start()
    call()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, seconds, peak


def _policy_summary(policy: Any) -> dict[str, Any]:
    return {
        "objective": policy.objective, "fund_target": policy.fund_target,
        "premium_rates": [float(r) for r in policy.premium_rates], "status": policy.status,
        "in_sample_ruin": policy.in_sample_ruin, "solver": policy.solver,
        "details": {k: v for k, v in policy.details.items() if isinstance(v, (int, float, str, bool))},
    }


def fast_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Solve the tasks of one N in this process; memory per task by tracemalloc."""
    from fundguard.models.errors import FundguardError
    from fundguard.optimizer import PolicyProblem

    folder, n = Path(spec["folder"]), spec["n"]
    baseline = _rss_bytes()
    scenarios = load(folder, "main", n)
    data = scenarios.losses.nbytes + scenarios.premium_base.nbytes
    loaded = _rss_bytes()
    results = []
    for task in spec["tasks"]:
        problem = PolicyProblem(**PROBLEMS[task["problem"]])
        options = task.get("options", {})
        record: dict[str, Any] = {**task, "n": n, "data_bytes": data}
        try:
            seconds, peak = _run_task(task, problem, options, scenarios, folder, n, record)
        except FundguardError as exc:  # e.g. too few scenarios for "scenario" or "certified"
            record["error"] = f"{type(exc).__name__}: {exc}"
            results.append(record)
            continue
        record.update(seconds=seconds, traced_peak_bytes=peak, peak_over_data=(data + peak) / data)
        results.append(record)
    maxrss = _peak_rss_bytes()
    return {"n": n, "data_bytes": data, "rss_baseline": baseline, "rss_loaded": loaded, "maxrss": maxrss, "tasks": results}


def _run_task(
    task: dict[str, Any], problem: Any, options: dict[str, Any], scenarios: Any, folder: Path, n: int, record: dict[str, Any]
) -> tuple[float, int]:
    from fundguard.optimizer import certify, frontier, solve

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if task["kind"] == "solve":
            policy, seconds, peak = _measure(lambda: solve(problem, scenarios, task["method"], **options))
            record.update(_policy_summary(policy))
        elif task["kind"] == "frontier":
            policies, seconds, peak = _measure(
                lambda: frontier(problem, scenarios, FRONTIER_ALPHAS, method=task["method"], **options)
            )
            record["statuses"] = [p.status for p in policies]
            record["objectives"] = [p.objective for p in policies]
        else:  # certify a policy on a fresh set of the same size
            fresh = load(folder, "fresh", n)
            policy = solve(problem, scenarios, "exact")
            certificate, seconds, peak = _measure(lambda: certify(policy, fresh, 0.99))
            record.update(ruins=certificate.ruins, upper_bound=certificate.upper_bound, fresh_n=certificate.n)
            del fresh
    return seconds, peak


def plain_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """The formulation a user writes first: one cvxpy constraint per (scenario, period) row.

    "cvar": Rockafellar-Uryasev, ``z_s >= floor - F[s, t] - eta`` for every row,
    ``eta + sum(z) / (alpha N) <= 0``. "exact": binaries ``y_s`` with big-M
    ``F[s, t] + M y_s >= floor`` for every row, ``sum(y) <= floor(alpha N)``, M the largest
    cumulative loss. Unscaled money, cvxpy's default solver or the one named.
    """
    import cvxpy as cp

    from fundguard.optimizer import PolicyProblem
    from fundguard.optimizer.fund import allowed_ruins, count_ruined, objective_value, worst_net_flow

    folder, n = Path(spec["folder"]), spec["n"]
    unit = float(spec.get("unit", 1.0))
    scenarios = load(folder, "main", n)
    problem = PolicyProblem(**PROBLEMS[spec["problem"]])
    start = time.perf_counter()
    cum_base = np.cumsum(scenarios.premium_base / unit, axis=1).reshape(n * HORIZON, len(MARKETS))
    cum_loss = np.cumsum(scenarios.losses / unit, axis=1).reshape(n * HORIZON)
    mean_base = scenarios.premium_base.sum(axis=1).mean(axis=0) / unit
    fund0 = cp.Variable(nonneg=True)
    rates = cp.Variable(len(MARKETS))
    fund = fund0 + cum_base @ rates - cum_loss  # F[s, t], one row per (scenario, period)
    row_scenario = np.repeat(np.arange(n), HORIZON)
    if spec["method"] == "cvar":
        eta = cp.Variable()
        excess = cp.Variable(n, nonneg=True)
        constraints = [excess[row_scenario] >= problem.floor / unit - fund - eta, eta + cp.sum(excess) / (problem.alpha * n) <= 0]
    else:
        ruined = cp.Variable(n, boolean=True)
        big_m = float(cum_loss.max()) + abs(problem.floor / unit)
        constraints = [fund + big_m * ruined[row_scenario] >= problem.floor / unit, cp.sum(ruined) <= allowed_ruins(problem.alpha, n)]
    constraints += [rates >= problem.premium_min, rates <= problem.premium_max]
    cost = problem.cost_of_capital * fund0 + (problem.premium_weight * mean_base) @ rates
    model = cp.Problem(cp.Minimize(cost), constraints)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if spec["solver"] == "default":
            model.solve()
        else:
            model.solve(solver=spec["solver"])
    seconds = time.perf_counter() - start
    out: dict[str, Any] = {
        **spec, "seconds": seconds, "status": model.status, "solver_used": model.solver_stats.solver_name,
        "maxrss": _peak_rss_bytes(),
    }
    if fund0.value is not None and rates.value is not None:
        p = np.clip(np.asarray(rates.value, dtype=np.float64), problem.premium_min, problem.premium_max)
        f0 = float(fund0.value) * unit
        worst = worst_net_flow(scenarios.losses, scenarios.premium_base, p)
        out.update(
            objective=objective_value(problem, f0, p, mean_base * unit), claimed_objective=float(model.value) * unit,
            fund_target=f0, premium_rates=[float(r) for r in p], ruins=count_ruined(f0, worst, problem.floor),
            allowed_ruins=allowed_ruins(problem.alpha, n),
        )
    return out


def _run_worker(kind: str, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run a worker in a fresh interpreter; its JSON result (or why there is none)."""
    command = [sys.executable, "-m", "benchmarks.scaling", "--worker", kind, json.dumps(spec)]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=_repo_root())
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timed out after {timeout:.0f} s", "seconds": time.perf_counter() - start}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {**spec, "error": f"exit {done.returncode}: {tail[0][:200]}", "seconds": time.perf_counter() - start}
    return json.loads(lines[-1])


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------


def plan(quick: bool) -> dict[str, Any]:
    """What to run: sizes, the tasks per size, the plain series and their limits."""
    sizes = QUICK_SIZES if quick else FULL_SIZES
    largest = sizes[-1]
    frontier_n = 10_000 if quick else 100_000
    tasks: dict[int, list[dict[str, Any]]] = {}
    for n in sizes:
        todo = [
            {"kind": "solve", "method": "cvar", "problem": "preset"},
            {"kind": "solve", "method": "exact", "problem": "preset"},
            {"kind": "solve", "method": "cvar", "problem": "interior"},
            {"kind": "solve", "method": "exact", "problem": "interior"},
            {"kind": "solve", "method": "scenario", "problem": "preset"},
            {"kind": "solve", "method": "certified", "problem": "preset"},
        ]
        if n <= (1_000 if quick else 5_000):
            todo.append({"kind": "solve", "method": "exact", "problem": "preset", "options": {"engine": "milp"}, "label": "exact (milp reference)"})
        if n == frontier_n:
            todo += [{"kind": "frontier", "method": m, "problem": "preset"} for m in ("cvar", "exact")]
        if n == largest:
            todo.append({"kind": "certify", "method": "certify", "problem": "preset"})
        tasks[n] = todo
    plain_sizes = [n for n in sizes if n <= (1_000 if quick else 20_000)]
    exact_sizes = [n for n in plain_sizes if n <= 10_000]
    plain = [
        {"method": "cvar", "solver": "HIGHS", "sizes": plain_sizes, "timeout": 60 if quick else 300},
        {"method": "cvar", "solver": "default", "sizes": plain_sizes, "timeout": 60 if quick else 300},
        {"method": "exact", "solver": "default", "sizes": exact_sizes, "timeout": 30 if quick else 120},
        # the same mixed-integer model with money in millions: what a user who knows the
        # unscaled trap writes (HiGHS declares the currency-unit model infeasible)
        {"method": "exact", "solver": "default", "unit": 1e6, "sizes": exact_sizes, "timeout": 30 if quick else 120},
    ]
    return {"sizes": sizes, "tasks": tasks, "plain": plain, "worker_timeout": 120 if quick else 900, "frontier_n": frontier_n}


def run(quick: bool, out: Path) -> dict[str, Any]:
    todo = plan(quick)
    started = dt.datetime.now(dt.timezone.utc)
    load_average = os.getloadavg() if hasattr(os, "getloadavg") else None
    largest = todo["sizes"][-1]
    with tempfile.TemporaryDirectory(prefix="fundguard-scaling-") as scratch:
        folder = Path(scratch)
        _say(f"generating {largest:,} scenarios (and as many fresh ones for certify)")
        generation = generate(largest, SEED, folder, "main")
        fresh = generate(largest, SEED + 1, folder, "fresh")
        fast = []
        for n in todo["sizes"]:
            _say(f"fast paths at N = {n:,}")
            spec = {"folder": str(folder), "n": n, "tasks": todo["tasks"][n]}
            fast.append(_run_worker("fast", spec, todo["worker_timeout"]))
        plain = []
        for series in todo["plain"]:
            for n in series["sizes"]:
                _say(f"plain cvxpy {series['method']} ({series['solver']}, money unit {series.get('unit', 1.0):g}) at N = {n:,}")
                spec = {
                    "folder": str(folder), "n": n, "method": series["method"], "solver": series["solver"], "problem": "preset",
                    "unit": series.get("unit", 1.0),
                }
                result = _run_worker("plain", spec, series["timeout"])
                plain.append(result)
                if "error" in result:
                    break  # past practical: larger sizes would only take longer
    from .scaling_stages import run_stages

    stages = run_stages(quick, SEED, _say)
    results = {
        "command": "python -m benchmarks.scaling" + (" --quick" if quick else ""),
        "quick": quick, "seed": SEED, "date": started.isoformat(timespec="seconds"),
        "machine": machine(), "load_average_at_start": load_average,
        "generation": generation, "generation_fresh": fresh, "fast": fast, "plain": plain,
        "frontier_n": todo["frontier_n"], "frontier_alphas": FRONTIER_ALPHAS, "problems": PROBLEMS,
        "stages": stages,
        "seconds_total": (dt.datetime.now(dt.timezone.utc) - started).total_seconds(),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling.json").write_text(json.dumps(results, indent=1, default=float))
    (out / "scaling.md").write_text(report(results))
    figure(results, out / "scaling.png")
    return results


def machine() -> dict[str, Any]:
    import cvxpy
    import scipy

    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = None
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
        "memory_gib": None if memory is None else round(memory / 2**30, 1), "python": platform.python_version(),
        "numpy": np.__version__, "scipy": scipy.__version__, "cvxpy": cvxpy.__version__,
    }


def _say(message: str) -> None:
    print(f"[scaling] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------


def _tasks(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for worker in results["fast"]:
        for task in worker.get("tasks", []):
            rows.append({**task, "maxrss": worker.get("maxrss", math.nan)})
    return rows


def _label(task: dict[str, Any]) -> str:
    if task.get("label"):
        return task["label"]
    if task["kind"] == "frontier":
        return f"frontier ({task['method']}, 10 alphas)"
    return task["method"]


def agreement(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Plain vs fast at each N where both ran (same method, "preset" problem)."""
    fast = {(t["n"], t["method"]): t for t in _tasks(results) if t["kind"] == "solve" and t["problem"] == "preset" and not t.get("options")}
    rows = []
    for plain in results["plain"]:
        match = fast.get((plain["n"], plain["method"]))
        if match is None or "objective" not in plain:
            continue
        rows.append({
            "n": plain["n"], "method": plain["method"], "solver": plain["solver_used"] if "solver_used" in plain else plain["solver"],
            "unit": plain.get("unit", 1.0), "plain_status": plain["status"],
            "plain_seconds": plain["seconds"], "plain_objective": plain["objective"], "plain_ruins": plain["ruins"],
            "allowed_ruins": plain["allowed_ruins"],
            "plain_maxrss": plain["maxrss"], "fast_seconds": match["seconds"], "fast_objective": match["objective"],
            "speedup": plain["seconds"] / match["seconds"],
            "relative_difference": (plain["objective"] - match["objective"]) / abs(match["objective"]),
        })
    return rows


def _mb(value: float) -> str:
    return f"{value / 2**20:,.0f}"


def report(results: dict[str, Any]) -> str:
    m = results["machine"]
    gen = results["generation"]
    lines = [
        "# Scaling of the fast paths (issue 5)",
        "",
        f"Command: `{results['command']}` (from the repository root). Seed {results['seed']} (fresh set for "
        f"certify: {results['seed'] + 1}). Date {results['date']}. Total {results['seconds_total'] / 60:.1f} min.",
        "",
        f"Machine: {m['cpu']}, {m['cpu_count']} CPUs, {m['memory_gib']} GiB; {m['platform']}; Python {m['python']}, "
        f"numpy {m['numpy']}, scipy {m['scipy']}, cvxpy {m['cvxpy']}. Load average at start "
        f"{', '.join(f'{x:.1f}' for x in results['load_average_at_start'] or [])} (a shared machine: timings are noisy; "
        "compare ratios within this run).",
        "",
        f"Scenario sets: GJR-GARCH(1,1)-t paths of {', '.join(MARKETS)} (t copula), T = {HORIZON}, J = {len(MARKETS)}, "
        "through the liquidation-gap venue model with the preset's illustrative book (`benchmarks/scaling.py` states "
        "every parameter). Problems: " + "; ".join(f"`{k}` {v}" for k, v in results["problems"].items()) + ".",
        "",
        "Memory: *traced peak* is tracemalloc's peak of what one call allocates on top of the loaded ScenarioSet "
        "(numpy buffers included; a second, untimed call); *peak / data* = (ScenarioSet bytes + traced peak) / "
        "ScenarioSet bytes; *maxrss* is the worker subprocess's peak resident set (interpreter, imports, the "
        "loaded data and all of that N's calls).",
        "",
        "## Scenario generation",
        "",
        "| step | N | seconds | path-steps/s per market | market-path-steps/s (N T J / s) |",
        "|---|---:|---:|---:|---:|",
        *([f"| simulate_returns (GJR-t, t copula), threads=1 | {gen['n']:,} | {gen['simulate_single_thread_seconds']:.2f} | "
           f"{gen['simulate_single_thread_path_steps_per_second'] / len(MARKETS) / 1e6:.1f} M | "
           f"{gen['simulate_single_thread_path_steps_per_second'] / 1e6:.1f} M |"] if "simulate_single_thread_seconds" in gen else []),
        f"| simulate_returns (GJR-t, t copula), default threads ({gen.get('simulate_threads', 1)}) | {gen['n']:,} | {gen['simulate_seconds']:.2f} | "
        f"{gen['simulate_path_steps_per_second_per_market'] / 1e6:.1f} M | {gen['simulate_path_steps_per_second'] / 1e6:.1f} M |",
        *([f"| build_scenarios (liquidation gap), threads=1 | {gen['n']:,} | {gen['build_single_thread_seconds']:.2f} | "
           f"{gen['build_single_thread_path_steps_per_second'] / len(MARKETS) / 1e6:.1f} M | "
           f"{gen['build_single_thread_path_steps_per_second'] / 1e6:.1f} M |"] if "build_single_thread_seconds" in gen else []),
        f"| build_scenarios (liquidation gap), default threads ({gen.get('simulate_threads', 1)}) | {gen['n']:,} | {gen['build_seconds']:.2f} | "
        f"{gen['build_path_steps_per_second_per_market'] / 1e6:.1f} M | {gen['build_path_steps_per_second'] / 1e6:.1f} M |",
        "",
        "## Fast paths against N",
        "",
        "| N | data MB | method | problem | seconds | traced peak MB | peak / data | maxrss MB | status | objective | in-sample ruin | rates | screened rows / boxes |",
        "|---:|---:|---|---|---:|---:|---:|---:|---|---:|---:|---|---|",
    ]
    skipped = []
    for t in _tasks(results):
        if "error" in t:
            skipped.append(f"{_label(t)} at N = {t['n']:,}: {t['error']}")
            continue
        details = t.get("details", {})
        sizes = f"{details.get('rows', '')}" + (f" / {details['boxes']}" if "boxes" in details else "")
        if t["kind"] == "solve":
            rates = ", ".join(f"{r:.4%}" for r in t["premium_rates"])
            status, objective, ruin = t["status"], f"{t['objective']:,.0f}", f"{t['in_sample_ruin']:.4%}"
        elif t["kind"] == "frontier":
            optimal = sum(s == "optimal" for s in t["statuses"])
            status, objective, ruin, rates = f"{optimal}/10 optimal", "", "", ""
        else:
            status = f"{t['ruins']} ruins of {t['fresh_n']:,}, bound {t['upper_bound']:.4%}"
            objective = ruin = rates = ""
        lines.append(
            f"| {t['n']:,} | {_mb(t['data_bytes'])} | {_label(t)} | {t['problem']} | {t['seconds']:.3f} | "
            f"{_mb(t['traced_peak_bytes'])} | {t['peak_over_data']:.2f} | {_mb(t['maxrss'])} | {status} | {objective} | "
            f"{ruin} | {rates} | {sizes} |"
        )
    for w in results["fast"]:
        if "error" in w:
            skipped.append(f"worker at N = {w['n']:,}: {w['error']}")
    if skipped:
        lines += ["", "Not run or failed:", ""] + [f"- {item}" for item in skipped]
    lines += [
        "",
        "## The plain cvxpy formulation beside the fast path",
        "",
        "One constraint per (scenario, period) row, unscaled money, in its own subprocess with a timeout; its "
        "objective recomputed in numpy from its fund target and rates (*ruins*: in-sample ruined scenarios of its "
        "policy, the exact constraint allows floor(alpha N)).",
        "",
        "| N | method | solver (money unit) | plain status | plain seconds | plain maxrss MB | fast seconds | speed-up | plain objective | fast objective | relative difference | plain ruins / allowed |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in agreement(results):
        lines.append(
            f"| {row['n']:,} | {row['method']} | {row['solver']} ({row['unit']:g}) | {row['plain_status']} | {row['plain_seconds']:.2f} | "
            f"{_mb(row['plain_maxrss'])} | {row['fast_seconds']:.3f} | {row['speedup']:.0f}x | {row['plain_objective']:,.2f} | "
            f"{row['fast_objective']:,.2f} | {row['relative_difference']:.1e} | {row['plain_ruins']} / {row['allowed_ruins']} |"
        )
    for plain in results["plain"]:
        which = f"{plain['method']} ({plain['solver']}, money unit {plain.get('unit', 1.0):g})"
        if "error" in plain:
            lines.append(f"\nPlain {which} at N = {plain['n']:,}: {plain['error']}; larger N not run.")
        elif "objective" not in plain:
            lines.append(
                f"\nPlain {which} [{plain.get('solver_used', '')}] at N = {plain['n']:,}: "
                f"status {plain['status']} after {plain['seconds']:.1f} s, no answer."
            )
        elif plain["status"] != "optimal" or abs(plain["claimed_objective"] - plain["objective"]) > 1e-6 * abs(plain["objective"]):
            lines.append(
                f"\nPlain {which} at N = {plain['n']:,}: status {plain['status']}, claimed "
                f"objective {plain['claimed_objective']:,.2f}, recomputed {plain['objective']:,.2f}."
            )
    if results.get("stages"):
        from .scaling_stages import report_stages

        lines += [""] + report_stages(results["stages"])
    lines += ["", "## Targets", ""] + targets(results)
    return "\n".join(lines) + "\n"


def targets(results: dict[str, Any]) -> list[str]:
    """Issue 5's targets, measured in this run."""
    tasks = _tasks(results)
    out = ["| target | measured | met |", "|---|---|---|"]

    def find(kind: str, method: str, n: int, problem: str = "preset") -> dict[str, Any] | None:
        for t in tasks:
            if t["kind"] == kind and t["method"] == method and t["n"] == n and t["problem"] == problem and not t.get("options"):
                return t
        return None

    for row in agreement(results):
        if row["n"] == 20_000 and row["method"] == "cvar" and row["solver"].upper() == "HIGHS" and row["unit"] == 1.0:
            met = row["speedup"] >= 50 and abs(row["relative_difference"]) <= 1e-6
            out.append(
                f"| N = 20,000: cvar >= 50x faster than plain cvxpy + HiGHS, objective to 1e-6 | "
                f"{row['speedup']:.0f}x, relative difference {row['relative_difference']:.1e} | {'yes' if met else 'no'} |"
            )
    largest = results["generation"]["n"]
    for method in ("cvar", "exact"):
        for problem in ("preset", "interior"):
            t = find("solve", method, largest, problem)
            if t and "seconds" in t:
                met = t["seconds"] < 5 and t["peak_over_data"] < 2.5 and largest >= 1_000_000
                out.append(
                    f"| N = {largest:,} {method} ({problem}) under 5 s, peak under 2.5x data | {t['seconds']:.2f} s, "
                    f"peak / data {t['peak_over_data']:.2f} (maxrss {_mb(t['maxrss'])} MB for {_mb(t['data_bytes'])} MB of data), "
                    f"{t['status']} | {'yes' if met else 'no (quick run)' if largest < 1_000_000 else 'no'} |"
                )
    t = find("certify", "certify", largest)
    if t and "seconds" in t:
        out.append(f"| certify on {largest:,} fresh scenarios under 1 s | {t['seconds']:.3f} s | {'yes' if t['seconds'] < 1 else 'no'} |")
    for method in ("cvar", "exact"):
        t = find("frontier", method, results["frontier_n"])
        if t and "seconds" in t:
            n_optimal = sum(s == "optimal" for s in t["statuses"])
            met = t["seconds"] < 5 and results["frontier_n"] >= 100_000
            out.append(
                f"| frontier of 10 alphas ({FRONTIER_ALPHAS[0]:g}..{FRONTIER_ALPHAS[-1]:g}) at N = {results['frontier_n']:,}, {method}, under 5 s | "
                f"{t['seconds']:.2f} s, {n_optimal}/10 optimal | {'yes' if met else 'no (quick run)' if results['frontier_n'] < 100_000 else 'no'} |"
            )
    gen = results["generation"]
    rate = gen["simulate_path_steps_per_second"]
    joint = gen["simulate_path_steps_per_second_per_market"]
    out.append(
        f"| generation: >= 10 M path-steps/s per market (simulate_returns; a market's path-step counted once per "
        f"market, N T J / s, as arch's one-market simulator is measured) | {rate / 1e6:.1f} M market-path-steps/s "
        f"with {gen.get('simulate_threads', 1)} threads; one thread "
        f"{gen.get('simulate_single_thread_path_steps_per_second', math.nan) / 1e6:.1f} M; joint J-market path-steps "
        f"N T / s {joint / 1e6:.1f} M | {'yes' if rate >= 1e7 else 'no'} |"
    )
    build = gen["build_path_steps_per_second"]
    single = gen.get("simulate_single_thread_path_steps_per_second", math.nan)
    build_single = gen.get("build_single_thread_path_steps_per_second", math.nan)
    out.append(
        f"| venue loss model no slower than the simulation (same thread count; the loss model is memory-bound and gains "
        f"less from threads) | one thread: {build_single / 1e6:.1f} M vs {single / 1e6:.1f} M market-path-steps/s; "
        f"default threads: {build / 1e6:.1f} M vs {rate / 1e6:.1f} M | "
        f"{'yes' if build_single >= single and build >= rate else 'one thread yes, default threads no' if build_single >= single else 'no'} |"
    )
    if results.get("stages"):
        from .scaling_stages import stage_targets

        out += stage_targets(results["stages"])
    return out


def figure(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    series: dict[str, list[tuple[int, float, float]]] = {}
    for t in _tasks(results):
        if t["kind"] != "solve" or "seconds" not in t:
            continue
        name = f"{_label(t)} ({t['problem']})"
        series.setdefault(name, []).append((t["n"], t["seconds"], t["peak_over_data"]))
    for name, points in sorted(series.items()):
        n, seconds, ratio = map(np.array, zip(*sorted(points)))
        style = "-" if "preset" in name else "--"
        left.plot(n, seconds, style, marker="o", label=name)
        right.plot(n, ratio, style, marker="o", label=name)
    plain: dict[str, list[tuple[int, float]]] = {}
    for p in results["plain"]:
        if "objective" in p:
            unit = "" if p.get("unit", 1.0) == 1.0 else f", money in {p['unit']:g}"
            plain.setdefault(f"plain cvxpy {p['method']} ({p['solver']}{unit})", []).append((p["n"], p["seconds"]))
    for name, points in sorted(plain.items()):
        n, seconds = map(np.array, zip(*sorted(points)))
        left.plot(n, seconds, ":", marker="s", label=name)
    left.set(xscale="log", yscale="log", xlabel="scenarios N", ylabel="seconds", title="solve time (T = 30, J = 3)")
    right.set(xscale="log", xlabel="scenarios N", ylabel="(data + traced peak) / data", title="peak memory over the ScenarioSet")
    right.axhline(2.5, color="grey", lw=0.8)
    left.legend(fontsize=7)
    for axis in (left, right):
        axis.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"fundguard scaling, {results['date'][:10]}, {results['machine']['cpu_count']} CPUs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 1e3 and 1e4 only (under a minute)")
    parser.add_argument("--out", type=Path, default=_repo_root() / "benchmarks" / "results", help="output folder")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, spec = args.worker
        if kind.startswith("stage:"):
            from .scaling_stages import WORKERS

            result = WORKERS[kind.split(":", 1)[1]](json.loads(spec))
        else:
            result = (fast_worker if kind == "fast" else plain_worker)(json.loads(spec))
        print(json.dumps(result, default=float))
        return 0
    results = run(args.quick, args.out)
    _say(f"wrote {args.out / 'scaling.md'} ({results['seconds_total']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
