"""Training callbacks that are polyhead's own (Lightning provides checkpoints and early stopping)."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping

from polyhead.config.loading import to_yaml
from polyhead.config.schema import Config
from polyhead.data.seeds import GLOBAL_RNG, derive_seed
from polyhead.engine.checkpoint_io import disk_full_guard
from polyhead.engine.progress import epoch_number


class EpochEnd(L.Callback):
    """Runs the module's epoch-end updates; listed before the checkpoint callbacks (Lightning
    calls callbacks before the module's own hook, which would be too late for the checkpoint)."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.end_epoch()


class EpochSeed(L.Callback):
    """Reseeds torch (CPU and CUDA), numpy and random at each training epoch's start from (seed, epoch),
    so dropout and random weighting methods draw the same numbers on a resumed run as on an
    uninterrupted one (the data order and augmentation are seeded by the sampler and dataset)."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch_seed = derive_seed(self.seed, trainer.current_epoch, stream=GLOBAL_RNG)
        random.seed(epoch_seed)
        np.random.seed(epoch_seed & 0xFFFFFFFF)  # numpy's legacy seed takes 32 bits
        torch.manual_seed(epoch_seed)


class EpochHistory(L.Callback):
    """Writes `history.csv`: one row per epoch with every logged loss, metric, learning rate and task weight
    (the last two: means over the epoch's steps). Its `epoch` column counts from 1, as every epoch shown
    to users; `step` is the optimizer steps so far."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row = {"epoch": epoch_number(trainer.current_epoch), "step": trainer.global_step}
        for key, value in sorted(trainer.callback_metrics.items()):
            try:
                row[key] = float(value)
            except (TypeError, ValueError):
                continue
        self.rows.append(row)
        if trainer.is_global_zero:  # several training processes: one writes
            self._write()

    def _write(self) -> None:
        columns: list[str] = []
        for row in self.rows:
            columns += [k for k in row if k not in columns]
        tmp = self.path.with_suffix(".csv.tmp")
        with disk_full_guard(self.path, self.path.parent):  # the run folder holds history.csv
            with open(tmp, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=columns)
                writer.writeheader()
                writer.writerows(self.rows)
            tmp.replace(self.path)

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = list(state_dict.get("rows", []))


class SaveConfigOnStart(L.Callback):
    """Writes the run's config.yaml when training starts, after Lightning has loaded the checkpoint,
    so a resume that fails before that leaves the saved config as it was. A run resumed after
    its last epoch trains no further (no train start): the config is written at fit end."""

    def __init__(self, path: Path, cfg: Config):
        self.path, self.text = Path(path), to_yaml(cfg)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self.path.write_text(self.text)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self.path.write_text(self.text)


class ConfiguredEarlyStopping(EarlyStopping):
    """Lightning's EarlyStopping, whose patience stays the configured one on resume (Lightning's
    own restores the checkpoint's, which would silently ignore a changed
    training.early_stopping.patience)."""

    def load_state_dict(self, state_dict: dict) -> None:
        patience = self.patience
        super().load_state_dict(state_dict)
        self.patience = patience
