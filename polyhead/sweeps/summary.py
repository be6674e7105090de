"""A sweep's summary: `summary.csv` (one row per run) and the same as a terminal table.

Columns: index, run (the folder name), status (ok | failed | not run), one column per swept key
(its value as typed), the monitored metric's best epoch value (`best <training.monitor>`), the main
metric of every task on val and test (`val/<task>/<metric>`), seconds, run_dir, error, overrides
(every override of the run, space-separated).
"""

from __future__ import annotations

import math
from pathlib import Path

from rich.table import Table

from polyhead.sweeps.runner import Outcome


def rows(outcomes: list[Outcome]) -> list[dict]:
    out = []
    for o in sorted(outcomes, key=lambda o: o.index):
        row = {"index": o.index, "run": o.label, "status": o.status, **o.swept}
        if o.monitor[0]:
            row[f"best {o.monitor[0]}"] = o.monitor[1]
        row.update(o.main)
        row.update({"seconds": round(o.seconds, 1), "run_dir": o.run_dir, "error": o.error,
                    "overrides": " ".join(o.overrides)})
        out.append(row)
    return out


def write_csv(outcomes: list[Outcome], path: Path) -> Path:
    """All columns of every row (a column a run lacks is empty); written whole each time, atomically."""
    import pandas as pd

    frame = pd.DataFrame(rows(outcomes))
    fixed = ["index", "run", "status"]
    tail = ["seconds", "run_dir", "error", "overrides"]
    middle = [c for c in frame.columns if c not in fixed + tail]
    tmp = path.with_name(f".{path.name}.tmp")
    frame[[c for c in fixed + middle + tail if c in frame.columns]].to_csv(tmp, index=False)
    tmp.replace(path)
    return path


def _cell(value) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def table(outcomes: list[Outcome], title: str) -> Table:
    """The CSV's rows without run_dir and overrides (the swept values stand for them); errors cut to a line."""
    shown = [{k: v for k, v in row.items() if k not in ("run_dir", "overrides", "run")} for row in rows(outcomes)]
    columns = list(dict.fromkeys(k for row in shown for k in row))
    if not any(row.get("error") for row in shown):
        columns.remove("error")
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, justify="right" if c in ("index", "seconds") else "left",
                     overflow="fold", max_width=60 if c == "error" else None)
    for row in shown:
        style = {"ok": None, "failed": "red"}.get(row["status"], "dim")
        t.add_row(*(_cell(row.get(c, "")) for c in columns), style=style)
    return t
