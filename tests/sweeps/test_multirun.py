"""`polyhead train -m`: every combination trains as its own run, the summary records each, a failing run
does not stop the others, and a bad override stops the sweep before anything trains."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest
import yaml
from conftest import make_dataset, write_config

from polyhead.cli.main import main
from polyhead.sweeps.expand import expand

FAST = ["training.epochs=1", "report.enabled=false", "data.validate=off"]


@pytest.fixture
def tiny(tmp_path):
    make_dataset(tmp_path, n=40).to_csv(tmp_path / "labels.csv", index=False)
    write_config(tmp_path / "config.yaml", "labels.csv", epochs=1)
    return tmp_path


def sweep_folder(tmp_path):
    [folder] = [p for p in (tmp_path / "runs").iterdir() if (p / "summary.csv").is_file()]
    return folder


def test_expand_is_the_cartesian_product_in_hydra_order():
    runs = expand(["a=1,2", "b=range(3,5)", "c=x", "d=choice(p,q)"])
    want = list(itertools.product(["1", "2"], ["3", "4"], ["p", "q"]))
    assert [(r.swept["a"], r.swept["b"], r.swept["d"]) for r in runs] == want
    assert all("c=x" in r.overrides for r in runs) and [r.index for r in runs] == list(range(8))
    assert runs[5].label == "5-a=2,b=3,d=q"


def test_grid_of_four_runs_each_with_its_combination(tiny, capsys, monkeypatch):
    monkeypatch.chdir(tiny)
    lrs, methods = ["0.01", "0.002"], ["equal", "famo"]
    rc = main(["train", "config.yaml", "-m", f"optimizer.lr={','.join(lrs)}", f"training.weighting={','.join(methods)}",
               "tracking.trackers=[mlflow]", *FAST])
    assert rc == 0, capsys.readouterr().err
    folder = sweep_folder(tiny)
    table = pd.read_csv(folder / "summary.csv")
    expected = list(itertools.product(lrs, methods))
    assert len(table) == 4 and list(table["status"]) == ["ok"] * 4
    for row, (lr, method) in zip(table.itertuples(), expected):
        saved = yaml.safe_load((tiny / row.run_dir / "config.yaml").read_text())
        assert saved["optimizer"]["lr"] == float(lr) and saved["training"]["weighting"] == method
        assert (tiny / row.run_dir).parent == folder and (tiny / row.run_dir / "metrics.json").is_file()
        assert row.run == f"{row.index}-optimizer.lr={lr},training.weighting={method}"
    assert list(table["optimizer.lr"]) == [float(lr) for lr, _ in expected]
    assert {"best val/loss", "val/quadrant/accuracy", "val/red/f1", "val/tags/micro_f1"} <= set(table.columns)
    out = capsys.readouterr().out
    assert "[4/4] ok" in out and "summary.csv" in out

    from mlflow import MlflowClient  # the sweep is a parent run, each run its child

    client = MlflowClient(tracking_uri=f"sqlite:///{tiny / 'runs' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("polyhead").experiment_id])
    [parent] = [r for r in runs if r.info.run_name == folder.name]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == sorted(table["run"])
    assert parent.info.status == "FINISHED" and parent.data.metrics["runs_ok"] == 4


def test_failing_run_is_recorded_and_the_others_finish_in_parallel(tiny, capsys, monkeypatch):
    monkeypatch.chdir(tiny)
    missing = tiny / "missing.pt"  # a backbone weights file that is not there: fails when the model is built
    rc = main(["train", "config.yaml", "-m", f"model.weights=null,{missing}", "tracking.enabled=false", *FAST,
               "--jobs", "2"])
    assert rc == 1
    table = pd.read_csv(sweep_folder(tiny) / "summary.csv")
    assert list(table["status"]) == ["ok", "failed"]
    assert "missing.pt" in table["error"][1] and pd.isna(table["error"][0])
    assert (tiny / table["run_dir"][0] / "model").is_dir()
    assert "[2/2]" in capsys.readouterr().out


@pytest.mark.parametrize("override, expected", [
    ("optimizer.lr=range(a)", "cannot parse override 'optimizer.lr=range(a)'"),
    ("optimizer.lr=interval(0.1,1)", "cannot sweep 'optimizer.lr=interval(0.1,1)': an interval"),
    ("optimizer.lrr=0.1,0.2", "sweep run 0 (optimizer.lr=0.01, optimizer.lrr=0.1): unknown config key 'optimizer.lrr'"),
    ("training.weighting=equal,fame",
     "sweep run 1 (optimizer.lr=0.01, training.weighting=fame): bad value for config key 'training.weighting': 'fame'"),
])
def test_bad_sweep_is_one_line_before_anything_trains(tiny, capsys, monkeypatch, override, expected):
    monkeypatch.chdir(tiny)
    rc = main(["train", "config.yaml", "-m", "optimizer.lr=0.01,0.02", override, *FAST])
    err = capsys.readouterr().err
    assert rc == 2 and expected in err and len(err.strip().splitlines()) == 1, err
    assert not (tiny / "runs").exists()


def test_jobs_needs_multirun(tiny, capsys, monkeypatch):
    monkeypatch.chdir(tiny)
    assert main(["train", "config.yaml", "--jobs", "2"]) == 2
    assert "--jobs 2 needs -m" in capsys.readouterr().err


def test_a_sweep_without_multirun_says_to_add_m(tiny, capsys, monkeypatch):
    monkeypatch.chdir(tiny)
    assert main(["train", "config.yaml", "optimizer.lr=0.01,0.02"]) == 2
    assert ("override 'optimizer.lr=0.01,0.02' is a sweep of several values: train each with `polyhead train "
            "CONFIG -m optimizer.lr=0.01,0.02`") in capsys.readouterr().err
    assert not (tiny / "runs").exists()
