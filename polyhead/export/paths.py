"""Where exports live and what they are called.

    RUN/export/onnx/model.onnx                      `polyhead export RUN` (the default format)
    RUN/export/triton/<name>/1/model.onnx           `polyhead export RUN --format triton`
    RUN/export/triton/<name>/config.pbtxt
"""

from __future__ import annotations

import re
from pathlib import Path

from polyhead.errors import PolyheadError
from polyhead.model.bundle import find_bundle

MODEL_FILE = "model.onnx"
_TIMESTAMP = re.compile(r"-\d{8}-\d{6}(-\d+)?$")  # make_run_dir's "<config stem>-YYYYmmdd-HHMMSS[-N]"


def run_folder(path: str | Path) -> Path:
    """The run a model path belongs to: the run folder itself, or for its bundle folder (RUN/model,
    beside RUN/config.yaml) the run; a bundle folder outside a run stands for itself."""
    path = Path(path).expanduser()
    bundle = find_bundle(path)
    if bundle != path:
        return path
    return bundle.parent if (bundle.parent / "config.yaml").is_file() else bundle


def default_export_dir(path: str | Path, fmt: str) -> Path:
    """RUN/export/<fmt>: `onnx` holds model.onnx, `triton` a model repository."""
    return run_folder(path) / "export" / fmt


def default_model_name(run_dir: str | Path) -> str:
    """The run's config name: `run_name` from RUN/config.yaml if set, else the run folder's name
    without the timestamp `polyhead train` appends (`fashion_mnist-20261122-101500` -> `fashion_mnist`)."""
    import yaml

    run_dir = Path(run_dir)
    config = run_dir / "config.yaml"
    if config.is_file():
        try:
            name = (yaml.safe_load(config.read_text()) or {}).get("run_name")
        except (yaml.YAMLError, AttributeError):
            name = None
        if name:
            return str(name)
    return _TIMESTAMP.sub("", run_dir.resolve().name) or "model"


def find_model_file(path: str | Path) -> Path:
    """A model.onnx file, an export folder holding one, a Triton model folder (NAME/1/model.onnx),
    or a run / bundle folder exported with `polyhead export RUN` (RUN/export/onnx/model.onnx)."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    for candidate in (path / MODEL_FILE, path / "1" / MODEL_FILE):
        if candidate.is_file():
            return candidate
    try:
        exported = default_export_dir(path, "onnx") / MODEL_FILE
    except PolyheadError:  # not a run either
        raise PolyheadError(f"no ONNX graph at '{path}': expected a {MODEL_FILE} file, a folder holding one, or "
                            "a run folder exported with `polyhead export RUN`") from None
    if not exported.is_file():
        raise PolyheadError(f"run '{path}' has no exported ONNX graph ({exported}): "
                            f"run `polyhead export {path}` first")
    return exported
