"""An encoded split -> a DataLoader: decoding, augmentation (training only) and the sampler that
orders (and, with several label tables, mixes) the rows per epoch."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from polyhead.config.schema import DataConfig
from polyhead.data.dataset import EncodedSplit, MultiTaskDataset
from polyhead.data.sampling import SourceSampler
from polyhead.data.transforms import build_train_transform


def image_size(data: DataConfig) -> tuple[int, int]:
    """data.image_size ([H, W], or [S] for S x S) -> (H, W)."""
    s = list(data.image_size)
    return (s[0], s[0]) if len(s) == 1 else (s[0], s[1])


def _loader(split: EncodedSplit, data: DataConfig, *, seed: int, train: bool, batch_size: int) -> DataLoader:
    d = data
    size = image_size(d)
    transform = build_train_transform(d.augment, size, d.channels) if train else None
    ds = MultiTaskDataset(split, channels=d.channels, size=size, transform=transform, seed=seed)
    sampler = None
    if train:  # order and augmentation depend on (seed, epoch) only: a resumed run repeats them exactly
        # several tables: data.sampling mixes them; one table: every row once per epoch, shuffled
        mode = d.sampling if len(split.source_names) > 1 else "proportional"
        sampler = SourceSampler(split.sources, mode=mode, temperature=d.sampling_temperature,
                                seed=seed, tag_epoch=True)
    # its own generator (for the workers' base seed): creating an iterator leaves the global RNG alone
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=False, sampler=sampler,
                      drop_last=train and len(ds) > batch_size,
                      num_workers=d.num_workers, pin_memory=torch.cuda.is_available(),
                      persistent_workers=d.num_workers > 0, generator=generator)


def train_loader(split: EncodedSplit, data: DataConfig, *, seed: int) -> DataLoader:
    """Batches of data.batch_size, augmented, in the order (seed, epoch) fixes (SourceSampler); `seed`:
    training.seed."""
    return _loader(split, data, seed=seed, train=True, batch_size=data.batch_size)


def eval_loader(split: EncodedSplit, data: DataConfig, *, seed: int) -> DataLoader:
    """Batches of data.eval_batch_size (default twice data.batch_size), in the split's order, no augmentation."""
    bs = data.eval_batch_size or 2 * data.batch_size
    return _loader(split, data, seed=seed, train=False, batch_size=bs)
