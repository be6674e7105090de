"""The MLflow parent run of a sweep or a study, and the tag that makes each run its child.

The runs themselves log as ever (polyhead.engine.tracked_run); once a run has ended, its MLflow
run (found in its folder's tracking.json) gets the tags `mlflow.parentRunId` (how the MLflow UI
nests runs) and `polyhead.sweep`. Tagging afterwards needs nothing from the training: no callback,
so a run trained on several processes (training.devices=N) or a k-fold run is a child too.
"""

from __future__ import annotations

import json
from pathlib import Path

from polyhead.config.schema import Config
from polyhead.sweeps.runner import default_mlflow_uri


def uses_mlflow(cfg: Config) -> bool:
    return cfg.tracking.enabled and "mlflow" in cfg.tracking.trackers


class ParentRun:
    """An MLflow run for the whole sweep in the store and experiment of its runs; `info`
    ({"uri", "run_id", "sweep"}) is what `link_child` needs, in this process or a worker."""

    def __init__(self, cfg: Config, folder: Path, name: str, resume: dict | None = None):
        """`resume`: a previous `record` (a study run again reopens its parent run)."""
        from polyhead.tracking.mlflow import MlflowTracker

        self.tracker = MlflowTracker(experiment=cfg.tracking.experiment, output_dir=folder,
                                     uri=default_mlflow_uri(cfg), log_model=False)
        same_store = resume and resume.get("uri") == self.tracker.uri
        self.record = self.tracker.start(folder, name, resume if same_store else None)
        self.info = {"uri": self.tracker.uri, "run_id": self.tracker.run_id, "sweep": name}

    def log(self, params: dict[str, str], tags: dict[str, str]) -> None:
        self.tracker.log_params(params)
        self.tracker.set_tags(tags)

    def finish(self, metrics: dict[str, float], files: list[Path], status: str) -> None:
        self.tracker.log_metrics(metrics, step=0)
        for path in files:
            if path.exists():
                self.tracker.log_artifact(path)
        self.tracker.finish(status)

    def where(self) -> str | None:
        return self.tracker.where()


def tag_run(run_dir: Path, tags: dict[str, str], uri: str | None = None) -> bool:
    """Sets `tags` on the MLflow run recorded in `run_dir/tracking.json` (only one in the store `uri`, if given)."""
    record = run_dir / "tracking.json"
    info = json.loads(record.read_text()).get("mlflow") if record.is_file() else None
    if not info or (uri is not None and info.get("uri") != uri):
        return False
    from polyhead.tracking.mlflow import MlflowTracker

    MlflowTracker.attach(info).set_tags(tags)
    return True


def tag_or_warn(run_dir: Path, tags: dict[str, str], console, uri: str | None = None) -> None:
    """`tag_run`; a tracking store that fails here only warns (the run itself is done and recorded)."""
    try:
        tag_run(run_dir, tags, uri)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        console.print(f"[yellow]{run_dir.name}: MLflow tags not set ({type(exc).__name__}: {first})[/]", soft_wrap=True)


def link_child(run_dir: Path, parent: dict, console, extra: dict[str, str] | None = None) -> None:
    """The MLflow run recorded in `run_dir/tracking.json` becomes a child of `parent` (same store only),
    with `extra` tags."""
    tags = {"mlflow.parentRunId": parent["run_id"], "polyhead.sweep": parent["sweep"], **(extra or {})}
    tag_or_warn(run_dir, tags, console, parent["uri"])
