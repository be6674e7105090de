"""Plots plus report in one call, for `fit` and `polyhead evaluate`.

Run folder additions:
    plots/training/*.png            learning curves (history.csv)
    plots/test/*.png                evaluation plots on the test split (plots/val/ without a test split)
    report.html                     self-contained report of the run
    evaluations/<stem>/plots/*.png  `polyhead evaluate RUN --table <stem>.csv` (Predictor.evaluate(plots_dir=...)),
                                    which then writes report.html again: it shows every evaluation too
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from polyhead.reports.curves import plot_training
from polyhead.reports.evaluation import Outputs, plot_evaluation
from polyhead.reports.html import write_report
from polyhead.tasks import Task


def write_run_report(run_dir: Path, tasks: dict[str, Task], outputs: dict[str, tuple[Outputs, Sequence[str]]], *,
                     worst: int = 16, max_annotated: int = 12) -> Path:
    """Learning curves, evaluation plots of one split, then report.html; returns the report's path.

    `outputs`: {split name: (outputs, image paths of that split)}; the plots of "test" are
    written when present, else those of "val" (one split keeps the report short)."""
    run_dir = Path(run_dir)
    history = run_dir / "history.csv"
    if history.is_file() and history.stat().st_size:
        plot_training(pd.read_csv(history), tasks, run_dir / "plots" / "training")
    split = "test" if "test" in outputs else ("val" if "val" in outputs else None)
    if split is not None:
        split_outputs, paths = outputs[split]
        plot_evaluation(split_outputs, tasks, paths, run_dir / "plots" / split, worst=worst,
                        max_annotated=max_annotated)
    return write_report(run_dir)
