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
with `download=True` are they fetched from the official mirror into OUT/raw
(see `_idx`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from polyhead.data.preparers._idx import IDX_FILES, load_split, locate, read_idx
from polyhead.data.preparers._output import (blank_labels, check_args, image_paths, summary, write_pngs,
                                             write_table)

__all__ = [
    "CATEGORIES",
    "FOOTWEAR",
    "IDX_FILES",
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
            in Debian's folder, then `out/raw`.
        download: if the files are not found, fetch them from the official
            mirror into `out/raw`.
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
    check_args(out, missing_fraction, limit)
    files, where = locate(out, source, download)

    splits: dict[str, dict] = {}
    arrays = {}
    for split in ("train", "test"):
        images, labels = load_split(files, split)  # uint8 [N, 28, 28], uint8 [N]
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        arrays[split] = (images, labels)

    write_pngs(out, {split: imgs for split, (imgs, _) in arrays.items()}, progress)

    for split, (images, labels) in arrays.items():
        blank = missing_fraction if split == "train" else 0.0
        table, missing = _label_table(split, labels, len(images), blank, seed)
        splits[split] = write_table(out, split, table, missing)

    files_used = {name: str(files[key]) for key, name in IDX_FILES.items()}
    return summary("fashion-mnist", out, where, files_used, splits, time.perf_counter() - start)


# ---------------------------------------------------------------- label tables


def _label_table(
    split: str, labels: np.ndarray, n: int, missing_fraction: float, seed: int
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Build the label table for one split; return it and {column: blanked rows}."""
    names = np.array(CATEGORIES, dtype=object)[labels]
    footwear = np.array(["yes" if c in FOOTWEAR else "no" for c in CATEGORIES], dtype=object)
    tags = np.array([TAG_DELIMITER.join(TAGS_BY_CATEGORY[c]) for c in CATEGORIES], dtype=object)
    columns = {"footwear": footwear[labels], "tags": tags[labels]}
    missing = blank_labels(columns, missing_fraction, np.random.default_rng(seed))
    table = pd.DataFrame({"image": image_paths(split, n), "category": names, **columns})
    return table, missing
