"""DeepFashion Attribute Prediction (`polyhead prepare deepfashion-attributes ROOT OUT [--crop-bbox]`).

The "Category and Attribute Prediction Benchmark" of

    Ziwei Liu, Ping Luo, Shi Qiu, Xiaogang Wang, Xiaoou Tang. "DeepFashion: Powering Robust
    Clothes Recognition and Retrieval with Rich Annotations." CVPR 2016.

The data is not downloaded: obtain it from its owners (the DeepFashion project page of the
Multimedia Lab, CUHK, under their agreement) and unpack it into ROOT, which then holds:

    ROOT/img/<item>/img_00000001.jpg ...
    ROOT/Anno/list_category_cloth.txt   category_name category_type   (type 1 upper, 2 lower, 3 full body)
    ROOT/Anno/list_category_img.txt     image_name category_label     (1-based line of list_category_cloth)
    ROOT/Anno/list_attr_cloth.txt       attribute_name attribute_type (1 texture, 2 fabric, 3 shape, 4 part, 5 style)
    ROOT/Anno/list_attr_img.txt         image_name then one value per attribute: 1 yes, -1 no, 0 unknown
    ROOT/Anno/list_bbox.txt             image_name x_1 y_1 x_2 y_2
    ROOT/Eval/list_eval_partition.txt   image_name evaluation_status (train, val, test)

Each file: first line the number of rows, second line the header, then the rows (names may hold
spaces: the numbers are the last fields). Writes:

    OUT/deepfashion.parquet   one row per image:
        image     path: ROOT's `img/...` (data.root is ROOT), or with crop_bbox the crop `crops/img/...` under OUT
        split     the official partition: train | val | test
        category  multiclass: the category name (50 categories)
        body      multiclass: upper | lower | full (the category's type)
        texture, fabric, shape, part, style
                  multilabel: the "|"-joined attributes of that type marked 1; "[]" when none is, and
                  missing (None) when every attribute of that type is 0 (unknown) for the image
    OUT/config.yaml           a config training every task on that table (split column, data.root)
    OUT/crops/img/...         with crop_bbox: each image cut to its bounding box
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from polyhead.data.preparers._output import summary
from polyhead.errors import DataError

__all__ = ["ATTRIBUTE_TYPES", "BODY_TYPES", "FILES", "prepare_deepfashion_attributes"]

ATTRIBUTE_TYPES = {1: "texture", 2: "fabric", 3: "shape", 4: "part", 5: "style"}
BODY_TYPES = {1: "upper", 2: "lower", 3: "full"}
FILES = {
    "categories": "Anno/list_category_cloth.txt",
    "category_img": "Anno/list_category_img.txt",
    "attributes": "Anno/list_attr_cloth.txt",
    "attr_img": "Anno/list_attr_img.txt",
    "bbox": "Anno/list_bbox.txt",
    "partition": "Eval/list_eval_partition.txt",
}
TABLE = "deepfashion.parquet"
SPLITS = ("train", "val", "test")


def prepare_deepfashion_attributes(
    out: Path,
    *,
    source: Path | None = None,
    download: bool = False,
    missing_fraction: float = 0.0,
    seed: int = 0,
    limit: int | None = None,
    crop_bbox: bool = False,
    progress: bool = True,
) -> dict:
    """Turn the release under `source` (ROOT) into `out/deepfashion.parquet` and `out/config.yaml`.

    `limit`: keep the first `limit` images of each split (in the partition file's order).
    `crop_bbox`: write each image cut to its bounding box under `out/crops/` and point the table
    there. `download`, `missing_fraction` and `seed` are refused / unused: the data comes from
    its owners, and every label is real. Returns the summary every preparer returns."""
    start = time.perf_counter()
    if source is None:
        raise DataError("deepfashion-attributes needs the release's folder: polyhead prepare deepfashion-attributes "
                        "ROOT OUT (ROOT holds Anno/, Eval/ and img/; obtain the data from its owners)")
    if download:
        raise DataError("deepfashion-attributes cannot be downloaded by polyhead: obtain it from its owners (the "
                        "DeepFashion project, CUHK) and pass its folder as ROOT")
    if missing_fraction:
        raise DataError("--missing-fraction is not for deepfashion-attributes (its labels are partial already)")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DataError(f"limit must be a positive integer, got {limit!r}")
    root, out = Path(source).expanduser().resolve(), Path(out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise DataError(f"output '{out}' exists and is not a folder")
    paths = _locate(root)

    categories, attributes = read_names(paths)
    table = build_table(paths, categories, attributes)
    if limit is not None:
        table = table.groupby("split", sort=False, group_keys=False).head(limit).reset_index(drop=True)
    out.mkdir(parents=True, exist_ok=True)
    if crop_bbox:
        boxes = read_rows(paths["bbox"], 4, "bbox")
        table["image"] = write_crops(root, out, table["image"].tolist(), boxes, progress)
    table.to_parquet(out / TABLE, index=False)
    (out / "config.yaml").write_text(config_text(None if crop_bbox else root, limit, categories, attributes))

    splits = {s: {"rows": int((table["split"] == s).sum()), "table": str(out / TABLE),
                  "images": str(out / "crops" if crop_bbox else root / "img"), "missing": _missing(table, s)}
              for s in SPLITS}
    return summary("deepfashion-attributes", out, str(root), {k: str(p) for k, p in paths.items()}, splits,
                   time.perf_counter() - start)


def _locate(root: Path) -> dict[str, Path]:
    if not root.is_dir():
        raise DataError(f"DeepFashion folder not found: '{root}' (obtain the data from its owners; ROOT holds "
                        f"Anno/, Eval/ and img/)")
    paths = {key: root / rel for key, rel in FILES.items()}
    missing = [FILES[k] for k, p in paths.items() if not p.is_file()]
    if missing:
        raise DataError(f"'{root}' is not the DeepFashion Attribute Prediction release: missing "
                        f"{', '.join(missing)}")
    return paths


# --------------------------------------------------------------------------- reading the lists


def read_rows(path: Path, numbers: int | None, what: str) -> dict[str, list[str]]:
    """{name: its last `numbers` fields} of a list file (count line, header line, rows); with
    numbers=None every field after the first. Names (the leading fields) may hold spaces."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    if len(lines) < 2:
        raise DataError(f"{path}: expected a count line and a header line")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise DataError(f"{path}, line 1: expected the number of rows, got {lines[0].strip()[:40]!r}") from None
    rows: dict[str, list[str]] = {}
    for i, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if numbers is None:
            name, values = fields[0], fields[1:]
        else:
            if len(fields) < numbers + 1:
                raise DataError(f"{path}, line {i}: expected a name and {numbers} value(s) ({what}), got {line!r}")
            name, values = " ".join(fields[:-numbers]), fields[-numbers:]
        rows[name] = values
    if len(rows) != count:
        raise DataError(f"{path}: line 1 says {count} rows, found {len(rows)}")
    return rows


def _ints(path: Path, name: str, values: list[str]) -> list[int]:
    try:
        return [int(v) for v in values]
    except ValueError:
        raise DataError(f"{path}: row '{name}' holds a value that is not an integer: {' '.join(values[:8])}") from None


def read_names(paths: dict[str, Path]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """([(category, type)], [(attribute, type)]) in file order (a label's number is its line)."""
    categories = [(name, _ints(paths["categories"], name, v)[0])
                  for name, v in read_rows(paths["categories"], 1, "category type").items()]
    attributes = [(name, _ints(paths["attributes"], name, v)[0])
                  for name, v in read_rows(paths["attributes"], 1, "attribute type").items()]
    for name, kind in categories:
        if kind not in BODY_TYPES:
            raise DataError(f"{paths['categories']}: category '{name}' has type {kind}; expected 1, 2 or 3")
    for name, kind in attributes:
        if kind not in ATTRIBUTE_TYPES:
            raise DataError(f"{paths['attributes']}: attribute '{name}' has type {kind}; expected 1 to 5")
    return categories, attributes


def build_table(paths: dict[str, Path], categories: list[tuple[str, int]],
                attributes: list[tuple[str, int]]) -> pd.DataFrame:
    """The label table (see the module docstring), in the partition file's order."""
    partition = read_rows(paths["partition"], 1, "evaluation status")
    category_of = read_rows(paths["category_img"], 1, "category label")
    attr_images, values = read_attribute_matrix(paths["attr_img"], len(attributes))
    attr_row = {image: i for i, image in enumerate(attr_images)}

    images = list(partition)
    order = []
    for image in images:
        status = partition[image][0]
        if status not in SPLITS:
            raise DataError(f"{paths['partition']}: image '{image}' has status {status!r}; expected train, val or test")
        if image not in category_of:
            raise DataError(f"{paths['category_img']}: no category for '{image}' (listed in {FILES['partition']})")
        if image not in attr_row:
            raise DataError(f"{paths['attr_img']}: no attributes for '{image}' (listed in {FILES['partition']})")
        order.append(attr_row[image])
    labels = [_ints(paths["category_img"], image, category_of[image])[0] for image in images]
    bad = next((i for i, label in enumerate(labels) if not 1 <= label <= len(categories)), None)
    if bad is not None:
        raise DataError(f"{paths['category_img']}: '{images[bad]}' has category {labels[bad]}; "
                        f"expected 1 to {len(categories)}")
    table = pd.DataFrame({"image": images, "split": [partition[i][0] for i in images],
                          "category": [categories[label - 1][0] for label in labels],
                          "body": [BODY_TYPES[categories[label - 1][1]] for label in labels]})
    values = values[np.asarray(order, dtype=np.int64)]  # int8 [N, A], rows in partition order
    names = np.array([a for a, _ in attributes], dtype=object)
    kinds = np.array([k for _, k in attributes])
    for kind, column in ATTRIBUTE_TYPES.items():
        mine, labels_of_kind = values[:, kinds == kind], names[kinds == kind]
        cells = np.array(["|".join(labels_of_kind[row == 1]) or "[]" for row in mine], dtype=object)
        if mine.shape[1]:
            cells[~mine.any(axis=1)] = None  # every attribute of this type unknown (0): missing
        table[column] = cells
    return table


def read_attribute_matrix(path: Path, n_attributes: int) -> tuple[list[str], np.ndarray]:
    """list_attr_img.txt -> (image names, int8 [N, n_attributes] of 1 / -1 / 0), read by pandas'
    C parser (the full release is 289 222 rows x 1000 values)."""
    with open(path, encoding="utf-8") as fh:
        first = fh.readline().strip()
    try:
        count = int(first)
    except ValueError:
        raise DataError(f"{path}, line 1: expected the number of rows, got {first[:40]!r}") from None
    columns = {0: str, **{i: np.int8 for i in range(1, n_attributes + 1)}}
    try:
        frame = pd.read_csv(path, sep=r"\s+", skiprows=2, header=None, dtype=columns, engine="c")
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: not rows of an image name and {n_attributes} values of 1, -1 or 0 "
                        f"({str(exc).strip().splitlines()[0]})") from None
    if frame.shape[1] != n_attributes + 1:
        raise DataError(f"{path}: rows hold {frame.shape[1] - 1} attribute values; {FILES['attributes']} "
                        f"lists {n_attributes}")
    if len(frame) != count:
        raise DataError(f"{path}: line 1 says {count} rows, found {len(frame)}")
    values = frame.iloc[:, 1:].to_numpy(dtype=np.int8)
    if not np.isin(values, (-1, 0, 1)).all():
        row = int(np.flatnonzero(~np.isin(values, (-1, 0, 1)).all(axis=1))[0])
        raise DataError(f"{path}: '{frame.iloc[row, 0]}' holds values other than 1, -1 and 0")
    return frame.iloc[:, 0].tolist(), values


def _missing(table: pd.DataFrame, split: str) -> dict[str, int]:
    part = table[table["split"] == split]
    return {c: int(part[c].isna().sum()) for c in ATTRIBUTE_TYPES.values()}


# --------------------------------------------------------------------------- crops and config


def write_crops(root: Path, out: Path, images: list[str], boxes: dict[str, list[str]], progress: bool) -> list[str]:
    """Cut each image to its box (x_1 y_1 x_2 y_2, pixels, clamped to the image) into
    out/crops/<same path>; returns the new relative paths."""
    from PIL import Image
    from rich.console import Console
    from rich.progress import Progress

    def crop(image: str) -> str:
        if image not in boxes:
            raise DataError(f"{FILES['bbox']}: no bounding box for '{image}'")
        x1, y1, x2, y2 = _ints(root / FILES["bbox"], image, boxes[image])
        target = out / "crops" / image
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with Image.open(root / image) as img:
                w, h = img.size
                box = (max(0, min(x1, w - 1)), max(0, min(y1, h - 1)), min(w, max(x2, x1 + 1)), min(h, max(y2, y1 + 1)))
                cut = img.crop(box)
                cut.save(target, quality=95) if target.suffix.lower() in (".jpg", ".jpeg") else cut.save(target)
        except FileNotFoundError:
            raise DataError(f"image not found: '{root / image}' (listed in {FILES['partition']})") from None
        except OSError as exc:
            raise DataError(f"cannot crop '{root / image}': {exc}") from None
        return f"crops/{image}"

    with ThreadPoolExecutor(max_workers=4) as pool, Progress(console=Console(stderr=True),
                                                            disable=not progress) as bar:
        job = bar.add_task(f"cropping {len(images)} images", total=len(images))
        done = []
        for path in pool.map(crop, images):
            done.append(path)
            bar.advance(job)
    return done


def config_text(root: Path | None, limit: int | None, categories: list[tuple[str, int]],
                attributes: list[tuple[str, int]]) -> str:
    """The config written next to the table: every task with its full class list (a label absent
    from the training rows still gets its output), the official split, a pretrained backbone."""
    import yaml

    tasks: dict = {"category": {"type": "multiclass", "top_k": 5, "classes": [c for c, _ in categories]},
                   "body": {"type": "multiclass", "classes": [BODY_TYPES[k] for k in sorted(BODY_TYPES)]}}
    for kind, column in ATTRIBUTE_TYPES.items():
        names = [a for a, k in attributes if k == kind]
        if names:
            tasks[column] = {"type": "multilabel", "classes": names}
    data = {"train_table": TABLE, "split_column": "split", "image_size": [224, 224]}
    if root is not None:
        data["root"] = str(root)
    note = f" (first {limit} images per split)" if limit else ""
    header = (f"# DeepFashion Attribute Prediction, written by `polyhead prepare deepfashion-attributes`{note}.\n"
              "# tasks: category (50 categories), body (upper | lower | full: the category's type), one multilabel\n"
              "# task per attribute type; data.split_column holds the official partition. Train: polyhead train\n"
              "# config.yaml (e.g. training.epochs=3 data.batch_size=32)\n")
    body = {"tasks": tasks, "data": data, "model": {"backbone": "efficientnet_lite0", "pretrained": True}}
    return header + yaml.safe_dump(body, sort_keys=False, default_flow_style=None, width=120, allow_unicode=True)
