"""Training-time augmentation of whole batches of uint8 images [B, C, H, W], on their own device.

A cached dataset hands the training step ready batches; augmenting them here, as a few batched
tensor operations (on the GPU when training runs there), leaves no per-sample Python work.
Normalisation is not here: the model normalises its own uint8 input, so the bundle, `predict`
and an exported model all preprocess the same way.

Each sample's random draws are a hash of (training.seed, epoch, position in the split): the
same sample in the same epoch is augmented the same way whatever the batch, the worker or the
global RNG, so a resumed run repeats the uninterrupted one exactly.

What each `data.augment` option does (the same meaning as torchvision's transforms):

    random_resized_crop  a crop of 50-100 % of the area, aspect ratio 3/4-4/3, resized back (bilinear)
    rotation             a rotation by an angle uniform in [-rotation, rotation] degrees, corners filled with 0
    crop_padding         pad by p pixels (reflecting the border), crop back at a random offset
    hflip                a horizontal flip with probability 1/2
    color_jitter         brightness, contrast and (RGB) saturation factors uniform in [max(0, 1-s), 1+s]

The crop and the rotation are one affine resampling; torchvision applies the jitter's three
factors in a random order, here always brightness, contrast, saturation.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from polyhead.config.schema import AugmentConfig
from polyhead.data.seeds import AUGMENT, derive_seed

# Columns of the per-sample draws (uniform in [0, 1)).
FLIP, SHIFT_Y, SHIFT_X, AREA, RATIO, CROP_Y, CROP_X, ANGLE, BRIGHT, CONTRAST, SATURATION = range(11)
DRAWS = 11
_GRAY = (0.2989, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


def uniform_draws(seed: int, epoch: int, positions: np.ndarray, columns: int = DRAWS) -> np.ndarray:
    """float64 [B, columns] in [0, 1): a counter-based hash (splitmix64) of (seed, epoch, position, column)."""
    base = np.uint64(derive_seed(seed, epoch, 0, AUGMENT))
    counter = np.asarray(positions, dtype=np.uint64)[:, None] * np.uint64(columns) + np.arange(columns, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = counter + base + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


class BatchAugment:
    """`data.augment` for batches: `draws` (on the CPU, from positions and the epoch) then `apply`
    (on the images' device). `__call__` does both."""

    def __init__(self, aug: AugmentConfig, channels: int = 3, seed: int = 0):
        self.aug, self.channels, self.seed = aug, channels, int(seed)

    @property
    def enabled(self) -> bool:
        a = self.aug
        return bool(a.hflip or a.crop_padding > 0 or a.random_resized_crop or a.rotation > 0 or a.color_jitter > 0)

    def draws(self, positions: torch.Tensor, epoch: int) -> torch.Tensor:
        """float32 [B, DRAWS]: each sample's random numbers, from `positions` (int64 [B], the batch's
        `index`) and the epoch."""
        u = uniform_draws(self.seed, epoch, positions.cpu().numpy())
        return torch.from_numpy(u.astype(np.float32))

    def __call__(self, images: torch.Tensor, positions: torch.Tensor, epoch: int) -> torch.Tensor:
        return self.apply(images, self.draws(positions, epoch))

    def apply(self, images: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """uint8 [B, C, H, W] -> augmented uint8 [B, C, H, W]; `u`: float [B, DRAWS] from `draws`."""
        a = self.aug
        u = u.to(images.device, non_blocking=True)
        x = images
        if a.random_resized_crop or a.rotation > 0:
            x = self._resample(x, u)
        if a.crop_padding > 0:
            x = self._pad_and_crop(x, u)
        if a.hflip:
            x = torch.where((u[:, FLIP] < 0.5)[:, None, None, None], x.flip(-1), x)
        if a.color_jitter > 0:
            x = self._jitter(x, u)
        return x.contiguous()

    def _resample(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Random resized crop and rotation as one affine map per sample (bilinear, zeros outside)."""
        b, _, h, w = x.shape
        one = torch.ones(b, device=x.device)
        crop_w, crop_h, cx, cy = one * w, one * h, one * (w / 2), one * (h / 2)
        if self.aug.random_resized_crop:
            area = (0.5 + 0.5 * u[:, AREA]) * (h * w)
            ratio = torch.exp(math.log(3 / 4) + u[:, RATIO] * (math.log(4 / 3) - math.log(3 / 4)))
            crop_w = torch.sqrt(area * ratio).clamp(max=w)
            crop_h = torch.sqrt(area / ratio).clamp(max=h)
            cx = crop_w / 2 + u[:, CROP_X] * (w - crop_w)
            cy = crop_h / 2 + u[:, CROP_Y] * (h - crop_h)
        angle = torch.deg2rad((2 * u[:, ANGLE] - 1) * self.aug.rotation)
        cos, sin = torch.cos(angle), torch.sin(angle)
        # An output pixel p (pixels from the centre) comes from the crop at R(angle) p, which is the
        # source pixel (crop_w / w, crop_h / h) * R p + (cx - w/2, cy - h/2); grid_sample wants it
        # divided by (w/2, h/2). In grid units (x_out * w/2, y_out * h/2) = p.
        sx, sy = crop_w / w, crop_h / h
        theta = torch.stack([
            torch.stack([sx * cos, -sx * sin * h / w, (2 * cx - w) / w], dim=1),
            torch.stack([sy * sin * w / h, sy * cos, (2 * cy - h) / h], dim=1)], dim=1)  # [B, 2, 3]
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out.round_().clamp_(0, 255).to(torch.uint8)

    def _pad_and_crop(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """torchvision's RandomCrop(size, padding=p, padding_mode="reflect") as one gather: each
        sample shifted by (dy, dx) uniform in [-p, p], the border reflected (without repeating it)."""
        b, _, h, w = x.shape
        p = self.aug.crop_padding
        shift = (u[:, [SHIFT_Y, SHIFT_X]] * (2 * p + 1)).floor().long().clamp(max=2 * p) - p  # [B, 2]
        rows = _reflect(torch.arange(h, device=x.device)[None] + shift[:, :1], h)  # [B, H]
        cols = _reflect(torch.arange(w, device=x.device)[None] + shift[:, 1:], w)  # [B, W]
        batch = torch.arange(b, device=x.device)[:, None, None]
        return x[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # [B, H, W, C] -> [B, C, H, W]

    def _jitter(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        s = self.aug.color_jitter
        lo = max(0.0, 1.0 - s)

        def factor(col: int) -> torch.Tensor:
            return (lo + u[:, col] * (1.0 + s - lo))[:, None, None, None]  # [B, 1, 1, 1]

        f = (x.float() * factor(BRIGHT)).clamp_(0, 255)
        mean = _gray(f).mean(dim=(1, 2, 3), keepdim=True)
        f = ((f - mean) * factor(CONTRAST) + mean).clamp_(0, 255)
        if f.shape[1] == 3:
            gray = _gray(f)
            f = ((f - gray) * factor(SATURATION) + gray).clamp_(0, 255)
        return f.round_().to(torch.uint8)


def _reflect(i: torch.Tensor, n: int) -> torch.Tensor:
    """Indices outside 0..n-1 reflected back inside, the border pixel not repeated (-1 -> 1, n -> n-2)."""
    if n == 1:
        return torch.zeros_like(i)
    i = i.abs()
    return torch.where(i > n - 1, 2 * (n - 1) - i, i).clamp(0, n - 1)


def _gray(f: torch.Tensor) -> torch.Tensor:
    """float [B, C, H, W] -> luma [B, 1, H, W] (the image itself when C == 1)."""
    if f.shape[1] == 1:
        return f
    r, g, b = f.unbind(1)
    return (_GRAY[0] * r + _GRAY[1] * g + _GRAY[2] * b).unsqueeze(1)


def build_train_transform(aug: AugmentConfig, size: tuple[int, int] | None = None,
                          channels: int = 3) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """One image uint8 [C, H, W] -> one augmented draw (inspect-data's sample grid), or None when
    `data.augment` does nothing. The draw is chosen by the global RNG, so seeding it repeats the grid."""
    augment = BatchAugment(aug, channels)
    if not augment.enabled:
        return None

    def one(image: torch.Tensor) -> torch.Tensor:
        position = torch.randint(0, 2**31 - 1, (1,))
        return augment(image[None], position, epoch=0)[0]

    return one
