"""Methods "cvar" and "exact" on a chunked scenario set: :func:`solve_chunked`, :func:`frontier_chunked`.

The passes over the chunks (what runs on the workers, what travels and why the answer is the
same as in memory) are in :mod:`.fund.chunked`; here the tail FundModel they build is solved by
the same engine code as in memory (:func:`~.methods.level_solver_on_model`) and the answer's
ruins re-counted on every chunk. :func:`~fundguard.optimizer.solve` and
:func:`~fundguard.optimizer.frontier` dispatch here when given a ChunkedScenarioSet; nothing in
this module imports dask. Methods "scenario" and "certified" need every scenario's rows in one
program and are not available on a chunked set (a :class:`ProblemError` says so).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from fundguard.models.chunked import ChunkedScenarioSet, describe_layout
from fundguard.models.errors import ProblemError, SolverError

from .fund import TailFundModel, count_ruins_chunked, tail_model
from .methods import METHODS, level_solver_on_model
from .policy import Policy
from .problem import PolicyProblem

__all__ = [
    "DISTRIBUTED_METHODS",
    "TailFundModel",
    "tail_model",
    "solve_chunked",
    "frontier_chunked",
    "count_ruins_chunked",
]


#: Methods available on a ChunkedScenarioSet (those that solve on a tail FundModel).
DISTRIBUTED_METHODS = tuple(name for name, method in METHODS.items() if method.distributed)


def _check(problem: object, chunked: ChunkedScenarioSet, method: object, options: dict[str, Any]) -> None:
    if not isinstance(problem, PolicyProblem):
        raise ProblemError(f"problem must be a PolicyProblem, got {type(problem).__name__}")
    if not isinstance(method, str) or method not in DISTRIBUTED_METHODS:
        raise ProblemError(
            f"method {method!r} is not available on a ChunkedScenarioSet; choose from {list(DISTRIBUTED_METHODS)} "
            "(or gather a small set into a ScenarioSet)")
    unknown = sorted(set(options) - set(METHODS[method].options))
    if unknown:
        raise ProblemError(f"method {method!r} has no option {unknown[0]!r}; its options are {list(METHODS[method].options)}")
    problem.check_markets(chunked.n_markets)


def _rechecked(policy: Policy, chunked: ChunkedScenarioSet, model: TailFundModel, seconds: float) -> Policy:
    """The policy with its ruin count re-made on every chunk; SolverError if it differs from the tail's."""
    ruins, n = count_ruins_chunked(policy, chunked)
    claimed = round(policy.in_sample_ruin * n)
    if ruins != claimed:
        raise SolverError(
            f"the distributed ruin count ({ruins} of {n}) disagrees with the count on the tail scenarios ({claimed}); "
            "please report this with the seed and chunk size")
    details = dict(policy.details)
    details["distributed"] = {**describe_layout(chunked), "tail_scenarios": int(model.source.n_scenarios),
                              "ruins_rechecked": ruins, "seconds_passes": seconds}
    details["distributed"].pop("rows")
    return dataclasses.replace(policy, details=details)


def solve_chunked(problem: PolicyProblem, chunked: ChunkedScenarioSet, method: str = "cvar", **options: Any) -> Policy:
    """:func:`~fundguard.optimizer.solve` on a chunked set: methods "cvar" and "exact".

    Parameters and result as :func:`~fundguard.optimizer.solve`; ``details["distributed"]``
    adds the layout, the tail size and the re-checked ruin count.

    Raises
    ------
    ProblemError
        Another method, or an unknown option.
    """
    _check(problem, chunked, method, options)
    started = time.perf_counter()
    model = tail_model(problem, chunked)
    passes = time.perf_counter() - started
    policy = level_solver_on_model(model, [problem.alpha], method, dict(options))(problem.alpha)
    return _rechecked(policy, chunked, model, passes)


def frontier_chunked(problem: PolicyProblem, chunked: ChunkedScenarioSet, alphas: Sequence[float], method: str = "cvar",
                     **options: Any) -> list[Policy]:
    """:func:`~fundguard.optimizer.frontier` on a chunked set: one tail for the largest level."""
    _check(problem, chunked, method, options)
    levels = [float(a) for a in alphas]
    problems = [dataclasses.replace(problem, alpha=a) for a in levels]
    start = time.perf_counter()
    model = tail_model(problem, chunked, max(levels))
    passes = time.perf_counter() - start
    solve_at = level_solver_on_model(model, levels, method, dict(options))
    policies = []
    for p in problems:
        policy = _rechecked(solve_at(p.alpha), chunked, model, passes)
        now = time.perf_counter()
        policies.append(dataclasses.replace(policy, solve_seconds=now - start))
        start = now
    return policies
