"""Random-number streams of the scenarios: the one place their seed-child numbering is written.

A seed is turned into one root :class:`numpy.random.SeedSequence` (:func:`seed_sequence`).
Random scenarios are drawn in fixed blocks of :data:`SCENARIO_BLOCK` scenarios; block ``b``
draws from its own streams, the children ``(b, 0), (b, 1), ...`` of the root
(:func:`block_streams`). So a seed gives the same paths whatever the chunk of work or the
worker a block is drawn in, and the first n paths of a larger run equal a run of n.
"""

from __future__ import annotations

import numpy as np

from .errors import SpecificationError

__all__ = ["SCENARIO_BLOCK", "seed_sequence", "block_streams"]

#: Scenarios per random-number block. Fixed: changing it changes every seeded result.
SCENARIO_BLOCK = 1024


def seed_sequence(seed: int | np.random.SeedSequence | None) -> np.random.SeedSequence:
    """The root SeedSequence of ``seed``: a non-negative int, a SeedSequence (used as given) or None (fresh entropy)."""
    if seed is None or isinstance(seed, np.random.SeedSequence):
        return seed if seed is not None else np.random.SeedSequence()
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        return np.random.SeedSequence(int(seed))
    raise SpecificationError(f"seed must be a non-negative int, a numpy SeedSequence or None, got {seed!r}")


def block_streams(root: np.random.SeedSequence, block: int, n_streams: int) -> list[np.random.Generator]:
    """The ``n_streams`` generators of random-number block ``block``: spawn keys ``(*root.spawn_key, block, i)``."""
    # Exactly what root.spawn(...)[block].spawn(n_streams) gives, without mutating the caller's
    # SeedSequence (spawn() advances its child counter).
    node = np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, block), pool_size=root.pool_size)
    return [np.random.Generator(np.random.PCG64(child)) for child in node.spawn(n_streams)]
