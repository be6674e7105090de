"""Weighting methods on a toy problem: a linear "backbone" [4 -> 5] and one linear head per task."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from polyhead.errors import ConfigError
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

    def step(self, method, tasks, *, frozen=False):
        """One step's losses for `tasks` and the context a training step would give."""
        for p in self.backbone.parameters():
            p.requires_grad_(not frozen)
        features = self.backbone(self.x)  # [B, F]
        losses = {t: ((self.heads[t](features) - self.y[t]) ** 2).mean() for t in tasks}
        shared = [p for p in self.backbone.parameters() if p.requires_grad]
        ctx = StepContext(backward=lambda loss: loss.backward(), features=features, shared_parameters=shared)
        return losses, ctx


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
    toy.zero_grad(set_to_none=True)
    losses, ctx = toy.step(method, TASKS, frozen=True)  # no shared parameters: plain sum
    method.backward(losses, ctx)
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


def _state(method):
    return {k: v.clone() for k, v in method.state_dict().items()}


@pytest.mark.parametrize("name", NEW)
def test_state_dict_round_trip(name):
    toy = Toy()
    method = build_weighting(name, TASKS)
    opt = torch.optim.SGD(list(toy.parameters()) + list(method.parameters()), lr=0.1)
    for i in range(4):
        opt.zero_grad()
        losses, ctx = toy.step(method, TASKS if i % 2 == 0 else ["a", "b"])
        method.backward(losses, ctx)
        opt.step()
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


def test_famo_logits_update_from_previous_losses():
    method = build_weighting("famo", ["a", "b"], {"lr": 0.1})
    ctx = StepContext(backward=lambda loss: None)
    method.backward({"a": torch.tensor(1.0), "b": torch.tensor(1.0)}, ctx)
    method.backward({"a": torch.tensor(0.5), "b": torch.tensor(1.0)}, ctx)  # a improved, b did not
    w = method.task_weights()
    assert w["b"] > w["a"]  # FAMO shifts weight to the task that is falling behind
