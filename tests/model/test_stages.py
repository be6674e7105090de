"""Backbone stages (for partial unfreezing and layer-wise learning-rate decay), found for each backbone family."""

from __future__ import annotations

import pytest
import torch

from polyhead.errors import ConfigError
from polyhead.model.backbones import build_backbone
from polyhead.model.branching import BranchedBackbone
from polyhead.model.stages import (backbone_stages, check_layer_decay, check_unfreeze_stages, set_trainable_stages,
                                   stage_learning_rates)

EXPECTED = {
    "small_cnn": ["blocks.0", "blocks.1", "blocks.2"],
    "resnet18": ["stem", "layer1", "layer2", "layer3", "layer4"],
    "efficientnet_lite0": ["stem"] + [f"blocks.{i}" for i in range(7)] + ["head"],
    # VGG: one stage per resolution (convs between two pooling layers), then the pre-logits conv MLP
    "vgg11": ["features.0", "features.3", "features.6-8", "features.11-13", "features.16-18", "pre_logits"],
}


MODULES = {("resnet18", "stem"): ["conv1", "bn1"], ("efficientnet_lite0", "stem"): ["conv_stem", "bn1"],
           ("efficientnet_lite0", "head"): ["conv_head", "bn2"]}


def _prefixes(backbone: str, stage_name: str) -> list[str]:
    """The parameter-name prefixes a stage must cover, written out by hand from the names."""
    if (backbone, stage_name) in MODULES:
        return [p + "." for p in MODULES[backbone, stage_name]]
    if "-" in stage_name:  # features.6-8: the layers 6..8 of features
        parent, _, span = stage_name.rpartition(".")
        first, last = map(int, span.split("-"))
        return [f"{parent}.{i}." for i in range(first, last + 1)]
    return [stage_name + "."]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_stages_are_found_in_order_and_cover_every_parameter_once(name):
    backbone = build_backbone(name, in_chans=3)
    stages = backbone_stages(backbone)
    assert [s.name for s in stages] == EXPECTED[name]
    owner_prefix = "" if name == "small_cnn" else "model."
    every = [n for n, _ in backbone.named_parameters()]
    listed = [p for s in stages for p in s.params]
    assert sorted(listed) == sorted(every)  # each parameter in exactly one stage
    for stage in stages:
        prefixes = [owner_prefix + p for p in _prefixes(name, stage.name)]
        assert all(any(p.startswith(x) for x in prefixes) for p in stage.params), stage.name


def test_vgg_stages_follow_the_pooling_layers():
    backbone = build_backbone("vgg11", in_chans=3)
    pools = [i for i, m in enumerate(backbone.model.features) if isinstance(m, torch.nn.MaxPool2d)]
    stages = backbone_stages(backbone)[:-1]
    for stage, (low, high) in zip(stages, zip([-1] + pools, pools)):
        layers = {int(p.split(".")[2]) for p in stage.params}
        assert all(low < i < high for i in layers) and layers  # all convs of one resolution


def test_branched_backbone_keeps_the_unsplit_stages_and_covers_each_branch():
    backbone = build_backbone("small_cnn", in_chans=3, small_cnn={"blocks": 3, "channels": [4, 8, 8]})
    split = BranchedBackbone(backbone, "blocks.0", {"a": ["a"], "b": ["b"]})
    stages = backbone_stages(split)
    assert [s.name for s in stages] == ["blocks.0", "blocks.1", "blocks.2"]
    assert all(p.startswith("trunk.blocks.0.") for p in stages[0].params)
    for stage in stages[1:]:  # after the branch point: the stage's copy in every branch
        assert {p.split(".")[1] for p in stage.params} == {"a", "b"}
        assert all(p.startswith(("branches.a." + stage.name, "branches.b." + stage.name)) for p in stage.params)
    assert sorted(p for s in stages for p in s.params) == sorted(n for n, _ in split.named_parameters())


def test_only_the_top_stages_train_and_frozen_batchnorm_is_in_eval_mode():
    backbone = build_backbone("resnet18", in_chans=3)
    stages = backbone_stages(backbone)
    set_trainable_stages(backbone, stages, 2, training=True)
    params = dict(backbone.named_parameters())
    for stage, trains in zip(stages, [False, False, False, True, True]):
        assert all(params[p].requires_grad is trains for p in stage.params), stage.name
    m = backbone.model
    assert not m.bn1.training and not m.layer2[1].bn2.training and not m.layer2.training
    assert m.layer3[0].bn1.training and m.layer4.training and m.layer4[1].bn2.training
    set_trainable_stages(backbone, stages, 0, training=True)
    assert not any(p.requires_grad for p in backbone.parameters()) and not backbone.training


def test_stage_learning_rates_decay_by_hand():
    # lr 0.1, d 0.5, no backbone_lr: heads 0.1, top stage 0.05, then 0.025, 0.0125 (bottom)
    assert stage_learning_rates(3, 0.1, None, 0.5) == pytest.approx([0.0125, 0.025, 0.05])
    # backbone_lr is the top stage's rate
    assert stage_learning_rates(3, 0.1, 0.01, 0.5) == pytest.approx([0.0025, 0.005, 0.01])
    assert stage_learning_rates(2, 0.1, None, None) == [0.1, 0.1]
    assert stage_learning_rates(2, 0.1, 0.02, 1.0) == [0.02, 0.02]


@pytest.mark.parametrize("value", [0, -0.5, 1.5, True])
def test_layer_decay_outside_zero_one_is_one_line(value):
    with pytest.raises(ConfigError, match=r"optimizer.layer_decay.*\(0, 1\]") as err:
        check_layer_decay(value)
    assert "\n" not in str(err.value)


def test_unfreeze_stages_out_of_range_is_one_line():
    stages = backbone_stages(build_backbone("small_cnn", in_chans=3))
    check_unfreeze_stages(stages, 3)
    with pytest.raises(ConfigError, match=r"unfreeze_stages=4 but the backbone has 3 stages \(blocks.0, blocks.1, "
                                          r"blocks.2\); use 0..3") as err:
        check_unfreeze_stages(stages, 4)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="training.unfreeze_stages.*-1"):
        check_unfreeze_stages(stages, -1)
