"""Config -> the tasks and their encoded splits: the one place `fit`, `inspect-data` and
`validate-data` turn a config's `tasks` and `data` sections into objects, in the same order
(light: no Lightning, so the data verbs start quickly)."""

from __future__ import annotations

from rich.console import Console

from polyhead.config.schema import Config
from polyhead.data.splits import DataSplits, build_splits
from polyhead.data.validation import check_before_training
from polyhead.tasks import Task, build_tasks


def build_data(cfg: Config, console: Console | None = None, *,
               check_images: bool = True) -> tuple[dict[str, Task], DataSplits]:
    """{name: Task} and the DataSplits built from them (classes inferred on train, every split
    encoded), then, with `check_images`, the image check training runs first (`data.validate`;
    `data.on_bad_image` stops with a DataError or drops the rows). `validate-data` checks the
    images itself (`check_images=False`)."""
    tasks = build_tasks(cfg.tasks)
    splits = build_splits(cfg.data, tasks, seed=cfg.training.seed, console=console)
    if check_images:
        splits = check_before_training(cfg.data, tasks, splits, console, progress=cfg.training.progress_bar,
                                       output_dir=cfg.output_dir)
    return tasks, splits
