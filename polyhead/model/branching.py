"""Branch points: share the backbone up to a named stage, then give each task (or group of
tasks) its own copy of the later stages.

    image ─► trunk (stages up to `branch_point`) ─► shared map [B, C, h, w] ─┬─► branch "a" (later stages, pool) ─► heads of group a
                                                                            └─► branch "b" (later stages, pool) ─► heads of group b

A backbone can be split when its feature extractor is a sequence of stages: running its
modules one after another must reproduce its own `forward_features` exactly. That is
checked on a probe image when the split is built (CNNs such as ResNet, EfficientNet,
MobileNet, ConvNeXt and the built-in small CNN pass; a ViT does not, and is refused).
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import Tensor, nn

from polyhead.errors import ConfigError
from polyhead.model.backbones import SmallCNN, TimmBackbone

PROBE_SIZE = 64  # probe images are PROBE_SIZE x PROBE_SIZE


def _expand(module: nn.Module, prefix: str = "") -> list[str]:
    """Children in definition order, with Sequential / ModuleList children expanded one level."""
    names = []
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        if isinstance(child, (nn.Sequential, nn.ModuleList)) and len(child) > 0:
            names += [f"{full}.{i}" for i in range(len(child))]
        else:
            names.append(full)
    return names


def _stages(backbone: nn.Module) -> tuple[nn.Module, list[str], Callable[[Tensor], Tensor]]:
    """(module the stage names refer to, ordered stage names, its spatial forward_features)."""
    if isinstance(backbone, SmallCNN):
        return backbone, [f"blocks.{i}" for i in range(len(backbone.blocks))], backbone.blocks
    if isinstance(backbone, TimmBackbone):
        return backbone.model, _expand(backbone.model), backbone.model.forward_features
    raise ConfigError(f"model.branch_point: backbone {type(backbone).__name__} cannot be split")


def _pool(branch: nn.Module, x: Tensor) -> Tensor:
    """A branch's spatial output [B, C, h, w] -> pooled features [B, F], as its backbone pools."""
    if isinstance(branch, SmallCNN):
        return branch.drop(branch.pool(x).flatten(1))
    return branch.forward_head(x, pre_logits=True)


@torch.no_grad()
def _sequential_prefix(owner: nn.Module, names: list[str], reference: Callable[[Tensor], Tensor],
                       in_chans: int) -> list[str]:
    """The longest prefix of `names` whose sequential run reproduces `reference` (forward_features)."""
    was_training = owner.training
    owner.eval()
    try:
        x = torch.randn(2, in_chans, PROBE_SIZE, PROBE_SIZE)
        try:
            target = reference(x)
        except Exception:  # e.g. a model with a fixed input size: not a plain stage sequence
            return []
        out, last = x, -1
        for i, name in enumerate(names):
            try:
                out = owner.get_submodule(name)(out)
            except (RuntimeError, TypeError, ValueError):
                break
            # The longest matching prefix: a freshly initialised residual block can be an exact
            # identity (timm zero-initialises its last BatchNorm), so an earlier match may be early.
            if isinstance(out, Tensor) and out.shape == target.shape and torch.allclose(out, target, atol=1e-5):
                last = i
    finally:
        owner.train(was_training)
    return names[: last + 1]


def _replace(owner: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = owner.get_submodule(parent_name) if parent_name else owner
    setattr(parent, leaf, new)  # also registers "3" in a Sequential's children


def stage_names(backbone: nn.Module) -> list[str]:
    """Names of the stages a backbone can be split after (all but the last). A container name
    such as "layer3" is accepted too and means after its last block."""
    owner, names, reference = _stages(backbone)
    return _sequential_prefix(owner, names, reference, backbone.in_chans)[:-1]


class BranchedBackbone(nn.Module):
    """A backbone split at `branch_point` into a shared trunk and one branch per group.

    Contract (as any backbone, plus branches):
        forward_features(x) -> shared trunk output [B, C, h, w]
        branch_features(group, shared) -> pooled features [B, num_features]
        groups: {group: [task, ...]}
    """

    def __init__(self, backbone: nn.Module, branch_point: str, groups: dict[str, list[str]]):
        super().__init__()
        owner, names, reference = _stages(backbone)
        steps = _sequential_prefix(owner, names, reference, backbone.in_chans)
        if not steps:
            raise ConfigError(f"model.branch_point: backbone '{getattr(backbone, 'name', type(backbone).__name__)}' "
                              "is not a sequence of stages and cannot be split; use a CNN (resnet, efficientnet, "
                              "mobilenet, convnext, small_cnn) or remove model.branch_point")
        containers = [st for st in steps if st.startswith(branch_point + ".")]
        if branch_point not in steps and containers:  # "layer3" = after the last block of layer3
            branch_point = containers[-1]
        if branch_point not in steps[:-1]:
            raise ConfigError(f"model.branch_point: {branch_point!r} is not a stage of this backbone that can be "
                              f"split after; valid: {', '.join(steps[:-1])}")
        cut = steps.index(branch_point) + 1
        self.trunk_steps, self.branch_steps = steps[:cut], steps[cut:]
        self.groups = {g: list(tasks) for g, tasks in groups.items()}
        self.num_features = int(backbone.num_features)
        self.in_chans = backbone.in_chans
        self.branch_point = branch_point
        # Branches: deep copies (pretrained weights included) with the trunk's stages removed.
        self.branches = nn.ModuleDict()
        for group in self.groups:
            branch = copy.deepcopy(owner)
            for name in self.trunk_steps:
                _replace(branch, name, nn.Identity())
            self.branches[group] = branch
        for name in names:  # the trunk keeps only its own stages (no tail, no pooling head)
            if name not in self.trunk_steps:
                _replace(owner, name, nn.Identity())
        self.trunk = backbone
        self._trunk_owner_path = "" if owner is backbone else "model"

    def _owner(self) -> nn.Module:
        return self.trunk.get_submodule(self._trunk_owner_path) if self._trunk_owner_path else self.trunk

    def forward_features(self, x: Tensor) -> Tensor:
        """x [B, C, H, W] -> shared trunk output [B, C', h, w]."""
        owner = self._owner()
        for name in self.trunk_steps:
            x = owner.get_submodule(name)(x)
        return x

    def branch_features(self, group: str, shared: Tensor) -> Tensor:
        """shared trunk output -> this group's pooled features [B, num_features]."""
        branch = self.branches[group]
        x = shared
        for name in self.branch_steps:
            x = branch.get_submodule(name)(x)
        return _pool(branch, x)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        shared = self.forward_features(x)
        return {g: self.branch_features(g, shared) for g in self.groups}

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.trunk.parameters() if p.requires_grad]


def resolve_groups(tasks: list[str], groups: dict[str, list[str]] | None) -> dict[str, list[str]]:
    """Default: one branch per task. Given groups must cover every task exactly once."""
    if not groups:
        return {t: [t] for t in tasks}
    seen: dict[str, str] = {}
    for group, members in groups.items():
        for t in members:
            if t not in tasks:
                raise ConfigError(f"model.branch_groups.{group} names unknown task '{t}'; tasks: {', '.join(tasks)}")
            if t in seen:
                raise ConfigError(f"model.branch_groups: task '{t}' is in both '{seen[t]}' and '{group}'")
            seen[t] = group
    missing = [t for t in tasks if t not in seen]
    if missing:
        raise ConfigError(f"model.branch_groups leaves out task(s) {', '.join(missing)}; put every task in one group")
    return {g: list(m) for g, m in groups.items()}
