"""The model behind the server: a `Runner` turns pre-processed pixels into per-task probabilities.

Two backends implement the same protocol: `TorchRunner` (a run or bundle folder, here) and
`polyhead.export.runtime.OnnxRunner` (an exported ONNX graph, run with onnxruntime). Both take
float32 [B, C, H, W] in [0, 1] and return {task: float32 [B, K]}; `Task.decode` turns those into
the same label columns `polyhead predict` writes, so every surface gives the same labels.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from polyhead.errors import PolyheadError

if TYPE_CHECKING:
    from polyhead.api import Predictor
    from polyhead.tasks import Task

BACKENDS = ("torch", "onnx")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


class Runner(Protocol):
    name: str  # default model name (see default_model_name)
    tasks: dict[str, "Task"]  # in output order
    image_size: tuple[int, int]  # (H, W) the model expects
    channels: int  # 1 or 3
    backend: str  # "torch" or "onnx"

    def probabilities(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """images: float32 [B, C, H, W] in [0, 1], already resized to image_size
        -> {task: float32 [B, K]} (softmax for multiclass, sigmoid for binary [B, 1] and multilabel)."""
        ...


class TorchRunner:
    """A trained bundle in PyTorch (the model normalises with its own mean/std inside)."""

    backend = "torch"

    def __init__(self, predictor: "Predictor", name: str):
        self.predictor, self.name = predictor, name
        self.model, self.device, self.tasks = predictor.model, predictor.device, predictor.tasks
        prep = predictor.bundle.prep
        self.image_size, self.channels = (int(prep.image_size[0]), int(prep.image_size[1])), int(prep.channels)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "TorchRunner":
        from polyhead.api import Predictor

        predictor = Predictor.load(path, device)
        return cls(predictor, default_model_name(path))

    def probabilities(self, images: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        from polyhead.engine.precision import autocast  # the mixed precision `predict` uses on CUDA

        x = torch.from_numpy(np.require(images, np.float32, ["C_CONTIGUOUS", "WRITEABLE"])).to(self.device)
        with torch.inference_mode(), autocast(self.device):
            logits = self.model(x)
        return {name: task.activate(logits[name].float()).cpu().numpy() for name, task in self.tasks.items()}


def default_model_name(path: str | Path) -> str:
    """The run's config name (`polyhead.export.paths.default_model_name`: `run_name`, else the run
    folder's name without its timestamp), with characters other than letters, digits, '_', '.' and
    '-' turned into '-' so the name fits in a URL path."""
    from polyhead.export.paths import default_model_name as run_config_name, run_folder

    return _NAME_CHARS.sub("-", run_config_name(run_folder(path))).strip("-.") or "model"


def load_runner(path: str | Path, backend: str = "torch", device: str = "auto") -> Runner:
    """A run folder, bundle folder (run/model) or export folder (model.onnx) -> a Runner.

    "torch" needs a run or bundle folder; "onnx" takes an export folder or model.onnx, or a run
    folder (OnnxRunner then looks for RUN/export/onnx/model.onnx and says how to make it)."""
    if backend == "torch":
        return TorchRunner.load(path, device)
    if backend != "onnx":
        raise PolyheadError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    try:
        from polyhead.export.runtime import OnnxRunner
    except ImportError as exc:
        raise PolyheadError(f"--backend onnx needs polyhead's ONNX export and onnxruntime, which cannot be "
                            f"imported here ({exc}); install them with `pip install 'polyhead[serve]'`, "
                            f"or use --backend torch") from None
    return OnnxRunner(path)

