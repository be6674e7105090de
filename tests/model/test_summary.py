"""Model summary: parameters and multiply-accumulates per component, checked against hand counts."""

from __future__ import annotations

from rich.console import Console

from polyhead.model.backbones import build_backbone
from polyhead.model.branching import BranchedBackbone
from polyhead.model.multitask import MultiTaskModel
from polyhead.model.summary import model_summary, summary_table


def _model(backbone, hidden=()):
    return MultiTaskModel(backbone, {"quadrant": 4, "red": 1, "tags": 3}, mean=[0.5] * 3, std=[0.25] * 3,
                          head_hidden=hidden)


def test_macs_of_a_small_cnn_match_a_hand_count():
    backbone = build_backbone("small_cnn", in_chans=3, small_cnn={"blocks": 2, "channels": [8, 16]})
    model = _model(backbone).train()
    summary = model_summary(model, (3, 16, 16))
    rows = {r["component"]: r for r in summary["components"]}
    # conv 3x3, 3->8 on 16x16, then 2x2 pool, conv 3x3, 8->16 on 8x8 (BatchNorm, ReLU, pooling: not MACs)
    conv = 16 * 16 * 8 * 3 * 9 + 8 * 8 * 16 * 8 * 9
    assert rows["backbone (SmallCNN)"]["macs"] == conv == 129_024
    assert rows["head 'quadrant'"]["macs"] == 16 * 4
    assert rows["head 'red'"]["macs"] == 16 * 1
    assert rows["head 'tags'"]["macs"] == 16 * 3
    assert summary["macs_per_image"] == rows["total"]["macs"] == conv + 16 * 8
    assert summary["input_size"] == [3, 16, 16]
    assert list(rows)[-1] == "total" and "other" not in rows
    assert rows["head 'red'"]["parameters"] == 17 and rows["total"]["parameters"] == sum(
        r["parameters"] for name, r in rows.items() if name != "total")
    assert model.training  # the probe ran in eval mode and the model's mode was restored


def test_macs_scale_with_the_input_size_and_hidden_layers():
    backbone = build_backbone("small_cnn", in_chans=1, small_cnn={"blocks": 1, "channels": [4]})
    model = MultiTaskModel(backbone, {"a": 2}, mean=[0.5], std=[0.25], head_hidden=[10])
    small = model_summary(model, (1, 8, 8))
    big = model_summary(model, (1, 16, 16))
    head = 4 * 10 + 10 * 2
    assert small["macs_per_image"] == 8 * 8 * 4 * 9 + head
    assert big["macs_per_image"] == 16 * 16 * 4 * 9 + head
    assert big["components"][1] == {"component": "head 'a'", "parameters": 4 * 10 + 10 + 10 * 2 + 2,
                                    "trainable": 72, "macs": head, "kind": "head", "name": "a",
                                    "output_shape": [2]}


def test_branched_summary_adds_up_and_counts_frozen_parameters():
    backbone = build_backbone("small_cnn", in_chans=3, small_cnn={"blocks": 3, "channels": [8, 16, 16]})
    split = BranchedBackbone(backbone, "blocks.1", {"g1": ["quadrant", "tags"], "g2": ["red"]})
    model = _model(split)
    for p in split.trunk.parameters():
        p.requires_grad_(False)
    summary = model_summary(model, (3, 16, 16))
    rows = {r["component"]: r for r in summary["components"]}
    trunk = 16 * 16 * 8 * 3 * 9 + 8 * 8 * 16 * 8 * 9
    branch = 4 * 4 * 16 * 16 * 9  # third block on the trunk's 4x4 map
    assert rows["trunk (up to blocks.1)"]["macs"] == trunk
    assert rows["branch 'g1' (quadrant, tags)"]["macs"] == rows["branch 'g2' (red)"]["macs"] == branch
    assert summary["macs_per_image"] == trunk + 2 * branch + 16 * 8
    assert sum(r["macs"] for name, r in rows.items() if name != "total") == summary["macs_per_image"]
    assert rows["trunk (up to blocks.1)"]["trainable"] == 0 < rows["trunk (up to blocks.1)"]["parameters"]
    assert rows["total"]["trainable"] == rows["total"]["parameters"] - rows["trunk (up to blocks.1)"]["parameters"]


def test_summary_table_shows_input_size_and_macs():
    backbone = build_backbone("small_cnn", in_chans=3, small_cnn={"blocks": 2, "channels": [8, 16]})
    console = Console(width=120, record=True)
    console.print(summary_table(model_summary(_model(backbone), (3, 16, 16))))
    text = console.export_text()
    assert "input 3x16x16" in text and "129.15 KMACs per image" in text
    assert "MACs" in text and "129,024" in text and "129,152" in text
