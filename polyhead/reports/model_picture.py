"""A picture of the model, drawn with matplotlib from the model summary (`model_summary.json`), no graphviz:

    input ─► backbone stages (bottom to top) ─► features ─► heads
    input ─► trunk stages ─► branch per group (its stages) ─► that group's heads        (with a branch point)

Each box gives its output shape and parameter count; a stage's colour says whether it trains (green),
trains after the frozen epochs (amber) or stays frozen (grey), with its learning-rate multiplier.
Box sizes come from the rendered text's measured extent, so every label fits its box.

Written as model.png and model.svg (text kept as <text> elements) in the run folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

FONT_SIZE = 9  # points
PAD = 0.08  # inches of padding between a box's text and its border
GAP_X, GAP_Y = 0.25, 0.32  # inches between boxes in a row, and between rows
MARGIN = 0.2  # inches around the drawing
MAX_ROW_WIDTH = 14.0  # inches: wider rows of heads wrap
COLORS = {"input": "#eaeef2", "trains": "#d1f0d9", "later": "#fdebc8", "frozen": "#e1e4e8", "features": "#ddeaff",
          "head": "#f3e1fb"}


@dataclass
class Node:
    text: str
    color: str
    parents: list[int] = field(default_factory=list)  # indices in the previous row; [] = every box there
    width: float = 0.0  # inches, measured
    height: float = 0.0
    x: float = 0.0  # centre
    y: float = 0.0  # top


def _human(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _shape(shape) -> str:
    return "×".join(str(s) for s in shape) if shape else "?"


def _stage_text(row: dict) -> tuple[str, str]:
    trains = row.get("trains", "yes")
    if trains == "no":
        how, color = "frozen", COLORS["frozen"]
    else:
        how = "trains" if trains == "yes" else f"trains {trains}"
        how += f", lr ×{row.get('lr_multiplier', 1.0):.3g}"
        color = COLORS["trains"] if trains == "yes" else COLORS["later"]
    return f"{row['stage']}  →  {_shape(row.get('output_shape'))}\n{_human(row['parameters'])} params · {how}", color


def _stage_line(row: dict) -> str:
    text, _ = _stage_text(row)
    return text.replace("\n", "  ·  ")


def layout_rows(summary: dict) -> list[list[Node]]:
    """The boxes, row by row from the input down to the heads."""
    c = summary.get("input_size") or []
    rows: list[list[Node]] = [[Node(f"input  {_shape(c)}  (uint8 image)", COLORS["input"])]]
    stages = summary.get("stages") or []
    components = [r for r in summary.get("components") or [] if r.get("kind")]
    for row in stages:
        if row.get("in") != "branches":
            text, color = _stage_text(row)
            rows.append([Node(text, color)])
    heads = [r for r in components if r["kind"] == "head"]
    branches = [r for r in components if r["kind"] == "branch"]
    if branches:
        later = [_stage_line(r) for r in stages if r.get("in") == "branches"]
        rows.append([Node("\n".join([f"branch '{b['name']}'  ({', '.join(b.get('tasks', []))})", *later,
                                     f"pooled  →  {_shape(b.get('output_shape'))} · {_human(b['parameters'])} params"]),
                          COLORS["features"]) for b in branches])
        group_of = {t: i for i, b in enumerate(branches) for t in b.get("tasks", [])}
        heads.sort(key=lambda h: group_of.get(h["name"], 0))
        rows.append([Node(_head_text(h), COLORS["head"], [group_of.get(h["name"], 0)]) for h in heads])
    else:
        backbone = next((r for r in components if r["kind"] == "backbone"), None)
        if backbone is not None:
            rows.append([Node(f"{backbone['name']} features  →  {_shape(backbone.get('output_shape'))}\n"
                              f"{_human(backbone['parameters'])} backbone params", COLORS["features"])])
        rows.append([Node(_head_text(h), COLORS["head"]) for h in heads])
    return [r for r in rows if r]


def _head_text(row: dict) -> str:
    return f"head '{row['name']}'\n→ {_shape(row.get('output_shape'))} · {_human(row['parameters'])} params"


def _measure(rows: list[list[Node]], title: str) -> tuple[float, float]:
    """Each box's size from its text's extent as rendered (inches); returns the title's (width, height)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(dpi=100)
    renderer = FigureCanvasAgg(fig).get_renderer()

    def extent(text: str) -> tuple[float, float]:
        box = fig.text(0, 0, text, fontsize=FONT_SIZE, family="DejaVu Sans",
                       multialignment="center").get_window_extent(renderer)
        return box.width / fig.dpi, box.height / fig.dpi

    for row in rows:
        for node in row:
            w, h = extent(node.text)
            node.width, node.height = w + 2 * PAD, h + 2 * PAD
    return extent(title)


def _wrap(rows: list[list[Node]]) -> list[list[Node]]:
    """Split a row of heads wider than MAX_ROW_WIDTH (no branches: their heads hang off one box)."""
    out: list[list[Node]] = []
    for row in rows:
        if sum(n.width for n in row) + GAP_X * (len(row) - 1) <= MAX_ROW_WIDTH or any(n.parents for n in row):
            out.append(row)
            continue
        current: list[Node] = []
        for node in row:
            if current and sum(n.width + GAP_X for n in current) + node.width > MAX_ROW_WIDTH:
                out.append(current)
                current = []
            current.append(node)
        out.append(current)
    return out


def _place(rows: list[list[Node]], title_size: tuple[float, float]) -> tuple[float, float]:
    """Centre each row; a row whose boxes name their parents puts each parent's children under it."""
    widths = [sum(n.width for n in row) + GAP_X * (len(row) - 1) for row in rows]
    total_w = max(max(widths), title_size[0]) + 2 * MARGIN
    y = MARGIN + title_size[1] + GAP_Y
    for r, (row, width) in enumerate(zip(rows, widths)):
        x = (total_w - width) / 2
        if r and all(n.parents for n in row):
            x = MARGIN
            for parent in dict.fromkeys(n.parents[0] for n in row):
                group = [n for n in row if n.parents[0] == parent]
                group_w = sum(n.width for n in group) + GAP_X * (len(group) - 1)
                x = max(x, rows[r - 1][parent].x - group_w / 2)
                for node in group:
                    node.x, node.y = x + node.width / 2, y
                    x += node.width + GAP_X
            total_w = max(total_w, x - GAP_X + MARGIN)
        else:
            for node in row:
                node.x, node.y = x + node.width / 2, y
                x += node.width + GAP_X
        y += max(n.height for n in row) + GAP_Y
    return total_w, y - GAP_Y + MARGIN


def draw_model(summary: dict):
    """A matplotlib Figure of the model (see the module docstring)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch

    macs = summary.get("macs_per_image")
    title = ("model" + (f": {_human(int(macs))} MACs per image" if isinstance(macs, (int, float)) else "")
             + "\nstages: green trains · amber trains after the frozen epochs · grey frozen")
    rows = layout_rows(summary)
    title_size = _measure(rows, title)
    rows = _wrap(rows)
    width, height = _place(rows, title_size)
    fig = Figure(figsize=(width, height), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)  # inches, y down
    ax.axis("off")
    ax.text(MARGIN, MARGIN, title, fontsize=FONT_SIZE, family="DejaVu Sans", va="top", ha="left", color="#57606a")
    for r, row in enumerate(rows):
        for node in row:
            ax.add_patch(FancyBboxPatch((node.x - node.width / 2, node.y), node.width, node.height,
                                        boxstyle="round,pad=0,rounding_size=0.06", facecolor=node.color,
                                        edgecolor="#57606a", linewidth=0.8))
            ax.text(node.x, node.y + node.height / 2, node.text, fontsize=FONT_SIZE, family="DejaVu Sans",
                    ha="center", va="center", multialignment="center")
            if r == 0:
                continue
            above = rows[r - 1]
            parents = [above[i] for i in node.parents if i < len(above)] if node.parents else above
            if not node.parents and len(above) > 1 and len(row) > 1:
                parents = []  # a wrapped row of heads continues the row above: no arrows between heads
            for p in parents:
                ax.annotate("", xy=(node.x, node.y), xytext=(p.x, p.y + p.height),
                            arrowprops={"arrowstyle": "-|>", "color": "#57606a", "lw": 0.8,
                                        "shrinkA": 0, "shrinkB": 0})
    return fig


def write_model_picture(summary: dict, run_dir: str | Path) -> list[Path]:
    """model.png and model.svg in `run_dir`; returns their paths."""
    import matplotlib

    run_dir = Path(run_dir)
    fig = draw_model(summary)
    paths = [run_dir / "model.png", run_dir / "model.svg"]
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # SVG text stays text (searchable, selectable)
        fig.savefig(paths[0], dpi=150)
        fig.savefig(paths[1])
    return paths
