"""Label tables: CSV / Parquet / JSONL files or image-folder trees -> one DataFrame.

A loaded table has a 1-based row index (so messages say "row 3" for the third
data row), the original label columns, and an `image` column holding absolute
image paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from polyhead.errors import DataError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
TABLE_FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet",
                 ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "dev": "val", "test": "test", "testing": "test"}
IMAGE = "image"  # the column that holds absolute paths after loading


@dataclass
class LabelTable:
    frame: pd.DataFrame  # 1-based index; IMAGE column of absolute paths; label columns as given
    source: str  # shown in messages: the file (or folder) it came from

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def paths(self) -> list[str]:
        return self.frame[IMAGE].tolist()

    def subset(self, rows: np.ndarray, name: str) -> "LabelTable":
        return LabelTable(self.frame.iloc[rows], f"{self.source} [{name}]")


def quoted(source: str) -> str:
    """A table for messages, the quotes around its path only: "/x/a.csv [train]" -> "'/x/a.csv' [train]"
    (a `LabelTable.subset` source), "/x/a.csv" -> "'/x/a.csv'"."""
    path, sep, split = source.rpartition(" [")
    if sep and split.endswith("]") and split[:-1] in ("train", "val", "test"):
        return f"'{path}' [{split}"
    return f"'{source}'"


def table_not_found(path: Path, key: str | None = None) -> DataError:
    """"table not found: '<absolute path tried>' (<where the path came from>)". `key`: the config key
    (data.train_table) or flag (--table) that named `path`, as given."""
    tried = path.expanduser().absolute()
    if key is None:
        return DataError(f"table not found: '{tried}'")
    shown = f"{key} {path}" if key.startswith("-") else f"{key}={path}"
    if not path.expanduser().is_absolute():  # a config file's paths were made absolute from its folder
        return DataError(f"table not found: '{tried}' ({shown} is relative to the working directory '{Path.cwd()}')")
    origin = "" if key.startswith("-") else "; a relative path in a config file is read from the config file's folder"
    return DataError(f"table not found: '{tried}' ({key}{origin})")


def _sniff_separator(path: Path) -> str:
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        header = fh.readline()
    counts = {sep: header.count(sep) for sep in (",", ";", "\t")}
    best = max(counts, key=counts.get)
    return best if counts[best] > 0 else ","


def _read_file(path: Path) -> pd.DataFrame:
    fmt = TABLE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"cannot read table '{path}': unknown extension '{path.suffix}'; "
                        f"use one of {', '.join(sorted(TABLE_FORMATS))} or an image folder")
    try:
        if fmt == "csv":
            return pd.read_csv(path, sep=_sniff_separator(path), dtype=str, encoding="utf-8-sig",
                               keep_default_na=False, na_values=[""])
        if fmt == "parquet":
            return pd.read_parquet(path)
        return pd.read_json(path, lines=path.suffix.lower() != ".json" or _looks_like_jsonl(path), dtype=False)
    except FileNotFoundError:
        raise table_not_found(path) from None
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read table '{path}' as {fmt}: {first}") from None


def _looks_like_jsonl(path: Path) -> bool:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return not fh.read(1).lstrip().startswith("[")


def read_image_folder(root: Path, task: str) -> pd.DataFrame:
    """root/<class>/*.jpg -> rows (image, <task>). Nested folders below a class are included."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"image folder '{root}' has no class sub-folders; expected '{root}/<class>/<image>'")
    rows = []
    for cls in classes:
        for file in sorted((root / cls).rglob("*")):
            if file.suffix.lower() in IMAGE_EXTENSIONS and file.is_file():
                rows.append((str(file.resolve()), cls))
    if not rows:
        raise DataError(f"image folder '{root}' has no images (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return pd.DataFrame(rows, columns=[IMAGE, task])


def read_table(path: str | Path, *, image_column: str = "image", root: str | Path | None = None,
               folder_task: str = "label", image_column_from: str = "data.image_column",
               key: str | None = None) -> LabelTable:
    """Read a table or image folder. Image paths resolve against `root`, else the table's folder.
    `image_column_from` says where the image column is set (shown when the table lacks it); `key`:
    the config key or flag that named the table, for the message when it is not found."""
    given = Path(path)
    path = given.expanduser()
    if path.is_dir():
        frame = read_image_folder(path, folder_task)
    elif not path.exists():
        raise table_not_found(given, key)
    else:
        frame = _with_image_paths(_read_file(path), path, image_column, root, image_column_from)
    if len(frame) == 0:
        raise DataError(f"table '{path}' has no rows")
    frame.index = pd.RangeIndex(1, len(frame) + 1)
    return LabelTable(frame, str(path))


def read_table_chunks(path: str | Path, chunk_rows: int, *, image_column: str = "image",
                      root: str | Path | None = None, folder_task: str = "label",
                      image_column_from: str = "data.image_column", key: str | None = None) -> Iterator[LabelTable]:
    """`read_table` in pieces of at most `chunk_rows` rows, in order, with the whole table's 1-based
    row index: memory stays flat however long the table. CSV, Parquet and JSON Lines are read
    incrementally; a JSON array or an image folder is read whole and then cut."""
    given = Path(path)
    path = given.expanduser()
    fmt = TABLE_FORMATS.get(path.suffix.lower())
    if path.is_dir() or not path.exists() or fmt is None or (fmt == "jsonl" and not _looks_like_jsonl(path)):
        table = read_table(given, image_column=image_column, root=root, folder_task=folder_task,
                           image_column_from=image_column_from, key=key)
        for start in range(0, len(table), chunk_rows):
            yield LabelTable(table.frame.iloc[start:start + chunk_rows], table.source)
        return
    first = 1
    for frame in _read_file_chunks(path, fmt, chunk_rows):
        frame = _with_image_paths(frame, path, image_column, root, image_column_from, first)
        frame.index = pd.RangeIndex(first, first + len(frame))
        first += len(frame)
        if len(frame):
            yield LabelTable(frame, str(path))
    if first == 1:
        raise DataError(f"table '{path}' has no rows")


def _read_file_chunks(path: Path, fmt: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas()
            return
        if fmt == "csv":
            reader = pd.read_csv(path, sep=_sniff_separator(path), dtype=str, encoding="utf-8-sig",
                                 keep_default_na=False, na_values=[""], chunksize=chunk_rows)
        else:
            reader = pd.read_json(path, lines=True, dtype=False, chunksize=chunk_rows)
        with reader:
            yield from reader
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read table '{path}' as {fmt}: {first}") from None


def _with_image_paths(frame: pd.DataFrame, path: Path, image_column: str, root, image_column_from: str,
                      first_row: int = 1) -> pd.DataFrame:
    """The image column renamed `image` and made absolute (against `root`, else the table's folder)."""
    if image_column not in frame.columns:
        raise DataError(f"table '{path}' has no image column '{image_column}' ({image_column_from}); "
                        f"columns: {', '.join(map(str, frame.columns))}")
    base = Path(root).expanduser() if root else path.parent
    frame = frame.rename(columns={image_column: IMAGE}) if image_column != IMAGE else frame
    frame[IMAGE] = [_resolve(base, v, path, i) for i, v in enumerate(frame[IMAGE], start=first_row)]
    return frame


def _resolve(base: Path, value, table: Path, row: int) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == "":
        raise DataError(f"{table}, row {row}: empty image path")
    p = Path(str(value).strip()).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def check_columns(table: LabelTable, columns: dict[str, str]) -> None:
    """Every task's label column must be in the table. `columns` maps task -> column."""
    for task, col in columns.items():
        if col not in table.frame.columns:
            have = [c for c in table.frame.columns if c != IMAGE]
            raise DataError(f"table {quoted(table.source)} has no column '{col}' for task '{task}' "
                            f"(set tasks.{task}.column); columns: {', '.join(map(str, have))}")


def split_by_column(table: LabelTable, column: str) -> dict[str, np.ndarray]:
    """Row positions per split from a train/val/test column."""
    if column not in table.frame.columns:
        raise DataError(f"table {quoted(table.source)} has no split column '{column}' (data.split_column)")
    names = []
    for row, value in table.frame[column].items():
        key = SPLIT_NAMES.get(str(value).strip().lower())
        if key is None:
            raise DataError(f"{table.source}, row {row}, column '{column}': unknown split {value!r}; "
                            f"expected train, val or test")
        names.append(key)
    names = np.asarray(names)
    return {s: np.flatnonzero(names == s) for s in ("train", "val", "test")}


def random_split(n: int, fractions: dict[str, float], seed: int,
                 strata: list[str] | None = None) -> dict[str, np.ndarray]:
    """Seeded split of range(n). `fractions` e.g. {"val": 0.1, "test": 0.0}; the rest is train.

    With `strata` (one key per row) each stratum is split in the same proportions."""
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if strata is None else [
        np.flatnonzero(np.asarray(strata) == key) for key in sorted(set(strata))]
    out: dict[str, list[int]] = {"train": [], **{k: [] for k in fractions}}
    for idx in groups:
        idx = rng.permutation(idx)
        start = 0
        for name, frac in fractions.items():
            count = int(round(frac * len(idx)))
            out[name].extend(idx[start:start + count].tolist())
            start += count
        out["train"].extend(idx[start:].tolist())
    return {k: np.sort(np.asarray(v, dtype=np.int64)) for k, v in out.items()}


def fold_numbers(n: int, folds: int, seed: int, strata: list[str] | None = None) -> np.ndarray:
    """Seeded k-fold assignment of range(n): int64 [n], the fold (1..folds) of each row.

    The rows are shuffled (each stratum on its own, strata in sorted order) and dealt out to the
    folds in turn, the deal running on from one stratum to the next: the folds' sizes differ by at
    most one row, and so do each stratum's row counts per fold."""
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if strata is None else [
        np.flatnonzero(np.asarray(strata) == key) for key in sorted(set(strata))]
    out = np.zeros(n, dtype=np.int64)
    dealt = 0
    for idx in groups:
        out[rng.permutation(idx)] = (dealt + np.arange(len(idx))) % folds + 1
        dealt += len(idx)
    return out
