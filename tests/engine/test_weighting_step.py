"""The training module's side of the weighting methods: the optimizer's "weighting" group, absent
tasks, and the re-evaluation of a batch after the optimizer step (FAMO)."""

from __future__ import annotations

import copy

import pytest
import torch

from polyhead.config.schema import OptimizerConfig, SchedulerConfig, TaskConfig
from polyhead.engine.module import MultiTaskModule, recompute_losses, task_losses
from polyhead.model.backbones import build_backbone
from polyhead.model.multitask import MultiTaskModel
from polyhead.tasks import build_task
from polyhead.weighting import StepContext, build_weighting

TASKS = ("a", "b", "c")


def _module(method: str, args: dict | None = None) -> MultiTaskModule:
    torch.manual_seed(0)
    tasks = {t: build_task(t, TaskConfig(type="multiclass", classes=["x", "y", "z"])) for t in TASKS}
    backbone = build_backbone("small_cnn", in_chans=3, small_cnn={"blocks": 2, "channels": [4, 8]})
    model = MultiTaskModel(backbone, {t: 3 for t in TASKS}, mean=[0.5] * 3, std=[0.5] * 3)
    return MultiTaskModule(model, tasks, build_weighting(method, list(TASKS), args),
                           optimizer=OptimizerConfig(lr=0.01, weight_decay=0.1), scheduler=SchedulerConfig(name="none"))


def _batch(absent: tuple[str, ...] = (), seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8, generator=g),
            "targets": {t: torch.randint(0, 3, (6,), generator=g) for t in TASKS},
            "mask": {t: torch.full((6,), t not in absent) for t in TASKS}}


@pytest.mark.parametrize("method,args,lr", [("uncertainty", {}, 0.01), ("gradnorm", {}, 0.025),
                                            ("gradnorm", {"lr": 0.5}, 0.5)])
def test_weighting_parameters_have_their_own_group_without_decay(method, args, lr):
    module = _module(method, args)
    groups = {g["name"]: g for g in module.configure_optimizers().param_groups}
    assert list(groups) == ["backbone", "heads", "weighting"]
    own = {id(p) for p in module.weighting.parameters()}
    assert {id(p) for p in groups["weighting"]["params"]} == own and len(own) == len(TASKS)
    assert not own & {id(p) for p in groups["heads"]["params"]}
    assert groups["weighting"]["weight_decay"] == 0.0 and groups["heads"]["weight_decay"] == 0.1
    assert groups["weighting"]["lr"] == lr and groups["heads"]["lr"] == 0.01


def test_methods_without_parameters_add_no_group():
    assert [g["name"] for g in _module("famo").configure_optimizers().param_groups] == ["backbone", "heads"]


@pytest.mark.parametrize("method", ["uncertainty", "gradnorm"])
def test_absent_task_weight_does_not_move(method):
    """AdamW with momentum and weight decay: over steps where a task is absent, its learnable weight
    takes no optimizer step at all (value, moments and step count as they were), while the present
    tasks' move. (gradnorm's renormalisation to sum T still rescales every weight: not tested here.)"""
    module = _module(method)
    opt = module.configure_optimizers()
    model, weighting = module.model, module.weighting
    params = list(weighting.parameters())  # one per task: a, b, c

    def step(batch):
        opt.zero_grad(set_to_none=True)
        features = model.forward_features(batch["image"])
        losses = task_losses(module.tasks, model.forward_heads(features), batch)
        ctx = StepContext(backward=lambda t: t.backward(), features=features, shared_parameters=model.shared_parameters())
        weighting.backward(losses, ctx)
        opt.step()

    def snapshot(p):
        state = opt.state[p]
        return [p.detach().clone(), state["exp_avg"].clone(), state["exp_avg_sq"].clone(), state["step"].clone()]

    for i in range(3):
        step(_batch(seed=i))  # every task present: all of them build up momentum
    weights = weighting.task_weights()
    before = [snapshot(p) for p in params]
    for i in range(3):
        step(_batch(absent=("c",), seed=10 + i))
    if method == "uncertainty":  # exp(-s_c): the log-variance itself did not change
        assert weighting.task_weights()["c"] == weights["c"] and weighting.task_weights()["a"] != weights["a"]
    after = [snapshot(p) for p in params]
    assert all(torch.equal(x, y) for x, y in zip(after[2][1:], before[2][1:]))  # c's moments and step count
    for present in (0, 1):
        assert after[present][3] == before[present][3] + 3 and not torch.equal(after[present][1], before[present][1])
        assert not torch.equal(after[present][0], before[present][0])


def test_recompute_losses_sees_the_updated_model_and_keeps_its_buffers():
    module = _module("famo")
    module.train()
    batch = _batch(absent=("b",))
    with torch.no_grad():
        for p in module.model.parameters():  # as an optimizer step would
            p.add_(0.01)
    reference = copy.deepcopy(module.model)
    buffers = {k: v.clone() for k, v in module.model.named_buffers()}
    again = recompute_losses(module.model, module.tasks, batch)
    assert set(again) == {"a", "c"} and not any(v.requires_grad for v in again.values())
    for key, value in module.model.named_buffers():  # BatchNorm's running statistics untouched
        assert torch.equal(value, buffers[key]), key
    with torch.no_grad():
        expected = task_losses(module.tasks, reference(batch["image"]), batch)  # a training-mode forward
    for t in again:
        torch.testing.assert_close(again[t], expected[t])


def test_validation_step_scores_the_losses_of_the_training_step(monkeypatch):
    """The validation step computes its losses with the training step's `task_losses`: the summed
    loss it keeps per task is that task's masked mean (cross-entropy over its labelled rows, by
    hand) times those rows; a task without a labelled row adds nothing."""
    import polyhead.engine.module as module_file

    module = _module("equal")
    module.eval()
    batch = _batch(absent=("c",))
    batch["mask"]["b"] = torch.tensor([True, False, True, False, False, True])
    calls = []
    monkeypatch.setattr(module_file, "task_losses",
                        lambda *a: calls.append(a) or task_losses(*a))
    with torch.no_grad():
        module.validation_step(batch, 0)
        logits = module.model(batch["image"])
    assert len(calls) == 1
    for name, rows in (("a", torch.ones(6, dtype=torch.bool)), ("b", batch["mask"]["b"])):
        total, n = module._val_loss[name]
        expected = torch.nn.functional.cross_entropy(logits[name][rows], batch["targets"][name][rows])
        assert int(n) == int(rows.sum()) and float(total) == pytest.approx(float(expected) * int(rows.sum()))
    assert "c" not in module._val_loss
