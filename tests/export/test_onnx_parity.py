"""ONNX export: onnxruntime predicts what PyTorch predicts, on any batch size, and the graph
carries the metadata a client needs.

Reference: the bundle's PyTorch model, loaded back from disk, run in float32 on the same images
(PNG files decoded by polyhead's image path)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export_models import MODELS, TASKS, make_bundle, write_images
from polyhead import __version__
from polyhead.export import MIN_OPSET, MAX_OPSET
from polyhead.export.onnx import export_onnx
from polyhead.export.parity import TOLERANCE, label_columns, load_images
from polyhead.export.runtime import OnnxRunner
from polyhead.model.bundle import load_bundle

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def _export(tmp_path, model: str, opset: int = 17):
    bundle_dir = make_bundle(tmp_path / "bundle", model)
    graph = export_onnx(load_bundle(bundle_dir), tmp_path / "export" / "model.onnx", name=model, opset=opset)
    size = MODELS[model][1]
    images = load_images(write_images(tmp_path / "images", n=8), channels=3, size=(size, size))
    return load_bundle(bundle_dir), graph, images


def _torch_probs(bundle, images: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        logits = bundle.model.eval()(torch.from_numpy(images))
    return {n: t.activate(logits[n]).numpy() for n, t in bundle.tasks.items()}


def _assert_parity(bundle, runner: OnnxRunner, images: np.ndarray) -> dict[str, float]:
    expected, got = _torch_probs(bundle, images), runner.probabilities(images)
    diffs = {}
    for name, task in bundle.tasks.items():
        assert got[name].shape == expected[name].shape == (len(images), task.num_outputs)
        diffs[name] = float(np.abs(got[name] - expected[name]).max())
        assert diffs[name] <= TOLERANCE, (name, diffs[name])
        decoded = [label_columns(task, task.decode(torch.from_numpy(p))) for p in (expected[name], got[name])]
        assert decoded[0] == decoded[1], name
    return diffs


@pytest.mark.parametrize("model", list(MODELS))
def test_onnxruntime_matches_pytorch(tmp_path, model):
    """Every task, every image: probabilities within 1e-4 and the same decoded predictions."""
    bundle, graph, images = _export(tmp_path, model)
    runner = OnnxRunner(graph)
    _assert_parity(bundle, runner, images)
    logits = runner.logits(images)  # logits stay available beside the probabilities
    with torch.no_grad():
        reference = bundle.model(torch.from_numpy(images))
    for name in bundle.tasks:
        assert np.abs(logits[name] - reference[name].numpy()).max() <= 1e-3


@pytest.mark.parametrize("model, opset", [("small_cnn", MIN_OPSET), ("small_cnn", MAX_OPSET),
                                          ("efficientnet_lite0", MIN_OPSET), ("branch_point", MIN_OPSET)])
def test_parity_at_the_opset_limits(tmp_path, model, opset):
    bundle, graph, images = _export(tmp_path, model, opset)
    assert onnx.load(str(graph)).opset_import[0].version == opset
    _assert_parity(bundle, OnnxRunner(graph), images)


def test_dynamic_batch_axis(tmp_path):
    """The batch axis is symbolic on the input and on every output; batches of 1 and 5 run."""
    bundle, graph, _ = _export(tmp_path, "small_cnn")
    proto = onnx.load(str(graph))
    tensors = list(proto.graph.input) + list(proto.graph.output)
    assert [t.name for t in proto.graph.input] == ["images"]
    assert [t.name for t in proto.graph.output] == ["quadrant", "red", "tags",
                                                    "quadrant_logits", "red_logits", "tags_logits"]
    for t in tensors:
        first = t.type.tensor_type.shape.dim[0]
        assert first.dim_param and not first.dim_value, t.name
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim[1:]] == [3, 16, 16]
    runner = OnnxRunner(graph)
    for n in (1, 5):
        images = load_images(write_images(tmp_path / f"b{n}", n=n), channels=3, size=(16, 16))
        _assert_parity(bundle, runner, images)


def test_metadata_is_complete_and_readable(tmp_path):
    bundle, graph, _ = _export(tmp_path, "efficientnet_lite0")
    props = {p.key: p.value for p in onnx.load(str(graph)).metadata_props}
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map == props  # the same through onnxruntime
    meta = {k: json.loads(v) for k, v in props.items()}
    assert set(meta) == {"format", "format_version", "polyhead_version", "name", "input", "input_layout",
                         "input_dtype", "input_range", "image_size", "channels", "color_mode", "resize", "mean",
                         "std", "tasks", "outputs", "backbone"}
    assert (meta["format"], meta["polyhead_version"], meta["name"]) == ("polyhead-onnx", __version__,
                                                                       "efficientnet_lite0")
    assert (meta["input"], meta["input_layout"], meta["input_dtype"], meta["input_range"]) == (
        "images", "NCHW", "float32", "0..1")
    assert meta["image_size"] == [64, 64] and meta["channels"] == 3 and meta["color_mode"] == "RGB"
    assert np.allclose(meta["mean"], IMAGENET[0]) and np.allclose(meta["std"], IMAGENET[1])
    assert meta["backbone"] == "efficientnet_lite0"
    tasks = {t["name"]: t for t in meta["tasks"]}
    assert list(tasks) == list(TASKS)
    for name, cfg in TASKS.items():
        assert tasks[name]["type"] == cfg.type and tasks[name]["classes"] == cfg.classes
        assert tasks[name]["top_k"] == cfg.top_k and tasks[name]["threshold"] == cfg.threshold
    assert tasks["tags"]["thresholds"] == {"warm": 0.3}
    assert meta["outputs"]["quadrant"] == {"probabilities": "quadrant", "logits": "quadrant_logits",
                                           "activation": "softmax"}
    assert meta["outputs"]["tags"]["activation"] == meta["outputs"]["red"]["activation"] == "sigmoid"
    runner = OnnxRunner(tmp_path / "export")  # the Runner rebuilds the Task objects from it
    assert runner.name == "efficientnet_lite0" and runner.image_size == (64, 64) and runner.channels == 3
    assert [t.to_dict() for t in runner.tasks.values()] == [t.to_dict() for t in bundle.tasks.values()]
