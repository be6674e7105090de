"""Writes small generated product photos and their label tables: a stand-in for a shop's catalogue.

    python examples/shop_top2_tags/make_products.py data/shop [--per-category 80]

Each 64x64 RGB image shows one product in a random colour, size and position:
    category (multiclass): tshirt, mug, bag, shoe, hat
    tags (multilabel):     striped (horizontal stripes on the product), dotted (white dots on it),
                           on_dark (dark background, else light); a product may carry none ("[]")
Writes OUT/images/*.png, OUT/train.csv and OUT/test.csv (columns image, category, tags)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

CATEGORIES = ("tshirt", "mug", "bag", "shoe", "hat")
SIZE = 64


def _outline(category: str, cx: int, cy: int, s: int) -> list[tuple[int, int]] | None:
    """The product's polygon around (cx, cy), half-size s; None for the ones drawn from ellipses."""
    if category == "tshirt":
        return [(cx - s, cy - s // 2), (cx - s // 2, cy - s), (cx + s // 2, cy - s), (cx + s, cy - s // 2),
                (cx + s * 2 // 3, cy - s // 6), (cx + s // 2, cy - s // 3), (cx + s // 2, cy + s),
                (cx - s // 2, cy + s), (cx - s // 2, cy - s // 3), (cx - s * 2 // 3, cy - s // 6)]
    if category == "bag":
        return [(cx - s * 2 // 3, cy - s // 3), (cx + s * 2 // 3, cy - s // 3), (cx + s, cy + s), (cx - s, cy + s)]
    if category == "shoe":
        return [(cx - s, cy - s), (cx - s // 3, cy - s), (cx - s // 3, cy), (cx + s, cy + s // 3),
                (cx + s, cy + s * 2 // 3), (cx - s, cy + s * 2 // 3)]
    return None


def draw_product(category: str, striped: bool, dotted: bool, dark: bool, rng: np.random.Generator) -> Image.Image:
    base = 30 if dark else 200
    bg = rng.integers(base, base + 40, size=(SIZE, SIZE, 3), dtype=np.uint8)
    img = Image.fromarray(bg)
    s = int(rng.integers(16, 24))
    cx, cy = (int(v) for v in rng.integers(s + 2, SIZE - s - 2, size=2))
    color = tuple(int(v) for v in rng.integers(60, 200, size=3))
    mask = Image.new("L", (SIZE, SIZE), 0)  # where the product is: the pattern goes there only
    m = ImageDraw.Draw(mask)
    poly = _outline(category, cx, cy, s)
    if poly is not None:
        m.polygon(poly, fill=255)
        if category == "bag":  # the handle
            m.arc([cx - s // 2, cy - s, cx + s // 2, cy], 180, 360, fill=255, width=3)
    elif category == "mug":
        m.rectangle([cx - s * 2 // 3, cy - s, cx + s // 3, cy + s], fill=255)
        m.ellipse([cx + s // 6, cy - s // 2, cx + s, cy + s // 2], outline=255, width=4)
    else:  # hat: a dome on a brim
        m.pieslice([cx - s * 2 // 3, cy - s, cx + s * 2 // 3, cy + s // 2], 180, 360, fill=255)
        m.rectangle([cx - s, cy - s // 4, cx + s, cy + s // 8], fill=255)
    product = Image.new("RGB", (SIZE, SIZE), color)
    p = ImageDraw.Draw(product)
    if striped:
        dark_stripe = tuple(max(0, c - 90) for c in color)
        for y in range(0, SIZE, 6):
            p.rectangle([0, y, SIZE, y + 2], fill=dark_stripe)
    if dotted:
        for y in range(2, SIZE, 7):
            for x in range(2 + (y // 7 % 2) * 3, SIZE, 7):
                p.ellipse([x, y, x + 2, y + 2], fill=(250, 250, 250))
    img.paste(product, (0, 0), mask)
    return img


def make_products(out: str | Path, per_category: int = 80, test_per_category: int = 20, seed: int = 0) -> Path:
    """Writes the images and train.csv / test.csv under `out`; returns `out`."""
    out, rng = Path(out), np.random.default_rng(seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    for split, n in (("train", per_category), ("test", test_per_category)):
        rows = []
        for i in range(n * len(CATEGORIES)):
            category = CATEGORIES[i % len(CATEGORIES)]
            striped, dotted, dark = (bool(rng.random() < q) for q in (0.4, 0.4, 0.5))
            path = f"images/{split}-{i:04d}.png"
            draw_product(category, striped, dotted, dark, rng).save(out / path)
            tags = [t for t, on in (("striped", striped), ("dotted", dotted), ("on_dark", dark)) if on]
            rows.append({"image": path, "category": category, "tags": "|".join(tags) or "[]"})
        pd.DataFrame(rows).to_csv(out / f"{split}.csv", index=False)
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="folder to write (e.g. data/shop)")
    p.add_argument("--per-category", type=int, default=80, help="training images per category (test: a quarter)")
    args = p.parse_args()
    print(f"wrote {make_products(args.out, args.per_category, max(1, args.per_category // 4))}")
