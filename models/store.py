"""What the optimizer needs of a set of scenarios, wherever they live: the :class:`ScenarioStore` protocol.

Two stores implement it: :class:`~fundguard.models.ScenarioSet` (in memory, one chunk) and
:class:`~fundguard.models.ChunkedScenarioSet` (random scenarios in chunks on Dask workers,
stress scenarios on the client). A pass over the scenarios is written once, as a function of
one chunk, and :meth:`ScenarioStore.map` runs it where the chunks are; only its return values
travel. So the optimizer counts ruins, screens scenarios or sums premium bases the same way on
both, without asking which one it holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # annotations only
    from .scenarioset import ScenarioSet

__all__ = ["ScenarioStore"]


@runtime_checkable
class ScenarioStore(Protocol):
    """Random and stress scenarios of losses and premium bases (and per-market figures), passed over chunk by chunk.

    Attributes
    ----------
    markets : tuple of J str
        Market names, in premium-base order.
    n_markets : int
        J.
    n_scenarios : int
        Random plus stress scenarios.
    n_random : int
        N, the random scenarios: the ones probabilities are estimated on, the ones :meth:`map`
        passes over.
    n_stress : int
        Deterministic stress scenarios (:meth:`stress_part`).
    horizon : int
        T, periods per scenario.
    distributed : bool
        True when the random scenarios live on other processes (each pass is a round of tasks;
        a method that needs all scenarios in one place cannot run on it).
    per_market_fields : tuple of str
        The per-market (N, T, J) fields every chunk of random scenarios carries besides
        ``losses`` and ``premium_base``, among ``("losses_by_market", "liquidated", "winners")``
        (:data:`~fundguard.models.scenarioset.PER_MARKET_FIELDS`); the others are None on the
        chunks. A pass reads them on the chunk as it reads the losses
        (``chunk.liquidated[:, t, j]``), so they are summarised where they live like the rest.
        The stress part says its own (``stress_part().per_market_fields``).
    """

    @property
    def markets(self) -> tuple[str, ...]: ...

    @property
    def n_markets(self) -> int: ...

    @property
    def n_scenarios(self) -> int: ...

    @property
    def n_random(self) -> int: ...

    @property
    def n_stress(self) -> int: ...

    @property
    def horizon(self) -> int: ...

    @property
    def distributed(self) -> bool: ...

    @property
    def per_market_fields(self) -> tuple[str, ...]: ...

    def map(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Any]:
        """``[function(chunk, start, *args, **kwargs) for every chunk of random scenarios]``, in row order.

        ``chunk`` is a ScenarioSet of random scenarios only, ``start`` its first row among the
        N random scenarios. ``function`` and the arguments must pickle on a distributed store.
        """
        ...

    def stress_part(self) -> ScenarioSet | None:
        """The stress scenarios as one in-memory ScenarioSet, or None when there are none."""
        ...
