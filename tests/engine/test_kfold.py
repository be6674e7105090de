"""k-fold cross-validation (`data.folds`): fold membership, stratification, the held-out test split,
the summary's mean and std, MLflow parent and child runs, a failed fold, resume and the error lines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from polyhead.cli.main import main
from polyhead.config.loading import load_config
from polyhead.data.splits import build_splits
from polyhead.data.tables import fold_numbers
from polyhead.tasks import build_tasks

FAST = ["training.epochs=1", "report.enabled=false", "data.batch_size=8", "model.small_cnn.channels=[4,8]"]


def _dataset(root: Path, n: int = 48, with_split: bool = False) -> pd.DataFrame:
    from conftest import make_dataset, write_config

    df = make_dataset(root, n=n, with_split=with_split)
    df.to_csv(root / "labels.csv", index=False)
    write_config(root / "config.yaml", "labels.csv", epochs=1)
    return df


@pytest.fixture(scope="module")
def kfold_run(tmp_path_factory):
    """(root, table, parent folder): 3 folds of a 48-row table whose split column holds 10 test rows
    (every 5th), stratified on quadrant, tracked to MLflow, through the CLI."""
    root = tmp_path_factory.mktemp("kfold")
    df = _dataset(root, with_split=True)
    argv = ["train", str(root / "config.yaml"), *FAST, f"output_dir={root / 'runs'}", "run_name=cv",
            "data.folds=3", "data.split_column=split", "data.stratify=quadrant", "tracking.trackers=[mlflow]"]
    assert main(argv) == 0
    return root, df, root / "runs" / "cv"


def test_folds_cover_every_training_row_once_and_train_on_the_rest(kfold_run):
    root, df, parent = kfold_run
    folds = pd.read_csv(parent / "folds.csv")
    expected = sorted(i + 1 for i, s in enumerate(df["split"]) if s != "test")  # the table's train and val rows
    assert sorted(folds["row"]) == expected  # each exactly once: no duplicates, none missing
    assert len(expected) == 38
    assert (folds["image"] == [str((root / df["image"][r - 1]).resolve()) for r in folds["row"]]).all()
    for k in (1, 2, 3):
        run = parent / f"fold-{k}"
        members = set(folds.loc[folds["fold"] == k, "image"])
        data = json.loads((run / "data.json").read_text())
        assert data["val"]["rows"] == len(members) and data["train"]["rows"] == 38 - len(members)
        assert json.loads((run / "metrics.json").read_text())["val"]["quadrant"]["n"] == len(members)
        # the fold's own config.yaml rebuilds exactly these validation rows
        cfg = load_config(run / "config.yaml")
        assert cfg.data.folds == 3 and cfg.data.fold == k
        splits = build_splits(cfg.data, build_tasks(cfg.tasks), seed=cfg.training.seed)
        assert set(splits.val.paths) == members
        assert not set(splits.train.paths) & members and len(splits.train) == 38 - len(members)


def test_folds_are_stratified(kfold_run):
    _, df, parent = kfold_run
    folds = pd.read_csv(parent / "folds.csv")
    folds["quadrant"] = [df["quadrant"][r - 1] for r in folds["row"]]
    counts = folds.groupby(["quadrant", "fold"]).size().unstack(fill_value=0)
    assert counts.shape == (4, 3)
    assert ((counts.max(axis=1) - counts.min(axis=1)) <= 1).all(), counts
    sizes = folds["fold"].value_counts()
    assert sizes.max() - sizes.min() <= 1


def test_the_test_split_is_the_same_held_out_set_for_every_fold(kfold_run):
    root, df, parent = kfold_run
    expected = {str((root / p).resolve()) for p, s in zip(df["image"], df["split"]) if s == "test"}
    for k in (1, 2, 3):
        cfg = load_config(parent / f"fold-{k}" / "config.yaml")
        splits = build_splits(cfg.data, build_tasks(cfg.tasks), seed=cfg.training.seed)
        assert set(splits.test.paths) == expected
        assert json.loads((parent / f"fold-{k}" / "metrics.json").read_text())["test"]["quadrant"]["n"] == 10


def test_summary_is_numpy_mean_and_std_of_the_folds_metrics(kfold_run):
    _, _, parent = kfold_run
    record = json.loads((parent / "kfold.json").read_text())
    assert record["finished"] == [1, 2, 3] and record["failed"] == []
    per_fold = [json.loads((parent / f"fold-{k}" / "metrics.json").read_text()) for k in (1, 2, 3)]
    checked = 0
    for split in ("val", "test"):
        for task, values in per_fold[0][split].items():
            for metric, value in values.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                got = record["summary"][f"{split}/{task}/{metric}"]
                xs = np.array([m[split][task][metric] for m in per_fold], dtype=float)
                assert got["mean"] == pytest.approx(np.mean(xs)) and got["std"] == pytest.approx(np.std(xs))
                assert got["folds"] == 3
                checked += 1
    assert checked == len(record["summary"]) and checked > 20
    table = pd.read_csv(parent / "kfold.csv").set_index("fold")
    assert list(table.index) == ["1", "2", "3", "mean", "std"]
    key = "val/quadrant/accuracy"
    assert table.loc["mean", key] == pytest.approx(record["summary"][key]["mean"])
    assert table.loc["std", key] == pytest.approx(record["summary"][key]["std"])
    assert table.loc["2", key] == pytest.approx(per_fold[1]["val"]["quadrant"]["accuracy"])


def test_mlflow_parent_run_holds_the_summary_and_the_folds_as_children(kfold_run):
    from mlflow import MlflowClient

    root, _, parent = kfold_run
    parent_id = json.loads((parent / "tracking.json").read_text())["mlflow"]["run_id"]
    client = MlflowClient(f"sqlite:///{root / 'runs' / 'mlflow.db'}")
    run = client.get_run(parent_id)
    record = json.loads((parent / "kfold.json").read_text())
    assert run.info.status == "FINISHED"
    assert run.data.metrics["mean/val/quadrant/accuracy"] == pytest.approx(
        record["summary"]["val/quadrant/accuracy"]["mean"])
    assert "std/test/red/f1" in run.data.metrics
    for k in (1, 2, 3):
        child_id = json.loads((parent / f"fold-{k}" / "tracking.json").read_text())["mlflow"]["run_id"]
        child = client.get_run(child_id)
        assert child.data.tags["mlflow.parentRunId"] == parent_id and child.info.run_name == f"fold-{k}"


def test_random_test_split_is_held_out_from_every_fold(tmp_path):
    """No training: with test_fraction the test rows are the same for each fold, the val folds are
    disjoint and together are every other row."""
    _dataset(tmp_path)
    cfg = load_config(tmp_path / "config.yaml", ["data.folds=3", "data.test_fraction=0.25", "data.stratify=quadrant"])
    tests, vals = [], []
    for k in (1, 2, 3):
        cfg.data.fold = k
        splits = build_splits(cfg.data, build_tasks(cfg.tasks), seed=0)
        tests.append(sorted(splits.test.rows))
        vals.append(set(splits.val.rows))
        assert not set(splits.train.rows) & vals[-1] and not set(splits.train.rows) & set(tests[-1])
    assert tests[0] == tests[1] == tests[2] and len(tests[0]) == 12
    assert sum(map(len, vals)) == 36 and set().union(*vals) == set(range(1, 49)) - set(tests[0])


def test_fold_numbers_deal_evenly_and_reproducibly():
    strata = ["a"] * 7 + ["b"] * 5 + ["c"] * 2
    folds = fold_numbers(14, 3, seed=5, strata=strata)
    assert (folds == fold_numbers(14, 3, seed=5, strata=strata)).all()
    for s in "abc":
        counts = np.bincount(folds[np.asarray(strata) == s], minlength=4)[1:]
        assert counts.max() - counts.min() <= 1
    sizes = np.bincount(folds, minlength=4)[1:]
    assert sorted(sizes) == [4, 5, 5]


@pytest.mark.parametrize("overrides, expected", [
    (["data.folds=1"], "bad value for config key 'data.folds': 1; expected null (no cross-validation) or an "
                       "integer >= 2"),
    (["data.folds=2.5"], "bad value for config key 'data.folds': 2.5; expected null (no cross-validation) or an "
                         "integer"),
    (["data.folds=abc"], "bad value for config key 'data.folds': 'abc'; expected null"),
    (["data.folds=13", "data.stratify=quadrant"],
     "bad value for config key 'data.folds': 13; expected at most 12 with data.stratify=quadrant: each fold needs a "
     "row of every class, and class 'bl' has 12 rows in"),
    (["data.folds=49", "data.val_fraction=0"],
     "bad value for config key 'data.folds': 49; expected at most 48: each fold needs a validation row, and"),
    (["data.folds=3", "data.val_table=labels.csv"], "config key 'data.val_table' is set with data.folds"),
    (["data.fold=2"], "config key 'data.fold' is set (2) but data.folds is not"),
])
def test_bad_folds_are_one_line_before_any_training(tmp_path, capsys, overrides, expected):
    _dataset(tmp_path)
    assert main(["train", str(tmp_path / "config.yaml"), *FAST, f"output_dir={tmp_path / 'runs'}", *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"polyhead train: error: {expected}") and "\n" not in err, err
    assert not (tmp_path / "runs").exists()  # nothing trained, no folder


def test_a_failed_fold_keeps_the_others_and_resume_trains_it(tmp_path, crash_at, capsys):
    """polyhead.fit returns the folds that finished; `train --resume PARENT` keeps them and retrains the failed one."""
    import polyhead

    _dataset(tmp_path)
    cfg = load_config(tmp_path / "config.yaml", [*FAST, f"output_dir={tmp_path / 'runs'}", "run_name=cv",
                                                 "data.folds=3", "tracking.enabled=false"])
    crash_at(0, 0)  # the first fold's first step
    result = polyhead.fit(cfg)
    parent = tmp_path / "runs" / "cv"
    assert result.run_dir == parent and result.failed == [1]
    assert [r.status for r in result.folds] == ["failed", "finished", "finished"]
    assert "RuntimeError: simulated crash" in result.folds[0].error
    record = json.loads((parent / "kfold.json").read_text())
    assert record["failed"] == [1] and record["finished"] == [2, 3]
    for k in (2, 3):
        assert (parent / f"fold-{k}" / "model" / "bundle.json").is_file()
    acc = [json.loads((parent / f"fold-{k}" / "metrics.json").read_text())["val"]["quadrant"]["accuracy"]
           for k in (2, 3)]
    assert record["summary"]["val/quadrant/accuracy"] == {"mean": pytest.approx(np.mean(acc)),
                                                          "std": pytest.approx(np.std(acc)), "folds": 2}
    assert result.metrics["val"]["quadrant"]["accuracy"] == pytest.approx(np.mean(acc))

    fold2 = (parent / "fold-2" / "metrics.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["train", "--resume", str(parent)]) == 0
    assert "fold 2: finished before" in capsys.readouterr().out
    record = json.loads((parent / "kfold.json").read_text())
    assert record["finished"] == [1, 2, 3] and record["summary"]["val/quadrant/accuracy"]["folds"] == 3
    assert (parent / "fold-2" / "metrics.json").stat().st_mtime_ns == fold2  # kept, not retrained
    assert Path(record["runs"][0]["run_dir"]).name == "fold-1-2"  # the failed fold trained again beside it


def test_a_failed_fold_makes_the_cli_exit_2_with_one_line(tmp_path, crash_at, capsys):
    _dataset(tmp_path)
    crash_at(0, 0)
    argv = ["train", str(tmp_path / "config.yaml"), *FAST, f"output_dir={tmp_path / 'runs'}", "run_name=cv",
            "data.folds=2", "tracking.enabled=false"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("polyhead train: error: k-fold: fold 1 of 2 did not finish (fold 1: RuntimeError: "
                          "simulated crash); the finished folds (2) are summarised in"), err


def test_each_source_is_cut_into_folds_of_its_own(tmp_path):
    """No training: with a per-task table, every source's train and val rows are dealt into folds on
    their own (stratified only where the source labels data.stratify); test rows stay out of all."""
    from conftest import make_dataset

    from polyhead.data.splits import fold_frame, fold_pools

    _dataset(tmp_path, n=24)
    red = make_dataset(tmp_path / "red", n=18, seed=3)
    red[["image", "red"]].to_csv(tmp_path / "red" / "red.csv", index=False)
    cfg = load_config(tmp_path / "config.yaml", ["data.folds=3", "data.stratify=quadrant", "data.test_fraction=0.25",
                                                 f"tasks.red.table={tmp_path / 'red' / 'red.csv'}"])
    folds = fold_frame(fold_pools(cfg.data, build_tasks(cfg.tasks), seed=0))
    main_csv, red_csv = str(tmp_path / "labels.csv"), str(tmp_path / "red" / "red.csv")
    # test rows: 2 of each quadrant's 6 (stratified), 4 of red.csv's 18
    assert folds.groupby("table").size().to_dict() == {main_csv: 16, red_csv: 14}
    assert folds.groupby(["table", "fold"]).size().tolist() == [6, 5, 5, 5, 5, 4]
    for k in (1, 2, 3):
        cfg.data.fold = k
        splits = build_splits(cfg.data, build_tasks(cfg.tasks), seed=0)
        val = {(splits.val.source_names[s].rsplit(" [", 1)[0], int(r))
               for s, r in zip(splits.val.sources, splits.val.rows)}
        assert val == set(map(tuple, folds.loc[folds["fold"] == k, ["table", "row"]].to_numpy().tolist()))
        assert splits.test.rows_per_source() == {f"{main_csv} [test]": 8, f"{red_csv} [test]": 4}


def test_ctrl_c_leaves_the_finished_folds_summarised(tmp_path, monkeypatch):
    from polyhead.engine import kfold
    from polyhead.engine.fit import fit

    _dataset(tmp_path)
    cfg = load_config(tmp_path / "config.yaml", [*FAST, f"output_dir={tmp_path / 'runs'}", "run_name=cv",
                                                 "data.folds=2", "tracking.enabled=false"])

    def fit_then_stop(sub, **kwargs):
        if sub.data.fold == 2:
            raise KeyboardInterrupt
        return fit(sub, **kwargs)

    monkeypatch.setattr("polyhead.engine.fit.fit", fit_then_stop)
    with pytest.raises(KeyboardInterrupt):
        kfold.fit_folds(cfg)
    record = json.loads((tmp_path / "runs" / "cv" / "kfold.json").read_text())
    assert [r["status"] for r in record["runs"]] == ["finished", "interrupted"]
    assert record["summary"]["val/quadrant/accuracy"]["folds"] == 1
