"""The model bundle: a folder that alone rebuilds the model. Loading never unpickles.

    bundle/
      bundle.json                 format version, backbone spec, heads, tasks (classes,
                                  thresholds, loss), preprocessing (size, channels, mean, std),
                                  plugins (module or file, and the names each registered)
      backbone.safetensors        backbone weights
      heads/<task>.safetensors    one file per head, so a head can be reused or replaced
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from polyhead import __version__
from polyhead.errors import PolyheadError
from polyhead.model.backbones import BACKBONES, build_backbone, check_features, default_normalization
from polyhead.model.branching import BranchedBackbone, resolve_groups
from polyhead.model.multitask import MultiTaskModel
from polyhead.plugins import check_bundle_plugins
from polyhead.tasks import Task, task_from_dict

FORMAT = "polyhead-bundle"
FORMAT_VERSION = 1


@dataclass
class BackboneSpec:
    """What `build_backbone` needs to recreate the architecture (weights come from the bundle)."""

    name: str
    in_chans: int
    small_cnn: dict | None = None
    drop_rate: float = 0.0
    branch_point: str | None = None  # see polyhead.model.branching
    branch_groups: dict[str, list[str]] | None = None
    options: dict | None = None  # model.backbone_args: a registered (plugin) backbone's keyword arguments


@dataclass
class Preprocessing:
    image_size: tuple[int, int]  # (H, W)
    channels: int
    mean: list[float] | None  # None: the backbone's own (filled in by build_model)
    std: list[float] | None


def build_model(spec: BackboneSpec, tasks: dict[str, Task], prep: Preprocessing, *, head_hidden=(),
                head_dropout: float = 0.0, pretrained: bool = False, weights: str | None = None,
                weights_key_map: str = "auto") -> MultiTaskModel:
    backbone = build_backbone(spec.name, in_chans=spec.in_chans, pretrained=pretrained, weights=weights,
                              weights_key_map=weights_key_map, small_cnn=spec.small_cnn, drop_rate=spec.drop_rate,
                              options=spec.options)
    if spec.name in BACKBONES and spec.name != "small_cnn":  # a plugin's backbone: its output, once
        check_features(spec.name, backbone, spec.in_chans, tuple(prep.image_size))
    if prep.mean is None or prep.std is None:
        mean, std = default_normalization(backbone)
        prep.mean, prep.std = list(prep.mean or mean), list(prep.std or std)
    if spec.branch_point:
        spec.branch_groups = resolve_groups(list(tasks), spec.branch_groups)
        backbone = BranchedBackbone(backbone, spec.branch_point, spec.branch_groups)
    outputs = {name: t.num_outputs for name, t in tasks.items()}
    return MultiTaskModel(backbone, outputs, mean=prep.mean, std=prep.std, head_hidden=head_hidden,
                          head_dropout=head_dropout)


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def save_bundle(path: str | Path, model: MultiTaskModel, tasks: dict[str, Task], spec: BackboneSpec,
                prep: Preprocessing, *, head_hidden=(), head_dropout: float = 0.0, extra: dict | None = None) -> Path:
    path = Path(path)
    (path / "heads").mkdir(parents=True, exist_ok=True)
    save_file(_contiguous(model.backbone.state_dict()), str(path / "backbone.safetensors"))
    for name, head in model.heads.items():
        save_file(_contiguous(head.state_dict()), str(path / "heads" / f"{name}.safetensors"))
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "polyhead_version": __version__,
        "backbone": spec.__dict__,
        "head": {"hidden": list(head_hidden), "dropout": head_dropout},
        "preprocessing": {**prep.__dict__, "image_size": list(prep.image_size)},
        "tasks": [t.to_dict() for t in tasks.values()],
        "num_features": model.num_features,
        **(extra or {}),
    }
    tmp = path / "bundle.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(path / "bundle.json")
    return path


@dataclass
class Bundle:
    model: MultiTaskModel
    tasks: dict[str, Task]
    prep: Preprocessing
    spec: BackboneSpec
    meta: dict
    path: Path | None = None  # the bundle folder it was loaded from


def find_bundle(path: str | Path) -> Path:
    """Accept the bundle folder itself or a run folder that holds `model/`."""
    path = Path(path).expanduser()
    for candidate in (path, path / "model"):
        if (candidate / "bundle.json").is_file():
            return candidate
    raise PolyheadError(f"no model bundle at '{path}': expected '{path}/bundle.json' or '{path}/model/bundle.json' "
                        f"(a run folder written by `polyhead train`)")


def load_bundle(path: str | Path, map_location: str | torch.device = "cpu") -> Bundle:
    path = find_bundle(path)
    try:
        meta = json.loads((path / "bundle.json").read_text())
    except json.JSONDecodeError as exc:
        raise PolyheadError(f"corrupt bundle '{path}/bundle.json': {exc}") from None
    if meta.get("format") != FORMAT or meta.get("format_version", 0) > FORMAT_VERSION:
        raise PolyheadError(f"'{path}/bundle.json' is not a polyhead bundle of a version this polyhead "
                            f"({__version__}) can read: {meta.get('format')} v{meta.get('format_version')}")
    check_bundle_plugins(meta, str(path))  # a backbone or loss from a plugin that is not loaded: say which
    tasks = {}
    for d in meta["tasks"]:
        task = task_from_dict(d)
        tasks[task.name] = task
    spec = BackboneSpec(**meta["backbone"])
    p = meta["preprocessing"]
    prep = Preprocessing(tuple(p["image_size"]), p["channels"], p["mean"], p["std"])
    head = meta.get("head", {})
    model = build_model(spec, tasks, prep, head_hidden=head.get("hidden", ()), head_dropout=head.get("dropout", 0.0))
    _load_into(model.backbone, path / "backbone.safetensors", map_location)
    for name, module in model.heads.items():
        _load_into(module, path / "heads" / f"{name}.safetensors", map_location)
    model.eval()
    return Bundle(model, tasks, prep, spec, meta, path)


def _load_into(module: torch.nn.Module, file: Path, map_location) -> None:
    try:
        state = load_file(str(file), device=str(map_location))
    except FileNotFoundError:
        raise PolyheadError(f"bundle file missing: '{file}'") from None
    except (SafetensorError, OSError) as exc:
        raise PolyheadError(f"cannot read '{file}' as safetensors: {exc}") from None
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise PolyheadError(f"weights in '{file}' do not fit the model described by bundle.json: {first}") from None
