"""Fixed weightings: `equal` (plain sum) and `static` (user-given weight per task)."""

from __future__ import annotations

import torch

from polyhead.errors import ConfigError
from polyhead.weighting.base import WeightingMethod, register_weighting


@register_weighting
class Equal(WeightingMethod):
    """Sum of the task losses present in the batch (tasks with no labelled row contribute nothing)."""

    name = "equal"

    def combine(self, losses):
        return torch.stack(list(losses.values())).sum()


@register_weighting
class Static(WeightingMethod):
    """Weighted sum with fixed weights: `tasks.<name>.weight`, or `training.weighting_args.weights.<name>`."""

    name = "static"
    arg_names = ("weights",)

    def __init__(self, tasks, weights: dict | None = None):
        super().__init__(tasks)
        weights = dict(weights or {})
        self.register_buffer("weights", torch.tensor([float(weights.get(t, 1.0)) for t in self.tasks]))

    @classmethod
    def check_args(cls, args, tasks):
        super().check_args(args, tasks)
        for t, w in dict(args.get("weights") or {}).items():
            if t not in tasks:
                raise ConfigError(f"training.weighting_args.weights names unknown task '{t}'; tasks: {', '.join(tasks)}")
            if float(w) < 0:
                raise ConfigError(f"training.weighting_args.weights.{t} must be >= 0, got {w}")

    def combine(self, losses):
        return torch.stack([self.weights[i] * loss for i, loss in zip(self.positions(losses), losses.values())]).sum()

    def weight_vector(self):
        return self.weights
