"""Encoded splits, the torch Dataset that yields their rows, and `Batch`, what a loader yields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Collection, TypedDict

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from polyhead.data.images import load_image
from polyhead.data.tables import LabelTable, check_columns
from polyhead.errors import ImageError
from polyhead.tasks import Task


class Batch(TypedDict):
    """What a DataLoader over a `MultiTaskDataset` yields (default collate; an item of the dataset
    has the same keys without the batch dimension B). Every task of the split has a key in
    `targets` and `mask`; a row not labelled for a task has mask False and a filler target."""

    image: torch.Tensor  # uint8 [B, C, H, W]
    targets: dict[str, torch.Tensor]  # {task: int64 [B] (multiclass), float [B] (binary), float [B, K] (multilabel)}
    mask: dict[str, torch.Tensor]  # {task: bool [B]}, True where the row is labelled for the task
    row: torch.Tensor  # int64 [B]: 1-based row of the source table, for messages
    index: torch.Tensor  # int64 [B]: position in the split (EncodedSplit.paths[index] is the image)


class PredictionBatch(Batch, total=False):
    """A `Batch` of a dataset with on_bad_image="skip" (prediction)."""

    error: list[str]  # [B]: why each image could not be read, "" when it could (an unreadable image is all zeros)


@dataclass
class EncodedSplit:
    """Image paths plus each task's encoded targets and label masks, aligned by position.

    A split may concatenate several source tables (the shared train table and per-task
    tables): `sources[i]` indexes `source_names`, and `rows[i]` is 1-based within that source."""

    paths: list[str]
    rows: np.ndarray  # int64 [N] source-table rows
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # bool [N]
    source: str = ""
    sources: np.ndarray | None = None  # int64 [N] source id per row; default: all 0 (one source)
    source_names: list[str] = field(default_factory=list)  # source id -> table (shown in messages)

    def __post_init__(self) -> None:
        if self.sources is None:
            self.sources = np.zeros(len(self.paths), dtype=np.int64)
        if not self.source_names:
            self.source_names = [self.source]

    def __len__(self) -> int:
        return len(self.paths)

    def labelled(self) -> dict[str, int]:
        return {t: int(m.sum()) for t, m in self.masks.items()}

    def take(self, positions: np.ndarray) -> "EncodedSplit":
        """The rows at `positions` (int [M], in order), e.g. without the rows whose image is bad."""
        positions = np.asarray(positions, dtype=np.int64)
        return EncodedSplit(paths=[self.paths[i] for i in positions], rows=self.rows[positions],
                            targets={t: v[positions] for t, v in self.targets.items()},
                            masks={t: m[positions] for t, m in self.masks.items()}, source=self.source,
                            sources=self.sources[positions], source_names=list(self.source_names))

    def rows_per_source(self) -> dict[str, int]:
        counts = np.bincount(self.sources, minlength=len(self.source_names))
        return {name: int(c) for name, c in zip(self.source_names, counts)}


def encode_table(table: LabelTable, tasks: dict[str, Task], only: Collection[str] | None = None) -> EncodedSplit:
    """Encode every task; a task not in `only` (default: all) is not labelled by this table and gets
    the task's own missing targets (-1, NaN or zeros) with mask False."""
    labelled = {n: t for n, t in tasks.items() if only is None or n in only}
    check_columns(table, {name: t.column for name, t in labelled.items()})
    split = EncodedSplit(paths=table.paths, rows=np.asarray(table.frame.index, dtype=np.int64), source=table.source)
    empty = pd.Series([None] * len(table), index=table.frame.index, dtype=object)
    for name, task in tasks.items():
        column = table.frame[task.column] if name in labelled else empty
        split.targets[name], split.masks[name] = task.encode(column, table.source)
    return split


def concat_splits(parts: list[EncodedSplit]) -> EncodedSplit:
    """One split from several (each from its own source table, with the same task keys)."""
    if len(parts) == 1:
        return parts[0]
    names, ids = [], []
    for part in parts:
        offset = len(names)
        names.extend(part.source_names)
        ids.append(part.sources + offset)
    return EncodedSplit(
        paths=[p for part in parts for p in part.paths],
        rows=np.concatenate([part.rows for part in parts]),
        targets={t: np.concatenate([part.targets[t] for part in parts]) for t in parts[0].targets},
        masks={t: np.concatenate([part.masks[t] for part in parts]) for t in parts[0].masks},
        source=" + ".join(names), sources=np.concatenate(ids), source_names=names)


def unlabelled_split(paths: list[str], source: str = "images") -> EncodedSplit:
    """Images without labels (prediction)."""
    return EncodedSplit(paths=list(paths), rows=np.arange(1, len(paths) + 1), source=source)


class MultiTaskDataset(Dataset):
    """Decodes images on the fly: an item is the row at a position (or at (epoch, position), as a
    `SourceSampler(tag_epoch=True)` yields), its image uint8 [C, H, W], not augmented (training
    augments whole batches: `polyhead.data.transforms`).

    `on_bad_image`: "error" (an unreadable image raises `ImageError`; training checks images
    before it starts) or "skip" (prediction: the item carries the reason in "error")."""

    def __init__(self, split: EncodedSplit, *, channels: int, size: tuple[int, int], on_bad_image: str = "error"):
        self.split, self.channels, self.size, self.on_bad_image = split, channels, tuple(size), on_bad_image

    def _image(self, i: int) -> tuple[torch.Tensor, str]:
        """(uint8 [C, H, W], "" ) or, with on_bad_image="skip", (zeros, why the image is unreadable)."""
        try:
            return load_image(self.split.paths[i], channels=self.channels, size=self.size), ""
        except ImageError as exc:
            if self.on_bad_image != "skip":
                raise
            return torch.zeros((self.channels, *self.size), dtype=torch.uint8), exc.reason

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, item: int | tuple[int, int]) -> Batch | PredictionBatch:
        i = item[1] if isinstance(item, tuple) else item
        image, error = self._image(i)
        sample = Batch(image=image,
                       targets={t: torch.as_tensor(v[i]) for t, v in self.split.targets.items()},
                       mask={t: torch.as_tensor(bool(m[i])) for t, m in self.split.masks.items()},
                       row=torch.as_tensor(int(self.split.rows[i])), index=torch.as_tensor(i))
        if self.on_bad_image == "skip":
            return PredictionBatch(**sample, error=error)
        return sample


class CachedDataset(Dataset):
    """The rows of a split with their images already decoded (`polyhead.data.cache`): a DataLoader
    fetches a whole `Batch` with one `__getitems__` call (one gather from the cached array and from
    each target array), so a batch costs no per-sample Python work. Use `collate_fn=as_is`.

    images: uint8 [M, C, H, W]; cache_rows: int64 [len(split)], the image row of each position."""

    def __init__(self, split: EncodedSplit, images: torch.Tensor, cache_rows: np.ndarray):
        self.split, self.images, self.cache_rows = split, images, np.asarray(cache_rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.split)

    def __getitems__(self, items: list) -> Batch:
        """items: positions, or (epoch, position) pairs; the same keys, dtypes and shapes as the default
        collate of `MultiTaskDataset` items."""
        idx = np.fromiter((it[1] if isinstance(it, tuple) else it for it in items), dtype=np.int64, count=len(items))
        s = self.split
        return Batch(image=self.images[torch.from_numpy(self.cache_rows[idx])],
                     targets={t: torch.from_numpy(v[idx]) for t, v in s.targets.items()},
                     mask={t: torch.from_numpy(m[idx].astype(bool)) for t, m in s.masks.items()},
                     row=torch.from_numpy(s.rows[idx].astype(np.int64)), index=torch.from_numpy(idx))

    def __getitem__(self, item: int | tuple[int, int]) -> Batch:
        batch = self.__getitems__([item])
        return Batch(image=batch["image"][0], targets={t: v[0] for t, v in batch["targets"].items()},
                     mask={t: m[0] for t, m in batch["mask"].items()}, row=batch["row"][0], index=batch["index"][0])


def as_is(batch):
    """The collate function of a `CachedDataset`: its batches arrive collated."""
    return batch
