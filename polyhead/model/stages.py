"""Backbone stages: the backbone's parameters cut into ordered groups, bottom (input) to top, for
partial unfreezing (`training.unfreeze_stages`) and layer-wise learning-rate decay (`optimizer.layer_decay`).

How the stages are found (every parameter of the backbone is in exactly one stage):

    small_cnn          one stage per conv block: blocks.0 .. blocks.N-1
    timm models        timm's own coarse parameter groups (`model.group_matcher(coarse=True)`, the grouping
                       timm's `param_groups_layer_decay` uses): ResNet stem (conv1, bn1), layer1 .. layer4;
                       EfficientNet stem (conv_stem, bn1), blocks.0 .. blocks.6, head (conv_head, bn2; timm
                       folds the head conv into the last block group, here it is a stage of its own). A flat model whose groups
                       are single layers (VGG: features.0, features.3, ...) is cut at its feature levels
                       (`feature_info`: one per pooling layer) instead, so a stage is all convs at one resolution.
                       Parameters no group matches (VGG's pre_logits) are the last stage.
    other backbones    one stage per child module that holds parameters (Sequential children expanded).

With a branch point the stages are those of the unsplit backbone: stages up to the branch point live in the
shared trunk, later ones in every branch's copy, so "the last N stages" unfreezes (and a stage's learning
rate applies to) that stage in every branch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from polyhead.errors import ConfigError, bad_value
from polyhead.model.backbones import SmallCNN, TimmBackbone


@dataclass
class Stage:
    name: str  # e.g. "layer3", "blocks.0", "stem", "features.6-8"
    params: list[str]  # names in backbone.named_parameters()


# ---- discovery ---------------------------------------------------------------------------------------
def _views(backbone: nn.Module) -> list[tuple[str, nn.Module]]:
    """[(name prefix, module)] whose parameter names, with the prefix removed, are the unsplit backbone's
    own names: the backbone itself, or a branched backbone's trunk and each branch."""
    branches = getattr(backbone, "branches", None)
    if branches is not None and hasattr(backbone, "trunk"):
        inner = backbone.trunk
        trunk = [("trunk.model.", inner.model)] if isinstance(inner, TimmBackbone) else [("trunk.", inner)]
        return trunk + [(f"branches.{g}.", b) for g, b in branches.items()]
    if isinstance(backbone, TimmBackbone):
        return [("model.", backbone.model)]
    return [("", backbone)]


def _child_groups(owner: nn.Module, names: list[str]) -> list[tuple[str, list[str]]]:
    """Fallback: one group per child holding parameters, Sequential / ModuleList children expanded."""
    order: list[str] = []
    for name, child in owner.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)) and len(child) > 0:
            order += [f"{name}.{i}" for i in range(len(child))]
        else:
            order.append(name)
    groups: dict[str, list[str]] = {}
    for n in names:
        key = next((o for o in order if n.startswith(o + ".")), n.split(".")[0])
        groups.setdefault(key, []).append(n)
    return list(groups.items())


def _timm_groups(model: nn.Module, names: list[str]) -> list[tuple[str, list[str]]]:
    from timm.models._manipulate import MATCH_PREV_GROUP, group_with_matcher

    matcher = model.group_matcher(coarse=True)
    # timm attaches a head conv to the previous group (MATCH_PREV_GROUP); give it a group of its own.
    matcher = {k: [(r, (MATCH_PREV_GROUP[0] - 1,) if s == MATCH_PREV_GROUP else s) for r, s in v]
               if isinstance(v, (list, tuple)) else v for k, v in matcher.items()}
    grouped = group_with_matcher(((n, None) for n in names), matcher)
    groups = [list(grouped[i]) for i in sorted(grouped)]
    return _merge_flat_layers(model, groups)


def _module_of(param: str) -> str:
    return param.rpartition(".")[0]


def _merge_flat_layers(model: nn.Module, groups: list[list[str]]) -> list[tuple[str, list[str]]]:
    """Groups that are single layers (all parameters of one module) between the same two feature levels
    of `feature_info` are merged: VGG's convs at one resolution become one stage."""
    info = getattr(model, "feature_info", None)
    taps = [f["module"] for f in info] if isinstance(info, list) else []
    position = {name: i for i, (name, _) in enumerate(model.named_modules())}
    levels = sorted(position[t] for t in taps if t in position)

    def level(group: list[str]) -> int | None:
        modules = {_module_of(p) for p in group}
        if len(modules) != 1 or not levels:
            return None  # not a single layer: a stage of its own
        pos = position.get(modules.pop())
        return None if pos is None else next((i for i, lv in enumerate(levels) if pos <= lv), None)

    merged: list[tuple[int | None, list[str]]] = []
    for group in groups:
        lv = level(group)
        if merged and lv is not None and merged[-1][0] == lv:
            merged[-1][1].extend(group)
        else:
            merged.append((lv, list(group)))
    every = [p for g in groups for p in g]
    names = [_group_name(g, every) for _, g in merged]
    # Several top-level modules (conv1 + bn1, conv_head + bn2): the stem when first, the head when last.
    ends = {0: "stem", len(names) - 1: "head"}
    names = [ends.get(i, n) if "+" in n and ends.get(i) not in names else n for i, n in enumerate(names)]
    return [(name, g) for name, (_, g) in zip(names, merged)]


def _group_name(params: list[str], every: list[str]) -> str:
    """The shortest module path holding exactly this group's parameters ("layer1", "blocks.0", "stem"),
    else "features.6-8" (layers of one Sequential) or "conv1+bn1" (the top-level modules;
    renamed stem / head by `_merge_flat_layers` when first / last)."""
    mine = set(params)

    def whole(prefix: str) -> bool:
        return all(n in mine for n in every if n.startswith(prefix + "."))

    modules = list(dict.fromkeys(_module_of(p) or p for p in params))
    common: list[str] = []
    for level in zip(*(m.split(".") for m in modules)):
        if len(set(level)) != 1:
            break
        common.append(level[0])
        if whole(".".join(common)):
            return ".".join(common)
    indexed = [re.fullmatch(r"(.+)\.(\d+)", m) for m in modules]
    if len(modules) > 1 and all(indexed) and len({m.group(1) for m in indexed}) == 1:
        return f"{indexed[0].group(1)}.{indexed[0].group(2)}-{indexed[-1].group(2)}"
    if common:
        return ".".join(common)
    return "+".join(dict.fromkeys(m.split(".")[0] for m in modules))


def backbone_stages(backbone: nn.Module) -> list[Stage]:
    """The backbone's stages, bottom to top, each with its parameters' names in `backbone.named_parameters()`."""
    views = _views(backbone)
    owner = views[0][1]
    relative: dict[str, None] = {}
    for prefix, module in views:
        relative.update((n, None) for n, _ in module.named_parameters())
    names = list(relative)
    if isinstance(owner, SmallCNN):
        groups = [(f"blocks.{i}", [n for n in names if n.startswith(f"blocks.{i}.")]) for i in range(len(owner.blocks))]
    elif callable(getattr(owner, "group_matcher", None)):  # timm models
        groups = _timm_groups(owner, names)
    else:
        groups = _child_groups(owner, names)
    own = {prefix: {n for n, _ in module.named_parameters()} for prefix, module in views}
    stages = []
    for name, rel in groups:
        full = [prefix + n for prefix, _ in views for n in rel if n in own[prefix]]
        if rel:
            stages.append(Stage(name, full))
    return stages


# ---- schedule ----------------------------------------------------------------------------------------
def check_unfreeze_stages(stages: list[Stage], unfreeze_stages: int | None) -> None:
    if unfreeze_stages is None:
        return
    if isinstance(unfreeze_stages, bool) or not isinstance(unfreeze_stages, int) or unfreeze_stages < 0:
        raise bad_value("training.unfreeze_stages", unfreeze_stages, "null (all stages) or an integer >= 0")
    if unfreeze_stages > len(stages):
        raise ConfigError(f"training.unfreeze_stages={unfreeze_stages} but the backbone has {len(stages)} stages "
                          f"({', '.join(s.name for s in stages)}); use 0..{len(stages)} or null for all")


def trainable_stage_count(n_stages: int, epoch: int, freeze_epochs: int, unfreeze_stages: int | None) -> int:
    """How many top stages train in `epoch` (0-based): none while frozen, then the last
    `unfreeze_stages` (all when None)."""
    if epoch < freeze_epochs:
        return 0
    return n_stages if unfreeze_stages is None else min(unfreeze_stages, n_stages)


def set_trainable_stages(backbone: nn.Module, stages: list[Stage], n_trainable: int, training: bool) -> None:
    """Only the top `n_trainable` stages get gradients. Every module whose parameters are all frozen
    runs in eval mode (BatchNorm keeps its statistics, dropout is off), the rest in `training` mode."""
    params = dict(backbone.named_parameters())
    cut = len(stages) - n_trainable
    for i, stage in enumerate(stages):
        for name in stage.params:
            params[name].requires_grad_(i >= cut)
    backbone.train(training)
    if not training:
        return
    for module in backbone.modules():
        own = list(module.parameters())
        if own and not any(p.requires_grad for p in own):
            module.eval()


def stage_lr_scales(n_stages: int, layer_decay: float | None) -> list[float]:
    """Multiplier of the top stage's learning rate per stage, bottom to top: d^(n-1), ..., d, 1."""
    d = 1.0 if layer_decay is None else float(layer_decay)
    return [d ** (n_stages - 1 - i) for i in range(n_stages)]


def stage_learning_rates(n_stages: int, lr: float, backbone_lr: float | None, layer_decay: float | None) -> list[float]:
    """Learning rate per stage, bottom to top. The top stage gets `backbone_lr`, or without it `lr`
    (no decay) or `lr * d` (the heads are the level above the top stage, as in timm/BEiT); each
    stage below gets d times its upper neighbour's."""
    decay = layer_decay is not None and layer_decay != 1.0
    top = backbone_lr if backbone_lr is not None else (lr * layer_decay if decay else lr)
    return [top * s for s in stage_lr_scales(n_stages, layer_decay)]


def check_layer_decay(layer_decay: float | None) -> None:
    if layer_decay is None:
        return
    if isinstance(layer_decay, bool) or not isinstance(layer_decay, (int, float)) or not 0.0 < layer_decay <= 1.0:
        raise bad_value("optimizer.layer_decay", layer_decay, "null (off) or a number in (0, 1]")


def stage_plan(backbone: nn.Module, stages: list[Stage], *, freeze_epochs: int, unfreeze_stages: int | None,
               lr: float, backbone_lr: float | None, layer_decay: float | None) -> list[dict]:
    """One row per stage, bottom to top, for the model summary and picture:
    {"stage", "parameters", "trains": "yes" | "from epoch K" (1-based) | "no", "lr_multiplier": stage lr / lr}."""
    check_unfreeze_stages(stages, unfreeze_stages)
    check_layer_decay(layer_decay)
    params = dict(backbone.named_parameters())
    rates = stage_learning_rates(len(stages), lr, backbone_lr, layer_decay)
    n = trainable_stage_count(len(stages), freeze_epochs, freeze_epochs, unfreeze_stages)
    when = "yes" if freeze_epochs == 0 else f"from epoch {freeze_epochs + 1}"
    return [{"stage": s.name, "parameters": sum(params[p].numel() for p in s.params),
             "trains": when if i >= len(stages) - n else "no", "lr_multiplier": rates[i] / lr}
            for i, s in enumerate(stages)]
