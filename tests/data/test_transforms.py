"""Batched uint8 augmentation (polyhead.data.transforms) against each option's definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polyhead.config.schema import AugmentConfig
from polyhead.data.transforms import (ANGLE, AREA, BRIGHT, CONTRAST, DRAWS, FLIP, RATIO, SATURATION, SHIFT_X,
                                      SHIFT_Y, BatchAugment, uniform_draws)


def _images(b=6, c=3, h=5, w=7, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (b, c, h, w), dtype=np.uint8))


def test_hflip_flips_exactly_the_chosen_samples():
    x = _images()
    u = torch.full((6, DRAWS), 0.9)
    u[[0, 3, 4], FLIP] = 0.1  # < 0.5: flipped
    out = BatchAugment(AugmentConfig(hflip=True)).apply(x, u)
    for i in range(6):
        expected = x[i].numpy()[:, :, ::-1] if i in (0, 3, 4) else x[i]
        assert torch.equal(out[i], torch.as_tensor(np.ascontiguousarray(expected)))


def test_crop_padding_is_a_reflect_pad_then_a_crop_at_the_drawn_offset():
    p, x = 2, _images(b=4, h=6, w=5)
    u = torch.zeros((4, DRAWS))
    offsets = [(0, 0), (4, 4), (1, 3), (2, 2)]  # top-left corner of the crop in the padded image, in [0, 2p]
    for i, (dy, dx) in enumerate(offsets):
        u[i, SHIFT_Y], u[i, SHIFT_X] = (dy + 0.5) / (2 * p + 1), (dx + 0.5) / (2 * p + 1)
    out = BatchAugment(AugmentConfig(crop_padding=p)).apply(x, u)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (p, p), (p, p)), mode="reflect")  # torchvision's "reflect"
    for i, (dy, dx) in enumerate(offsets):
        assert np.array_equal(out[i].numpy(), padded[i, :, dy:dy + 6, dx:dx + 5])
    assert torch.equal(out[3], x[3])  # offset (p, p): the image itself


def test_a_full_crop_without_rotation_is_the_identity_and_a_quarter_turn_is_rot90():
    x = _images(b=2, c=1, h=8, w=8)
    u = torch.zeros((2, DRAWS))
    u[:, AREA], u[:, RATIO], u[:, ANGLE] = 1.0, 0.5, 0.5  # the whole image, aspect 1, angle 0
    assert torch.equal(BatchAugment(AugmentConfig(random_resized_crop=True, rotation=90)).apply(x, u), x)
    u[0, ANGLE], u[1, ANGLE] = 1.0, 0.0  # +90 and -90 degrees
    out = BatchAugment(AugmentConfig(rotation=90)).apply(x, u)
    turns = {k: torch.rot90(x, k, dims=(-2, -1)) for k in (1, -1)}
    assert {k for k in turns if torch.equal(out[0], turns[k][0])} | {k for k in turns if torch.equal(out[1], turns[k][1])} == {1, -1}


def test_random_resized_crop_and_rotation_keep_shape_and_dtype():
    x = _images(b=8, h=9, w=13)
    aug = BatchAugment(AugmentConfig(random_resized_crop=True, rotation=30, hflip=True, crop_padding=3,
                                     color_jitter=0.4))
    out = aug(x, torch.arange(8), epoch=0)
    assert out.shape == x.shape and out.dtype == torch.uint8 and out.is_contiguous()
    assert not torch.equal(out, x)


def test_color_jitter_scales_brightness_by_the_drawn_factor():
    x = _images(b=3)
    u = torch.full((3, DRAWS), 0.5)  # with color_jitter=1 a draw of 0.5 is the factor 1 (no change)
    u[:, BRIGHT] = torch.tensor([1.0, 0.5, 0.0])  # factors 2, 1, 0
    out = BatchAugment(AugmentConfig(color_jitter=1.0)).apply(x, u)
    assert torch.equal(out[0], (x[0].int() * 2).clamp(0, 255).to(torch.uint8))
    assert torch.equal(out[1], x[1])
    assert torch.equal(out[2], torch.zeros_like(x[2]))
    u[:, [BRIGHT, SATURATION]] = 0.5
    u[:, CONTRAST] = 0.0  # contrast factor 0: every pixel becomes the image's mean grey
    flat = BatchAugment(AugmentConfig(color_jitter=1.0)).apply(x, u)
    assert all(len(torch.unique(flat[i])) == 1 for i in range(3))


@pytest.mark.parametrize("option", ["hflip", "crop_padding", "random_resized_crop", "rotation", "color_jitter"])
def test_draws_are_uniform_and_independent_of_the_batch(option):
    u = uniform_draws(0, 1, np.arange(20000))
    assert u.shape == (20000, DRAWS) and 0.0 <= u.min() and u.max() < 1.0
    assert np.allclose(u.mean(axis=0), 0.5, atol=0.01)
    assert np.array_equal(uniform_draws(0, 1, np.array([7, 3]))[0], u[7])
    value = {"hflip": True, "crop_padding": 2, "random_resized_crop": True, "rotation": 20.0, "color_jitter": 0.3}
    aug = BatchAugment(AugmentConfig(**{option: value[option]}), seed=5)
    x = _images(b=16)
    alone = torch.cat([aug(x[i:i + 1], torch.tensor([i]), epoch=2) for i in range(16)])
    assert torch.equal(aug(x, torch.arange(16), epoch=2), alone)
