"""Distributed mode (issue 9): chunked scenario sets on a 2-worker LocalCluster equal the in-memory path.

The cluster (2 processes, one thread each) is module-scoped. Sets are small (tens of thousands of
scenarios) so the file stays within about a minute on 2 cores; the property under test (same
rows, same iterates, same counts) does not depend on N. The world is ``benchmarks.scaling``'s
(GJR-t BTC/ETH/SOL, t copula, T = 30) with a -30% stress shock, and its two problems: "preset"
(rates at their bounds) and "interior" (an interior rate).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fundguard.models import Copula, Market, ScenarioSet, VenueBook, build_scenarios, plan_simulation, stress_paths
from fundguard.optimizer import PolicyProblem, certify, frontier, ruin_probability, solve

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.scaling import CORRELATION, HORIZON, MARKETS, PROBLEMS, VENUE, volatility_models  # noqa: E402

N = 20_000
SEED = 20_261_125


def _world(n: int = N, seed: int = SEED):
    copula = Copula("t", np.array(CORRELATION), 4.0, MARKETS)
    models = volatility_models()
    venue = VenueBook([Market(m, open_interest=oi, daily_volume=adv) for m, (oi, adv) in VENUE.items()])
    plan = plan_simulation(models, HORIZON, n, seed=seed, copula=copula)
    stress = build_scenarios(stress_paths(models, HORIZON, shocks=(-0.3,)), venue)
    return plan, venue, stress


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with distributed.Client(cluster) as c:
            yield c


@pytest.fixture(scope="module")
def world():
    plan, venue, stress = _world()
    in_memory = ScenarioSet.concat([build_scenarios(plan.simulate(), venue), stress])
    return plan, venue, stress, in_memory


@pytest.fixture(scope="module")
def chunked(client, world):
    from fundguard.models import chunked_scenarios

    plan, venue, stress, _ = world
    return chunked_scenarios(plan, venue, client, chunk_size=6000, stress=stress)


def _same_policy(a, b, rtol=1e-9):
    assert b.method == a.method and b.status == a.status
    assert b.fund_target == pytest.approx(a.fund_target, rel=rtol)
    assert b.objective == pytest.approx(a.objective, rel=rtol)
    np.testing.assert_allclose(b.premium_rates, a.premium_rates, rtol=0, atol=1e-9)
    assert b.in_sample_ruin == a.in_sample_ruin and b.n_scenarios == a.n_scenarios


def test_import_and_in_memory_solve_do_not_import_dask():
    code = (
        "import sys\n"
        "import numpy as np\n"
        "import fundguard.models, fundguard.optimizer\n"
        "from fundguard.models import ScenarioSet\n"
        "from fundguard.optimizer import PolicyProblem, solve, certify\n"
        "rng = np.random.default_rng(1)\n"
        "s = ScenarioSet(losses=rng.exponential(1.0, (500, 5)), premium_base=rng.exponential(1.0, (500, 5, 2)), markets=['A', 'B'])\n"
        "p = solve(PolicyProblem(alpha=0.05, cost_of_capital=0.1, premium_max=0.5), s, 'exact')\n"
        "certify(p, s)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.strip() == "[]"


def test_missing_dask_names_the_extra():
    code = (
        "import sys\n"
        "sys.modules['distributed'] = None\n"  # as if not installed
        "from fundguard.models import chunked_scenarios, MissingDependencyError\n"
        "try:\n"
        "    chunked_scenarios(None, None, None)\n"
        "except MissingDependencyError as exc:\n"
        "    print(exc)\n"
        "from fundguard.optimizer.cli import main\n"
        "print('exit', main(['calibrate', '--workers', '2', '--method', 'cvar', '--quiet', '--out', sys.argv[1]]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, "/tmp/fundguard-no-dask-out"], capture_output=True, text=True,
                         timeout=120)
    assert 'pip install "fundguard[dask]"' in out.stdout
    assert "exit 2" in out.stdout and "fundguard[dask]" in out.stderr


@pytest.mark.parametrize("chunk_size", [1024, 3000, 50_000])
def test_chunks_are_the_in_memory_rows_whatever_the_chunking(client, world, chunk_size):
    from fundguard.models import chunked_scenarios

    plan, venue, stress, in_memory = world
    chunked = chunked_scenarios(plan, venue, client, chunk_size=chunk_size, stress=stress)
    gathered = chunked.gather()
    assert chunked.n_chunks == -(-N // (-(-chunk_size // 1024) * 1024))
    assert np.array_equal(gathered.losses, in_memory.losses)
    assert np.array_equal(gathered.premium_base, in_memory.premium_base)
    assert np.array_equal(gathered.is_stress, in_memory.is_stress)
    chunked.release()


_PER_MARKET = ("losses_by_market", "liquidated", "winners")


def _per_market_totals(chunk, start):
    """A pass over the per-market fields (on a worker): per market, the horizon totals of each, (n, 3, J)."""
    return start, np.stack([getattr(chunk, name).sum(axis=1) for name in _PER_MARKET], axis=1)


def test_the_per_market_fields_live_in_the_chunks_as_in_memory(chunked, world, client):
    """Issue 15: every chunk carries losses_by_market, liquidated and winners; passes read them where
    they are, the stress part keeps them, gathering stacks them: the in-memory rows, bit for bit."""
    from fundguard.models import chunked_scenarios

    plan, venue, stress, in_memory = world
    assert in_memory.per_market_fields == _PER_MARKET
    assert chunked.per_market_fields == _PER_MARKET
    parts = chunked.map(_per_market_totals)
    assert [p[0] for p in parts] == [chunked.rows(i)[0] for i in range(chunked.n_chunks)]
    random = in_memory.random_part()
    expected = np.stack([getattr(random, name).sum(axis=1) for name in _PER_MARKET], axis=1)
    assert np.array_equal(np.concatenate([p[1] for p in parts]), expected)
    # the per-market losses add up to the pooled ones, on the workers too (summed in another order)
    np.testing.assert_allclose(np.concatenate([p[1][:, 0].sum(axis=-1) for p in parts]), random.losses.sum(axis=1),
                               rtol=1e-12)
    for name in _PER_MARKET:
        assert np.array_equal(getattr(chunked.stress_part(), name), getattr(in_memory.stress_part(), name)), name
    regenerated = chunked_scenarios(plan, venue, client, chunk_size=8192, stress=stress, persist=False)
    assert regenerated.per_market_fields == _PER_MARKET
    gathered = regenerated.gather()
    for name in _PER_MARKET:
        assert np.array_equal(getattr(gathered, name), getattr(in_memory, name)), name


def test_a_chunked_set_of_a_pair_model_has_losses_by_market_only(client, world):
    from fundguard.models import chunked_scenarios

    plan, venue, _, in_memory = world
    pooled_only = chunked_scenarios(plan, venue, client, chunk_size=9000, loss_model=_pair_model, persist=False)
    assert pooled_only.per_market_fields == ("losses_by_market",)
    gathered = pooled_only.gather()
    assert gathered.liquidated is None and gathered.winners is None
    gap = build_scenarios(plan.simulate(), venue, loss_model="liquidation_gap")
    assert np.array_equal(gathered.losses_by_market, gap.losses_by_market)


def test_float32_fund_only_chunks_are_the_in_memory_float32_rows(client, world):
    """Issue 20: chunks stored as float32 with the fund's fields only hold the in-memory float32 set's
    rows bit for bit, and the chunked solve moves the fund target by less than 1e-5."""
    from fundguard.models import chunked_scenarios

    plan, venue, stress, in_memory = world
    narrow = chunked_scenarios(plan, venue, client, chunk_size=7000, stress=stress, dtype="float32", fund_only=True,
                               persist=False)
    assert narrow.per_market_fields == ("losses_by_market",)
    gathered = narrow.gather()
    assert gathered.dtype == "float32"
    expected = build_scenarios(plan.simulate(), venue, dtype="float32")
    assert np.array_equal(gathered.random_part().premium_base, expected.premium_base)
    assert np.array_equal(gathered.random_part().losses_by_market, expected.losses_by_market)
    problem = PolicyProblem(**PROBLEMS["preset"])
    wide = solve(problem, in_memory, "exact")
    assert solve(problem, narrow, "exact").fund_target == pytest.approx(wide.fund_target, rel=1e-5)


@pytest.mark.parametrize("problem_name", ["preset", "interior"])
@pytest.mark.parametrize("method", ["cvar", "exact"])
def test_solve_equals_the_in_memory_fast_path(chunked, world, method, problem_name):
    in_memory = world[3]
    problem = PolicyProblem(**PROBLEMS[problem_name])
    expected = solve(problem, in_memory, method)
    got = solve(problem, chunked, method)
    _same_policy(expected, got)
    info = got.details["distributed"]
    assert info["ruins_rechecked"] == round(expected.in_sample_ruin * N)
    assert info["tail_scenarios"] < N // 5  # the tail, not the whole set, came to the client


@pytest.mark.parametrize("method", ["cvar", "exact"])
def test_a_large_floor_and_the_answer_bound_on_a_chunked_set(chunked, world, method):
    """Issue 13: the scaled fund is measured from the floor on the tail too, and the tail model
    carries the largest total loss of all N scenarios (the bound every answer is checked against)."""
    from fundguard.optimizer.fund import FundModel, tail_model

    in_memory = world[3]
    problem = PolicyProblem(**PROBLEMS["interior"])
    assert tail_model(problem, chunked).largest_loss == FundModel.build(problem, in_memory).largest_loss
    base = solve(problem, chunked, method)
    high = solve(dataclasses.replace(problem, floor=1e12), chunked, method)
    assert high.fund_target - 1e12 == pytest.approx(base.fund_target, rel=1e-9)
    np.testing.assert_allclose(high.premium_rates, base.premium_rates, rtol=0, atol=1e-9)


def test_premium_income_overflowing_on_a_chunked_set_is_one_line(chunked):
    from fundguard.models.errors import ProblemError

    with pytest.raises(ProblemError, match=r"the fund of scenario \d+ overflows at premium_min"):
        solve(PolicyProblem(alpha=0.01, cost_of_capital=0.1, premium_max=1e305), chunked, "cvar")


def test_same_bits_whatever_the_chunking_and_persistence(client, world, chunked):
    from fundguard.models import chunked_scenarios

    plan, venue, stress, _ = world
    other = chunked_scenarios(plan, venue, client, chunk_size=2048, stress=stress, persist=False)
    problem = PolicyProblem(**PROBLEMS["interior"])
    for method in ("cvar", "exact"):
        a, b = solve(problem, chunked, method), solve(problem, other, method)
        assert (a.fund_target, a.objective, a.in_sample_ruin) == (b.fund_target, b.objective, b.in_sample_ruin)
        assert np.array_equal(a.premium_rates, b.premium_rates)


def test_certify_and_ruin_probability_count_exactly(chunked, world):
    in_memory = world[3]
    problem = PolicyProblem(**PROBLEMS["preset"])
    policy = solve(problem, in_memory, "cvar")
    shifted = dataclasses.replace(policy, fund_target=0.5 * policy.fund_target)  # some ruins to count
    for p in (policy, shifted):
        assert certify(p, chunked, 0.95) == certify(p, in_memory, 0.95)
        assert ruin_probability(p, chunked) == ruin_probability(p, in_memory)
    assert certify(shifted, chunked).ruins > certify(policy, chunked).ruins


def test_a_chunked_set_is_a_store_like_the_in_memory_set(chunked, world):
    from fundguard.models import ScenarioStore

    in_memory = world[3]
    assert isinstance(chunked, ScenarioStore) and chunked.distributed and not in_memory.distributed
    for attr in ("markets", "n_markets", "n_scenarios", "n_random", "n_stress", "horizon"):
        assert getattr(chunked, attr) == getattr(in_memory, attr)
    np.testing.assert_array_equal(chunked.stress_part().losses, in_memory.stress_part().losses)

    def rows(chunk, start, scale):
        return start, scale * chunk.losses.sum(axis=1)

    def stitched(store):
        parts = store.map(rows, 2.0)
        assert [p[0] for p in parts] == sorted(p[0] for p in parts)
        return np.concatenate([p[1] for p in parts])

    np.testing.assert_array_equal(stitched(chunked), stitched(in_memory))


def test_a_chunked_set_takes_its_loss_model_by_name(client, world):
    from fundguard.models import SpecificationError, chunked_scenarios, liquidation_gap

    plan, venue, _, in_memory = world
    named = chunked_scenarios(plan, venue, client, chunk_size=9000, loss_model="liquidation_gap", persist=False)
    assert named.loss_model is liquidation_gap
    gap = build_scenarios(plan.simulate(), venue, loss_model="liquidation_gap")
    np.testing.assert_array_equal(named.gather().losses, gap.losses)
    with pytest.raises(SpecificationError, match="unknown loss model 'stateful'"):
        chunked_scenarios(plan, venue, client, loss_model="stateful")


def test_frontier_equals_the_in_memory_frontier(chunked, world):
    problem = PolicyProblem(**PROBLEMS["preset"])
    alphas = [0.005, 0.02]
    for method in ("cvar", "exact"):
        for a, b in zip(frontier(problem, world[3], alphas, method), frontier(problem, chunked, alphas, method), strict=True):
            _same_policy(a, b)


def test_other_methods_and_bad_options_are_refused(chunked):
    from fundguard.models.errors import ProblemError

    problem = PolicyProblem(**PROBLEMS["preset"])
    with pytest.raises(ProblemError, match="'certified' is not available on a ChunkedScenarioSet"):
        solve(problem, chunked, "certified")
    with pytest.raises(ProblemError, match="no option 'beta'"):
        solve(problem, chunked, "cvar", beta=0.1)


def _pair_model(market, returns, volatility, *, period_days, long_run_volatility):
    """liquidation_gap's (loss, premium_base) only: the older pair form (module level: it must pickle)."""
    from fundguard.models import liquidation_gap

    return tuple(liquidation_gap(market, returns, volatility, period_days=period_days,
                                 long_run_volatility=long_run_volatility)[:2])


# -- failures -------------------------------------------------------------------------------------


def _killing_loss_model(marker: str):
    """The default stateful book, except that the first call anywhere kills its worker process (os._exit)."""
    from fundguard.models import stateful_book

    def loss_model(market, returns, volatility, *, period_days, long_run_volatility, low=None, high=None):
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return stateful_book(market, returns, volatility, period_days=period_days,
                                 long_run_volatility=long_run_volatility, low=low, high=high)
        os.close(fd)
        os._exit(1)

    loss_model.__name__ = "stateful_book"
    return loss_model


def test_a_worker_killed_while_generating_is_survived(client, world, tmp_path):
    from fundguard.models import chunked_scenarios

    plan, venue, stress, in_memory = world
    marker = tmp_path / "killed-once"
    chunked = chunked_scenarios(plan, venue, client, chunk_size=6000, stress=stress,
                                loss_model=_killing_loss_model(str(marker)))
    problem = PolicyProblem(**PROBLEMS["interior"])
    got = solve(problem, chunked, "exact")
    assert marker.exists()  # a worker did die
    _same_policy(solve(problem, in_memory, "exact"), got)
    chunked.release()


def test_a_worker_killed_after_generation_loses_nothing(client, world):
    import distributed

    from fundguard.models import chunked_scenarios

    plan, venue, stress, in_memory = world
    chunked = chunked_scenarios(plan, venue, client, chunk_size=4096, stress=stress)
    distributed.wait(list(chunked.parts))
    holders = client.who_has(list(chunked.parts))
    victim = next(iter(holders.values()))[0]

    async def die() -> None:  # a coroutine: client.run may then fire without waiting for an answer
        os._exit(1)

    client.run(die, workers=[victim], wait=False)
    problem = PolicyProblem(**PROBLEMS["preset"])
    _same_policy(solve(problem, in_memory, "cvar"), solve(problem, chunked, "cvar"))
    deadline = time.monotonic() + 30
    while victim in client.scheduler_info()["workers"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert victim not in client.scheduler_info()["workers"]  # the worker really died (its nanny restarts a new one)
    chunked.release()


# -- command line and benchmark ---------------------------------------------------------------------


def _small_config(tmp_path) -> Path:
    config = tmp_path / "fund.toml"
    config.write_text(
        "[scenarios]\nn_scenarios = 4000\ncertify_scenarios = 4000\nhorizon = 30\ninnovations = \"parametric\"\n"
        "shocks = [-0.3]\n[problem]\nmethod = \"exact\"\npremium_max = 0.0125\npremium_weight = 0.005\n"
        "cost_of_capital = 0.0123\n"
        + "".join(f"[[markets]]\nname = \"{m}\"\nopen_interest = {oi}\ndaily_volume = {adv}\n"
                  for m, (oi, adv) in VENUE.items()))
    return config


@pytest.mark.slow
def test_cli_frontier_on_workers_equals_the_in_process_frontier(tmp_path, client):
    config = _small_config(tmp_path)
    tables = []
    for extra in ([], ["--workers", "2"]):
        out = subprocess.run([sys.executable, "-m", "fundguard.optimizer.cli", "frontier", "--config", str(config),
                              "--quiet", "--json", "--method", "exact", "--alphas", "0.005,0.02", *extra],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        tables.append(json.loads(out.stdout))
    local, distributed = tables
    assert [r["alpha"] for r in local] == [r["alpha"] for r in distributed] == [0.005, 0.02]
    for a, b in zip(local, distributed):
        assert b["fund_target"] == pytest.approx(a["fund_target"], rel=1e-9)
        assert b["objective"] == pytest.approx(a["objective"], rel=1e-9)
        assert b["in_sample_ruin"] == a["in_sample_ruin"]
    assert local[0]["objective"] >= local[1]["objective"]  # a smaller alpha never costs less


@pytest.mark.slow
def test_cli_workers_gives_the_same_result_json(tmp_path, client):
    config = _small_config(tmp_path)
    outputs = []
    for extra in ([], ["--workers", "2"]):
        out = subprocess.run([sys.executable, "-m", "fundguard.optimizer.cli", "calibrate", "--config", str(config),
                              "--quiet", "--no-frontier", "--json", "--out", str(tmp_path / f"out{len(extra)}"),
                              *extra], capture_output=True, text=True, timeout=300)
        assert out.returncode in (0, 3), out.stderr
        assert "INFO" not in out.stderr, out.stderr[-2000:]  # --quiet: no Dask start/shutdown chatter
        result = json.loads(out.stdout)
        result.pop("run")
        outputs.append(result)
    a, b = outputs
    assert a["certificate"] == b["certificate"]
    assert a["policy"]["fund_target"] == pytest.approx(b["policy"]["fund_target"], rel=1e-9)
    assert a["policy"]["objective"] == pytest.approx(b["policy"]["objective"], rel=1e-9)
    for market, rate in a["policy"]["premium_rates"].items():
        assert b["policy"]["premium_rates"][market] == pytest.approx(rate, abs=1e-9)
    assert a["tail"]["required_fund_var"] == pytest.approx(b["tail"]["required_fund_var"], rel=1e-9)
    assert a["tail"]["worst_scenarios"] == b["tail"]["worst_scenarios"]
    assert a["inputs"]["config_digest"] == b["inputs"]["config_digest"] and a["stress"] == b["stress"]


def test_cli_refuses_certified_on_a_cluster(tmp_path):
    pytest.importorskip("distributed")
    from fundguard.optimizer.cli import main

    assert main(["calibrate", "--workers", "2", "--method", "certified", "--quiet", "--out", str(tmp_path)]) == 2


def test_config_compute_section_errors_cite_the_line(tmp_path):
    from fundguard.models.errors import ConfigError
    from fundguard.optimizer.config import load_config

    path = tmp_path / "fund.toml"
    path.write_text("[compute]\nworkers = 2\nscheduler = \"localhost\"\n"
                    "[[markets]]\nname = \"BTC\"\nopen_interest = 1e9\ndaily_volume = 1e9\n")
    with pytest.raises(ConfigError, match=r"fund.toml:3: compute.scheduler must be a Dask scheduler address"):
        load_config(path)
    path.write_text("[compute]\nworkers = 2\nchunk_size = 50000\n"
                    "[[markets]]\nname = \"BTC\"\nopen_interest = 1e9\ndaily_volume = 1e9\n")
    cfg = load_config(path)
    assert cfg.compute.workers == 2 and cfg.compute.chunk_size == 50_000 and cfg.compute.distributed


@pytest.mark.slow
def test_dask_scaling_quick_writes_its_note(tmp_path, client):
    from benchmarks import dask_scaling

    assert dask_scaling.main(["--quick", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "dask_scaling_quick.json").read_text())
    assert [r["n"] for r in result["sizes"]] == dask_scaling.QUICK_SIZES
    for r in result["sizes"]:
        assert r["exact"]["objective"] <= r["cvar"]["objective"] * (1 + 1e-9)  # exact is never dearer
        assert len(r["worker_peak_mb"]) == 2 and min(r["worker_peak_mb"]) > 0
    text = (tmp_path / "dask_scaling_quick.md").read_text()
    assert "command: `python -m benchmarks.dask_scaling --quick" in text and "SLURMCluster" in text
