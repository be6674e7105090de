"""New heads on frozen shared features: the features of every image computed once (one pass of the
backbone, cached as a safetensors file), then epochs over the cached tensor only (`add-task`).

    images ─► frozen backbone (eval mode, one pass) ─► features [N, F] ─► features/<split>.safetensors
    features [N, F] ─► new heads ─► {task: logits} ─► Task.loss (masked) ─► summed ─► AdamW step
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from polyhead.data.dataset import EncodedSplit
from polyhead.engine.evaluation import progress_bar
from polyhead.engine.precision import autocast
from polyhead.model.heads import build_head
from polyhead.search.embeddings import pooled_features
from polyhead.tasks import Task


@torch.inference_mode()
def cache_features(model: nn.Module, loader, file: Path, *, device: torch.device, description: str,
                   show_progress: bool = True) -> torch.Tensor:
    """One pass of `model` over `loader` (a loader over a split, in the split's order, no augmentation)
    -> pooled shared features float32 [N, F], written to `file` and read back from it."""
    model.eval().to(device)
    chunks = []
    with progress_bar(show_progress) as bar:
        job = bar.add_task(description, total=len(loader))
        for batch in loader:
            with autocast(device):
                chunks.append(pooled_features(model, batch["image"].to(device, non_blocking=True)).cpu())
            bar.advance(job)
    file.parent.mkdir(parents=True, exist_ok=True)
    save_file({"features": torch.cat(chunks).contiguous()}, str(file))
    return load_file(str(file))["features"]


@dataclass
class LabelledFeatures:
    """Cached features of one split and the new tasks' targets and masks, aligned by row."""

    x: torch.Tensor  # float [N, F]
    targets: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]  # bool [N]

    @classmethod
    def of(cls, features: torch.Tensor, split: EncodedSplit, tasks: dict[str, Task]) -> "LabelledFeatures":
        return cls(features, {n: torch.as_tensor(split.targets[n]) for n in tasks},
                   {n: torch.as_tensor(split.masks[n]).bool() for n in tasks})

    def to(self, device: torch.device) -> "LabelledFeatures":
        return LabelledFeatures(self.x.to(device), {n: t.to(device) for n, t in self.targets.items()},
                                {n: m.to(device) for n, m in self.masks.items()})


def build_heads(tasks: dict[str, Task], in_features: int, *, hidden=(), dropout: float = 0.0) -> nn.ModuleDict:
    return nn.ModuleDict({n: build_head(in_features, t.num_outputs, hidden=list(hidden), dropout=dropout)
                          for n, t in tasks.items()})


def _loss(heads: nn.ModuleDict, tasks: dict[str, Task], data: LabelledFeatures, rows=slice(None)) -> torch.Tensor | None:
    """Sum over the tasks of each task's mean loss on its labelled rows among `rows` (None: none labelled)."""
    x = data.x[rows]
    losses = [task.loss(heads[n](x), data.targets[n][rows], data.masks[n][rows]) for n, task in tasks.items()]
    losses = [loss for loss in losses if loss is not None]
    return torch.stack(losses).sum() if losses else None


def train_heads(heads: nn.ModuleDict, tasks: dict[str, Task], train: LabelledFeatures, val: LabelledFeatures | None,
                *, epochs: int, lr: float, weight_decay: float, batch_size: int, seed: int) -> list[dict]:
    """AdamW on the heads (summed task losses, cosine learning rate), `epochs` passes over the cached
    training features in a seeded order. With validation rows the heads end at the epoch of the lowest
    validation loss. Returns one history row per epoch (epoch counted from 1, train/loss, val/loss)."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(heads.parameters(), lr=lr, weight_decay=weight_decay)
    steps = max(1, epochs * math.ceil(len(train.x) / batch_size))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    history, best = [], (math.inf, None)
    for epoch in range(1, epochs + 1):
        heads.train()
        order, total, count = torch.randperm(len(train.x), generator=generator).to(train.x.device), 0.0, 0
        for start in range(0, len(order), batch_size):
            loss = _loss(heads, tasks, train, order[start:start + batch_size])
            if loss is None:
                continue
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total, count = total + float(loss.detach()), count + 1
        row = {"epoch": epoch, "train/loss": total / max(count, 1)}
        if val is not None:
            heads.eval()
            with torch.no_grad():
                val_loss = _loss(heads, tasks, val)
            if val_loss is not None:
                row["val/loss"] = float(val_loss)
                if row["val/loss"] < best[0]:
                    best = (row["val/loss"], copy.deepcopy(heads.state_dict()))
        history.append(row)
    if best[1] is not None:
        heads.load_state_dict(best[1])
    heads.eval()
    return history


@torch.no_grad()
def head_metrics(heads: nn.ModuleDict, tasks: dict[str, Task], data: LabelledFeatures) -> dict[str, dict]:
    """{task: metrics} of the heads on the labelled rows of a split (as `evaluate` scores them)."""
    heads.eval()
    out = {}
    for name, task in tasks.items():
        mask = data.masks[name]
        probs = task.activate(heads[name](data.x[mask]).float()).cpu()
        out[name] = task.metrics(probs, data.targets[name][mask].cpu())
    return out
