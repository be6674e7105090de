"""examples/notebook.ipynb: committed without outputs, and executed end to end (nbclient) at the tiny budget."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pandas as pd
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "notebook.ipynb"


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    assert all(c.outputs == [] and c.execution_count is None for c in code)


def test_notebook_runs_end_to_end(tmp_path, monkeypatch):
    repo = str(NOTEBOOK.parents[1])
    # the kernel inherits the environment: this checkout's polyhead, the tiny budget, one torch thread
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("POLYHEAD_EXAMPLE_BUDGET", "tiny")
    monkeypatch.setenv("POLYHEAD_EXAMPLE_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    run_dir = Path(summary["run_dir"])
    assert run_dir.parent == out / "runs"
    assert (run_dir / "model" / "bundle.json").is_file() and (run_dir / "report.html").is_file()
    test = pd.read_csv(out / "test.csv")
    assert len(test) == 32 and summary["predicted_rows"] == 32
    # evaluate scored every test row on each task (none is missing a label)
    assert {t: m["n"] for t, m in summary["evaluate"].items()} == {"quadrant": 32, "red": 32, "tags": 32}
    # predict and evaluate agree: the share of quadrant labels predict got right is evaluate's accuracy
    assert abs(summary["quadrant_agreement"] - summary["evaluate"]["quadrant"]["accuracy"]) < 1e-6
    # the notebook's outputs are in the executed copy only
    assert any(c.outputs for c in nb.cells if c.cell_type == "code")
