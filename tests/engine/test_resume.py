"""`polyhead train --resume RUN_DIR` continues from the last checkpoint, weighting state included."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from polyhead.cli.main import main
from polyhead.weighting import WEIGHTINGS, build_weighting


@pytest.mark.parametrize("method", sorted(WEIGHTINGS))
def test_resume_continues_with_method_state(dataset, method):
    run = dataset / "runs" / "r"
    base = ["train", str(dataset / "config.yaml"), f"output_dir={dataset / 'runs'}", "run_name=r",
            f"training.weighting={method}", "training.epochs=2", "training.monitor=train/loss"]
    assert main(base) == 0
    first = pd.read_csv(run / "history.csv")
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    method_state = {k: v for k, v in state.items() if k.startswith("weighting.")}
    expected = {f"weighting.{k}" for k in build_weighting(method, ["quadrant", "red", "tags"]).state_dict()}
    assert set(method_state) == expected  # every buffer/parameter of the method is checkpointed

    assert main(["train", "--resume", str(run), "training.epochs=4"]) == 0
    history = pd.read_csv(run / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4]  # continued, did not restart
    pd.testing.assert_frame_equal(history.iloc[:2].reset_index(drop=True), first)
    resumed = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["epoch"] == 3
    assert set(k for k in resumed["state_dict"] if k.startswith("weighting.")) == set(method_state)
    assert history["weights/quadrant"].notna().all()  # weights reported every epoch, before and after
    assert load_file(str(run / "model" / "backbone.safetensors"))


def test_resume_errors(dataset, capsys):
    (dataset / "empty").mkdir()
    assert main(["train", "--resume", str(dataset / "empty")]) == 2
    assert "no config.yaml there" in capsys.readouterr().err
    (dataset / "fake").mkdir()
    (dataset / "fake" / "config.yaml").write_text((dataset / "config.yaml").read_text())
    assert main(["train", "--resume", str(dataset / "fake")]) == 2
    captured = capsys.readouterr()
    assert "no checkpoint at" in captured.err and "classes inferred" not in captured.out  # before any work
    assert main(["train"]) == 2
    assert "give a config file" in capsys.readouterr().err
