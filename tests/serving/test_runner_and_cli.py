"""The runner behind the server (load_runner, TorchRunner, model names) and the `polyhead serve` command."""

from __future__ import annotations

import base64
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from serving_fixtures import served_run  # noqa: F401  (fixture)

from polyhead.cli.main import main
from polyhead.errors import PolyheadError
from polyhead.model.bundle import load_bundle
from polyhead.serving.runner import default_model_name, load_runner


def test_torch_runner_matches_the_bundle_in_memory(served_run):  # noqa: F811
    runner = load_runner(served_run["run"], "torch", device="cpu")
    assert (runner.name, runner.backend, runner.image_size, runner.channels) == ("quads", "torch", (16, 16), 3)
    assert list(runner.tasks) == ["quadrant", "red", "tags"]
    files = sorted(served_run["images"].iterdir())[:5]
    pixels = np.stack([np.asarray(Image.open(f).convert("RGB")).transpose(2, 0, 1) for f in files])  # uint8
    probs = runner.probabilities(pixels.astype(np.float32) / 255.0)
    bundle = load_bundle(served_run["run"])
    with torch.inference_mode():
        logits = bundle.model.eval()(torch.from_numpy(pixels))
    for name, task in bundle.tasks.items():
        assert probs[name].dtype == np.float32 and probs[name].shape == (5, task.num_outputs)
        np.testing.assert_allclose(probs[name], task.activate(logits[name]).numpy(), atol=1e-6)


def test_default_model_name(tmp_path):
    def run(folder: str, run_name: str | None = None) -> Path:
        """A run folder as `polyhead train` leaves it: config.yaml beside model/bundle.json."""
        (tmp_path / folder / "model").mkdir(parents=True)
        (tmp_path / folder / "model" / "bundle.json").write_text("{}")
        (tmp_path / folder / "config.yaml").write_text(f"run_name: {run_name}\n" if run_name else "{}\n")
        return tmp_path / folder

    assert default_model_name(run("fashion_mnist-20260101-120000")) == "fashion_mnist"
    assert default_model_name(run("fashion_mnist-20260101-120000-3")) == "fashion_mnist"
    assert default_model_name(run("my run!")) == "my-run"
    assert default_model_name(run("whatever", "demo")) == "demo"
    assert default_model_name(run("cfg-20260101-120000") / "model") == "cfg"  # a bundle folder is named after its run


def test_onnx_backend_without_onnx_support_is_one_line(served_run, monkeypatch):  # noqa: F811
    monkeypatch.setitem(sys.modules, "polyhead.export.runtime", None)  # as if polyhead.export were missing
    with pytest.raises(PolyheadError, match="--backend onnx needs polyhead's ONNX export and onnxruntime"):
        load_runner(served_run["run"], "onnx")
    with pytest.raises(PolyheadError, match="--backend 'tflite': expected one of torch, onnx"):
        load_runner(served_run["run"], "tflite")


@pytest.mark.parametrize("argv, expected", [
    (["serve", "{tmp}/nope"], "no model bundle at"),
    (["serve", "{run}", "--name", "my model"], "--name 'my model': use letters, digits"),
])
def test_serve_user_errors_are_one_line(served_run, tmp_path, capsys, argv, expected):  # noqa: F811
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{run}", str(served_run["run"])) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1, err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_polyhead_serve_answers_like_predict(served_run):  # noqa: F811
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "polyhead", "serve", str(served_run["run"]), "--name", "demo",
                             "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):  # up to ~2 min for torch to import and the model to load on a busy machine
            try:
                if httpx.get(f"{base}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.1)
        files = sorted(served_run["images"].iterdir())[:3]
        body = {"instances": [{"b64": base64.b64encode(f.read_bytes()).decode()} for f in files]}
        answer = httpx.post(f"{base}/v1/models/demo:predict", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        expected = served_run["predict"].loc[[f.name for f in files]]
        assert [p["quadrant"] for p in answer.json()["predictions"]] == list(expected["quadrant"])
        assert [p["tags"] for p in answer.json()["predictions"]] == [list(t) for t in expected["tags"]]
        assert httpx.get(f"{base}/v2/models/quads").status_code == 404  # --name replaces the run's name
    finally:
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=60)[0]
    assert "serving model 'demo'" in out and "Traceback" not in out, out
    assert proc.returncode in (0, -signal.SIGINT, 130), out


def test_worker_processes_rebuild_the_app_from_the_environment(served_run, monkeypatch):  # noqa: F811
    """`--workers N`: uvicorn calls app_from_environment in each worker; the settings travel as JSON."""
    from fastapi.testclient import TestClient

    from polyhead.serving.app import app_from_environment
    from polyhead.serving.limits import Limits
    from polyhead.serving.settings import ENVIRONMENT, ServeSettings

    settings = ServeSettings(path=str(served_run["run"]), device="cpu", name="w", max_batch=4,
                             limits=Limits(max_instances=2))
    monkeypatch.setenv(ENVIRONMENT, settings.to_json())
    files = sorted(served_run["images"].iterdir())[:3]
    body = {"instances": [{"b64": base64.b64encode(f.read_bytes()).decode()} for f in files]}
    with TestClient(app_from_environment()) as client:
        assert client.post("/v1/models/w:predict", json=body).status_code == 413  # the limit travelled
        answer = client.post("/v1/models/w:predict", json={"instances": body["instances"][:2]})
    assert [p["quadrant"] for p in answer.json()["predictions"]] == list(
        served_run["predict"].loc[[f.name for f in files[:2]], "quadrant"])
    monkeypatch.delenv(ENVIRONMENT)
    with pytest.raises(PolyheadError, match="start the server with `polyhead serve`"):
        app_from_environment()
