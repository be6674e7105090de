"""What an exported graph carries so that a client can use it without polyhead.

The metadata is a flat {key: JSON text} mapping, stored in the ONNX model's
`metadata_props` (readable with `onnx.load(...).metadata_props` or onnxruntime's
`session.get_modelmeta().custom_metadata_map`). Keys (docs/serving.md explains each):

    format            "polyhead-onnx"          format_version  1
    polyhead_version  "0.1.0"                  name            model name (Triton / server default)
    input             "images"                 input_layout    "NCHW"
    input_dtype       "float32"                input_range     "0..1" (pixel / 255)
    image_size        [H, W]                   channels        1 (grayscale "L") or 3 ("RGB")
    color_mode        "L" or "RGB"             resize          how polyhead resizes before the graph
    mean, std         per-channel lists (applied inside the graph; the client must not normalise)
    tasks             [{name, type, classes, top_k, threshold, thresholds, positive}, ...]
    outputs           {task: {"probabilities": name, "logits": name, "activation": "softmax"|"sigmoid"}}
    backbone          backbone name (informative)
"""

from __future__ import annotations

import json
import re

from polyhead import __version__
from polyhead.errors import PolyheadError
from polyhead.tasks import Task, task_from_dict

FORMAT = "polyhead-onnx"
FORMAT_VERSION = 1
INPUT = "images"
RESIZE = ("squash to image_size (no crop) with Pillow's bilinear filter, antialiased when shrinking; "
          "EXIF orientation applied; transparency composited onto white; the first frame of an animation")
# Task keys a client needs to decode probabilities (training-only keys such as `table` stay out).
DECODING_KEYS = ("name", "type", "classes", "top_k", "threshold", "thresholds", "positive")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def output_names(task: str) -> dict[str, str]:
    """The graph's output names for one task: its probabilities and its logits."""
    return {"probabilities": task, "logits": f"{task}_logits"}


def check_output_names(tasks: list[str]) -> None:
    """Every output name must be unique and differ from the input's (a task called
    'images', or tasks 'a' and 'a_logits', would collide)."""
    names = [INPUT] + [n for t in tasks for n in output_names(t).values()]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise PolyheadError(f"cannot export: the graph's input/output names would collide ({', '.join(clash)}); "
                            f"outputs are named <task> and <task>_logits, the input '{INPUT}': rename the task(s)")


def check_model_name(name: str, flag: str = "--name") -> str:
    """A model name is a folder name in a Triton repository and a URL path segment in a server."""
    if not _NAME.match(name or ""):
        raise PolyheadError(f"{flag} {name!r}: a model name may hold letters, digits, '_', '-' and '.', "
                            "and starts with a letter, digit or '_'")
    return name


def build_metadata(*, name: str, tasks: dict[str, Task], image_size, channels: int, mean, std,
                   backbone: str) -> dict[str, str]:
    """The {key: JSON text} mapping stored in the graph (keys in the module docstring)."""
    activation = {"multiclass": "softmax"}
    values = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "polyhead_version": __version__, "name": name,
        "input": INPUT, "input_layout": "NCHW", "input_dtype": "float32", "input_range": "0..1",
        "image_size": [int(s) for s in image_size], "channels": int(channels),
        "color_mode": "L" if channels == 1 else "RGB", "resize": RESIZE,
        "mean": [float(m) for m in mean], "std": [float(s) for s in std],
        "tasks": [{k: t.to_dict().get(k) for k in DECODING_KEYS} for t in tasks.values()],
        "outputs": {n: {**output_names(n), "activation": activation.get(t.type, "sigmoid")} for n, t in tasks.items()},
        "backbone": backbone,
    }
    return {k: json.dumps(v) for k, v in values.items()}


def parse_metadata(props: dict[str, str], where: str) -> dict:
    """{key: JSON text} read from a graph -> {key: value}; checks that polyhead wrote it."""
    try:
        meta = {k: json.loads(v) for k, v in props.items()}
    except json.JSONDecodeError as exc:
        raise PolyheadError(f"'{where}': polyhead metadata is not valid JSON ({exc})") from None
    if meta.get("format") != FORMAT or int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise PolyheadError(f"'{where}' is not an ONNX graph exported by this polyhead ({__version__}): "
                            f"metadata format {meta.get('format')!r} v{meta.get('format_version')}; "
                            "re-export it with `polyhead export RUN`")
    return meta


def tasks_from_metadata(meta: dict) -> dict[str, Task]:
    """Rebuild the Task objects (classes, thresholds, top-k), in output order."""
    tasks = {}
    for d in meta["tasks"]:
        task = task_from_dict({k: v for k, v in d.items() if v is not None})
        tasks[task.name] = task
    return tasks
