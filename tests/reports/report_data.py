"""Synthetic tasks, outputs, images and histories for the report tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from polyhead.config.schema import TaskConfig
from polyhead.tasks import build_task


def make_tasks(classes: int = 25, labels: int = 30) -> dict:
    return {
        "species": build_task("species", TaskConfig(type="multiclass",
                                                    classes=[f"class_{i:02d}_long_name" for i in range(classes)])),
        "outdoor": build_task("outdoor", TaskConfig(type="binary", classes=["indoor", "outdoor"])),
        "tags": build_task("tags", TaskConfig(type="multilabel", classes=[f"tag_{i}" for i in range(labels)])),
    }


def make_images(folder: Path, n: int, *, gray_every: int = 3) -> list[str]:
    """n small images; every `gray_every`-th one is grayscale (mode L)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"img_{i:03d}.png"
        if i % gray_every == 0:
            Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8), mode="L").save(path)
        else:
            Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def make_outputs(tasks: dict, n: int = 200, seed: int = 0) -> dict:
    """{task: (probs, targets, index)} with a model that is right more often than not."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, task in tasks.items():
        k = task.num_outputs
        index = torch.randperm(n, generator=g)[: n - 10]  # a few rows unlabelled for this task
        if task.type == "multiclass":
            targets = torch.randint(0, k, (len(index),), generator=g)
            logits = torch.randn(len(index), k, generator=g)
            logits[torch.arange(len(index)), targets] += 2.5
            probs = logits.softmax(1)
        elif task.type == "binary":
            targets = (torch.rand(len(index), generator=g) < 0.4).float()
            probs = torch.sigmoid(torch.randn(len(index), generator=g) + 2 * (targets - 0.5) * 2)[:, None]
        else:
            targets = (torch.rand(len(index), k, generator=g) < 0.2).float()
            probs = torch.sigmoid(torch.randn(len(index), k, generator=g) + 3 * (targets - 0.5) * 2)
        out[name] = (probs, targets, index)
    return out


def make_history(epochs: int, *, val: bool = True, weights_change: bool = False) -> pd.DataFrame:
    rows = []
    for e in range(epochs):
        row = {"epoch": e + 1, "step": 10 * (e + 1), "train/loss": 3.0 / (e + 1), "lr/backbone": 1e-4 * 0.5 ** e,
               "lr/heads": 1e-2 * 0.5 ** e}
        for t, metric in (("species", "accuracy"), ("outdoor", "f1"), ("tags", "micro_f1")):
            row[f"train/{t}/loss"] = 1.0 / (e + 1)
            row[f"train/{t}/{metric}"] = 1 - 0.5 / (e + 1)
            row[f"weights/{t}"] = 1.0 + (0.1 * e if weights_change and t == "tags" else 0.0)
            if val:
                row[f"val/{t}/loss"] = 1.1 / (e + 1)
                row[f"val/{t}/{metric}"] = 1 - 0.6 / (e + 1)
        if val:
            row["val/loss"] = 3.3 / (e + 1)
        rows.append(row)
    return pd.DataFrame(rows)


def check_png(path: Path, min_side: int = 200) -> tuple[int, int]:
    """The file is a PNG Pillow can decode, at least min_side pixels on each side; returns its size."""
    assert path.is_file(), path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        w, h = im.size
    assert w >= min_side and h >= min_side, (path, w, h)
    assert w <= 6000 and h <= 6000, (path, w, h)
    return w, h
