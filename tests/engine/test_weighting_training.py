"""Every weighting method trains the generated dataset end to end through the CLI."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from polyhead.cli.main import main

METHODS = ["uncertainty", "dwa", "rlw", "famo", "gradnorm", "mgda", "pcgrad", "cagrad", "nash_mtl", "imtl", "upgrad"]


@pytest.mark.parametrize("name", METHODS)
def test_method_trains(dataset, name):
    rc = main(["train", str(dataset / "config.yaml"), f"output_dir={dataset / 'runs'}", "run_name=m",
               f"training.weighting={name}", "training.epochs=6"])
    assert rc == 0
    run = dataset / "runs" / "m"
    val = json.loads((run / "metrics.json").read_text())["val"]
    assert val["quadrant"]["accuracy"] > 0.6, val["quadrant"]  # chance is 0.25
    history = pd.read_csv(run / "history.csv")
    for task in ("quadrant", "red", "tags"):
        assert f"weights/{task}" in history.columns
        assert history[f"weights/{task}"].notna().all()
