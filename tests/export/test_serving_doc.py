"""The client in docs/serving.md (numpy, Pillow and onnxruntime only, no polyhead) decodes an
image as `polyhead predict` does."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from export_models import make_bundle, write_images
from polyhead.cli.main import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "serving.md"


def _client_code() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    (client,) = [b for b in blocks if "session.run(" in b]
    return client


def test_doc_client_matches_polyhead_predict(tmp_path):
    bundle = make_bundle(tmp_path / "run" / "model", "small_cnn")
    assert main(["export", str(bundle.parent), "--out", str(tmp_path / "onnx")]) == 0
    images = write_images(tmp_path / "images", n=4, size=40)  # 40 px: the client resizes to 16 px
    assert main(["predict", str(bundle), "--images", str(tmp_path / "images"), "--out", str(tmp_path / "p.parquet"),
                 "--num-workers", "0"]) == 0
    table = pd.read_parquet(tmp_path / "p.parquet").set_index("image")
    script = "import sys\nMODEL, IMAGE = sys.argv[1], sys.argv[2]\n" + _client_code()
    for image in images:
        # a fresh interpreter that cannot import polyhead: the client really stands alone
        out = subprocess.run([sys.executable, "-I", "-c", "import sys; sys.modules['polyhead'] = None\n" + script,
                              str(tmp_path / "onnx" / "model.onnx"), str(image)],
                             capture_output=True, text=True, check=True).stdout
        got = ast.literal_eval(out)  # the client prints a dict of labels
        row = table.loc[str(image.resolve())]
        assert got == {"quadrant": list(row["quadrant_top2"]), "red": row["red"], "tags": list(row["tags"])}, image
