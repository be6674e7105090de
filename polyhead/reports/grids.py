"""Captioned image grids written as PNG (matplotlib, Agg backend, imported when used).

Images are uint8 tensors [C, H, W] (C = 1 grayscale, shown gray; C = 3 RGB), drawn with
nearest-neighbour upscaling so that small images (16x16, 28x28) stay sharp and readable."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from polyhead.reports._style import agg_pyplot


def _wrap(caption: str, width: int) -> str:
    """Wrap each line of a caption to `width` characters (continuation lines indented)."""
    lines = []
    for line in caption.splitlines() or [""]:
        lines += textwrap.wrap(line, width, subsequent_indent="  ", break_long_words=True) or [""]
    return "\n".join(lines)


def save_image_grid(images: Sequence[torch.Tensor], captions: Sequence[str], path: str | Path, *,
                    columns: int | None = None, title: str | None = None, cell_inches: float = 1.9,
                    font_size: float = 8.0) -> Path:
    """Draw `images` (uint8 [C, H, W] each) in a grid, each with its caption below, and save a PNG.

    `columns`: images per row (default: about square). Captions may hold several lines ("\\n");
    lines too long for a cell are wrapped. Returns the written path."""
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    plt = agg_pyplot()
    n = max(1, len(images))
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    chars = max(8, int(cell_inches * 72 / (font_size * 0.62)))  # characters that fit a cell's width
    wrapped = [_wrap(c, chars) for c in captions]
    lines = max((w.count("\n") + 1 for w in wrapped), default=1)
    caption_inches = lines * font_size * 1.45 / 72 + 0.08
    fig_w = columns * (cell_inches + 0.15) + 0.2
    if title:  # wrapped to the figure's width, so a narrow grid does not clip it
        title = "\n".join(textwrap.wrap(title, max(16, int(fig_w * 72 / ((font_size + 3) * 0.6)))))
    title_inches = (title.count("\n") + 1) * (font_size + 3) * 1.4 / 72 + 0.25 if title else 0.1
    fig_h = rows * (cell_inches + caption_inches + 0.1) + title_inches
    fig, axes = plt.subplots(rows, columns, figsize=(fig_w, fig_h), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= len(images):
            continue
        img = images[k].detach().cpu()
        if img.dtype != torch.uint8 or img.dim() != 3 or img.shape[0] not in (1, 3):
            raise ValueError(f"image {k}: expected uint8 [1 or 3, H, W], got {img.dtype} {tuple(img.shape)}")
        if img.shape[0] == 1:
            ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        else:
            ax.imshow(img.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.text(0.0, -0.03, wrapped[k], transform=ax.transAxes, ha="left", va="top", fontsize=font_size,
                family="monospace")
    top = 1 - title_inches / fig_h
    bottom_pad = (caption_inches + 0.05) / fig_h
    hspace = (caption_inches + 0.1) / cell_inches
    fig.subplots_adjust(left=0.1 / fig_w, right=1 - 0.1 / fig_w, top=top, bottom=bottom_pad,
                        wspace=0.15 / cell_inches, hspace=hspace)
    if title:
        fig.suptitle(title, fontsize=font_size + 3, y=1 - 0.12 / fig_h, va="top")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
