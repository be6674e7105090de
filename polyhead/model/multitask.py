"""MultiTaskModel: one backbone, one head per task.

    image uint8 [B, C, H, W] (or float already in [0, 1])
      -> normalise with the model's own mean/std buffers
      -> backbone.forward_features -> features [B, F]
         (with a branch point: the shared trunk's map [B, C, h, w], pooled by each branch)
      -> heads[task] -> logits [B, K_task]

The model normalises its own input so that training, `predict`, the bundle and
an exported graph all take raw pixels the same way.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from polyhead.model.heads import build_head


class MultiTaskModel(nn.Module):
    def __init__(self, backbone: nn.Module, task_outputs: dict[str, int], *, mean: Sequence[float],
                 std: Sequence[float], head_hidden: Sequence[int] = (), head_dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.num_features = int(backbone.num_features)  # heads are sized from the backbone, not from config
        self.heads = nn.ModuleDict({
            name: build_head(self.num_features, k, hidden=list(head_hidden), dropout=head_dropout)
            for name, k in task_outputs.items()
        })
        self.register_buffer("input_mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("input_std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.channels_last = False

    def use_channels_last(self, enabled: bool = True) -> "MultiTaskModel":
        """Keep conv activations in NHWC. On CPUs this makes convolutions and BatchNorm several
        times faster (oneDNN's preferred layout); it changes no result beyond rounding."""
        self.channels_last = enabled
        return self.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 [B, C, H, W] in 0..255 (or float in 0..1) -> normalised float."""
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        x = (x - self.input_mean) / self.input_std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Shared representation: pooled features [B, F]; with a branch point the shared trunk's
        map [B, C, h, w], which `forward_heads` passes through each branch before its heads."""
        return self.backbone.forward_features(self.normalize(x))

    def forward_heads(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Shared representation -> {task: logits [B, K]}. Gradient-based weighting methods take
        per-task gradients with respect to `features`.

        Without a branch point `features` is the pooled [B, F]; with one it is the trunk's map
        [B, C, h, w], and each group's branch pools it before that group's heads."""
        groups = getattr(self.backbone, "groups", None)
        if not groups:
            return {name: head(features) for name, head in self.heads.items()}
        out = {}
        for group, tasks in groups.items():
            pooled = self.backbone.branch_features(group, features)
            for name in tasks:
                out[name] = self.heads[name](pooled)
        return {name: out[name] for name in self.heads}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_heads(self.forward_features(x))

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task's loss depends on: the backbone, or its trunk when branched."""
        if hasattr(self.backbone, "shared_parameters"):
            return self.backbone.shared_parameters()
        return [p for p in self.backbone.parameters() if p.requires_grad]

    def set_backbone_trainable(self, trainable: bool) -> None:
        """Freeze or unfreeze the backbone. Frozen BatchNorm layers also stop updating statistics."""
        for p in self.backbone.parameters():
            p.requires_grad_(trainable)
        self.backbone.train(trainable and self.training)
