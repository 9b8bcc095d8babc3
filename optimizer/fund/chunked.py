"""The passes over a chunked scenario set: corner and tail passes, the tail FundModel, ruin counts.

A :class:`~fundguard.models.chunked.ChunkedScenarioSet` keeps its scenarios in chunks on Dask
workers. Every pass over the scenarios here is a map over the chunks (run where they live) and a
small reduce on the client: rates and thresholds (1 + J numbers) go out, per-chunk summaries come
back, and once per solve the scenarios that can bind anywhere in the rate box (the tail, a few
times alpha N; see below) come back too. The full set is never gathered.
:mod:`..distributed` solves on the tail built here (methods "cvar" and "exact"), and
:func:`~fundguard.optimizer.certify` and :func:`~fundguard.optimizer.ruin_probability` count
ruins here when given a ChunkedScenarioSet; nothing in this module imports dask.

How a solve runs (the same iterates as in memory)
-------------------------------------------------
The in-memory engines (:class:`~.fast.CvarCuttingPlane`, :class:`~.fast.ExactBranchAndBound`,
the cvxpy reference) only ever read the scenarios through a :class:`~.fund.FundModel`: each
scenario's required fund at both corners of the rate box (``highest``, ``lowest``), order
statistics of those, and the cumulated rows of the few scenarios that screening keeps. For a
level ``alpha`` with ``k = floor(alpha N)`` every quantity they use is an order statistic of rank
at most ``k + 1`` (the VaR floor, the ``(k+1)``-th largest, the top ``k`` of a sample CVaR) or
concerns scenarios above one of them. Since ``R_s(p)`` is non-increasing in every rate,
``lowest_s <= R_s(p) <= highest_s`` (exactly, in floating point: the sums only grow), so every
such scenario has ``highest_s >= L0``, ``L0`` the ``(k+1)``-th largest ``lowest``. Hence:

1. **corner pass** (map): per chunk, ``highest``/``lowest`` by the in-memory code (so the same
   bits per row), the premium-base total of every 1024-scenario block (the mean premium base,
   summed block by block in a fixed order: the same bits whatever the chunking), ``max |highest|``
   and a sketch of the chunk's top ``k + 1`` ``lowest`` values (1,024 of them at known ranks);
   the client derives from the sketches a value ``T0 <= L0`` (a certain lower bound: at least
   ``k + 1`` values are ``>= T0``);
2. **tail pass** (map): per chunk, the scenarios with ``highest_s >= T0`` (less a 2e-6 relative
   margin, which covers the window the rounding margin of :func:`~.check.fund_at` looks at):
   their losses, premium bases, ``highest`` and ``lowest``. This is the only sizeable traffic:
   the scenarios that can bind anywhere in the box, typically a few times ``alpha N``;
3. the client builds a :class:`TailFundModel` (a FundModel whose vectors are the tail but whose
   ``n_scenarios`` is N) and runs the *same* engine code on it (:func:`~fundguard.optimizer.methods.level_solver_on_model`),
   whose screening, cuts, boxes and numpy check see exactly the rows the in-memory run sees;
4. **ruin count** (map): the answer's ruins counted on every chunk, which must equal the count
   the check made on the tail (a re-check independent of the tail argument).

The results equal the in-memory ones except for the mean premium base, summed in another order
(about 1e-16 relative): objectives, fund targets and rates agree to about 1e-12 relative, ruin
counts exactly (tests: to 1e-9). Between chunkings and worker counts they are bit-identical.
Methods "scenario" and "certified" need every scenario's rows in one program and are not
available on a chunked set (a :class:`ProblemError` says so).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fundguard.models import ScenarioSet
from fundguard.models.chunked import ChunkedScenarioSet
from fundguard.models.store import ScenarioStore
from fundguard.models.errors import ProblemError, ScenarioError
from fundguard.models.scenarios import SCENARIO_BLOCK

from ..policy import Policy
from ..problem import PolicyProblem
from .equation import allowed_ruins, corner_pass, count_ruined, worst_net_flow
from .model import FundModel

__all__ = ["TailFundModel", "is_chunked", "tail_model", "count_ruins_chunked"]


# Points of each chunk's top-(k+1) sketch: the lower bound T0 is at most one sketch step (k / 1024
# ranks) per chunk below L0, so the tail holds about k + n_chunks k / 1024 scenarios more than needed.
_SKETCH_POINTS = 1024


# Relative margin below T0 of the tail threshold: covers the 1e-6 window of the rounding margin
# (check._rounding_margin) with room for rounding.
_TAIL_MARGIN = 2e-6


@dataclass(frozen=True, eq=False)
class TailFundModel(FundModel):
    """A FundModel whose per-scenario vectors hold only the scenarios that can bind (the tail).

    ``source`` is the tail's ScenarioSet, ``highest``/``lowest`` its required funds at the box's
    corners, and ``n_total`` the number N of random scenarios they were taken from: the methods'
    order statistics (rank at most ``floor(alpha N) + 1`` for the ``alpha`` it was built for) and
    ruin counts are those of the whole set (see the module notes).
    """

    n_total: int = 0

    @property
    def n_scenarios(self) -> int:
        """N, the random scenarios of the whole chunked set (not the tail's)."""
        return self.n_total


def _corners(chunk: ScenarioSet, low: np.ndarray, high: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, float]:
    """``highest``, ``lowest`` (n,) of a chunk (required funds above the floor), currency units, by
    the in-memory pass's arithmetic, and the chunk's largest total loss of a scenario."""
    worst_low, worst_high, _, largest_loss = corner_pass(chunk, low, high, None)
    highest = -worst_low
    lowest = -worst_high if high is not None else highest.copy()
    return highest, lowest, largest_loss


def _corner_summary(chunk: ScenarioSet, start: int, low: np.ndarray, high: np.ndarray | None, rank: int) -> dict[str, Any]:
    """Pass 1 on one chunk: block premium totals, ``max |highest|``, the largest total loss of a
    scenario and a sketch of the top ``rank`` lowest."""
    highest, lowest, largest_loss = _corners(chunk, low, high)
    base = chunk.premium_base
    n, _, n_markets = base.shape
    totals = np.empty((-(-n // SCENARIO_BLOCK), n_markets))
    for b, first in enumerate(range(0, n, SCENARIO_BLOCK)):
        flat = base[first:first + SCENARIO_BLOCK].reshape(-1, n_markets)
        totals[b] = np.ones(flat.shape[0]) @ flat
    r = min(rank, n)
    top = np.partition(lowest, n - r)[n - r:]
    top = -np.sort(-top)
    positions = np.unique(np.linspace(0, r - 1, min(r, _SKETCH_POINTS)).round().astype(np.int64))
    return {
        "block_totals": totals,
        "largest_abs": float(np.abs(highest).max()),
        "largest_loss": largest_loss,
        # first scenario (global index) whose fund overflows at a corner of the rate box, or None
        "overflow": _first_overflow(highest, lowest, start),
        "sketch_values": top[positions],
        # at least positions + 1 values of the chunk are >= top[positions]
        "sketch_ranks": positions + 1,
    }


def _first_overflow(highest: np.ndarray, lowest: np.ndarray, start: int) -> int | None:
    bad = np.flatnonzero(~(np.isfinite(highest) & np.isfinite(lowest)))
    return int(bad[0]) + start if bad.size else None


def _tail_rows(chunk: ScenarioSet, start: int, low: np.ndarray, high: np.ndarray | None, threshold: float) -> tuple[np.ndarray, ...]:
    """Pass 2 on one chunk: the scenarios with ``highest >= threshold`` (global index, data, corners)."""
    highest, lowest, _ = _corners(chunk, low, high)
    keep = np.flatnonzero(highest >= threshold)
    return keep + start, chunk.losses[keep], chunk.premium_base[keep], highest[keep], lowest[keep]


def _ruin_count(chunk: ScenarioSet, start: int, fund_target: float, premium_rates: np.ndarray, floor: float) -> int:
    """Ruined scenarios of one chunk under a policy (the canonical check, :func:`~.fund.count_ruined`)."""
    worst = worst_net_flow(chunk.losses, chunk.premium_base, premium_rates)
    return count_ruined(fund_target, worst, floor)


def _rank_lower_bound(summaries: Sequence[dict[str, Any]], rank: int) -> float:
    """The largest sketch value ``x`` with at least ``rank`` values ``>= x`` certain from the sketches.

    Within a chunk the sketch is sorted in decreasing order with increasing ranks, so walking all
    sketch entries from the largest value down, the certain count of values ``>= x`` grows by each
    entry's rank minus its chunk's previous rank.
    """
    values = np.concatenate([s["sketch_values"] for s in summaries])
    increments = np.concatenate([np.diff(s["sketch_ranks"], prepend=0) for s in summaries])
    order = np.argsort(-values, kind="stable")
    values, certain = values[order], np.cumsum(increments[order])
    # ties: an entry counts with every entry of the same value
    last_of_value = np.r_[values[1:] != values[:-1], True]
    reached = np.flatnonzero(last_of_value & (certain >= rank))
    return float(values[reached[0]])


def is_chunked(scenarios: object) -> bool:
    """Whether ``scenarios`` live in chunks on workers (solved and counted by the passes here).

    The one place the optimizer tells the two scenario stores apart: :func:`~fundguard.optimizer.solve`,
    :func:`~fundguard.optimizer.frontier` and the ruin counts of the certificates dispatch on it. It
    asks the store (:class:`~fundguard.models.store.ScenarioStore`'s ``distributed``), not its class,
    so another store that keeps its chunks elsewhere is one more implementation of the protocol.
    """
    return isinstance(scenarios, ScenarioStore) and scenarios.distributed


def tail_model(problem: PolicyProblem, chunked: ChunkedScenarioSet, max_alpha: float | None = None) -> TailFundModel:
    """Two passes over the chunks: the :class:`TailFundModel` of ``problem`` for levels up to ``max_alpha``.

    Parameters
    ----------
    problem : PolicyProblem
    chunked : ChunkedScenarioSet
    max_alpha : float, optional
        Largest level the model will be solved at (default ``problem.alpha``); it also sets
        ``money_scale``, as ``FundModel.build(..., scale_alpha=max_alpha)`` does.

    Returns
    -------
    TailFundModel
        Its ``source`` is the tail (``source.n_scenarios`` scenarios of the N).
    """
    n_markets = chunked.n_markets
    problem.check_markets(n_markets)
    alpha = problem.alpha if max_alpha is None else max_alpha
    n = chunked.n_random
    low, high = problem.rate_box(n_markets)
    free_high = high if np.any(high - low > 0.0) else None
    floor = problem.floor
    rank = min(allowed_ruins(alpha, n) + 1, n)
    summaries = chunked.map(_corner_summary, low, free_high, rank)
    overflow = [s["overflow"] for s in summaries if s["overflow"] is not None]
    if overflow:
        raise ProblemError(
            f"the fund of scenario {overflow[0]} overflows at premium_min = {problem.premium_min!r} or premium_max = "
            f"{problem.premium_max!r} (rates are fractions of the premium base: the premium income exceeds float64)"
        )
    mean_base = np.concatenate([s["block_totals"] for s in summaries]).sum(axis=0) / n
    level = _rank_lower_bound(summaries, rank)
    threshold = level - _TAIL_MARGIN * max(abs(level), abs(floor), 1.0)
    parts = chunked.map(_tail_rows, low, free_high, threshold)
    tail = ScenarioSet(losses=np.concatenate([p[1] for p in parts]), premium_base=np.concatenate([p[2] for p in parts]),
                       markets=chunked.markets)
    highest = np.concatenate([p[3] for p in parts])
    lowest = np.concatenate([p[4] for p in parts])
    stress = chunked.stress if (problem.survive_stress and chunked.n_stress) else None
    return TailFundModel.assemble(problem, tail, None, stress, highest, lowest, mean_base, scale_alpha=alpha,
                                  n_random=n, largest_abs=max(s["largest_abs"] for s in summaries),
                                  largest_loss=max(s["largest_loss"] for s in summaries), n_total=n)


def count_ruins_chunked(policy: Policy, chunked: ChunkedScenarioSet) -> tuple[int, int]:
    """``(ruins, N)`` of ``policy`` over the random scenarios of ``chunked``: one map, one sum."""
    if not isinstance(policy, Policy):
        raise ProblemError(f"policy must be a Policy, got {type(policy).__name__}")
    if tuple(chunked.markets) != tuple(policy.markets):
        raise ScenarioError(f"scenarios have markets {list(chunked.markets)}, the policy {list(policy.markets)}")
    rates = np.asarray(policy.premium_rates, dtype=np.float64)
    counts = chunked.map(_ruin_count, float(policy.fund_target), rates, float(policy.floor))
    return int(sum(counts)), chunked.n_random
