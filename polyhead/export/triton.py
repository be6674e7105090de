"""A Triton Inference Server model repository for one run:

    <out>/<name>/config.pbtxt              inputs, one output per task (+ <task>_logits), dynamic batching
    <out>/<name>/<task>_labels.txt         class names of a task's probabilities (Triton's classification
                                           extension answers "score:index:label" with them)
    <out>/<name>/1/model.onnx              the graph from polyhead.export.onnx (metadata included)

`config.pbtxt` follows Triton's ModelConfig schema (model_config.proto; tests parse it with the
copy tritonclient ships). The graph's metadata is also in the config's `parameters`
("polyhead_metadata", one JSON object), so a client can read it from Triton's
`GET /v2/models/<name>/config`.
"""

from __future__ import annotations

import json
from pathlib import Path

from polyhead.errors import PolyheadError
from polyhead.export import DEFAULT_MAX_BATCH, DEFAULT_OPSET
from polyhead.export.metadata import INPUT, check_model_name, output_names
from polyhead.export.onnx import bundle_metadata, export_onnx
from polyhead.model.bundle import Bundle
from polyhead.tasks import Task


def label_lines(task: Task) -> list[str]:
    """One label per element of the task's probability output: the classes, or for a binary
    task (one output, P(positive)) the positive class."""
    return [task.classes[1]] if task.type == "binary" else list(task.classes)


def _quote(text: str) -> str:
    from google.protobuf import text_encoding  # protobuf arrives with onnx

    return '"' + text_encoding.CEscape(text, as_utf8=True) + '"'


def _tensor(name: str, dims: list[int], labels: str | None = None) -> str:
    lines = [f"    name: {_quote(name)}", "    data_type: TYPE_FP32", f"    dims: [ {', '.join(map(str, dims))} ]"]
    if labels:
        lines.append(f"    label_filename: {_quote(labels)}")
    return "  {\n" + "\n".join(lines) + "\n  }"


def config_text(name: str, tasks: dict[str, Task], channels: int, image_size, max_batch_size: int,
                metadata: dict) -> str:
    """config.pbtxt: the input [C, H, W], per task `<task>` [K] (with a label file) and
    `<task>_logits` [K], all FP32; the batch axis is implied by max_batch_size."""
    outputs = []
    for task_name, task in tasks.items():
        names = output_names(task_name)
        outputs.append(_tensor(names["probabilities"], [task.num_outputs], f"{task_name}_labels.txt"))
        outputs.append(_tensor(names["logits"], [task.num_outputs]))
    return "\n".join([
        f"name: {_quote(name)}",
        'platform: "onnxruntime_onnx"',
        f"max_batch_size: {max_batch_size}",
        "input [\n" + _tensor(INPUT, [channels, *image_size]) + "\n]",
        "output [\n" + ",\n".join(outputs) + "\n]",
        "dynamic_batching { }",
        'parameters { key: "polyhead_metadata" value { string_value: '
        + _quote(json.dumps(metadata, separators=(",", ":"))) + " } }",
        "",
    ])


def write_triton_repository(bundle: Bundle, out_dir: str | Path, *, name: str, opset: int = DEFAULT_OPSET,
                            max_batch_size: int = DEFAULT_MAX_BATCH) -> Path:
    """Write <out_dir>/<name>/ (layout in the module docstring); returns the model folder."""
    check_model_name(name)
    if max_batch_size < 1:
        raise PolyheadError(f"--max-batch-size {max_batch_size}: must be at least 1")
    folder = Path(out_dir) / name
    export_onnx(bundle, folder / "1" / "model.onnx", name=name, opset=opset)
    metadata = {k: json.loads(v) for k, v in bundle_metadata(bundle, name).items()}
    for task_name, task in bundle.tasks.items():
        (folder / f"{task_name}_labels.txt").write_text("\n".join(label_lines(task)) + "\n")
    text = config_text(name, bundle.tasks, bundle.prep.channels, bundle.prep.image_size, max_batch_size, metadata)
    (folder / "config.pbtxt").write_text(text)
    return folder
