"""examples/digits_parity at its tiny budget: data written, grids drawn, trained by `fit` and by the
hand-written loop, logged to MLflow."""

from __future__ import annotations

import json

import pandas as pd
from example_runner import run_example
from PIL import Image


def test_digits_parity_tiny(tmp_path):
    results = run_example("digits_parity", ["--tiny", "--out", str(tmp_path)])

    table = pd.read_csv(tmp_path / "data" / "labels.csv", dtype=str)
    assert len(table) == 150
    assert (table["parity"] == table["digit"].astype(int).map(lambda d: "odd" if d % 2 else "even")).all()
    with Image.open(tmp_path / "data" / table["image"][0]) as img:
        assert img.size == (8, 8) and img.mode == "L"

    for grid in ("samples.png", "samples_augmented.png"):
        with Image.open(tmp_path / "grids" / grid) as img:
            assert img.width > 300 and img.height > 200

    run_dir = tmp_path / "runs" / "fit"
    assert (run_dir / "model" / "bundle.json").is_file()
    test_rows = json.loads((run_dir / "data.json").read_text())["test"]["rows"]
    assert 15 <= test_rows <= 30  # test_fraction 0.15 of 150
    for how in ("fit", "manual_loop"):  # both trainings scored every test row, for both tasks
        assert set(results[how]) == {"digit", "parity"}
        assert all(m["n"] == test_rows and 0.0 <= m["accuracy"] <= 1.0 for m in results[how].values())
    manual = json.loads((tmp_path / "manual_loop.json").read_text())
    assert {"accuracy", "macro_f1"} <= set(manual["digit"])

    mlflow = results["mlflow"]
    assert mlflow["status"] == "FINISHED" and mlflow["uri"] == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    fit_metrics = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert abs(mlflow["metrics"]["final/test/digit/accuracy"] - fit_metrics["digit"]["accuracy"]) < 1e-6
