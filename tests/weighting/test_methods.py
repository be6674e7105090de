"""Weighting methods on a toy problem: a linear "backbone" [4 -> 5] and one linear head per task."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from polyhead.errors import ConfigError, PolyheadError
from polyhead.weighting import WEIGHTINGS, StepContext, build_weighting

TASKS = ["a", "b", "c"]
NEW = ["uncertainty", "dwa", "rlw", "famo", "gradnorm", "mgda", "pcgrad", "cagrad", "nash_mtl", "imtl", "upgrad"]
GRADIENT = ["gradnorm", "mgda", "pcgrad", "cagrad", "nash_mtl", "imtl", "upgrad"]


class Toy(nn.Module):
    def __init__(self, tasks=TASKS):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Linear(4, 5)
        self.heads = nn.ModuleDict({t: nn.Linear(5, 1) for t in tasks})
        self.x = torch.randn(8, 4)
        self.y = {t: torch.randn(8, 1) for t in tasks}

    def losses(self, tasks, features=None) -> dict:
        features = self.backbone(self.x) if features is None else features  # [B, F]
        return {t: ((self.heads[t](features) - self.y[t]) ** 2).mean() for t in tasks}

    def step(self, method, tasks, *, frozen=False):
        """One step's losses for `tasks` and the context a training step would give."""
        for p in self.backbone.parameters():
            p.requires_grad_(not frozen)
        features = self.backbone(self.x)  # [B, F]
        shared = [p for p in self.backbone.parameters() if p.requires_grad]
        ctx = StepContext(backward=lambda loss: loss.backward(), features=features, shared_parameters=shared)
        return self.losses(tasks, features), ctx

    def train_step(self, method, opt, tasks):
        """backward, optimizer step, after_step: the order of the training module."""
        opt.zero_grad(set_to_none=True)
        losses, ctx = self.step(method, tasks)
        total = method.backward(losses, ctx)
        opt.step()
        with torch.no_grad():
            method.after_step(lambda: self.losses(tasks))
        return losses, total


def optimizer(toy, method, lr=0.05):
    """SGD over the toy and the method's own group (as the training module builds it)."""
    return torch.optim.SGD([{"params": toy.parameters()}, *method.parameter_groups(lr)], lr=lr)


def test_all_methods_registered():
    assert set(NEW) <= set(WEIGHTINGS)
    for name in NEW:
        cls = WEIGHTINGS[name]
        assert cls.requires in ("losses", "features", "parameters")
        assert cls.__doc__ and any(str(y) in cls.__doc__ for y in range(2018, 2025)), name


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("subset", [TASKS, ["a", "c"], ["b"]])
def test_finite_gradients_on_subsets(name, subset):
    toy = Toy()
    method = build_weighting(name, TASKS)
    for _ in range(2):  # second step exercises state (famo's logit update, gradnorm's renormalisation)
        toy.zero_grad(set_to_none=True)
        method.zero_grad(set_to_none=True)
        losses, ctx = toy.step(method, subset)
        total = method.backward(losses, ctx)
        method.after_step(lambda: toy.losses(subset))
        assert torch.isfinite(total)
        for p in toy.backbone.parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        for t in TASKS:
            grad = toy.heads[t].weight.grad
            if t in subset:
                assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
            else:
                assert grad is None or grad.abs().sum() == 0
    weights = method.task_weights()
    assert set(weights) == set(TASKS) and all(torch.isfinite(torch.tensor(w)) for w in weights.values())


@pytest.mark.parametrize("name", GRADIENT)
def test_gradient_methods_parameters_mode_and_frozen_backbone(name):
    toy = Toy()
    method = build_weighting(name, TASKS, {"mode": "parameters"})
    assert method.requires == "parameters"
    losses, ctx = toy.step(method, TASKS)
    method.backward(losses, ctx)
    assert all(torch.isfinite(p.grad).all() for p in toy.backbone.parameters())
    assert method.active
    toy.zero_grad(set_to_none=True)
    losses, ctx = toy.step(method, TASKS, frozen=True)  # frozen backbone: the plain sum, and it says so
    method.backward(losses, ctx)
    assert not method.active
    assert all(p.grad is None for p in toy.backbone.parameters())
    assert all(toy.heads[t].weight.grad is not None for t in TASKS)


@pytest.mark.parametrize("name", ["mgda", "pcgrad", "cagrad", "nash_mtl", "imtl", "upgrad"])
def test_heads_get_own_loss_gradient_and_backbone_the_aggregate(name):
    toy = Toy()
    method = build_weighting(name, TASKS)
    losses, ctx = toy.step(method, TASKS)
    own = {t: torch.autograd.grad(losses[t], toy.heads[t].weight, retain_graph=True)[0] for t in TASKS}
    jac = torch.stack([torch.autograd.grad(losses[t], ctx.features, retain_graph=True)[0].reshape(-1) for t in TASKS])
    method.backward(losses, ctx)
    for t in TASKS:
        torch.testing.assert_close(toy.heads[t].weight.grad, own[t])
    w = method.last_weights
    expected_feature_grad = (w @ jac).reshape(ctx.features.shape)
    # the backbone's gradient is what the aggregated feature gradient gives: W.grad = d^T x
    torch.testing.assert_close(toy.backbone.weight.grad, expected_feature_grad.T @ toy.x, rtol=1e-4, atol=1e-5)
    # ... and it is not the plain sum's (a silent fall-back would give exactly that, with weights 1)
    plain = jac.sum(0).reshape(ctx.features.shape).T @ toy.x
    assert (toy.backbone.weight.grad - plain).abs().max() > 1e-4
    assert (w - 1).abs().max() > 1e-3


def _state(method):
    return {k: v.clone() for k, v in method.state_dict().items()}


@pytest.mark.parametrize("name", NEW)
def test_state_dict_round_trip(name):
    toy = Toy()
    method = build_weighting(name, TASKS)
    opt = optimizer(toy, method, lr=0.1)
    for i in range(4):
        losses, _ = toy.train_step(method, opt, TASKS if i % 2 == 0 else ["a", "b"])
        method.on_epoch_end({t: float(v.detach()) * (i + 1) ** (j + 1) for j, (t, v) in enumerate(losses.items())})
    state = _state(method)
    assert state, f"{name} keeps no state"
    fresh = build_weighting(name, TASKS)
    fresh.load_state_dict(state)
    for k, v in fresh.state_dict().items():
        torch.testing.assert_close(v, state[k], equal_nan=True)
    assert fresh.task_weights() == method.task_weights()


@pytest.mark.parametrize("name,args,key", [
    ("uncertainty", {"half": "yes"}, "half"), ("dwa", {"T": 0}, "T"), ("dwa", {"temp": 2}, "temp"),
    ("rlw", {"T": 1}, "T"), ("famo", {"lr": -1}, "lr"), ("famo", {"gamma": "x"}, "gamma"),
    ("gradnorm", {"alpha": -1}, "alpha"), ("gradnorm", {"mode": "weights"}, "mode"),
    ("mgda", {"mode": "grads"}, "mode"), ("mgda", {"normalization": "max"}, "normalization"), ("pcgrad", {"c": 1}, "c"), ("cagrad", {"c": -0.1}, "c"),
    ("nash_mtl", {"max_norm": -1}, "max_norm"), ("imtl", {"alpha": 1}, "alpha"), ("upgrad", {"mode": 3}, "mode"),
])
def test_bad_args(name, args, key):
    with pytest.raises(ConfigError, match=key) as err:
        build_weighting(name, TASKS, args)
    assert "\n" not in str(err.value) and name in str(err.value)


# ---- targeted checks -------------------------------------------------------------------------------
def test_pcgrad_removes_conflicting_component():
    from polyhead.weighting.gradient import PCGrad

    jac = torch.tensor([[1.0, 0.2], [-0.8, 1.0]])  # g1 . g2 < 0
    method = PCGrad(["a", "b"])
    for _ in range(5):  # random projection order
        d = method.gramian_weights(jac @ jac.T, torch.arange(2), torch.ones(2)) @ jac
        assert (jac @ d >= -1e-6).all()
        assert not torch.allclose(d, jac.sum(0))


def test_mgda_min_norm_point():
    from polyhead.weighting.gradient import MGDA

    # g1 = (1, 0), g2 = (0, 2): min-norm point of the segment is (0.8, 0.4), i.e. w = (0.8, 0.2)
    jac = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    w = MGDA(["a", "b"], normalization="none").gramian_weights(jac @ jac.T, torch.arange(2), torch.ones(2))
    assert w.min() >= 0 and torch.isclose(w.sum(), torch.tensor(1.0))
    torch.testing.assert_close(w, torch.tensor([0.8, 0.2]), atol=1e-3, rtol=0)


def test_cagrad_matches_grid_search():
    from polyhead.weighting.gradient import CAGrad

    jac = torch.tensor([[1.0, 0.3], [-0.5, 1.0]], dtype=torch.float64)
    gram, c = jac @ jac.T, 0.4
    w = CAGrad(["a", "b"], c=c).gramian_weights(gram, torch.arange(2))
    g0 = jac.mean(0)
    sqrt_phi = c * g0.norm()
    grid = torch.linspace(0, 1, 10001, dtype=torch.float64)
    cand = torch.stack([grid, 1 - grid], 1)  # [N, 2]
    gw = cand @ jac
    best = cand[torch.argmin(gw @ g0 + sqrt_phi * gw.norm(dim=1))]
    gw = best @ jac
    expected = (g0 + sqrt_phi / gw.norm() * gw) / (1 + c**2)
    torch.testing.assert_close(w @ jac, expected, atol=1e-3, rtol=0)


def test_nash_mtl_solves_bargaining_condition():
    from polyhead.weighting.gradient import NashMTL

    jac = torch.tensor([[1.0, 0.2, 0.0], [-0.3, 1.0, 0.5], [0.1, 0.1, 2.0]], dtype=torch.float64)
    gram = jac @ jac.T
    method = NashMTL(["a", "b", "c"], max_norm=0)
    a = method.gramian_weights(gram, torch.arange(3))
    g = gram / torch.linalg.matrix_norm(gram)
    torch.testing.assert_close(g @ a, 1 / a, atol=1e-4, rtol=1e-4)


def test_dwa_weights_follow_loss_ratios():
    method = build_weighting("dwa", TASKS, {"T": 2.0})
    assert method.task_weights() == {t: 1.0 for t in TASKS}
    method.on_epoch_end({"a": 1.0, "b": 1.0, "c": 1.0})
    assert method.task_weights() == {t: 1.0 for t in TASKS}
    method.on_epoch_end({"a": 0.5, "b": 1.0, "c": 2.0})  # a improved, c got worse
    w = method.task_weights()
    assert w["a"] < w["b"] < w["c"] and abs(sum(w.values()) - 3) < 1e-5
    method.on_epoch_end({"a": 0.4, "b": 1.0})  # c absent this epoch: keeps weight 1
    assert method.task_weights()["c"] == 1.0


def test_uncertainty_weights_move_during_optimization():
    toy = Toy()
    method = build_weighting("uncertainty", TASKS)
    opt = torch.optim.SGD(list(toy.parameters()) + list(method.parameters()), lr=0.05)
    before = method.task_weights()
    for _ in range(20):
        opt.zero_grad()
        losses, ctx = toy.step(method, TASKS)
        method.backward(losses, ctx)
        opt.step()
    after = method.task_weights()
    assert all(abs(after[t] - before[t]) > 1e-3 for t in TASKS)


def test_famo_update_re_evaluates_the_same_batch_with_per_task_adam():
    """FAMO's paper update, by hand: after each optimizer step the same batch is evaluated again;
    delta_t = log L_t(before) - log L_t(after); the logits of the present tasks take an Adam step
    along d(z . delta)/d xi = z * (delta - z . delta). Each task has its own Adam (moments, step
    count, L2 decay), so a task absent from a batch neither moves nor counts a step."""
    toy = Toy()
    lr, gamma = 0.1, 0.01
    method = build_weighting("famo", TASKS, {"lr": lr, "gamma": gamma})
    opt = torch.optim.SGD(toy.parameters(), lr=0.05)
    xi = {t: torch.zeros((), requires_grad=True) for t in TASKS}  # the expectation: one torch Adam per task
    adams = {t: torch.optim.Adam([xi[t]], lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=gamma) for t in TASKS}
    for present in (["a", "b"], ["a", "b", "c"], ["b", "c"], TASKS):
        losses, _ = toy.train_step(method, opt, present)
        with torch.no_grad():
            before = torch.stack([losses[t].detach() for t in present])
            after = torch.stack(list(toy.losses(present).values()))  # same batch, updated model
            delta = (before + 1e-8).log() - (after + 1e-8).log()
            z = torch.softmax(torch.stack([xi[t].detach() for t in present]), 0)
            grad = z * (delta - (z * delta).sum())
        for t, g in zip(present, grad):
            adams[t].zero_grad()
            xi[t].grad = g.clone()
            adams[t].step()
        expected = torch.stack([xi[t].detach() for t in TASKS])
        torch.testing.assert_close(method.logits, expected, rtol=1e-5, atol=1e-6)
    assert method.adam_steps.tolist() == [3, 4, 3]
    weights = method.task_weights()
    assert abs(sum(weights.values()) - 1) < 1e-6 and max(weights.values()) - min(weights.values()) > 1e-3


def test_famo_without_after_step_is_an_error():
    method = build_weighting("famo", ["a", "b"])
    ctx = StepContext(backward=lambda loss: None)
    method.backward({"a": torch.tensor(1.0), "b": torch.tensor(1.0)}, ctx)
    with pytest.raises(PolyheadError, match="after_step"):
        method.backward({"a": torch.tensor(0.5), "b": torch.tensor(1.0)}, ctx)


# pcgrad and upgrad change only conflicting gradients: see the conflicting cases above and below
@pytest.mark.parametrize("name", ["uncertainty", "dwa", "rlw", "famo", "gradnorm", "mgda", "cagrad", "nash_mtl",
                                  "imtl"])
def test_adaptive_methods_move_weights_away_from_equal(name):
    """A few epochs on tasks of different scales: the weights the method reports differ between
    tasks (the plain sum it could silently fall back to reports equal weights)."""
    toy = Toy()
    toy.y["b"] = 10 * toy.y["b"]  # a much larger loss than the others
    method = build_weighting(name, TASKS)
    opt = optimizer(toy, method)
    for epoch in range(3):
        sums = dict.fromkeys(TASKS, 0.0)
        for _ in range(5):
            losses, _ = toy.train_step(method, opt, TASKS)
            for t in TASKS:
                sums[t] += float(losses[t].detach()) / 5
        method.on_epoch_end(sums)
    w = method.weight_vector()
    assert torch.isfinite(w).all() and w.max() - w.min() > 1e-3, (name, w)


# ---- gradient methods need what their mode differentiates (a hand-written loop) ----------------------
def _conflicting():
    """Two losses linear in the features [B=4, F=2] with conflicting gradients (g_a . g_b < 0):
    per row, d L_a / d features = u_a / B and d L_b / d features = u_b / B."""
    torch.manual_seed(0)
    backbone, x = nn.Linear(3, 2), torch.randn(4, 3)
    u_a, u_b = torch.tensor([1.0, 0.2]), torch.tensor([-0.8, 1.0])
    features = backbone(x)
    losses = {"a": (features @ u_a).mean(), "b": (features @ u_b).mean()}
    g_a, g_b = (u_a / 4).repeat(4), (u_b / 4).repeat(4)  # flattened feature gradients [B * F]
    return backbone, x, features, losses, g_a, g_b


def _pcgrad(g_a, g_b):
    return (g_a - (g_a @ g_b) / (g_b @ g_b) * g_b) + (g_b - (g_a @ g_b) / (g_a @ g_a) * g_a)


def _mgda(g_a, g_b):  # the min-norm point of the segment [g_a, g_b]
    w = ((g_b - g_a) @ g_b / (g_a - g_b).square().sum()).clamp(0, 1)
    return w * g_a + (1 - w) * g_b


@pytest.mark.parametrize("name,args,aggregate", [("pcgrad", {}, _pcgrad),
                                                  ("mgda", {"normalization": "none"}, _mgda)])
def test_features_alone_drive_a_gradient_method(name, args, aggregate):
    """A hand-written loop that passes the features but no shared parameters (features mode needs
    only the features): the backbone gets the method's aggregate, not the plain sum."""
    backbone, x, features, losses, g_a, g_b = _conflicting()
    assert g_a @ g_b < 0
    method = build_weighting(name, ["a", "b"], args)
    method.backward(losses, StepContext(backward=lambda t: t.backward(), features=features))
    expected = aggregate(g_a, g_b).view(4, 2).T @ x  # d W = d^T x for a linear backbone
    plain = (g_a + g_b).view(4, 2).T @ x
    torch.testing.assert_close(backbone.weight.grad, expected, rtol=1e-4, atol=1e-6)
    assert (expected - plain).abs().max() > 1e-3 and method.active


@pytest.mark.parametrize("name", ["pcgrad", "gradnorm"])
def test_missing_step_inputs_are_an_error(name):
    backbone, x, features, losses, _, _ = _conflicting()
    with pytest.raises(PolyheadError, match="needs StepContext.features") as err:
        build_weighting(name, ["a", "b"]).backward(losses, StepContext(backward=lambda t: t.backward()))
    assert "\n" not in str(err.value)
    with pytest.raises(PolyheadError, match="needs StepContext.shared_parameters"):
        build_weighting(name, ["a", "b"], {"mode": "parameters"}).backward(
            losses, StepContext(backward=lambda t: t.backward(), features=features))
    # a frozen backbone (features without gradient) is no mistake: the plain sum, reported as inactive
    frozen = {t: loss.detach().requires_grad_() for t, loss in losses.items()}
    method = build_weighting(name, ["a", "b"], {"mode": "parameters"})
    method.backward(frozen, StepContext(backward=lambda t: t.backward(), features=features.detach()))
    assert not method.active and all(loss.grad is not None for loss in frozen.values())
