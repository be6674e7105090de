"""Per-task losses, chosen by name (`tasks.<name>.loss`, arguments in `tasks.<name>.loss_args`).

A loss is a function `fn(logits, targets, task, **loss_args) -> scalar tensor` over the labelled
rows of one batch only (the task masks missing labels before calling it):

    multiclass   logits float [n, K], targets int64 [n] (class indices)
    binary       logits float [n],    targets float [n] (0/1)
    multilabel   logits float [n, K], targets float [n, K] (0/1)

`task` is the `polyhead.tasks.Task` (its `config` holds class_weights, pos_weight, ...). Register
your own with `@register_loss("name", types=(...))`; its keyword arguments are its `loss_args`.

Built-ins:
    cross_entropy  softmax cross-entropy (multiclass) / sigmoid BCE (binary, multilabel): the default
    focal          Lin et al., "Focal Loss for Dense Object Detection", 2017 (gamma, alpha)
    asymmetric     Ridnik et al., "Asymmetric Loss For Multi-Label Classification", 2021
                   (gamma_pos, gamma_neg, clip)
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from polyhead.errors import ConfigError, PolyheadError, one_of

TYPES = ("multiclass", "binary", "multilabel")


@dataclass(frozen=True)
class LossSpec:
    name: str
    fn: Callable[..., torch.Tensor]
    types: tuple[str, ...]
    args: dict[str, Any]  # keyword -> default (inspect.Parameter.empty when required)
    open_args: bool  # the function takes **kwargs: any loss_args key is passed on
    refuses: tuple[str, ...] = ()  # task options the loss cannot honour (one line when set)


LOSSES: dict[str, LossSpec] = {}


def register_loss(name: str, *, types: tuple[str, ...] = TYPES, refuses: tuple[str, ...] = ()):
    """Decorator adding `fn(logits, targets, task, **args) -> scalar` as `tasks.<t>.loss: name`."""
    bad = [t for t in types if t not in TYPES]
    if bad or not types:
        raise PolyheadError(f"register_loss({name!r}): types must be some of {', '.join(TYPES)}, got {types!r}")

    def deco(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        if not isinstance(name, str) or not name:
            raise PolyheadError(f"register_loss: the name must be a non-empty string, got {name!r}")
        if name in LOSSES:
            raise PolyheadError(f"loss {name!r} is already registered (by {LOSSES[name].fn.__module__})")
        if not callable(fn):
            raise PolyheadError(f"register_loss({name!r}) must decorate a function, got {type(fn).__name__}")
        params = list(inspect.signature(fn).parameters.values())
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(positional) < 3 and not any(p.kind is p.VAR_POSITIONAL for p in params):
            raise PolyheadError(f"loss {name!r} ({fn.__module__}.{fn.__qualname__}) must take (logits, targets, "
                                f"task, **loss_args); it takes ({', '.join(p.name for p in params)})")
        rest = params[3:] if len(positional) >= 3 else []
        args = {p.name: p.default for p in rest if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        open_args = any(p.kind is p.VAR_KEYWORD for p in params)
        LOSSES[name] = LossSpec(name, fn, tuple(types), args, open_args, tuple(refuses))
        return fn

    return deco


# --------------------------------------------------------------------------- checks


def check_loss(task_name: str, task_type: str, config) -> LossSpec:
    """The loss of `tasks.<task_name>` is registered, fits the task type, gets known arguments
    and no option it cannot honour; returns its spec."""
    key = f"tasks.{task_name}.loss"
    one_of(key, config.loss, sorted(LOSSES))
    spec = LOSSES[config.loss]
    if task_type not in spec.types:
        raise ConfigError(f"{key}: '{config.loss}' is for {' and '.join(spec.types)} tasks, not {task_type}; "
                          f"losses for {task_type}: {', '.join(losses_for(task_type))}")
    given = dict(config.loss_args or {})
    unknown = sorted(set(given) - set(spec.args)) if not spec.open_args else []
    if unknown:
        accepted = ", ".join(spec.args) or "none"
        raise ConfigError(f"unknown tasks.{task_name}.loss_args key(s) for '{config.loss}': {', '.join(unknown)}; "
                          f"accepted: {accepted}")
    missing = [a for a, d in spec.args.items() if d is inspect.Parameter.empty and a not in given]
    if missing:
        raise ConfigError(f"tasks.{task_name}.loss '{config.loss}' needs tasks.{task_name}.loss_args."
                          f"{missing[0]}")
    for option in spec.refuses:
        value = getattr(config, option, None)
        if value not in (None, 0, 0.0):
            raise ConfigError(f"tasks.{task_name}.{option} does not apply to loss '{config.loss}'; remove it "
                              f"or use loss: cross_entropy")
    _check_builtin_args(task_name, task_type, config.loss, given)
    return spec


def losses_for(task_type: str) -> list[str]:
    return sorted(n for n, s in LOSSES.items() if task_type in s.types)


def _check_builtin_args(task_name: str, task_type: str, loss: str, args: dict) -> None:
    def number(key: str, low: float, high: float | None = None, *, low_open: bool = False) -> None:
        if key not in args or args[key] is None:
            return
        v = args[key]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        ok = ok and (v > low if low_open else v >= low) and (high is None or v <= high)
        if not ok:
            span = f"{'>' if low_open else '>='} {low}" + (f" and <= {high}" if high is not None else "")
            raise ConfigError(f"tasks.{task_name}.loss_args.{key} must be a number {span}, got {v!r}")

    if loss == "focal":
        number("gamma", 0.0)
        number("alpha", 0.0, 1.0)
        if task_type == "multiclass" and args.get("alpha") is not None:
            raise ConfigError(f"tasks.{task_name}.loss_args.alpha is for binary and multilabel focal loss; "
                              f"for a multiclass task give per-class weights in tasks.{task_name}.class_weights")
    elif loss == "asymmetric":
        number("gamma_pos", 0.0)
        number("gamma_neg", 0.0)
        number("clip", 0.0, 1.0)
        if float(args.get("clip", 0.0) or 0.0) >= 1.0:
            raise ConfigError(f"tasks.{task_name}.loss_args.clip must be below 1, got {args['clip']!r}")


def check_loss_output(task, value) -> None:
    """One line unless a loss returned a finite scalar tensor that gradients flow through."""
    where = f"loss '{task.config.loss}' of task '{task.name}'"
    if not isinstance(value, torch.Tensor):
        raise PolyheadError(f"{where} must return a tensor, returned {type(value).__name__}")
    if value.ndim != 0:
        raise PolyheadError(f"{where} must return a scalar (a mean over the rows), returned shape "
                            f"{list(value.shape)}; reduce it with .mean()")
    if not value.requires_grad:
        raise PolyheadError(f"{where} returned a tensor without gradient (detached or built from numpy)")
    if not bool(torch.isfinite(value)):
        raise PolyheadError(f"{where} returned {value.item()} on a small test batch")


# --------------------------------------------------------------------------- built-ins


def _pos_weight(task, like: torch.Tensor) -> torch.Tensor | None:
    pw = task.config.pos_weight
    return None if pw is None else torch.tensor(pw, dtype=like.dtype, device=like.device)


def _class_weights(task, like: torch.Tensor) -> torch.Tensor | None:
    cw = task.config.class_weights
    return None if cw is None else torch.as_tensor(cw, dtype=like.dtype, device=like.device)


@register_loss("cross_entropy")
def cross_entropy(logits, targets, task):
    """Softmax cross-entropy with class_weights and label_smoothing (multiclass); sigmoid binary
    cross-entropy with pos_weight (binary, multilabel)."""
    if task.type == "multiclass":
        return F.cross_entropy(logits, targets, weight=_class_weights(task, logits),
                               label_smoothing=task.config.label_smoothing)
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), pos_weight=_pos_weight(task, logits))


@register_loss("focal", refuses=("label_smoothing",))
def focal(logits, targets, task, gamma: float = 2.0, alpha: float | None = None):
    """Focal loss (Lin et al. 2017): cross-entropy scaled by (1 - p_true)^gamma, so easy examples
    weigh little. gamma = 0 is the cross-entropy. Multiclass: class_weights weigh each row by its
    class (normalised as cross_entropy does). Binary/multilabel: per element, `alpha` weighs
    positives (1 - alpha negatives), pos_weight scales positives as in the BCE; mean over elements."""
    if task.type == "multiclass":
        logp = F.log_softmax(logits.float(), dim=-1).gather(1, targets[:, None])[:, 0]  # log p_true [n]
        loss = -((1 - logp.exp()).clamp(min=0) ** gamma) * logp
        weights = _class_weights(task, loss)
        if weights is None:
            return loss.mean().to(logits.dtype)
        w = weights[targets]
        return ((w * loss).sum() / w.sum()).to(logits.dtype)
    x, t = logits.float(), targets.float()
    p = torch.sigmoid(x)
    pos = -((1 - p) ** gamma) * F.logsigmoid(x)  # loss of a positive element
    neg = -(p ** gamma) * F.logsigmoid(-x)  # loss of a negative element
    pw = _pos_weight(task, pos)
    if pw is not None:
        pos = pw * pos
    if alpha is not None:
        pos, neg = alpha * pos, (1 - alpha) * neg
    return (t * pos + (1 - t) * neg).mean().to(logits.dtype)


@register_loss("asymmetric", types=("binary", "multilabel"))
def asymmetric(logits, targets, task, gamma_pos: float = 0.0, gamma_neg: float = 4.0, clip: float = 0.05):
    """Asymmetric loss (Ridnik et al. 2021): positives weighted by (1 - p)^gamma_pos; negatives use
    the shifted probability p_m = max(p - clip, 0), weighted by p_m^gamma_neg, so easy negatives
    (p < clip) count for nothing. pos_weight scales positives; mean over elements (gamma_pos =
    gamma_neg = clip = 0 is the BCE)."""
    x, t = logits.float(), targets.float()
    p = torch.sigmoid(x)
    pos = -((1 - p) ** gamma_pos) * F.logsigmoid(x)
    if clip > 0:
        p_m = (p - clip).clamp(min=0)
        neg = -(p_m ** gamma_neg) * torch.log((1 - p_m).clamp(min=1e-8))
    else:
        neg = -(p ** gamma_neg) * F.logsigmoid(-x)
    pw = _pos_weight(task, pos)
    if pw is not None:
        pos = pw * pos
    return (t * pos + (1 - t) * neg).mean().to(logits.dtype)
