"""An encoded split -> a DataLoader: images decoded by workers or taken from the decode-once cache,
and for training the sampler that orders (and, with several label tables, mixes) the rows per epoch.
Augmentation is not here: the training step augments whole batches (polyhead.data.transforms)."""

from __future__ import annotations

import os

import torch
from torch.utils.data import DataLoader

from polyhead.config.schema import DataConfig
from polyhead.data.cache import ImageCache
from polyhead.data.dataset import CachedDataset, EncodedSplit, MultiTaskDataset, as_is
from polyhead.data.sampling import ShardSampler, SourceSampler


def image_size(data: DataConfig) -> tuple[int, int]:
    """data.image_size ([H, W], or [S] for S x S) -> (H, W)."""
    s = list(data.image_size)
    return (s[0], s[0]) if len(s) == 1 else (s[0], s[1])


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def loader_workers(data: DataConfig, *, cached: bool) -> int:
    """data.num_workers, or for `auto`: none when the images are cached (a batch is one gather from
    memory, cheaper than handing it over from a worker), else half the cores on a CPU (the other
    half runs the training step) and all but one with a GPU (the step runs on the GPU)."""
    if data.num_workers != "auto":
        return int(data.num_workers)
    if cached:
        return 0
    cores = available_cores()
    return max(1, cores - 1) if torch.cuda.is_available() else max(1, cores // 2)


def _loader(split: EncodedSplit, data: DataConfig, *, seed: int, train: bool, batch_size: int,
            cache: ImageCache | None, shard: tuple[int, int] = (0, 1)) -> DataLoader:
    d = data
    if cache is not None:
        ds, collate = CachedDataset(split, cache.images, cache.rows(split.paths)), as_is
    else:
        ds, collate = MultiTaskDataset(split, channels=d.channels, size=image_size(d)), None
    sampler = None
    if train:  # the order depends on (seed, epoch) only: a resumed run repeats it exactly
        # several tables: data.sampling mixes them; one table: every row once per epoch, shuffled
        mode = d.sampling if len(split.source_names) > 1 else "proportional"
        sampler = SourceSampler(split.sources, mode=mode, temperature=d.sampling_temperature,
                                seed=seed, tag_epoch=True, rank=shard[0], replicas=shard[1])
    elif shard[1] > 1:
        sampler = ShardSampler(len(ds), rank=shard[0], replicas=shard[1])
    workers = loader_workers(d, cached=cache is not None)
    # its own generator (for the workers' base seed): creating an iterator leaves the global RNG alone
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=False, sampler=sampler, collate_fn=collate,
                      drop_last=train and len(sampler) > batch_size,  # this process's rows
                      num_workers=workers, pin_memory=torch.cuda.is_available(),
                      persistent_workers=workers > 0, generator=generator)


def train_loader(split: EncodedSplit, data: DataConfig, *, seed: int, cache: ImageCache | None = None,
                 shard: tuple[int, int] = (0, 1)) -> DataLoader:
    """Batches of data.batch_size, not augmented, in the order (seed, epoch) fixes (SourceSampler);
    `seed`: training.seed; `cache`: the decoded images (polyhead.data.cache), else workers decode;
    `shard`: (rank, processes), this process's share of each epoch's draws."""
    return _loader(split, data, seed=seed, train=True, batch_size=data.batch_size, cache=cache, shard=shard)


def eval_loader(split: EncodedSplit, data: DataConfig, *, seed: int, cache: ImageCache | None = None,
                shard: tuple[int, int] = (0, 1)) -> DataLoader:
    """Batches of data.eval_batch_size (default twice data.batch_size), in the split's order;
    `shard`: (rank, processes), this process's contiguous share of the rows (each row once)."""
    bs = data.eval_batch_size or 2 * data.batch_size
    return _loader(split, data, seed=seed, train=False, batch_size=bs, cache=cache, shard=shard)
