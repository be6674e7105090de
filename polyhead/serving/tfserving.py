"""TensorFlow-Serving-style REST.

    GET  /v1/models/{name}[/versions/1]             model status (model_version_status)
    POST /v1/models/{name}[/versions/1]:predict

Request (application/json), row form — answered with {"predictions": [row, ...]}:
    {"instances": [{"b64": "<base64 image>"}, {"url": "https://..."}, [[[...]]], ...]}
an instance is an encoded image ({"b64": ...}, or {"image_bytes": {"b64": ...}}), an image URL
the server fetches ({"url": ...}, see polyhead.serving.urls), or pre-processed pixels
([C, H, W] nested lists in [0, 1], or {"images": [C, H, W]}).
Column form — answered with {"outputs": {column: [value per image]}}:
    {"inputs": [same items as instances]}  or  {"inputs": {"image_bytes": [{"b64": ...}, ...]}}
                                           or  {"inputs": {"images": [[C, H, W], ...]}}
A raw image body (Content-Type image/*) is one instance.

A row holds exactly the columns `polyhead predict` writes for the image (Task.decode):
    multiclass: <task>, <task>_prob, <task>_top<k>, <task>_top<k>_prob
    binary:     <task>, <task>_prob
    multilabel: <task> (labels over threshold), <task>_prob_<label> per label
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from fastapi import APIRouter, Request

from polyhead.serving.inputs import b64decode, check_tensor
from polyhead.serving.limits import RequestError, check_instances, decompress, parse_json, require_media_type
from polyhead.serving.service import VERSION, ModelService
from polyhead.serving.urls import fetch_image

_INSTANCE = {"oneOf": [
    {"type": "object", "required": ["b64"], "properties": {"b64": {"type": "string"}}},
    {"type": "object", "required": ["url"], "properties": {"url": {"type": "string"}}},
    {"type": "array", "items": {"type": "array"}}]}
PREDICT_REQUEST = {"type": "object", "properties": {
    "signature_name": {"type": "string"},
    "instances": {"type": "array", "items": _INSTANCE},
    "inputs": {"oneOf": [{"type": "array", "items": _INSTANCE}, {"type": "object"}]}}}
_PREDICT_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": PREDICT_REQUEST},
    "image/png": {"schema": {"type": "string", "format": "binary"}}}}}
_TOP_LEVEL = ("instances", "inputs", "signature_name")


def router(service: ModelService) -> APIRouter:
    api = APIRouter(tags=["TF-Serving style"])

    @api.get("/v1/models/{name}")
    @api.get("/v1/models/{name}/versions/{version}")
    def model_status(name: str, version: str | None = None) -> dict:
        service.check(name, version)
        return {"model_version_status": [{"version": VERSION, "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}]}

    @api.post("/v1/models/{name}:predict", openapi_extra=_PREDICT_DOC)
    @api.post("/v1/models/{name}/versions/{version}:predict", openapi_extra=_PREDICT_DOC)
    async def predict(request: Request, name: str, version: str | None = None) -> dict:
        service.check(name, version)
        media = require_media_type(request.headers.get("content-type"), ("", "application/json", "image/*"))
        body = decompress(await request.body(), request.headers.get("content-encoding"), service.limits.max_bytes)
        if media.startswith("image/"):
            items, columnar = [("bytes", body, "request body")], False
        else:
            items, columnar = parse_request(parse_json(body))
        check_instances(len(items), service.limits, "inputs" if columnar else "instances")
        images = await to_images(service, items)
        columns = service.columns(await service.probabilities(images))
        if columnar:
            return {"outputs": columns}
        return {"predictions": [{k: v[i] for k, v in columns.items()} for i in range(len(images))]}

    return api


def parse_request(body: Any) -> tuple[list[tuple[str, Any, str]], bool]:
    """JSON request -> ([(kind, value, field)], columnar); kind is "bytes", "url" or "pixels"."""
    if not isinstance(body, dict):
        raise RequestError(400, "request body: expected a JSON object with 'instances' or 'inputs'")
    unknown = [k for k in body if k not in _TOP_LEVEL]
    if unknown:
        raise RequestError(400, f"unknown field {unknown[0]!r}; expected 'instances' or 'inputs' "
                                f"(and optionally 'signature_name')")
    if body.get("signature_name", "serving_default") != "serving_default":
        raise RequestError(400, f"signature_name {body['signature_name']!r}: the only signature is 'serving_default'")
    if ("instances" in body) == ("inputs" in body):
        raise RequestError(400, "request body: give exactly one of 'instances' (rows) or 'inputs' (columns)")
    if "instances" in body:
        return _items(body["instances"], "instances"), False
    inputs = body["inputs"]
    if isinstance(inputs, dict) and len(inputs) == 1 and next(iter(inputs)) in ("image_bytes", "images"):
        key, values = next(iter(inputs.items()))
        field = f"inputs.{key}"
        if not isinstance(values, list):
            raise RequestError(400, f"{field}: expected a list with one entry per image")
        return [_item({key: v}, f"{field}[{i}]") for i, v in enumerate(values)], True
    if isinstance(inputs, dict):
        raise RequestError(400, "inputs: expected a list like 'instances', or {\"image_bytes\": [...]} "
                                "or {\"images\": [...]}")
    return _items(inputs, "inputs"), True


def _items(values: Any, field: str) -> list[tuple[str, Any, str]]:
    if not isinstance(values, list):
        raise RequestError(400, f"{field}: expected a list with one entry per image")
    return [_item(v, f"{field}[{i}]") for i, v in enumerate(values)]


def _item(value: Any, field: str) -> tuple[str, Any, str]:
    if isinstance(value, dict) and len(value) == 1:
        (key, inner), = value.items()
        if key == "image_bytes":  # TF-Serving's named input: {"image_bytes": {"b64": ...}}
            return _item(inner if isinstance(inner, dict) else {"b64": inner}, f"{field}.image_bytes")
        if key == "images":
            return _item(inner, f"{field}.images")
        if key == "b64":
            return "bytes", b64decode(inner, f"{field}.b64"), field
        if key == "url":
            if not isinstance(inner, str):
                raise RequestError(400, f"{field}.url: expected a string")
            return "url", inner, field
    if isinstance(value, list):
        return "pixels", value, field
    raise RequestError(400, f"{field}: expected {{\"b64\": <base64 image>}}, {{\"url\": <image URL>}} or "
                            f"[C, H, W] pixel values in [0, 1]")


async def to_images(service: ModelService, items: list[tuple[str, Any, str]]) -> np.ndarray:
    """Items -> float32 [N, C, H, W]: URLs fetched concurrently, encoded images decoded together."""
    pixels = [check_tensor([v], f, service.runner)[0] if k == "pixels" else None for k, v, f in items]
    fetched = await asyncio.gather(*(fetch_image(v, service.limits, service.limits.max_bytes)
                                     for kind, v, _ in items if kind == "url"))
    encoded, names, slots = [], [], []
    urls = iter(fetched)
    for i, (kind, value, field) in enumerate(items):
        if kind != "pixels":
            encoded.append(next(urls) if kind == "url" else value)
            names.append(field if kind == "bytes" else value)
            slots.append(i)
    decoded = await service.decode(encoded, names) if encoded else []
    for slot, image in zip(slots, decoded):
        pixels[slot] = image
    return np.stack(pixels)
