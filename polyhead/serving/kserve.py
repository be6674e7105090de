"""Open Inference Protocol (KServe v2) over REST, as Triton serves it.

    GET  /v2                                      server metadata (extensions)
    GET  /v2/health/live, /v2/health/ready
    GET  /v2/models/{name}[/versions/1]           model metadata: inputs, outputs
    GET  /v2/models/{name}[/versions/1]/ready
    POST /v2/models/{name}[/versions/1]/infer

Inputs (send exactly one):
    image_bytes  BYTES [N]             encoded images (PNG, JPEG, WebP...); in JSON, base64 text
    images       FP32  [N, C, H, W]    pixels already resized to the model's size, in [0, 1]
Outputs, per task:
    <task>        FP32  [N, K]   probabilities (softmax for multiclass, sigmoid otherwise)
    <task>_label  BYTES [N]      the decoded label (multilabel: a JSON list of the labels over threshold)
Extensions: binary tensor data (tritonclient's default) and classification (`class_count`:
BYTES [N, k] of "probability:index:label", best first).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response

from polyhead import __version__
from polyhead.serving import tensors
from polyhead.serving.inputs import b64decode, check_tensor
from polyhead.serving.limits import RequestError, check_instances, decompress, require_media_type
from polyhead.serving.service import VERSION, ModelService

BYTES_INPUT, FP32_INPUT = "image_bytes", "images"
_ONE_INPUT = (f"expected a list of one input: {BYTES_INPUT!r} (BYTES [N], encoded images) or "
              f"{FP32_INPUT!r} (FP32 [N, C, H, W] in [0, 1])")

_TENSOR = {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
    "name": {"type": "string", "enum": [BYTES_INPUT, FP32_INPUT]},
    "datatype": {"type": "string", "enum": ["BYTES", "FP32"]},
    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
    "data": {"type": "array"},
    "parameters": {"type": "object", "properties": {"binary_data_size": {"type": "integer", "minimum": 0}}}}}
_OUTPUT = {"type": "object", "required": ["name"], "properties": {
    "name": {"type": "string"},
    "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"},
                                                    "classification": {"type": "integer", "minimum": 0}}}}}
INFER_REQUEST = {"type": "object", "required": ["inputs"], "properties": {
    "id": {"type": "string"},
    "parameters": {"type": "object", "properties": {"binary_data_output": {"type": "boolean"}}},
    "inputs": {"type": "array", "items": _TENSOR, "minItems": 1, "maxItems": 1},
    "outputs": {"type": "array", "items": _OUTPUT}}}
_INFER_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": INFER_REQUEST},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}


def router(service: ModelService) -> APIRouter:
    api = APIRouter(tags=["KServe v2"])

    @api.get("/v2")
    def server_metadata() -> dict:
        return {"name": "polyhead", "version": __version__, "extensions": ["binary_tensor_data", "classification"]}

    @api.get("/v2/health/live")
    def live() -> dict:
        return {"live": True}

    @api.get("/v2/health/ready")
    def ready() -> dict:
        return {"ready": True}

    @api.get("/v2/models/{name}")
    @api.get("/v2/models/{name}/versions/{version}")
    def model_metadata(name: str, version: str | None = None) -> dict:
        service.check(name, version)
        return metadata(service)

    @api.get("/v2/models/{name}/ready")
    @api.get("/v2/models/{name}/versions/{version}/ready")
    def model_ready(name: str, version: str | None = None) -> dict:
        service.check(name, version)
        return {"name": service.name, "ready": True}

    @api.post("/v2/models/{name}/infer", openapi_extra=_INFER_DOC)
    @api.post("/v2/models/{name}/versions/{version}/infer", openapi_extra=_INFER_DOC)
    async def infer(request: Request, name: str, version: str | None = None) -> Response:
        service.check(name, version)
        body, headers = await run_infer(service, request)
        return Response(body, headers=headers)

    return api


def metadata(service: ModelService) -> dict:
    runner = service.runner
    chw = [runner.channels, *runner.image_size]
    outputs = []
    for name, task in service.tasks.items():
        outputs.append({"name": name, "datatype": "FP32", "shape": [-1, task.num_outputs]})
        outputs.append({"name": f"{name}_label", "datatype": "BYTES", "shape": [-1]})
    return {"name": service.name, "versions": [VERSION], "platform": f"polyhead_{runner.backend}",
            "inputs": [{"name": BYTES_INPUT, "datatype": "BYTES", "shape": [-1]},
                       {"name": FP32_INPUT, "datatype": "FP32", "shape": [-1, *chw]}],
            "outputs": outputs}


async def run_infer(service: ModelService, request: Request) -> tuple[bytes, dict[str, str]]:
    """One infer request -> (response body, headers)."""
    media = require_media_type(request.headers.get("content-type"), ("", "application/json", "application/octet-stream"))
    body = decompress(await request.body(), request.headers.get("content-encoding"), service.limits.max_bytes)
    header, tail = tensors.split_body(body, request.headers.get("inference-header-content-length"),
                                      media == "application/octet-stream")
    if not isinstance(header, dict):
        raise RequestError(400, "request body: expected a JSON object with 'inputs'")
    wanted = requested_outputs(service, header)  # checked before the model runs
    images = await read_input(service, header, tail)
    probs = await service.probabilities(images)
    columns = service.columns(probs)
    entries, chunks = [], []
    for name, binary, classes in wanted:
        value, shape = output_value(service, name, classes, probs, columns)
        entry, chunk = tensors.output_tensor(name, value, shape, binary)
        entries.append(entry)
        chunks.append(chunk)
    out: dict[str, Any] = {"model_name": service.name, "model_version": VERSION, "outputs": entries}
    if isinstance(header.get("id"), str):
        out["id"] = header["id"]
    return tensors.response_body(out, chunks, any(binary for _, binary, _ in wanted))


async def read_input(service: ModelService, header: dict, tail: bytes) -> np.ndarray:
    """The request's one input -> float32 [N, C, H, W] in [0, 1]."""
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise RequestError(400, f"inputs: {_ONE_INPUT}")
    spec, chunk = inputs[0], tensors.take_binary(inputs, tail)[0]
    name, datatype, shape = spec.get("name"), spec.get("datatype"), spec.get("shape")
    if name not in (BYTES_INPUT, FP32_INPUT):
        raise RequestError(400, f"inputs[0].name {name!r}: {_ONE_INPUT}")
    want = "BYTES" if name == BYTES_INPUT else "FP32"
    if datatype != want:
        raise RequestError(400, f"inputs[0].datatype {datatype!r}: input {name!r} is {want}")
    if not isinstance(shape, list) or not shape or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           and s >= 0 for s in shape):
        raise RequestError(400, f"inputs[0].shape {shape!r}: expected a list of non-negative integers, batch first")
    check_instances(shape[0], service.limits, "inputs[0].shape[0]")
    if name == FP32_INPUT:
        data = tensors.unpack_fp32(chunk, shape, "inputs[0]") if chunk is not None else spec.get("data")
        if data is None:
            raise RequestError(400, "inputs[0].data: missing (or send it as binary data)")
        return check_tensor(data, "inputs[0].data", service.runner, shape)
    count = math.prod(shape)
    if count != shape[0]:
        raise RequestError(400, f"inputs[0].shape {shape}: BYTES input is one encoded image per row, shape [N]")
    items = tensors.unpack_bytes(chunk, "inputs[0]") if chunk is not None else _json_bytes(spec.get("data"))
    if len(items) != count:
        raise RequestError(400, f"inputs[0]: {len(items)} elements for shape {shape}")
    return await service.decode(items, [f"inputs[0] element {i}" for i in range(count)])


def _json_bytes(data: Any) -> list[bytes]:
    """JSON BYTES elements: base64 text (or {"b64": text}), since encoded images are not UTF-8."""
    if not isinstance(data, list):
        raise RequestError(400, "inputs[0].data: expected a list of base64-encoded images")
    if all(isinstance(d, list) and len(d) == 1 for d in data):  # shape [N, 1] sent nested
        data = [d[0] for d in data]
    return [b64decode(d.get("b64") if isinstance(d, dict) else d, f"inputs[0].data[{i}]") for i, d in enumerate(data)]


def requested_outputs(service: ModelService, header: dict) -> list[tuple[str, bool, int]]:
    """[(output name, binary, classification count)]; all outputs when the request names none."""
    params = header.get("parameters")
    params = params if isinstance(params, dict) else {}
    binary_default = params.get("binary_data_output", False) is True
    names = [n for task in service.tasks for n in (task, f"{task}_label")]
    requested = header.get("outputs")
    if requested is None:
        return [(n, binary_default, 0) for n in names]
    if not isinstance(requested, list):
        raise RequestError(400, "outputs: expected a list of {\"name\": ...}")
    wanted = []
    for i, spec in enumerate(requested):
        name = spec.get("name") if isinstance(spec, dict) else None
        if name not in names:
            raise RequestError(400, f"outputs[{i}].name {name!r}: expected one of {', '.join(names)}")
        p = spec.get("parameters") or {}
        if not isinstance(p, dict):
            raise RequestError(400, f"outputs[{i}].parameters: expected an object")
        binary, classes = p.get("binary_data", binary_default), p.get("classification", 0)
        if not isinstance(binary, bool):
            raise RequestError(400, f"outputs[{i}].parameters.binary_data {binary!r}: expected true or false")
        k = service.tasks[name].num_outputs if name in service.tasks else 0
        if classes != 0 and (not isinstance(classes, int) or isinstance(classes, bool) or not 0 < classes <= k):
            raise RequestError(400, f"outputs[{i}].parameters.classification {classes!r}: expected 1..{k}"
                                    + ("" if k else f" on a probability output ({', '.join(service.tasks)})"))
        wanted.append((name, binary, classes))
    return wanted


def output_value(service: ModelService, name: str, classes: int, probs: dict[str, np.ndarray],
                 columns: dict[str, list]) -> tuple[np.ndarray | list[bytes], list[int]]:
    """(FP32 array or BYTES items, shape) of one output."""
    if name in service.tasks:
        p = probs[name]
        if not classes:
            return p, list(p.shape)
        labels = service.tasks[name].classes
        order = np.argsort(-p, axis=1, kind="stable")[:, :classes]
        items = [f"{p[r, j]:f}:{j}:{labels[j]}".encode() for r in range(len(p)) for j in order[r]]
        return items, [len(p), classes]
    task = name[: -len("_label")]
    labels = columns[task]
    items = [(json.dumps(v) if isinstance(v, list) else str(v)).encode() for v in labels]
    return items, [len(items)]
