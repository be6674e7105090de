"""What `MultiTaskModel.forward_features` returns, measured, and said the same way in the docs."""

from __future__ import annotations

from pathlib import Path

import torch

from polyhead.model.backbones import build_backbone
from polyhead.model.branching import BranchedBackbone
from polyhead.model.multitask import MultiTaskModel

DOCS = Path(__file__).resolve().parents[2] / "docs"


def model(branch_point: str | None) -> MultiTaskModel:
    backbone = build_backbone("small_cnn", in_chans=3, small_cnn={"blocks": 2, "channels": [8, 16]})
    if branch_point:
        backbone = BranchedBackbone(backbone, branch_point, {"a": ["a"], "b": ["b"]})
    return MultiTaskModel(backbone, {"a": 3, "b": 1}, mean=[0.5] * 3, std=[0.5] * 3).eval()


def test_forward_features_shape_with_and_without_a_branch_point():
    x = torch.randint(0, 255, (2, 3, 16, 16), dtype=torch.uint8)
    plain, branched = model(None), model("blocks.0")
    assert plain.forward_features(x).shape == (2, 16)  # [B, F], F = num_features
    trunk = branched.forward_features(x)
    assert trunk.shape == (2, 8, 8, 8)  # [B, C, h, w]: after block 0 (8 channels, 16 -> 8 pixels)
    assert {k: v.shape for k, v in branched.forward_heads(trunk).items()} == {"a": (2, 3), "b": (2, 1)}

    api = next(line for line in (DOCS / "python-api.md").read_text().splitlines() if "forward_features(" in line)
    assert "[B, F]" in api and "[B, C, h, w] with a branch point" in api
    assert "[B, C, h, w]" in MultiTaskModel.forward_features.__doc__
    assert "`MultiTaskModel.forward_features(x)` returns the same [B, F], except with a branch point" in (
        DOCS / "architecture.md").read_text()
