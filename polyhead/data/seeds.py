"""Seeds derived from (training.seed, epoch, ...) by hashing.

Every random stream of a run (the epoch's data order, each sample's augmentation, the global
RNGs that dropout and random weighting methods draw from) is seeded from a hash of the tuple
(seed, epoch, index, stream), never from `seed + epoch`: with a sum, runs with seeds 0 and 1
would see the same sequence of epochs shifted by one.
"""

from __future__ import annotations

import numpy as np

# Streams: which use a seed is for, so that no two streams share numbers.
AUGMENT, ORDER, GLOBAL_RNG = 0, 1, 2


def derive_seed(seed: int, epoch: int, index: int = 0, stream: int = AUGMENT) -> int:
    """A non-negative 63-bit seed, a hash (numpy's SeedSequence) of (seed, epoch, index, stream).

    `index`: a sample's position (augmentation), else 0. Each key is taken modulo 2**32."""
    keys = [int(k) & 0xFFFFFFFF for k in (seed, epoch, index, stream)]
    return int(np.random.SeedSequence(keys).generate_state(2, np.uint64)[0] >> 1)
