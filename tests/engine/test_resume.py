"""`polyhead train --resume RUN_DIR` continues from the last checkpoint, weighting state included."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from polyhead.cli.main import main
from polyhead.engine.checkpoint_io import load_checkpoint_file
from polyhead.weighting import build_weighting

STATEFUL = ["famo", "dwa", "gradnorm", "uncertainty", "nash_mtl", "rlw"]  # state that shapes the next steps
SMALL = ["tracking.enabled=false", "report.enabled=false", "training.cpu_threads=1", "training.epochs=3",
         "training.limit_train_batches=4", "training.limit_val_batches=1", "data.test_fraction=0.1"]


@pytest.mark.parametrize("method", STATEFUL)
def test_resumed_method_is_bit_identical_to_the_uninterrupted_run(dataset, crash_at, method):
    """3 epochs in one go vs. a crash in epoch 2 and a resume from the end of epoch 1: the same
    history (losses, metrics, task weights), method state, model parameters and optimizer state."""
    def argv(name):
        return ["train", str(dataset / "config.yaml"), f"output_dir={dataset / 'runs'}", f"run_name={name}",
                f"training.weighting={method}", *SMALL]

    assert main(argv("full")) == 0
    crash_at(epoch=2, batch=1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(argv("cut"))
    assert main(["train", "--resume", str(dataset / "runs" / "cut")]) == 0

    full, cut = (load_checkpoint_file(dataset / "runs" / r / "checkpoints" / "last.ckpt") for r in ("full", "cut"))
    assert full["epoch"] == cut["epoch"] == 2
    assert full["state_dict"].keys() == cut["state_dict"].keys()
    for key, value in full["state_dict"].items():
        assert torch.equal(cut["state_dict"][key], value), key
    initial = build_weighting(method, ["quadrant", "red", "tags"]).state_dict()
    moved = [k for k, v in initial.items() if not torch.equal(full["state_dict"][f"weighting.{k}"], v)]
    assert moved, f"{method}: its state never left the initial one, the comparison would prove nothing"
    full_opt, cut_opt = full["optimizer_states"][0]["state"], cut["optimizer_states"][0]["state"]
    assert full_opt.keys() == cut_opt.keys()
    for i, state in full_opt.items():
        assert all(torch.equal(torch.as_tensor(cut_opt[i][k]), torch.as_tensor(v)) for k, v in state.items()), i
    histories = [pd.read_csv(dataset / "runs" / r / "history.csv") for r in ("full", "cut")]
    assert histories[0]["epoch"].tolist() == [1, 2, 3]
    pd.testing.assert_frame_equal(histories[1], histories[0], check_exact=True)


def test_resume_can_extend_a_run(dataset):
    run = dataset / "runs" / "r"
    base = ["train", str(dataset / "config.yaml"), f"output_dir={dataset / 'runs'}", "run_name=r",
            "training.weighting=famo", "training.epochs=2", "training.monitor=train/loss", "tracking.enabled=false",
            "report.enabled=false", "training.limit_train_batches=3"]
    assert main(base) == 0
    first = pd.read_csv(run / "history.csv")
    assert main(["train", "--resume", str(run), "training.epochs=4"]) == 0
    history = pd.read_csv(run / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4]  # continued, did not restart
    pd.testing.assert_frame_equal(history.iloc[:2].reset_index(drop=True), first)
    resumed = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["epoch"] == 3
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
