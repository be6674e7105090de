"""`polyhead tune`: trials sample within tune.space, each trains with its values, a pruned trial ends
cleanly, the best config is written and loads, a second invocation continues the same study, and a
bad space is one line before any trial."""

from __future__ import annotations

import json

import optuna
import pandas as pd
import pytest
import yaml
from conftest import make_dataset, write_config

from polyhead.cli.main import main
from polyhead.config.loading import load_config

SPACE = """
tune:
  space:
    optimizer.lr: {type: float, low: 0.001, high: 0.01, log: true}
    training.weighting: {type: categorical, choices: [equal, famo]}
    data.batch_size: {type: int, low: 8, high: 16, step: 8}
    model.head.dropout: {type: float, low: 0.0, high: 0.5}
"""
FAST = ["training.epochs=2", "report.enabled=false", "data.validate=off", "tracking.trackers=[csv]"]


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    make_dataset(tmp_path, n=40).to_csv(tmp_path / "labels.csv", index=False)
    write_config(tmp_path / "config.yaml", "labels.csv", epochs=2, extra=SPACE)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_study_trials_best_config_pruning_and_resume(tiny, capsys, monkeypatch):
    # trial 1 is pruned after its first epoch, whatever the median says
    monkeypatch.setattr(optuna.trial.Trial, "should_prune", lambda self: self.number == 1)
    assert main(["tune", "config.yaml", "--trials", "3", *FAST]) == 0, capsys.readouterr().err
    study = optuna.load_study(study_name="config", storage=f"sqlite:///{tiny / 'runs' / 'tune.db'}")
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "PRUNED", "COMPLETE"]
    for trial in study.trials:
        run = tiny / "runs" / "config" / f"trial-{trial.number:04d}"
        saved = yaml.safe_load((run / "config.yaml").read_text())
        lr, method = saved["optimizer"]["lr"], saved["training"]["weighting"]
        batch, dropout = saved["data"]["batch_size"], saved["model"]["head"]["dropout"]
        assert 0.001 <= lr <= 0.01 and method in ("equal", "famo") and batch in (8, 16) and 0 <= dropout <= 0.5
        assert (lr, method, batch, dropout) == (trial.params["optimizer.lr"], trial.params["training.weighting"],
                                                trial.params["data.batch_size"], trial.params["model.head.dropout"])
        epochs = len(pd.read_csv(run / "history.csv"))
        assert epochs == (1 if trial.number == 1 else 2)  # the pruned trial stopped after epoch 1...
        assert json.loads((run / "tracking" / "status.json").read_text())["status"] == "FINISHED"  # ...cleanly
        assert (run / "model").is_dir()
    best = load_config(tiny / "runs" / "config" / "best_config.yaml")
    want = study.best_trial.params
    assert (best.optimizer.lr, best.training.weighting, best.data.batch_size, best.model.head.dropout) == (
        want["optimizer.lr"], want["training.weighting"], want["data.batch_size"], want["model.head.dropout"])
    assert best.training.epochs == 2 and best.output_dir == "runs"  # the config as given, plus the best values
    assert len(pd.read_csv(tiny / "runs" / "config" / "trials.csv")) == 3
    out = capsys.readouterr().out
    assert "trial 1 pruned at epoch 1" in out and f"best trial {study.best_trial.number}" in out

    assert main(["tune", "config.yaml", "--trials", "4", *FAST]) == 0  # the same study goes on: one more trial
    study = optuna.load_study(study_name="config", storage=f"sqlite:///{tiny / 'runs' / 'tune.db'}")
    assert [t.number for t in study.trials] == [0, 1, 2, 3] and study.trials[3].state.name == "COMPLETE"
    assert "3 trial(s) finished, 1 to run" in capsys.readouterr().out


@pytest.mark.parametrize("space, expected", [
    ("optimizer.lrr: {type: float, low: 0.001, high: 0.01}", "unknown config key 'optimizer.lrr' (tune.space); "
                                                             "did you mean 'optimizer.lr'?"),
    ("optimizer.lr: {type: float, low: 0.01, high: 0.001}", "bad value for config key 'tune.space.optimizer.lr.high'"),
    ("optimizer.lr: {type: float, low: 0, high: 0.01, log: true}", "'tune.space.optimizer.lr.low': 0.0; expected "
                                                                   "a number > 0 with log: true"),
    ("optimizer.lr: {type: uniform, low: 0, high: 1}", "bad value for config key 'tune.space.optimizer.lr.type'"),
    ("training.weighting: {type: categorical}", "'tune.space.training.weighting.choices': None; expected a non-empty"),
    ("training.weighting: {type: categorical, choices: [equal, fame]}",
     "tune.space.training.weighting: the value 'fame' is refused: bad value for config key 'training.weighting'"),
    ("training: {type: float, low: 0, high: 1}", "tune.space.training: 'training' is a section, not a value"),
    ("data.batch_size: {type: int, low: 8.5, high: 16}", "'tune.space.data.batch_size.low': 8.5; expected an integer"),
])
def test_bad_space_is_one_line_before_any_trial(tmp_path, capsys, monkeypatch, space, expected):
    make_dataset(tmp_path, n=8).to_csv(tmp_path / "labels.csv", index=False)
    write_config(tmp_path / "config.yaml", "labels.csv", extra=f"tune:\n  space:\n    {space}\n")
    monkeypatch.chdir(tmp_path)
    assert main(["tune", "config.yaml", "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()


def test_empty_space_and_bad_metric(tiny, capsys):
    assert main(["tune", "config.yaml", "~tune.space"]) == 2
    assert "tune.space is empty" in capsys.readouterr().err
    assert main(["tune", "config.yaml", "tune.metric=val/quadrant/acuracy"]) == 2
    assert "bad value for config key 'tune.metric': 'val/quadrant/acuracy'" in capsys.readouterr().err


@pytest.mark.parametrize("override, expected", [
    ("training.devices=2", "polyhead tune trains each trial in one process"),
    ("training.devices=[0,1]", "polyhead tune trains each trial in one process"),
    ("data.folds=3", "polyhead tune does not cross-validate yet (data.folds=3)"),
])
def test_several_processes_or_folds_are_one_line(tiny, capsys, override, expected):
    assert main(["tune", "config.yaml", "--trials", "1", *FAST, override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tiny / "runs").exists() or not any((tiny / "runs").rglob("config.yaml"))  # nothing trained
