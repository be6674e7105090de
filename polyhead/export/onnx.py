"""Export a run's model to one ONNX graph.

    images float32 [N, C, H, W] in 0..1 (dynamic N)
      -> (x - mean) / std inside the graph -> backbone -> heads
      -> outputs "<task>" (probabilities [N, K]) and "<task>_logits" ([N, K]) for every task

Exporter: PyTorch's TorchScript-based exporter (`torch.onnx.export(..., dynamo=False)`).
Measured with torch 2.14 on this project's models, both exporters give the same numbers
(max abs probability difference ~1e-7 against PyTorch); the TorchScript one was chosen because
it honours `--opset` from 13 to 20 (the torch.export-based exporter builds opset 18 and its
down-conversion to 17 or lower failed on the small CNN), exports 4-7x faster (efficientnet_lite0
at 224 px: 4 s vs 19 s on 2 cores) and needs no onnxscript. torch marks it deprecated; when it
goes, switch to `dynamo=True` with `dynamic_shapes` (docs/serving.md).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import nn

from polyhead.errors import PolyheadError
from polyhead.export import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, import_serving_dependency
from polyhead.export.metadata import INPUT, build_metadata, check_output_names, output_names
from polyhead.model.bundle import Bundle
from polyhead.tasks import Task



class ExportGraph(nn.Module):
    """The bundle's model with each task's activation: float [N, C, H, W] in 0..1 ->
    (probabilities of every task..., logits of every task...) in `tasks` order."""

    def __init__(self, model: nn.Module, tasks: dict[str, Task]):
        super().__init__()
        self.model, self.tasks = model, tasks

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits = self.model(images)  # the model normalises with its own mean/std
        probs = [task.activate(logits[name]) for name, task in self.tasks.items()]
        return (*probs, *(logits[name].float() for name in self.tasks))


def graph_output_names(tasks: dict[str, Task]) -> list[str]:
    """Output names in ExportGraph's order: every task's probabilities, then every task's logits."""
    return [output_names(t)["probabilities"] for t in tasks] + [output_names(t)["logits"] for t in tasks]


def check_opset(opset: int) -> int:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise PolyheadError(f"--opset {opset}: polyhead exports ONNX opsets {MIN_OPSET} to {MAX_OPSET} "
                            f"(default {DEFAULT_OPSET})")
    return opset


def bundle_metadata(bundle: Bundle, name: str) -> dict[str, str]:
    """The graph's metadata for `bundle` ({key: JSON text}, keys in polyhead.export.metadata)."""
    p = bundle.prep
    return build_metadata(name=name, tasks=bundle.tasks, image_size=p.image_size, channels=p.channels,
                          mean=p.mean, std=p.std, backbone=bundle.spec.name)


def export_onnx(bundle: Bundle, out_file: str | Path, *, name: str, opset: int = DEFAULT_OPSET) -> Path:
    """Write `bundle`'s model as an ONNX graph with polyhead metadata (polyhead.export.metadata).

    Writes to a temporary file first and renames it, so an interrupted export never leaves a
    half-written model.onnx. Returns the path of the graph."""
    onnx = import_serving_dependency("onnx")

    check_opset(opset)
    check_output_names(list(bundle.tasks))
    prep = bundle.prep
    model = bundle.model.use_channels_last(False).eval()  # a plain NCHW graph; onnxruntime picks layouts
    graph = ExportGraph(model, bundle.tasks).eval()
    example = torch.rand(2, prep.channels, *prep.image_size)
    proto = _trace(graph, example, graph_output_names(bundle.tasks), opset, bundle.spec.name)
    onnx.helper.set_model_props(proto, bundle_metadata(bundle, name))
    proto.producer_name, proto.doc_string = "polyhead", f"polyhead model '{name}' (metadata: docs/serving.md)"
    onnx.checker.check_model(proto)
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(out_file.name + ".partial")
    onnx.save(proto, str(tmp))
    tmp.replace(out_file)
    return out_file


def _trace(graph: ExportGraph, example: torch.Tensor, outputs: list[str], opset: int, backbone: str):
    """Trace `graph` into an onnx.ModelProto with a dynamic batch axis on the input and every output."""
    onnx = import_serving_dependency("onnx")

    buffer = io.BytesIO()
    axes = {n: {0: "batch"} for n in [INPUT, *outputs]}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # torch announces the exporter's deprecation on every call; the user can do nothing about it
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(graph, (example,), buffer, dynamo=False, input_names=[INPUT], output_names=outputs,
                              dynamic_axes=axes, opset_version=opset, do_constant_folding=True)
    except (torch.onnx.errors.OnnxExporterError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PolyheadError(f"cannot export backbone '{backbone}' to ONNX opset {opset}: {first}; "
                            f"a newer --opset (up to {MAX_OPSET}) may support it") from None
    finally:
        graph.eval()  # the exporter restores the wrapper's mode recursively: keep the model in eval
    return onnx.load_model_from_string(buffer.getvalue())
