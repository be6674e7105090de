"""Both protocols against a live server, called by third-party clients: tritonclient.http (KServe v2)
and plain JSON over HTTP (TF-Serving style). Every label equals what `polyhead predict` wrote."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from PIL import Image
from serving_fixtures import live_server, served_run  # noqa: F401  (fixture)
from tritonclient.utils import InferenceServerException

from polyhead.serving.app import create_app
from polyhead.serving.runner import load_runner

TASKS = ("quadrant", "red", "tags")


@pytest.fixture(scope="module")
def server(served_run):  # noqa: F811
    app = create_app(load_runner(served_run["run"], device="cpu"), max_wait_ms=2)
    with live_server(app) as url:
        yield {"url": url, **served_run}


def _files(server, n=6):
    return sorted(server["images"].iterdir())[:n]


def _pixels(path) -> np.ndarray:
    """float32 [3, 16, 16] in [0, 1], read with Pillow alone (the images are already 16x16 RGB)."""
    return (np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0).transpose(2, 0, 1)


def _client(server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=server["url"].removeprefix("http://"))


def _assert_like_predict(server, files, labels: dict, probs: dict):
    """labels/probs: {task: one value per file} from the server; compared with `polyhead predict`."""
    expected = server["predict"].loc[[f.name for f in files]]
    assert labels["quadrant"] == list(expected["quadrant"])
    assert labels["red"] == list(expected["red"])
    assert labels["tags"] == [list(t) for t in expected["tags"]]
    np.testing.assert_allclose(probs["quadrant"].max(axis=1), expected["quadrant_prob"], atol=1e-5)
    np.testing.assert_allclose(probs["red"][:, 0], expected["red_prob"], atol=1e-5)
    for j, label in enumerate(("left", "top", "warm")):
        np.testing.assert_allclose(probs["tags"][:, j], expected[f"tags_prob_{label}"], atol=1e-5)


def _triton_labels(result) -> tuple[dict, dict]:
    # binary outputs come back as bytes, JSON ones as str
    labels = {t: [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy(f"{t}_label").reshape(-1)]
              for t in TASKS}
    labels["tags"] = [json.loads(v) for v in labels["tags"]]
    return labels, {t: result.as_numpy(t) for t in TASKS}


def test_tritonclient_health_metadata_and_unknown_model(server):
    client = _client(server)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("quads")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata("quads")
    assert {(i["name"], i["datatype"], tuple(i["shape"])) for i in meta["inputs"]} == {
        ("image_bytes", "BYTES", (-1,)), ("images", "FP32", (-1, 3, 16, 16))}
    assert [(o["name"], o["shape"]) for o in meta["outputs"]] == [
        ("quadrant", [-1, 4]), ("quadrant_label", [-1]), ("red", [-1, 1]), ("red_label", [-1]),
        ("tags", [-1, 3]), ("tags_label", [-1])]
    assert client.get_model_metadata("quads", model_version="1")["name"] == "quads"
    for call in (lambda: client.get_model_metadata("nope"), lambda: client.is_model_ready("nope") or 1 / 0,
                 lambda: client.get_model_metadata("quads", model_version="2")):
        with pytest.raises((InferenceServerException, ZeroDivisionError)) as info:
            call()
        if isinstance(info.value, InferenceServerException):
            assert info.value.status() == "404"


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_encoded_images_match_predict(server, binary):
    files = _files(server)
    encoded = triton.InferInput("image_bytes", [len(files)], "BYTES")
    if binary:  # tritonclient's default: the binary tensor data extension, both ways
        encoded.set_data_from_numpy(np.array([f.read_bytes() for f in files], dtype=object))
        outputs = None
    else:  # JSON: BYTES elements as base64 text (encoded images are not UTF-8)
        encoded.set_data_from_numpy(np.array([base64.b64encode(f.read_bytes()) for f in files], dtype=object),
                                    binary_data=False)
        outputs = [triton.InferRequestedOutput(n, binary_data=False) for t in TASKS for n in (t, f"{t}_label")]
    result = _client(server).infer("quads", [encoded], outputs=outputs, request_id="r1")
    assert result.get_response()["id"] == "r1"
    _assert_like_predict(server, files, *_triton_labels(result))


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_fp32_pixels_match_predict(server, binary):
    files = _files(server, 5)
    pixels = triton.InferInput("images", [len(files), 3, 16, 16], "FP32")
    pixels.set_data_from_numpy(np.stack([_pixels(f) for f in files]), binary_data=binary)
    outputs = [triton.InferRequestedOutput(n, binary_data=binary) for t in TASKS for n in (t, f"{t}_label")]
    result = _client(server).infer("quads", [pixels], outputs=outputs, model_version="1")
    _assert_like_predict(server, files, *_triton_labels(result))


def test_tritonclient_classification_extension(server):
    files = _files(server, 4)
    encoded = triton.InferInput("image_bytes", [len(files)], "BYTES")
    encoded.set_data_from_numpy(np.array([f.read_bytes() for f in files], dtype=object))
    result = _client(server).infer("quads", [encoded], outputs=[triton.InferRequestedOutput("quadrant", class_count=2)])
    top2 = result.as_numpy("quadrant")
    assert top2.shape == (4, 2)
    expected = server["predict"].loc[[f.name for f in files]]
    for row, labels, probs in zip(top2, expected["quadrant_top2"], expected["quadrant_top2_prob"]):
        parsed = [v.decode().split(":") for v in row]  # "probability:index:label"
        assert [p[2] for p in parsed] == list(labels)
        assert [sorted(["tl", "tr", "bl", "br"]).index(p[2]) for p in parsed] == [int(p[1]) for p in parsed]
        np.testing.assert_allclose([float(p[0]) for p in parsed], probs, atol=1e-5)


def test_tfserving_instances_b64_match_predict_with_identical_keys(server):
    files = _files(server)
    body = {"instances": [{"b64": base64.b64encode(f.read_bytes()).decode()} for f in files]}
    response = httpx.post(f"{server['url']}/v1/models/quads:predict", json=body, timeout=60)
    assert response.status_code == 200, response.text
    rows = response.json()["predictions"]
    expected = server["predict"].loc[[f.name for f in files]]
    columns = [c for c in expected.columns if c not in ("image", "row", "error")]  # a bad image is a 400 here
    for row, (_, want) in zip(rows, expected.iterrows()):
        assert set(row) == set(columns)  # the same keys as `polyhead predict` writes
        for key in columns:
            if "prob" in key:
                np.testing.assert_allclose(row[key], np.asarray(want[key], dtype=float), atol=1e-5)
            else:
                assert row[key] == (list(want[key]) if isinstance(row[key], list) else want[key]), key


def test_tfserving_other_request_forms(server):
    files = _files(server, 3)
    url = f"{server['url']}/v1/models/quads"
    b64 = [base64.b64encode(f.read_bytes()).decode() for f in files]
    expected = list(server["predict"].loc[[f.name for f in files], "quadrant"])
    forms = [
        {"inputs": {"image_bytes": [{"b64": b} for b in b64]}},
        {"inputs": [{"b64": b} for b in b64], "signature_name": "serving_default"},
        {"inputs": {"images": [_pixels(f).tolist() for f in files]}},
    ]
    for form in forms:
        answer = httpx.post(f"{url}:predict", json=form, timeout=60).json()
        assert answer["outputs"]["quadrant"] == expected, form.keys()
    rows = httpx.post(f"{url}/versions/1:predict", timeout=60, json={"instances": [
        {"image_bytes": {"b64": b64[0]}}, _pixels(files[1]).tolist(), {"images": _pixels(files[2]).tolist()}]})
    assert [r["quadrant"] for r in rows.json()["predictions"]] == expected
    raw = httpx.post(f"{url}:predict", content=files[0].read_bytes(), headers={"Content-Type": "image/png"}, timeout=60)
    assert raw.json()["predictions"][0]["quadrant"] == expected[0]
    status = httpx.get(url).json()
    assert status == {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                                "status": {"error_code": "OK", "error_message": ""}}]}
    for path in ("/v1/models/nope", "/v1/models/quads/versions/7"):
        missing = httpx.get(server["url"] + path)
        assert missing.status_code == 404 and "error" in missing.json()
    assert httpx.post(f"{server['url']}/v1/models/nope:predict", json=forms[0]).status_code == 404


def test_metrics_and_openapi(server):
    before = httpx.get(f"{server['url']}/metrics").text
    files = _files(server, 2)
    httpx.post(f"{server['url']}/v1/models/quads:predict", timeout=60,
               json={"instances": [{"b64": base64.b64encode(f.read_bytes()).decode()} for f in files]})
    httpx.post(f"{server['url']}/v1/models/quads:predict", json={"instances": "nope"})
    text = httpx.get(f"{server['url']}/metrics").text
    assert httpx.get(f"{server['url']}/metrics").headers["content-type"].startswith("text/plain")

    def value(metric: str, page: str) -> float:
        lines = [ln for ln in page.splitlines() if ln.startswith(metric + " ") or ln.startswith(metric + "{")]
        return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)

    ok = 'polyhead_requests_total{method="POST",route="/v1/models/{name}:predict",status="200"}'
    bad = 'polyhead_request_errors_total{method="POST",route="/v1/models/{name}:predict",status="400"}'
    assert value(ok, text) == value(ok, before) + 1
    assert value(bad, text) == value(bad, before) + 1
    assert value("polyhead_images_total", text) == value("polyhead_images_total", before) + 2
    assert value("polyhead_batch_size_count", text) > value("polyhead_batch_size_count", before)
    assert "polyhead_request_latency_seconds_bucket" in text
    schema = httpx.get(f"{server['url']}/openapi.json").json()
    assert {"/v2/models/{name}/infer", "/v1/models/{name}:predict", "/v2/health/ready", "/metrics"} <= set(schema["paths"])
