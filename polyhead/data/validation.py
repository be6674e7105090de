"""Check every table row and image of every split before training (`data.validate`).

Two depths:
- header (fast): the file exists, is a non-empty file, Pillow identifies it from its header
  (format, size, mode), its size is under `PIL.Image.MAX_IMAGE_PIXELS` (read from the header,
  nothing is decoded), its mode is one `polyhead.data.images` converts, and its tail shows it
  is complete (JPEG: an EOI marker FF D9 after the last scan, searched past the image data
  only when the last 16 KiB lack it; PNG: an IEND chunk);
- full: all of the above, then every image is decoded with `load_image`.

Paths are checked once each (an image used by several rows), on a thread pool: Pillow
releases the GIL for file I/O and decoding. Table-level findings (duplicated rows, a
train/val leak, a likely wrong multilabel delimiter, a split with a single class) are
warnings; unreadable images are errors.

`check_before_training` is what `polyhead train` and `inspect-data` run: it stops on bad images
(`data.on_bad_image=error`) or drops their rows (`skip`, listed in `skipped_rows.csv`).
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from polyhead.config.schema import DataConfig
from polyhead.data.dataset import EncodedSplit
from polyhead.errors import DataError, ImageError, PolyheadError

SPLITS = ("train", "val", "test")
SKIPPED_COLUMNS = ("split", "table", "row", "image", "reason")  # skipped_rows.csv (read by the trackers)
# Modes polyhead.data.images converts to L / RGB (the rare LAB / HSV go through Pillow's RGB conversion)
CONVERTIBLE_MODES = frozenset({"1", "L", "P", "RGB", "RGBA", "RGBa", "RGBX", "LA", "La", "PA", "CMYK", "YCbCr",
                               "I", "I;16", "I;16L", "I;16B", "I;16N", "F", "LAB", "HSV"})
TAIL_BYTES = 16384  # how much of a file's end the truncation check reads
LIKELY_DELIMITERS = (",", ";", "/")
_PROGRESS_FROM = 256  # image lists at least this long get a progress bar


@dataclass
class Problem:
    """One finding. `severity` is "error" (the row cannot be used) or "warning"."""

    kind: str  # missing | not_a_file | empty | not_an_image | too_large | bad_mode | truncated | decode
    #            duplicate | leak | delimiter | single_class
    severity: str
    split: str
    table: str
    row: int | None
    column: str | None
    image: str | None
    message: str

    def line(self) -> str:
        """"<table>, row N, column 'image': <path>: <what is wrong>" """
        where = self.table + (f", row {self.row}" if self.row is not None else "")
        where += f", column '{self.column}'" if self.column else ""
        return f"{where}: {self.image}: {self.message}" if self.image else f"{where}: {self.message}"


@dataclass
class ValidationReport:
    problems: list[Problem] = field(default_factory=list)
    images_checked: int = 0
    mode: str = "header"
    bad: dict[str, list[int]] = field(default_factory=dict)  # split -> positions of rows with a bad image

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def write(self, path: str | Path) -> Path:
        """Every problem to a .json (a list of dicts) or .csv file (one row per problem)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [asdict(p) for p in self.problems]
        if path.suffix.lower() == ".json":
            path.write_text(json.dumps(rows, indent=2))
        else:
            with open(path, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(Problem.__dataclass_fields__))
                writer.writeheader()
                writer.writerows(rows)
        return path


# ---- one image ------------------------------------------------------------------------------
def check_image(path: str, *, full: bool = False, channels: int = 3, size: tuple[int, int] = (32, 32)
                ) -> tuple[str, str] | None:
    """None when the image is usable, else (kind, message). Header checks always; `full` decodes."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "missing", "file not found"
    except OSError as exc:
        return "missing", f"cannot access it ({exc.strerror or exc})"
    if not os.path.isfile(path):
        return "not_a_file", "it is a directory, not a file" if os.path.isdir(path) else "not a regular file"
    if st.st_size == 0:
        return "empty", "the file is empty (0 bytes)"
    found = _check_header(path)
    if found is None and full:
        found = _check_decode(path, channels, size)
    return found


def _check_header(path: str) -> tuple[str, str] | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # compared below, exactly
            with Image.open(path) as img:
                fmt, (w, h), mode = img.format, img.size, img.mode
    except UnidentifiedImageError:
        return "not_an_image", "not an image file, or a format Pillow cannot read"
    except Image.DecompressionBombError as exc:
        return "too_large", f"{exc} (PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}); " \
                            "shrink the image, or raise the limit if you trust the file"
    except PermissionError:
        return "missing", "permission denied"
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        return "truncated", f"unreadable header: {exc or type(exc).__name__} (corrupt or truncated file?)"
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and w * h > limit:
        return "too_large", (f"{w}x{h} = {w * h} pixels is above Pillow's decompression-bomb limit "
                             f"PIL.Image.MAX_IMAGE_PIXELS = {limit}; shrink the image, or raise the limit "
                             f"if you trust the file")
    if mode not in CONVERTIBLE_MODES:
        return "bad_mode", f"image mode {mode!r} cannot be converted to L or RGB"
    return _check_tail(path, fmt)


def _check_tail(path: str, fmt: str | None) -> tuple[str, str] | None:
    """A truncated JPEG lacks its end-of-image marker, a truncated PNG its IEND chunk. Trailing bytes
    after them (padding, camera extras, a motion photo's video) are tolerated."""
    if fmt not in ("JPEG", "PNG"):
        return None
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - TAIL_BYTES))
        tail = fh.read()
        if fmt == "PNG":
            return None if tail.rfind(b"IEND") >= 0 else (
                "truncated", "truncated PNG: no IEND chunk at the end of the file")
        # FF D9 cannot occur inside entropy-coded data (FF is stuffed with 00), so an EOI after
        # the last start-of-scan (FF DA) in the tail is the real end, not an EXIF thumbnail's
        eoi, sos = tail.rfind(b"\xff\xd9"), tail.rfind(b"\xff\xda")
        if eoi >= 0 and eoi > sos or _jpeg_has_eoi(fh):
            return None
    return "truncated", "truncated JPEG: no end-of-image marker (FF D9) after the image data"


def _jpeg_has_eoi(fh) -> bool:
    """Slow path (long trailing data): walk the segments to the main image's first scan, then
    look for an EOI anywhere after it."""
    fh.seek(2)  # after SOI
    while True:
        head = fh.read(4)
        if len(head) < 4 or head[0] != 0xFF:
            return False
        if head[1] == 0xDA:  # start of scan: entropy-coded data follows
            break
        fh.seek(int.from_bytes(head[2:4], "big") - 2, os.SEEK_CUR)
    previous = b""
    while chunk := fh.read(1 << 20):
        if b"\xff\xd9" in previous[-1:] + chunk:
            return True
        previous = chunk
    return False


def _check_decode(path: str, channels: int, size: tuple[int, int]) -> tuple[str, str] | None:
    from polyhead.data.images import load_image

    try:
        load_image(path, channels=channels, size=size)
    except ImageError as exc:
        return "decode", exc.reason
    return None


def check_images(paths: list[str], *, full: bool = False, channels: int = 3, size: tuple[int, int] = (32, 32),
                 progress: bool = False, workers: int | None = None) -> dict[str, tuple[str, str]]:
    """Check each distinct path once, in parallel. Returns {path: (kind, message)} for the bad ones."""
    unique = list(dict.fromkeys(paths))
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    bad: dict[str, tuple[str, str]] = {}

    def one(p: str):
        return p, check_image(p, full=full, channels=channels, size=size)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(one, unique)
        if progress and len(unique) >= _PROGRESS_FROM:
            from rich.progress import track

            results = track(results, total=len(unique), description=f"checking images ({'full' if full else 'header'})")
        for p, found in results:
            if found is not None:
                bad[p] = found
    return bad


# ---- splits ---------------------------------------------------------------------------------
def _where(split: EncodedSplit, i: int) -> tuple[str, int]:
    return split.source_names[int(split.sources[i])], int(split.rows[i])


def validate_splits(splits: dict[str, EncodedSplit | None], tasks: dict, *, mode: str = "header",
                    image_column: str = "image", channels: int = 3, size: tuple[int, int] = (32, 32),
                    progress: bool = False) -> ValidationReport:
    """Check every row of every split: images (errors) and table-level findings (warnings).

    `splits`: {"train": EncodedSplit, "val": ..., "test": ...} (None for an absent split);
    `tasks`: {name: Task} with their classes known."""
    present = {k: s for k, s in splits.items() if s is not None}
    paths = [p for s in present.values() for p in s.paths]
    bad = check_images(paths, full=mode == "full", channels=channels, size=size, progress=progress)
    report = ValidationReport(images_checked=len(set(paths)), mode=mode)
    for name, split in present.items():
        report.bad[name] = []
        for i, path in enumerate(split.paths):
            if path in bad:
                table, row = _where(split, i)
                kind, message = bad[path]
                report.problems.append(Problem(kind, "error", name, table, row, image_column, path, message))
                report.bad[name].append(i)
    report.problems += _duplicates(present, image_column)
    report.problems += _label_warnings(present, tasks)
    return report


def _duplicates(splits: dict[str, EncodedSplit], column: str) -> list[Problem]:
    """The same image on two rows of one split (duplicate), or in train and in val/test (leak)."""
    out, seen_train = [], {}
    for name, split in splits.items():
        first: dict[str, int] = {}
        for i, path in enumerate(split.paths):
            table, row = _where(split, i)
            if path in first:
                t0, r0 = _where(split, first[path])
                at = f"row {r0}" if t0 == table else f"row {r0} of {t0}"
                out.append(Problem("duplicate", "warning", name, table, row, column, path,
                                   f"duplicated row: same image as {at}"))
                continue
            first[path] = i
            if name != "train" and path in seen_train:
                t0, r0 = seen_train[path]
                out.append(Problem("leak", "warning", name, table, row, column, path,
                                   f"also in the train split ({t0}, row {r0}): a train/{name} leak"))
        if name == "train":
            seen_train = {p: _where(split, i) for p, i in first.items()}
    return out


def _label_warnings(splits: dict[str, EncodedSplit], tasks: dict) -> list[Problem]:
    out = []
    train = splits.get("train")
    for name, task in tasks.items():
        if task.type == "multilabel" and train is not None and not task.config.classes:
            out += _delimiter_warnings(name, task, train)
        if task.type not in ("binary", "multiclass"):
            continue
        for split_name, split in splits.items():
            mask = split.masks.get(name)
            if mask is None or not mask.any():
                continue
            values = np.unique(split.targets[name][mask])
            if len(values) == 1:
                cls = task.classes[int(values[0])]
                table = " + ".join(split.source_names)
                out.append(Problem("single_class", "warning", split_name, table, None, task.column, None,
                                   f"task '{name}' has a single class ({cls!r}) in the {split_name} split"))
    return out


def _delimiter_warnings(name: str, task, train: EncodedSplit) -> list[Problem]:
    out = []
    for j, label in enumerate(task.classes):
        hits = [d for d in LIKELY_DELIMITERS if d in label and d != task.config.delimiter]
        if not hits:
            continue
        rows = np.flatnonzero(train.targets[name][:, j] > 0)
        table, row = _where(train, int(rows[0])) if len(rows) else (train.source, None)
        out.append(Problem("delimiter", "warning", "train", table, row, task.column, None,
                           f"label {label!r} of task '{name}' contains {hits[0]!r}, but cells are split on "
                           f"{task.config.delimiter!r}: set tasks.{name}.delimiter={hits[0]!r} if it is a list"))
    return out


# ---- training ---------------------------------------------------------------------------------
def drop_bad_rows(splits, report: ValidationReport, tasks: dict) -> tuple[dict[str, int], list[dict]]:
    """Remove the rows with a bad image from `splits` (a DataSplits, changed in place).

    Returns ({split: rows skipped}, skipped_rows.csv rows {split, table, row, image, reason})."""
    counts, rows = {}, []
    for name in SPLITS:
        split = getattr(splits, name)
        if split is None:
            continue
        bad = set(report.bad.get(name, []))
        counts[name] = len(bad)
        if not bad:
            continue
        keep = np.asarray([i for i in range(len(split)) if i not in bad], dtype=np.int64)
        if len(keep) == 0:
            raise DataError(f"every row of the {name} split ({split.source}) has a bad image; nothing is left "
                            f"to train on with data.on_bad_image=skip (see the first: {report.errors[0].line()})")
        setattr(splits, name, split.take(keep))
    for p in report.errors:
        rows.append({"split": p.split, "table": p.table, "row": p.row, "image": p.image, "reason": p.message})
    for task, n in splits.train.labelled().items():
        if n == 0:
            raise DataError(f"task '{task}' has no labelled row left in the training split after skipping "
                            f"{counts.get('train', 0)} row(s) with bad images (data.on_bad_image=skip)")
    return counts, rows


def _bad_list_path(output_dir: str | Path) -> Path:
    """Where the full list goes when training stops: output_dir/bad_images.csv, else the temp folder."""
    for folder in (Path(output_dir).expanduser(), Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "bad_images.csv"
            with open(path, "a"):
                pass
            return path
        except OSError:
            continue
    return Path(tempfile.mkstemp(prefix="polyhead-bad_images-", suffix=".csv")[1])


def check_before_training(data: DataConfig, tasks: dict, splits, console=None, *, progress: bool = False,
                          output_dir: str | Path = "."):
    """`data.validate` before `polyhead train` and `polyhead inspect-data`: warnings are printed;
    bad images stop the run (`data.on_bad_image=error`, the full list written to
    `output_dir`/bad_images.csv) or their rows are dropped (`skip`). `data`: the config's data
    section; `progress`: show a bar while checking (with a console).
    Returns `splits` (a DataSplits, its `warnings` set, and `skipped` / `skipped_rows` with skip)."""
    d = data
    if d.validate == "off":
        return splits
    from polyhead.data.loaders import image_size

    report = validate_splits({n: getattr(splits, n) for n in SPLITS}, tasks, mode=d.validate,
                             image_column=d.image_column, channels=d.channels, size=image_size(d),
                             progress=progress and console is not None)
    splits.warnings = [p.line() for p in report.warnings]
    if console is not None:
        print_problems(console, report.warnings, limit=10)
    errors = report.errors
    if errors and d.on_bad_image == "error":
        path = report.write(_bad_list_path(output_dir))
        raise DataError(f"cannot read images: {len(errors)} bad image(s) found by data.validate={d.validate}, "
                        f"the first: {errors[0].line()}; full list: {path}; to go on without those rows set "
                        f"data.on_bad_image=skip")
    if d.on_bad_image == "skip":
        splits.skipped, splits.skipped_rows = drop_bad_rows(splits, report, tasks)
        if errors and console is not None:
            console.print(f"[yellow]skipped {len(errors)} row(s) with bad images (data.on_bad_image=skip): "
                          f"{', '.join(f'{k} {v}' for k, v in splits.skipped.items() if v)}[/]")
    return splits


def write_skipped_rows(run_dir: Path, splits) -> Path | None:
    """run_dir/skipped_rows.csv (columns SKIPPED_COLUMNS) when rows were skipped."""
    rows = getattr(splits, "skipped_rows", None)
    if not rows:
        return None
    path = Path(run_dir) / "skipped_rows.csv"
    try:
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(SKIPPED_COLUMNS))
            writer.writeheader()
            writer.writerows(rows)
    except OSError as exc:
        raise PolyheadError(f"cannot write '{path}': {exc.strerror or exc}") from None
    return path


def print_problems(console, problems: list[Problem], limit: int | None = None) -> None:
    from rich.markup import escape  # table names such as "labels.csv [train]" are not markup

    shown = problems if limit is None else problems[:limit]
    for p in shown:
        style = "red" if p.severity == "error" else "yellow"
        console.print(f"[{style}]{p.severity}[/]: {escape(p.line())}", highlight=False, soft_wrap=True)
    if limit is not None and len(problems) > limit:
        console.print(f"... and {len(problems) - limit} more warning(s) (polyhead validate-data lists them all)")
