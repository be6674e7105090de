"""How a training epoch draws rows from several source tables.

When tasks take their labels from their own tables (`tasks.<name>.table`), the training
split is the concatenation of those sources and `EncodedSplit.sources` holds each row's
source id. The mode decides how often each source is seen:

    proportional   every row once per epoch, shuffled (a big source dominates)
    round_robin    each drawn row comes from a source chosen uniformly at random
    temperature    source s is chosen with probability ~ n_s^(1/T): T=1 is proportional,
                   T -> inf is round-robin (T=2 up-weights small sources by the square root)

For `round_robin` and `temperature` an epoch still has len(split) draws; a row is drawn
uniformly with replacement inside its source, so a small source repeats and a big one is
subsampled.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from polyhead.data.seeds import ORDER, derive_seed

MODES = ("proportional", "round_robin", "temperature")


def source_probabilities(sizes: np.ndarray, mode: str, temperature: float = 2.0) -> np.ndarray:
    """float64 [S]: the chance that a draw comes from each source (sources with 0 rows get 0)."""
    sizes = np.asarray(sizes, dtype=np.float64)
    if mode == "proportional":
        weights = sizes
    elif mode == "round_robin":
        weights = (sizes > 0).astype(np.float64)
    elif mode == "temperature":
        weights = np.where(sizes > 0, sizes ** (1.0 / temperature), 0.0)
    else:
        raise ValueError(f"unknown sampling mode {mode!r}; expected one of {', '.join(MODES)}")
    return weights / weights.sum()


class SourceSampler(Sampler[int]):
    """Yields len(sources) row positions per epoch, mixing sources by `mode`.

    sources: int [N], the source id of each row. The order depends only on (seed, epoch), through a
    hash of the pair (`polyhead.data.seeds`), so another seed never replays this one's epochs:
    `set_epoch` (called by Lightning before each epoch) picks the epoch; without it each
    new iteration moves on to the next epoch, so epochs differ and reruns repeat.

    `tag_epoch`: yield (epoch, position) pairs instead of positions, so that the dataset seeds
    each sample's augmentation from (seed, epoch, position), also in persistent workers.

    `rank`, `replicas`: with several training processes each takes every replicas-th draw from
    `rank` on, of the one order every process computes (padded by its first draws to a multiple of
    `replicas`, so every process has as many batches). Batch j of the processes together is then
    batch j of one process with replicas times the batch size."""

    def __init__(self, sources: np.ndarray, *, mode: str = "proportional", temperature: float = 2.0, seed: int = 0,
                 tag_epoch: bool = False, rank: int = 0, replicas: int = 1):
        self.sources = np.asarray(sources, dtype=np.int64)
        self.tag_epoch = tag_epoch
        self.rank, self.replicas = int(rank), int(replicas)
        self.mode, self.temperature, self.seed = mode, float(temperature), int(seed)
        self.epoch = 0
        num = int(self.sources.max()) + 1 if len(self.sources) else 0
        self.members = [np.flatnonzero(self.sources == s) for s in range(num)]  # row positions per source
        self.probs = source_probabilities(np.array([len(m) for m in self.members]), mode, self.temperature)

    def __len__(self) -> int:
        return -(-len(self.sources) // self.replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self, epoch: int) -> np.ndarray:
        """int64 [N]: the row positions drawn in `epoch`."""
        g = torch.Generator().manual_seed(derive_seed(self.seed, epoch, stream=ORDER))
        n = len(self.sources)
        if self.mode == "proportional" or n == 0:
            return torch.randperm(n, generator=g).numpy()
        chosen = torch.multinomial(torch.as_tensor(self.probs), n, replacement=True, generator=g).numpy()
        out = np.empty(n, dtype=np.int64)
        for s, rows in enumerate(self.members):
            slots = np.flatnonzero(chosen == s)
            if len(slots):
                out[slots] = rows[torch.randint(len(rows), (len(slots),), generator=g).numpy()]
        return out

    def __iter__(self) -> Iterator[int]:
        epoch = self.epoch
        self.epoch += 1  # the next iteration is a new epoch unless set_epoch says otherwise
        positions = self.indices(epoch)
        if self.replicas > 1:
            padded = np.resize(positions, len(self) * self.replicas)  # repeats the first draws
            positions = padded[self.rank::self.replicas]
        positions = positions.tolist()
        return iter([(epoch, i) for i in positions] if self.tag_epoch else positions)


class ShardSampler(Sampler[int]):
    """Positions [start, stop) of N rows: process `rank`'s contiguous share of an evaluation split
    (every row exactly once over the processes, none repeated; shares differ by at most one row)."""

    def __init__(self, n: int, *, rank: int = 0, replicas: int = 1):
        self.start, self.stop = n * rank // replicas, n * (rank + 1) // replicas

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))
