"""Every weighting method trains the generated dataset end to end through the CLI."""

from __future__ import annotations

import json

import math

import pandas as pd
import pytest
import torch

from polyhead.cli.main import main

METHODS = ["uncertainty", "dwa", "rlw", "famo", "gradnorm", "mgda", "pcgrad", "cagrad", "nash_mtl", "imtl", "upgrad"]


@pytest.mark.parametrize("name", METHODS)
def test_method_trains(dataset, name):
    rc = main(["train", str(dataset / "config.yaml"), f"output_dir={dataset / 'runs'}", "run_name=m",
               f"training.weighting={name}", "training.epochs=6",
               "scheduler.name=cosine"])  # the schedule these accuracy floors were set with
    assert rc == 0
    run = dataset / "runs" / "m"
    val = json.loads((run / "metrics.json").read_text())["val"]
    assert val["quadrant"]["accuracy"] > 0.6, val["quadrant"]  # chance is 0.25
    history = pd.read_csv(run / "history.csv")
    weights = history[[f"weights/{task}" for task in ("quadrant", "red", "tags")]]
    assert weights.notna().all().all()
    # the method acted: a silent fall-back to the plain sum would log one constant (1, or famo's 1/3)
    assert weights.stack().nunique() > 1, weights
    if name in ("mgda", "pcgrad", "cagrad", "nash_mtl", "imtl", "upgrad", "gradnorm"):
        assert (history["weighting/inactive_steps"] == 0).all()


def test_weights_and_learning_rates_are_epoch_means(dataset, monkeypatch):
    """famo over epochs of 32 steps: `weights/<task>` is the mean of the weights every step used
    (recorded here, step by step), `lr/<group>` the mean of the cosine schedule's per-step rates."""
    from polyhead.weighting.loss_based import FAMO

    used = []
    combine = FAMO.combine

    def recording(self, losses):
        used.append(torch.softmax(self.logits, 0).tolist())  # the weights this step uses, all tasks
        return combine(self, losses)

    monkeypatch.setattr(FAMO, "combine", recording)
    rc = main(["train", str(dataset / "config.yaml"), f"output_dir={dataset / 'runs'}", "run_name=m",
               "training.weighting=famo", "training.epochs=2", "data.batch_size=4", "report.enabled=false",
               "tracking.enabled=false", "scheduler.name=cosine"])  # the hand computation below is cosine's
    assert rc == 0
    history = pd.read_csv(dataset / "runs" / "m" / "history.csv")
    steps = 128 // 4  # 160 rows, 20% for validation
    assert len(used) == 2 * steps
    for epoch in (0, 1):
        step_weights = torch.tensor(used[epoch * steps:(epoch + 1) * steps])  # [32, 3]
        expected = dict(zip(("quadrant", "red", "tags"), step_weights.mean(0).tolist()))
        for task, mean in expected.items():
            assert history[f"weights/{task}"][epoch] == pytest.approx(mean, rel=1e-5)
        assert (step_weights.max(0).values - step_weights.min(0).values).max() > 1e-3  # they moved in the epoch
        # cosine from lr 0.01 to 0 over 64 steps; step s uses 0.01 * (1 + cos(pi s / 64)) / 2
        lrs = [0.01 * (1 + math.cos(math.pi * s / (2 * steps))) / 2 for s in range(epoch * steps, (epoch + 1) * steps)]
        for group in ("backbone", "heads"):
            assert history[f"lr/{group}"][epoch] == pytest.approx(sum(lrs) / steps, rel=1e-6)
