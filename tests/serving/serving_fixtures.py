"""Shared by the serving tests: a tiny trained run, and a live server on 127.0.0.1.

`served_run` trains polyhead once per test process on the generated dataset of
tests/conftest.py (1 epoch, 16x16 images) and returns the folder holding the run and its images.
`live_server(app)` runs uvicorn in a thread on a free loopback port and stops it on exit.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import uvicorn
from conftest import make_dataset, write_config

from polyhead.api import fit
from polyhead.cli.main import main


@pytest.fixture(scope="module")
def served_run(tmp_path_factory) -> dict:
    """{"run": run folder, "images": folder of 12 PNGs, "predict": `polyhead predict` on them (DataFrame)}.

    Trained once per process (later modules reuse the folder) to keep the suite fast on 2 cores."""
    folder = tmp_path_factory.getbasetemp() / "serving-run"
    if not (folder / "predictions.parquet").is_file():
        folder.mkdir(exist_ok=True)
        make_dataset(folder, n=64).to_csv(folder / "labels.csv", index=False)
        write_config(folder / "config.yaml", "labels.csv", epochs=1)
        fit(folder / "config.yaml", [f"output_dir={folder / 'runs'}", "run_name=quads", "report.enabled=false",
                                     "tracking.enabled=false"])
        (folder / "query").mkdir()
        for i in range(12):  # images the model trained on, copied so `predict --images` sees only these
            (folder / "query" / f"{i:04d}.png").write_bytes((folder / "images" / f"{i:04d}.png").read_bytes())
        assert main(["predict", str(folder / "runs" / "quads"), "--images", str(folder / "query"),
                     "--out", str(folder / "predictions.parquet"), "--num-workers", "0"]) == 0
    predictions = pd.read_parquet(folder / "predictions.parquet")
    predictions["file"] = [Path(p).name for p in predictions["image"]]
    return {"run": folder / "runs" / "quads", "images": folder / "query", "predict": predictions.set_index("file")}


@contextmanager
def live_server(app, timeout: float = 60.0):
    """Serve `app` on 127.0.0.1 (a free port, bound before uvicorn starts: no race); yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
