"""Loss models by name: what a loss model is (:class:`LossModel`) and the ones fundguard ships.

A configuration names its loss model (``[venue] loss_model = "liquidation_gap"``);
:func:`loss_model` turns the name into the function. Adding a loss model is one module in
this package (the function and the notes of its parameters) plus one line in ``LOSS_MODELS``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from types import MappingProxyType
from typing import Protocol

import numpy as np

from ..errors import SpecificationError
from .book import Market
from .gap import liquidation_gap
from .losses import VenueLosses
from .stateful import DEFAULT_BOOK, StatefulBook

__all__ = ["LossModel", "LOSS_MODELS", "DEFAULT_LOSS_MODEL", "loss_model", "excursion_keywords"]


class LossModel(Protocol):
    """What a venue loss model is: one market's losses and premium base over a chunk of paths.

    Parameters
    ----------
    market : Market
    returns : (n, T) float64 array, log returns of this market
    volatility : (n, T) float64 array, conditional standard deviation per period, same units
    period_days : float
        Length of a period in days (1.0 for daily paths, 1/24 for hourly).
    long_run_volatility : float or None
        sigma_long_run per period (``Market.long_run_volatility`` or the paths').
    low, high : (n, T) float64 arrays, optional keywords
        The period's intraperiod low and high of this market, as ``ReturnPaths.low`` /
        ``ReturnPaths.high`` define them, for models that see the adverse excursion rather
        than only the close. :func:`~fundguard.models.build_scenarios` passes them only to a model whose
        signature names them (``low=None, high=None``; a ``**kwargs`` catch-all does not count)
        and only when the ReturnPaths carry them; a model must work without them.

    Returns
    -------
    VenueLosses or (loss, premium_base)
        (n, T) float64 arrays >= 0, currency units: what the fund pays and what this market's
        premium rate is charged on, per period; a
        :class:`~fundguard.models.venue.losses.VenueLosses` may add the notional liquidated
        and the winners' profit (each None when the model does not know it). The pair is the
        older form, still accepted.
    """

    def __call__(
        self,
        market: Market,
        returns: np.ndarray,
        volatility: np.ndarray,
        *,
        period_days: float,
        long_run_volatility: float | None,
    ) -> VenueLosses | tuple[np.ndarray, np.ndarray]: ...


#: The loss models fundguard ships, by the name a configuration gives (read-only).
LOSS_MODELS: Mapping[str, LossModel] = MappingProxyType({
    "stateful_book": DEFAULT_BOOK,
    "liquidation_gap": liquidation_gap,
})

#: The name :func:`~fundguard.models.build_scenarios` uses when none is given.
DEFAULT_LOSS_MODEL = "stateful_book"


def loss_model(name: str) -> LossModel:
    """The loss model called ``name`` in :data:`LOSS_MODELS`, or the one a ``loss_model.json`` file describes.

    A name ending in ``.json`` is read as a fitted stateful book (``fundguard loss-fit``'s output).

    Raises
    ------
    SpecificationError
        ``name`` is not a known loss model (the message lists the known ones), or its file is
        missing or not a loss model.
    """
    if isinstance(name, str) and name.lower().endswith(".json"):
        return StatefulBook.from_json(name)
    try:
        return LOSS_MODELS[name]
    except (KeyError, TypeError):
        raise SpecificationError(
            f"unknown loss model {name!r}; known loss models: {', '.join(LOSS_MODELS)} "
            f"(or a loss_model.json file)") from None


def excursion_keywords(loss_model: LossModel) -> frozenset[str]:
    """The optional keywords (``low``, ``high``) that ``loss_model``'s signature names.

    Only parameters named in the signature count: a ``**kwargs`` catch-all often forwards to
    another model that would not take them. A callable without a signature takes none.
    """
    try:
        parameters = inspect.signature(loss_model).parameters
    except (TypeError, ValueError):
        return frozenset()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(name for name in ("low", "high") if name in parameters and parameters[name].kind in kinds)
