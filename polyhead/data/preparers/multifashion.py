"""MultiFashion: two Fashion-MNIST items per image (`polyhead prepare multifashion OUT`).

The benchmark of Lin et al., built the way Sabour et al. built MultiMNIST:

    Xi Lin, Hui-Ling Zhen, Zhenhua Li, Qingfu Zhang, Sam Kwong.
    "Pareto Multi-Task Learning." NeurIPS 2019, pp. 12037-12047. arXiv:1912.12854.
    (MultiMNIST: Sara Sabour, Nicholas Frosst, Geoffrey E. Hinton. "Dynamic Routing
    Between Capsules." NeurIPS 2017.)

Each 36x36 grayscale image holds two 28x28 Fashion-MNIST items: one at the
top-left, one at the bottom-right, each shifted randomly by up to MAX_SHIFT = 4
pixels (in y and x independently) towards the centre; where they overlap a pixel
is the max of the two. In canvas coordinates the top-left item's corner lies in
rows/columns 0..4, the bottom-right item's in 4..8, so both stay whole. The two
items are drawn independently and uniformly from the same official split (train
pairs from the 60 000 train images, test pairs from the 10 000 test images), so
they share a category about one time in ten. Writes:

    OUT/images/train/000000.png ...  36x36 grayscale PNGs (120 000)
    OUT/images/test/00000.png ...    (20 000)
    OUT/train.parquet, OUT/test.parquet  one row per image, columns:
        image    path relative to OUT, e.g. "images/train/000000.png"
        left     multiclass: category of the top-left item, one of CATEGORIES
        right    multiclass: category of the bottom-right item
        present  multilabel: "|"-joined categories present (1 or 2), in CATEGORIES order
        same     binary: "yes" if both items share a category, else "no"

Everything is drawn from `seed`; `limit=n` writes the first n rows of what the
full run writes. `missing_fraction` blanks `right`, `present` and `same`
(independently) on that share of the train rows, to show partial labels. The
IDX files are found as for `fashion-mnist` (see `_idx`). These images are
regenerated, not Lin et al.'s released pickles, so they match in construction,
not pixel for pixel.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from polyhead.data.preparers._idx import IDX_FILES, load_split, locate
from polyhead.data.preparers._output import (blank_labels, check_args, image_paths, summary, write_pngs,
                                             write_table)
from polyhead.data.preparers.fashion_mnist import CATEGORIES

__all__ = ["CANVAS", "MAX_SHIFT", "SIZES", "compose", "prepare_multifashion"]

CANVAS = 36
"""Height and width of every image."""

MAX_SHIFT = 4
"""Largest random shift of an item, in pixels, along each axis."""

SIZES: dict[str, int] = {"train": 120_000, "test": 20_000}
"""Images per split (as in Lin et al.); `limit` lowers them."""

PRESENT_DELIMITER = "|"

_ITEM = 28  # Fashion-MNIST images are 28x28
_RIGHT_BASE = CANVAS - _ITEM  # 8: the bottom-right item's corner before its shift


def prepare_multifashion(
    out: Path,
    *,
    source: Path | None = None,
    download: bool = False,
    missing_fraction: float = 0.0,
    seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
) -> dict:
    """Write MultiFashion as PNGs plus train/test label tables under `out`.

    Args:
        out: output folder (created if needed).
        source: folder holding the four Fashion-MNIST IDX files (".gz" or not);
            if None, look in Debian's folder, then `out/raw`.
        download: if the files are not found, fetch them from the official
            mirror into `out/raw`.
        missing_fraction: share (0..1) of train rows whose `right`, `present`
            and `same` labels are blanked, each drawn independently.
        seed: seed for the pairs, their shifts and the blanked rows.
        limit: write only the first `limit` images of each split (default:
            SIZES, 120 000 train and 20 000 test).
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
    train_seq, test_seq, blank_seq = np.random.SeedSequence(seed).spawn(3)

    images, tables = {}, {}
    for split, seq in (("train", train_seq), ("test", test_seq)):
        items, labels = load_split(files, split)  # uint8 [N, 28, 28], uint8 [N]
        n = SIZES[split] if limit is None else min(limit, SIZES[split])
        draws = _draw(np.random.default_rng(seq), n, len(items))  # [n, 6]
        images[split] = compose(items, draws[:, 0], draws[:, 1], draws[:, 2:])
        tables[split] = _label_table(split, labels[draws[:, 0]], labels[draws[:, 1]])

    write_pngs(out, images, progress)

    splits: dict[str, dict] = {}
    for split, (table, columns) in tables.items():
        blank = missing_fraction if split == "train" else 0.0
        missing = blank_labels(columns, blank, np.random.default_rng(blank_seq))
        table = table.assign(**columns)
        splits[split] = write_table(out, split, table, missing)

    files_used = {name: str(files[key]) for key, name in IDX_FILES.items()}
    return summary("multifashion", out, where, files_used, splits, time.perf_counter() - start)


def _draw(rng: np.random.Generator, n: int, n_items: int) -> np.ndarray:
    """Row i: [left item, right item, left dy, left dx, right dy, right dx], int64 [n, 6].

    Drawn row by row, so the first k rows do not depend on n (`limit` is a prefix).
    """
    s = MAX_SHIFT + 1
    return rng.integers(0, [n_items, n_items, s, s, s, s], size=(n, 6))


def compose(
    items: np.ndarray, left: np.ndarray, right: np.ndarray, shifts: np.ndarray
) -> np.ndarray:
    """Paste item pairs onto blank canvases.

    Args:
        items: uint8 [N, 28, 28] source images.
        left, right: int [n] indices into `items` of the top-left / bottom-right item.
        shifts: int [n, 4] in 0..MAX_SHIFT: (left dy, left dx, right dy, right dx),
            each towards the centre: the left item's corner lands at (dy, dx), the
            right item's at (8 - dy, 8 - dx).

    Returns:
        uint8 [n, 36, 36]; overlapping pixels take the max of the two items.
    """
    n = len(left)
    canvas = np.zeros((n, CANVAS, CANVAS), dtype=np.uint8)
    corners = (
        (left, shifts[:, 0], shifts[:, 1]),
        (right, _RIGHT_BASE - shifts[:, 2], _RIGHT_BASE - shifts[:, 3]),
    )
    # One vectorised paste per distinct corner (25 per side) instead of one per image.
    for which, ys, xs in corners:
        key = ys * CANVAS + xs
        for k in np.unique(key):
            rows = np.flatnonzero(key == k)
            y, x = divmod(int(k), CANVAS)
            window = (rows, slice(y, y + _ITEM), slice(x, x + _ITEM))
            canvas[window] = np.maximum(canvas[window], items[which[rows]])
    return canvas


def _label_table(
    split: str, left: np.ndarray, right: np.ndarray
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """(table with `image` and `left`, {column: object array} of the blankable columns)."""
    names = np.array(CATEGORIES, dtype=object)
    # present[a, b]: the label cell for a pair of category ids, in CATEGORIES order.
    present = np.array(
        [[PRESENT_DELIMITER.join(CATEGORIES[k] for k in sorted({a, b})) for b in range(10)]
         for a in range(10)],
        dtype=object,
    )  # fmt: skip
    table = pd.DataFrame({"image": image_paths(split, len(left)), "left": names[left]})
    columns = {
        "right": names[right],
        "present": present[left, right],
        "same": np.where(left == right, "yes", "no").astype(object),
    }
    return table, columns
