"""Parity: does the exported graph, run by onnxruntime, predict what the PyTorch model predicts?

Per task: the largest absolute difference between the two probability arrays, and whether the
decoded predictions (labels, top-k names, labels over threshold: the columns `polyhead predict`
writes, without the probabilities) are identical on every image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from polyhead.tasks import Task

TOLERANCE = 1e-4  # max abs probability difference accepted by `polyhead export --check` and the tests


def label_columns(task: Task, columns: dict[str, list]) -> dict[str, list]:
    """The decoded columns of `task` that are labels, not probabilities (`<task>`, `<task>_topK`)."""
    return {k: v for k, v in columns.items() if "_prob" not in k[len(task.name):]}


def load_images(paths: Sequence[str | Path], channels: int, size: tuple[int, int]) -> np.ndarray:
    """Image files decoded as `polyhead predict` decodes them -> float32 [B, C, H, W] in 0..1."""
    from polyhead.data.images import load_image

    batch = torch.stack([load_image(p, channels=channels, size=tuple(size)) for p in paths])
    return batch.float().div_(255.0).numpy()


def random_images(n: int, channels: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Seeded test images float32 [n, C, H, W] in 0..1: all black, all white, then uniform noise."""
    rng = np.random.default_rng(seed)
    images = rng.random((n, channels, *size), dtype=np.float32)
    images[0], images[min(1, n - 1)] = 0.0, 1.0
    return images


@torch.inference_mode()
def torch_probabilities(model: nn.Module, tasks: dict[str, Task], images: np.ndarray) -> dict[str, np.ndarray]:
    """The PyTorch model in float32 on the CPU: images [B, C, H, W] in 0..1 -> {task: probs [B, K]}."""
    model = model.float().cpu().eval()
    logits = model(torch.from_numpy(images))
    return {name: task.activate(logits[name]).numpy() for name, task in tasks.items()}


def compare(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray],
            tasks: dict[str, Task]) -> dict[str, dict]:
    """{task: {"max_abs_diff": float, "same_decoded": bool, "images": int}} of two {task: probs [B, K]}."""
    report = {}
    for name, task in tasks.items():
        a, b = reference[name], candidate[name]
        same = (label_columns(task, task.decode(torch.from_numpy(a)))
                == label_columns(task, task.decode(torch.from_numpy(b))))
        report[name] = {"max_abs_diff": float(np.abs(a - b).max()) if a.size else 0.0, "same_decoded": same,
                        "images": int(a.shape[0])}
    return report


def passed(report: dict[str, dict], tolerance: float = TOLERANCE) -> bool:
    return all(r["same_decoded"] and r["max_abs_diff"] <= tolerance for r in report.values())


def check_export(model: nn.Module, runner, images: np.ndarray) -> dict[str, dict]:
    """Compare `runner` (an OnnxRunner) against the PyTorch `model` on `images` [B, C, H, W] in 0..1."""
    return compare(torch_probabilities(model, runner.tasks, images), runner.probabilities(images), runner.tasks)
