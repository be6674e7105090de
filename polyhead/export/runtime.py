"""OnnxRunner: an exported graph run by onnxruntime on the CPU, behind the same Runner contract
as the PyTorch model (polyhead.serving.runner):

    runner = OnnxRunner("runs/demo")          # or runs/demo/export/onnx, or a model.onnx file
    probs = runner.probabilities(images)      # float32 [B, C, H, W] in 0..1 -> {task: float32 [B, K]}
    columns = runner.tasks["category"].decode(torch.from_numpy(probs["category"]))

Everything it needs (tasks, image size, channels, name) comes from the graph's metadata, so an
export folder copied away from its run works alone.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from polyhead.errors import PolyheadError
from polyhead.export import import_serving_dependency
from polyhead.export.metadata import INPUT, output_names, parse_metadata, tasks_from_metadata
from polyhead.export.paths import find_model_file

def default_threads() -> int:
    """onnxruntime's intra-op threads: OMP_NUM_THREADS when set (the CLI sizes it to leave the image
    decoders a core, as for torch), else every core this process may use."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"])
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class OnnxRunner:
    """Implements the Runner contract (name, tasks, image_size, channels, backend, probabilities)."""

    backend = "onnx"

    def __init__(self, path: str | Path, *, threads: int | None = None, spin: bool = False):
        """`path`: see find_model_file. `threads`: intra-op threads (default_threads()). `spin`: let
        idle pool threads spin-wait (a little faster on a dedicated machine, docs/benchmarks.md)."""
        ort = import_serving_dependency("onnxruntime")

        self.path = find_model_file(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1  # one branch at a time: the graph is a chain of convolutions
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle pool threads sleep instead of spinning: a server between requests, or `predict`
        # with image-decoding workers, needs those cores (see docs/benchmarks.md for the cost).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph / InvalidProtobuf types
            raise PolyheadError(f"cannot load '{self.path}' with onnxruntime: {str(exc).strip().splitlines()[0]}") from None
        self.metadata = parse_metadata(self.session.get_modelmeta().custom_metadata_map, str(self.path))
        self.name: str = self.metadata["name"]
        self.tasks = tasks_from_metadata(self.metadata)
        self.image_size: tuple[int, int] = tuple(self.metadata["image_size"])
        self.channels: int = int(self.metadata["channels"])
        self.mean, self.std = self.metadata["mean"], self.metadata["std"]

    def _run(self, images: np.ndarray, kind: str) -> dict[str, np.ndarray]:
        expected = (self.channels, *self.image_size)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise PolyheadError(f"images of shape {list(images.shape)} do not fit model '{self.name}': expected "
                                f"[B, {', '.join(map(str, expected))}] (float32 in 0..1)")
        names = [output_names(t)[kind] for t in self.tasks]
        outputs = self.session.run(names, {INPUT: np.ascontiguousarray(images, dtype=np.float32)})
        return dict(zip(self.tasks, outputs))

    def probabilities(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """images float32 [B, C, H, W] in 0..1, resized to image_size -> {task: float32 [B, K]}
        (softmax for multiclass; sigmoid for binary [B, 1] and multilabel [B, K])."""
        return self._run(images, "probabilities")

    def logits(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """The same images -> {task: raw logits float32 [B, K]}."""
        return self._run(images, "logits")
