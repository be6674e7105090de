"""`polyhead compare`: multi-task vs one single-task model per task, same budget, one folder."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from polyhead.cli.main import main
from polyhead.config.loading import load_config
from polyhead.engine.compare import compare, single_task_config
from polyhead.errors import PolyheadError

TASKS = ("quadrant", "red", "tags")


@pytest.fixture
def compared(dataset):
    argv = ["compare", "--inference-iters", "3", str(dataset / "config.yaml"), f"output_dir={dataset / 'cmp'}",
            "training.epochs=3", "data.test_fraction=0.2", "data.stratify=quadrant",
            "training.monitor=val/quadrant/accuracy"]
    assert main(argv) == 0
    folders = list((dataset / "cmp").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("config-compare-")
    return folders[0]


def test_compare_writes_every_run_and_the_comparison(compared):
    for run in ("multitask", *(f"single-{t}" for t in TASKS)):
        assert (compared / run / "model" / "bundle.json").is_file(), run
    report = json.loads((compared / "comparison.json").read_text())
    assert report["split"] == "test" and set(report["tasks"]) == set(TASKS)
    expected = {"quadrant": {"accuracy"}, "red": {"f1", "accuracy"}, "tags": {"micro_f1"}}
    for name, info in report["tasks"].items():
        assert set(info["metrics"]) == expected[name]
        for values in info["metrics"].values():
            assert isinstance(values["multitask"], float) and isinstance(values["single_task"], float)
            assert values["delta"] == pytest.approx(values["multitask"] - values["single_task"])
        assert info["training_seconds"]["multitask"] > 0 and info["training_seconds"]["single_task"] > 0
    inf = report["inference"]
    assert inf["multitask_images_per_s"] > 0 and inf["single_task_images_per_s"] > 0
    # the speed-up itself is timing, measured by benchmarks/compare_inference.py (docs/benchmarks.md)
    assert inf["ratio"] == pytest.approx(inf["multitask_images_per_s"] / inf["single_task_images_per_s"])
    assert report["training_seconds"]["single_task_total"] > 0
    md = (compared / "comparison.md").read_text()
    assert all(t in md for t in TASKS) and "inference images/s" in md


def test_single_task_runs_share_the_split_and_budget(compared):
    mtl_cfg = (compared / "multitask" / "config.yaml").read_text()
    assert "quadrant" in mtl_cfg and "tags" in mtl_cfg
    splits = {}
    for run in ("multitask", *(f"single-{t}" for t in TASKS)):
        data = json.loads((compared / run / "data.json").read_text())
        splits[run] = {k: v["rows"] for k, v in data.items()}
        assert len(pd.read_csv(compared / run / "history.csv")) == 3
    assert len({json.dumps(s, sort_keys=True) for s in splits.values()}) == 1, splits
    # the stratified split was materialised so that single-red/-tags see the same rows
    table = pd.read_parquet(compared / "split.parquet")
    assert sorted(table["_polyhead_compare_split"].unique()) == ["test", "train", "val"]


def test_single_task_config_rewrites_what_names_other_tasks(dataset):
    cfg = load_config(dataset / "config.yaml", ["training.monitor=val/quadrant/accuracy", "data.stratify=quadrant",
                                                "training.weighting=static", "tasks.red.weight=0.0"])
    red = single_task_config(cfg, "red")
    assert list(red.tasks) == ["red"] and red.training.monitor == "val/loss" and red.data.stratify is None
    assert red.training.weighting == "equal"
    quadrant = single_task_config(cfg, "quadrant")
    assert quadrant.training.monitor == "val/quadrant/accuracy" and quadrant.data.stratify == "quadrant"
    assert list(cfg.tasks) == list(TASKS)  # the original is untouched


def test_one_task_is_refused(dataset, capsys):
    cfg = load_config(dataset / "config.yaml", ["~tasks.red", "~tasks.tags"])
    with pytest.raises(PolyheadError, match="compare needs at least two tasks"):
        compare(cfg)
    assert main(["compare", str(dataset / "config.yaml"), "~tasks.red", "~tasks.tags",
                 f"output_dir={dataset / 'cmp'}"]) == 2
    err = capsys.readouterr().err
    assert "compare needs at least two tasks" in err and len(err.strip().splitlines()) == 1
    assert not (dataset / "cmp").exists()  # refused before any work


def test_compare_with_a_per_task_table_and_stratified_main_table(tmp_path):
    from conftest import make_dataset, write_config

    from polyhead.cli.main import main as cli

    make_dataset(tmp_path, n=80).drop(columns=["red"]).to_csv(tmp_path / "main.csv", index=False)
    make_dataset(tmp_path / "extra", n=60, seed=3)[["image", "red"]].to_csv(tmp_path / "extra" / "red.csv", index=False)
    write_config(tmp_path / "c.yaml", "main.csv", epochs=1)
    rc = cli(["compare", str(tmp_path / "c.yaml"), f"output_dir={tmp_path / 'cmp'}", "run_name=x",
              f"tasks.red.table={tmp_path / 'extra' / 'red.csv'}", "data.stratify=quadrant", "data.test_fraction=0.2",
              "--inference-iters", "2"])
    assert rc == 0
    report = json.loads((tmp_path / "cmp" / "x" / "comparison.json").read_text())
    assert set(report["tasks"]) == {"quadrant", "red", "tags"}
