"""Fashion-MNIST as a ready-made multi-task dataset (`polyhead prepare fashion-mnist OUT`).

Reads the four official IDX files and writes:

    OUT/images/train/00000.png ...   28x28 grayscale PNGs (60 000)
    OUT/images/test/00000.png ...    (10 000)
    OUT/train.parquet, OUT/test.parquet  one row per image, columns:
        image     path relative to OUT, e.g. "images/train/00000.png"
        category  multiclass: one of CATEGORIES
        footwear  binary: "yes" / "no"
        tags      multilabel: "|"-joined tags from TAGS_BY_CATEGORY, e.g. "upper_body|long_sleeves"

`missing_fraction` blanks `footwear` and `tags` (independently) on that share of
the train rows, to show training with partial labels.

The IDX files are looked for in `source` if given; otherwise in Debian's
`dataset-fashion-mnist` folder, then in OUT/raw (an earlier download); and only
with `download=True` are they fetched from the official mirror into OUT/raw.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import multiprocessing
import os
import shutil
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from rich.console import Console
from rich.progress import Progress

from polyhead.errors import DataError

__all__ = [
    "CATEGORIES",
    "FOOTWEAR",
    "TAGS_BY_CATEGORY",
    "prepare_fashion_mnist",
    "read_idx",
]

CATEGORIES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
"""The 10 official class names; label k in the IDX files is CATEGORIES[k]."""

FOOTWEAR: frozenset[str] = frozenset({"Sandal", "Sneaker", "Ankle boot"})
"""Categories whose `footwear` label is "yes"."""

TAGS_BY_CATEGORY: dict[str, tuple[str, ...]] = {
    "T-shirt/top": ("upper_body", "short_sleeves"),
    "Trouser": ("lower_body",),
    "Pullover": ("upper_body", "long_sleeves", "warm"),
    "Dress": ("full_body",),
    "Coat": ("upper_body", "long_sleeves", "warm", "outerwear"),
    "Sandal": ("footwear", "open"),
    "Shirt": ("upper_body", "long_sleeves"),
    "Sneaker": ("footwear", "sporty"),
    "Bag": ("accessory",),
    "Ankle boot": ("footwear", "warm"),
}
"""Attribute tags for the multilabel `tags` column, derived from the category."""

TAG_DELIMITER = "|"

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's `dataset-fashion-mnist` package installs the IDX files."""

BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

# Official MD5 of the .gz files on BASE_URL (the same ones torchvision checks).
DOWNLOAD_MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}

# (split, kind) -> IDX file name without ".gz"
IDX_FILES: dict[tuple[str, str], str] = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
_MAGIC = {"images": 0x00000803, "labels": 0x00000801}  # ubyte data, 3 dims / 1 dim

_POOL_MIN_IMAGES = 5000  # below this a process pool costs more than it saves
_CHUNK = 1000  # images per pool task (and per progress-bar step)
_MAX_PROCESSES = 8


def prepare_fashion_mnist(
    out: Path,
    *,
    source: Path | None = None,
    download: bool = False,
    missing_fraction: float = 0.0,
    seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
) -> dict:
    """Write Fashion-MNIST as PNGs plus train/test label tables under `out`.

    Args:
        out: output folder (created if needed).
        source: folder holding the four IDX files (".gz" or not); if None, look
            in DEBIAN_DIR, then `out/raw`.
        download: if the files are not found, fetch them from BASE_URL into `out/raw`.
        missing_fraction: share (0..1) of train rows whose `footwear` label is
            blanked, and, drawn independently, whose `tags` label is blanked.
        seed: seed for choosing the blanked rows.
        limit: keep only the first `limit` train and first `limit` test images.
        progress: show a progress bar (on stderr).

    Returns:
        {"dataset", "out", "source", "files": {name: path},
         "splits": {split: {"rows", "table", "images", "missing": {column: count}}},
         "seconds"}

    Raises:
        DataError: files not found, not IDX, inconsistent, or bad arguments.
    """
    start = time.perf_counter()
    out = Path(out)
    _check_args(out, missing_fraction, limit)
    files, where = _locate(out, source, download)

    splits: dict[str, dict] = {}
    arrays = {}
    for split in ("train", "test"):
        images = read_idx(files[(split, "images")], "images")  # [N, H, W] uint8
        labels = read_idx(files[(split, "labels")], "labels")  # [N] uint8
        _check_pair(files[(split, "images")], images, files[(split, "labels")], labels)
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        arrays[split] = (images, labels)

    _write_all_pngs(out, {split: imgs for split, (imgs, _) in arrays.items()}, progress)

    for split, (images, labels) in arrays.items():
        blank = missing_fraction if split == "train" else 0.0
        table, missing = _label_table(split, labels, len(images), blank, seed)
        table_path = out / f"{split}.parquet"
        table.to_parquet(table_path, index=False)
        splits[split] = {
            "rows": len(table),
            "table": str(table_path),
            "images": str(out / "images" / split),
            "missing": missing,
        }

    return {
        "dataset": "fashion-mnist",
        "out": str(out),
        "source": where,
        "files": {name: str(files[key]) for key, name in IDX_FILES.items()},
        "splits": splits,
        "seconds": round(time.perf_counter() - start, 2),
    }


# ---------------------------------------------------------------- IDX files


def read_idx(path: Path, kind: str) -> np.ndarray:
    """Read an IDX file of unsigned bytes, gzipped or not.

    Args:
        path: the file.
        kind: "images" (expects magic 0x00000803, returns uint8 [N, H, W]) or
            "labels" (expects magic 0x00000801, returns uint8 [N]).
    """
    path = Path(path)
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read IDX file '{path}': {e}") from None
    expected = _MAGIC[kind]
    magic = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if magic != expected:
        found = "the file is shorter than 4 bytes" if magic is None else f"found 0x{magic:08X}"
        raise DataError(
            f"'{path}' is not an IDX {kind} file: expected magic number 0x{expected:08X}, {found}"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + int(np.prod(dims)):
        raise DataError(
            f"IDX file '{path}' is truncated or padded: header says {dims} "
            f"({int(np.prod(dims))} bytes of data), file has {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _check_pair(img_path: Path, images: np.ndarray, lbl_path: Path, labels: np.ndarray) -> None:
    if len(images) != len(labels):
        raise DataError(
            f"'{img_path}' holds {len(images)} images but '{lbl_path}' holds {len(labels)} labels"
        )
    if labels.size and labels.max() >= len(CATEGORIES):
        row = int(np.argmax(labels >= len(CATEGORIES)))
        raise DataError(
            f"'{lbl_path}' row {row}: label {labels[row]} is not a Fashion-MNIST class (0-9)"
        )


# ---------------------------------------------------------------- finding / downloading


def _find_in(folder: Path) -> tuple[dict[tuple[str, str], Path], list[str]]:
    """Return ({key: path} for the IDX files found in `folder`, [missing file names])."""
    found, missing = {}, []
    for key, name in IDX_FILES.items():
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            missing.append(name)
    return found, missing


def _locate(out: Path, source: Path | None, download: bool) -> tuple[dict, str]:
    """Return ({(split, kind): path}, where they were found, in words)."""
    if source is not None:
        source = Path(source)
        if not source.is_dir():
            raise DataError(f"--source '{source}' is not a folder")
        found, missing = _find_in(source)
        if missing:
            raise DataError(
                f"--source '{source}' lacks the Fashion-MNIST file(s) {', '.join(missing)} "
                "(each may be gzipped, with '.gz' added)"
            )
        return found, str(source)

    raw = out / "raw"
    for folder in (DEBIAN_DIR, raw):
        found, missing = _find_in(folder)
        if not missing:
            return found, str(folder)
    if not download:
        raise DataError(
            f"Fashion-MNIST IDX files not found in '{DEBIAN_DIR}' or '{raw}'; "
            "install them with `apt-get install dataset-fashion-mnist`, "
            "or pass --source DIR (a folder holding them), "
            f"or --download to fetch them from {BASE_URL}"
        )
    _download(raw)
    return _find_in(raw)[0], f"{BASE_URL} (downloaded into '{raw}')"


def _download(raw: Path) -> None:
    """Fetch the four .gz files into `raw`, checking their official MD5."""
    raw.mkdir(parents=True, exist_ok=True)
    for name in IDX_FILES.values():
        target = raw / f"{name}.gz"
        if target.is_file():
            continue
        url = BASE_URL + target.name
        partial = target.with_name(target.name + ".part")
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as f:
                shutil.copyfileobj(response, f)
        except (urllib.error.URLError, OSError) as e:
            partial.unlink(missing_ok=True)
            raise DataError(
                f"could not download {url}: {getattr(e, 'reason', e)}; "
                "without network, use `apt-get install dataset-fashion-mnist` or --source DIR"
            ) from None
        expected = DOWNLOAD_MD5.get(target.name)
        actual = hashlib.md5(partial.read_bytes(), usedforsecurity=False).hexdigest()
        if expected is not None and actual != expected:
            partial.unlink()
            raise DataError(f"download of {url} is corrupt: MD5 {actual}, expected {expected}")
        partial.replace(target)


# ---------------------------------------------------------------- PNGs


def _write_all_pngs(out: Path, images: dict[str, np.ndarray], progress: bool) -> None:
    """Write images[split][i] to out/images/<split>/<i:05d>.png, in a process pool when many."""
    tasks = []
    for split, arr in images.items():
        folder = out / "images" / split
        folder.mkdir(parents=True, exist_ok=True)
        for lo in range(0, len(arr), _CHUNK):
            tasks.append((str(folder), lo, arr[lo : lo + _CHUNK], _digits(len(arr))))
    total = sum(len(arr) for arr in images.values())

    processes = min(_MAX_PROCESSES, _available_cpus())
    use_pool = total >= _POOL_MIN_IMAGES and processes > 1
    # The pool forks before the progress bar starts its refresh thread.
    with contextlib.ExitStack() as stack:
        pool = None
        if use_pool:
            pool = stack.enter_context(multiprocessing.get_context().Pool(processes))
        bar = stack.enter_context(Progress(console=Console(stderr=True), disable=not progress))
        job = bar.add_task(f"writing {total} PNGs", total=total)
        for done in pool.imap_unordered(_write_pngs, tasks) if pool else map(_write_pngs, tasks):
            bar.advance(job, done)


def _write_pngs(task: tuple[str, int, np.ndarray, int]) -> int:
    """Pool worker: write one chunk of uint8 [n, H, W] images; return n."""
    folder, first, chunk, digits = task
    for i, pixels in enumerate(chunk):
        buffer = io.BytesIO()  # encoding in memory, then one write, is ~30% faster
        Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
        with open(os.path.join(folder, f"{first + i:0{digits}d}.png"), "wb") as f:
            f.write(buffer.getbuffer())
    return len(chunk)


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _digits(n: int) -> int:
    return max(5, len(str(max(n - 1, 0))))


# ---------------------------------------------------------------- label tables


def _label_table(
    split: str, labels: np.ndarray, n: int, missing_fraction: float, seed: int
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Build the label table for one split; return it and {column: blanked rows}."""
    digits = _digits(n)
    names = np.array(CATEGORIES, dtype=object)[labels]
    footwear = np.array(["yes" if c in FOOTWEAR else "no" for c in CATEGORIES], dtype=object)
    tags = np.array([TAG_DELIMITER.join(TAGS_BY_CATEGORY[c]) for c in CATEGORIES], dtype=object)
    columns = {"footwear": footwear[labels], "tags": tags[labels]}

    rng = np.random.default_rng(seed)
    k = int(round(missing_fraction * n))
    for values in columns.values():  # independent draws per column
        values[rng.choice(n, size=k, replace=False)] = None

    table = pd.DataFrame(
        {
            "image": [f"images/{split}/{i:0{digits}d}.png" for i in range(n)],
            "category": names,
            **columns,
        }
    )
    return table, {column: k for column in columns}


def _check_args(out: Path, missing_fraction: float, limit: int | None) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"output '{out}' exists and is not a folder")
    if not 0.0 <= missing_fraction <= 1.0:
        raise DataError(f"missing_fraction must be between 0 and 1, got {missing_fraction}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DataError(f"limit must be a positive integer, got {limit!r}")
