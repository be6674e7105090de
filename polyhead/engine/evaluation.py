"""Evaluation and prediction loops (plain PyTorch: usable without Lightning).

`OutputCollector` keeps, per task, the probabilities and targets of the rows
that carry a label for that task, so each task is scored on its own rows only.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Iterable

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from polyhead.tasks import Task


class OutputCollector:
    """Accumulates {task: (probs [N, K], targets)} over batches, masked per task."""

    def __init__(self, tasks: dict[str, Task]):
        self.tasks = tasks
        self.reset()

    def reset(self) -> None:
        self._probs: dict[str, list[torch.Tensor]] = {t: [] for t in self.tasks}
        self._targets: dict[str, list[torch.Tensor]] = {t: [] for t in self.tasks}

    def update(self, logits: dict[str, torch.Tensor], batch: dict) -> None:
        for name, task in self.tasks.items():
            mask = batch["mask"][name].bool()
            if mask.any():
                self._probs[name].append(task.activate(logits[name][mask]).detach().float().cpu())
                self._targets[name].append(batch["targets"][name][mask].detach().cpu())

    def outputs(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        out = {}
        for name, task in self.tasks.items():
            if self._probs[name]:
                out[name] = (torch.cat(self._probs[name]), torch.cat(self._targets[name]))
            else:
                k = task.num_outputs
                out[name] = (torch.zeros(0, k), torch.zeros(0, dtype=torch.long))
        return out

    def compute(self) -> dict[str, dict[str, Any]]:
        return {name: self.tasks[name].metrics(p, t) for name, (p, t) in self.outputs().items()}


def progress_bar(enabled: bool = True) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    disable=not enabled, transient=True)


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    return nullcontext()


@torch.inference_mode()
def evaluate_model(model: torch.nn.Module, tasks: dict[str, Task], loader: Iterable, *,
                   device: torch.device | str = "cpu", description: str = "evaluating",
                   show_progress: bool = True) -> dict[str, dict[str, Any]]:
    """Run the model over a labelled loader; returns {task: metrics} (each with `n` scored rows)."""
    device = torch.device(device)
    model.eval().to(device)
    collector = OutputCollector(tasks)
    with progress_bar(show_progress) as bar:
        job = bar.add_task(description, total=len(loader) if hasattr(loader, "__len__") else None)
        for batch in loader:
            with _autocast(device):
                logits = model(batch["image"].to(device, non_blocking=True))
            collector.update({k: v.float() for k, v in logits.items()}, batch)
            bar.advance(job)
    return collector.compute()


@torch.inference_mode()
def predict_batches(model: torch.nn.Module, tasks: dict[str, Task], loader: Iterable, *,
                    device: torch.device | str = "cpu", show_progress: bool = True):
    """Yield one dict of prediction columns per batch (streaming: memory does not grow with N)."""
    device = torch.device(device)
    model.eval().to(device)
    with progress_bar(show_progress) as bar:
        job = bar.add_task("predicting", total=len(loader) if hasattr(loader, "__len__") else None)
        for batch in loader:
            with _autocast(device):
                logits = model(batch["image"].to(device, non_blocking=True))
            columns: dict[str, list] = {}
            for name, task in tasks.items():
                columns.update(task.decode(task.activate(logits[name].float()).cpu()))
            yield batch, columns
            bar.advance(job)
