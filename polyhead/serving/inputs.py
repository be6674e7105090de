"""Request payloads -> the runner's input, float32 [N, C, H, W] in [0, 1].

Encoded images go through `polyhead.data.images.decode_image`, the decoder `polyhead predict`
uses for files, so the server sees exactly the pixels `predict` sees for the same image.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any, Sequence

import numpy as np

from polyhead.data.images import ImageTooLarge, decode_image
from polyhead.errors import DataError
from polyhead.serving.limits import Limits, RequestError
from polyhead.serving.runner import Runner


def decode_images(items: Sequence[bytes], names: Sequence[str], runner: Runner, limits: Limits) -> np.ndarray:
    """Encoded images (PNG, JPEG, WebP...) -> float32 [N, C, H, W] in [0, 1]; `names[i]` is the
    request field of item i, used in messages (413 over the pixel limit, 400 unreadable)."""
    out = np.empty((len(items), runner.channels, *runner.image_size), dtype=np.float32)
    for i, (data, name) in enumerate(zip(items, names)):
        try:
            pixels = decode_image(data, channels=runner.channels, size=runner.image_size, name=name,
                                  max_pixels=limits.max_pixels)
        except ImageTooLarge as exc:
            raise RequestError(413, str(exc)) from None
        except DataError as exc:
            raise RequestError(400, str(exc)) from None
        # the same uint8 -> [0, 1] step the model applies to a uint8 batch from `predict`
        np.divide(pixels.numpy(), np.float32(255.0), out=out[i], dtype=np.float32)
    return out


def b64decode(text: Any, field: str) -> bytes:
    if not isinstance(text, str):
        raise RequestError(400, f"{field}: expected a base64 string, got {type(text).__name__}")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        try:  # URL-safe alphabet ('-', '_') as some clients send it
            return base64.b64decode(text, altchars=b"-_", validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RequestError(400, f"{field}: not valid base64 ({exc})") from None


def check_tensor(array: Any, field: str, runner: Runner, shape: Sequence[int] | None = None) -> np.ndarray:
    """Pre-processed pixels -> float32 [N, C, H, W]. `array` is nested lists (or a flat list with
    `shape`); N images of the model's C x H x W with values in [0, 1], else 400 naming `field`."""
    expected = (runner.channels, *runner.image_size)
    try:
        x = np.asarray(array, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise RequestError(400, f"{field}: not a numeric array of equal-length rows ({exc})") from None
    if shape is not None:
        if x.size != math.prod(shape):
            raise RequestError(400, f"{field}: {x.size} values do not fill shape {list(shape)}")
        x = x.reshape(shape)
    if x.ndim != 4 or tuple(x.shape[1:]) != expected:
        raise RequestError(400, f"{field}: shape {list(x.shape)}; expected [N, {', '.join(map(str, expected))}] "
                                f"(N images, channels, height, width)")
    if not np.isfinite(x).all() or (x.size and (x.min() < 0 or x.max() > 1)):
        raise RequestError(400, f"{field}: pixel values must be finite and in [0, 1] (divide 0..255 values by 255)")
    return x
