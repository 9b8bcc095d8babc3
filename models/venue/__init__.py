"""The venue's book and the loss models that turn return paths into fund losses.

A :class:`VenueBook` lists the venue's :class:`Market` s: open interest, typical volume, the
leverage tiers positions sit in, and the execution parameters of liquidations.
:func:`build_scenarios` runs a loss model over :class:`~fundguard.models.scenarios.ReturnPaths`
and returns the :class:`ScenarioSet` the optimizer consumes. The default model is
:func:`liquidation_gap` (its formulas: :mod:`fundguard.models.venue.gap`); any function with the
:class:`LossModel` signature can replace it, and :data:`LOSS_MODELS` names the shipped ones
(:func:`loss_model` looks one up by name).

Layout (imports run down this list): ``book`` (Market, LeverageTier, VenueBook), one module per
loss model (``gap``: :func:`liquidation_gap`), ``registry`` (the :class:`LossModel` protocol,
``LOSS_MODELS`` by name, :func:`loss_model`), ``build`` (:func:`build_scenarios`).
"""

from .book import DEFAULT_TIERS, MAX_OI_PER_ADV, PREMIUM_KINDS, LeverageTier, Market, VenueBook
from .build import build_scenarios
from .gap import liquidation_gap
from .losses import VenueLosses
from .registry import DEFAULT_LOSS_MODEL, LOSS_MODELS, LossModel, loss_model
from .replay import replay
from .stateful import DEFAULT_BOOK, StatefulBook, stateful_book

__all__ = [
    "LeverageTier",
    "DEFAULT_TIERS",
    "Market",
    "VenueBook",
    "LossModel",
    "liquidation_gap",
    "StatefulBook",
    "stateful_book",
    "DEFAULT_BOOK",
    "VenueLosses",
    "replay",
    "build_scenarios",
    "PREMIUM_KINDS",
    "MAX_OI_PER_ADV",
    "LOSS_MODELS",
    "DEFAULT_LOSS_MODEL",
    "loss_model",
]
