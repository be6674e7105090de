"""Every check a config gets before any work, in one place; each registry does its own part.

    schema (ranges, fixed choices)     polyhead.config.validation.validate
    plugins (imported, then checked)   polyhead.plugins.load_plugins
    task types                         polyhead.tasks.build_task (TASK_TYPES)
    backbone name                      polyhead.model.backbones.check_backbone
    branch groups                      polyhead.model.branching.resolve_groups
    weighting method and its args      polyhead.weighting.check_weighting
    trackers                           polyhead.tracking.check_trackers
    accelerator and devices            polyhead.engine.devices.check_training_devices
    training.monitor                   the metrics the tasks produce (Task.scalar_metrics)

`check_config` runs them all; `polyhead train` calls it before `--print-config`, `fit` before
it creates anything, `compare` before its first run. Whether this machine has the device is
checked by `fit` (`devices.training_devices`), so a config still prints anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from polyhead.config.loading import load_config
from polyhead.config.schema import Config, TaskConfig
from polyhead.config.validation import validate
from polyhead.engine.devices import check_training_devices
from polyhead.errors import one_of
from polyhead.model.backbones import check_backbone
from polyhead.model.branching import resolve_groups
from polyhead.plugins import load_plugins
from polyhead.tasks import TASK_TYPES, build_tasks
from polyhead.tracking import check_trackers
from polyhead.weighting import check_weighting


def monitorable_metrics(tasks: dict[str, TaskConfig], nonfinite: str = "error") -> list[str]:
    """The scalars training logs (engine/module.py) that `training.monitor` may name:
    train/loss, val/loss, and per task train/<task>/loss, train/<task>/<main metric>,
    val/<task>/loss and val/<task>/<metric> for each of its scalar metrics."""
    names = ["val/loss", "train/loss"]
    for name, task in tasks.items():
        cls = TASK_TYPES[task.type]
        names += [f"val/{name}/loss", *(f"val/{name}/{m}" for m in cls.scalar_metrics(task)),
                  f"train/{name}/loss", f"train/{name}/{cls.main_metric}"]
    if nonfinite == "skip":
        names.append("train/skipped_batches")
    return names


def check_monitor(cfg: Config) -> None:
    one_of("training.monitor", cfg.training.monitor,
           monitorable_metrics(cfg.tasks, cfg.training.on_nonfinite_loss))


def check_config(cfg: Config) -> None:
    """Raise one ConfigError line for the first problem; see the module docstring for the order.
    The config's plugins are imported first (their registrations are what the checks look up)."""
    validate(cfg)
    load_plugins(cfg.plugins)
    build_tasks(cfg.tasks)
    check_backbone(cfg.model.backbone)
    if cfg.model.branch_point:
        resolve_groups(list(cfg.tasks), cfg.model.branch_groups)
    check_weighting(cfg.training.weighting, cfg.training.weighting_args, list(cfg.tasks))
    check_trackers(list(cfg.tracking.trackers))
    check_training_devices(cfg.training.accelerator, cfg.training.devices, cfg.training.num_nodes,
                           cfg.training.strategy)
    check_monitor(cfg)


def load_checked_config(config_path: str | Path | None = None, overrides: Iterable[str] = (),
                        notes: list[str] | None = None, plugins: Iterable[str] = ()) -> Config:
    """`load_config` (file, presets, overrides, schema) followed by `check_config`. `plugins`
    (e.g. from --plugin) are added to the config's own."""
    cfg = load_config(config_path, overrides, notes)
    cfg.plugins = [*cfg.plugins, *(p for p in plugins if p not in cfg.plugins)]
    check_config(cfg)
    return cfg
