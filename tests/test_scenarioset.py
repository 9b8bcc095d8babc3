"""Tests of models.scenarioset: the ScenarioSet seam object."""

from __future__ import annotations

import os

import numpy as np
import pytest

from fundguard.models import ScenarioError, ScenarioSet
from fundguard.models import scenarioset as scenarioset_module


def make_set(n: int = 40, horizon: int = 5, markets=("BTC", "ETH"), seed: int = 0, **kw) -> ScenarioSet:
    rng = np.random.default_rng(seed)
    return ScenarioSet(
        losses=rng.exponential(1e6, size=(n, horizon)),
        premium_base=rng.exponential(1e8, size=(n, horizon, len(markets))),
        markets=markets,
        **kw,
    )


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("losses", "base", "markets", "message"),
    [
        (np.zeros(5), np.zeros((5, 1, 1)), ("A",), r"losses must be a 2-d \(N, T\) array, got shape \(5,\)"),
        (np.zeros((0, 3)), np.zeros((0, 3, 1)), ("A",), "at least one scenario"),
        (np.zeros((4, 3)), np.zeros((4, 3, 2)), ("A",), r"premium_base must have shape \(N, T, J\) = \(4, 3, 1\)"),
        (np.zeros((4, 3)), np.zeros((4, 2, 1)), ("A",), r"premium_base must have shape"),
        (np.zeros((2, 2)), np.zeros((2, 2, 2)), ("A", "A"), "market names must be unique"),
        (np.zeros((2, 2)), np.zeros((2, 2, 1)), "A", "sequence of names"),
        (np.zeros((2, 2)), np.zeros((2, 2, 1)), ("",), r"markets\[0\] must be a non-empty string"),
        (np.zeros((2, 2)), np.zeros((2, 2, 0)), (), "at least one market"),
    ],
)
def test_shapes_and_markets_are_validated(losses, base, markets, message):
    with pytest.raises(ScenarioError, match=message):
        ScenarioSet(losses=losses, premium_base=base, markets=markets)


def test_values_are_validated_naming_field_and_index():
    losses = np.zeros((3, 4))
    losses[2, 1] = -5.0
    with pytest.raises(ScenarioError, match=r"losses must be finite and >= 0; losses\[2, 1\] = .*-5\.0"):
        ScenarioSet(losses=losses, premium_base=np.zeros((3, 4, 1)), markets=("A",))
    base = np.zeros((3, 4, 2))
    base[0, 3, 1] = np.inf
    with pytest.raises(ScenarioError, match=r"premium_base must be finite and >= 0; premium_base\[0, 3, 1\] = .*inf"):
        ScenarioSet(losses=np.zeros((3, 4)), premium_base=base, markets=("A", "B"))
    base[0, 3, 1] = np.nan
    with pytest.raises(ScenarioError, match=r"premium_base\[0, 3, 1\]"):
        ScenarioSet(losses=np.zeros((3, 4)), premium_base=base, markets=("A", "B"))


def test_stress_flags_and_metadata_are_validated():
    with pytest.raises(ScenarioError, match=r"is_stress must be a boolean array of shape \(40,\)"):
        make_set(is_stress=np.zeros(40, dtype=int))
    with pytest.raises(ScenarioError, match="is_stress"):
        make_set(is_stress=np.zeros(39, dtype=bool))
    with pytest.raises(ScenarioError, match="metadata must be JSON-serialisable"):
        make_set(metadata={"when": object()})


def test_arrays_become_float64_without_copies_and_properties():
    losses = np.ones((6, 3))
    base = np.ones((6, 3, 2))
    s = ScenarioSet(losses=losses, premium_base=base, markets=["X", "Y"], is_stress=np.arange(6) > 3)
    assert s.losses is losses and s.premium_base is base  # already float64: no copy
    assert (s.n_scenarios, s.horizon, s.n_markets, s.n_stress) == (6, 3, 2, 2)
    assert s.markets == ("X", "Y")
    integers = ScenarioSet(losses=np.ones((2, 2), dtype=int), premium_base=np.ones((2, 2, 1)), markets=["A"])
    assert integers.losses.dtype == np.float64
    assert "n_stress=2" in repr(s)


# ---------------------------------------------------------------------------------------------
# split / subset / concat
# ---------------------------------------------------------------------------------------------


def test_split_is_disjoint_complete_and_seeded():
    s = make_set(n=101)
    # tag each scenario by its first loss (distinct with probability one)
    tags = s.losses[:, 0]
    first, second = s.split(0.3, seed=5)
    assert (first.n_scenarios, second.n_scenarios) == (30, 71)
    a, b = set(first.losses[:, 0]), set(second.losses[:, 0])
    assert a.isdisjoint(b) and a | b == set(tags)
    # rows keep their own premium bases and stress flags
    row = int(np.flatnonzero(tags == first.losses[0, 0])[0])
    np.testing.assert_array_equal(first.premium_base[0], s.premium_base[row])
    again, _ = s.split(0.3, seed=5)
    np.testing.assert_array_equal(again.losses, first.losses)
    other, _ = s.split(0.3, seed=6)
    assert not np.array_equal(other.losses, first.losses)
    tiny_first, tiny_second = make_set(n=2).split(0.01, seed=0)
    assert tiny_first.n_scenarios == 1 and tiny_second.n_scenarios == 1
    with pytest.raises(ScenarioError, match=r"fraction must be in \(0, 1\), got 1\.0"):
        s.split(1.0)
    with pytest.raises(ScenarioError, match="fewer than 2"):
        make_set(n=1).split(0.5)


def test_subset_by_indices_mask_and_slice():
    s = make_set(n=10, is_stress=np.arange(10) >= 8, metadata={"seed": 3})
    picked = s.subset([9, 0, 0])
    np.testing.assert_array_equal(picked.losses, s.losses[[9, 0, 0]])
    np.testing.assert_array_equal(picked.is_stress, [True, False, False])
    assert picked.metadata == {"seed": 3}
    np.testing.assert_array_equal(s.subset(s.is_stress).losses, s.losses[8:])
    np.testing.assert_array_equal(s.subset(slice(2, 4)).premium_base, s.premium_base[2:4])
    assert s.random_part().n_scenarios == 8 and not s.random_part().is_stress.any()
    with pytest.raises(ScenarioError, match="scenario index 10 out of range for 10 scenarios"):
        s.subset([1, 10])
    with pytest.raises(ScenarioError, match=r"boolean index must have shape \(10,\)"):
        s.subset(np.ones(3, dtype=bool))
    with pytest.raises(ScenarioError, match="integers, a boolean mask or a slice"):
        s.subset([0.5])


def test_concat_stacks_and_checks_compatibility():
    a = make_set(n=5, seed=1, metadata={"part": "random"})
    b = make_set(n=3, seed=2, is_stress=np.ones(3, dtype=bool))
    joined = ScenarioSet.concat([a, b])
    assert joined.n_scenarios == 8 and joined.n_stress == 3
    np.testing.assert_array_equal(joined.losses[5:], b.losses)
    assert joined.metadata == {"part": "random"}
    assert ScenarioSet.concat([a, b], metadata={"part": "all"}).metadata == {"part": "all"}
    with pytest.raises(ScenarioError, match=r"sets\[1\] has markets \['ETH', 'BTC'\]"):
        ScenarioSet.concat([a, make_set(markets=("ETH", "BTC"))])
    with pytest.raises(ScenarioError, match=r"sets\[1\] has horizon 4, expected 5"):
        ScenarioSet.concat([a, make_set(horizon=4)])
    with pytest.raises(ScenarioError, match="at least one"):
        ScenarioSet.concat([])


# ---------------------------------------------------------------------------------------------
# save / load
# ---------------------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path):
    s = make_set(n=25, is_stress=np.arange(25) % 7 == 0,
                 metadata={"seed": {"entropy": 2**100 + 7, "spawn_key": []}, "note": "é", "levels": [0.99]})
    path = s.save(tmp_path / "scenarios.npz")
    loaded = ScenarioSet.load(path)
    assert np.array_equal(loaded.losses, s.losses) and np.array_equal(loaded.premium_base, s.premium_base)
    assert np.array_equal(loaded.is_stress, s.is_stress)
    assert loaded.markets == s.markets and loaded.metadata == s.metadata
    assert loaded.losses.dtype == np.float64
    assert [p.name for p in tmp_path.iterdir()] == ["scenarios.npz"]  # no temporary left behind


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "scenarios.npz"
    original = make_set(seed=1)
    original.save(path)
    before = path.read_bytes()

    def fail_half_way(handle, **arrays):
        handle.write(b"PK partial")
        raise OSError("disk full")

    monkeypatch.setattr(scenarioset_module.np, "savez", fail_half_way)
    with pytest.raises(OSError, match="disk full"):
        make_set(seed=2).save(path)
    assert path.read_bytes() == before  # the old file is untouched
    assert sorted(os.listdir(tmp_path)) == ["scenarios.npz"]  # and the partial temporary is gone
    monkeypatch.undo()
    assert np.array_equal(ScenarioSet.load(path).losses, original.losses)


def test_load_rejects_other_files(tmp_path):
    with pytest.raises(ScenarioError, match="not a fundguard ScenarioSet file"):
        ScenarioSet.load(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    np.savez(junk, something=np.zeros(3))
    with pytest.raises(ScenarioError, match="not a fundguard ScenarioSet file"):
        ScenarioSet.load(junk)
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ScenarioError, match="not a fundguard ScenarioSet file"):
        ScenarioSet.load(tmp_path / "text.npz")


def test_load_rejects_unknown_format_version(tmp_path):
    path = tmp_path / "future.npz"
    np.savez(path, losses=np.zeros((1, 1)), premium_base=np.zeros((1, 1, 1)), is_stress=np.zeros(1, bool),
             header=np.array('{"format_version": 99, "markets": ["A"], "metadata": {}}'))
    with pytest.raises(ScenarioError, match="unsupported format_version 99"):
        ScenarioSet.load(path)


def test_a_scenario_set_is_a_store_of_one_chunk():
    from fundguard.models import ScenarioStore

    rng = np.random.default_rng(5)
    losses, base = rng.uniform(0, 1, (6, 3)), rng.uniform(0, 1, (6, 3, 2))
    stress = np.array([False, True, False, False, True, False])
    s = ScenarioSet(losses=losses, premium_base=base, markets=("A", "B"), is_stress=stress)
    assert isinstance(s, ScenarioStore) and not s.distributed
    assert (s.n_random, s.n_stress, s.n_scenarios) == (4, 2, 6)
    [(rows, start)] = s.map(lambda chunk, start, scale: (chunk.losses * scale, start), 2.0)
    assert start == 0
    np.testing.assert_array_equal(rows, 2.0 * losses[~stress])
    np.testing.assert_array_equal(s.stress_part().losses, losses[stress])
    plain = ScenarioSet(losses=losses, premium_base=base, markets=("A", "B"))
    assert plain.stress_part() is None and plain.map(lambda chunk, start: chunk) == [plain]
    only_stress = ScenarioSet(losses=losses, premium_base=base, markets=("A", "B"), is_stress=np.ones(6, dtype=bool))
    assert only_stress.n_random == 0 and only_stress.map(lambda chunk, start: 1) == []
