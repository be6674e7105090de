"""Loss-combination ("weighting") methods and their registry.

A method turns per-task losses into parameter gradients. Loss-based methods
only implement `combine` (a weighted sum). Gradient-based methods override
`backward` and use what the training step hands them in a `StepContext`:
the shared representation (for gradients w.r.t. the features, one backward
through the backbone) and the shared parameters (for full parameter gradients).

Methods are `nn.Module`s: any state (buffers, parameters) is saved in checkpoints with the
rest of the model. Learnable weights get their own optimizer group (`parameter_groups`): no
weight decay, and one scalar parameter per task, so that a task absent from a batch gets no
gradient at all (None, not 0) and the optimizer leaves its weight and moments alone.

A training step is: `backward(losses, ctx)`, `optimizer.step()`, then `after_step(recompute)`
with a function that recomputes the batch's per-task losses with the updated model (FAMO's
update uses it; the other methods ignore it and never call it).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable

import torch
from torch import nn

from polyhead.errors import ConfigError, PolyheadError, one_of


@dataclass
class StepContext:
    """What a training step offers a weighting method."""

    backward: Callable[[torch.Tensor], None]  # precision-aware backward (Lightning's manual_backward)
    features: torch.Tensor | None = None  # shared representation [B, F] the losses were computed from
    shared_parameters: list[nn.Parameter] = field(default_factory=list)
    epoch: int = 0
    step: int = 0
    # Several training processes (polyhead.engine.ddp_step): how many, and the element-wise sum of a
    # tensor over all of them. A method that reads per-process numbers (gradients) reduces them first,
    # so that every process computes the same weights.
    world_size: int = 1
    all_reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t


class WeightingMethod(nn.Module):
    name: ClassVar[str] = ""
    #: "losses" (a function of the loss values), "features" (needs d loss_t / d features),
    #: or "parameters" (needs d loss_t / d shared parameters).
    requires: ClassVar[str] = "losses"
    #: accepted keys of training.weighting_args
    arg_names: ClassVar[tuple[str, ...]] = ()
    #: learning rate of the method's learnable parameters; None: the heads' (optimizer.lr)
    param_lr: float | None = None

    def __init__(self, tasks: list[str], **args):
        super().__init__()
        self.tasks = list(tasks)
        # False after a step in which the method had nothing to act on (a gradient method with a
        # frozen backbone: the step was the plain sum); the training step counts such steps.
        self.active = True
        self.register_buffer("unit_weights", torch.ones(len(self.tasks)), persistent=False)

    def positions(self, names: Iterable[str]) -> list[int]:
        """Each name's position in `self.tasks`, in the order given (e.g. a loss dict's keys): the
        index into `weight_vector` and into the method's per-task parameters and buffers."""
        position = {t: i for i, t in enumerate(self.tasks)}
        return [position[t] for t in names]

    def task_index(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """`positions(losses)` as int64 [K] on the losses' device."""
        return torch.tensor(self.positions(losses), device=next(iter(losses.values())).device, dtype=torch.long)

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

    def after_step(self, recompute: Callable[[], dict[str, torch.Tensor]]) -> None:
        """Called after `optimizer.step()`. `recompute()` returns {task: loss} of the same batch
        with the updated parameters (a forward without gradients); only call it if needed."""

    def weight_vector(self) -> torch.Tensor:
        """Weight per task [T] (order of `self.tasks`), detached, on the method's device: those of
        the last step. The training step logs its epoch mean as `weights/<task>`."""
        return self.unit_weights

    def task_weights(self) -> dict[str, float]:
        """{task: weight} of the last step (reads the device once)."""
        return dict(zip(self.tasks, self.weight_vector().tolist()))

    def parameter_groups(self, lr: float) -> list[dict]:
        """The optimizer group of the method's learnable parameters, [] when it has none: named
        "weighting", without weight decay (decay would pull log-variances and loss weights toward
        0), at `param_lr` (default `lr`)."""
        params = list(self.parameters())
        if not params:
            return []
        own_lr = self.param_lr if self.param_lr is not None else lr
        return [{"params": params, "lr": own_lr, "weight_decay": 0.0, "name": "weighting"}]

    def on_epoch_end(self, epoch_losses: dict[str, float]) -> None:
        """Hook for methods that adapt once per epoch (e.g. DWA)."""


def task_parameters(values: Iterable[float]) -> nn.ParameterList:
    """One scalar parameter per task. Separate tensors (not one [T] vector) so that a task absent
    from a batch gets no gradient (None): optimizers then skip it, and momentum does not move it."""
    return nn.ParameterList([nn.Parameter(torch.tensor(float(v))) for v in values])


def gather(params: nn.ParameterList, index: list[int]) -> torch.Tensor:
    """[K]: the parameters at `index`, stacked (gradients flow back to each)."""
    return torch.stack([params[i] for i in index])


WEIGHTINGS: dict[str, type[WeightingMethod]] = {}


def register_weighting(cls: type[WeightingMethod]) -> type[WeightingMethod]:
    """Class decorator adding a `WeightingMethod` subclass as `training.weighting: <cls.name>`; it
    must set `name` and implement `combine` (or override `backward`)."""
    if not (isinstance(cls, type) and issubclass(cls, WeightingMethod)):
        raise PolyheadError(f"register_weighting must decorate a subclass of polyhead.weighting.WeightingMethod, "
                            f"got {cls!r}")
    where = f"{cls.__module__}.{cls.__qualname__}"
    if not isinstance(cls.name, str) or not cls.name:
        raise PolyheadError(f"weighting method {where} must set a class attribute name = \"...\" "
                            f"(the value of training.weighting)")
    if cls.name in WEIGHTINGS and WEIGHTINGS[cls.name] is not cls:
        raise PolyheadError(f"weighting method {cls.name!r} is already registered (by {WEIGHTINGS[cls.name].__module__})")
    if cls.combine is WeightingMethod.combine and cls.backward is WeightingMethod.backward:
        raise PolyheadError(f"weighting method {cls.name!r} ({where}) must implement combine(losses) -> total "
                            f"loss, or override backward(losses, ctx)")
    if cls.requires not in ("losses", "features", "parameters"):
        raise PolyheadError(f"weighting method {cls.name!r}: requires must be losses, features or parameters, "
                            f"got {cls.requires!r}")
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
