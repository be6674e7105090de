"""MLflow: a local SQLite store `<output_dir>/mlflow.db` by default, or any tracking URI (a server).

Uses an explicit `MlflowClient` bound to the URI (no global fluent state), so several runs or
stores in one process never mix. With a local store the experiment's artifacts go to
`<folder of the store>/mlartifacts`, beside the database, readable by `mlflow ui`.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

from polyhead.tracking.base import Tracker, missing_library, register_tracker

# MLflow's own limits (mlflow.utils.validation): params and tags per log_batch call, metrics per
# call, value lengths. Longer values are cut rather than failing the run.
PARAMS_PER_BATCH = 100
METRICS_PER_BATCH = 1000
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000
MAX_KEY_LENGTH = 250


def _quiet() -> None:
    # "Creating initial MLflow database tables", alembic migrations: noise next to polyhead's output
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def local_store(uri: str) -> Path | None:
    """The folder of a local store (sqlite:///path.db, file:///dir or a plain path), else None."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        return Path(uri[len("sqlite:///"):]).parent if uri.startswith("sqlite:///") else None
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else uri)
    return None


_EMPTY_STORE: Path | None = None  # a migrated, empty SQLite store made once per process


def new_sqlite_store(db: Path) -> None:
    """Creates an empty MLflow SQLite store at `db` (which must not exist).

    MLflow builds a store by running its ~60 schema migrations: about 6 s here. A process that
    opens many new stores (the test suite, sweeps into several output folders) pays that once:
    the first store is built in a temporary folder and copied. The copy's "Default" experiment
    then gets the artifact location MLflow itself would give it (`./mlruns/0` from the cwd)."""
    global _EMPTY_STORE
    from mlflow import MlflowClient

    if _EMPTY_STORE is None or not _EMPTY_STORE.is_file():
        folder = tempfile.mkdtemp(prefix="polyhead-mlflow-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        empty = Path(folder) / "empty.db"
        MlflowClient(tracking_uri=f"sqlite:///{empty}").search_experiments()  # runs the migrations
        _EMPTY_STORE = empty
    tmp = db.with_name(f".{db.name}.{os.getpid()}.tmp")
    shutil.copyfile(_EMPTY_STORE, tmp)
    now = int(time.time() * 1000)
    with contextlib.closing(sqlite3.connect(tmp)) as con, con:
        con.execute("UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ? "
                    "WHERE experiment_id = 0", (str(Path.cwd() / "mlruns" / "0"), now, now))
    try:
        os.link(tmp, db)  # never replaces a store another process created meanwhile
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


@register_tracker("mlflow")
class MlflowTracker(Tracker):
    def __init__(self, *, experiment: str, output_dir: Path, uri: str | None = None, log_model: bool = True, **_):
        self.experiment = experiment
        self.uri = uri or f"sqlite:///{output_dir / 'mlflow.db'}"
        self.log_model_enabled = log_model
        self.client = None
        self.run_id = self.experiment_id = None
        self.params: dict[str, str] = {}  # already on the run (a resumed run keeps its first values)

    def start(self, run_dir: Path, run_name: str, resume_info: dict | None) -> dict:
        try:
            from mlflow import MlflowClient
        except ImportError:
            raise missing_library("mlflow", "mlflow") from None
        _quiet()
        if resume_info and resume_info.get("run_id"):
            self.uri = resume_info.get("uri", self.uri)
        store = local_store(self.uri)
        if store is not None:
            store.mkdir(parents=True, exist_ok=True)
        if self.uri.startswith("sqlite:///") and not Path(self.uri[len("sqlite:///"):]).exists():
            new_sqlite_store(Path(self.uri[len("sqlite:///"):]))
        self.client = MlflowClient(tracking_uri=self.uri)
        if resume_info and resume_info.get("run_id"):
            run = self.client.get_run(resume_info["run_id"])
            self.run_id, self.experiment_id = run.info.run_id, run.info.experiment_id
            self.params = dict(run.data.params)
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            self.experiment_id = self._experiment(store)
            run = self.client.create_run(self.experiment_id, run_name=run_name,
                                         tags={"polyhead.run_dir": str(run_dir.resolve())})
            self.run_id = run.info.run_id
        return {"uri": self.uri, "experiment": self.experiment, "experiment_id": self.experiment_id,
                "run_id": self.run_id}

    @classmethod
    def attach(cls, info: dict) -> "MlflowTracker":
        """Bound to an existing run (`info`: tracking.json's "mlflow" entry) without touching its status."""
        from mlflow import MlflowClient

        _quiet()
        tracker = cls(experiment=info.get("experiment", ""), output_dir=Path("."), uri=info["uri"])
        tracker.client, tracker.run_id = MlflowClient(tracking_uri=info["uri"]), info["run_id"]
        tracker.experiment_id = info.get("experiment_id")
        return tracker

    def _experiment(self, store: Path | None) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        location = (store / "mlartifacts").resolve().as_uri() if store is not None else None
        try:
            return self.client.create_experiment(self.experiment, artifact_location=location)
        except MlflowException:  # created meanwhile by a parallel run
            return self.client.get_experiment_by_name(self.experiment).experiment_id

    def log_params(self, flat: dict[str, str]) -> None:
        from mlflow.entities import Param, RunTag

        new, changed = [], []
        for key, value in flat.items():
            key, value = key[:MAX_KEY_LENGTH], str(value)[:MAX_PARAM_LENGTH]
            if key not in self.params:
                new.append(Param(key, value))
            elif self.params[key] != value:  # MLflow params are immutable: a resumed run's change is a tag
                changed.append(RunTag(f"resumed.{key}"[:MAX_KEY_LENGTH], value[:MAX_TAG_LENGTH]))
        for chunk in _chunks(new, PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=chunk)
        for chunk in _chunks(changed, PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, tags=chunk)
        self.params.update({p.key: p.value for p in new})

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k[:MAX_KEY_LENGTH], float(v), now, step) for k, v in values.items()]
        for chunk in _chunks(metrics, METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=chunk)

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k[:MAX_KEY_LENGTH], str(v)[:MAX_TAG_LENGTH]) for k, v in tags.items()]
        for chunk in _chunks(items, PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, tags=chunk)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path or path.name)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_model(self, path: Path) -> None:
        if self.log_model_enabled:
            self.log_artifact(path, "model")

    def finish(self, status: str = "FINISHED") -> None:
        if self.client is not None and self.run_id:
            self.client.set_terminated(self.run_id, status)

    def where(self) -> str | None:
        if self.run_id is None:
            return None
        if local_store(self.uri) is not None:
            return f"MLflow run {self.run_id}: mlflow ui --backend-store-uri {self.uri}"
        return f"MLflow run: {self.uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
