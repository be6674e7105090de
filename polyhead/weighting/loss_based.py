"""Weightings that only look at the loss values: `uncertainty`, `dwa`, `rlw`, `famo`.

Every method handles any subset of its tasks in a batch (partial labels): a task absent
from `losses` contributes nothing and its state is left as it was. State lives in buffers
and parameters so it is saved in checkpoints; learnable parameters (one scalar per task) are
trained in the optimizer's "weighting" group (see `WeightingMethod.parameter_groups`).
"""

from __future__ import annotations

import torch

from polyhead.errors import ConfigError, PolyheadError
from polyhead.weighting.base import WeightingMethod, gather, register_weighting, task_parameters


def check_number(method: str, args: dict, key: str, *, minimum: float = 0.0, strict: bool = False) -> None:
    """One-line ConfigError when `training.weighting_args.<key>` is not a number in range."""
    if key not in args:
        return
    value = args[key]
    bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or (value <= minimum if strict else value < minimum):
        raise ConfigError(f"training.weighting_args.{key} for '{method}' must be a number {bound}, got {value!r}")


def check_bool(method: str, args: dict, key: str) -> None:
    if key in args and not isinstance(args[key], bool):
        raise ConfigError(f"training.weighting_args.{key} for '{method}' must be true or false, got {args[key]!r}")


@register_weighting
class Uncertainty(WeightingMethod):
    """Homoscedastic uncertainty weighting.

    Kendall, Gal and Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
    Geometry and Semantics", CVPR 2018.

    One learnable log-variance s_t per task (parameters `log_vars.<t>`, in the optimizer's
    "weighting" group: no weight decay; an absent task's s_t does not move):
    loss = sum_t exp(-s_t) * L_t + s_t, or with `half: true` the paper's regression form
    0.5 * exp(-s_t) * L_t + 0.5 * s_t. Reported weight: exp(-s_t) (times 0.5 with `half`), 1 at
    the start, unbounded.
    """

    name = "uncertainty"
    arg_names = ("half",)

    def __init__(self, tasks, half: bool = False):
        super().__init__(tasks)
        self.half = bool(half)
        self.log_vars = task_parameters([0.0] * len(self.tasks))  # s_t = log sigma_t^2

    @classmethod
    def check_args(cls, args, tasks):
        super().check_args(args, tasks)
        check_bool(cls.name, args, "half")

    def combine(self, losses):
        s = gather(self.log_vars, self.positions(losses))  # [K]
        values = torch.stack(list(losses.values()))  # [K]
        total = (torch.exp(-s) * values + s).sum()
        return 0.5 * total if self.half else total

    def weight_vector(self):
        s = torch.stack([p.detach() for p in self.log_vars])  # [T]
        return torch.exp(-s) * (0.5 if self.half else 1.0)


@register_weighting
class DWA(WeightingMethod):
    """Dynamic Weight Average.

    Liu, Johns and Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019.

    w_t = K * softmax_t(r_t / T) with r_t = L_t(e-1) / L_t(e-2), the ratio of the task's mean
    training loss over the two previous epochs; all weights are 1 for the first two epochs.
    Buffers: `history` [2, T] (mean loss of the last two epochs, NaN when unknown) and
    `weights` [T]. A task without a loss in either epoch keeps weight 1.
    """

    name = "dwa"
    arg_names = ("T",)

    def __init__(self, tasks, T: float = 2.0):
        super().__init__(tasks)
        self.temperature = float(T)
        n = len(self.tasks)
        self.register_buffer("history", torch.full((2, n), float("nan")))  # [older, newer]
        self.register_buffer("weights", torch.ones(n))

    @classmethod
    def check_args(cls, args, tasks):
        super().check_args(args, tasks)
        check_number(cls.name, args, "T", strict=True)

    def combine(self, losses):
        w = self.weights[self.task_index(losses)]
        return (w * torch.stack(list(losses.values()))).sum()

    def on_epoch_end(self, epoch_losses):
        newest = torch.tensor([float(epoch_losses.get(t, float("nan"))) for t in self.tasks],
                              device=self.history.device)
        self.history[0] = self.history[1]
        self.history[1] = newest
        ratio = self.history[1] / self.history[0]  # [T], NaN where either epoch lacks the task
        known = torch.isfinite(ratio)
        weights = torch.ones_like(self.weights)
        if known.any():
            k = int(known.sum())
            weights[known] = k * torch.softmax(ratio[known] / self.temperature, dim=0)
        self.weights.copy_(weights)

    def weight_vector(self):
        return self.weights


@register_weighting
class RLW(WeightingMethod):
    """Random Loss Weighting.

    Lin, Ye, Xu, Shi and Zhang, "Reasonable Effectiveness of Random Weighting: A Litmus Test for
    Multi-Task Learning", TMLR 2022.

    Each step draws z ~ N(0, I) over the tasks present and weights the losses by softmax(z).
    The weights are multiplied by the number of tasks present so they average 1, keeping the
    gradient scale of `equal`. Buffer `weights` [T] holds the last draw (for logging).
    """

    name = "rlw"

    def __init__(self, tasks):
        super().__init__(tasks)
        self.register_buffer("weights", torch.ones(len(self.tasks)))

    def combine(self, losses):
        index = self.task_index(losses)
        values = torch.stack(list(losses.values()))  # [K]
        w = len(losses) * torch.softmax(torch.randn(len(losses), device=values.device), dim=0)
        self.weights[index] = w
        return (w.to(values.dtype) * values).sum()

    def weight_vector(self):
        return self.weights


@register_weighting
class FAMO(WeightingMethod):
    """Fast Adaptive Multitask Optimization.

    Liu, Liu, Jin, Stone and Liu, "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023.

    Task logits xi [T] (buffer `logits`); z = softmax(xi) over the tasks present. The step loss is
    sum_t z_t log(L_t) / c with c = sum_t z_t / L_t (so the weights on grad L_t, z_t / (c L_t),
    sum to 1). After the optimizer step, as in the paper's code, the same batch is evaluated again
    with the updated model (`after_step`: one extra forward without gradients per step) and xi
    takes an Adam step (`lr`, L2 decay `gamma`) along the gradient of z . delta w.r.t. xi, with
    delta_t = log L_t(before) - log L_t(after) the improvement of each present task. Tasks
    absent from the batch are left alone: Adam's moments and step counts are per task (buffers
    `exp_avg`, `exp_avg_sq`, `adam_steps` [T]), so a resumed run continues exactly.
    Reported weight: z_t = softmax(xi)_t over all tasks (they sum to 1).
    """

    name = "famo"
    arg_names = ("lr", "gamma")
    betas, eps, offset = (0.9, 0.999), 1e-8, 1e-8

    def __init__(self, tasks, lr: float = 0.025, gamma: float = 0.001):
        super().__init__(tasks)
        self.lr, self.gamma = float(lr), float(gamma)
        n = len(self.tasks)
        self.register_buffer("logits", torch.zeros(n))
        self.register_buffer("exp_avg", torch.zeros(n))
        self.register_buffer("exp_avg_sq", torch.zeros(n))
        self.register_buffer("adam_steps", torch.zeros(n, dtype=torch.long))
        # between backward and after_step: (task names, positions [K], losses before the step [K])
        self._before: tuple[list[str], torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def check_args(cls, args, tasks):
        super().check_args(args, tasks)
        check_number(cls.name, args, "lr", strict=True)
        check_number(cls.name, args, "gamma")

    def combine(self, losses):
        if self._before is not None:
            raise PolyheadError("weighting 'famo' updates its task weights in after_step(recompute), which was not "
                                "called after the last optimizer step (see docs/python-api.md for the loop)")
        index = self.task_index(losses)
        values = torch.stack(list(losses.values()))  # [K]
        self._before = (list(losses), index, values.detach().float())
        z = torch.softmax(self.logits[index], 0).to(values.dtype)  # [K]
        d = values + self.offset
        c = (z / d).sum().detach()
        return (z * d.log()).sum() / c

    def backward(self, losses, ctx):
        ctx.backward(self.combine(losses))
        # the objective is a sum of log-losses; report the plain sum so train/loss stays comparable
        return torch.stack([v.detach() for v in losses.values()]).sum()

    @torch.no_grad()
    def after_step(self, recompute):
        if self._before is None:  # no backward since the last call (a step without any labelled task)
            return
        names, index, before = self._before
        self._before = None
        if len(names) < 2:  # one task alone has nothing to be balanced against
            return
        again = recompute()
        after = torch.stack([again[t].detach().float() for t in names])  # [K], same batch, updated model
        delta = (before + self.offset).log() - (after + self.offset).log()  # [K]: how much each task improved
        delta = torch.where(torch.isfinite(delta), delta, torch.zeros_like(delta))
        self._adam_step(index, delta)

    def _adam_step(self, index: torch.Tensor, delta: torch.Tensor) -> None:
        """One Adam step on logits[index] (torch.optim.Adam's update, L2 decay `gamma`), with the
        gradient of z . delta w.r.t. xi (z = softmax(xi[index])): z * (delta - z . delta)."""
        xi = self.logits[index]
        z = torch.softmax(xi, 0)
        grad = z * (delta - (z * delta).sum()) + self.gamma * xi
        b1, b2 = self.betas
        steps = self.adam_steps[index] + 1
        m = b1 * self.exp_avg[index] + (1 - b1) * grad
        v = b2 * self.exp_avg_sq[index] + (1 - b2) * grad**2
        m_hat = m / (1 - torch.pow(b1, steps))
        v_hat = v / (1 - torch.pow(b2, steps))
        self.adam_steps[index], self.exp_avg[index], self.exp_avg_sq[index] = steps, m, v
        self.logits[index] = xi - self.lr * m_hat / (v_hat.sqrt() + self.eps)

    def weight_vector(self):
        return torch.softmax(self.logits, 0)
