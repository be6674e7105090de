"""Shared matplotlib setup: the Agg backend, one readable style, saving a figure."""

from __future__ import annotations

from pathlib import Path

TRAIN_COLOR, VAL_COLOR = "#1f77b4", "#d62728"


def agg_pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (no display needed), style untouched."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def pyplot():
    """`agg_pyplot` with the plots' readable font sizes and light grid."""
    plt = agg_pyplot()
    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
                         "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 100, "savefig.dpi": 110})
    return plt


def save(fig, path: Path) -> Path:
    """Write `fig` as PNG (parents created), close it, return the path."""
    plt = pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


def safe_name(name: str) -> str:
    """A task name usable in a file name."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "task"


def grid(n: int, cols: int) -> tuple[int, int]:
    cols = max(1, min(cols, n))
    return (n + cols - 1) // cols, cols
