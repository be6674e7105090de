"""A run resumed from an epoch boundary repeats the uninterrupted run bit for bit (CPU): data order,
augmentation, dropout, early stopping and every metric."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from polyhead.cli.main import main

RANDOM = ["tracking.enabled=false", "report.enabled=false", "data.augment.hflip=true", "data.augment.crop_padding=2",
          "model.head.dropout=0.3", "training.cpu_threads=1"]


def _argv(dataset, name, *extra):
    return ["train", str(dataset / "config.yaml"), f"output_dir={dataset / 'runs'}", f"run_name={name}",
            *RANDOM, *extra]


def _outcome(run):
    metrics = json.loads((run / "metrics.json").read_text())
    return pd.read_csv(run / "history.csv"), {k: metrics[k] for k in ("val", "test") if k in metrics}


@pytest.mark.parametrize("workers", [0, 2])  # 2: persistent workers fetch the first epoch's rows early
def test_resume_is_bit_identical(dataset, crash_at, workers):
    extra = ["training.epochs=3", "data.test_fraction=0.1", f"data.num_workers={workers}"]
    assert main(_argv(dataset, "full", *extra)) == 0
    crash_at(epoch=2, batch=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(_argv(dataset, "cut", *extra))
    assert main(["train", "--resume", str(dataset / "runs" / "cut")]) == 0
    full_history, full_metrics = _outcome(dataset / "runs" / "full")
    cut_history, cut_metrics = _outcome(dataset / "runs" / "cut")
    assert full_history["epoch"].tolist() == [1, 2, 3]
    pd.testing.assert_frame_equal(cut_history, full_history, check_exact=True)
    assert cut_metrics == full_metrics and "test" in full_metrics


def test_resumed_early_stopping_stops_at_the_same_epoch(dataset, crash_at):
    # min_delta larger than any loss: only epoch 0 improves, patience 2 stops after epoch 2
    extra = ["training.epochs=8", "training.early_stopping.enabled=true", "training.early_stopping.patience=2",
             "training.early_stopping.min_delta=100", "scheduler.name=none"]
    assert main(_argv(dataset, "full", *extra)) == 0
    crash_at(epoch=2, batch=0)  # last.ckpt: epoch 1, one epoch without improvement
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(_argv(dataset, "cut", *extra))
    assert main(["train", "--resume", str(dataset / "runs" / "cut")]) == 0
    full_history, full_metrics = _outcome(dataset / "runs" / "full")
    cut_history, cut_metrics = _outcome(dataset / "runs" / "cut")
    assert full_history["epoch"].tolist() == [1, 2, 3]  # stopped early
    pd.testing.assert_frame_equal(cut_history, full_history, check_exact=True)
    assert cut_metrics == full_metrics


def test_augmentation_is_a_function_of_seed_epoch_and_position(dataset):
    from polyhead.config.loading import load_config
    from polyhead.data.dataset import MultiTaskDataset
    from polyhead.data.splits import build_splits
    from polyhead.data.transforms import BatchAugment
    from polyhead.tasks import build_tasks

    cfg = load_config(dataset / "config.yaml", ["data.augment.crop_padding=4", "data.augment.hflip=true",
                                                f"data.root={dataset}"])
    splits = build_splits(cfg.data, build_tasks(cfg.tasks), seed=cfg.training.seed)
    ds = MultiTaskDataset(splits.train, channels=3, size=(16, 16))
    images = torch.stack([ds[i]["image"] for i in range(8)])
    positions = torch.arange(8)
    augment, other_seed = (BatchAugment(cfg.data.augment, 3, seed=s) for s in (0, 1))
    rng_before = torch.random.get_rng_state()
    first = augment(images, positions, epoch=3)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # the global RNG is left alone
    torch.manual_seed(123)  # whatever the global RNG holds, the same (epoch, position) gives the same image
    assert torch.equal(augment(images, positions, epoch=3), first)
    # ... whatever batch the sample is in: positions 5..7 alone, in another order
    assert torch.equal(augment(images[[7, 5, 6]], positions[[7, 5, 6]], epoch=3), first[[7, 5, 6]])
    assert not torch.equal(augment(images, positions, epoch=4), first)  # epochs differ
    assert not torch.equal(other_seed(images, positions, epoch=3), first)  # seeds differ
