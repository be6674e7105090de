"""Parameters and multiply-accumulates (MACs) per component of a MultiTaskModel: backbone (or trunk
and branches) and each head; the backbone's stages with their output shapes and which of them train
(`training.unfreeze_stages`) at which learning-rate multiplier (`optimizer.layer_decay`). The model
picture (`polyhead.reports.model_picture`) is drawn from this summary.

MACs are counted on one probe image of the model's input size by torch's `FlopCounterMode`
(matmul, conv, attention: FLOPs = 2 x MACs). Elementwise work (normalisation, activations,
BatchNorm, pooling) is not counted, as usual for MAC figures."""

from __future__ import annotations

from typing import Sequence

import torch
from rich.table import Table
from torch import nn

from polyhead.model.stages import Stage, backbone_stages, stage_plan


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _components(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """[(name, module)] in forward order: backbone (or trunk, then each branch), then each head."""
    return [(name, module) for name, module, _ in _described(model)]


def _described(model: nn.Module) -> list[tuple[str, nn.Module, dict]]:
    """[(name, module, {"kind", "name"[, "tasks"]})]: backbone | trunk | branch (its tasks) | head."""
    backbone = model.backbone
    branches = getattr(backbone, "branches", None)
    if branches is not None:
        out = [(f"trunk (up to {backbone.branch_point})", backbone.trunk, {"kind": "trunk", "name": "trunk"})]
        for group, branch in branches.items():
            tasks = list(backbone.groups[group])
            out.append((f"branch '{group}' ({', '.join(tasks)})", branch,
                        {"kind": "branch", "name": group, "tasks": tasks}))
    else:
        name = getattr(backbone, "name", type(backbone).__name__)
        out = [(f"backbone ({name})", backbone, {"kind": "backbone", "name": name})]
    return out + [(f"head '{task}'", head, {"kind": "head", "name": task}) for task, head in model.heads.items()]


@torch.no_grad()
def output_shapes(model: nn.Module, stages: list[Stage], input_size: Sequence[int]) -> tuple[list, dict]:
    """Shapes (without the batch) of one probe image: each backbone stage's output (the input of the next
    stage's first layer; the last stage's: its last layer's output) and each component's output.

    Returns ([shape per stage], {"shared": trunk/backbone output, "branch": pooled, "<task>": logits})."""
    backbone = model.backbone
    params = dict(backbone.named_parameters())
    stage_of = {id(params[n]): i for i, stage in enumerate(stages) for n in stage.params}
    layer_stage: dict[int, int] = {}  # every module whose parameters all lie in one stage, and its children
    for m in backbone.modules():
        owners = {stage_of.get(id(p)) for p in m.parameters()}
        if len(owners) == 1 and None not in owners:
            for d in m.modules():
                layer_stage.setdefault(id(d), next(iter(owners)))
    first_in: dict[int, list] = {}
    last_out: dict[int, list] = {}

    def enter(module, args):  # the first module of a stage to start: its input is the previous stage's output
        if args and isinstance(args[0], torch.Tensor):
            first_in.setdefault(layer_stage[id(module)], list(args[0].shape[1:]))

    def leave(module, args, output):  # the last module of a stage to finish (its outermost one)
        if isinstance(output, torch.Tensor):
            last_out[layer_stage[id(module)]] = list(output.shape[1:])

    handles = []
    for m in backbone.modules():
        if id(m) in layer_stage:
            handles += [m.register_forward_pre_hook(enter), m.register_forward_hook(leave)]
    device = next(model.parameters()).device
    probe = torch.zeros((1, *input_size), dtype=torch.uint8, device=device)
    was_training = model.training
    try:
        model.eval()
        shared = model.forward_features(probe)
        logits = model.forward_heads(shared)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    shapes = [first_in.get(i + 1, last_out.get(i)) for i in range(len(stages) - 1)] + [last_out.get(len(stages) - 1)]
    out = {"shared": list(shared.shape[1:]), "branch": [int(getattr(backbone, "num_features", 0))]}
    out.update({task: list(v.shape[1:]) for task, v in logits.items()})
    return shapes, out


def count_macs(model: nn.Module, components: list[tuple[str, nn.Module]],
               input_size: Sequence[int]) -> tuple[dict[str, int], int]:
    """MACs of one uint8 [1, C, H, W] probe image through `model` (eval mode, no grad).

    Returns ({component name: MACs}, total MACs). Work done while no component's module is running
    (a functional op in the model's own forward) counts in the total only, under the key "other"."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    owner = {id(m): name for name, comp in components for m in comp.modules()}
    flops: dict[str, int] = {name: 0 for name, _ in components}
    stack: list[str] = []
    last = [0]

    def flush() -> None:  # attribute the FLOPs since the last module boundary to the running component
        now = counter.get_total_flops()
        key = stack[-1] if stack else "other"
        flops[key] = flops.get(key, 0) + now - last[0]
        last[0] = now

    def enter(module, args):
        flush()
        stack.append(owner[id(module)])

    def leave(module, args, output):
        flush()
        stack.pop()

    handles = []
    for _, comp in components:
        for m in comp.modules():
            handles += [m.register_forward_pre_hook(enter), m.register_forward_hook(leave)]
    device = next(model.parameters()).device
    probe = torch.zeros((1, *input_size), dtype=torch.uint8, device=device)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), counter:
            model(probe)
            flush()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    macs = {name: f // 2 for name, f in flops.items()}
    return macs, counter.get_total_flops() // 2


def model_summary(model: nn.Module, input_size: Sequence[int], schedule: dict | None = None) -> dict:
    """Parameters and MACs per component for input uint8 [C, H, W] = `input_size`, and the backbone's stages.

    schedule: keywords of `stage_plan` (freeze_epochs, unfreeze_stages, lr, backbone_lr, layer_decay);
        default: every stage trains at the base learning rate.
    Returns {"input_size": [C, H, W], "macs_per_image": int,
             "components": [{"component", "parameters", "trainable", "macs", "kind", "name", "output_shape"
                             [, "tasks" of a branch]}, ..., the "total" row last],
             "stages": [{"stage", "parameters", "trains", "lr_multiplier", "output_shape", "in": "backbone" |
                         "trunk" | "branches"}, bottom to top]}.
    An "other" row appears only if some MACs happen outside every component."""
    described = _described(model)
    components = [(name, m) for name, m, _ in described]
    macs, total_macs = count_macs(model, components, input_size)
    stages = backbone_stages(model.backbone)
    stage_shapes, shapes = output_shapes(model, stages, input_size)
    rows = [{"component": name, "parameters": _count(m),
             "trainable": sum(p.numel() for p in m.parameters() if p.requires_grad), "macs": macs[name], **info,
             "output_shape": shapes["shared"] if info["kind"] in ("backbone", "trunk")
             else shapes["branch"] if info["kind"] == "branch" else shapes[info["name"]]}
            for name, m, info in described]
    if macs.get("other"):
        rows.append({"component": "other", "parameters": 0, "trainable": 0, "macs": macs["other"]})
    rows.append({"component": "total", "parameters": _count(model),
                 "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad), "macs": total_macs})
    options = {"freeze_epochs": 0, "unfreeze_stages": None, "lr": 1.0, "backbone_lr": None, "layer_decay": None,
               **(schedule or {})}
    plan = stage_plan(model.backbone, stages, **options)
    for row, stage, shape in zip(plan, stages, stage_shapes):
        row["output_shape"] = shape
        row["in"] = ("branches" if stage.params[0].startswith("branches.") else "trunk") \
            if hasattr(model.backbone, "branches") else "backbone"
    return {"input_size": [int(s) for s in input_size], "macs_per_image": total_macs, "components": rows,
            "stages": plan}


def _human(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}MACs"
    return f"{n} MACs"


def summary_table(summary: dict) -> Table:
    """The rich table shown at training start (from `model_summary`'s dict)."""
    c, h, w = summary["input_size"]
    table = Table(title=f"model (input {c}x{h}x{w}, {_human(summary['macs_per_image'])} per image)",
                  title_justify="left")
    table.add_column("component")
    table.add_column("parameters", justify="right")
    table.add_column("MACs", justify="right")
    for r in summary["components"]:
        table.add_row(r["component"], f"{r['parameters']:,}", f"{r['macs']:,}")
    return table


def _shape(shape) -> str:
    return "×".join(str(s) for s in shape) if shape else "?"


def stages_table(summary: dict) -> Table:
    """The backbone's stages, bottom to top: output shape, parameters, whether and how fast they train."""
    table = Table(title="backbone stages (bottom to top)", title_justify="left")
    for column, justify in (("stage", "left"), ("output", "right"), ("parameters", "right"), ("trains", "left"),
                            ("lr ×", "right")):
        table.add_column(column, justify=justify)
    for r in summary.get("stages") or []:
        where = " (each branch)" if r.get("in") == "branches" else ""
        table.add_row(r["stage"] + where, _shape(r.get("output_shape")), f"{r['parameters']:,}", r["trains"],
                      f"{r['lr_multiplier']:.3g}" if r["trains"] != "no" else "–")
    return table
