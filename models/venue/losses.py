"""What a loss model returns for one market over a chunk of paths (the seam's per-market fields).

A loss model returns either the two arrays ``(loss, premium_base)`` (the first models did) or a
:class:`VenueLosses`, which also carries what loss allocation after the fund needs: the notional
liquidated and the winners' profit. :func:`~fundguard.models.build_scenarios` turns either into
the per-market fields of the :class:`~fundguard.models.ScenarioSet` (``losses_by_market``,
``liquidated``, ``winners``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["VenueLosses"]


class VenueLosses(NamedTuple):
    """One market's money per scenario and period, all (n, T) float64 arrays >= 0, currency units.

    Attributes
    ----------
    loss : what the fund pays: the part of liquidations' execution shortfall beyond their margin.
    premium_base : what this market's premium rate is charged on (fee-paying liquidated notional,
        or traded volume for ``premium_kind="volume"``).
    liquidated : notional liquidated in the period, both sides.
    winners : mark-to-market profit of the side the period's move favoured (the shorts on a fall,
        the longs on a rise): what auto-deleveraging could take from.
    """

    loss: np.ndarray
    premium_base: np.ndarray
    liquidated: np.ndarray | None = None
    winners: np.ndarray | None = None
