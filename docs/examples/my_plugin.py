"""A polyhead plugin: a backbone, a task loss, a weighting method and a tracker, registered by name.

Use it with `plugins: [./my_plugin.py]` in a config, or `--plugin docs/examples/my_plugin.py`
on any polyhead command (docs/extending.md). The test suite trains with it.
"""

import json

import torch
import torch.nn.functional as F
from torch import nn

from polyhead.losses import register_loss
from polyhead.model.backbones import register_backbone
from polyhead.tracking import Tracker, register_tracker
from polyhead.weighting import WeightingMethod, register_weighting


@register_backbone("tiny_mlp")
class TinyMLP(nn.Module):
    """Flattens a (resized) image and applies one hidden layer: the backbone contract is only
    `forward_features(x) -> [B, num_features]` and the `num_features` attribute."""

    def __init__(self, *, in_chans: int = 3, drop_rate: float = 0.0, width: int = 32, side: int = 8):
        super().__init__()
        self.in_chans = in_chans
        self.num_features = width
        self.side = side
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_chans * side * side, width), nn.ReLU(),
                                 nn.Dropout(drop_rate))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(x, self.side)  # [B, C, side, side] whatever the image size
        return self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


@register_loss("poly1", types=("multiclass",))
def poly1(logits, targets, task, epsilon: float = 1.0):
    """Poly-1 loss (Leng et al. 2022): cross-entropy + epsilon * (1 - p_true); a scalar mean over
    the labelled rows (polyhead has already dropped the rows without a label)."""
    ce = F.cross_entropy(logits, targets, reduction="none")
    p_true = F.softmax(logits, dim=-1).gather(1, targets[:, None])[:, 0]
    return (ce + epsilon * (1 - p_true)).mean()


@register_weighting
class InverseCount(WeightingMethod):
    """Weighs each task by 1 / (number of tasks in the batch): the mean instead of the sum."""

    name = "mean_of_tasks"

    def combine(self, losses):
        return torch.stack(list(losses.values())).mean()


@register_tracker("jsonl")
class JsonLines(Tracker):
    """Appends each epoch's metrics to RUN/metrics.jsonl, one JSON object per line."""

    def __init__(self, **_):  # receives experiment, output_dir and tracking.jsonl.* options
        self.path = None

    def start(self, run_dir, run_name, resume_info):
        self.path = run_dir / "metrics.jsonl"
        return {"path": str(self.path)}  # saved in RUN/tracking.json, handed back on --resume

    def log_metrics(self, values, step):
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"step": step, **values}) + "\n")
