"""JSON-ready values: the one sanitizer of fundguard (metadata, summaries, outputs).

Lowest layer of the package: imports nothing of fundguard, so every module above it, in
``fundguard.models`` and ``fundguard.optimizer``, can use it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["json_safe"]


def json_safe(value: Any, *, default: Callable[[Any], Any] | None = None) -> Any:
    """``value`` as strict JSON data.

    Parameters
    ----------
    value : any
        Mappings (keys turned into str), lists and tuples (into lists), numpy arrays (into
        nested lists), numpy scalars (into Python numbers and bools), floats, ints, str, None.
    default : callable, optional
        Applied to any other leaf (``str`` turns a Path or a date into text); by default other
        leaves are returned as they are.

    Returns
    -------
    The same structure of dicts, lists, str, int, float, bool and None; a non-finite float
    (nan, inf) becomes None, which JSON can hold.
    """
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v, default=default) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, default=default) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist(), default=default)
    if default is None or value is None or isinstance(value, (str, int)):
        return value
    return default(value)
