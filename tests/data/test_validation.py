"""polyhead.data.validation: the image checks and the split helpers, without the CLI."""

from __future__ import annotations

import numpy as np
from PIL import Image

from polyhead.data.dataset import EncodedSplit
from polyhead.data import validation as V


def _jpeg(path, size=48):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path, quality=90)
    return path


def test_jpeg_with_trailing_bytes_is_complete(tmp_path):
    """Padding or camera extras after the EOI marker are tolerated; a cut scan is not."""
    data = _jpeg(tmp_path / "a.jpg").read_bytes()
    (tmp_path / "padded.jpg").write_bytes(data + b"\x00" * 500 + b"garbage")
    (tmp_path / "cut.jpg").write_bytes(data[:-10])
    assert V.check_image(str(tmp_path / "padded.jpg")) is None
    assert V.check_image(str(tmp_path / "cut.jpg"))[0] == "truncated"


def test_jpeg_with_long_trailing_data(tmp_path):
    """A motion photo appends megabytes after the EOI; the marker is then found after the scan data."""
    data = _jpeg(tmp_path / "a.jpg").read_bytes()
    garbage = np.random.default_rng(3).integers(0, 255, 200_000, dtype=np.uint8).tobytes() + b"\xff\xda\x00"
    (tmp_path / "motion.jpg").write_bytes(data + garbage)
    (tmp_path / "cut_long.jpg").write_bytes(data[: len(data) // 2] + b"\x00" * 50_000)  # cut, then padded
    assert V.check_image(str(tmp_path / "motion.jpg")) is None
    assert V.check_image(str(tmp_path / "cut_long.jpg")) == (
        "truncated", "truncated JPEG: no end-of-image marker (FF D9) after the image data")


def test_each_path_is_checked_once(tmp_path, monkeypatch):
    good = str(_jpeg(tmp_path / "a.jpg"))
    calls = []
    real = V.check_image
    monkeypatch.setattr(V, "check_image", lambda p, **kw: calls.append(p) or real(p, **kw))
    bad = V.check_images([good, good, str(tmp_path / "nope.png"), good], workers=2)
    assert sorted(calls) == sorted([good, str(tmp_path / "nope.png")])
    assert bad == {str(tmp_path / "nope.png"): ("missing", "file not found")}


def test_full_mode_decodes_16bit_tiff(tmp_path):
    Image.fromarray(np.full((4, 4), 1000, dtype=np.uint16)).save(tmp_path / "deep.tif")
    assert V.check_image(str(tmp_path / "deep.tif"), full=True, channels=1, size=(8, 8)) is None


def test_take_keeps_rows_targets_and_sources():
    split = EncodedSplit(paths=["a", "b", "c"], rows=np.array([1, 2, 3]), targets={"t": np.array([0, 1, 2])},
                         masks={"t": np.array([True, False, True])}, sources=np.array([0, 1, 1]),
                         source_names=["x.csv", "y.csv"])
    sub = split.take(np.array([0, 2]))
    assert sub.paths == ["a", "c"] and sub.rows.tolist() == [1, 3] and sub.targets["t"].tolist() == [0, 2]
    assert sub.masks["t"].tolist() == [True, True] and sub.rows_per_source() == {"x.csv": 1, "y.csv": 1}
    assert len(split) == 3  # the original is unchanged


def test_report_problem_lines_and_json(tmp_path):
    split = EncodedSplit(paths=[str(tmp_path / "nope.png")], rows=np.array([7]), source="t.csv [val]")
    report = V.validate_splits({"train": None, "val": split}, {}, image_column="path")
    (p,) = report.errors
    assert p.line() == f"t.csv [val], row 7, column 'path': {tmp_path / 'nope.png'}: file not found"
    assert report.bad == {"val": [0]} and report.images_checked == 1
    assert '"kind": "missing"' in report.write(tmp_path / "r.json").read_text()
