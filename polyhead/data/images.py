"""Decode image files into fixed-size uint8 tensors.

Every image that enters training, evaluation or prediction goes through
`load_image` (a file) or `decode_image` (encoded bytes, as the server receives
them); both share one decoder, so this file is the one place that knows about
odd image modes:

- L, RGB: used as they are (converted between 1 and 3 channels if needed);
- RGBA, LA, PA, P with a transparent colour: composited onto white, because a
  transparent pixel carries no colour and white is what a viewer shows;
- P (palette), CMYK, YCbCr, 1-bit and other 8-bit modes: converted by Pillow;
- I;16 / I (16-bit grayscale PNG, TIFF) and F: scaled down to 8 bit
  (65535 -> 255), never clipped;
- EXIF orientation is applied, so a phone photo comes out upright;
- animated GIF/PNG/WebP: the first frame is used.

Pillow's protections stay on: a truncated file is an error (we never set
`ImageFile.LOAD_TRUNCATED_IMAGES`), and an image larger than
`PIL.Image.MAX_IMAGE_PIXELS` is refused as a possible decompression bomb.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from polyhead.errors import ImageError

__all__ = ["ImageTooLarge", "decode_image", "load_image", "to_channels_and_size"]

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_HIGH_DEPTH_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N", "F"})

# Errors Pillow raises for unreadable, corrupt or truncated files.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)


class ImageTooLarge(ImageError):
    """The header declares more pixels than allowed: refused before any pixel is decoded."""


def load_image(path: str | os.PathLike, *, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """Decode one image file to a uint8 tensor [channels, H, W] with (H, W) == size.

    Args:
        path: image file in any format Pillow reads (PNG, JPEG, GIF, BMP, TIFF, WebP...).
        channels: 1 (grayscale) or 3 (RGB).
        size: target (H, W); the image is resized to exactly this (squashed, not
            cropped) with antialiased bilinear filtering.

    Returns:
        uint8 tensor [channels, H, W], contiguous.

    Raises:
        ImageError (a DataError; `.reason` is the message without the path): the file is
            missing, unreadable, truncated, not an image, or larger than Pillow's
            decompression-bomb limit (then `ImageTooLarge`).
    """
    return _decode(path, os.fspath(path), channels=channels, size=size, max_pixels=None)


def decode_image(data: bytes, *, channels: int, size: tuple[int, int], name: str = "image",
                 max_pixels: int | None = None) -> torch.Tensor:
    """Decode encoded image bytes (PNG, JPEG, WebP...) exactly as `load_image` decodes a file
    holding them: uint8 [channels, H, W] with (H, W) == size.

    `name` says which image in error messages; `max_pixels` (default: Pillow's
    MAX_IMAGE_PIXELS) is checked against the header's width x height before decoding.

    Raises:
        ImageTooLarge: the header declares more than `max_pixels` pixels.
        ImageError: empty, not an image, corrupt or truncated.
    """
    return _decode(io.BytesIO(data), name, channels=channels, size=size, max_pixels=max_pixels)


def _decode(source: str | os.PathLike | io.BytesIO, label: str, *, channels: int, size: tuple[int, int],
            max_pixels: int | None) -> torch.Tensor:
    """The one decoder behind `load_image` (a path) and `decode_image` (bytes); `label` names it."""
    _check_args(channels, size)
    try:
        with warnings.catch_warnings():
            # A DecompressionBombWarning (image above MAX_IMAGE_PIXELS) must stop
            # us, not scroll past in a log 60k times.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:  # reads the header only
                _check_pixels(img, label, max_pixels)
                _draft_jpeg(img, size)
                img.load()  # decode now, inside the `with`, so the file is closed after
                return to_channels_and_size(img, channels=channels, size=size)
    except FileNotFoundError:
        raise _error(label, "file not found") from None
    except IsADirectoryError:
        raise _error(label, "it is a directory, not a file") from None
    except PermissionError:
        raise _error(label, "permission denied") from None
    except UnidentifiedImageError:
        if _is_empty(source):
            raise _error(label, "the file is empty (0 bytes)") from None
        raise _error(label, "not an image file, or a format Pillow cannot read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _error(
            label,
            f"{e} Pillow's limit is PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS} pixels "
            "(twice that is a hard error); shrink the image, "
            "or raise the limit if you trust the file",
            ImageTooLarge,
        ) from None
    except _DECODE_ERRORS as e:
        reason = str(e) or type(e).__name__
        if "truncated" not in reason:
            reason += " (corrupt or truncated file?)"
        raise _error(label, reason) from None


def _check_pixels(img: Image.Image, label: str, max_pixels: int | None) -> None:
    """Refuse from the header's size, before `load` decodes anything (Pillow's own bomb check
    already ran in `Image.open`; this applies a caller's lower limit)."""
    w, h = img.size
    if max_pixels is not None and w * h > max_pixels:
        raise _error(label, f"{w}x{h} = {w * h} pixels is above the limit of {max_pixels} pixels; "
                            "send a smaller image", ImageTooLarge)


def to_channels_and_size(img: Image.Image, *, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """Turn a decoded PIL image into a uint8 tensor [channels, H, W] with (H, W) == size.

    Applies EXIF orientation (the image is modified in place), takes the first
    frame of an animation, composites transparency onto white, scales 16-bit
    and float images to 8 bit and resizes with antialiased bilinear filtering
    (skipped when the size already matches).
    """
    _check_args(channels, size)
    if img.tell() != 0:  # an animation moved past its first frame
        img.seek(0)
    if img.getexif().get(0x0112, 1) != 1:  # 0x0112 = EXIF Orientation; 1 = upright
        img = ImageOps.exif_transpose(img)
    img = _to_8bit_mode(img, channels)
    h, w = size
    if img.size != (w, h):  # PIL sizes are (W, H)
        img = img.resize((w, h), Image.Resampling.BILINEAR)  # antialiased when shrinking
    arr = np.array(img, dtype=np.uint8)  # a writable copy: [H, W] or [H, W, 3]
    if arr.ndim == 2:
        return torch.from_numpy(arr).unsqueeze(0)  # [1, H, W]
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()  # [3, H, W]


def _to_8bit_mode(img: Image.Image, channels: int) -> Image.Image:
    """Return `img` in mode "L" (channels=1) or "RGB" (channels=3)."""
    target = "L" if channels == 1 else "RGB"
    mode = img.mode
    if mode == target:
        return img
    if mode in _HIGH_DEPTH_MODES:
        gray = Image.fromarray(_high_depth_to_uint8(img), mode="L")
        return gray if target == "L" else gray.convert("RGB")
    if mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        white.alpha_composite(rgba)
        return white.convert(target)
    if mode in ("L", "RGB", "1", "P", "CMYK", "YCbCr"):
        return img.convert(target)
    try:  # LAB, HSV and rarer modes: let Pillow try, via RGB
        return img.convert("RGB").convert(target)
    except ValueError as e:
        raise ValueError(f"unsupported image mode {mode!r} ({e})") from None


def _high_depth_to_uint8(img: Image.Image) -> np.ndarray:
    """Scale a 16-bit ("I;16*"), 32-bit int ("I") or float ("F") image to uint8 [H, W].

    16-bit data (and "I" data that fits in 0..65535, which is how 16-bit PNGs
    often arrive) maps 0..65535 to 0..255 with rounding; floats in 0..1 map to
    0..255; anything else is stretched from its own min..max.
    """
    arr = np.asarray(img)
    if img.mode.startswith("I;16"):
        return ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if img.mode == "I" and lo >= 0 and hi <= 65535:
        return ((arr.astype(np.int64) + 128) // 257).astype(np.uint8)
    if img.mode == "F" and lo >= 0 and hi <= 1:
        return np.rint(arr * 255.0).astype(np.uint8)
    if hi == lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    scaled = (arr.astype(np.float64) - lo) * (255.0 / (hi - lo))
    return np.rint(scaled).astype(np.uint8)


def _draft_jpeg(img: Image.Image, size: tuple[int, int]) -> None:
    """Let the JPEG decoder downscale by 1/2..1/8 while decoding (much faster for photos).

    The draft stays at least `size` on both sides, whatever the EXIF rotation,
    and the final antialiased resize still happens in `to_channels_and_size`.
    """
    if img.format == "JPEG":
        side = max(size)
        img.draft(None, (side, side))


def _check_args(channels: int, size: tuple[int, int]) -> None:
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if (
        len(size) != 2
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
        or min(size) < 1
    ):
        raise ValueError(f"size must be two positive integers (H, W), got {size!r}")


def _is_empty(source: str | os.PathLike | io.BytesIO) -> bool:
    if isinstance(source, io.BytesIO):
        return source.getbuffer().nbytes == 0
    try:
        return os.path.getsize(source) == 0
    except OSError:
        return False


def _error(label: str, reason: str, kind: type[ImageError] = ImageError) -> ImageError:
    return kind(f"cannot read image '{label}': {reason}", path=label, reason=reason)
