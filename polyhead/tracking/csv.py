"""A dependency-free record in `run_dir/tracking/`:

    metrics.csv   long format, one row per value: step,name,value (appended to on resume)
    params.json   {"a.b.c": "value"}: the flattened config
    tags.json     {"tag": "value"}
    status.json   {"status": "FINISHED" | "FAILED" | "KILLED"}

(The wide, one-row-per-epoch `history.csv` of the run folder is written regardless of trackers.)"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from polyhead.tracking.base import Tracker, register_tracker


@register_tracker("csv")
class CsvTracker(Tracker):
    def __init__(self, **_):
        self.folder: Path | None = None

    def start(self, run_dir: Path, run_name: str, resume_info: dict | None) -> dict:
        self.folder = run_dir / "tracking"
        self.folder.mkdir(parents=True, exist_ok=True)
        metrics = self.folder / "metrics.csv"
        if not metrics.exists():
            metrics.write_text("step,name,value\n")
        self._write_json("status.json", {"status": "RUNNING"})
        return {"folder": str(self.folder.resolve())}

    def _write_json(self, name: str, values: dict, merge: bool = False) -> None:
        path = self.folder / name
        if merge and path.exists():
            values = {**json.loads(path.read_text()), **values}
        path.write_text(json.dumps(values, indent=2))

    def log_params(self, flat: dict[str, str]) -> None:
        self._write_json("params.json", flat, merge=True)

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        with open(self.folder / "metrics.csv", "a", newline="") as fh:
            writer = csv.writer(fh)
            for name, value in values.items():
                writer.writerow([step, name, repr(float(value)) if math.isfinite(value) else str(value)])

    def set_tags(self, tags: dict[str, str]) -> None:
        self._write_json("tags.json", tags, merge=True)

    def finish(self, status: str = "FINISHED") -> None:
        if self.folder is not None:
            self._write_json("status.json", {"status": status})
