"""Backbones: the shared part of the model, chosen by name.

The contract every backbone honours (heads are sized from `num_features`):

    backbone.num_features: int
    backbone.in_chans: int
    backbone.forward_features(x: float [B, C, H, W]) -> float [B, num_features]
    backbone.forward(x) == backbone.forward_features(x)

Names are looked up first in the `BACKBONES` registry (built-ins such as
"small_cnn"); any other name is a timm model, wrapped in `TimmBackbone`.
`load_weights` reads a plain state dict (.safetensors / .pth) into a backbone,
matching keys by name or, for checkpoints from another implementation, by order.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from typing import Callable

import torch
from torch import Tensor, nn

from polyhead.errors import ConfigError
from polyhead.model.pretrained import offline_weights

BACKBONES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a factory `fn(*, in_chans, drop_rate, **options) -> nn.Module` (or an
    `nn.Module` class taking those keywords). What it builds is checked against the contract of
    the module docstring when built (`check_contract`); a class is checked already here."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"register_backbone: the name must be a non-empty string, got {name!r}")
        if name in BACKBONES:
            raise ConfigError(f"backbone {name!r} is already registered (by {BACKBONES[name].__module__})")
        if not callable(fn):
            raise ConfigError(f"register_backbone({name!r}) must decorate a function or an nn.Module class, "
                              f"got {type(fn).__name__}")
        if isinstance(fn, type) and not callable(getattr(fn, "forward_features", None)):
            raise ConfigError(f"backbone {name!r} ({fn.__module__}.{fn.__qualname__}) has no forward_features(x) "
                              f"method: it must return pooled features [B, num_features]")
        BACKBONES[name] = fn
        return fn

    return deco


# --------------------------------------------------------------------------- small CNN


def _int_at_least(key: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"model.small_cnn.{key} must be an integer >= {low}, got {value!r}")
    return value


class SmallCNN(nn.Module):
    """A few conv blocks for small images (e.g. 28x28 Fashion-MNIST) that trains fast on a CPU.

    Each block is `convs_per_block` x (conv 3x3 pad 1 -> [BN] -> ReLU), then a 2x2
    max/avg pool (ceil mode, so tiny inputs never shrink to zero). After the last
    block, `head_pool` turns the map [B, C, h, w] (C = channels[-1]) into features:
      avg      global average pool              -> [B, C]
      max      global max pool                  -> [B, C]
      avgmax   both, concatenated               -> [B, 2C]
      flatten  adaptive average pool to head_grid x head_grid, flattened -> [B, C * head_grid^2]
               (keeps where things are: a 28x28 image after 3 blocks is a 4x4 map, so
               head_grid 4 flattens it unchanged)
    then dropout.

    `channels` gives one width per block; a shorter list is extended by doubling
    its last entry ([32] with 3 blocks -> [32, 64, 128]).
    """

    def __init__(
        self,
        *,
        in_chans: int = 3,
        blocks: int = 3,
        channels: Sequence[int] | int = (32, 64, 128),
        convs_per_block: int = 1,
        batch_norm: bool = True,
        pooling: str = "max",
        dropout: float = 0.0,
        head_pool: str = "avg",
        head_grid: int = 4,
    ) -> None:
        super().__init__()
        widths = self._check(in_chans, blocks, channels, convs_per_block, batch_norm, pooling, dropout)
        _check_head_pool(head_pool, head_grid)
        self.in_chans = in_chans
        self.head_pool = head_pool
        self.num_features = widths[-1] * {"avg": 1, "max": 1, "avgmax": 2, "flatten": head_grid ** 2}[head_pool]
        pool = nn.MaxPool2d if pooling == "max" else nn.AvgPool2d
        stages, c_in = [], in_chans
        for c_out in widths:
            layers: list[nn.Module] = []
            for _ in range(convs_per_block):
                # No conv bias under BN: the BN shift makes it redundant.
                layers.append(nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(c_out))
                layers.append(nn.ReLU(inplace=True))
                c_in = c_out
            layers.append(pool(2, ceil_mode=True))
            stages.append(nn.Sequential(*layers))
        self.blocks = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(head_grid if head_pool == "flatten" else 1)
        self.max_pool = nn.AdaptiveMaxPool2d(1) if head_pool in ("max", "avgmax") else None
        self.drop = nn.Dropout(dropout)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _check(in_chans, blocks, channels, convs_per_block, batch_norm, pooling, dropout) -> list[int]:
        if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
            raise ConfigError(f"model.in_chans must be an integer >= 1, got {in_chans!r}")
        _int_at_least("blocks", blocks, 1)
        _int_at_least("convs_per_block", convs_per_block, 1)
        if isinstance(channels, int) and not isinstance(channels, bool):
            channels = [channels]
        if isinstance(channels, str) or not isinstance(channels, Sequence) or len(channels) == 0:
            raise ConfigError(f"model.small_cnn.channels must be a non-empty list of integers, got {channels!r}")
        widths = [_int_at_least("channels", c, 1) for c in channels]
        if len(widths) > blocks:
            raise ConfigError(
                f"model.small_cnn.channels has {len(widths)} entries but model.small_cnn.blocks is {blocks}; "
                "give at most one width per block"
            )
        while len(widths) < blocks:
            widths.append(widths[-1] * 2)
        if not isinstance(batch_norm, bool):
            raise ConfigError(f"model.small_cnn.batch_norm must be true or false, got {batch_norm!r}")
        if pooling not in ("max", "avg"):
            raise ConfigError(f"model.small_cnn.pooling must be 'max' or 'avg', got {pooling!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.small_cnn.dropout must be a number in [0, 1), got {dropout!r}")
        return widths

    def forward_features(self, x: Tensor) -> Tensor:
        """x: float [B, in_chans, H, W] -> float [B, num_features]."""
        x = self.blocks(x)  # [B, C, ~H/2^blocks, ~W/2^blocks]
        if self.head_pool == "max":
            pooled = self.max_pool(x).flatten(1)  # [B, C]
        elif self.head_pool == "avgmax":
            pooled = torch.cat([self.pool(x).flatten(1), self.max_pool(x).flatten(1)], dim=1)  # [B, 2C]
        else:
            pooled = self.pool(x).flatten(1)  # avg: [B, C]; flatten: [B, C * head_grid^2]
        return self.drop(pooled)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x)


HEAD_POOLS = ("avg", "max", "avgmax", "flatten")


def _check_head_pool(head_pool, head_grid) -> None:
    if head_pool not in HEAD_POOLS:
        raise ConfigError(f"model.small_cnn.head_pool must be one of {', '.join(HEAD_POOLS)}, got {head_pool!r}")
    _int_at_least("head_grid", head_grid, 1)


_SMALL_CNN_KEYS = ("blocks", "channels", "convs_per_block", "batch_norm", "pooling", "dropout", "head_pool",
                   "head_grid")


@register_backbone("small_cnn")
def _small_cnn(*, in_chans: int = 3, drop_rate: float = 0.0, **options) -> SmallCNN:
    """`options` is the `model.small_cnn` mapping; `drop_rate` applies when its dropout is 0/unset."""
    unknown = sorted(set(options) - set(_SMALL_CNN_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown key model.small_cnn.{unknown[0]}; valid keys: {', '.join(_SMALL_CNN_KEYS)}"
        )
    options = dict(options)
    if "channels" in options and not isinstance(options["channels"], (int, str)):
        options["channels"] = list(options["channels"])  # OmegaConf ListConfig -> list
    if not options.get("dropout"):
        options["dropout"] = drop_rate
    return SmallCNN(in_chans=in_chans, **options)


# --------------------------------------------------------------------------- timm


class TimmBackbone(nn.Module):
    """Any timm model by name, without its classifier, giving pooled features.

    The timm model stays intact as `self.model` (so later code can split it at a
    named stage); only its classifier is removed (num_classes=0).
    """

    def __init__(self, name: str, *, in_chans: int = 3, pretrained: bool = False, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.name = name
        self.in_chans = in_chans
        import timm  # heavy (torchvision, dynamo): imported when a timm backbone is built, not for the registry

        self.model = timm.create_model(
            name, pretrained=pretrained, num_classes=0, in_chans=in_chans, drop_rate=drop_rate
        )
        # Pre-logits width; differs from num_features for models with a head conv (MobileNetV3).
        self.num_features: int = int(getattr(self.model, "head_hidden_size", None) or self.model.num_features)

    def forward_features(self, x: Tensor) -> Tensor:
        """x: float [B, in_chans, H, W] -> float [B, num_features] (pooled, flattened)."""
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x)


def check_backbone(name: str) -> None:
    """`model.backbone` is a built-in (the `BACKBONES` registry) or a timm model name."""
    if name in BACKBONES:
        return
    import timm  # only for a name that is not a built-in

    if isinstance(name, str) and timm.is_model(name):
        return
    close = difflib.get_close_matches(str(name), [*BACKBONES, *timm.list_models()], n=3, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"unknown backbone 'model.backbone={name}': not a built-in ({', '.join(sorted(BACKBONES))}) nor a timm "
        f"model.{hint} `python -c \"import timm; print(timm.list_models())\"` lists them all."
    )


def _check_kwargs(name: str, factory: Callable, kwargs: dict) -> None:
    """One line for a model.backbone_args key the factory does not take."""
    import inspect

    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    accepted = [k for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and k not in ("self", "in_chans", "drop_rate")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(f"unknown model.backbone_args key(s) for backbone {name!r}: {', '.join(unknown)}; "
                          f"accepted: {', '.join(accepted) or 'none'}")


def check_contract(name: str, backbone, in_chans: int) -> None:
    """One line unless a registered backbone built a module with `forward_features` and an integer
    `num_features` (`in_chans` is set when the module leaves it out)."""
    where = f"backbone {name!r} ({getattr(BACKBONES.get(name), '__module__', '?')})"
    if not isinstance(backbone, nn.Module):
        raise ConfigError(f"{where} built a {type(backbone).__name__}, not a torch nn.Module")
    if not callable(getattr(backbone, "forward_features", None)):
        raise ConfigError(f"{where} has no forward_features(x) method: it must return pooled features "
                          f"[B, num_features]")
    width = getattr(backbone, "num_features", None)
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ConfigError(f"{where} must set num_features (a positive int, the width of forward_features' "
                          f"output; the heads are sized from it), found {width!r}")
    if not isinstance(getattr(backbone, "in_chans", None), int):
        backbone.in_chans = in_chans


def check_features(name: str, backbone: nn.Module, channels: int, image_size: tuple[int, int]) -> None:
    """Run a registered backbone's forward_features once on a tiny batch (2 images of the run's
    size): one line unless it returns [2, num_features]."""
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            out = backbone.forward_features(torch.zeros(2, channels, *image_size))
    except Exception as exc:
        raise ConfigError(f"backbone {name!r}: forward_features fails on a batch of 2 images "
                          f"[2, {channels}, {image_size[0]}, {image_size[1]}]: {type(exc).__name__}: "
                          f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from None
    finally:
        backbone.train(was_training)
    want = [2, int(backbone.num_features)]
    if not isinstance(out, Tensor) or list(out.shape) != want:
        got = list(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ConfigError(f"backbone {name!r}: forward_features must return pooled features of shape "
                          f"[B, num_features] = {want}, returned {got}")


# --------------------------------------------------------------------------- build


def build_backbone(
    name: str,
    *,
    in_chans: int = 3,
    pretrained: bool = False,
    weights: str | None = None,
    weights_key_map: str | Callable[[dict[str, Tensor]], dict[str, Tensor]] = "auto",
    small_cnn: Mapping | None = None,
    drop_rate: float = 0.0,
    options: Mapping | None = None,
) -> nn.Module:
    """Create the backbone called `name` (a built-in or any timm model).

    pretrained: ImageNet weights for timm models. An offline checkpoint from an
        installed pip package (see `polyhead.model.pretrained`) is used when one
        is known; otherwise timm downloads from the hub.
    weights: a .safetensors/.pth state dict loaded after creation (takes
        precedence over `pretrained`, so nothing is downloaded).
    weights_key_map: how to match the file's keys, see `load_weights`.
    small_cnn: options for the "small_cnn" backbone (`SmallCNN` keywords).
    options: keyword arguments of another registered backbone (`model.backbone_args`).
    """
    if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
        raise ConfigError(f"model.in_chans must be an integer >= 1, got {in_chans!r}")
    if name in BACKBONES:
        if pretrained and weights is None:
            raise ConfigError(
                f"model.pretrained: backbone {name!r} has no pretrained weights; "
                "set model.pretrained=false or give model.weights=PATH"
            )
        if options and name == "small_cnn":
            raise ConfigError("model.backbone_args is for a plugin's backbone; small_cnn takes model.small_cnn.*")
        kwargs = dict(small_cnn or {}) if name == "small_cnn" else dict(options or {})
        _check_kwargs(name, BACKBONES[name], kwargs)
        backbone = BACKBONES[name](in_chans=in_chans, drop_rate=drop_rate, **kwargs)
        check_contract(name, backbone, in_chans)
    else:
        if options:
            raise ConfigError(f"model.backbone_args is for a backbone registered by a plugin, not the timm model "
                              f"{name!r}; timm options: model.drop_rate, model.pretrained")
        check_backbone(name)
        offline = offline_weights(name) if pretrained and weights is None else None
        offline_path = offline.locate() if offline is not None else None
        from_hub = pretrained and weights is None and offline_path is None
        try:
            backbone = TimmBackbone(name, in_chans=in_chans, pretrained=from_hub, drop_rate=drop_rate)
        except Exception as err:
            if not from_hub:
                raise
            raise ConfigError(
                f"model.pretrained: could not fetch pretrained weights for {name!r} from the hub "
                f"({type(err).__name__}: {err}); set model.pretrained=false or give model.weights=PATH"
            ) from err
        if offline_path is not None:
            load_weights(backbone, offline_path, offline.key_map)
    if weights is not None:
        load_weights(backbone, weights, weights_key_map)
    return backbone


def default_normalization(backbone: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std), one value per input channel, matching how the backbone was pretrained.

    timm models: their pretrained_cfg mean/std (ImageNet for most), averaged to one
    value for 1-channel input, cycled for other channel counts. Built-ins: 0.5/0.5.
    """
    in_chans = int(getattr(backbone, "in_chans"))
    if isinstance(backbone, TimmBackbone):
        from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

        cfg = getattr(backbone.model, "pretrained_cfg", None) or {}
        mean = tuple(float(v) for v in cfg.get("mean", IMAGENET_DEFAULT_MEAN))
        std = tuple(float(v) for v in cfg.get("std", IMAGENET_DEFAULT_STD))
        return _per_channel(mean, in_chans), _per_channel(std, in_chans)
    return (0.5,) * in_chans, (0.5,) * in_chans


def _per_channel(values: tuple[float, ...], in_chans: int) -> tuple[float, ...]:
    if len(values) == in_chans:
        return values
    if in_chans == 1:
        return (sum(values) / len(values),)
    return tuple(values[i % len(values)] for i in range(in_chans))


# --------------------------------------------------------------------------- weights

_TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "module")
_PREFIXES = ("module.", "model.", "_orig_mod.", "backbone.")
KeyMap = str | Callable[[dict[str, Tensor]], dict[str, Tensor]]


def load_weights(module: nn.Module, path: str | os.PathLike, key_map: KeyMap = "auto") -> None:
    """Load a plain state dict from `path` into `module` (into `.model` for a TimmBackbone).

    key_map:
      "none"    keys must match exactly (missing or unexpected keys are errors).
      "ordered" the file's tensors, in file order, fill the module's state dict in
                order (num_batches_tracked skipped on both sides); shapes must agree;
                up to two trailing file tensors with no counterpart (a classifier) are ignored.
                .pth files keep the order they were saved in; .safetensors files store
                tensors sorted by dtype and name, so prefer .pth for "ordered".
      "auto"    by name after stripping wrapper prefixes (module., model., ...), a
                classifier present only in the file being ignored; else "ordered".
      callable  `fn(file_state) -> state` renaming keys, then matched exactly.
    A first conv with a different input-channel count (1-channel input, 3-channel
    weights) is adapted with timm's adapt_input_conv (summed over channels for 1).
    Raises ConfigError naming the file and the first offending keys.
    """
    target = module.model if isinstance(module, TimmBackbone) else module
    path = os.fspath(path)
    state = _read_state_dict(path)
    own = target.state_dict()
    if callable(key_map):
        mapped = _match_by_name(dict(key_map(dict(state))), own, path, allow_head=False)
    elif key_map == "none":
        mapped = _match_by_name(state, own, path, allow_head=False)
    elif key_map == "ordered":
        mapped = _match_by_order(state, own, path)
    elif key_map == "auto":
        try:
            mapped = _match_by_name(_strip_prefixes(state, own), own, path, allow_head=True)
        except ConfigError as by_name:
            try:
                mapped = _match_by_order(state, own, path)
            except ConfigError as by_order:
                raise ConfigError(f"{by_name}; matching by order failed too: {by_order}") from None
    else:
        raise ConfigError(
            f"model.weights_key_map: unknown key map {key_map!r}; use 'auto', 'none' or 'ordered'"
        )
    target.load_state_dict(mapped, strict=False)  # `mapped` covers every key but num_batches_tracked


def _read_state_dict(path: str) -> dict[str, Tensor]:
    if not os.path.isfile(path):
        raise ConfigError(f"model.weights: file not found: {path}")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj = load_file(path, device="cpu")
        except Exception as err:
            raise ConfigError(f"model.weights: {path} is not a readable safetensors file ({err})") from None
    elif suffix in _TORCH_SUFFIXES:
        try:
            # weights_only: tensors and plain containers only, never arbitrary pickled code.
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(
                f"model.weights: {path} is not a plain state dict (torch.load with weights_only=True "
                f"refused it: {first}); save it with torch.save(model.state_dict(), path) or as .safetensors"
            ) from None
    else:
        raise ConfigError(
            f"model.weights: unsupported file type {suffix or '(none)'!r} for {path}; "
            f"use .safetensors or {', '.join(_TORCH_SUFFIXES)}"
        )
    return _unwrap(obj, path)


def _unwrap(obj, path: str) -> dict[str, Tensor]:
    """Dig a {name: Tensor} dict out of common checkpoint containers."""
    while isinstance(obj, Mapping) and not all(isinstance(v, Tensor) for v in obj.values()):
        inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise ConfigError(f"model.weights: {path} holds no state dict (got {type(obj).__name__})")
    bad = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if bad:
        raise ConfigError(f"model.weights: {path} has non-tensor entries ({_fmt(bad)}); expected a plain state dict")
    return dict(obj)


def _strip_prefixes(state: dict[str, Tensor], own: Mapping[str, Tensor]) -> dict[str, Tensor]:
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if all(k.startswith(p) for k in state) and not all(k.startswith(p) for k in own):
                state = {k[len(p):]: v for k, v in state.items()}
                changed = True
    return state


def _is_counter(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def _looks_like_head(tensors: list[Tensor]) -> bool:
    """A classifier: at most a weight and a bias, linear or 1x1 conv."""
    return len(tensors) <= 2 and all(t.ndim <= 2 or (t.ndim == 4 and t.shape[2:] == (1, 1)) for t in tensors)


def _first_conv_key(own: Mapping[str, Tensor]) -> str | None:
    return next((k for k, v in own.items() if v.ndim == 4), None)


def _fit(key: str, src: Tensor, dst: Tensor, first_conv: str | None) -> Tensor | None:
    """`src` shaped like `dst`, or None. Only the first conv may change its input channels."""
    if src.shape == dst.shape:
        return src
    if key == first_conv and src.ndim == 4 and src.shape[0] == dst.shape[0] and src.shape[2:] == dst.shape[2:]:
        from timm.models import adapt_input_conv

        return adapt_input_conv(dst.shape[1], src, base_chans=src.shape[1])
    return None


def _match_by_name(state, own, path: str, *, allow_head: bool) -> dict[str, Tensor]:
    missing = [k for k in own if k not in state and not _is_counter(k)]
    unexpected = [k for k in state if k not in own]
    if unexpected and allow_head and _looks_like_head([state[k] for k in unexpected]):
        unexpected = []
    if missing or unexpected:
        parts = ([f"missing {_fmt(missing)}"] if missing else []) + (
            [f"unexpected {_fmt(unexpected)}"] if unexpected else []
        )
        raise ConfigError(f"model.weights: {path} does not match the model by key name: {'; '.join(parts)}")
    first_conv, out, wrong = _first_conv_key(own), {}, []
    for k, dst in own.items():
        if k not in state:
            continue
        fitted = _fit(k, state[k], dst, first_conv)
        if fitted is None:
            wrong.append(f"{k} {tuple(state[k].shape)} vs {tuple(dst.shape)}")
        out[k] = fitted
    if wrong:
        raise ConfigError(f"model.weights: {path} has shape mismatches (file vs model): {_fmt(wrong)}")
    return out


def _match_by_order(state, own, path: str) -> dict[str, Tensor]:
    src = [(k, v) for k, v in state.items() if not _is_counter(k)]
    dst = [(k, v) for k, v in own.items() if not _is_counter(k)]
    if len(src) < len(dst):
        raise ConfigError(
            f"model.weights: {path} has {len(src)} tensors but the model needs {len(dst)} "
            "(num_batches_tracked not counted), so they cannot be matched by order"
        )
    extra = src[len(dst):]
    if extra and not _looks_like_head([v for _, v in extra]):
        raise ConfigError(
            f"model.weights: {path} has {len(extra)} more tensors than the model "
            f"({_fmt([k for k, _ in extra])}), more than a classifier, so they cannot be matched by order"
        )
    first_conv, out, wrong = _first_conv_key(own), {}, []
    for (fk, fv), (mk, mv) in zip(src, dst):
        fitted = _fit(mk, fv, mv, first_conv)
        if fitted is None:
            wrong.append(f"{fk} {tuple(fv.shape)} -> {mk} {tuple(mv.shape)}")
        out[mk] = fitted
    if wrong:
        # safetensors does not keep insertion order: the header is sorted by dtype, then name.
        hint = (
            " (a .safetensors file stores tensors sorted by name, not in model order; save a .pth instead)"
            if path.lower().endswith(".safetensors")
            else ""
        )
        raise ConfigError(
            f"model.weights: {path} does not match the model by order; shape mismatches "
            f"(file -> model): {_fmt(wrong)}{hint}"
        )
    return out


def _fmt(items: list[str], n: int = 3) -> str:
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more
