"""Learning curves from a run's history.csv (one row per epoch).

Columns read: `epoch`, `train/loss`, `val/loss`, `train/<task>/loss`, `val/<task>/loss`,
`train/<task>/<main metric>`, `val/<task>/<main metric>`, `lr/<group>`, `weights/<task>`.
Any of them may be missing (a run without validation has no `val/` columns).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from polyhead.reports._style import TRAIN_COLOR, VAL_COLOR, grid, pyplot, save
from polyhead.tasks import Task


def plot_training(history: pd.DataFrame, tasks: dict[str, Task], out_dir: Path) -> list[Path]:
    """Write losses.png, metrics.png, learning_rate.png and (when they change) task_weights.png.

    Returns the paths written; a plot whose columns are all absent is skipped."""
    out_dir = Path(out_dir)
    if history.empty:
        return []
    x = history["epoch"] if "epoch" in history else pd.Series(range(1, len(history) + 1))  # 1-based
    written = []
    losses = [("total", "train/loss", "val/loss")] + [(t, f"train/{t}/loss", f"val/{t}/loss") for t in tasks]
    path = _train_val_panels(history, x, losses, "loss", out_dir / "losses.png", "Loss per task (train vs validation)")
    written += [path] if path else []
    metrics = [(f"{t} ({task.main_metric})", f"train/{t}/{task.main_metric}", f"val/{t}/{task.main_metric}")
               for t, task in tasks.items()]
    path = _train_val_panels(history, x, metrics, None, out_dir / "metrics.png",
                             "Main metric per task (train vs validation)")
    written += [path] if path else []
    lr = [c for c in history.columns if c.startswith("lr/")]
    if lr:
        written.append(_lines(history, x, lr, "learning rate", out_dir / "learning_rate.png",
                              "Learning rate per parameter group", prefix="lr/"))
    weights = [c for c in history.columns if c.startswith("weights/")]
    if any(history[c].dropna().nunique() > 1 for c in weights):  # constant weights say nothing
        written.append(_lines(history, x, weights, "task weight", out_dir / "task_weights.png",
                              "Task weights of the weighting method", prefix="weights/"))
    return written


def _style(n: int) -> dict:
    # Markers keep a one-epoch run (a single point) visible; many epochs read better as lines.
    return {"marker": "o", "markersize": 5 if n <= 30 else 2, "linewidth": 1.8}


def _epoch_axis(ax, x: pd.Series) -> None:
    """Whole epochs on the x axis; a single epoch gets a little room on both sides."""
    if len(x) <= 15:
        ax.set_xticks(list(x))
    else:
        ax.xaxis.get_major_locator().set_params(integer=True)
    if len(x) == 1:
        ax.set_xlim(float(x.iloc[0]) - 0.5, float(x.iloc[0]) + 0.5)


def _train_val_panels(history: pd.DataFrame, x: pd.Series, panels: list[tuple[str, str, str]],
                      ylabel: str | None, path: Path, title: str) -> Path | None:
    panels = [p for p in panels if p[1] in history or p[2] in history]
    if not panels:
        return None
    plt = pyplot()
    rows, cols = grid(len(panels), 3)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    style = _style(len(history))
    for ax, (label, train_col, val_col) in zip(axes.flat, panels):
        for col, name, color in ((train_col, "train", TRAIN_COLOR), (val_col, "validation", VAL_COLOR)):
            if col in history and history[col].notna().any():
                ax.plot(x, history[col], label=name, color=color, **style)
        ax.set_title(label)
        ax.set_xlabel("epoch")
        if ylabel:
            ax.set_ylabel(ylabel)
        _epoch_axis(ax, x)
        ax.legend(loc="best")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    return save(fig, path)


def _lines(history: pd.DataFrame, x: pd.Series, columns: list[str], ylabel: str, path: Path, title: str,
           *, prefix: str) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    style = _style(len(history))
    for i, col in enumerate(columns):  # line styles keep equal curves (one lr for all groups) apart
        ax.plot(x, history[col], label=col[len(prefix):], linestyle=("-", "--", ":", "-.")[i % 4], **style)
    values = history[columns].to_numpy().ravel()
    values = values[values > 0] if prefix == "lr/" else values
    if prefix == "lr/" and len(values) and values.max() / values.min() > 50:
        ax.set_yscale("log")  # warm-up and cosine decay span decades
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    _epoch_axis(ax, x)
    ax.legend(loc="best", ncol=max(1, len(columns) // 8))
    ax.set_title(title)
    fig.tight_layout()
    return save(fig, path)
