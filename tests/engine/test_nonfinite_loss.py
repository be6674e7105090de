"""training.on_nonfinite_loss: a NaN / inf task loss stops the run with a clear message (error) or
drops that batch's update (skip)."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from polyhead.cli.main import main
from polyhead.tasks import BinaryTask


def _poison(monkeypatch, at_calls: set[int], value: float):
    """BinaryTask's training loss becomes `value` on the given (1-based) training calls."""
    original, calls = BinaryTask.labelled_loss, [0]

    def loss(self, logits, targets):
        out = original(self, logits, targets)
        if torch.is_grad_enabled():  # training steps only (validation runs without grad)
            calls[0] += 1
            if calls[0] in at_calls:
                return out * value if math.isnan(value) else out + value
        return out

    monkeypatch.setattr(BinaryTask, "labelled_loss", loss)


def _argv(dataset, *extra):
    return ["train", str(dataset / "config.yaml"), f"output_dir={dataset / 'runs'}", "run_name=r",
            "tracking.enabled=false", "report.enabled=false", *extra]


@pytest.mark.parametrize("value,kind", [(float("nan"), "NaN"), (float("inf"), "infinite")])
def test_nonfinite_loss_error_names_task_step_and_rows(dataset, monkeypatch, capsys, value, kind):
    _poison(monkeypatch, {11}, value)  # 8 steps per epoch: the 11th is step 10, in epoch 2
    assert main(_argv(dataset, "training.epochs=2")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"task(s) 'red' ({kind}) at step 10 (epoch 2)" in err
    rows = re.search(r"labels.csv' \[train\] rows ([\d, ]+) \(\+6 more\)", err)
    assert rows and len(rows.group(1).split(", ")) == 10  # the first 10 of the batch's 16 rows
    assert all(1 <= int(r) <= 160 for r in rows.group(1).split(", "))
    assert "optimizer.lr" in err and "on_nonfinite_loss=skip" in err


def test_nonfinite_loss_skip_drops_the_batch_and_counts_it(dataset, monkeypatch, recwarn):
    _poison(monkeypatch, {3, 5, 12}, float("nan"))
    assert main(_argv(dataset, "training.epochs=3", "training.on_nonfinite_loss=skip")) == 0
    history = pd.read_csv(dataset / "runs" / "r" / "history.csv")
    assert history["train/skipped_batches"].tolist() == [2.0, 1.0, 0.0]
    assert history["train/loss"].notna().all() and history["train/red/loss"].notna().all()
    warned = [w for w in recwarn if "skipping a batch with a non-finite loss" in str(w.message)]
    assert len(warned) == 1  # once, not per batch
    # no backward of a NaN loss happened: every saved weight is finite
    run = dataset / "runs" / "r" / "model"
    for file in [run / "backbone.safetensors", *sorted((run / "heads").glob("*.safetensors"))]:
        assert all(torch.isfinite(t).all() for t in load_file(str(file)).values())
