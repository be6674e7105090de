"""Parameters per component of a MultiTaskModel: backbone (or trunk and branches) and each head."""

from __future__ import annotations

from rich.table import Table
from torch import nn


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def model_summary(model: nn.Module) -> list[dict]:
    """[{"component", "parameters", "trainable"}] in forward order; a last row holds the total."""
    rows = []
    backbone = model.backbone
    branches = getattr(backbone, "branches", None)
    if branches is not None:
        rows.append({"component": f"trunk (up to {backbone.branch_point})", "module": backbone.trunk})
        for group, branch in branches.items():
            tasks = ", ".join(backbone.groups[group])
            rows.append({"component": f"branch '{group}' ({tasks})", "module": branch})
    else:
        rows.append({"component": f"backbone ({getattr(backbone, 'name', type(backbone).__name__)})",
                     "module": backbone})
    for task, head in model.heads.items():
        rows.append({"component": f"head '{task}'", "module": head})
    out = [{"component": r["component"], "parameters": _count(r["module"]),
            "trainable": sum(p.numel() for p in r["module"].parameters() if p.requires_grad)} for r in rows]
    out.append({"component": "total", "parameters": _count(model),
                "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)})
    return out


def summary_table(rows: list[dict]) -> Table:
    table = Table(title="model", title_justify="left")
    table.add_column("component")
    table.add_column("parameters", justify="right")
    for r in rows:
        table.add_row(r["component"], f"{r['parameters']:,}")
    return table
