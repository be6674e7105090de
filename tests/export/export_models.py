"""Bundles and images for the export tests: models built directly (no training), saved as bundles
and loaded back, as `polyhead export` sees them; images written as PNG files and decoded by
polyhead's own image path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from conftest import QUADRANTS, make_image
from polyhead.config.schema import TaskConfig
from polyhead.model.bundle import BackboneSpec, Preprocessing, build_model, save_bundle
from polyhead.tasks import build_tasks

TASKS = {
    "quadrant": TaskConfig(type="multiclass", classes=QUADRANTS, top_k=2),
    "red": TaskConfig(type="binary", classes=["no", "yes"]),
    "tags": TaskConfig(type="multilabel", classes=["left", "top", "warm"], thresholds={"warm": 0.3}),
}

# name -> (backbone, image size, extra BackboneSpec / build_model keywords)
MODELS = {
    "small_cnn": ("small_cnn", 16, {"small_cnn": {"blocks": 2, "channels": [8, 16]}}),
    "resnet18": ("resnet18", 32, {}),
    "efficientnet_lite0": ("efficientnet_lite0", 64, {"pretrained": True}),  # offline ImageNet weights
    "branch_point": ("resnet18", 32, {"branch_point": "layer3", "branch_groups": {"position": ["quadrant", "tags"],
                                                                                   "colour": ["red"]}}),
}


def make_bundle(folder: Path, model: str, seed: int = 0) -> Path:
    """Build MODELS[model] with TASKS, give its heads decisive weights, save it as a bundle in `folder`."""
    backbone, size, extra = MODELS[model]
    extra = dict(extra)
    pretrained = extra.pop("pretrained", False)
    torch.manual_seed(seed)
    tasks = build_tasks({n: TaskConfig(**vars(c)) for n, c in TASKS.items()})
    spec = BackboneSpec(name=backbone, in_chans=3, **extra)
    prep = Preprocessing((size, size), 3, None, None)
    net = build_model(spec, tasks, prep, head_hidden=(16,), pretrained=pretrained).eval()
    with torch.no_grad():  # freshly initialised heads give near-uniform outputs; spread them out
        for head in net.heads.values():
            for p in head.parameters():
                p.mul_(8.0)
    return save_bundle(folder, net, tasks, spec, prep, head_hidden=(16,))


def write_images(folder: Path, n: int = 8, size: int = 40, seed: int = 0) -> list[Path]:
    """n PNG files of the test dataset's kind (a coloured patch on noise), at size x size."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i:02d}.png"
        make_image(QUADRANTS[i % 4], bool(i % 3 == 0), rng, size=size).save(path)
        paths.append(path)
    return paths
