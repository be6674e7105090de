"""Learning-rate schedules: the one-cycle curve against a hand computation and torch's OneCycleLR,
and the schedule the training module builds from `scheduler.*`."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from polyhead.config.schema import OptimizerConfig, SchedulerConfig, TaskConfig
from polyhead.engine.module import MultiTaskModule
from polyhead.engine.schedules import cosine_factor, onecycle_factor
from polyhead.model.backbones import build_backbone
from polyhead.model.multitask import MultiTaskModel
from polyhead.tasks import build_task
from polyhead.weighting import build_weighting


def test_onecycle_by_hand():
    # total 10 steps, pct_start 0.3: the peak is at step 2 (0.3 * 10 - 1), the end at step 9
    f = lambda s: onecycle_factor(s, total=10, pct_start=0.3, div_factor=10.0, final_div_factor=100.0)  # noqa: E731
    assert f(0) == pytest.approx(0.1)  # lr / div_factor
    assert f(1) == pytest.approx(1.0 + (0.1 - 1.0) * 0.5 * (1 + math.cos(math.pi * 0.5)))  # half-way up: 0.55
    assert f(2) == pytest.approx(1.0)
    assert f(9) == pytest.approx(0.1 / 100.0)  # lr / (div_factor * final_div_factor)
    # step 5 is 3/7 of the way down from 1 to 0.001
    assert f(5) == pytest.approx(0.001 + (1 - 0.001) * 0.5 * (1 + math.cos(math.pi * 3 / 7)))
    assert f(50) == pytest.approx(0.001)  # past the estimate: holds the end value


def test_onecycle_matches_torch_one_cycle_lr():
    total, lr = 37, 0.02
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.25,
                                              cycle_momentum=False, div_factor=20.0, final_div_factor=50.0)
    for step in range(total):
        got = lr * onecycle_factor(step, total=total, pct_start=0.25, div_factor=20.0, final_div_factor=50.0)
        assert got == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9), step
        opt.step()
        ref.step()


def test_cosine_warmup_then_floor():
    assert cosine_factor(0, total=10, warmup=2) == pytest.approx(0.5)
    assert cosine_factor(1, total=10, warmup=2) == pytest.approx(1.0)
    assert cosine_factor(2, total=10, warmup=2) == pytest.approx(1.0)
    assert cosine_factor(6, total=10, warmup=2, floor=0.1) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way down
    assert cosine_factor(10, total=10, warmup=2, floor=0.1) == pytest.approx(0.1)


def test_module_builds_onecycle_for_every_group():
    tasks = {"a": build_task("a", TaskConfig(type="multiclass", classes=["x", "y"]))}
    backbone = build_backbone("small_cnn", in_chans=1, small_cnn={"blocks": 1, "channels": [4]})
    model = MultiTaskModel(backbone, {"a": 2}, mean=[0.5], std=[0.5])
    module = MultiTaskModule(model, tasks, build_weighting("equal", ["a"], {}),
                             optimizer=OptimizerConfig(lr=0.01, backbone_lr=0.001),
                             scheduler=SchedulerConfig(name="onecycle", pct_start=0.5, div_factor=4.0,
                                                       final_div_factor=10.0))
    module._trainer = SimpleNamespace(estimated_stepping_batches=8, max_epochs=2)
    config = module.configure_optimizers()
    opt, sched = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step"
    seen = []
    for _ in range(8):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    # each group: base / 4 at step 0, its base at step 3 (0.5 * 8 - 1), base / 40 at step 7
    assert seen[0] == pytest.approx([0.001 / 4, 0.01 / 4])
    assert seen[3] == pytest.approx([0.001, 0.01])
    assert seen[7] == pytest.approx([0.001 / 40, 0.01 / 40])
