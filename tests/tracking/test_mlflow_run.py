"""A tiny training run read back from its MLflow store: params, per-epoch metrics of every task,
final metrics, tags, artifacts; evaluate and resume log into the same run; a failure is FAILED."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from mlflow import MlflowClient

from polyhead.cli.main import main
from polyhead.config.loading import load_config
from polyhead.engine.fit import fit

TASK_METRIC = {"quadrant": "accuracy", "red": "auroc", "tags": "micro_f1"}


def train(dataset, *extra: str, name: str = "r") -> tuple:
    runs = dataset / "runs"
    assert main(["train", str(dataset / "config.yaml"), f"output_dir={runs}", f"run_name={name}",
                 "training.epochs=2", "training.monitor=train/loss", "data.test_fraction=0.2", *extra]) == 0
    run = runs / name
    info = json.loads((run / "tracking.json").read_text())["mlflow"]
    return run, info, MlflowClient(tracking_uri=info["uri"])


def test_training_is_recorded_in_mlflow(dataset, capsys):
    run, info, client = train(dataset)
    assert info["uri"] == f"sqlite:///{(dataset / 'runs' / 'mlflow.db').resolve()}"
    assert f"mlflow ui --backend-store-uri {info['uri']}" in capsys.readouterr().out
    mrun = client.get_run(info["run_id"])
    assert mrun.info.status == "FINISHED" and mrun.info.run_name == "r"
    exp = client.get_experiment(mrun.info.experiment_id)
    assert exp.name == "polyhead" and exp.artifact_location == (dataset / "runs" / "mlartifacts").resolve().as_uri()

    params = mrun.data.params
    assert params["training.epochs"] == "2" and params["tasks.quadrant.type"] == "multiclass"
    assert json.loads(params["tasks.quadrant.classes"]) == ["bl", "br", "tl", "tr"]  # lists as JSON
    assert params["model.small_cnn.channels"] == "[8, 16]"

    history = pd.read_csv(run / "history.csv")
    for task, metric in TASK_METRIC.items():
        for key in (f"train/{task}/loss", f"val/{task}/loss", f"val/{task}/{metric}"):
            points = client.get_metric_history(info["run_id"], key)
            assert [p.step for p in points] == history["epoch"].tolist() == [1, 2], key  # step = 1-based epoch
            assert [p.value for p in points] == pytest.approx(history[key].tolist()), key
    assert [p.step for p in client.get_metric_history(info["run_id"], "train/loss")] == [1, 2]
    assert any(k.startswith("lr/") for k in mrun.data.metrics)

    summary = json.loads((run / "metrics.json").read_text())
    m = mrun.data.metrics
    for task, metric in TASK_METRIC.items():
        assert m[f"final/test/{task}/{metric}"] == pytest.approx(summary["test"][task][metric])
        assert m[f"final/val/{task}/{metric}"] == pytest.approx(summary["val"][task][metric])
    assert m["training_seconds"] > 0

    tags = mrun.data.tags
    data = json.loads((run / "data.json").read_text())
    assert len(tags["data.fingerprint"]) == 64
    assert tags["data.train.rows"] == str(data["train"]["rows"])
    assert tags["data.test.labelled.red"] == str(data["test"]["labelled"]["red"])
    assert tags["model.backbone"] == "small_cnn" and tags["training.weighting"] == "equal"
    assert tags["polyhead.version"]

    top = {a.path for a in client.list_artifacts(info["run_id"])}
    assert {"config.yaml", "data.json", "metrics.json", "history.csv", "model_summary.json", "model"} <= top
    assert "model/bundle.json" in {a.path for a in client.list_artifacts(info["run_id"], "model")}
    local = client.download_artifacts(info["run_id"], "config.yaml", str(dataset))
    assert open(local).read() == (run / "config.yaml").read_text()


def test_fingerprint_follows_the_data(dataset):
    _, info, client = train(dataset)
    first = client.get_run(info["run_id"]).data.tags["data.fingerprint"]
    _, info2, _ = train(dataset, name="r2")  # same data: same fingerprint
    assert client.get_run(info2["run_id"]).data.tags["data.fingerprint"] == first
    df = pd.read_csv(dataset / "labels.csv")
    df.loc[0, "quadrant"] = "br"
    df.to_csv(dataset / "labels.csv", index=False)
    _, info3, _ = train(dataset, name="r3")
    assert client.get_run(info3["run_id"]).data.tags["data.fingerprint"] != first


def test_evaluate_logs_into_the_training_run(dataset):
    run, info, client = train(dataset, "training.epochs=1")
    df = pd.read_csv(dataset / "labels.csv").head(40)
    df.to_csv(dataset / "holdout.csv", index=False)
    (run / "evaluations" / "holdout").mkdir(parents=True)
    (run / "evaluations" / "holdout" / "note.txt").write_text("kept beside the plots")
    assert main(["evaluate", str(run), "--table", str(dataset / "holdout.csv"), "--device", "cpu"]) == 0
    result = json.loads((run / "evaluations" / "holdout.json").read_text())["metrics"]
    mrun = client.get_run(info["run_id"])
    assert mrun.info.status == "FINISHED"  # unchanged
    assert mrun.data.metrics["eval/holdout/quadrant/accuracy"] == pytest.approx(result["quadrant"]["accuracy"])
    files = {a.path for a in client.list_artifacts(info["run_id"], "evaluations/holdout")}
    assert files == {"evaluations/holdout/holdout.json", "evaluations/holdout/note.txt", "evaluations/holdout/plots"}
    plots = {a.path for a in client.list_artifacts(info["run_id"], "evaluations/holdout/plots")}
    assert "evaluations/holdout/plots/quadrant_confusion.png" in plots, plots


def test_resume_continues_the_same_run(dataset):
    run, info, client = train(dataset)
    assert main(["train", "--resume", str(run), "training.epochs=3"]) == 0
    again = json.loads((run / "tracking.json").read_text())["mlflow"]
    assert again["run_id"] == info["run_id"]
    assert len(client.search_runs([info["experiment_id"]])) == 1
    for task in TASK_METRIC:
        points = client.get_metric_history(info["run_id"], f"train/{task}/loss")
        assert [p.step for p in points] == [1, 2, 3]
    mrun = client.get_run(info["run_id"])
    assert mrun.info.status == "FINISHED"
    assert mrun.data.params["training.epochs"] == "2" and mrun.data.tags["resumed.training.epochs"] == "3"
    events = list((run / "tensorboard").iterdir())
    assert len(events) == 2  # one event file per session, one folder


def test_tracking_off_creates_nothing(dataset):
    runs = dataset / "runs"
    assert main(["train", str(dataset / "config.yaml"), f"output_dir={runs}", "run_name=r", "training.epochs=1",
                 "tracking.enabled=false"]) == 0
    assert not (runs / "mlflow.db").exists() and not (runs / "mlartifacts").exists()
    assert not (runs / "r" / "tensorboard").exists() and not (runs / "r" / "tracking.json").exists()
    assert not (runs / "r" / "tracking").exists()
    assert (runs / "r" / "history.csv").exists()


def test_failed_run_is_marked_failed(dataset, monkeypatch):
    import polyhead.engine.fit as fit_module

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(fit_module, "save_bundle", broken)
    cfg = load_config(dataset / "config.yaml", [f"output_dir={dataset / 'runs'}", "run_name=r", "training.epochs=1",
                                                "tracking.trackers=[mlflow,csv]"])
    with pytest.raises(RuntimeError, match="disk full"):
        fit(cfg)
    run = dataset / "runs" / "r"
    info = json.loads((run / "tracking.json").read_text())["mlflow"]
    assert MlflowClient(tracking_uri=info["uri"]).get_run(info["run_id"]).info.status == "FAILED"
    assert json.loads((run / "tracking" / "status.json").read_text())["status"] == "FAILED"


def test_unknown_tracker_is_a_config_error(dataset, capsys):
    assert main(["train", str(dataset / "config.yaml"), "tracking.trackers=[mlflow,wandb]"]) == 2
    err = capsys.readouterr().err.strip()
    assert "tracking.trackers[1]" in err and "wandb" in err and "tensorboard" in err and len(err.splitlines()) == 1


def test_own_store_experiment_and_no_model_upload(dataset):
    store = dataset / "elsewhere" / "store.db"
    run, info, client = train(dataset, "training.epochs=1", f"tracking.mlflow.uri=sqlite:///{store}",
                              "tracking.experiment=ablation", "tracking.mlflow.log_model=false",
                              "tracking.trackers=[mlflow]")
    assert store.is_file() and not (dataset / "runs" / "mlflow.db").exists()
    assert not (run / "tensorboard").exists() and not (run / "tracking").exists()
    exp = client.get_experiment_by_name("ablation")
    assert exp.artifact_location == (dataset / "elsewhere" / "mlartifacts").resolve().as_uri()
    top = {a.path for a in client.list_artifacts(info["run_id"])}
    assert "config.yaml" in top and "model" not in top
