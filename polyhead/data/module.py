"""Config -> train/val/test splits (encoded) -> DataLoaders. The one place data is assembled."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from rich.console import Console
from torch.utils.data import DataLoader

from polyhead.config.schema import Config, DataConfig
from polyhead.data.dataset import EncodedSplit, MultiTaskDataset, encode_table
from polyhead.data.tables import LabelTable, check_columns, random_split, read_table, split_by_column
from polyhead.data.transforms import build_train_transform
from polyhead.errors import DataError
from polyhead.tasks import Task, is_missing, label_str


def image_size(data: DataConfig) -> tuple[int, int]:
    s = list(data.image_size)
    return (s[0], s[0]) if len(s) == 1 else (s[0], s[1])


@dataclass
class DataSplits:
    train: EncodedSplit
    val: EncodedSplit | None
    test: EncodedSplit | None

    def summary(self) -> dict:
        out = {}
        for name in ("train", "val", "test"):
            split = getattr(self, name)
            if split is not None:
                out[name] = {"rows": len(split), "labelled": split.labelled()}
        return out


def _read(cfg: Config, path: str) -> LabelTable:
    d = cfg.data
    return read_table(path, image_column=d.image_column, root=d.root, folder_task=d.folder_task)


def _split_tables(cfg: Config, table: LabelTable) -> dict[str, LabelTable | None]:
    d = cfg.data
    if d.split_column:
        idx = split_by_column(table, d.split_column)
        parts = {k: (table.subset(v, k) if len(v) else None) for k, v in idx.items()}
        if parts["train"] is None:
            raise DataError(f"split column '{d.split_column}' of '{table.source}' marks no row as 'train'")
    else:
        fractions = {}
        if d.val_table is None and d.val_fraction > 0:
            fractions["val"] = d.val_fraction
        if d.test_table is None and d.test_fraction > 0:
            fractions["test"] = d.test_fraction
        strata = None
        if d.stratify:
            task = cfg.tasks[d.stratify]
            col = task.column or d.stratify
            check_columns(table, {d.stratify: col})
            strata = ["<missing>" if is_missing(v) else label_str(v) for v in table.frame[col]]
        idx = random_split(len(table), fractions, cfg.training.seed, strata)
        parts = {k: (table.subset(v, k) if len(v) else None) for k, v in idx.items()}
        parts.setdefault("val", None)
        parts.setdefault("test", None)
    if d.val_table:
        parts["val"] = _read(cfg, d.val_table)
    if d.test_table:
        parts["test"] = _read(cfg, d.test_table)
    return parts


def build_splits(cfg: Config, tasks: dict[str, Task], console: Console | None = None) -> DataSplits:
    """Read the tables, infer missing class lists from train, encode every split."""
    table = _read(cfg, cfg.data.train_table)
    parts = _split_tables(cfg, table)
    train = parts["train"]
    check_columns(train, {n: t.column for n, t in tasks.items()})
    for name, task in tasks.items():
        if task.fit_classes(train.frame[task.column], train.source) and console is not None:
            shown = ", ".join(task.classes[:30]) + (" ..." if len(task.classes) > 30 else "")
            console.print(f"[bold]{name}[/] ({task.type}): {len(task.classes)} classes inferred from the training table: {shown}")
        if task.type == "multiclass" and task.num_outputs < 2:
            raise DataError(f"task '{name}' has a single class ({task.classes[0]!r}) in '{train.source}'; "
                            f"a multiclass task needs at least two (declare them in tasks.{name}.classes)")
    encoded = {k: (encode_table(v, tasks) if v is not None else None) for k, v in parts.items()}
    for name, count in encoded["train"].labelled().items():
        if count == 0:
            raise DataError(f"task '{name}' has no labelled row in the training split of '{train.source}'")
    return DataSplits(encoded["train"], encoded["val"], encoded["test"])


def _loader(split: EncodedSplit, cfg: Config, *, train: bool, batch_size: int) -> DataLoader:
    d = cfg.data
    size = image_size(d)
    transform = build_train_transform(d.augment, size, d.channels) if train else None
    ds = MultiTaskDataset(split, channels=d.channels, size=size, transform=transform)
    generator = torch.Generator().manual_seed(cfg.training.seed) if train else None
    return DataLoader(ds, batch_size=batch_size, shuffle=train, drop_last=train and len(ds) > batch_size,
                      num_workers=d.num_workers, pin_memory=torch.cuda.is_available(),
                      persistent_workers=d.num_workers > 0, generator=generator)


def train_loader(split: EncodedSplit, cfg: Config) -> DataLoader:
    return _loader(split, cfg, train=True, batch_size=cfg.data.batch_size)


def eval_loader(split: EncodedSplit, cfg: Config) -> DataLoader:
    bs = cfg.data.eval_batch_size or 2 * cfg.data.batch_size
    return _loader(split, cfg, train=False, batch_size=bs)
