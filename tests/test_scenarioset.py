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


# ---------------------------------------------------------------------------------------------
# Per-market fields (issue 15): losses_by_market, liquidated, winners
# ---------------------------------------------------------------------------------------------


def make_full_set(n: int = 12, horizon: int = 4, markets=("BTC", "ETH", "SOL"), seed: int = 7, **kw) -> ScenarioSet:
    """A set with all three per-market fields; every row tagged by its own numbers."""
    rng = np.random.default_rng(seed)
    shape = (n, horizon, len(markets))
    by_market = rng.exponential(1e6, size=shape) * (rng.random(shape) < 0.5)
    return ScenarioSet(
        losses=by_market.sum(axis=-1),
        premium_base=rng.exponential(1e8, size=shape),
        markets=markets,
        losses_by_market=by_market,
        liquidated=rng.exponential(1e7, size=shape),
        winners=rng.exponential(1e7, size=shape),
        **kw,
    )


def _same_rows(part: ScenarioSet, whole: ScenarioSet, rows) -> None:
    for name in ("losses", "premium_base", "is_stress", "losses_by_market", "liquidated", "winners"):
        np.testing.assert_array_equal(getattr(part, name), getattr(whole, name)[rows], err_msg=name)


def test_per_market_fields_are_optional_and_stored_without_copies():
    plain = make_set()
    assert plain.losses_by_market is None and plain.liquidated is None and plain.winners is None
    assert plain.per_market_fields == ()
    # 40 scenarios x 5 periods: losses 8 * 200, premium bases 8 * 400, stress flags 40
    assert plain.nbytes == 8 * 200 + 8 * 400 + 40
    full = make_full_set()
    assert full.per_market_fields == ("losses_by_market", "liquidated", "winners")
    # 12 x 4 x 3: 8 N T (4 J + 1) + N bytes
    assert full.nbytes == 8 * 12 * 4 * 13 + 12
    by_market = full.losses_by_market
    again = ScenarioSet(losses=full.losses, premium_base=full.premium_base, markets=full.markets,
                        losses_by_market=by_market)
    assert again.losses_by_market is by_market and again.per_market_fields == ("losses_by_market",)
    integers = ScenarioSet(losses=np.full((2, 1), 3), premium_base=np.ones((2, 1, 2)), markets=("A", "B"),
                           losses_by_market=np.array([[[1, 2]], [[3, 0]]]), winners=np.zeros((2, 1, 2), dtype=int))
    assert integers.losses_by_market.dtype == np.float64 and integers.winners.dtype == np.float64
    assert "per_market=['losses_by_market', 'liquidated', 'winners']" in repr(full)
    assert "per_market" not in repr(plain)


def test_losses_must_be_the_sum_of_losses_by_market():
    full = make_full_set()
    # the pooled losses may differ from the sum in another order by rounding: 1e-12 relative passes
    ScenarioSet(losses=full.losses * (1 + 1e-12), premium_base=full.premium_base, markets=full.markets,
                losses_by_market=full.losses_by_market)
    rows, periods = np.nonzero(full.losses)
    s, t = int(rows[0]), int(periods[0])
    off = full.losses.copy()
    off[s, t] *= 1 + 1e-8  # beyond 1e-9
    with pytest.raises(ScenarioError, match=rf"losses must equal losses_by_market summed over markets \(within a "
                                            rf"relative 1e-09\); losses\[{s}, {t}\] = .* sums to .*\(BTC "):
        ScenarioSet(losses=off, premium_base=full.premium_base, markets=full.markets,
                    losses_by_market=full.losses_by_market)
    # a loss with no market to come from
    zero = np.zeros_like(full.losses_by_market)
    with pytest.raises(ScenarioError, match=r"losses\[0, 0\] = 1\.0 but losses_by_market\[0, 0\] sums to 0\.0"):
        ScenarioSet(losses=np.ones(full.losses.shape), premium_base=full.premium_base, markets=full.markets,
                    losses_by_market=zero)


@pytest.mark.parametrize("name", ["losses_by_market", "liquidated", "winners"])
def test_per_market_fields_are_validated_naming_field_index_and_market(name):
    full = make_full_set()
    fields = {n: getattr(full, n) for n in ("losses_by_market", "liquidated", "winners")}

    def build(value):
        return ScenarioSet(losses=full.losses, premium_base=full.premium_base, markets=full.markets,
                           **{**fields, name: value})

    with pytest.raises(ScenarioError, match=rf"{name} must have shape \(N, T, J\) = \(12, 4, 3\) .* got \(12, 4, 2\)"):
        build(fields[name][:, :, :2])
    for bad, shown in ((-2.5, r"-2\.5"), (np.nan, "nan"), (np.inf, "inf")):
        value = fields[name].copy()
        value[5, 3, 2] = bad
        with pytest.raises(ScenarioError, match=rf"{name} must be finite and >= 0; {name}\[5, 3, 2\] = {shown} "
                                                r"\(market 'SOL'\)"):
            build(value)
    with pytest.raises(ScenarioError, match=f"{name} must be real numbers, got complex"):
        build(fields[name] + 0j)
    with pytest.raises(ScenarioError, match=f"{name} must be an array of real numbers, got dtype <U"):
        build(fields[name].astype(str))


def test_per_market_fields_survive_subset_split_and_the_stress_part():
    stress = np.arange(12) % 5 == 0
    full = make_full_set(is_stress=stress)
    _same_rows(full.subset([11, 0, 3, 3]), full, [11, 0, 3, 3])
    _same_rows(full.subset(slice(2, 9)), full, slice(2, 9))
    _same_rows(full.subset(stress), full, stress)
    _same_rows(full.stress_part(), full, stress)
    _same_rows(full.random_part(), full, ~stress)
    [(chunk, start)] = full.map(lambda chunk, start: (chunk, start))
    assert start == 0
    _same_rows(chunk, full, ~stress)
    first, second = full.split(0.25, seed=3)
    a, b = scenarioset_module.split_positions(12, 0.25, seed=3)
    _same_rows(first, full, a)
    _same_rows(second, full, b)


def test_concat_stacks_per_market_fields_only_when_every_set_has_them():
    a, b = make_full_set(n=5, seed=1), make_full_set(n=3, seed=2, is_stress=np.ones(3, dtype=bool))
    joined = ScenarioSet.concat([a, b])
    for name in ("losses_by_market", "liquidated", "winners"):
        np.testing.assert_array_equal(getattr(joined, name), np.concatenate([getattr(a, name), getattr(b, name)]))
    # a set from pooled losses only has no split to stack: the joined set has none either
    pooled = ScenarioSet(losses=b.losses, premium_base=b.premium_base, markets=b.markets,
                         losses_by_market=b.losses_by_market)
    mixed = ScenarioSet.concat([a, pooled])
    assert mixed.per_market_fields == ("losses_by_market",)
    np.testing.assert_array_equal(mixed.losses_by_market[5:], b.losses_by_market)
    bare = ScenarioSet(losses=b.losses, premium_base=b.premium_base, markets=b.markets)
    assert ScenarioSet.concat([a, bare]).per_market_fields == ()


def test_per_market_fields_survive_save_load_and_pickle(tmp_path):
    import pickle

    full = make_full_set(is_stress=np.arange(12) == 4, metadata={"seed": 7})
    loaded = ScenarioSet.load(full.save(tmp_path / "full.npz"))
    _same_rows(loaded, full, slice(None))
    assert loaded.per_market_fields == full.per_market_fields and loaded.metadata == {"seed": 7}
    # a file written without them (a pooled-only set, or an older version) loads without them
    plain = ScenarioSet.load(make_set().save(tmp_path / "plain.npz"))
    assert plain.per_market_fields == ()
    partial = ScenarioSet(losses=full.losses, premium_base=full.premium_base, markets=full.markets,
                          winners=full.winners)
    assert ScenarioSet.load(partial.save(tmp_path / "partial.npz")).per_market_fields == ("winners",)
    pickled = pickle.loads(pickle.dumps(full))
    _same_rows(pickled, full, slice(None))
    assert pickled.per_market_fields == full.per_market_fields


def test_scale_markets_and_subset_equal_a_checked_construction():
    """The unchecked builds (rows of a checked set, its figures times factors >= 0) give exactly
    what the checked constructor gives on the same arrays, and bad factors are refused."""
    rng = np.random.default_rng(3)
    by_market = rng.exponential(1.0, (40, 5, 3))
    s = ScenarioSet(by_market.sum(axis=2), rng.exponential(2.0, (40, 5, 3)), ("A", "B", "C"),
                    is_stress=np.arange(40) < 2, metadata={"k": 1}, losses_by_market=by_market,
                    liquidated=rng.exponential(3.0, (40, 5, 3)), winners=rng.exponential(4.0, (40, 5, 3)))
    f = np.array([0.5, 1.0, 0.0])
    scaled = s.scale_markets(f)
    checked = ScenarioSet((by_market * f).sum(axis=2), s.premium_base * f, s.markets, is_stress=s.is_stress,
                          metadata=s.metadata, losses_by_market=by_market * f, liquidated=s.liquidated * f,
                          winners=s.winners * f)
    for name in ("losses", "premium_base", "losses_by_market", "liquidated", "winners", "is_stress"):
        assert np.array_equal(getattr(scaled, name), getattr(checked, name)), name
    assert scaled.markets == checked.markets and scaled.metadata == checked.metadata
    fund = s.scale_markets(f, fund_only=True)
    assert fund.liquidated is None and fund.winners is None and np.array_equal(fund.losses, checked.losses)
    part = s.subset(np.array([3, 1, 7]))
    assert np.array_equal(part.winners, s.winners[[3, 1, 7]]) and part.n_stress == 1
    for bad in ([1.0, -0.1, 1.0], [1.0, np.nan, 1.0], [1.0, 2.0]):
        with pytest.raises(ScenarioError, match="factors must be 3 finite numbers >= 0"):
            s.scale_markets(bad)
    pooled_only = ScenarioSet(s.losses, s.premium_base, s.markets)
    with pytest.raises(ScenarioError, match="needs each market's losses"):
        pooled_only.scale_markets(f)
    assert np.array_equal(pooled_only.scale_markets(np.full(3, 0.5)).losses, s.losses * 0.5)
