"""Writes a class-per-folder image tree: OUT/<shape>/NNNN.png, 24x24 RGB, one shape per image.

    python examples/folders_hydra/make_folders.py data/shapes [--per-class 120]

Shapes: circle, square, triangle, cross; each in a random colour, size and position on noise,
so the class is the shape alone."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross")
SIZE = 24


def draw_shape(shape: str, rng: np.random.Generator) -> Image.Image:
    img = Image.fromarray(rng.integers(0, 70, size=(SIZE, SIZE, 3), dtype=np.uint8))
    r = int(rng.integers(6, 10))                     # half the shape's size, pixels
    cx, cy = (int(v) for v in rng.integers(r + 1, SIZE - r - 1, size=2))
    color = tuple(int(v) for v in rng.integers(120, 256, size=3))
    d = ImageDraw.Draw(img)
    box = [cx - r, cy - r, cx + r, cy + r]
    if shape == "circle":
        d.ellipse(box, fill=color)
    elif shape == "square":
        d.rectangle(box, fill=color)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=color)
    else:
        w = max(2, r // 2)
        d.rectangle([cx - w // 2, cy - r, cx + w // 2, cy + r], fill=color)
        d.rectangle([cx - r, cy - w // 2, cx + r, cy + w // 2], fill=color)
    return img


def make_folders(out: str | Path, per_class: int = 120, seed: int = 0) -> Path:
    """Writes `per_class` images per shape under out/<shape>/; returns `out`."""
    out, rng = Path(out), np.random.default_rng(seed)
    for shape in SHAPES:
        (out / shape).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw_shape(shape, rng).save(out / shape / f"{i:04d}.png")
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="folder to write (e.g. data/shapes)")
    p.add_argument("--per-class", type=int, default=120)
    args = p.parse_args()
    print(f"wrote {make_folders(args.out, args.per_class)} ({args.per_class} images x {len(SHAPES)} shapes)")
