"""What `polyhead train` shows while it trains.

On an interactive terminal or in a notebook (with `training.progress_bar`): Lightning's live Rich
bar, its epochs counted from 1 ("Epoch 1/3 ... Epoch 3/3"). Anywhere else (stdout is a log file,
`nohup`, CI) or with `training.progress_bar=false`: one plain line per epoch, flushed at once, e.g.

    epoch 2/10 | 12.4 s | 1030 img/s | train/loss 0.512 | val/loss 0.601 | val/quadrant/accuracy 0.812 | val/red/f1 0.700 | ETA 1m39s

(values under the names history.csv gives them; each task's main metric on the validation split,
or on the training split without one; the ETA assumes every epoch left takes this run's mean).

Epochs shown to users (these lines, the bar, history.csv, messages) are 1-based: epoch N is
Lightning's `current_epoch` N - 1.
"""

from __future__ import annotations

import time

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar
from rich.console import Console

from polyhead.data.dataset import Batch


def epoch_number(current_epoch: int) -> int:
    """The 1-based epoch users see, from Lightning's 0-based `current_epoch`."""
    return int(current_epoch) + 1


class EpochProgressBar(RichProgressBar):
    """Lightning's Rich bar, reading "Epoch 1/3" where Lightning writes "Epoch 0/2"."""

    def _get_train_description(self, current_epoch: int) -> str:  # Lightning's hook for that text
        text = f"Epoch {epoch_number(current_epoch)}"
        if self.trainer.max_epochs is not None and self.trainer.max_epochs >= 0:
            text += f"/{self.trainer.max_epochs}"
        # as Lightning does: padded to the validation bar's text, so the bar does not jump
        return f"{text:{len(self.validation_description)}}"


def duration(seconds: float) -> str:
    """12.4 -> "12.4 s", 99 -> "1m39s", 5400 -> "1h30m"."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


class EpochLines(L.Callback):
    """One plain line per epoch (see the module docstring) at the end of each training epoch, after
    validation, when every metric of the epoch is logged.

    `main_metrics`: {task: its main metric}, e.g. {"quadrant": "accuracy", "red": "f1"}."""

    def __init__(self, console: Console, main_metrics: dict[str, str]):
        self.console = console
        self.main_metrics = dict(main_metrics)
        self.epoch_seconds: list[float] = []  # this session's epochs, for the ETA
        self._start = self._train_end = 0.0
        self._images = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = self._train_end = time.perf_counter()
        self._images = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch: Batch, batch_idx: int) -> None:
        self._images += int(batch["image"].shape[0])
        self._train_end = time.perf_counter()  # images/s counts the training batches, not validation

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        seconds = time.perf_counter() - self._start
        self.epoch_seconds.append(seconds)
        self.console.print(self.line(trainer, seconds), soft_wrap=True, highlight=False, markup=False)
        self.console.file.flush()  # a log file sees the line now, not when a buffer fills

    def line(self, trainer: L.Trainer, seconds: float) -> str:
        metrics = trainer.callback_metrics
        epoch, total = epoch_number(trainer.current_epoch), trainer.max_epochs
        train_seconds = self._train_end - self._start
        parts = [f"epoch {epoch}/{total}", duration(seconds),
                 f"{self._images / train_seconds:.0f} img/s" if train_seconds > 0 else "- img/s"]
        parts += [f"{key} {float(metrics[key]):.4g}" for key in ("train/loss", "val/loss") if key in metrics]
        for task, metric in self.main_metrics.items():
            key = next((k for k in (f"val/{task}/{metric}", f"train/{task}/{metric}") if k in metrics), None)
            if key is not None:
                parts.append(f"{key} {float(metrics[key]):.3f}")
        remaining = total - epoch if total is not None and total > 0 else 0
        if remaining > 0:
            mean = sum(self.epoch_seconds) / len(self.epoch_seconds)
            parts.append(f"ETA {duration(mean * remaining)}")
        return " | ".join(parts)


def progress_callbacks(live: bool, console: Console, main_metrics: dict[str, str]) -> list[L.Callback]:
    """The live bar when `live` (a terminal and training.progress_bar), else the plain lines."""
    return [EpochProgressBar(leave=True)] if live else [EpochLines(console, main_metrics)]
