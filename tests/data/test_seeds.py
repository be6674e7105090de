"""Per-epoch seeds are a hash of (seed, epoch): another seed never replays a run's epochs."""

from __future__ import annotations

import numpy as np
import pytest

from polyhead.data.sampling import SourceSampler
from polyhead.data.seeds import AUGMENT, GLOBAL_RNG, ORDER, derive_seed


@pytest.mark.parametrize("mode", ["proportional", "round_robin"])
def test_next_seed_does_not_replay_the_next_epoch(mode):
    sources = np.repeat([0, 1], [60, 40])
    seed0, seed1 = SourceSampler(sources, mode=mode, seed=0), SourceSampler(sources, mode=mode, seed=1)
    for epoch in range(3):
        assert not np.array_equal(seed0.indices(epoch + 1), seed1.indices(epoch))
        assert not np.array_equal(seed0.indices(epoch), seed1.indices(epoch))
    assert np.array_equal(seed0.indices(2), SourceSampler(sources, mode=mode, seed=0).indices(2))  # reproducible


def test_streams_and_keys_give_distinct_seeds():
    seeds = {derive_seed(s, e, i, stream) for s in (0, 1) for e in (0, 1) for i in (0, 1)
             for stream in (AUGMENT, ORDER, GLOBAL_RNG)}
    assert len(seeds) == 2 * 2 * 2 * 3
    assert all(0 <= s < 2**63 for s in seeds)
    assert derive_seed(-1, 0) == derive_seed(2**32 - 1, 0)  # keys are taken modulo 2**32
