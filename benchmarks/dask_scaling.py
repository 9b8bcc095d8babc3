"""Distributed mode on a local Dask cluster: time and memory per worker at 10^6 and 10^7 scenarios.

Run from the repository root (needs ``pip install -e ".[dask]"``)::

    python -m benchmarks.dask_scaling            # 1,000,000 and 10,000,000 scenarios (about 10 min, ~12 GB)
    python -m benchmarks.dask_scaling --quick    # 20,000 and 50,000 (under a minute)

Writes ``benchmarks/results/dask_scaling.md`` and ``.json`` (``dask_scaling_quick.*`` with
``--quick``). The scenario world is the scaling benchmark's (``benchmarks.scaling``: GJR-GARCH-t
models of BTC, ETH and SOL, a t copula, T = 30 days, the same venue and its "preset" problem)
under the default loss model, the stateful book (issue 20: re-done on the new model; before it the
liquidation-gap model). The chunks keep only what the fund equation reads (losses, premium bases,
per-market losses), stored as float32 (``--dtype float64`` for the full width): 10^7 scenarios of
the stateful book with every field in float64 are 31 GB, more than this 24 GB machine. For each
N, on a ``LocalCluster`` of ``--workers`` processes (one thread each):

* generation: simulate and build venue losses chunk by chunk on the workers, kept there
  (``chunked_scenarios(..., persist=True)``) or, with ``--regenerate``, regenerated per pass;
* "cvar" and "exact" solves on the chunked set (two passes, the tail on the client, the engine,
  a distributed ruin re-count);
* a certify pass (a ruin count over the N scenarios);
* peak resident memory of each worker process (``VmHWM`` from ``/proc/self/status``) and of the
  client (``ru_maxrss``).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks import _common
from benchmarks.scaling import CORRELATION, HORIZON, MARKETS, PROBLEMS, VENUE, volatility_models

SEED = 20_261_125
FULL_SIZES = [1_000_000, 10_000_000]
QUICK_SIZES = [20_000, 50_000]


def _peak_kib() -> int:
    """Peak resident set of this process, KiB (runs on the workers through ``client.run``)."""
    with open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def run_size(n: int, seed: int, workers: int, persist: bool, dtype: str = "float32") -> dict[str, Any]:
    """One N on a fresh LocalCluster: timings, policies, peak memory per worker."""
    import distributed

    from fundguard.models import Copula, Market, VenueBook, chunked_scenarios, local_client, plan_simulation
    from fundguard.optimizer import PolicyProblem, certify, solve

    copula = Copula("t", np.array(CORRELATION), 4.0, MARKETS)
    venue = VenueBook([Market(m, open_interest=oi, daily_volume=adv) for m, (oi, adv) in VENUE.items()])
    problem = PolicyProblem(**PROBLEMS["preset"])
    out: dict[str, Any] = {"n": n, "workers": workers, "persist": persist, "dtype": dtype, "loss_model": "stateful_book"}
    with local_client(workers) as client:
        start = time.perf_counter()
        plan = plan_simulation(volatility_models(), HORIZON, n, seed=seed, copula=copula)
        chunked = chunked_scenarios(plan, venue, client, persist=persist, loss_model="stateful_book", dtype=dtype,
                                    fund_only=True)
        if persist:
            distributed.wait(list(chunked.parts))
        out["generate_seconds"] = time.perf_counter() - start
        out["chunks"] = chunked.n_chunks
        out["chunk_scenarios"] = chunked.rows(0)[1] - chunked.rows(0)[0]
        # losses, premium bases and per-market losses: N T (2 J + 1) figures
        out["data_gb"] = n * HORIZON * (2 * len(MARKETS) + 1) * np.dtype(dtype).itemsize / 1e9
        for method in ("cvar", "exact"):
            start = time.perf_counter()
            policy = solve(problem, chunked, method)
            seconds = time.perf_counter() - start
            info = policy.details["distributed"]
            out[method] = {
                "seconds": seconds, "seconds_passes": info["seconds_passes"], "tail_scenarios": info["tail_scenarios"],
                "status": policy.status, "objective": policy.objective, "fund_target": policy.fund_target,
                "premium_rates": [float(r) for r in policy.premium_rates], "in_sample_ruin": policy.in_sample_ruin,
            }
        start = time.perf_counter()
        certificate = certify(policy, chunked)
        out["certify_seconds"] = time.perf_counter() - start
        out["certify_ruins"] = certificate.ruins
        out["worker_peak_mb"] = sorted(v / 1024 for v in client.run(_peak_kib).values())
        chunked.release()
    out["client_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def markdown(results: dict[str, Any], prov: _common.Provenance) -> str:
    rows = []
    for r in results["sizes"]:
        rows.append([
            f"{r['n']:,}", f"{r['data_gb']:.2f}", r["chunks"], "kept" if r["persist"] else "regenerated",
            f"{r['generate_seconds']:.1f}", f"{r['cvar']['seconds']:.1f}", f"{r['exact']['seconds']:.1f}",
            f"{r['certify_seconds']:.1f}", ", ".join(f"{m:,.0f}" for m in r["worker_peak_mb"]),
            f"{r['client_peak_mb']:,.0f}", f"{r['cvar']['tail_scenarios']:,}",
        ])
    policy_rows = [
        [f"{r['n']:,}", m, r[m]["status"], f"{r[m]['objective']:,.0f}", f"{r[m]['fund_target']:,.0f}",
         ", ".join(f"{p:.4%}" for p in r[m]["premium_rates"]), f"{r[m]['in_sample_ruin']:.4%}"]
        for r in results["sizes"] for m in ("cvar", "exact")
    ]
    return "\n".join([
        "# Distributed mode (Dask): scaling on a local cluster",
        "",
        prov.markdown(),
        "",
        f"LocalCluster of {results['workers']} worker processes (one thread each) on the machine above, with "
        "other work running beside it (timings are noisy). World: `benchmarks.scaling` (GJR-GARCH-t BTC/ETH/SOL, "
        "t copula, T = 30 days, J = 3) under the stateful book (the default loss model), problem \"preset\" "
        f"(alpha = 1%); chunks stored as {results.get('dtype', 'float64')} with the fund's fields only (losses, "
        "premium bases, per-market losses). Generation = simulation + venue losses on "
        "the workers; a solve = two passes over the chunks (corners + sketch, tail), the engine on the tail on the "
        "client, and a distributed ruin re-count; certify = one ruin-count pass.",
        "",
        _common.markdown_table(
            ["N", "data GB", "chunks", "chunks in memory", "generate s", "cvar s", "exact s", "certify s",
             "peak MB per worker", "client peak MB", "tail scenarios (cvar)"], rows),
        "",
        _common.markdown_table(["N", "method", "status", "objective", "fund target", "rates", "in-sample ruin"],
                               policy_rows, "lllrrll"),
        "",
        "Memory. `data GB` is the losses, premium bases and per-market losses (N T (2 J + 1) figures of the stored "
        "dtype). With chunks kept in memory each "
        "worker holds its share of that plus a chunk's generation buffers; the client holds only the tail (the "
        "scenarios that can bind, a few times alpha N) and per-chunk summaries. `--regenerate` keeps nothing on the "
        "workers and regenerates each chunk from the plan in every pass (the same bits), for sets larger than the "
        "cluster's memory, at the price of one generation per pass (a solve makes three passes).",
        "",
        "## A multi-machine run",
        "",
        "Nothing in fundguard changes: a `distributed.Client` connected to a scheduler is all it takes, and the "
        "command line takes the address (`fundguard calibrate --scheduler tcp://scheduler:8786`, or "
        "`[compute] scheduler = \"tcp://scheduler:8786\"` in the config). What the deployment must provide:",
        "",
        "- **The same software everywhere.** Workers unpickle the simulation plan, the venue book and the pass "
        "functions by reference to `fundguard.models` / `fundguard.optimizer`: every worker needs the same "
        "fundguard version (and numpy, scipy, dask) as the client, e.g. one container image "
        "(`pip install \"fundguard[dask]==<version>\"`) used for the scheduler, the workers and the job that runs "
        "`fundguard calibrate`. A mismatch shows as unpickling errors or, worse, different numbers.",
        "- **Worker memory.** With chunks kept in memory a worker needs its share of N T (J + 1) x 8 bytes "
        "(0.96 GB per million scenarios at T = 30, J = 3) plus about 4 chunks of working space (a chunk is "
        "~64 MiB by default, `[compute] chunk_size`), under Dask's 60% spill threshold: for 10^8 scenarios "
        "(96 GB) 16 workers of 12 GB. Otherwise regenerate per pass. The client needs the tail: about "
        "5 alpha N scenarios x T (J + 1) x 8 bytes (10^8 at alpha = 1%: ~5 GB), so run it on a node with room.",
        "- **SLURM** (dask-jobqueue):",
        "",
        "  ```python",
        "  from dask_jobqueue import SLURMCluster",
        "  from distributed import Client",
        "  cluster = SLURMCluster(cores=1, processes=1, memory=\"12GB\", walltime=\"01:00:00\",",
        "                         job_extra_directives=[\"--exclusive\"], python=\"/opt/fundguard/bin/python\")",
        "  cluster.scale(jobs=16)              # 16 single-threaded workers",
        "  client = Client(cluster)            # then chunked_scenarios(plan, venue, client) and solve(...)",
        "  ```",
        "",
        "- **Kubernetes** (dask-kubernetes operator): a `DaskCluster` resource with the fundguard image, "
        "`--nthreads 1 --memory-limit 12GB` on the workers and 16 replicas; the job calls "
        "`fundguard calibrate --config fund.toml --scheduler tcp://<cluster>-scheduler:8786`, or in Python "
        "`KubeCluster(name=\"fundguard\", image=\"registry/fundguard:<version>\", n_workers=16, "
        "resources={\"limits\": {\"memory\": \"12Gi\"}})`.",
        "- **Failures** are Dask's: a chunk lost with its worker is recomputed from the plan (its lineage), a task "
        "whose worker died is retried (`distributed.scheduler.allowed-failures`, default 3); the answer does not "
        "change, because every chunk is a pure function of the plan and its block range.",
        "",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cli = _common.parser("python -m benchmarks.dask_scaling", __doc__.splitlines()[0], seed=SEED, data=False)
    cli.add_argument("--workers", type=int, default=2, help="local worker processes (default 2)")
    cli.add_argument("--regenerate", action="store_true", help="regenerate chunks per pass instead of keeping them")
    cli.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="how chunks store figures")
    args = cli.parse_args(argv)
    try:
        import distributed  # noqa: F401
    except ImportError:
        return _common.fail('benchmarks.dask_scaling needs dask.distributed: pip install -e ".[dask]"')
    prov = _common.provenance("benchmarks.dask_scaling", argv, args.seed)
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    results: dict[str, Any] = {"workers": args.workers, "seed": args.seed, "command": prov.command, "dtype": args.dtype,
                               "machine": prov.machine, "date": prov.date, "code": prov.code, "sizes": []}
    for n in sizes:
        results["sizes"].append(run_size(n, args.seed, args.workers, persist=not args.regenerate, dtype=args.dtype))
    name = "dask_scaling_quick" if args.quick else "dask_scaling"
    _common.write_text(args.out / f"{name}.json", json.dumps(results, indent=2) + "\n")
    _common.write_text(args.out / f"{name}.md", markdown(results, prov))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
