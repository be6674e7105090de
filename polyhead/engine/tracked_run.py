"""The run lifecycle around the trackers: what a training run and an evaluation log, and when;
called from engine/fit.py and cli/evaluate.py (the trackers themselves are adapters in polyhead.tracking).

    start_run      params (flattened config) and tags (dataset fingerprint, rows, versions)
    EpochMetrics   Lightning callback: the history.csv scalars of each epoch, step = epoch (1-based)
    tracked_run    a failing run ends FAILED (KILLED on Ctrl-C), then the exception goes on
    finish_run     final metrics and the run folder's files as artifacts, then FINISHED
    log_evaluation `polyhead evaluate` scores added to the training run (MLflow)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Iterator

import lightning as L
from rich.console import Console

from polyhead.engine.summary import scalar_metrics
from polyhead.tracking import Trackers

# run folder files logged as artifacts at the end (those that exist); the model bundle goes apart
ARTIFACTS = ("config.yaml", "data.json", "metrics.json", "history.csv", "model_summary.json", "model.png",
             "model.svg", "report.html", "skipped_rows.csv", "plots")


def flatten(values: Any, prefix: str = "") -> dict[str, str]:
    """{"a": {"b": 1, "c": [1, 2]}} -> {"a.b": "1", "a.c": "[1, 2]"}; lists and empty dicts as JSON."""
    if isinstance(values, dict) and values:
        out: dict[str, str] = {}
        for key, value in values.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    key = prefix[:-1]
    if isinstance(values, (list, tuple, dict)):
        return {key: json.dumps(values)}
    return {key: "null" if values is None else str(values)}


def dataset_fingerprint(table_files: Iterable[str | Path], image_paths: Iterable[str]) -> str:
    """sha256 (hex) over, in order: the bytes of each label table file in the order given (the
    config's data.train_table, data.val_table, data.test_table, tasks.<name>.table that are files;
    image folders contribute no bytes), then every image path of every split (absolute, as
    resolved when read), sorted, each followed by a newline. Image pixels are not read: the
    fingerprint changes when a table or the set of images changes, not when an image is
    rewritten in place."""
    digest = hashlib.sha256()
    for path in table_files:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    for image in sorted(image_paths):
        digest.update(image.encode() + b"\n")
    return digest.hexdigest()


def data_tags(summary: dict) -> dict[str, str]:
    """`splits.summary()` (data.json) -> {"data.<split>.rows": n, "data.<split>.labelled.<task>": n}."""
    tags = {}
    for split, info in summary.items():
        tags[f"data.{split}.rows"] = str(info["rows"])
        for task, n in info["labelled"].items():
            tags[f"data.{split}.labelled.{task}"] = str(n)
    return tags


def start_run(trackers: Trackers, run_dir: Path, config: dict, tags: dict[str, str]) -> None:
    """Opens (or on resume reopens) every tracker's run and logs the config and the tags."""
    if not trackers:
        return
    trackers.start(run_dir, run_dir.name)
    trackers.log_params(flatten(config))
    trackers.set_tags(tags)


def scalars(metrics: dict) -> dict[str, float]:
    """Lightning's callback_metrics -> the float ones (as history.csv holds them)."""
    out = {}
    for key, value in sorted(metrics.items()):
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out


class EpochMetrics(L.Callback):
    """Logs every epoch's losses, metrics, learning rates and task weights with step = the epoch as
    history.csv counts it (from 1; the final metrics land on the last epoch's step).
    Listed after EpochHistory, at train-epoch end (after validation), like history.csv."""

    def __init__(self, trackers: Trackers):
        self.trackers = trackers

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.trackers.log_metrics(scalars(trainer.callback_metrics), step=trainer.current_epoch + 1)


@contextlib.contextmanager
def tracked_run(trackers: Trackers) -> Iterator[None]:
    """An exception inside ends the started trackers' runs FAILED (KILLED for Ctrl-C), then re-raises."""
    try:
        yield
    except BaseException as exc:
        if trackers and trackers.run_dir is not None:
            # Lightning turns Ctrl-C during training into sys.exit(1); a tracker's own error must
            # not hide the training's
            status = "KILLED" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else "FAILED"
            for tracker in trackers.trackers:
                with contextlib.suppress(Exception):
                    tracker.finish(status)
        raise


def final_metrics(run_dir: Path) -> tuple[dict[str, float], int]:
    """metrics.json -> ({"final/val/<task>/<metric>": x, "final/test/...", "training_seconds": s}, epochs_run)."""
    summary = json.loads((run_dir / "metrics.json").read_text())
    values = {}
    for split in ("val", "test"):
        values.update(scalar_metrics(summary.get(split, {}), f"final/{split}/"))
    values["training_seconds"] = float(summary.get("training_seconds", 0.0))
    return values, int(summary.get("epochs_run", 0))


def finish_run(trackers: Trackers, run_dir: Path, console: Console) -> None:
    """Final metrics, `data/skipped_rows`, the run folder's files and the model bundle, then FINISHED."""
    if not trackers:
        return
    values, step = final_metrics(run_dir)
    skipped = run_dir / "skipped_rows.csv"
    if skipped.is_file():
        import pandas as pd

        values["data/skipped_rows"] = float(len(pd.read_csv(skipped)))
    trackers.log_metrics(values, step=step)
    for name in ARTIFACTS:
        trackers.log_artifact(run_dir / name)
    trackers.log_model(run_dir / "model")
    where = trackers.where()
    trackers.finish("FINISHED")
    for line in where:
        console.print(line, soft_wrap=True, highlight=False)  # a command to copy: never wrapped


def log_evaluation(run_dir: Path, table: str | Path, metrics: dict, result_json: Path,
                   console: Console | None = None) -> str | None:
    """Adds `polyhead evaluate` results to the training run recorded in `run_dir/tracking.json`
    (MLflow only; its status is left as it was): metrics `eval/<table stem>/<task>/<metric>`, the
    result JSON and the folder `run_dir/evaluations/<stem>/` if present (under `evaluations/<stem>`).
    Returns the MLflow run id, or None when the run folder has no MLflow run."""
    record = Path(run_dir) / "tracking.json"
    info = json.loads(record.read_text()).get("mlflow") if record.is_file() else None
    if not info or not info.get("run_id"):
        return None
    from polyhead.tracking.mlflow import MlflowTracker

    stem = Path(table).stem
    try:
        tracker = MlflowTracker.attach(info)
        tracker.log_metrics(scalar_metrics(metrics, f"eval/{stem}/"), step=0)
        tracker.log_artifact(Path(result_json), f"evaluations/{stem}")
        folder = Path(run_dir) / "evaluations" / stem
        if folder.is_dir():
            tracker.log_artifact(folder, f"evaluations/{stem}")
    except Exception as exc:  # the scores are written already; a store that moved or a server that is down only warns
        if console is not None:
            console.print(f"[yellow]not logged to MLflow run {info['run_id']} ({info['uri']}): "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}[/]", soft_wrap=True)
        return None
    if console is not None:
        console.print(f"logged to MLflow run {info['run_id']} ({info['uri']})", soft_wrap=True)
    return info["run_id"]
