"""Work split over threads: the one place fundguard.models decides how many threads to use.

Simulation (:mod:`fundguard.models.scenarios`) and the venue's loss models
(:func:`fundguard.models.build_scenarios`) cut their work into chunks that write disjoint rows
of their outputs; :func:`in_threads` runs the chunks, several at once. numpy releases the GIL in
the random fills, ufuncs and gathers the chunks are made of, so threads give real parallelism
without copying arrays to other processes. The result never depends on the thread count.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .errors import SpecificationError

__all__ = ["in_threads", "thread_count", "usable_cpus", "positive_int"]


def in_threads(work: Callable[[int], None], items: Sequence[int], threads: int | None, name: str) -> None:
    """``work(item)`` for every item, several at once in threads.

    Parameters
    ----------
    work : callable of one item
        Must write outputs disjoint from every other item's.
    items : sequence of int
    threads : int or None
        None for the usable CPUs (:func:`thread_count`), 1 for the calling thread only.
    name : str
        Prefix of the worker threads' names.

    Notes
    -----
    The first exception raised by a call is raised here.
    """
    n_threads = min(thread_count(threads), len(items))
    if n_threads <= 1:
        for item in items:
            work(item)
        return
    with ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix=name) as pool:
        for _ in pool.map(work, items):
            pass


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask on Linux, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def thread_count(threads: int | None) -> int:
    """Threads :func:`in_threads` uses: ``threads`` (an int >= 1), or :func:`usable_cpus`."""
    return usable_cpus() if threads is None else positive_int("threads", threads)


def positive_int(name: str, value: Any) -> int:
    """``value`` as an int >= 1, or SpecificationError naming ``name`` and the value (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise SpecificationError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)
