"""`polyhead export` and `polyhead predict --backend onnx` on a trained run."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import make_dataset, write_config
from polyhead.cli.export import _check
from polyhead.cli.main import main
from polyhead.export.paths import default_model_name
from polyhead.model.bundle import load_bundle


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A small_cnn run trained for one epoch (named by the config file stem: `shop-<timestamp>`)."""
    folder = tmp_path_factory.mktemp("run")
    make_dataset(folder, n=48).to_csv(folder / "labels.csv", index=False)
    write_config(folder / "shop.yaml", "labels.csv", epochs=1)
    assert main(["train", str(folder / "shop.yaml"), f"output_dir={folder / 'runs'}", "tracking.enabled=false",
                 "report.enabled=false"]) == 0
    (run_dir,) = (folder / "runs").glob("shop-*")
    return run_dir


def test_export_default_location_and_check(run, capsys):
    assert main(["export", str(run), "--check"]) == 0
    out = capsys.readouterr().out
    assert (run / "export" / "onnx" / "model.onnx").is_file()
    assert f"wrote {run / 'export' / 'onnx' / 'model.onnx'} (model 'shop', opset 17)" in out
    for task in ("quadrant", "red", "tags"):
        m = re.search(rf"check {task}: max \|p_onnx - p_torch\| = (\S+) over 16 images .*decoded predictions same", out)
        assert m and float(m.group(1)) <= 1e-4, out
    assert out.strip().endswith("check passed")


def test_check_reports_a_mismatch(run, tmp_path, capsys):
    """--check compares against the PyTorch model: a model that differs from the graph fails it."""
    assert main(["export", str(run), "--out", str(tmp_path)]) == 0
    bundle = load_bundle(run)
    with torch.no_grad():
        for p in bundle.model.heads["red"].parameters():
            p.add_(1.0)
    capsys.readouterr()
    assert _check(bundle, tmp_path / "model.onnx", None) == 1
    out = capsys.readouterr().out
    assert re.search(r"check red: .* decoded predictions", out) and "check FAILED" in out
    assert re.search(r"check quadrant: max \|p_onnx - p_torch\| = \S+ .*decoded predictions same", out)


def test_export_triton_from_the_bundle_folder(run, capsys):
    assert main(["export", str(run / "model"), "--format", "triton", "--name", "shop_v2"]) == 0
    folder = run / "export" / "triton" / "shop_v2"
    assert (folder / "config.pbtxt").is_file() and (folder / "1" / "model.onnx").is_file()
    assert "tritonserver --model-repository" in capsys.readouterr().out


def test_default_model_name(tmp_path):
    assert default_model_name(tmp_path / "fashion_mnist-20261122-101500") == "fashion_mnist"
    assert default_model_name(tmp_path / "fashion_mnist-20261122-101500-2") == "fashion_mnist"
    named = tmp_path / "named"
    named.mkdir()
    (named / "config.yaml").write_text("run_name: demo\n")
    assert default_model_name(named) == "demo"


def _predict(run_dir, images, out, *backend) -> pd.DataFrame:
    assert main(["predict", str(run_dir), "--images", str(images), "--out", str(out), "--num-workers", "0",
                 "--batch-size", "7", *backend]) == 0
    return pd.read_parquet(out)


def _cells(column: pd.Series) -> list:
    """Comparable cells: arrays as lists, every empty cell (None, NaN) as None."""
    return [None if v is None or (isinstance(v, float) and np.isnan(v)) else np.asarray(v).tolist() for v in column]


def test_predict_onnx_backend_writes_the_same_table(run, tmp_path):
    """Same rows, columns and labels as the torch backend; probabilities within 1e-4."""
    main(["export", str(run)])
    images = run.parent.parent / "images"
    torch_table = _predict(run, images, tmp_path / "torch.parquet")
    for source in (run, run / "export" / "onnx", run / "export" / "onnx" / "model.onnx"):
        onnx_table = _predict(source, images, tmp_path / "onnx.parquet", "--backend", "onnx")
        assert list(onnx_table.columns) == list(torch_table.columns) and len(onnx_table) == 48
        for col in torch_table.columns:
            a, b = torch_table[col], onnx_table[col]
            if "_prob" in col:  # floats, or lists of floats (top-k probabilities)
                diff = np.abs(np.stack(a.map(np.atleast_1d)) - np.stack(b.map(np.atleast_1d))).max()
                assert diff <= 1e-4, (col, diff)
            else:  # image, row, labels, top-k names, multilabel label lists (and empty cells)
                assert _cells(a) == _cells(b), col


def test_predict_onnx_without_export(run, tmp_path, capsys):
    fresh = tmp_path / "fresh"
    shutil.copytree(run / "model", fresh / "model")
    shutil.copy(run / "config.yaml", fresh / "config.yaml")
    code = main(["predict", str(fresh), "--images", str(run.parent.parent / "images"), "--out",
                 str(tmp_path / "p.csv"), "--backend", "onnx"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert f"run '{fresh}' has no exported ONNX graph" in err[0] and f"`polyhead export {fresh}` first" in err[0]
    assert not (tmp_path / "p.csv").exists()
