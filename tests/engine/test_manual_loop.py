"""The pieces work without `fit`: a hand-written loop over model, tasks, dataset and weighting."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from polyhead.config.loading import load_config
from polyhead.data.dataset import MultiTaskDataset
from polyhead.data.splits import build_splits
from polyhead.engine.evaluation import evaluate_model
from polyhead.engine.module import recompute_losses, task_losses
from polyhead.model.backbones import build_backbone
from polyhead.model.multitask import MultiTaskModel
from polyhead.tasks import build_tasks
from polyhead.weighting import StepContext, build_weighting


@pytest.mark.parametrize("name,args", [("static", {"weights": {"quadrant": 2.0}}), ("famo", {}), ("pcgrad", {})])
def test_hand_written_training_loop(dataset, name, args):
    """The loop of docs/python-api.md: the method is really used (not the plain sum)."""
    torch.manual_seed(0)
    cfg = load_config(dataset / "config.yaml")
    tasks = build_tasks(cfg.tasks)
    splits = build_splits(cfg.data, tasks, seed=cfg.training.seed)
    backbone = build_backbone("small_cnn", in_chans=3, small_cnn={"blocks": 2, "channels": [8, 16]})
    model = MultiTaskModel(backbone, {n: t.num_outputs for n, t in tasks.items()}, mean=[0.5] * 3, std=[0.5] * 3)
    weighting = build_weighting(name, list(tasks), args)
    opt = torch.optim.AdamW([{"params": model.parameters()}, *weighting.parameter_groups(lr=0.01)], lr=0.01)
    loader = DataLoader(MultiTaskDataset(splits.train, channels=3, size=(16, 16)), batch_size=16, shuffle=True)
    seen = []
    for _ in range(6):
        model.train()
        for batch in loader:
            features = model.forward_features(batch["image"])  # [B, F]
            losses = task_losses(tasks, model.forward_heads(features), batch)
            opt.zero_grad()
            ctx = StepContext(backward=lambda t: t.backward(), features=features,
                              shared_parameters=model.shared_parameters())
            weighting.backward(losses, ctx)
            opt.step()
            weighting.after_step(lambda: recompute_losses(model, tasks, batch))
            seen.append(weighting.weight_vector().clone())
    val = DataLoader(MultiTaskDataset(splits.val, channels=3, size=(16, 16)), batch_size=32)
    metrics = evaluate_model(model, tasks, val, show_progress=False)
    assert metrics["quadrant"]["accuracy"] > 0.6
    seen = torch.stack(seen)  # [steps, T]
    if name == "static":
        assert weighting.task_weights()["quadrant"] == 2.0
    else:  # famo's weights (sum 1) and pcgrad's (1 without conflict) moved during training
        assert weighting.active and (seen - seen[0]).abs().max() > 1e-3
