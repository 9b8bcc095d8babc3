"""Tests of benchmarks/scaling.py: the quick mode runs, writes its report, and the fast and plain
paths agree on the objective wherever both ran."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _shared import benchmarks_status

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tree_before() -> str | None:
    """benchmarks/ as git sees it before this module's quick runs (a developer's tree may be dirty)."""
    return benchmarks_status()


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory, tree_before) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("scaling")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scaling", "--quick", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return out, json.loads((out / "scaling.json").read_text())


@pytest.mark.slow
def test_quick_mode_writes_the_table_figure_and_raw_results(quick_run):
    out, results = quick_run
    table = (out / "scaling.md").read_text()
    assert "Command: `python -m benchmarks.scaling --quick`" in table
    assert f"Seed {results['seed']}" in table and "CPUs" in table
    assert "## Fast paths against N" in table and "## Targets" in table
    assert (out / "scaling.png").stat().st_size > 10_000
    assert [worker["n"] for worker in results["fast"]] == [1_000, 10_000]
    for worker in results["fast"]:
        assert "error" not in worker
        solved = {(t["method"], t["problem"]): t for t in worker["tasks"] if t["kind"] == "solve" and not t.get("options")}
        for method in ("cvar", "exact"):
            for problem in ("preset", "interior"):
                task = solved[(method, problem)]
                assert task["status"] == "optimal" and task["seconds"] > 0.0
                assert 1.0 <= task["peak_over_data"]
                # the exact constraint: at most floor(alpha N) of N ruined
                assert task["in_sample_ruin"] <= 0.01 + 1e-12
    generation = results["generation"]
    assert generation["n"] == 10_000 and generation["simulate_path_steps_per_second_per_market"] > 0


@pytest.mark.slow
def test_fast_and_plain_paths_agree_where_both_ran(quick_run):
    _, results = quick_run
    sys.path.insert(0, str(REPO))
    from benchmarks.scaling import agreement

    rows = agreement(results)
    assert any(row["solver"] == "HIGHS" and row["method"] == "cvar" for row in rows)
    assert any(row["method"] == "exact" for row in rows)
    for row in rows:
        if row["method"] == "cvar" and row["solver"] == "HIGHS":
            # HiGHS's simplex solves the plain LP to its optimum: the same objective
            assert abs(row["relative_difference"]) <= 1e-6
        elif row["method"] == "exact":
            # the same optimum, up to HiGHS's default 1e-4 MIP gap (its fund target can be a hair
            # below the exact order statistic, one scenario too many ruined: the fast path's never is)
            assert abs(row["relative_difference"]) <= 1e-4
        # cvxpy's default solver (Clarabel) on currency units returns answers far from the optimum
        # ("optimal_inaccurate" or even "optimal"), never cheaper than the fast path's
        assert row["fast_objective"] <= row["plain_objective"] * (1 + 1e-6) or row["plain_ruins"] > row["allowed_ruins"]
    # the exact fast path equals the small-N mixed-integer reference
    small = next(w for w in results["fast"] if w["n"] == 1_000)
    exact = {t.get("label", t["method"]): t for t in small["tasks"] if t["kind"] == "solve" and t["problem"] == "preset"}
    reference = exact["exact (milp reference)"]
    assert exact["exact"]["objective"] == pytest.approx(reference["objective"], rel=1e-6)


@pytest.mark.slow
def test_quick_run_leaves_the_tracked_tree_as_it_found_it(tree_before, quick_run):
    # The quick mode writes into tmp_path (--out), its workers nowhere: benchmarks/ is unchanged.
    if tree_before is None:
        pytest.skip("not a git checkout, or git is missing")
    assert benchmarks_status() == tree_before
