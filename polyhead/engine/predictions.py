"""Prediction tables: one DataFrame per batch, and the files they stream into.

A prediction table has the columns `image`, `row`, then each task's `prediction_columns()`,
then `error`: why the image could not be read (null for a good row, whose prediction columns
are filled; the prediction columns of a bad row are null). Files:

- Parquet: the Arrow schema is built from the tasks before the first row (a batch in which no
  image gets a multilabel label must not fix that column's type), lists stay lists;
- CSV: a list cell is written as label tables write it, joined with the task's delimiter
  (`red|floral`), an empty list as `[]` (an empty cell would mean "missing"); `-` is stdout.

A file is written to `<out>.partial` and renamed when complete; any failure removes it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from polyhead.data.tables import IMAGE
from polyhead.errors import PolyheadError
from polyhead.tasks import Task

ERROR = "error"
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
_ARROW = {"string": pa.string(), "float": pa.float64(), "string_list": pa.list_(pa.string()),
          "float_list": pa.list_(pa.float64())}


def prediction_frame(paths: list[str], rows: list[int], columns: dict[str, list], errors: list[str]) -> pd.DataFrame:
    """One batch's predictions. `columns`: {column: one value per row} from the tasks' `decode`;
    `errors`: "" for a readable image, else why not (its prediction cells become null)."""
    bad = [i for i, e in enumerate(errors) if e]
    for values in columns.values():
        for i in bad:
            values[i] = None
    return pd.DataFrame({IMAGE: paths, "row": rows, **columns, ERROR: [e or None for e in errors]})


def arrow_schema(tasks: dict[str, Task]) -> pa.Schema:
    """The Parquet schema of a prediction table, from the tasks alone."""
    fields = [pa.field(IMAGE, pa.string()), pa.field("row", pa.int64())]
    for task in tasks.values():
        fields += [pa.field(name, _ARROW[kind]) for name, kind in task.prediction_columns().items()]
    return pa.schema(fields + [pa.field(ERROR, pa.string())])


def csv_cells(frame: pd.DataFrame, tasks: dict[str, Task]) -> pd.DataFrame:
    """List columns joined with their task's delimiter (`[]` for an empty list, blank for null)."""
    frame = frame.copy()
    for task in tasks.values():
        sep = task.config.delimiter
        for name, kind in task.prediction_columns().items():
            if kind.endswith("_list"):
                frame[name] = [None if v is None else sep.join(map(str, v)) if len(v) else "[]" for v in frame[name]]
    return frame


def output_format(out: str | Path) -> str:
    """"parquet" or "csv" from the file name ("-" is CSV on stdout)."""
    if str(out) == "-":
        return "csv"
    fmt = FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        raise PolyheadError(f"--out '{out}': use a .parquet or .csv file name, or - for CSV on stdout")
    return fmt


def write_predictions(frames: Iterable[pd.DataFrame], out: str | Path, tasks: dict[str, Task]) -> int:
    """Stream `frames` into `out` (.parquet, .csv or "-"); returns the rows written.

    The file appears complete or not at all: it is written as `<out>.partial`, renamed at the
    end, and removed on any failure (a bad image with on_bad_image="error", Ctrl-C, a full disk)."""
    fmt = output_format(out)
    if str(out) == "-":
        return _write_csv(frames, sys.stdout, tasks)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    try:
        if fmt == "parquet":
            written = _write_parquet(frames, tmp, tasks)
        else:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                written = _write_csv(frames, fh, tasks)
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return written


def _write_parquet(frames: Iterable[pd.DataFrame], path: Path, tasks: dict[str, Task]) -> int:
    schema, written = arrow_schema(tasks), 0
    with pq.ParquetWriter(path, schema) as writer:
        for frame in frames:
            writer.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False))
            written += len(frame)
    return written


def _write_csv(frames: Iterable[pd.DataFrame], fh, tasks: dict[str, Task]) -> int:
    written = 0
    for frame in frames:
        csv_cells(frame, tasks).to_csv(fh, header=written == 0, index=False)
        written += len(frame)
    return written
