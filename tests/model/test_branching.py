"""Branch points: a shared trunk up to a named stage, then one copy of the later stages per group."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from polyhead.cli.main import main
from polyhead.errors import ConfigError
from polyhead.model.backbones import build_backbone
from polyhead.model.branching import BranchedBackbone, resolve_groups, stage_names
from polyhead.model.bundle import load_bundle
from polyhead.model.multitask import MultiTaskModel


@pytest.mark.parametrize("name, point", [("resnet18", "layer3"), ("small_cnn", "blocks.1"),
                                         ("mobilenetv3_small_050", "blocks.3")])
def test_split_reproduces_the_unsplit_backbone(name, point):
    torch.manual_seed(0)
    backbone = build_backbone(name, in_chans=3).eval()
    x = torch.randn(2, 3, 64, 64)
    reference = backbone.forward_features(x).clone()
    total = sum(p.numel() for p in backbone.parameters())
    split = BranchedBackbone(backbone, point, {"g1": ["a", "b"], "g2": ["c"]}).eval()
    for group, features in split(x).items():  # right after the split every branch is the original tail
        assert torch.allclose(features, reference, atol=1e-5), group
    trunk = sum(p.numel() for p in split.trunk.parameters())
    branch = sum(p.numel() for p in split.branches["g1"].parameters())
    assert trunk + branch == total  # the trunk holds only its stages; each branch only the rest
    assert 0 < trunk < total


def test_branch_point_names_and_errors():
    resnet = build_backbone("resnet18", in_chans=3)
    names = stage_names(resnet)
    assert "layer3.1" in names and "layer4.1" not in names  # the last stage cannot be a branch point
    with pytest.raises(ConfigError, match="'layer9' is not a stage.*valid: conv1"):
        BranchedBackbone(resnet, "layer9", {"a": ["a"]})
    with pytest.raises(ConfigError, match="cannot be split"):
        BranchedBackbone(build_backbone("vit_tiny_patch16_224", in_chans=3), "blocks.3", {"a": ["a"]})
    assert resolve_groups(["a", "b"], None) == {"a": ["a"], "b": ["b"]}
    with pytest.raises(ConfigError, match="leaves out task"):
        resolve_groups(["a", "b"], {"g": ["a"]})
    with pytest.raises(ConfigError, match="in both"):
        resolve_groups(["a", "b"], {"g": ["a", "b"], "h": ["b"]})


def test_branches_train_separately():
    torch.manual_seed(0)
    split = BranchedBackbone(build_backbone("small_cnn", in_chans=3, small_cnn={"blocks": 3, "channels": [8]}),
                             "blocks.0", {"g1": ["a"], "g2": ["b"]})
    model = MultiTaskModel(split, {"a": 2, "b": 3}, mean=[0.5] * 3, std=[0.5] * 3)
    x = torch.randint(0, 255, (4, 3, 16, 16), dtype=torch.uint8)
    out = model(x)
    assert out["a"].shape == (4, 2) and out["b"].shape == (4, 3)
    out["a"].sum().backward()  # task a's loss reaches the trunk and branch g1, never branch g2
    assert all(p.grad is None for p in split.branches["g2"].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in split.branches["g1"].parameters())
    assert any(p.grad is not None for p in model.shared_parameters())
    assert {id(p) for p in model.shared_parameters()} == {id(p) for p in split.trunk.parameters()}


def test_branched_training_bundle_round_trip(dataset):
    argv = ["train", str(dataset / "config.yaml"), f"output_dir={dataset / 'runs'}", "run_name=b",
            "model.small_cnn.blocks=3", "model.small_cnn.channels=[8,16,16]", "model.branch_point=blocks.1",
            "+model.branch_groups.position=[quadrant,tags]", "+model.branch_groups.colour=[red]"]
    assert main(argv) == 0
    run = dataset / "runs" / "b"
    meta = json.loads((run / "model" / "bundle.json").read_text())
    assert meta["backbone"]["branch_point"] == "blocks.1"
    assert meta["backbone"]["branch_groups"] == {"position": ["quadrant", "tags"], "colour": ["red"]}
    keys = load_file(str(run / "model" / "backbone.safetensors")).keys()
    assert any(k.startswith("branches.position.") for k in keys) and any(k.startswith("branches.colour.") for k in keys)
    bundle = load_bundle(run)
    x = torch.randint(0, 255, (2, 3, 16, 16), dtype=torch.uint8)
    assert set(bundle.model(x)) == {"quadrant", "red", "tags"}
    assert json.loads((run / "metrics.json").read_text())["val"]["quadrant"]["accuracy"] > 0.5
    written = json.loads((run / "model_summary.json").read_text())
    assert written["input_size"] == [3, 16, 16]
    summary = {r["component"]: r["parameters"] for r in written["components"]}
    assert summary["branch 'position' (quadrant, tags)"] == summary["branch 'colour' (red)"] > 0
    assert "trunk (up to blocks.1)" in summary and "head 'red'" in summary
    assert sum(v for k, v in summary.items() if k != "total") == summary["total"]
    macs = {r["component"]: r["macs"] for r in written["components"]}
    assert macs["branch 'position' (quadrant, tags)"] == macs["branch 'colour' (red)"] > 0
    assert macs["trunk (up to blocks.1)"] > 0 and "other" not in macs
    assert sum(v for k, v in macs.items() if k != "total") == macs["total"] == written["macs_per_image"]


def test_branch_config_errors(dataset, capsys):
    argv = ["train", str(dataset / "config.yaml"), "+model.branch_groups.g=[quadrant]"]
    assert main(argv) == 2
    assert "model.branch_point is not" in capsys.readouterr().err
    argv = ["train", str(dataset / "config.yaml"), "model.branch_point=blocks.0", "+model.branch_groups.g=[quadrant]"]
    assert main(argv) == 2
    assert "leaves out task(s) red, tags" in capsys.readouterr().err
