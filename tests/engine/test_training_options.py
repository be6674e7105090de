"""Training options end to end: image-folder tables, optimisers, schedules, early stopping,
static weighting, mixed precision on the CPU, head MLPs, split columns."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from polyhead.cli.main import main


def test_image_folder_trains_evaluates_and_predicts(tmp_path):
    from conftest import QUADRANTS, make_image

    rng = np.random.default_rng(0)
    for split, n in (("train", 80), ("test", 20)):
        for i in range(n):
            q = QUADRANTS[i % 4]
            (tmp_path / split / q).mkdir(parents=True, exist_ok=True)
            make_image(q, bool(i % 2), rng).save(tmp_path / split / q / f"{i}.png")
    (tmp_path / "c.yaml").write_text("""
tasks: {where: {type: multiclass}}
data: {train_table: train, test_table: test, folder_task: where, image_size: [16, 16], batch_size: 16,
       num_workers: 0}
model: {small_cnn: {blocks: 2, channels: [8, 16]}}
optimizer: {lr: 0.01}
training: {epochs: 6, progress_bar: false}
""")
    assert main(["train", str(tmp_path / "c.yaml"), f"output_dir={tmp_path}/runs", "run_name=f"]) == 0
    metrics = json.loads((tmp_path / "runs" / "f" / "metrics.json").read_text())
    assert metrics["test"]["where"]["accuracy"] > 0.7
    assert main(["evaluate", str(tmp_path / "runs" / "f"), "--table", str(tmp_path / "test"),
                 "--out", str(tmp_path / "e.json"), "--num-workers", "0"]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["metrics"]["where"]["n"] == 20
    assert main(["predict", str(tmp_path / "runs" / "f"), "--images", str(tmp_path / "test"),
                 "--out", str(tmp_path / "p.csv"), "--num-workers", "0"]) == 0
    pred = pd.read_csv(tmp_path / "p.csv")
    truth = pred["image"].str.split("/").str[-2]
    assert (pred["where"] == truth).mean() > 0.7


def test_sgd_plateau_early_stopping_static_weights_bf16_mlp_heads(dataset):
    df = pd.read_csv(dataset / "labels.csv")
    df["split"] = ["val" if i % 5 == 0 else "train" for i in range(len(df))]
    df.to_csv(dataset / "labels.csv", index=False)
    argv = ["train", str(dataset / "config.yaml"), f"output_dir={dataset / 'runs'}", "run_name=o",
            "optimizer=sgd", "optimizer.lr=0.05", "scheduler=plateau", "training.epochs=30",
            "training.early_stopping.enabled=true", "training.early_stopping.patience=2",
            "training.early_stopping.min_delta=100",  # an improvement that never comes: stops after 3 epochs
            "training.weighting=static", "tasks.quadrant.weight=3", "training.precision=bf16-mixed",
            "model.head.hidden=[16]", "model.head.dropout=0.1", "data.split_column=split",
            "training.gradient_clip=1.0"]
    assert main(argv) == 0
    run = dataset / "runs" / "o"
    history = pd.read_csv(run / "history.csv")
    assert len(history) == 3  # early stopping after patience 2
    assert (history["weights/quadrant"] == 3.0).all() and (history["weights/red"] == 1.0).all()
    data = json.loads((run / "data.json").read_text())
    assert data["val"]["rows"] == 32 and data["train"]["rows"] == 128
    bundle = json.loads((run / "model" / "bundle.json").read_text())
    assert bundle["head"] == {"hidden": [16], "dropout": 0.1}
    assert "test" not in json.loads((run / "metrics.json").read_text())


def test_same_seed_same_run(dataset):
    from polyhead.config.loading import load_config
    from polyhead.engine.fit import fit

    histories = []
    for name in ("a", "b"):
        cfg = load_config(dataset / "config.yaml", ["training.epochs=2", f"output_dir={dataset / 'runs'}",
                                                    f"run_name={name}", "data.augment.hflip=true"])
        fit(cfg)
        histories.append(pd.read_csv(dataset / "runs" / name / "history.csv"))
    pd.testing.assert_frame_equal(histories[0], histories[1])
    other = load_config(dataset / "config.yaml", ["training.epochs=2", f"output_dir={dataset / 'runs'}",
                                                  "run_name=c", "training.seed=1"])
    fit(other)
    assert not histories[0]["train/loss"].equals(pd.read_csv(dataset / "runs" / "c" / "history.csv")["train/loss"])
