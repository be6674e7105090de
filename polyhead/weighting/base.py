"""Loss-combination ("weighting") methods and their registry.

A method turns per-task losses into parameter gradients. Loss-based methods
only implement `combine` (a weighted sum). Gradient-based methods override
`backward` and use what the training step hands them in a `StepContext`:
the shared representation (for gradients w.r.t. the features, one backward
through the backbone) and the shared parameters (for full parameter gradients).

Methods are `nn.Module`s: learnable weights go to the optimiser and any state
(buffers, parameters) is saved in checkpoints with the rest of the model.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from polyhead.errors import ConfigError, one_of


@dataclass
class StepContext:
    """What a training step offers a weighting method."""

    backward: Callable[[torch.Tensor], None]  # precision-aware backward (Lightning's manual_backward)
    features: torch.Tensor | None = None  # shared representation [B, F] the losses were computed from
    shared_parameters: list[nn.Parameter] = field(default_factory=list)
    epoch: int = 0
    step: int = 0


class WeightingMethod(nn.Module):
    name: ClassVar[str] = ""
    #: "losses" (a function of the loss values), "features" (needs d loss_t / d features),
    #: or "parameters" (needs d loss_t / d shared parameters).
    requires: ClassVar[str] = "losses"
    #: accepted keys of training.weighting_args
    arg_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, tasks: list[str], **args):
        super().__init__()
        self.tasks = list(tasks)

    @classmethod
    def check_args(cls, args: dict, tasks: list[str]) -> None:
        unknown = set(args) - set(cls.arg_names)
        if unknown:
            accepted = ", ".join(cls.arg_names) or "none"
            raise ConfigError(f"unknown training.weighting_args key(s) for '{cls.name}': {', '.join(sorted(unknown))}; "
                              f"accepted: {accepted}")

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """What `polyhead methods` shows: {"name", "requires", "summary" (the docstring's first
        line), "paper" (the citation in the docstring, "" if none), "args": {arg: default}}."""
        doc = inspect.getdoc(cls) or ""
        text = " ".join(doc.split())
        cited = re.search(r'([^."]*"[^"]+",\s*.+?\b(?:19|20)\d\d)\.(?:\s|$)', text)
        defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
                    if k in cls.arg_names}
        return {"name": cls.name, "requires": cls.requires, "summary": doc.split("\n")[0],
                "paper": cited.group(1).strip() if cited else "", "args": defaults}

    def combine(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def backward(self, losses: dict[str, torch.Tensor], ctx: StepContext) -> torch.Tensor:
        """Backpropagate the combined loss; returns it (for logging)."""
        total = self.combine(losses)
        ctx.backward(total)
        return total

    def task_weights(self) -> dict[str, float]:
        """Current weight per task, logged every epoch."""
        return {t: 1.0 for t in self.tasks}

    def on_epoch_end(self, epoch_losses: dict[str, float]) -> None:
        """Hook for methods that adapt once per epoch (e.g. DWA)."""


WEIGHTINGS: dict[str, type[WeightingMethod]] = {}


def register_weighting(cls: type[WeightingMethod]) -> type[WeightingMethod]:
    WEIGHTINGS[cls.name] = cls
    return cls


def check_weighting(name: str, args: dict, tasks: list[str]) -> None:
    """`training.weighting` is a registered method and `training.weighting_args` are its arguments."""
    one_of("training.weighting", name, sorted(WEIGHTINGS))
    WEIGHTINGS[name].check_args(dict(args), tasks)


def build_weighting(name: str, tasks: list[str], args: dict | None = None) -> WeightingMethod:
    args = dict(args or {})
    check_weighting(name, args, tasks)
    return WEIGHTINGS[name](tasks, **args)
