"""prepare_fashion_mnist on tiny fake IDX files, the offline download path, and the real files."""

from __future__ import annotations

import gzip
import hashlib
import re
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from polyhead.data.preparers import PREPARERS, get_preparer
from polyhead.data.preparers import _idx, _output
from polyhead.data.preparers import fashion_mnist as fm
from polyhead.data.preparers.fashion_mnist import (
    CATEGORIES,
    TAGS_BY_CATEGORY,
    prepare_fashion_mnist,
)
from polyhead.errors import DataError

N_TRAIN, N_TEST = 20, 10


def _write_idx(path: Path, array: np.ndarray, *, magic: int | None = None) -> Path:
    """Write uint8 `array` as an IDX file (gzipped when `path` ends in .gz)."""
    magic = magic if magic is not None else 0x00000800 + array.ndim
    raw = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    raw += array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def _fake_source(folder: Path, *, gz_train: bool = True, gz_test: bool = False) -> dict:
    """Fake Fashion-MNIST: train gzipped, test plain (by default). Returns the arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (N_TRAIN + N_TEST, 28, 28), dtype=np.uint8)
    data = {
        "train": (pixels[:N_TRAIN], np.arange(N_TRAIN) % 10),
        "test": (pixels[N_TRAIN:], (np.arange(N_TEST) * 3) % 10),
    }
    for split, gz in (("train", gz_train), ("test", gz_test)):
        suffix = ".gz" if gz else ""
        images, labels = data[split]
        _write_idx(folder / (fm.IDX_FILES[(split, "images")] + suffix), images)
        _write_idx(folder / (fm.IDX_FILES[(split, "labels")] + suffix), labels)
    return data


@pytest.fixture
def no_debian(monkeypatch, tmp_path):
    """Pretend Debian's dataset-fashion-mnist is not installed."""
    monkeypatch.setattr(_idx, "DEBIAN_DIR", tmp_path / "no-debian")


def test_writes_pngs_and_label_tables(tmp_path):
    data = _fake_source(tmp_path / "src")
    out = tmp_path / "out"
    summary = prepare_fashion_mnist(out, source=tmp_path / "src", progress=False)

    assert summary["source"] == str(tmp_path / "src")
    rows = {split: summary["splits"][split]["rows"] for split in ("train", "test")}
    assert rows == {"train": N_TRAIN, "test": N_TEST}
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        table = pd.read_parquet(out / f"{split}.parquet")
        assert list(table.columns) == ["image", "category", "footwear", "tags"]
        assert len(table) == n and table.notna().all().all()
        assert table["image"].iloc[0] == f"images/{split}/00000.png"
        images, labels = data[split]
        for i, row in table.iterrows():
            category = CATEGORIES[labels[i]]
            assert row["category"] == category
            is_shoe = category in {"Sandal", "Sneaker", "Ankle boot"}
            assert row["footwear"] == ("yes" if is_shoe else "no")
            assert row["tags"].split("|") == list(TAGS_BY_CATEGORY[category])
            with Image.open(out / row["image"]) as png:
                assert png.mode == "L" and png.size == (28, 28)
                assert np.array_equal(np.asarray(png), images[i])
        assert len(list((out / "images" / split).glob("*.png"))) == n


def test_tag_map_matches_the_spec():
    assert len(CATEGORIES) == 10
    assert CATEGORIES[0] == "T-shirt/top" and CATEGORIES[9] == "Ankle boot"
    assert TAGS_BY_CATEGORY["Coat"] == ("upper_body", "long_sleeves", "warm", "outerwear")
    assert TAGS_BY_CATEGORY["Ankle boot"] == ("footwear", "warm")
    assert set(TAGS_BY_CATEGORY) == set(CATEGORIES)


def test_missing_fraction_blanks_only_train_footwear_and_tags(tmp_path):
    _fake_source(tmp_path / "src", gz_train=False, gz_test=True)
    out = tmp_path / "out"
    summary = prepare_fashion_mnist(
        out, source=tmp_path / "src", missing_fraction=0.5, seed=3, progress=False
    )
    train = pd.read_parquet(out / "train.parquet")
    test = pd.read_parquet(out / "test.parquet")
    assert train["footwear"].isna().sum() == N_TRAIN // 2
    assert train["tags"].isna().sum() == N_TRAIN // 2
    assert not train["footwear"].isna().equals(train["tags"].isna())  # drawn independently
    assert train[["image", "category"]].notna().all().all()
    assert test.notna().all().all()
    assert summary["splits"]["train"]["missing"] == {"footwear": 10, "tags": 10}

    again = tmp_path / "again"
    prepare_fashion_mnist(
        again, source=tmp_path / "src", missing_fraction=0.5, seed=3, progress=False
    )
    assert pd.read_parquet(again / "train.parquet").equals(train)  # seeded


def test_limit_keeps_first_rows(tmp_path):
    _fake_source(tmp_path / "src")
    out = tmp_path / "out"
    summary = prepare_fashion_mnist(out, source=tmp_path / "src", limit=5, progress=False)
    assert summary["splits"]["train"]["rows"] == 5 and summary["splits"]["test"]["rows"] == 5
    assert len(list((out / "images" / "train").glob("*.png"))) == 5


def test_process_pool_path(tmp_path, monkeypatch):
    data = _fake_source(tmp_path / "src")
    monkeypatch.setattr(_output, "_POOL_MIN_IMAGES", 1)
    monkeypatch.setattr(_output, "_CHUNK", 3)
    out = tmp_path / "out"
    prepare_fashion_mnist(out, source=tmp_path / "src", progress=False)
    for i in (0, N_TRAIN - 1):
        with Image.open(out / "images" / "train" / f"{i:05d}.png") as png:
            assert np.array_equal(np.asarray(png), data["train"][0][i])


def test_registry():
    assert PREPARERS["fashion-mnist"] is prepare_fashion_mnist
    assert get_preparer("fashion-mnist") is prepare_fashion_mnist
    with pytest.raises(DataError, match="unknown dataset 'mnist'.*fashion-mnist"):
        get_preparer("mnist")


# ------------------------------------------------------------------ finding the files


def test_source_without_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="lacks the Fashion-MNIST file.*train-images-idx3-ubyte"):
        prepare_fashion_mnist(tmp_path / "out", source=tmp_path / "empty")
    with pytest.raises(DataError, match="is not a folder"):
        prepare_fashion_mnist(tmp_path / "out", source=tmp_path / "absent")


def test_nothing_found_suggests_remedies(tmp_path, no_debian):
    with pytest.raises(DataError) as info:
        prepare_fashion_mnist(tmp_path / "out")
    message = str(info.value)
    hints = ("no-debian", "apt-get install dataset-fashion-mnist", "--source DIR", "--download")
    for hint in hints:
        assert hint in message


def test_download_path_offline_via_file_url(tmp_path, monkeypatch, no_debian):
    mirror = tmp_path / "mirror"
    data = _fake_source(mirror, gz_test=True)
    monkeypatch.setattr(_idx, "BASE_URL", mirror.as_uri() + "/")
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in mirror.iterdir()}
    monkeypatch.setattr(_idx, "DOWNLOAD_MD5", md5)

    out = tmp_path / "out"
    summary = prepare_fashion_mnist(out, download=True, progress=False)
    assert sorted(p.name for p in (out / "raw").iterdir()) == sorted(md5)
    assert "downloaded" in summary["source"]
    assert summary["splits"]["train"]["rows"] == N_TRAIN
    assert len(pd.read_parquet(out / "test.parquet")) == len(data["test"][1])

    # A second run finds the earlier download in OUT/raw, without --download.
    assert str(out / "raw") == prepare_fashion_mnist(out, progress=False)["source"]


def test_download_with_wrong_checksum(tmp_path, monkeypatch, no_debian):
    mirror = tmp_path / "mirror"
    _fake_source(mirror, gz_test=True)
    monkeypatch.setattr(_idx, "BASE_URL", mirror.as_uri() + "/")
    with pytest.raises(DataError, match="corrupt: MD5"):
        prepare_fashion_mnist(tmp_path / "out", download=True)  # official MD5s vs fake files
    assert not list((tmp_path / "out" / "raw").iterdir())  # no partial or bad file left behind


def test_download_failure(tmp_path, monkeypatch, no_debian):
    monkeypatch.setattr(_idx, "BASE_URL", (tmp_path / "no-mirror").as_uri() + "/")
    with pytest.raises(DataError, match="could not download .*--source DIR"):
        prepare_fashion_mnist(tmp_path / "out", download=True)


# ------------------------------------------------------------------ broken files


def test_bad_magic_names_the_file(tmp_path):
    _fake_source(tmp_path / "src")
    bad = tmp_path / "src" / "t10k-labels-idx1-ubyte"
    _write_idx(bad, np.zeros((N_TEST, 28, 28), np.uint8))  # an images file under a labels name
    expected = re.escape(f"'{bad}' is not an IDX labels file") + ".*0x00000801.*0x00000803"
    with pytest.raises(DataError, match=expected):
        prepare_fashion_mnist(tmp_path / "out", source=tmp_path / "src")


def test_truncated_idx(tmp_path):
    _fake_source(tmp_path / "src", gz_test=False)
    path = tmp_path / "src" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        prepare_fashion_mnist(tmp_path / "out", source=tmp_path / "src")


def test_corrupt_gzip(tmp_path):
    _fake_source(tmp_path / "src")
    path = tmp_path / "src" / "train-images-idx3-ubyte.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read IDX file .*train-images-idx3-ubyte.gz"):
        prepare_fashion_mnist(tmp_path / "out", source=tmp_path / "src")


def test_inconsistent_labels(tmp_path):
    _fake_source(tmp_path / "src", gz_test=False)
    labels = tmp_path / "src" / "t10k-labels-idx1-ubyte"
    _write_idx(labels, np.array([0, 1, 12] + [0] * (N_TEST - 3)))
    with pytest.raises(DataError, match="row 2: label 12 is not a Fashion-MNIST class"):
        prepare_fashion_mnist(tmp_path / "out", source=tmp_path / "src")
    _write_idx(labels, np.zeros(3))
    with pytest.raises(DataError, match=f"holds {N_TEST} images but .* holds 3 labels"):
        prepare_fashion_mnist(tmp_path / "out", source=tmp_path / "src")


@pytest.mark.parametrize("kwargs", [{"missing_fraction": 1.5}, {"limit": 0}])
def test_bad_arguments(tmp_path, kwargs):
    _fake_source(tmp_path / "src")
    with pytest.raises(DataError):
        prepare_fashion_mnist(tmp_path / "out", source=tmp_path / "src", **kwargs)


# ------------------------------------------------------------------ the real thing


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(),
    reason="/usr/share/datasets/fashion-mnist/ is absent (apt-get install dataset-fashion-mnist)",
)
def test_real_debian_files(tmp_path):
    out = tmp_path / "out"
    summary = prepare_fashion_mnist(out, limit=50, progress=False)
    assert summary["source"] == "/usr/share/datasets/fashion-mnist"
    train = pd.read_parquet(out / "train.parquet")
    assert len(train) == 50 and len(pd.read_parquet(out / "test.parquet")) == 50
    # The first official training image is an ankle boot, the second a T-shirt.
    assert train["category"].iloc[:2].tolist() == ["Ankle boot", "T-shirt/top"]
    assert train["tags"].iloc[0] == "footwear|warm" and train["footwear"].iloc[0] == "yes"
    with Image.open(out / train["image"].iloc[0]) as png:
        assert png.size == (28, 28) and png.mode == "L" and np.asarray(png).max() > 100
