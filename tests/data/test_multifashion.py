"""prepare_multifashion on tiny fake IDX files (items are solid squares) and on the real files."""

from __future__ import annotations

import gzip
import itertools
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from polyhead.data.preparers import PREPARERS, _idx, _output, get_preparer
from polyhead.data.preparers.fashion_mnist import CATEGORIES
from polyhead.data.preparers.multifashion import MAX_SHIFT, compose, prepare_multifashion
from polyhead.errors import DataError

N_TRAIN_SRC, N_TEST_SRC = 30, 10  # source items in the fake IDX files
ROWS = 40  # images per split written by most tests (limit)
COLUMNS = ["image", "left", "right", "present", "same"]


def _value(category: int) -> int:
    """Pixel value of every fake item of this category."""
    return 20 * category + 10


def _item(category: int) -> np.ndarray:
    """A fake 28x28 item: a solid 20x20 square at rows/columns 4..23, like a centred garment."""
    item = np.zeros((28, 28), np.uint8)
    item[4:24, 4:24] = _value(category)
    return item


def _write_idx(path: Path, array: np.ndarray) -> None:
    raw = struct.pack(">I", 0x00000800 + array.ndim)
    raw += b"".join(struct.pack(">I", d) for d in array.shape) + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


@pytest.fixture
def src(tmp_path) -> Path:
    """Fake Fashion-MNIST: train labels 0..9 repeated, test labels even only; item k is _item(k)."""
    folder = tmp_path / "src"
    folder.mkdir()
    labels = {"train": np.arange(N_TRAIN_SRC) % 10, "test": (np.arange(N_TEST_SRC) * 2) % 10}
    for split, lab in labels.items():
        items = np.stack([_item(k) for k in lab])
        _write_idx(folder / (_idx.IDX_FILES[(split, "images")] + ".gz"), items)
        _write_idx(folder / _idx.IDX_FILES[(split, "labels")], lab)
    return folder


def _prepare(out: Path, src: Path, **kwargs) -> dict:
    kwargs.setdefault("limit", ROWS)
    return prepare_multifashion(out, source=src, progress=False, **kwargs)


def _pixels(out: Path, table: pd.DataFrame) -> np.ndarray:
    """uint8 [n, 36, 36] of the table's PNGs (checking mode and size)."""
    images = []
    for path in table["image"]:
        with Image.open(out / path) as png:
            assert png.mode == "L" and png.size == (36, 36)
            images.append(np.asarray(png))
    return np.stack(images)


def _explanations(image: np.ndarray, left: int, right: int) -> list[tuple[int, int, int, int]]:
    """Every (left y, left x, right y, right x) item corner, each searched over 0..8 (the whole
    canvas), for which max(left item there, right item there) is exactly `image`."""
    corners = list(itertools.product(range(9), repeat=2))

    def placed(category):
        canvases = np.zeros((len(corners), 36, 36), np.uint8)
        for i, (y, x) in enumerate(corners):
            canvases[i, y : y + 28, x : x + 28] = _item(category)
        return canvases

    match = (np.maximum(placed(left)[:, None], placed(right)[None, :]) == image).all(axis=(2, 3))
    return [corners[i] + corners[j] for i, j in zip(*np.nonzero(match))]


def test_layout_labels_and_shifts(tmp_path, src):
    out = tmp_path / "out"
    summary = _prepare(out, src)
    assert summary["dataset"] == "multifashion" and summary["source"] == str(src)
    rows = {s: summary["splits"][s]["rows"] for s in ("train", "test")}
    assert rows == {"train": ROWS, "test": ROWS}

    ids = {name: k for k, name in enumerate(CATEGORIES)}
    left_corners, right_corners = set(), set()
    for split in ("train", "test"):
        table = pd.read_parquet(out / f"{split}.parquet")
        assert list(table.columns) == COLUMNS and len(table) == ROWS
        assert table.notna().all().all()
        assert table["image"].iloc[0] == f"images/{split}/00000.png"
        assert len(list((out / "images" / split).glob("*.png"))) == ROWS
        drawn = {ids[c] for c in table["left"]} | {ids[c] for c in table["right"]}
        # Test pairs come from the test split (even categories only), train pairs from train.
        assert drawn <= {0, 2, 4, 6, 8} if split == "test" else drawn & {1, 3, 5, 7, 9}
        pixels = _pixels(out, table)
        for image, row in zip(pixels, table.itertuples()):
            left, right = ids[row.left], ids[row.right]
            # Labels agree with each other.
            assert row.present.split("|") == sorted({row.left, row.right}, key=ids.get)
            assert row.same == ("yes" if left == right else "no")
            # The pixels are exactly the two labelled items, max-combined, each within 4 px of
            # its corner: top-left corner in 0..4, bottom-right corner in 4..8 (of 0..8).
            found = _explanations(image, left, right)
            assert found, f"{split} {row.image} is not max(left item, right item) at any shift"
            in_bounds = [
                c for c in found if max(c[:2]) <= MAX_SHIFT and min(c[2:]) >= 8 - MAX_SHIFT
            ]
            assert in_bounds
            if left != right:  # (equal items could also be explained swapped)
                assert in_bounds == found
                left_corners.add(found[0][:2])
                right_corners.add(found[0][2:])
                # Pixel mass: each item's square, where it is on top, sits in its quadrant.
                top, below = (left, right) if _value(left) > _value(right) else (right, left)
                ys, xs = np.nonzero(image == _value(top))
                centre = 17.5
                if top == left:
                    assert ys.mean() <= centre and xs.mean() <= centre
                else:
                    assert ys.mean() >= centre and xs.mean() >= centre
    # The shifts vary from image to image (never beyond 4 px, checked above).
    assert len(left_corners) > 3 and len(right_corners) > 3


def test_compose_takes_the_max_where_items_overlap():
    items = np.stack([_item(1), _item(4)])
    shifts = np.array([[0, 0, 0, 0], [2, 1, 3, 0]])
    canvas = compose(items, np.array([0, 1]), np.array([1, 0]), shifts)
    assert canvas.shape == (2, 36, 36) and canvas.dtype == np.uint8
    # Image 0: left (value 30) corner (0,0), right (value 90) corner (8,8).
    assert canvas[0, 4, 4] == 30 and canvas[0, 35, 35] == 0 and canvas[0, 31, 31] == 90
    assert canvas[0, 15, 15] == 90  # overlap: max(30, 90)
    assert canvas[0, 0:4].max() == 0 and canvas[0, :, 0:4].max() == 0
    # Image 1: left (90) corner (2,1), right (30) corner (5,8).
    assert canvas[1, 6, 5] == 90 and canvas[1, 5, 4] == 0 and canvas[1, 28, 31] == 30
    assert canvas[1, 15, 15] == 90


def test_seeded_and_limit_is_a_prefix(tmp_path, src):
    tables, pixels = {}, {}
    for name, seed, limit in (("a", 1, ROWS), ("b", 1, ROWS), ("c", 2, ROWS), ("short", 1, 7)):
        out = tmp_path / name
        _prepare(out, src, seed=seed, limit=limit)
        tables[name] = {s: pd.read_parquet(out / f"{s}.parquet") for s in ("train", "test")}
        pixels[name] = {s: _pixels(out, tables[name][s]) for s in ("train", "test")}
    for split in ("train", "test"):
        assert tables["a"][split].equals(tables["b"][split])
        assert np.array_equal(pixels["a"][split], pixels["b"][split])
        assert not tables["a"][split].equals(tables["c"][split])
        assert not np.array_equal(pixels["a"][split], pixels["c"][split])
        # limit=7 writes the first 7 rows of the limit=40 run.
        assert len(tables["short"][split]) == 7
        assert tables["short"][split].equals(tables["a"][split].iloc[:7])
        assert np.array_equal(pixels["short"][split], pixels["a"][split][:7])


def test_missing_fraction_blanks_secondary_train_labels(tmp_path, src):
    out = tmp_path / "out"
    summary = _prepare(out, src, missing_fraction=0.25, seed=5)
    train = pd.read_parquet(out / "train.parquet")
    test = pd.read_parquet(out / "test.parquet")
    k = ROWS // 4
    assert summary["splits"]["train"]["missing"] == {"right": k, "present": k, "same": k}
    assert [train[c].isna().sum() for c in ("right", "present", "same")] == [k, k, k]
    assert train[["image", "left"]].notna().all().all()
    blanked = [frozenset(np.flatnonzero(train[c].isna())) for c in ("right", "present", "same")]
    assert len(set(blanked)) > 1  # drawn independently
    assert test.notna().all().all()

    # Blanking labels does not change which images are drawn.
    full = tmp_path / "full"
    _prepare(full, src, seed=5)
    assert pd.read_parquet(full / "train.parquet")["left"].equals(train["left"])


def test_process_pool_path(tmp_path, src, monkeypatch):
    monkeypatch.setattr(_output, "_POOL_MIN_IMAGES", 1)
    monkeypatch.setattr(_output, "_CHUNK", 7)
    _prepare(tmp_path / "serial", src, limit=20)
    pooled = tmp_path / "pooled"
    _prepare(pooled, src, limit=20)
    table = pd.read_parquet(pooled / "train.parquet")
    assert np.array_equal(_pixels(pooled, table), _pixels(tmp_path / "serial", table))


def test_registry():
    assert PREPARERS["multifashion"] is prepare_multifashion
    assert get_preparer("multifashion") is prepare_multifashion
    with pytest.raises(DataError, match="unknown dataset 'multi-fashion'.*multifashion"):
        get_preparer("multi-fashion")


def test_unknown_source_and_bad_arguments(tmp_path, src, monkeypatch):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="lacks the Fashion-MNIST file.*train-images-idx3-ubyte"):
        prepare_multifashion(tmp_path / "out", source=tmp_path / "empty")
    with pytest.raises(DataError, match="is not a folder"):
        prepare_multifashion(tmp_path / "out", source=tmp_path / "absent")
    monkeypatch.setattr(_idx, "DEBIAN_DIR", tmp_path / "no-debian")
    with pytest.raises(DataError, match="not found in .*no-debian.*--download"):
        prepare_multifashion(tmp_path / "out")
    for kwargs in ({"missing_fraction": -0.1}, {"limit": 0}):
        with pytest.raises(DataError):
            prepare_multifashion(tmp_path / "out", source=src, **kwargs)


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(),
    reason="/usr/share/datasets/fashion-mnist/ is absent (apt-get install dataset-fashion-mnist)",
)
def test_real_debian_files(tmp_path):
    out = tmp_path / "out"
    summary = prepare_multifashion(out, limit=30, progress=False)
    assert summary["source"] == "/usr/share/datasets/fashion-mnist"
    for split in ("train", "test"):
        table = pd.read_parquet(out / f"{split}.parquet")
        assert list(table.columns) == COLUMNS and len(table) == 30
        assert set(table["left"]) | set(table["right"]) <= set(CATEGORIES)
        assert table["left"].nunique() > 3  # pairs are drawn across categories
        pixels = _pixels(out, table).astype(float)
        assert pixels.max() > 100
        # Both items show: ink in the top-left and in the bottom-right quadrant of every image.
        assert (pixels[:, :18, :18].sum(axis=(1, 2)) > 0).all()
        assert (pixels[:, 18:, 18:].sum(axis=(1, 2)) > 0).all()
