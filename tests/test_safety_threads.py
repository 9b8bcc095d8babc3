"""Safety of the library inside someone else's process (issue 13, items 3 and 6).

* Solving never touches file descriptor 1: other threads' output arrives whole while "exact"
  solves run, and fd 1 is the same file afterwards (item 3).
* Same config and seed give the same result.json whatever the BLAS/OpenMP thread settings (item 6).
* The benchmark tests leave the tracked tree as they found it.

The fd-level checks run in a child process: only there is a line lost at the OS level visible
(pytest's own capture would swallow the evidence), and only a fresh process shows HiGHS's
once-per-process banner.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _shared import two_market_price_files

REPO = Path(__file__).resolve().parents[1]

# The child: 4 threads solve "exact" (two through the MILP reference, two through
# branch-and-bound, whose leaves are MILPs) until a fifth thread has printed 2,000 numbered
# lines to its real fd 1. quiet_milp is wrapped with a counter where the engines look it up, so
# the child can say that HiGHS's mixed-integer path was really reached.
_CHILD_PRINTS_WHILE_SOLVING = textwrap.dedent(
    """
    import os, sys, threading, time
    import numpy as np
    import fundguard.optimizer.methods.exact as exact
    from fundguard.models import ScenarioSet
    from fundguard.optimizer import PolicyProblem, solve

    calls = []

    def counted(real):
        def wrapper(*args, **kwargs):
            calls.append(1)  # list.append is atomic under the GIL
            return real(*args, **kwargs)
        return wrapper

    exact.quiet_milp = counted(exact.quiet_milp)

    rng = np.random.default_rng(1)
    shock = np.abs(rng.standard_t(3.0, size=(300, 6, 2)))
    scenarios = ScenarioSet(losses=np.maximum(shock.sum(axis=2) - 2, 0.0) ** 2,
                            premium_base=rng.gamma(2.0, 20.0, size=(300, 6, 2)) * (1.0 + shock),
                            markets=["a", "b"])
    problem = PolicyProblem(alpha=0.05, cost_of_capital=0.1, premium_weight=[0.1, 0.2], premium_max=[0.03, 0.05])
    fd1_before = os.fstat(1)
    printed = threading.Event()
    solves = [0, 0, 0, 0]

    def solver(i):
        while not printed.is_set() or solves[i] == 0:
            solve(problem, scenarios, "exact", engine="milp" if i % 2 else "branch-and-bound")
            solves[i] += 1

    def printer():
        for k in range(2000):
            print(f"line {k}", flush=True)
            time.sleep(0.0005)  # spread the lines over the solves
        printed.set()

    threads = [threading.Thread(target=solver, args=(i,)) for i in range(4)] + [threading.Thread(target=printer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fd1_after = os.fstat(1)
    same = (fd1_before.st_dev, fd1_before.st_ino) == (fd1_after.st_dev, fd1_after.st_ino)
    print(f"END milp_calls={len(calls)} solves={min(solves)} fd1_same={same}", flush=True)
    """
)


def test_other_threads_output_survives_exact_solves():
    done = subprocess.run(
        [sys.executable, "-c", _CHILD_PRINTS_WHILE_SOLVING], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[:-1] == [f"line {k}" for k in range(2000)]  # all arrive, in order, nothing else
    end = dict(field.split("=") for field in lines[-1].removeprefix("END ").split())
    assert end["fd1_same"] == "True"
    assert int(end["solves"]) >= 1
    assert int(end["milp_calls"]) >= 8  # every solve of both engines went through HiGHS's MIP


def test_every_highs_path_is_silent_in_a_fresh_process():
    # MILP (both "exact" engines), the QP through cvxpy's HiGHS interface (a rate penalty
    # makes the objective quadratic) and the LP through scipy; a fresh process, so HiGHS's
    # once-per-process banner would show.
    code = textwrap.dedent(
        """
        import sys, numpy as np
        from fundguard.models import ScenarioSet
        from fundguard.optimizer import PolicyProblem, solve
        rng = np.random.default_rng(0)
        scenarios = ScenarioSet(losses=rng.gamma(1.0, 1.0, (300, 5)) ** 2,
                                premium_base=rng.gamma(2.0, 5.0, (300, 5, 2)), markets=["a", "b"])
        linear = PolicyProblem(alpha=0.05, cost_of_capital=0.1, premium_weight=0.05, premium_max=0.05)
        quadratic = PolicyProblem(alpha=0.05, cost_of_capital=0.1, premium_weight=0.05, premium_max=0.05,
                                  rate_change_penalty=10.0, previous_rates=0.01)
        used = []
        for problem in (linear, quadratic):
            used.append(solve(problem, scenarios, "exact", engine="milp").solver)
            used.append(solve(problem, scenarios, "exact").solver)
            used.append(solve(problem, scenarios, "cvar", engine="cvxpy", solver="HIGHS").solver)
        sys.stderr.write(",".join(used))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == ""
    assert done.stderr.strip().split(",").count("HIGHS") == 2  # the LP and the QP both reached HiGHS


@pytest.mark.slow
def test_same_result_whatever_the_blas_thread_count(tmp_path):
    # Before the fix OPENBLAS_NUM_THREADS=1 vs 2 moved the fitted GARCH parameters by ~1e-5
    # relative (arch's SLSQP) and the fund target by ~90 (of 7.4 million) on this config.
    files = two_market_price_files(tmp_path)
    config = tmp_path / "fund.toml"
    config.write_text(textwrap.dedent(
        f"""
        [scenarios]
        n_scenarios = 2000
        certify_scenarios = 5000
        horizon = 10
        seed = 5
        innovations = "fhs"

        [problem]
        alpha = 0.02
        cost_of_capital = 0.01
        premium_weight = 0.05
        premium_max = 0.01
        method = "certified"

        [[markets]]
        name = "AAA"
        prices = {json.dumps(str(files["AAA"]))}
        open_interest = 1e9
        daily_volume = 3e9

        [[markets]]
        name = "BBB"
        prices = {json.dumps(str(files["BBB"]))}
        open_interest = 5e8
        daily_volume = 2e9
        current_rate = 0.002
        """
    ))
    documents = []
    for threads in ("1", "2"):
        env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        out = tmp_path / f"out{threads}"
        done = subprocess.run(
            [sys.executable, "-m", "fundguard.optimizer.job.cli", "calibrate", "--config", str(config), "--out", str(out),
             "--quiet", "--no-frontier"],
            capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
        )
        assert done.returncode in (0, 3), done.stderr[-2000:]
        document = json.loads((out / "result.json").read_text())
        document.pop("run")
        documents.append(json.dumps(document, sort_keys=True))
    assert documents[0] == documents[1]


def test_concurrent_fits_agree_and_leave_the_blas_thread_count_as_they_found_it(tmp_path):
    # The BLAS limit is process-wide: overlapping fits must all run under it (the last one out
    # restores it), and afterwards the process has its own setting back.
    import threading

    import numpy as np
    import pandas as pd
    from threadpoolctl import threadpool_info

    from fundguard.models import VolSpec, fit_volatility

    prices = pd.read_csv(two_market_price_files(tmp_path)["AAA"])
    returns = pd.Series(np.diff(np.log(prices["close"].to_numpy())))
    spec = VolSpec(vol="GARCH", dist="t", mean="constant")
    before = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]
    alone = fit_volatility(returns, spec).params
    fitted: dict[int, dict[str, float]] = {}

    def fit(i: int) -> None:
        fitted[i] = fit_volatility(returns, spec).params

    threads = [threading.Thread(target=fit, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [fitted[i] for i in range(3)] == [alone] * 3
    assert [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"] == before
