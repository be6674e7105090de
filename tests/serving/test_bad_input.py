"""Bad input gets one clear 4xx naming what was wrong, and the server keeps serving.

Limits here are small (bodies of 64 KiB, 4 images, 10,000 pixels) so every case is cheap."""

from __future__ import annotations

import base64
import gzip
import io
import json
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from PIL import Image
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from serving_fixtures import live_server, served_run  # noqa: F401  (fixture)

from polyhead.serving.app import create_app
from polyhead.serving.limits import Limits
from polyhead.serving.runner import load_runner

LIMITS = Limits(max_bytes=64 * 1024, max_instances=4, max_pixels=10_000)


@pytest.fixture(scope="module")
def server(served_run):  # noqa: F811
    app = create_app(load_runner(served_run["run"], device="cpu"), limits=LIMITS, max_wait_ms=2)
    with live_server(app) as url:
        yield {"url": url, **served_run}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_header(width: int, height: int) -> bytes:
    """A PNG declaring width x height whose pixel data is cut off: only its header can be read."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
            + struct.pack(">I", 1000) + b"IDAT" + b"\x78\x9c\x00\x00")


def _tf(server, body=None, **kwargs) -> httpx.Response:
    if body is not None:
        kwargs["json"] = body
    return httpx.post(f"{server['url']}/v1/models/quads:predict", timeout=60, **kwargs)


def _v2(server, body=None, **kwargs) -> httpx.Response:
    if body is not None:
        kwargs["json"] = body
    return httpx.post(f"{server['url']}/v2/models/quads/infer", timeout=60, **kwargs)


def _bytes_input(*images: bytes) -> dict:
    return {"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [len(images)],
                        "data": [_b64(i) for i in images]}]}


def _text(chunks: int):
    for _ in range(chunks):
        yield b"x" * 16384


CASES = [  # (name, send, status, fragment of the error message)
    ("body over --max-bytes (declared)", lambda s: _tf(s, content=b"{" + b" " * 70000 + b"}"), 413, "over the limit of 65536"),
    ("body over --max-bytes (chunked)", lambda s: _tf(s, content=_text(5)), 413, "over the limit of 65536"),
    ("gzip bomb", lambda s: _tf(s, content=gzip.compress(b" " * 200000), headers={"Content-Encoding": "gzip"}),
     413, "inflates to more than"),
    ("too many instances", lambda s: _tf(s, {"instances": [{"b64": _b64(_png(4, 4))}] * 5}), 413, "5 images, over the limit of 4"),
    ("too many instances (v2)", lambda s: _v2(s, _bytes_input(*[_png(4, 4)] * 5)), 413, "over the limit of 4"),
    ("over the pixel limit", lambda s: _tf(s, {"instances": [{"b64": _b64(_png_header(200, 100))}]}), 413,
     "cannot read image 'instances[0]': 200x100 = 20000 pixels is above the limit of 10000"),
    ("over the pixel limit (v2)", lambda s: _v2(s, _bytes_input(_png(4, 4), _png_header(5000, 5000))), 413,
     "'inputs[0] element 1': 5000x5000"),
    ("not an image", lambda s: _tf(s, {"instances": [{"b64": _b64(b"hello")}]}), 400, "instances[0]': not an image"),
    ("truncated", lambda s: _tf(s, {"instances": [{"b64": _b64(_png(64, 64)[:60])}]}), 400, "truncated"),
    ("bad JSON", lambda s: _tf(s, content=b"{\"instances\": [", headers={"Content-Type": "application/json"}), 400,
     "not valid JSON"),
    ("unknown field", lambda s: _tf(s, {"instance": []}), 400, "unknown field 'instance'"),
    ("body not an object", lambda s: _tf(s, [{"b64": "x"}]), 400, "expected a JSON object with 'instances'"),
    ("v2 body not an object", lambda s: _v2(s, [1, 2]), 400, "expected a JSON object with 'inputs'"),
    ("instances not a list", lambda s: _tf(s, {"instances": {"b64": "x"}}), 400, "instances: expected a list"),
    ("bad base64", lambda s: _tf(s, {"instances": [{"b64": "not base64!"}]}), 400, "instances[0].b64: not valid base64"),
    ("wrong pixel shape", lambda s: _tf(s, {"instances": [np.zeros((3, 8, 8)).tolist()]}), 400,
     "instances[0]: shape [1, 3, 8, 8]; expected [N, 3, 16, 16]"),
    ("pixels out of range", lambda s: _tf(s, {"instances": [np.full((3, 16, 16), 255.0).tolist()]}), 400, "in [0, 1]"),
    ("v2 wrong datatype", lambda s: _v2(s, {"inputs": [{"name": "images", "datatype": "INT8", "shape": [1]}]}), 400,
     "inputs[0].datatype 'INT8': input 'images' is FP32"),
    ("v2 unknown input", lambda s: _v2(s, {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}), 400,
     "inputs[0].name 'x'"),
    ("v2 data does not fill shape", lambda s: _v2(s, {"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 3, 16, 16],
                                                                  "data": [0.5] * 10}]}), 400, "10 values do not fill shape"),
    ("v2 unknown output", lambda s: _v2(s, {**_bytes_input(_png(4, 4)), "outputs": [{"name": "colour"}]}), 400,
     "outputs[0].name 'colour'"),
    ("v2 binary without header length", lambda s: _v2(s, content=b"\x00" * 8,
                                                      headers={"Content-Type": "application/octet-stream"}), 400,
     "needs the Inference-Header-Content-Length"),
    ("v2 binary sizes do not add up", lambda s: _v2(s, content=json.dumps({"inputs": [
        {"name": "image_bytes", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 50}}]}).encode() + b"abc",
        headers={"Inference-Header-Content-Length": str(len(json.dumps({"inputs": [
            {"name": "image_bytes", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 50}}]})))}),
     400, "binary_data_size 50: only 3 bytes"),
    ("wrong content type", lambda s: _tf(s, content=b"instances=1", headers={"Content-Type": "text/plain"}), 415,
     "Content-Type 'text/plain' is not accepted"),
    ("wrong content type (v2)", lambda s: _v2(s, content=b"a=1", headers={"Content-Type": "application/x-www-form-urlencoded"}),
     415, "is not accepted"),
    ("unknown content encoding", lambda s: _tf(s, content=b"{}", headers={"Content-Encoding": "br"}), 415, "'br'"),
    ("unknown model", lambda s: httpx.post(f"{s['url']}/v1/models/other:predict", json={"instances": []}), 404,
     "unknown model 'other'"),
]


@pytest.mark.parametrize("name, send, status, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_request_gets_a_clear_4xx(server, name, send, status, fragment):
    response = send(server)
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert fragment in message and "\n" not in message and "Traceback" not in message


def test_gzip_body_is_accepted(server):
    image = next(server["images"].iterdir())
    body = gzip.compress(json.dumps({"instances": [{"b64": _b64(image.read_bytes())}]}).encode())
    response = _tf(server, content=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert response.status_code == 200
    assert response.json()["predictions"][0]["quadrant"] == server["predict"].loc[image.name, "quadrant"]


def test_bad_requests_next_to_good_ones_leave_the_good_ones_intact(server):
    files = sorted(server["images"].iterdir())[:4]
    good = [(f, lambda s, f=f: _tf(s, {"instances": [{"b64": _b64(f.read_bytes())}]})) for f in files] * 4
    bad = [(None, case[1]) for case in CASES] * 2
    jobs = [j for pair in zip(good + [None] * len(bad), bad + [None] * len(good)) for j in pair if j is not None]
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda job: (job[0], job[1](server)), jobs))
    answered_good = [(f, r) for f, r in responses if f is not None]
    assert len(answered_good) == len(good)
    for f, r in answered_good:
        assert r.status_code == 200, r.text
        assert r.json()["predictions"][0]["quadrant"] == server["predict"].loc[f.name, "quadrant"]
    assert all(400 <= r.status_code < 500 for f, r in responses if f is None)
    assert httpx.get(f"{server['url']}/v2/health/ready").status_code == 200


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_schemathesis_finds_no_server_error(server, mode):
    """Every operation of /openapi.json, with bodies that fit the schema (positive) and that break it
    (negative); the model name is the served one, so requests reach the protocol code, not just a 404."""
    schema = schemathesis.openapi.from_url(f"{server['url']}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        if mode == GenerationMode.NEGATIVE and operation.method.upper() != "POST":
            continue  # nothing to break in a GET whose only parameter is the (fixed) model name
        fixed = {"name": "quads"} if "{name}" in operation.path else None
        strategy = operation.as_strategy(mode, path_parameters=fixed)

        @given(case=strategy)
        @settings(max_examples=10, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def check(case):
            case.call_and_validate(checks=[not_a_server_error], timeout=60)

        check()
    assert httpx.get(f"{server['url']}/v2/health/live").status_code == 200
