"""Partial unfreezing and layer-wise learning-rate decay in the training module: which stages move."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from polyhead.config.schema import OptimizerConfig, SchedulerConfig, TaskConfig
from polyhead.engine.module import MultiTaskModule
from polyhead.errors import ConfigError
from polyhead.model.backbones import build_backbone
from polyhead.model.branching import BranchedBackbone
from polyhead.model.multitask import MultiTaskModel
from polyhead.tasks import build_task
from polyhead.weighting import build_weighting

TASKS = ("a", "b")


def _module(backbone, *, freeze=0, unfreeze=None, lr=0.01, backbone_lr=None, decay=None) -> MultiTaskModule:
    tasks = {t: build_task(t, TaskConfig(type="multiclass", classes=["x", "y", "z"])) for t in TASKS}
    model = MultiTaskModel(backbone, {t: 3 for t in TASKS}, mean=[0.5] * 3, std=[0.5] * 3)
    return MultiTaskModule(model, tasks, build_weighting("equal", list(TASKS), {}),
                           optimizer=OptimizerConfig(lr=lr, backbone_lr=backbone_lr, layer_decay=decay),
                           scheduler=SchedulerConfig(name="none"), freeze_backbone_epochs=freeze,
                           unfreeze_stages=unfreeze)


def _batches(n=3):
    g = torch.Generator().manual_seed(0)
    return [{"image": torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=g),
             "targets": {t: torch.randint(0, 3, (4,), generator=g) for t in TASKS},
             "mask": {t: torch.ones(4, dtype=torch.bool) for t in TASKS}} for _ in range(n)]


class _Snapshots(L.Callback):
    """The backbone's state (weights and BatchNorm statistics) at the end of each training epoch."""

    def __init__(self):
        self.states = []

    def on_train_epoch_end(self, trainer, module):
        self.states.append({k: v.detach().clone() for k, v in module.model.backbone.state_dict().items()})


def _fit(module, epochs):
    snaps = _Snapshots()
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[snaps])
    trainer.fit(module, torch.utils.data.DataLoader(_batches(), batch_size=None))
    return snaps.states


def _changed(before, after, stage_params):
    """{stage index: [state keys that changed]} for the keys under each stage's modules."""
    out = {}
    for i, params in enumerate(stage_params):
        modules = {p.rpartition(".")[0] for p in params}
        keys = [k for k in before if k.rpartition(".")[0] in modules and before[k].is_floating_point()]
        out[i] = [k for k in keys if not torch.equal(before[k], after[k])], keys
    return out


@pytest.mark.parametrize("branched", [False, True])
def test_after_the_frozen_epoch_exactly_the_last_stages_train(branched):
    torch.manual_seed(0)
    backbone = build_backbone("small_cnn", in_chans=3, small_cnn={"blocks": 3, "channels": [4, 8, 8]})
    if branched:  # blocks.1 and blocks.2 live in both branches' copies
        backbone = BranchedBackbone(backbone, "blocks.0", {"a": ["a"], "b": ["b"]})
    module = _module(backbone, freeze=1, unfreeze=2)
    initial = {k: v.clone() for k, v in backbone.state_dict().items()}
    frozen, tuned = _fit(module, epochs=2)
    for key, value in initial.items():  # epoch 1: nothing moved, BatchNorm statistics included
        assert torch.equal(frozen[key], value), key
    stages = [s.params for s in module.stages]
    changes = _changed(frozen, tuned, stages)
    moved, keys = changes[0]
    assert keys and not moved  # the bottom stage: bit-for-bit as it was (weights and running stats)
    for i in (1, 2):
        moved, keys = changes[i]
        assert sorted(moved) == sorted(keys), f"stage {i}: only {moved} of {keys} changed"
    params = dict(backbone.named_parameters())
    assert [all(params[p].requires_grad for p in s) for s in stages] == [False, True, True]


def test_unfreeze_zero_keeps_the_backbone_frozen_while_the_heads_train():
    torch.manual_seed(0)
    backbone = build_backbone("small_cnn", in_chans=3, small_cnn={"blocks": 2, "channels": [4, 8]})
    module = _module(backbone, unfreeze=0)
    heads = {k: v.clone() for k, v in module.model.heads.state_dict().items()}
    initial = {k: v.clone() for k, v in backbone.state_dict().items()}
    (after,) = _fit(module, epochs=1)
    assert all(torch.equal(after[k], v) for k, v in initial.items())
    assert any(not torch.equal(module.model.heads.state_dict()[k], v) for k, v in heads.items())


def test_optimizer_groups_have_the_decayed_rates_computed_by_hand():
    module = _module(build_backbone("resnet18", in_chans=3), lr=0.1, decay=0.5)
    groups = {g["name"]: g for g in module.configure_optimizers().param_groups}
    # heads: lr; layer4 (top): lr * 0.5; layer3: lr * 0.25; ... stem (bottom, 5th from the top): lr * 0.5^5
    expected = {"heads": 0.1, "backbone.layer4": 0.05, "backbone.layer3": 0.025, "backbone.layer2": 0.0125,
                "backbone.layer1": 0.00625, "backbone.stem": 0.003125}
    assert {k: g["lr"] for k, g in groups.items()} == pytest.approx(expected)
    layer2 = {id(p) for p in module.model.backbone.model.layer2.parameters()}
    assert {id(p) for p in groups["backbone.layer2"]["params"]} == layer2
    with_backbone_lr = _module(build_backbone("resnet18", in_chans=3), lr=0.1, backbone_lr=0.01, decay=0.5)
    groups = {g["name"]: g["lr"] for g in with_backbone_lr.configure_optimizers().param_groups}
    assert groups["backbone.layer4"] == pytest.approx(0.01) and groups["backbone.layer3"] == pytest.approx(0.005)
    assert groups["heads"] == 0.1


def test_without_decay_the_backbone_keeps_one_group():
    module = _module(build_backbone("small_cnn", in_chans=3), backbone_lr=0.003, decay=1.0)
    assert [(g["name"], g["lr"]) for g in module.configure_optimizers().param_groups] == [
        ("backbone", 0.003), ("heads", 0.01)]


def test_more_stages_than_the_backbone_has_is_one_line():
    with pytest.raises(ConfigError, match=r"training.unfreeze_stages=6 but the backbone has 5 stages"):
        _module(build_backbone("resnet18", in_chans=3), unfreeze=6)


def test_resume_mid_schedule_is_bit_identical(dataset, crash_at):
    """Frozen epoch 1, the last stage from epoch 2 at a decayed rate: a run cut in epoch 3 and resumed
    from epoch 2's checkpoint repeats the uninterrupted run exactly."""
    import pandas as pd

    from polyhead.cli.main import main

    def argv(name):
        return ["train", str(dataset / "config.yaml"), f"output_dir={dataset / 'runs'}", f"run_name={name}",
                "tracking.enabled=false", "report.enabled=false", "training.cpu_threads=1", "training.epochs=3",
                "training.freeze_backbone_epochs=1", "training.unfreeze_stages=1", "optimizer.layer_decay=0.5"]

    assert main(argv("full")) == 0
    crash_at(epoch=2, batch=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(argv("cut"))
    assert main(["train", "--resume", str(dataset / "runs" / "cut")]) == 0
    full = pd.read_csv(dataset / "runs" / "full" / "history.csv")
    cut = pd.read_csv(dataset / "runs" / "cut" / "history.csv")
    assert {"lr/backbone.blocks.0", "lr/backbone.blocks.1", "lr/heads"} <= set(full.columns)
    pd.testing.assert_frame_equal(cut, full, check_exact=True)


def test_one_step_on_efficientnet_moves_exactly_the_last_two_stages():
    torch.manual_seed(0)
    module = _module(build_backbone("efficientnet_lite0", in_chans=3), unfreeze=2, decay=0.8)
    backbone = module.model.backbone
    opt = module.configure_optimizers()
    module.train()
    module.on_train_epoch_start()  # epoch 0, no frozen epochs: the last 2 stages train
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    batch = _batches(1)[0]
    logits = module.model(batch["image"])
    sum(torch.nn.functional.cross_entropy(logits[t], batch["targets"][t]) for t in TASKS).backward()
    opt.step()
    after = backbone.state_dict()
    moved = {k.split(".")[1] + "." + k.split(".")[2] if k.startswith("model.blocks") else k.split(".")[1]
             for k, v in before.items() if not torch.equal(v, after[k])}
    # blocks.6 and the head conv (conv_head, bn2): weights and BatchNorm statistics; nothing below
    assert moved == {"blocks.6", "conv_head", "bn2"}
