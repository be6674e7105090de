"""Gradient-based weightings: `gradnorm`, `mgda`, `pcgrad`, `cagrad`, `nash_mtl`, `imtl`, `upgrad`.

They look at per-task gradients g_t of a shared quantity x:

- `mode: features` (default): x = the shared representation [B, F]. One `autograd.grad` per
  task goes back through the heads only; the backbone is traversed once, by the final backward.
- `mode: parameters`: x = the shared (backbone) parameters, one full backward per task.

The rows g_t form a Jacobian J [K, D] (K tasks present in the batch, D = numel of x). Each
method turns J (usually its Gramian J J^T [K, K]) into task weights w [K] and the backbone
gets d = w @ J [D]. So that Lightning's precision plugin sees exactly one backward, the step
backpropagates the surrogate scalar

    sum_t L_t + <x, d - sum_t g_t>     (the second factor detached)

which gives every head the gradient of its own loss (a head only affects its own task) and x
the aggregated d. A single task in the batch gets the plain sum (nothing to balance).

With several training processes (DDP), each holds its share of the batch and its own J_r; the
weights come from the *global* Jacobian, reduced before any method sees it (`global_gramian`):
in `features` mode each process's features are its own coordinates of x, so the global Gramian
is the sum of the processes' Gramians; in `parameters` mode x is shared, so J itself is averaged.
Every process then computes the same weights, and DDP's average of the surrogate gradients is
the single-process update. (Aggregating per process and averaging the results would not be:
the weights are a non-linear function of J.)

With a frozen backbone the features need no gradient and there is no shared parameter to
train: every method then gives each head its own loss's gradient, which is exactly what the
plain sum gives, and the step is that sum. Such a step sets `active = False` (the training
step logs the count per epoch as `weighting/inactive_steps`). A context lacking what the mode
needs (no features in `features` mode; no shared parameters while the features do need a
gradient in `parameters` mode) is an error, never a silent fall-back.

UPGrad, MGDA, PCGrad and IMTL-G use the Gramian weightings of torchjd
(https://github.com/TorchJD/torchjd). CAGrad and Nash-MTL are written here: torchjd's versions
need cvxpy (and Nash-MTL's keeps numpy state sized for a fixed task count, which partial labels
break), while both problems are tiny K-dimensional convex programs.
"""

from __future__ import annotations

import torch

from polyhead.errors import ConfigError, PolyheadError
from polyhead.weighting.base import StepContext, WeightingMethod, gather, register_weighting, task_parameters
from polyhead.weighting.loss_based import check_number

MODES = ("features", "parameters")


def shared_targets(method: str, mode: str, ctx: StepContext) -> list[torch.Tensor]:
    """What `mode` differentiates the task losses with respect to (see the module docstring).
    [] when the backbone is frozen (the features need no gradient); PolyheadError when `ctx`
    lacks what the mode needs."""
    frozen = ctx.features is not None and not ctx.features.requires_grad
    if mode == "parameters":
        if ctx.shared_parameters:
            return list(ctx.shared_parameters)
        if frozen:
            return []
        raise PolyheadError(f"weighting '{method}' (mode: parameters) needs StepContext.shared_parameters, the "
                            f"backbone's trainable parameters (model.shared_parameters()); none were given")
    if ctx.features is None:
        raise PolyheadError(f"weighting '{method}' (mode: features) needs StepContext.features, the shared "
                            f"representation the losses were computed from (model.forward_features(images))")
    return [] if frozen else [ctx.features]


class GradientWeighting(WeightingMethod):
    """Base class: per-task gradients -> Jacobian [K, D] -> weights [K] -> one surrogate backward."""

    requires = "features"
    arg_names = ("mode",)

    def __init__(self, tasks, mode: str = "features"):
        super().__init__(tasks)
        self.mode = mode
        self.requires = mode  # instance attribute: what this configured method needs
        # effective weights of the last step per task (1.0 until a task is seen)
        self.register_buffer("last_weights", torch.ones(len(self.tasks)))

    @classmethod
    def check_args(cls, args, tasks):
        super().check_args(args, tasks)
        if "mode" in args and args["mode"] not in MODES:
            raise ConfigError(f"training.weighting_args.mode for '{cls.name}' must be one of {', '.join(MODES)}, "
                              f"got {args['mode']!r}")

    # ---- what subclasses implement -----------------------------------------------------
    def gramian_weights(self, gramian: torch.Tensor, index: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        """Task weights [K] from the Gramian J J^T [K, K] of the tasks at positions `index` [K]
        (`losses` [K]: their loss values, for methods that normalise by them)."""
        raise NotImplementedError

    # ---- plumbing --------------------------------------------------------------------------
    @staticmethod
    def jacobian(losses: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
        """Per-task gradients of `targets`, flattened: [K, D] (float32)."""
        rows = []
        for loss in losses:
            grads = torch.autograd.grad(loss, targets, retain_graph=True, allow_unused=True)
            rows.append(torch.cat([(g if g is not None else torch.zeros_like(x)).reshape(-1).float()
                                   for g, x in zip(grads, targets)]))
        return torch.stack(rows)

    @staticmethod
    def global_gramian(jac: torch.Tensor, mode: str, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        """(Gramian of the global per-task gradients [K, K], the Jacobian rows this process's x gets
        its correction from [K, D]); `jac` [K, D] is this process's (see the module docstring).
        The losses are scaled so that the processes' mean gradient is the global one
        (polyhead.engine.ddp_step): the global J is the processes' J_r / W side by side
        (features) or their mean (parameters)."""
        w = ctx.world_size
        if w == 1:
            return jac @ jac.T, jac
        if mode == "parameters":
            jac = ctx.all_reduce(jac) / w
            return jac @ jac.T, jac
        return ctx.all_reduce(jac @ jac.T) / (w * w), jac

    @staticmethod
    def surrogate(total: torch.Tensor, targets: list[torch.Tensor], correction: torch.Tensor) -> torch.Tensor:
        """total + <x, correction>: backward gives x the extra gradient `correction` [D]."""
        extra, offset = total.new_zeros(()), 0
        for x in targets:
            n = x.numel()
            extra = extra + (x * correction[offset:offset + n].view_as(x).to(x.dtype)).sum()
            offset += n
        return total + extra

    def backward(self, losses, ctx):
        names = list(losses)
        values = [losses[t] for t in names]
        total = torch.stack(values).sum()
        targets = shared_targets(self.name, self.mode, ctx)  # features [B, F] or shared parameters
        self.active = bool(targets)
        index = self.task_index(losses)
        if not targets or len(names) == 1:
            self.last_weights[index] = 1.0
            ctx.backward(total)
            return total
        jac = self.jacobian(values, targets)  # [K, D]
        with torch.no_grad():
            gramian, jac = self.global_gramian(jac, self.mode, ctx)
            weights = self.gramian_weights(gramian, index, torch.stack(values).detach().float()).to(jac)  # [K]
            self.last_weights[index] = weights.to(self.last_weights)
            correction = weights @ jac - jac.sum(0)  # [D]: aggregated minus what sum_t L_t already gives
        ctx.backward(self.surrogate(total, targets, correction))
        return total.detach()

    def weight_vector(self):
        return self.last_weights


class _TorchJDWeighting(GradientWeighting):
    """A torchjd Gramian weighting (weights [K] from J J^T [K, K]); stateless."""

    def make_weighting(self):
        raise NotImplementedError

    def __init__(self, tasks, mode: str = "features"):
        super().__init__(tasks, mode)
        self._weighting = [self.make_weighting()]  # in a list: not a submodule, nothing to checkpoint

    def gramian_weights(self, gramian, index, losses):
        return self._weighting[0](gramian)


@register_weighting
class MGDA(_TorchJDWeighting):
    """MGDA-UB: the min-norm point of the convex hull of the task gradients.

    Sener and Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018.
    With `mode: features` this is the paper's MGDA-UB (gradients w.r.t. the shared
    representation). Weights lie on the simplex; solved with torchjd's `MGDAWeighting`
    (the paper's Frank-Wolfe solver).

    `normalization` (as in the authors' code): the gradients are divided by |g_t| (`l2`),
    L_t (`loss`), L_t |g_t| (`loss+`, their default and ours) or nothing (`none`) before the
    min-norm problem; the weights found are then applied to the raw gradients. Without it a
    task that is already solved (tiny gradient) takes nearly all the weight and the others stall.
    """

    name = "mgda"
    arg_names = ("mode", "normalization")
    normalizations = ("none", "l2", "loss", "loss+")

    def __init__(self, tasks, mode: str = "features", normalization: str = "loss+"):
        super().__init__(tasks, mode)
        self.normalization = normalization

    @classmethod
    def check_args(cls, args, tasks):
        super().check_args(args, tasks)
        if "normalization" in args and args["normalization"] not in cls.normalizations:
            raise ConfigError(f"training.weighting_args.normalization for 'mgda' must be one of "
                              f"{', '.join(cls.normalizations)}, got {args['normalization']!r}")

    def gramian_weights(self, gramian, index, losses=None):
        norms = gramian.diagonal().clamp_min(0).sqrt()  # |g_t| [K]
        scale = {"none": torch.ones_like(norms), "l2": norms, "loss": losses, "loss+": None}.get(self.normalization)
        if scale is None:
            scale = losses * norms
        scale = scale.clamp_min(1e-12)
        return self._weighting[0](gramian / scale[:, None] / scale[None, :])  # Gramian of g_t / scale_t

    def make_weighting(self):
        from torchjd.aggregation import MGDAWeighting
        return MGDAWeighting()


@register_weighting
class PCGrad(_TorchJDWeighting):
    """Projecting conflicting gradients.

    Yu, Kumar, Gupta, Levine, Hausman and Finn, "Gradient Surgery for Multi-Task Learning",
    NeurIPS 2020. Each g_i is projected onto the normal plane of every g_j it conflicts with
    (random order) and the projections are summed; torchjd's `PCGradWeighting` expresses the
    result as weights on the rows.
    """

    name = "pcgrad"

    def make_weighting(self):
        from torchjd.aggregation import PCGradWeighting
        return PCGradWeighting()


@register_weighting
class IMTL(_TorchJDWeighting):
    """IMTL-G: the update has equal projections on every task's unit gradient.

    Liu, Li, Kuang, Xue, Chen, Yang, Liao and Zhang, "Towards Impartial Multi-task Learning",
    ICLR 2021. torchjd's `IMTLGWeighting` (a pseudo-inverse generalisation that tolerates
    linearly dependent gradients).
    """

    name = "imtl"

    def make_weighting(self):
        from torchjd.aggregation import IMTLGWeighting
        return IMTLGWeighting()


@register_weighting
class UPGrad(_TorchJDWeighting):
    """UPGrad: project each gradient onto the dual cone of all of them, then average.

    Quinton and Rey, "Jacobian Descent for Multi-Objective Optimization", arXiv 2406.16232, 2024.
    torchjd's `UPGradWeighting` (quadprog solver).
    """

    name = "upgrad"

    def make_weighting(self):
        from torchjd.aggregation import UPGradWeighting
        return UPGradWeighting()


def project_simplex(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of v [K] onto the probability simplex (Duchi et al. 2008)."""
    u, _ = torch.sort(v, descending=True)
    css = u.cumsum(0) - 1
    k = torch.arange(1, len(v) + 1, device=v.device, dtype=v.dtype)
    rho = int((u - css / k > 0).nonzero().max())
    return (v - css[rho] / (rho + 1)).clamp_min(0)


@register_weighting
class CAGrad(GradientWeighting):
    """Conflict-Averse Gradient descent.

    Liu, Liu, Jin, Stone and Liu, "Conflict-Averse Gradient Descent for Multi-task Learning",
    NeurIPS 2021.

    With g_0 the mean gradient and phi = c^2 |g_0|^2, find w on the simplex minimising
    g_w . g_0 + sqrt(phi) |g_w| (g_w = J^T w); the update is g_0 + sqrt(phi) / |g_w| * g_w,
    divided by 1 + c^2 (the official code's default rescaling). The K-dimensional problem is
    solved by projected gradient descent on the Gramian, instead of scipy/cvxpy.
    """

    name = "cagrad"
    arg_names = ("mode", "c")
    iterations = 200

    def __init__(self, tasks, mode: str = "features", c: float = 0.4):
        super().__init__(tasks, mode)
        self.c = float(c)

    @classmethod
    def check_args(cls, args, tasks):
        super().check_args(args, tasks)
        check_number(cls.name, args, "c")

    def gramian_weights(self, gramian, index, losses=None):
        k = gramian.shape[0]
        g = gramian.double() / gramian.diagonal().mean().clamp_min(1e-20)  # argmin is scale-invariant
        mean = torch.full((k,), 1.0 / k, dtype=g.dtype, device=g.device)
        sqrt_phi = self.c * (mean @ g @ mean).clamp_min(0).sqrt()
        w = mean.clone()
        step = 1.0 / (torch.linalg.matrix_norm(g, 2) + 1e-12)
        for i in range(self.iterations):
            norm_gw = (w @ g @ w).clamp_min(1e-12).sqrt()
            grad = g @ mean + sqrt_phi * (g @ w) / norm_gw  # d/dw of g_w.g_0 + sqrt(phi)|g_w|
            w = project_simplex(w - step * grad / (1 + i) ** 0.5)
        norm_gw = (w @ g @ w).clamp_min(0).sqrt()
        weights = mean + (sqrt_phi / norm_gw * w if norm_gw > 1e-8 else 0.0)
        return (weights / (1 + self.c**2)).to(gramian.dtype)


@register_weighting
class NashMTL(GradientWeighting):
    """Nash-MTL: the Nash bargaining solution between tasks.

    Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik and Fetaya, "Multi-Task Learning as a
    Bargaining Game", ICML 2022.

    The weights alpha > 0 solve G alpha = 1 / alpha (G = J J^T normalised by its Frobenius
    norm, as in the official code). That is the stationary point of the strictly convex
    0.5 alpha^T G alpha - sum log alpha, solved here by damped Newton steps warm-started from
    the previous solution (buffer `alpha` [T]). `max_norm` (default 1, 0 disables) caps
    |alpha @ J| like the official implementation.
    """

    name = "nash_mtl"
    arg_names = ("mode", "max_norm")
    iterations, ridge = 25, 1e-6

    def __init__(self, tasks, mode: str = "features", max_norm: float = 1.0):
        super().__init__(tasks, mode)
        self.max_norm = float(max_norm)
        self.register_buffer("alpha", torch.ones(len(self.tasks)))

    @classmethod
    def check_args(cls, args, tasks):
        super().check_args(args, tasks)
        check_number(cls.name, args, "max_norm")

    @staticmethod
    def _objective(g, a):
        return 0.5 * a @ g @ a - a.log().sum()

    def gramian_weights(self, gramian, index, losses=None):
        scale = torch.linalg.matrix_norm(gramian.double()).clamp_min(1e-20)
        g = gramian.double() / scale + self.ridge * torch.eye(len(index), dtype=torch.float64, device=gramian.device)
        a = self.alpha[index].double().clamp_min(1e-6)
        for _ in range(self.iterations):
            grad = g @ a - 1 / a  # [K]
            if grad.norm() < 1e-9:
                break
            step = torch.linalg.solve(g + torch.diag(1 / a**2), grad)
            t, f = 1.0, self._objective(g, a)
            while t > 1e-8 and (((a - t * step) <= 0).any() or self._objective(g, (a - t * step).clamp_min(1e-300)) > f):
                t /= 2
            a = (a - t * step).clamp_min(1e-12)
        self.alpha[index] = a.to(self.alpha)
        if self.max_norm > 0:  # |alpha @ J| = sqrt(alpha^T G alpha) on the unnormalised Gramian
            norm = (a @ gramian.double() @ a).clamp_min(0).sqrt()
            if norm > self.max_norm:
                a = a * self.max_norm / norm
        return a.to(gramian.dtype)


@register_weighting
class GradNorm(WeightingMethod):
    """GradNorm: learn loss weights that equalise the tasks' gradient norms.

    Chen, Badrinarayanan, Lee and Rabinovich, "GradNorm: Gradient Normalization for Adaptive
    Loss Balancing in Deep Multitask Networks", ICML 2018.

    Learnable weights w_t (parameters `loss_weights.<t>`). Per step: G_t = w_t |grad L_t| with the
    gradient taken w.r.t. the shared features (`mode: features`, default) or the shared
    parameters (`mode: parameters`); r_t = (L_t / L_t(0)) / mean over the present tasks, L_t(0)
    the first loss seen for the task (buffer `initial_losses`); L_grad = sum_t |G_t - mean(G) *
    r_t^alpha| (target held constant) trains w only, and the network gets sum_t w_t L_t. As in
    the paper, w has its own learning rate (`lr`, default 0.025: with AdamW a weight moves by
    about that much per step) in the optimizer's "weighting" group, without weight decay; an
    absent task's weight gets no gradient. Weights are renormalised to sum to T at the start of
    each step. With a frozen backbone there are no gradient norms: the step is sum_t w_t L_t and
    w does not move (`active = False`).
    """

    name = "gradnorm"
    requires = "features"
    arg_names = ("mode", "alpha", "lr")

    def __init__(self, tasks, mode: str = "features", alpha: float = 1.5, lr: float = 0.025):
        super().__init__(tasks)
        self.mode, self.requires, self.alpha, self.param_lr = mode, mode, float(alpha), float(lr)
        n = len(self.tasks)
        self.loss_weights = task_parameters([1.0] * n)
        self.register_buffer("initial_losses", torch.full((n,), float("nan")))

    @classmethod
    def check_args(cls, args, tasks):
        WeightingMethod.check_args.__func__(cls, args, tasks)
        if "mode" in args and args["mode"] not in MODES:
            raise ConfigError(f"training.weighting_args.mode for '{cls.name}' must be one of {', '.join(MODES)}, "
                              f"got {args['mode']!r}")
        check_number(cls.name, args, "alpha")
        check_number(cls.name, args, "lr", strict=True)

    @torch.no_grad()
    def _renormalise(self) -> None:
        """w <- w * T / sum(w) (the paper renormalises after each weight update)."""
        w = torch.stack(list(self.loss_weights)).clamp_min(1e-4)  # [T]
        for p, v in zip(self.loss_weights, w * len(self.tasks) / w.sum()):
            p.copy_(v)

    def backward(self, losses, ctx):
        names = list(losses)
        values = torch.stack([losses[t] for t in names])  # [K]
        index = self.task_index(losses)
        self._renormalise()
        with torch.no_grad():
            fresh = torch.isnan(self.initial_losses[index])
            self.initial_losses[index[fresh]] = values.detach()[fresh].to(self.initial_losses)
        w = gather(self.loss_weights, self.positions(names))  # [K], requires grad
        weighted = (w.detach() * values).sum()
        targets = shared_targets(self.name, self.mode, ctx)
        self.active = bool(targets)
        if not targets or len(names) == 1:
            ctx.backward(weighted)  # w gets no gradient: the optimizer leaves it (and its moments) alone
            return weighted.detach()
        jac = GradientWeighting.jacobian(list(values), targets)
        gramian, _ = GradientWeighting.global_gramian(jac, self.mode, ctx)  # over every process (DDP)
        norms = gramian.diagonal().clamp_min(0).sqrt().to(w)  # |grad L_t| [K]
        g = w * norms  # G_t
        with torch.no_grad():
            ratio = values.detach() / self.initial_losses[index].to(values)
            target = g.mean() * (ratio / ratio.mean()) ** self.alpha
        grad_loss = (g - target).abs().sum()  # reaches only w
        ctx.backward(weighted + grad_loss)
        return weighted.detach()

    def weight_vector(self):
        return torch.stack([p.detach() for p in self.loss_weights])
