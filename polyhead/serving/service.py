"""What both protocols share: the served model, its name, limits, batcher and metrics.

A request's path goes: protocol module (parse, check) -> `ModelService.decode` (encoded images
-> pixels, in a worker thread) -> `ModelService.probabilities` (the dynamic batcher) ->
`ModelService.columns` (`Task.decode`, the columns `polyhead predict` writes).
"""

from __future__ import annotations

import asyncio
from typing import Sequence

import numpy as np
import torch

from polyhead.serving.batching import DynamicBatcher
from polyhead.serving.inputs import decode_images
from polyhead.serving.limits import Limits, RequestError
from polyhead.serving.metrics import ServingMetrics
from polyhead.serving.runner import Runner

VERSION = "1"  # one model per server; clients that name a version must name this one


class ModelService:
    def __init__(self, runner: Runner, name: str, limits: Limits, *, max_batch: int = 32,
                 max_wait_ms: float = 5.0):
        self.runner, self.name, self.limits = runner, name, limits
        self.tasks = runner.tasks
        self.metrics = ServingMetrics()
        self.batcher = DynamicBatcher(runner.probabilities, max_batch=max_batch, max_wait_ms=max_wait_ms,
                                      on_batch=self.metrics.observe_batch)

    def check(self, name: str, version: str | None = None) -> None:
        """404 unless the request names this model (and, if any, version "1")."""
        if name != self.name:
            raise RequestError(404, f"unknown model {name!r}; this server serves {self.name!r}")
        if version is not None and version != VERSION:
            raise RequestError(404, f"model {name!r} has no version {version!r}; the only version is {VERSION!r}")

    async def decode(self, items: Sequence[bytes], names: Sequence[str]) -> np.ndarray:
        """Encoded images -> float32 [N, C, H, W], decoded in a worker thread (off the event loop);
        meanwhile a forming batch knows this request is coming."""
        with self.batcher.incoming():
            return await asyncio.to_thread(decode_images, items, names, self.runner, self.limits)

    async def probabilities(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """float32 [N, C, H, W] -> {task: float32 [N, K]}, batched with concurrent requests."""
        return await self.batcher.submit(images)

    def columns(self, probs: dict[str, np.ndarray]) -> dict[str, list]:
        """{task: [N, K]} -> the prediction columns of `polyhead predict` (Task.decode), N values each."""
        out: dict[str, list] = {}
        for name, task in self.tasks.items():
            out.update(task.decode(torch.from_numpy(np.ascontiguousarray(probs[name]))))
        return out

    def task_summary(self) -> list[dict]:
        """Per task: name, type, classes, top_k (multiclass, as decoded), thresholds (multilabel)."""
        out = []
        for name, task in self.tasks.items():
            entry = {"name": name, "type": task.type, "classes": list(task.classes)}
            if task.type == "multiclass":
                entry["top_k"] = min(task.config.top_k, len(task.classes))
            elif task.type == "binary":
                entry["threshold"] = task.config.threshold
            else:
                entry["thresholds"] = [float(t) for t in task.thresholds().tolist()]
            out.append(entry)
        return out
