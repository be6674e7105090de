"""The pieces work without `fit`: a hand-written loop over model, tasks, dataset and weighting."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from polyhead.config.loading import load_config
from polyhead.data.dataset import MultiTaskDataset
from polyhead.data.module import build_splits
from polyhead.engine.evaluation import evaluate_model
from polyhead.engine.module import task_losses
from polyhead.model.backbones import build_backbone
from polyhead.model.multitask import MultiTaskModel
from polyhead.tasks import build_tasks
from polyhead.weighting import StepContext, build_weighting


def test_hand_written_training_loop(dataset):
    torch.manual_seed(0)
    cfg = load_config(dataset / "config.yaml")
    tasks = build_tasks(cfg.tasks)
    splits = build_splits(cfg, tasks)
    backbone = build_backbone("small_cnn", in_chans=3, small_cnn={"blocks": 2, "channels": [8, 16]})
    model = MultiTaskModel(backbone, {n: t.num_outputs for n, t in tasks.items()}, mean=[0.5] * 3, std=[0.5] * 3)
    weighting = build_weighting("static", list(tasks), {"weights": {"quadrant": 2.0}})
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    loader = DataLoader(MultiTaskDataset(splits.train, channels=3, size=(16, 16)), batch_size=16, shuffle=True)
    for _ in range(6):
        model.train()
        for batch in loader:
            features = model.forward_features(batch["image"])  # [B, F]
            losses = task_losses(tasks, model.forward_heads(features), batch)
            opt.zero_grad()
            weighting.backward(losses, StepContext(backward=lambda t: t.backward(), features=features))
            opt.step()
    val = DataLoader(MultiTaskDataset(splits.val, channels=3, size=(16, 16)), batch_size=32)
    metrics = evaluate_model(model, tasks, val, show_progress=False)
    assert metrics["quadrant"]["accuracy"] > 0.6
    assert weighting.task_weights()["quadrant"] == 2.0
