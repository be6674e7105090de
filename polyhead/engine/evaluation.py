"""Evaluation and prediction loops (plain PyTorch: usable without Lightning).

`OutputCollector` keeps, per task, the probabilities and targets of the rows
that carry a label for that task, so each task is scored on its own rows only.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from polyhead.data.dataset import Batch
from polyhead.engine.precision import autocast
from polyhead.tasks import Task


class OutputCollector:
    """Accumulates {task: (probs [N, K], targets, index [N])} over batches, masked per task.

    `index` is each labelled row's `batch["index"]` (its position in the split), so plots can
    show the images behind the outputs. `deferred=True` (the training step) keeps everything on
    the model's device and applies the masks only in `outputs()`: no host sync per batch;
    `max_rows` then bounds the rows kept (the first ones), so an epoch's memory stays small.
    """

    def __init__(self, tasks: dict[str, Task], *, deferred: bool = False, max_rows: int | None = None):
        self.tasks, self.deferred, self.max_rows = tasks, deferred, max_rows
        self.reset()

    def reset(self) -> None:
        self._probs: dict[str, list[torch.Tensor]] = {t: [] for t in self.tasks}
        self._targets: dict[str, list[torch.Tensor]] = {t: [] for t in self.tasks}
        self._index: dict[str, list[torch.Tensor]] = {t: [] for t in self.tasks}
        self._masks: dict[str, list[torch.Tensor]] = {t: [] for t in self.tasks}
        self.rows = 0  # rows seen (labelled or not)

    def update(self, logits: dict[str, torch.Tensor], batch: Batch) -> None:
        size = next(iter(logits.values())).shape[0] if logits else 0
        if self.max_rows is not None and self.rows >= self.max_rows:
            return
        index = batch.get("index")
        index = torch.arange(self.rows, self.rows + size) if index is None else index
        self.rows += size
        for name, task in self.tasks.items():
            mask = batch["mask"][name].bool()
            probs = task.activate(logits[name].detach()).float()
            if self.deferred:  # masked once in outputs(); indexing by a mask now would sync
                self._masks[name].append(mask)
                self._probs[name].append(probs)
                self._targets[name].append(batch["targets"][name].detach())
                self._index[name].append(index.to(mask.device))
            elif mask.any():
                self._probs[name].append(probs[mask].cpu())
                self._targets[name].append(batch["targets"][name][mask].detach().cpu())
                self._index[name].append(index.to(mask.device)[mask].cpu().long())

    def labelled_outputs(self) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """{task: (probs [N, K] float, targets, index [N] int64)} of the labelled rows, on the CPU."""
        out = {}
        for name, task in self.tasks.items():
            if self._probs[name]:
                p, t, i = (torch.cat(x[name]) for x in (self._probs, self._targets, self._index))
                if self.deferred:
                    m = torch.cat(self._masks[name])
                    p, t, i = p[m], t[m], i[m]
                out[name] = (p.cpu(), t.cpu(), i.cpu().long())
            else:
                k = task.num_outputs
                out[name] = (torch.zeros(0, k), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
        return out

    def outputs(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{task: (probs [N, K], targets)} of the labelled rows."""
        return {name: (p, t) for name, (p, t, _) in self.labelled_outputs().items()}

    def compute(self) -> dict[str, dict[str, Any]]:
        return {name: self.tasks[name].metrics(p, t) for name, (p, t) in self.outputs().items()}


def progress_bar(enabled: bool = True) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    disable=not enabled, transient=True)


@torch.inference_mode()
def evaluate_model(model: torch.nn.Module, tasks: dict[str, Task], loader: Iterable[Batch], *,
                   device: torch.device | str = "cpu", description: str = "evaluating",
                   show_progress: bool = True, return_outputs: bool = False):
    """Run the model over a labelled loader; returns {task: metrics} (each with `n` scored rows).

    `return_outputs=True` returns (metrics, outputs) with outputs = {task: (probs [N, K], targets,
    index [N] positions in the split)} of the labelled rows (the input of polyhead.reports)."""
    device = torch.device(device)
    model.eval().to(device)
    collector = OutputCollector(tasks)
    with progress_bar(show_progress) as bar:
        job = bar.add_task(description, total=len(loader) if hasattr(loader, "__len__") else None)
        for batch in loader:
            with autocast(device):
                logits = model(batch["image"].to(device, non_blocking=True))
            collector.update({k: v.float() for k, v in logits.items()}, batch)
            bar.advance(job)
    metrics = collector.compute()
    return (metrics, collector.labelled_outputs()) if return_outputs else metrics


def _probabilities(model, tasks: dict[str, Task], images: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
    """images uint8 [B, C, H, W] -> {task: probabilities float [B, K] on the CPU}, from a torch model
    or from a runner (anything with `probabilities(float32 ndarray in 0..1)`, e.g. the onnxruntime
    OnnxRunner of polyhead.export.runtime)."""
    if hasattr(model, "probabilities"):
        x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
        return {name: torch.from_numpy(p) for name, p in model.probabilities(x.numpy()).items()}
    with autocast(device):
        logits = model(images.to(device, non_blocking=True))
    return {name: task.activate(logits[name].float()).cpu() for name, task in tasks.items()}


@torch.inference_mode()
def predict_batches(model, tasks: dict[str, Task], loader: Iterable[Batch], *, device: torch.device | str = "cpu",
                    show_progress: bool = True, total: int | None = None) -> Iterator[tuple[Batch, dict[str, list]]]:
    """Yield one dict of prediction columns per batch (streaming: memory does not grow with N).

    `model`: a torch model, or a runner with `probabilities` (see `_probabilities`). `total`: the
    batches to come, for the progress bar (default: `len(loader)` where it has one)."""
    device = torch.device(device)
    if isinstance(model, torch.nn.Module):
        model.eval().to(device)
    with progress_bar(show_progress) as bar:
        total = total if total is not None else len(loader) if hasattr(loader, "__len__") else None
        job = bar.add_task("predicting", total=total)
        for batch in loader:
            probs = _probabilities(model, tasks, batch["image"], device)
            columns: dict[str, list] = {}
            for name, task in tasks.items():
                columns.update(task.decode(probs[name]))
            yield batch, columns
            bar.advance(job)
