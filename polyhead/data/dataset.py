"""Encoded splits and the torch Dataset that yields batches.

A batch (after the default collate) is:
    {"image":  uint8 [B, C, H, W],
     "targets": {task: Tensor[B] or Tensor[B, K]},
     "mask":    {task: bool [B]},
     "row":     int64 [B]   (1-based row of the source table, for messages),
     "index":   int64 [B]   (position in the split)}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from polyhead.data.images import load_image
from polyhead.data.tables import LabelTable, check_columns
from polyhead.tasks import Task


@dataclass
class EncodedSplit:
    """Image paths plus each task's encoded targets and label masks, aligned by position."""

    paths: list[str]
    rows: np.ndarray  # int64 [N] source-table rows
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # bool [N]
    source: str = ""

    def __len__(self) -> int:
        return len(self.paths)

    def labelled(self) -> dict[str, int]:
        return {t: int(m.sum()) for t, m in self.masks.items()}


def encode_table(table: LabelTable, tasks: dict[str, Task]) -> EncodedSplit:
    check_columns(table, {name: t.column for name, t in tasks.items()})
    split = EncodedSplit(paths=table.paths, rows=np.asarray(table.frame.index, dtype=np.int64), source=table.source)
    for name, task in tasks.items():
        split.targets[name], split.masks[name] = task.encode(table.frame[task.column], table.source)
    return split


def unlabelled_split(paths: list[str], source: str = "images") -> EncodedSplit:
    """Images without labels (prediction)."""
    return EncodedSplit(paths=list(paths), rows=np.arange(1, len(paths) + 1), source=source)


class MultiTaskDataset(Dataset):
    """Decodes images on the fly; `transform` runs on uint8 [C, H, W] tensors (augmentation)."""

    def __init__(self, split: EncodedSplit, *, channels: int, size: tuple[int, int],
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.split, self.channels, self.size, self.transform = split, channels, tuple(size), transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> dict:
        image = load_image(self.split.paths[i], channels=self.channels, size=self.size)
        if self.transform is not None:
            image = self.transform(image)
        return {
            "image": image,
            "targets": {t: torch.as_tensor(v[i]) for t, v in self.split.targets.items()},
            "mask": {t: torch.as_tensor(bool(m[i])) for t, m in self.split.masks.items()},
            "row": torch.as_tensor(int(self.split.rows[i])),
            "index": torch.as_tensor(i),
        }
