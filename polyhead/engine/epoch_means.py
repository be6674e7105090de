"""Epoch means of what each training step used: task weights, learning rates, inactive steps.

A step's task weights are a device tensor [T]; adding them up on the device and reading the sum
once at the epoch's end avoids a host sync per step. Learning rates are Python floats already.
"""

from __future__ import annotations

import torch


class EpochMeans:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.weights: torch.Tensor | None = None  # float32 [T], sum over the epoch's steps
        self.lrs: dict[str, float] = {}  # group name -> sum
        self.steps = 0
        self.inactive = 0  # steps in which the weighting method had nothing to act on

    def add(self, weights: torch.Tensor, lrs: dict[str, float], active: bool) -> None:
        """One optimizer step: the task weights [T] and per-group learning rates it used."""
        w = weights.detach().float()
        self.weights = w.clone() if self.weights is None else self.weights + w
        for name, lr in lrs.items():
            self.lrs[name] = self.lrs.get(name, 0.0) + float(lr)
        self.steps += 1
        self.inactive += not active

    def means(self, tasks: list[str], *, inactive: bool) -> dict[str, float]:
        """{"lr/<group>": mean, "weights/<task>": mean (, "weighting/inactive_steps": count)};
        {} when the epoch took no step."""
        if not self.steps:
            return {}
        out = {f"lr/{name}": total / self.steps for name, total in self.lrs.items()}
        out.update({f"weights/{t}": w for t, w in zip(tasks, (self.weights / self.steps).tolist())})
        if inactive:
            out["weighting/inactive_steps"] = float(self.inactive)
        return out
