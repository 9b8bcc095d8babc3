"""The seam between the halves: fund losses and premium bases per scenario and period.

``ScenarioSet`` is all the optimizer knows of the world. ``build_scenarios`` makes one from
simulated return paths and a venue book, but a user may build one from their own loss engine.
Besides the pooled losses and the premium bases it may carry per-market figures for what comes
after the fund (loss allocation, sensitivities): the losses by market, the notional liquidated
and the winners' profit (:data:`PER_MARKET_FIELDS`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ScenarioError

__all__ = ["ScenarioSet", "split_positions", "PER_MARKET_FIELDS", "RULE_ROWS", "STORE_DTYPES", "store_dtype"]

_FORMAT_VERSION = 1

#: The optional (N, T, J) fields of a ScenarioSet, in the order they are stored and shown.
PER_MARKET_FIELDS = ("losses_by_market", "liquidated", "winners")

# Losses and their per-market sum agree within this relative tolerance: the sum of J
# non-negative floats in another order differs by at most about J ulps (J * 1.1e-16 relative),
# so 1e-9 only rejects sets whose two figures were computed from different numbers.
_SUM_RTOL = 1e-9
#: Metadata key marking a ruin rule's rows (``fundguard.optimizer.ruin.rows``): cumulative rows laid
#: out as increments that may be negative, so only finiteness is checked.
RULE_ROWS = "ruin_rows"
#: How a ScenarioSet may store its arrays (``ScenarioSet.dtype``).
STORE_DTYPES = ("float64", "float32")
_FLOAT_FIELDS = ("losses", "premium_base", *PER_MARKET_FIELDS)


@dataclass(frozen=True, eq=False)
class ScenarioSet:
    """Losses the insurance fund pays and the bases premiums are charged on.

    Parameters
    ----------
    losses : (N, T) array of float64, currency units, >= 0
        ``losses[s, t]``: bankrupt-account shortfall the fund pays in period ``t`` of scenario ``s``.
        Real numbers only (integer or floating dtype): object, ragged, complex, boolean or text
        input is rejected, not converted.
    premium_base : (N, T, J) array of float64, currency units, >= 0
        ``premium_base[s, t, j]``: the amount premium rate ``p_j`` (a fraction) is charged on in
        period ``t``, so the fund earns ``sum_j p_j * premium_base[s, t, j]`` that period.
    markets : sequence of J str
        Market names, in the order of the last axis of ``premium_base``.
    is_stress : (N,) array of bool, optional
        True for deterministic stress scenarios (historical replays, hypothetical shocks) that
        must be kept apart from the random ones when estimating probabilities. Default all False.
    metadata : mapping, optional
        JSON-serialisable description of how the set was made (model, seed, units, ...).
    losses_by_market : (N, T, J) array of float64, currency units, >= 0, optional
        ``losses_by_market[s, t, j]``: the part of ``losses[s, t]`` that market ``j``'s
        liquidations cost the fund; when given, ``losses`` must equal its sum over markets
        (within a relative 1e-9). Default None: only the pooled losses are known (a set built
        from a loss engine that does not split them).
    liquidated : (N, T, J) array of float64, currency units, >= 0, optional
        Notional liquidated in market ``j`` in period ``t`` (both sides). Default None.
    winners : (N, T, J) array of float64, currency units, >= 0, optional
        Mark-to-market profit in market ``j`` of the side the period's move favoured (the
        shorts on a fall, the longs on a rise): what auto-deleveraging could take from after
        the fund. Default None.
    dtype : {"float64", "float32"}, default "float64"
        How the arrays are stored. "float32" (opt-in) halves the memory and the bytes every pass
        reads; every sum over periods, scenarios and markets is still taken in float64 (the fund
        equation reads float32 figures, it does not compute in float32), so a fund target moves
        by the rounding of the inputs only, about 1e-7 relative (tested below 1e-5; measured in
        ``python -m benchmarks.scaling``). Losses and their per-market sum then agree within
        ``4 J`` float32 ulps instead of 1e-9.

    Notes
    -----
    The fund in scenario s after period t is
    ``F[s, t] = F0 + sum_{u <= t} (sum_j p_j * B[s, u, j] - L[s, u])``; see docs/design.md.
    Arrays are stored as float64 (or float32, ``dtype``) without copying when they already are.
    A ScenarioSet is a :class:`~fundguard.models.ScenarioStore` of one in-memory chunk
    (:meth:`map`, :meth:`stress_part`, ``n_random``, ``distributed`` False).
    Every entry must be finite and >= 0 (but for a ruin rule's rows, marked by the metadata key
    ``RULE_ROWS``: ``fundguard.optimizer.ruin.rows``), and so must every scenario's total over the horizon
    and the total over all scenarios (losses near 1e308 whose sums overflow would otherwise
    make an infinite fund target).

    Memory (:attr:`nbytes`, float64; half with ``dtype="float32"``): ``8 N T (J + 1)`` bytes for losses and premium bases, plus
    ``8 N T J`` for each per-market field given (``8 N T (4 J + 1)`` with all three: 3.1 kB per
    scenario at T = 30, J = 3), plus N bytes of stress flags. Every operation (:meth:`subset`,
    :meth:`split`, :meth:`concat`, :meth:`stress_part`, :meth:`random_part`, :meth:`save` /
    :meth:`load`, pickling) carries the per-market fields given, row for row.
    """

    losses: np.ndarray
    premium_base: np.ndarray
    markets: tuple[str, ...]
    is_stress: np.ndarray | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    losses_by_market: np.ndarray | None = None
    liquidated: np.ndarray | None = None
    winners: np.ndarray | None = None
    dtype: str = "float64"

    def __post_init__(self) -> None:
        dtype = store_dtype(self.dtype)
        object.__setattr__(self, "dtype", dtype)
        losses = _real_array("losses", self.losses, dtype)
        base = _real_array("premium_base", self.premium_base, dtype)
        markets = _validate_markets(self.markets)
        if losses.ndim != 2:
            raise ScenarioError(f"losses must be a 2-d (N, T) array, got shape {losses.shape}")
        n, t = losses.shape
        if n < 1 or t < 1:
            raise ScenarioError(f"losses must have at least one scenario and one period, got shape {losses.shape}")
        if base.shape != (n, t, len(markets)):
            raise ScenarioError(
                f"premium_base must have shape (N, T, J) = {(n, t, len(markets))} "
                f"to match losses {losses.shape} and {len(markets)} markets, got {base.shape}"
            )
        per_market = {}
        for name in PER_MARKET_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            array = _real_array(name, value, dtype)
            if array.shape != base.shape:
                raise ScenarioError(
                    f"{name} must have shape (N, T, J) = {base.shape} to match losses {losses.shape} and "
                    f"{len(markets)} markets, got {array.shape}")
            per_market[name] = array
        # the per-market figures first: a bad entry there is named with its market, and it is
        # the cause of the same bad entry in the pooled losses
        if isinstance(self.metadata, Mapping) and RULE_ROWS in self.metadata:
            # a ruin rule's rows (fundguard.optimizer.ruin.rows): laid out from a checked set, their
            # increments may be negative; only finiteness is checked
            for name, array in (*per_market.items(), ("losses", losses), ("premium_base", base)):
                if not np.all(np.isfinite(array)):
                    raise ScenarioError(f"{name} of a ruin rule's rows must be finite")
        else:
            for name, array in per_market.items():
                _check_finite_nonnegative(name, array, markets)
            _check_finite_nonnegative("losses", losses)
            _check_finite_nonnegative("premium_base", base, markets)
            if "losses_by_market" in per_market:
                _check_pooled_sum(losses, per_market["losses_by_market"], markets)
        if self.is_stress is None:
            stress = np.zeros(n, dtype=bool)
        else:
            try:
                stress = np.asarray(self.is_stress)
            except ValueError:  # ragged
                raise ScenarioError(f"is_stress must be a boolean array of shape ({n},), got a ragged sequence") from None
            if stress.shape != (n,) or stress.dtype != bool:
                raise ScenarioError(f"is_stress must be a boolean array of shape ({n},), got {stress.dtype} {stress.shape}")
        try:
            metadata = json.loads(json.dumps(dict(self.metadata)))
        except (TypeError, ValueError) as exc:
            raise ScenarioError(f"metadata must be JSON-serialisable: {exc}") from None
        object.__setattr__(self, "losses", losses)
        object.__setattr__(self, "premium_base", base)
        object.__setattr__(self, "markets", markets)
        object.__setattr__(self, "is_stress", stress)
        object.__setattr__(self, "metadata", metadata)
        for name, array in per_market.items():
            object.__setattr__(self, name, array)

    @property
    def n_scenarios(self) -> int:
        """N, the number of scenarios (random and stress)."""
        return self.losses.shape[0]

    @property
    def horizon(self) -> int:
        """T, the number of periods."""
        return self.losses.shape[1]

    @property
    def n_markets(self) -> int:
        """J, the number of markets (premium rates)."""
        return len(self.markets)

    @property
    def n_stress(self) -> int:
        """How many scenarios are flagged as stress scenarios."""
        return int(self.is_stress.sum())

    @property
    def n_random(self) -> int:
        """How many scenarios are random (not stress): the ones probabilities are estimated on."""
        return self.n_scenarios - self.n_stress

    @property
    def per_market_fields(self) -> tuple[str, ...]:
        """The per-market fields this set carries (those of :data:`PER_MARKET_FIELDS` not None), in that order."""
        return tuple(name for name in PER_MARKET_FIELDS if getattr(self, name) is not None)

    @property
    def nbytes(self) -> int:
        """Bytes held by the set's arrays: ``8 N T (J + 1 + J k) + N`` with k per-market fields."""
        arrays = [self.losses, self.premium_base, self.is_stress] + [getattr(self, n) for n in self.per_market_fields]
        return sum(int(a.nbytes) for a in arrays)

    @property
    def distributed(self) -> bool:
        """False: every scenario is in this process's memory (see :class:`~fundguard.models.ScenarioStore`)."""
        return False

    def map(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Any]:
        """``[function(self.random_part(), 0, *args, **kwargs)]``: a pass over the random scenarios.

        The in-memory form of :meth:`ScenarioStore.map <fundguard.models.ScenarioStore.map>`:
        one chunk, starting at row 0, called in this thread; ``[]`` when every scenario is a
        stress scenario.
        """
        if self.n_random == 0:
            return []
        return [function(self.random_part(), 0, *args, **kwargs)]

    def stress_part(self) -> ScenarioSet | None:
        """The stress scenarios (``is_stress`` True), or None when there are none."""
        return self.subset(self.is_stress) if self.n_stress else None

    def __repr__(self) -> str:
        return (
            f"ScenarioSet(n_scenarios={self.n_scenarios}, horizon={self.horizon}, "
            f"markets={list(self.markets)}, n_stress={self.n_stress}"
            + (f", per_market={list(self.per_market_fields)})" if self.per_market_fields else ")")
        )

    def subset(self, index: np.ndarray | Sequence[int] | slice) -> ScenarioSet:
        """The scenarios selected by ``index`` (integer indices, boolean mask or slice), in that order."""
        if isinstance(index, slice):
            idx: Any = index
        else:
            idx = np.asarray(index)
            if idx.dtype == bool:
                if idx.shape != (self.n_scenarios,):
                    raise ScenarioError(f"boolean index must have shape ({self.n_scenarios},), got {idx.shape}")
            elif idx.dtype.kind in "iu":
                bad = (idx < -self.n_scenarios) | (idx >= self.n_scenarios)
                if bad.any():
                    raise ScenarioError(
                        f"scenario index {int(idx[bad][0])} out of range for {self.n_scenarios} scenarios"
                    )
            else:
                raise ScenarioError(f"index must be integers, a boolean mask or a slice, got dtype {idx.dtype}")
        # rows of a checked set are checked: no second validation pass
        return _checked_already(self, losses=self.losses[idx], premium_base=self.premium_base[idx],
                                is_stress=self.is_stress[idx],
                                **{name: getattr(self, name)[idx] for name in self.per_market_fields})

    def scale_markets(self, factors: np.ndarray | Sequence[float], *, fund_only: bool = False,
                      pooled: bool = False) -> ScenarioSet:
        """Every market's figures times its factor (J,), finite and >= 0: premium base, losses by
        market (the pooled losses their sum) and, unless ``fund_only``, the liquidated notional and
        the winners (dropped when ``fund_only``). What participation's scaled book is
        (``fundguard.optimizer.participation``); built without a second validation pass, the
        factors being checked here.

        Without ``losses_by_market`` the factors must all be equal (the pooled losses scale by it).
        ``pooled``: the pooled losses and the premium base only (no per-market field): all a
        method at fixed rates reads, in about half the bytes of ``fund_only``. A float32 set is
        scaled in float32 (no float64 copy of it is made).
        """
        f = np.asarray(factors, dtype=np.float64)
        if f.shape != (self.n_markets,) or not np.all(np.isfinite(f)) or np.any(f < 0.0):
            raise ScenarioError(f"factors must be {self.n_markets} finite numbers >= 0, got {factors!r}")
        by_market = self.losses_by_market
        # products in the store's dtype: a float32 set's figures times float32 factors, no float64 temporaries
        stored = f.astype(self.dtype)
        if by_market is None:
            if not np.all(f == f[0]):
                raise ScenarioError("scaling the markets by different factors needs each market's losses "
                                    "(ScenarioSet.losses_by_market)")
            losses, scaled_by_market = self.losses * stored[0], None
        else:
            scaled_by_market = None if pooled else by_market * stored
            # (N, T, J) @ (J,): a BLAS pass, 8x faster than summing the scaled copy over its short last axis
            losses = by_market @ f
        fields: dict[str, Any] = {"losses_by_market": scaled_by_market, "liquidated": None, "winners": None}
        if not fund_only and not pooled:
            for name in ("liquidated", "winners"):
                if getattr(self, name) is not None:
                    fields[name] = getattr(self, name) * stored
        return _checked_already(self, losses=losses, premium_base=self.premium_base * stored, is_stress=self.is_stress,
                                **fields)

    def astype(self, dtype: str | np.dtype) -> ScenarioSet:
        """The same set stored as ``dtype`` ("float64" or "float32"; itself when it already is).

        float32 rounds every figure to about 7 significant digits (module notes, ``dtype``)."""
        dtype = store_dtype(dtype)
        if dtype == self.dtype:
            return self
        return _checked_already(_with_dtype(self, dtype), losses=self.losses, premium_base=self.premium_base,
                                is_stress=self.is_stress,
                                **{name: getattr(self, name) for name in self.per_market_fields})

    def random_part(self) -> ScenarioSet:
        """Only the random (non-stress) scenarios, the ones probabilities are estimated on.

        A view, not a copy, when the stress scenarios come last (as :meth:`concat` of random and
        stress sets leaves them): the random part is then the leading rows."""
        if not self.n_stress:
            return self
        n_random = self.n_scenarios - self.n_stress
        if not self.is_stress[:n_random].any():
            return self.subset(slice(0, n_random))
        return self.subset(~self.is_stress)

    def split(self, fraction: float, seed: int | np.random.SeedSequence | None = None) -> tuple[ScenarioSet, ScenarioSet]:
        """Randomly partition the scenarios into two disjoint sets.

        Parameters
        ----------
        fraction : float in (0, 1)
            Share of scenarios in the first set (rounded to the nearest integer, at least one in each).
        seed : int or SeedSequence, optional
            Seed of the permutation; the same seed gives the same split.

        Returns
        -------
        (first, second) : two ScenarioSets whose scenarios are disjoint and together are all of self.
        Scenarios are i.i.d. draws, so each part is an independent sample of the same model.
        """
        first, second = split_positions(self.n_scenarios, fraction, seed)
        return self.subset(first), self.subset(second)

    @staticmethod
    def concat(sets: Sequence[ScenarioSet], metadata: Mapping[str, Any] | None = None) -> ScenarioSet:
        """Stack scenario sets with the same horizon and markets along the scenario axis.

        The metadata and the ``dtype`` of the first set are kept unless ``metadata`` is given. A per-market field
        (``losses_by_market``, ``liquidated``, ``winners``) is stacked when every set has it and
        is None otherwise (a set built from pooled losses only knows no split to stack).
        """
        sets = list(sets)
        if not sets:
            raise ScenarioError("concat needs at least one ScenarioSet")
        first = sets[0]
        for i, other in enumerate(sets[1:], start=1):
            if other.markets != first.markets:
                raise ScenarioError(f"sets[{i}] has markets {list(other.markets)}, expected {list(first.markets)}")
            if other.horizon != first.horizon:
                raise ScenarioError(f"sets[{i}] has horizon {other.horizon}, expected {first.horizon}")
        for i, other in enumerate(sets):
            if not isinstance(other, ScenarioSet):
                raise ScenarioError(f"sets[{i}] is a {type(other).__name__}, not a ScenarioSet")
        # every part is checked, and so is their stack: no second validation pass (each part was
        # checked at its own dtype's tolerance, which a float64 re-check of float32 rows would not be)
        like = _with_dtype(first, first.dtype)
        if metadata is not None:
            object.__setattr__(like, "metadata", dict(metadata))
        return _checked_already(
            like,
            losses=np.concatenate([s.losses for s in sets], dtype=first.dtype),
            premium_base=np.concatenate([s.premium_base for s in sets], dtype=first.dtype),
            is_stress=np.concatenate([s.is_stress for s in sets]),
            **{name: np.concatenate([getattr(s, name) for s in sets], dtype=first.dtype) for name in PER_MARKET_FIELDS
               if all(getattr(s, name) is not None for s in sets)},
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the set to ``path`` as an uncompressed ``.npz``, atomically (temporary file + rename).

        The per-market fields given are stored under their own names (a reader of the same
        format version that does not know them ignores them).
        """
        path = Path(path)
        header = {"format_version": _FORMAT_VERSION, "markets": list(self.markets), "metadata": self.metadata}
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(
                    handle,
                    losses=self.losses,
                    premium_base=self.premium_base,
                    is_stress=self.is_stress,
                    header=np.array(json.dumps(header)),
                    **{name: getattr(self, name) for name in self.per_market_fields},
                )
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ScenarioSet:
        """Read a set written by :meth:`save`."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                arrays = {k: data[k] for k in ("losses", "premium_base", "is_stress")}
                arrays.update({k: data[k] for k in PER_MARKET_FIELDS if k in data.files})
        except (OSError, KeyError, ValueError) as exc:
            raise ScenarioError(f"{path}: not a fundguard ScenarioSet file ({exc})") from None
        if header.get("format_version") != _FORMAT_VERSION:
            raise ScenarioError(f"{path}: unsupported format_version {header.get('format_version')!r}")
        dtype = "float32" if arrays["losses"].dtype == np.float32 else "float64"
        return cls(markets=tuple(header["markets"]), metadata=header["metadata"], dtype=dtype, **arrays)


def _validate_markets(markets: Sequence[str]) -> tuple[str, ...]:
    if isinstance(markets, str):
        raise ScenarioError(f"markets must be a sequence of names, got the string {markets!r}")
    names = tuple(markets)
    if not names:
        raise ScenarioError("markets must name at least one market")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise ScenarioError(f"markets[{i}] must be a non-empty string, got {name!r}")
    if len(set(names)) != len(names):
        raise ScenarioError(f"market names must be unique, got {list(names)}")
    return names


def store_dtype(value: Any) -> str:
    """``"float64"`` or ``"float32"`` from a name or a numpy dtype, else one ScenarioError line."""
    try:
        name = np.dtype(value).name
    except TypeError:
        name = None
    if name not in STORE_DTYPES:
        raise ScenarioError(f"dtype must be one of {list(STORE_DTYPES)}, got {value!r}")
    return name


def _real_array(name: str, value: Any, dtype: str = "float64") -> np.ndarray:
    """``value`` as ``dtype`` (no copy when it already is), or ScenarioError if it is not an array of real numbers.

    ``np.asarray(value, dtype=float64)`` would silently drop the imaginary part of complex
    input, parse strings and turn ``None`` into NaN; ragged input raises a bare ValueError.
    """
    try:
        array = np.asarray(value)
    except ValueError:  # ragged nested sequences
        raise ScenarioError(
            f"{name} must be a rectangular array of real numbers, got a ragged sequence (rows of different lengths)"
        ) from None
    kind = array.dtype.kind
    if kind in "iuf":
        return np.asarray(array, dtype=dtype)
    if kind == "c":
        raise ScenarioError(
            f"{name} must be real numbers, got complex dtype {array.dtype} (the imaginary part would be dropped)")
    if kind == "O":
        for where, item in np.ndenumerate(array):
            if isinstance(item, bool) or not isinstance(item, Real):
                raise ScenarioError(f"{name} must be real numbers, got {type(item).__name__} {item!r} at {name}{list(where)}")
        # every entry a real number (a pandas object column of floats, Decimals): converting loses nothing
        return np.asarray(array, dtype=dtype)
    raise ScenarioError(f"{name} must be an array of real numbers, got dtype {array.dtype}")


def _checked_already(like: ScenarioSet, **arrays: Any) -> ScenarioSet:
    """A ScenarioSet of arrays derived from the checked set ``like`` (its rows, or its figures times
    non-negative finite factors), with ``like``'s markets and metadata, built without re-checking."""
    out = object.__new__(ScenarioSet)
    values = {"markets": like.markets, "metadata": like.metadata, "losses_by_market": None, "liquidated": None,
              "winners": None, **arrays}
    for name, value in values.items():
        if name in _FLOAT_FIELDS and value is not None:
            value = np.asarray(value, dtype=like.dtype)  # a float64 product of a float32 set is stored back
        object.__setattr__(out, name, value)
    object.__setattr__(out, "dtype", like.dtype)
    return out


def _with_dtype(like: ScenarioSet, dtype: str) -> ScenarioSet:
    """A shell with ``like``'s markets and metadata and ``dtype``, for :func:`_checked_already`."""
    shell = object.__new__(ScenarioSet)
    object.__setattr__(shell, "markets", like.markets)
    object.__setattr__(shell, "metadata", like.metadata)
    object.__setattr__(shell, "dtype", dtype)
    return shell


def _check_pooled_sum(losses: np.ndarray, by_market: np.ndarray, markets: tuple[str, ...]) -> None:
    """ScenarioError unless ``losses`` equals ``by_market`` summed over markets within ``_SUM_RTOL``."""
    total = by_market.sum(axis=-1, dtype=np.float64)
    # both >= 0 and finite (checked before), so max(losses, total) bounds the rounding of either;
    # float32 figures each carry half an ulp: J of them summed, 4 J ulps is ample
    rtol = max(_SUM_RTOL, 4 * by_market.shape[-1] * float(np.finfo(by_market.dtype).eps))
    apart = np.abs(losses - total) > rtol * np.maximum(losses, total)
    if apart.any():
        s, t = (int(i) for i in np.argwhere(apart)[0])
        split = ", ".join(f"{m} {float(v)!r}" for m, v in zip(markets, by_market[s, t]))
        raise ScenarioError(
            f"losses must equal losses_by_market summed over markets (within a relative {rtol:g}); "
            f"losses[{s}, {t}] = {float(losses[s, t])!r} but losses_by_market[{s}, {t}] sums to "
            f"{float(total[s, t])!r} ({split})")


def _check_finite_nonnegative(name: str, array: np.ndarray, markets: tuple[str, ...] = ()) -> None:
    # Two passes: min, then the sum (finite iff every entry is finite and no total overflows,
    # the entries being >= 0); locate the culprit only on failure.
    if not array.size:
        return
    low = array.min()
    with np.errstate(over="ignore", invalid="ignore"):
        total = array.sum()
    if np.isfinite(low) and low >= 0.0 and np.isfinite(total):
        return
    bad = ~np.isfinite(array) | (array < 0)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        market = f" (market {markets[where[2]]!r})" if array.ndim == 3 and markets else ""
        raise ScenarioError(f"{name} must be finite and >= 0; {name}{list(where)} = {float(array[where])!r}{market}")
    with np.errstate(over="ignore"):
        per_scenario = array.reshape(array.shape[0], -1).sum(axis=1)
    overflowing = np.flatnonzero(~np.isfinite(per_scenario))
    if overflowing.size:
        s = int(overflowing[0])
        raise ScenarioError(
            f"{name} of scenario {s} sum to inf over the horizon (largest entry {float(array[s].max())!r}): the fund "
            "equation would overflow; express the amounts in a larger currency unit")
    raise ScenarioError(
        f"{name} sum to inf over all {array.shape[0]} scenarios (largest entry {float(array.max())!r}): means over "
        "the scenarios would overflow; express the amounts in a larger currency unit")


def split_positions(
    n: int, fraction: float, seed: int | np.random.SeedSequence | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The positions of :meth:`ScenarioSet.split`'s two parts among ``n`` scenarios, sorted.

    The split depends only on ``n``, ``fraction`` and ``seed``, so a caller can partition
    positions without copying a set: ``set.split(f, seed)`` is
    ``(set.subset(first), set.subset(second))`` with ``first, second = split_positions(set.n_scenarios, f, seed)``.
    """
    if not 0.0 < fraction < 1.0:
        raise ScenarioError(f"fraction must be in (0, 1), got {fraction!r}")
    if n < 2:
        raise ScenarioError("cannot split a ScenarioSet with fewer than 2 scenarios")
    k = min(max(int(round(fraction * n)), 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:k]), np.sort(order[k:])

