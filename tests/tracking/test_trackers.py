"""TensorBoard and CSV output of a tiny training run; ClearML offline sessions; the registry."""

from __future__ import annotations

import json
import zipfile

import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from polyhead.cli.main import main
from polyhead.errors import PolyheadError
from polyhead.tracking import TRACKERS, Tracker, build_trackers, register_tracker
from polyhead.engine.tracked_run import dataset_fingerprint, flatten


def test_tensorboard_and_csv_hold_every_task(dataset):
    runs = dataset / "runs"
    assert main(["train", str(dataset / "config.yaml"), f"output_dir={runs}", "run_name=r", "training.epochs=2",
                 "tracking.trackers=[tensorboard,csv]"]) == 0
    run = runs / "r"
    assert not (runs / "mlflow.db").exists()
    history = pd.read_csv(run / "history.csv")

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    for task in ("quadrant", "red", "tags"):
        for key in (f"train/{task}/loss", f"val/{task}/loss"):
            events = acc.Scalars(key)
            assert [e.step for e in events] == history["epoch"].tolist() == [1, 2]
            assert [e.value for e in events] == pytest.approx(history[key].tolist(), rel=1e-5)
    assert "final/val/quadrant/accuracy" in scalars and "training_seconds" in scalars

    long = pd.read_csv(run / "tracking" / "metrics.csv")
    assert list(long.columns) == ["step", "name", "value"]
    epoch_rows = long[long["name"] == "val/tags/micro_f1"]
    assert epoch_rows["step"].tolist() == [1, 2]
    assert epoch_rows["value"].tolist() == pytest.approx(history["val/tags/micro_f1"].tolist())
    params = json.loads((run / "tracking" / "params.json").read_text())
    assert params["training.epochs"] == "2" and params["tasks.red.positive"] == "yes"
    tags = json.loads((run / "tracking" / "tags.json").read_text())
    assert tags["data.train.rows"] == str(len(pd.read_csv(dataset / "labels.csv")) - int(tags["data.val.rows"]))
    assert json.loads((run / "tracking" / "status.json").read_text()) == {"status": "FINISHED"}
    record = json.loads((run / "tracking.json").read_text())
    assert set(record) == {"tensorboard", "csv"}


def test_clearml_offline_session(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the offline session lives under ~/.clearml
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("a: 1\n")
    trackers = build_trackers(["clearml"], experiment="polyhead-test", output_dir=tmp_path,
                              options={"clearml": {"offline": True}})
    trackers.start(tmp_path / "run", "offline-run")
    trackers.log_params({"training.epochs": "2"})
    trackers.set_tags({"data.fingerprint": "abc"})
    trackers.log_metrics({"train/quadrant/loss": 1.5, "val/red/auroc": 0.75}, step=0)
    trackers.log_metrics({"train/quadrant/loss": 0.5}, step=1)
    trackers.log_artifact(tmp_path / "run" / "config.yaml")
    trackers.finish("FINISHED")  # must not wait on a reporter subprocess: benchmarks/tracker_close.py times it

    info = json.loads((tmp_path / "run" / "tracking.json").read_text())["clearml"]
    assert info["offline"] and info["task_id"].startswith("offline-")
    assert info["offline_folder"].startswith(str(tmp_path / "home" / ".clearml"))
    with zipfile.ZipFile(info["offline_zip"]) as zf:
        names = zf.namelist()
        events = [json.loads(line) for line in zf.read("metrics.jsonl").decode().splitlines()]
        task = json.loads(zf.read("task.json"))
    assert any(n.endswith("artifacts/config.yaml/config.yaml") for n in names)
    flat = [e for batch in events for e in (batch if isinstance(batch, list) else [batch])]
    losses = sorted((e["iter"], e["value"]) for e in flat if e.get("metric") == "train/quadrant" and e.get("variant") == "loss")
    assert losses == [(0, 1.5), (1, 0.5)]
    assert task["hyperparams"]["config"]["training.epochs"]["value"] == "2"
    assert task["name"] == "offline-run"


def test_registry_and_errors(tmp_path, monkeypatch):
    assert {"mlflow", "tensorboard", "csv", "clearml"} <= set(TRACKERS)
    with pytest.raises(PolyheadError, match=r"bad value for config key 'tracking.trackers\[0\]': 'nope'; expected one of clearml, csv"):
        build_trackers(["nope"], experiment="x", output_dir=tmp_path)

    @register_tracker("memory")
    class Memory(Tracker):
        def __init__(self, *, experiment, output_dir, seen=None, **_):
            self.seen = seen

        def start(self, run_dir, run_name, resume_info):
            self.seen.append(("start", run_name, resume_info))
            return {"n": len(self.seen)}

        def log_metrics(self, values, step):
            self.seen.append((step, values))

    try:
        seen = []
        trackers = build_trackers(["memory"], experiment="x", output_dir=tmp_path, options={"memory": {"seen": seen}})
        trackers.start(tmp_path, "a")
        trackers.log_metrics({"m": 1.0}, step=3)
        trackers.start(tmp_path, "a")  # reopening passes what the first start returned
        assert seen == [("start", "a", None), (3, {"m": 1.0}), ("start", "a", {"n": 1})]
    finally:
        del TRACKERS["memory"]

    import builtins

    real_import = builtins.__import__

    def no_clearml(name, *args, **kwargs):
        if name == "clearml" or name.startswith("clearml."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_clearml)
    trackers = build_trackers(["clearml"], experiment="x", output_dir=tmp_path)
    with pytest.raises(PolyheadError, match="pip install clearml"):
        trackers.start(tmp_path, "a")


def test_flatten_and_fingerprint(tmp_path):
    assert flatten({"a": {"b": 1, "c": [1, "x"], "d": None, "e": {}}, "f": True}) == \
        {"a.b": "1", "a.c": '[1, "x"]', "a.d": "null", "a.e": "{}", "f": "True"}
    table = tmp_path / "t.csv"
    table.write_text("image\na.png\n")
    one = dataset_fingerprint([table], ["/x/b.png", "/x/a.png"])
    assert one == dataset_fingerprint([table], ["/x/a.png", "/x/b.png"])  # order of rows does not matter
    assert one != dataset_fingerprint([table], ["/x/a.png"])
    table.write_text("image\nb.png\n")
    assert one != dataset_fingerprint([table], ["/x/b.png", "/x/a.png"])


def test_interrupted_run_is_killed_and_tracker_errors_do_not_hide_it(tmp_path):
    from polyhead.engine.tracked_run import tracked_run

    trackers = build_trackers(["csv"], experiment="x", output_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        with tracked_run(trackers):
            trackers.start(tmp_path, "a")
            raise KeyboardInterrupt
    assert json.loads((tmp_path / "tracking" / "status.json").read_text()) == {"status": "KILLED"}

    trackers = build_trackers(["csv"], experiment="x", output_dir=tmp_path)
    with pytest.raises(ValueError, match="bad batch"):
        with tracked_run(trackers):
            trackers.start(tmp_path, "a")
            trackers.trackers[0].folder = tmp_path / "gone" / "deeper"  # its finish will fail
            raise ValueError("bad batch")


def test_evaluation_with_a_missing_store_only_warns(tmp_path, capsys):
    from rich.console import Console

    from polyhead.engine.tracked_run import log_evaluation

    store = f"sqlite:///{tmp_path / 'no-such-folder' / 'mlflow.db'}"  # moved away since training
    (tmp_path / "tracking.json").write_text(json.dumps({"mlflow": {"uri": store, "run_id": "abc"}}))
    (tmp_path / "e.json").write_text("{}")
    assert log_evaluation(tmp_path, "t.csv", {"q": {"accuracy": 0.5}}, tmp_path / "e.json", Console()) is None
    assert "not logged to MLflow run abc" in capsys.readouterr().out
    assert log_evaluation(tmp_path / "absent", "t.csv", {}, tmp_path / "e.json", Console()) is None  # no tracking.json
