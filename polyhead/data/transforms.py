"""Training-time augmentation on uint8 [C, H, W] tensors (torchvision transforms v2).

Normalisation is not here: the model normalises its own uint8 input, so the
bundle, `predict` and an exported model all preprocess the same way.
"""

from __future__ import annotations

from typing import Callable

import torch
from torchvision.transforms import v2

from polyhead.config.schema import AugmentConfig


def build_train_transform(aug: AugmentConfig, size: tuple[int, int], channels: int = 3) -> Callable[[torch.Tensor], torch.Tensor] | None:
    steps: list = []
    if aug.random_resized_crop:
        steps.append(v2.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True))
    if aug.crop_padding > 0:
        steps.append(v2.RandomCrop(size, padding=aug.crop_padding, padding_mode="reflect"))
    if aug.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if aug.rotation > 0:
        steps.append(v2.RandomRotation(aug.rotation))
    if aug.color_jitter > 0:
        s = aug.color_jitter
        steps.append(v2.ColorJitter(brightness=s, contrast=s, saturation=s if channels == 3 else 0))
    return v2.Compose(steps) if steps else None
