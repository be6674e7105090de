"""The config's data section -> train/val/test splits (encoded): the one place the label tables become splits
(`polyhead.data.loaders` turns a split into a DataLoader).

A *source* is one label table: `data.train_table` for the tasks without a table of their own,
and each `tasks.<name>.table`. Every source is split on its own; the splits concatenate them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rich.console import Console
from rich.markup import escape

from polyhead.config.schema import DataConfig
from polyhead.data.dataset import EncodedSplit, concat_splits, encode_table
from polyhead.data.tables import (IMAGE, LabelTable, check_columns, fold_numbers, quoted, random_split, read_table,
                                  split_by_column)
from polyhead.errors import DataError, bad_value
from polyhead.tasks import Task, is_missing, label_str


@dataclass
class DataSplits:
    train: EncodedSplit
    val: EncodedSplit | None
    test: EncodedSplit | None
    skipped: dict[str, int] | None = None  # rows dropped per split for a bad image (data.on_bad_image=skip)
    skipped_rows: list[dict] = field(default_factory=list)  # skipped_rows.csv: split, table, row, image, reason
    warnings: list[str] = field(default_factory=list)  # data.validate's table warnings (duplicate, leak, ...), one line each

    def summary(self) -> dict:
        out = {}
        for name in ("train", "val", "test"):
            split = getattr(self, name)
            if split is not None:
                out[name] = {"rows": len(split), "labelled": split.labelled(), "sources": split.rows_per_source()}
                if self.skipped is not None:
                    out[name]["skipped"] = self.skipped.get(name, 0)
        return out


MISSING_STRATUM = "<missing>"  # the stratum of rows without a data.stratify label


@dataclass
class Source:
    """One label table and the tasks it labels (every other task is masked out on its rows)."""

    table: LabelTable
    tasks: list[str]
    main: bool  # data.train_table (with data.val_table / data.test_table), else a tasks.<name>.table


def read_source_table(data: DataConfig, path: str, key: str, folder_task: str | None = None) -> LabelTable:
    """The table at `path`, named by the config key `key` (data.train_table, tasks.<name>.table, ...)."""
    return read_table(path, image_column=data.image_column, root=data.root,
                      folder_task=folder_task or data.folder_task, key=key)


def split_source(data: DataConfig, table: LabelTable, tasks: dict[str, Task], *, seed: int, main: bool = True,
                 need_split_column: bool = True) -> dict[str, LabelTable | None]:
    """train/val/test parts of one source: {"train": table, "val": table or None, "test": table or None}.
    `tasks` are the tasks it labels (`data.stratify` stratifies only a source that labels that task);
    `seed`: training.seed, for a random split. With several sources, a source without
    `data.split_column` is split at random (`need_split_column=False`); only `main` gets
    data.val_table / data.test_table. With `data.folds`, val is fold `data.fold` (default 1) of the
    train and val rows and train the other folds (`fold_positions`); test stays as it was."""
    d = data
    idx = split_positions(d, table, tasks, seed=seed, main=main, need_split_column=need_split_column)
    if d.folds:
        pool, fold = fold_positions(d, table, tasks, idx, seed=seed)
        k = d.fold or 1
        idx = {"train": pool[fold != k], "val": pool[fold == k], "test": idx.get("test", np.zeros(0, np.int64))}
    parts = {k: (table.subset(v, k) if len(v) else None) for k, v in idx.items()}
    parts.setdefault("val", None)
    parts.setdefault("test", None)
    if main and d.val_table:
        parts["val"] = read_source_table(d, d.val_table, "data.val_table")
    if main and d.test_table:
        parts["test"] = read_source_table(d, d.test_table, "data.test_table")
    return parts


def split_positions(data: DataConfig, table: LabelTable, tasks: dict[str, Task], *, seed: int, main: bool = True,
                    need_split_column: bool = True) -> dict[str, np.ndarray]:
    """Row positions (0-based, sorted) of one source's train, val and test rows, before any folds:
    by `data.split_column`, else a seeded random split (`data.val_fraction`, `data.test_fraction`,
    stratified on `data.stratify`) of what `data.val_table` / `data.test_table` do not provide."""
    d = data
    if d.split_column and (need_split_column or d.split_column in table.frame.columns):
        idx = split_by_column(table, d.split_column)
        if not len(idx["train"]):
            raise DataError(f"split column '{d.split_column}' of {quoted(table.source)} marks no row as 'train'")
        return idx
    fractions = {}
    if (d.val_table is None or not main) and d.val_fraction > 0:
        fractions["val"] = d.val_fraction
    if (d.test_table is None or not main) and d.test_fraction > 0:
        fractions["test"] = d.test_fraction
    return random_split(len(table), fractions, seed, _strata(d, table, tasks))


def _strata(data: DataConfig, table: LabelTable, tasks: dict[str, Task]) -> list[str] | None:
    """One stratum per row of `table`: its `data.stratify` label ("<missing>" when unlabelled), or
    None when the source does not label that task."""
    if not (data.stratify and data.stratify in tasks):
        return None
    col = tasks[data.stratify].column
    check_columns(table, {data.stratify: col})
    return [MISSING_STRATUM if is_missing(v) else label_str(v) for v in table.frame[col]]


def fold_positions(data: DataConfig, table: LabelTable, tasks: dict[str, Task], idx: dict[str, np.ndarray], *,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(pool, fold): the positions of the source's train and val rows (int64 [P], sorted), which the
    folds are drawn from, and each one's fold (int64 [P], 1..data.folds; `fold_numbers`, stratified
    on `data.stratify`, seeded by `seed`). ConfigError when data.folds is more than the pool's rows,
    or, stratified, more than the rows of its rarest class."""
    k = data.folds
    pool = np.sort(np.concatenate([idx["train"], idx.get("val", np.zeros(0, np.int64))])).astype(np.int64)
    strata = _strata(data, table, tasks)
    strata = None if strata is None else [strata[i] for i in pool]
    drawn = "its train and val rows, which the folds are drawn from; the test rows stay out"
    if k > len(pool):
        raise bad_value("data.folds", k, f"at most {len(pool)}: each fold needs a validation row, and "
                                         f"{quoted(table.source)} has {len(pool)} rows to draw from ({drawn})")
    if strata is not None:
        counts = Counter(strata)
        counts.pop(MISSING_STRATUM, None)
        rarest = min(counts, key=lambda s: (counts[s], s), default=None)
        if rarest is not None and k > counts[rarest]:
            raise bad_value("data.folds", k, f"at most {counts[rarest]} with data.stratify={data.stratify}: each "
                                             f"fold needs a row of every class, and class {rarest!r} has "
                                             f"{counts[rarest]} rows in {quoted(table.source)} ({drawn})")
    return pool, fold_numbers(len(pool), k, seed, strata)


def _sources(data: DataConfig, tasks: dict[str, Task], console: Console | None) -> list[Source]:
    """The shared train table for tasks without `table`, then one source per distinct per-task table."""
    own: dict[str, list[str]] = {}
    for name, task in tasks.items():
        if task.config.table:
            own.setdefault(task.config.table, []).append(name)
    shared = [name for name in tasks if name not in {n for names in own.values() for n in names}]
    sources = []
    if shared:
        if not data.train_table:
            raise DataError(f"task(s) {', '.join(shared)} have no table: set data.train_table or tasks.<name>.table")
        table = read_source_table(data, data.train_table, "data.train_table")
        check_columns(table, {n: tasks[n].column for n in shared})
        sources.append(Source(table, shared, main=True))
    elif data.train_table and console is not None:
        console.print(f"data.train_table {escape(quoted(data.train_table))} is not used: every task has its own table",
                      soft_wrap=True)
    for path, names in own.items():
        # an image folder's class names label its (single) task
        table = read_source_table(data, path, f"tasks.{names[0]}.table",
                                  folder_task=tasks[names[0]].column if len(names) == 1 else None)
        check_columns(table, {n: tasks[n].column for n in names})
        sources.append(Source(table, names, main=False))
    return sources


def build_splits(data: DataConfig, tasks: dict[str, Task], *, seed: int,
                 console: Console | None = None) -> DataSplits:
    """Read the tables, split each source, infer missing class lists from train, encode every split.

    `data`: the config's data section; `seed`: training.seed (random splits). With several
    sources (per-task tables) each split concatenates the sources' parts; a row is labelled only
    for the tasks of its own source."""
    sources = _sources(data, tasks, console)
    # data.split_column must be in some table (a typo is an error); tables without it split at random
    need = not any(data.split_column in s.table.frame.columns for s in sources)
    parts = [split_source(data, s.table, {n: tasks[n] for n in s.tasks}, seed=seed, main=s.main,
                          need_split_column=need) for s in sources]
    for source, part in zip(sources, parts):
        train = part["train"]  # columns were checked when the source was read
        for name in source.tasks:
            task = tasks[name]
            if task.fit_classes(train.frame[task.column], train.source) and console is not None:
                shown = ", ".join(task.classes[:30]) + (" ..." if len(task.classes) > 30 else "")
                where = "the training table" if len(sources) == 1 else quoted(train.source)
                console.print(f"[bold]{name}[/] ({task.type}): {len(task.classes)} classes inferred from {escape(where)}: "
                              f"{escape(shown)}", soft_wrap=True)
            if task.type == "multiclass" and task.num_outputs < 2:
                raise DataError(f"task '{name}' has a single class ({task.classes[0]!r}) in {quoted(train.source)}; "
                                f"a multiclass task needs at least two (declare them in tasks.{name}.classes)")
    encoded: dict[str, EncodedSplit | None] = {}
    for split in ("train", "val", "test"):
        pieces = [encode_table(part[split], tasks, only=source.tasks)
                  for source, part in zip(sources, parts) if part[split] is not None]
        encoded[split] = concat_splits(pieces) if pieces else None
    train_sources = {n: part["train"].source for source, part in zip(sources, parts) for n in source.tasks}
    for name, count in encoded["train"].labelled().items():
        if count == 0:
            raise DataError(f"task '{name}' has no labelled row in the training split ({quoted(train_sources[name])})")
    return DataSplits(encoded["train"], encoded["val"], encoded["test"])


@dataclass
class FoldPool:
    """One source's rows that `data.folds` draws from: positions in `source.table` and their folds."""

    source: Source
    pool: np.ndarray  # int64 [P]: row positions (0-based) of the source's train and val rows
    fold: np.ndarray  # int64 [P]: fold 1..data.folds of each


def fold_pools(data: DataConfig, tasks: dict[str, Task], *, seed: int) -> list[FoldPool]:
    """Every source's fold assignment, as `build_splits` draws it for each fold (`data.folds` set).
    Reads the tables; ConfigError when data.folds does not fit a source's rows (see `fold_positions`)."""
    sources = _sources(data, tasks, None)
    need = not any(data.split_column in s.table.frame.columns for s in sources)
    out = []
    for s in sources:
        own = {n: tasks[n] for n in s.tasks}
        idx = split_positions(data, s.table, own, seed=seed, main=s.main, need_split_column=need)
        out.append(FoldPool(s, *fold_positions(data, s.table, own, idx, seed=seed)))
    return out


def fold_frame(pools: list[FoldPool]) -> pd.DataFrame:
    """folds.csv: one row per row folds are drawn from: table, row (1-based in its table), image, fold."""
    frames = [pd.DataFrame({"table": p.source.table.source, "row": p.source.table.frame.index.to_numpy()[p.pool],
                            "image": p.source.table.frame[IMAGE].to_numpy()[p.pool], "fold": p.fold})
              for p in pools]
    return pd.concat(frames, ignore_index=True)
