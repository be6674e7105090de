"""load_image / decode_image: every image mode we promise to handle, and the errors users can cause."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from polyhead.data.images import ImageTooLarge, decode_image, load_image, to_channels_and_size
from polyhead.errors import DataError


def _save(img: Image.Image, path, **kwargs):
    img.save(path, **kwargs)
    return path


@pytest.mark.parametrize("channels", [1, 3])
def test_grayscale_keeps_pixels_exactly(tmp_path, channels):
    pixels = np.random.default_rng(0).integers(0, 256, (12, 9), dtype=np.uint8)
    path = _save(Image.fromarray(pixels, mode="L"), tmp_path / "g.png")
    x = load_image(path, channels=channels, size=(12, 9))
    assert x.shape == (channels, 12, 9) and x.dtype == torch.uint8
    for c in range(channels):
        assert np.array_equal(x[c].numpy(), pixels)


def test_rgb_to_one_and_three_channels(tmp_path):
    path = _save(Image.new("RGB", (6, 4), (255, 0, 0)), tmp_path / "red.png")
    rgb = load_image(path, channels=3, size=(4, 6))
    assert rgb.shape == (3, 4, 6) and rgb.is_contiguous()
    assert rgb[:, 0, 0].tolist() == [255, 0, 0]
    gray = load_image(path, channels=1, size=(4, 6))
    assert gray.shape == (1, 4, 6)
    assert gray[0, 0, 0].item() == 76  # ITU-R 601 luma of pure red: 0.299 * 255


def test_rgba_transparent_pixel_becomes_white(tmp_path):
    img = Image.new("RGBA", (4, 4), (10, 20, 30, 255))
    img.putpixel((0, 0), (0, 0, 0, 0))
    path = _save(img, tmp_path / "rgba.png")
    x = load_image(path, channels=3, size=(4, 4))
    assert x[:, 0, 0].tolist() == [255, 255, 255]
    assert x[:, 1, 1].tolist() == [10, 20, 30]
    assert load_image(path, channels=1, size=(4, 4))[0, 0, 0].item() == 255


def test_la_composited_onto_white(tmp_path):
    img = Image.new("LA", (4, 4), (50, 255))
    img.putpixel((3, 3), (0, 0))
    path = _save(img, tmp_path / "la.png")
    x = load_image(path, channels=1, size=(4, 4))
    assert x[0, 0, 0].item() == 50 and x[0, 3, 3].item() == 255


def test_palette_image(tmp_path):
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 0, 0, 255] + [0] * (254 * 3))
    path = _save(img, tmp_path / "p.png")
    x = load_image(path, channels=3, size=(4, 4))
    assert x[:, 2, 2].tolist() == [0, 0, 255]


def test_palette_with_transparency_becomes_white(tmp_path):
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 200, 0, 0] + [0] * (254 * 3))
    img.putpixel((0, 0), 0)
    path = _save(img, tmp_path / "pt.png", transparency=0)
    with Image.open(path) as check:
        assert check.mode == "P" and "transparency" in check.info
    x = load_image(path, channels=3, size=(4, 4))
    assert x[:, 0, 0].tolist() == [255, 255, 255]
    assert x[:, 1, 1].tolist() == [200, 0, 0]


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257 * 100, 65535, 40000]], dtype=np.uint16)
    path = _save(Image.fromarray(values), tmp_path / "deep.png")
    with Image.open(path) as check:
        assert check.mode in ("I;16", "I")
    x = load_image(path, channels=1, size=(1, 4))
    assert x[0, 0].tolist() == [0, 100, 255, round(40000 / 257)]
    assert load_image(path, channels=3, size=(1, 4))[:, 0, 2].tolist() == [255, 255, 255]


def test_32_bit_and_float_modes():
    as_int = Image.fromarray(np.array([[0, 65535]], dtype=np.int32))  # mode "I"
    assert to_channels_and_size(as_int, channels=1, size=(1, 2))[0, 0].tolist() == [0, 255]
    as_float = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))  # mode "F"
    assert to_channels_and_size(as_float, channels=1, size=(1, 3))[0, 0].tolist() == [0, 128, 255]


def test_cmyk_jpeg(tmp_path):
    img = Image.new("CMYK", (16, 16), (0, 0, 0, 0))  # no ink: white
    img.paste((0, 255, 255, 0), (8, 0, 16, 16))  # magenta + yellow: red
    path = _save(img, tmp_path / "cmyk.jpg", quality=95)
    x = load_image(path, channels=3, size=(16, 16)).int()
    assert (x[:, 8, 2] > 240).all()
    r, g, b = x[:, 8, 13].tolist()
    assert r > 200 and g < 60 and b < 60


def test_one_bit_image(tmp_path):
    img = Image.new("1", (8, 8), 0)
    img.putpixel((1, 2), 1)
    path = _save(img, tmp_path / "bw.png")
    x = load_image(path, channels=1, size=(8, 8))
    assert x[0, 2, 1].item() == 255 and x[0, 0, 0].item() == 0


def test_exif_orientation_is_applied(tmp_path):
    stored = Image.new("L", (40, 20), 255)  # W=40, H=20; top half black
    stored.paste(0, (0, 0, 40, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = _save(stored, tmp_path / "phone.jpg", exif=exif, quality=95)
    x = load_image(path, channels=1, size=(40, 20))  # displayed: H=40, W=20
    assert x.shape == (1, 40, 20)
    # After the clockwise turn the stored top (black) is on the right.
    assert x[0, :, :8].float().mean() > 220
    assert x[0, :, -8:].float().mean() < 35


def test_animated_gif_uses_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(path) as check:
        assert check.n_frames == 3
    x = load_image(path, channels=3, size=(8, 8))
    assert x[:, 4, 4].tolist() == [255, 0, 0]


def test_resize_squashes_to_exact_size(tmp_path):
    path = _save(Image.new("RGB", (30, 10), (0, 128, 0)), tmp_path / "wide.png")
    x = load_image(path, channels=3, size=(16, 8))
    assert x.shape == (3, 16, 8)
    assert x[:, 5, 5].tolist() == [0, 128, 0]


def test_large_jpeg_is_drafted_and_resized(tmp_path):
    img = Image.new("RGB", (800, 600), (30, 60, 90))
    path = _save(img, tmp_path / "photo.jpg", quality=90)
    x = load_image(path, channels=3, size=(32, 48)).int()
    assert x.shape == (3, 32, 48)
    assert (x[:, 16, 24] - torch.tensor([30, 60, 90])).abs().max() <= 3


# ------------------------------------------------------------------ user errors


def _assert_data_error(path, *fragments):
    with pytest.raises(DataError) as info:
        load_image(path, channels=3, size=(8, 8))
    message = str(info.value)
    assert message.startswith(f"cannot read image '{path}'")
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    return message


def test_missing_file(tmp_path):
    _assert_data_error(tmp_path / "nope.png", "not found")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    _assert_data_error(path, "empty")


def test_truncated_png(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    whole = _save(Image.fromarray(pixels), tmp_path / "whole.png").read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(whole[: len(whole) // 2])
    _assert_data_error(path, "truncated")


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture\n")
    _assert_data_error(path, "not an image")


def test_directory(tmp_path):
    _assert_data_error(tmp_path, "directory")


@pytest.mark.parametrize("side", [12, 20])  # 144 px: warning zone; 400 px: error zone
def test_decompression_bomb_limit_stays_on(tmp_path, monkeypatch, side):
    path = _save(Image.new("L", (side, side)), tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    _assert_data_error(path, "MAX_IMAGE_PIXELS = 100")


@pytest.mark.parametrize(
    "kwargs", [{"channels": 2, "size": (4, 4)}, {"channels": 3, "size": (0, 4)}]
)
def test_bad_arguments(tmp_path, kwargs):
    path = _save(Image.new("L", (4, 4)), tmp_path / "ok.png")
    with pytest.raises(ValueError):
        load_image(path, **kwargs)


# ------------------------------------------------------------------ encoded bytes (the server's input)


def _phone_jpeg(path):
    stored = Image.new("RGB", (40, 20), (250, 240, 10))
    stored.paste((0, 0, 200), (0, 0, 40, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(stored, path, exif=exif, quality=90)


@pytest.mark.parametrize("make", [
    lambda d: _phone_jpeg(d / "phone.jpg"),
    lambda d: _save(Image.new("RGBA", (9, 7), (10, 200, 30, 90)), d / "a.webp", lossless=True),
    lambda d: _save(Image.fromarray(np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 21), d / "deep.png"),
    lambda d: _save(Image.new("P", (5, 5), 3), d / "p.gif"),
])
@pytest.mark.parametrize("channels", [1, 3])
def test_bytes_decode_exactly_like_the_file(tmp_path, make, channels):
    path = make(tmp_path)
    from_file = load_image(path, channels=channels, size=(12, 10))
    from_bytes = decode_image(path.read_bytes(), channels=channels, size=(12, 10))
    assert from_bytes.dtype == torch.uint8 and from_bytes.shape == (channels, 12, 10)
    assert torch.equal(from_bytes, from_file)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG declaring width x height whose pixel data (IDAT) is cut off after 4 bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
            + struct.pack(">I", 1000) + b"IDAT" + zlib.compress(b"\0" * 64)[:4])


def test_bytes_over_the_pixel_limit_are_refused_from_the_header():
    # no pixel data follows the header: decoding would fail as truncated, so the size error proves
    # the refusal came from the header alone
    with pytest.raises(ImageTooLarge, match="cannot read image 'upload 2': 3000x2000 = 6000000 pixels"):
        decode_image(_png_header_only(3000, 2000), channels=3, size=(8, 8), name="upload 2", max_pixels=10**6)
    with pytest.raises(ImageTooLarge, match="MAX_IMAGE_PIXELS"):  # Pillow's own limit, by default
        decode_image(_png_header_only(30000, 30000), channels=3, size=(8, 8))
    with pytest.raises(DataError, match="truncated") as info:  # under the limit: a truncated image
        decode_image(_png_header_only(300, 200), channels=3, size=(8, 8), max_pixels=10**6)
    assert not isinstance(info.value, ImageTooLarge)


def _half_a_png() -> bytes:
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


@pytest.mark.parametrize("data, fragment", [
    (b"", "empty"), (b"hello, not a picture", "not an image"), (_half_a_png(), "truncated")])
def test_bad_bytes(data, fragment):
    with pytest.raises(DataError, match=f"cannot read image 'instances\\[0\\]': .*{fragment}"):
        decode_image(data, channels=3, size=(8, 8), name="instances[0]")
