"""Parameters and multiply-accumulates (MACs) per component of a MultiTaskModel: backbone (or trunk
and branches) and each head.

MACs are counted on one probe image of the model's input size by torch's `FlopCounterMode`
(matmul, conv, attention: FLOPs = 2 x MACs). Elementwise work (normalisation, activations,
BatchNorm, pooling) is not counted, as usual for MAC figures."""

from __future__ import annotations

from typing import Sequence

import torch
from rich.table import Table
from torch import nn


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _components(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """[(name, module)] in forward order: backbone (or trunk, then each branch), then each head."""
    backbone = model.backbone
    branches = getattr(backbone, "branches", None)
    if branches is not None:
        out = [(f"trunk (up to {backbone.branch_point})", backbone.trunk)]
        for group, branch in branches.items():
            out.append((f"branch '{group}' ({', '.join(backbone.groups[group])})", branch))
    else:
        out = [(f"backbone ({getattr(backbone, 'name', type(backbone).__name__)})", backbone)]
    return out + [(f"head '{task}'", head) for task, head in model.heads.items()]


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


def model_summary(model: nn.Module, input_size: Sequence[int]) -> dict:
    """Parameters and MACs per component for input uint8 [C, H, W] = `input_size`.

    Returns {"input_size": [C, H, W], "macs_per_image": int,
             "components": [{"component", "parameters", "trainable", "macs"}, ..., the "total" row last]}.
    An "other" row appears only if some MACs happen outside every component."""
    components = _components(model)
    macs, total_macs = count_macs(model, components, input_size)
    rows = [{"component": name, "parameters": _count(m),
             "trainable": sum(p.numel() for p in m.parameters() if p.requires_grad), "macs": macs[name]}
            for name, m in components]
    if macs.get("other"):
        rows.append({"component": "other", "parameters": 0, "trainable": 0, "macs": macs["other"]})
    rows.append({"component": "total", "parameters": _count(model),
                 "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad), "macs": total_macs})
    return {"input_size": [int(s) for s in input_size], "macs_per_image": total_macs, "components": rows}


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
