"""Terminal summaries of metrics (rich tables) and flat scalar views of nested metrics."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from polyhead.tasks import Task


def scalar_metrics(metrics: dict[str, dict[str, Any]], prefix: str = "") -> dict[str, float]:
    """{task: {metric: value}} -> {"<prefix><task>/<metric>": float} for the scalar entries only."""
    flat = {}
    for task, values in metrics.items():
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                flat[f"{prefix}{task}/{key}"] = float(value)
    return flat


def metrics_table(metrics: dict[str, dict[str, Any]], tasks: dict[str, Task], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("task", style="bold")
    table.add_column("type")
    table.add_column("rows scored", justify="right")
    table.add_column("metrics")
    for name, values in metrics.items():
        task = tasks[name]
        shown = []
        for key in task.headline_metrics:
            value = values.get(key)
            if isinstance(value, float):
                shown.append(f"{key} {value:.4f}")
        table.add_row(name, task.type, str(values.get("n", 0)), "  ".join(shown) or "-")
    return table
