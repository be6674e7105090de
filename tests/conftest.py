"""Shared fixtures: a small, learnable, generated multi-task image dataset.

Each 16x16 RGB image is noise plus one bright 8x8 patch:
  - `quadrant` (multiclass): which quadrant holds the patch (tl, tr, bl, br)
  - `red` (binary): the patch is red (else blue)
  - `tags` (multilabel): {"top" if the patch is in the top half, "left" if in the left half, "warm" if red};
    a blue patch bottom right has none: its cell is "[]" (labelled, no tag applies; an empty cell is missing)
Every task is learnable from the pixels, so a few epochs of a tiny CNN score well above chance.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

QUADRANTS = ["tl", "tr", "bl", "br"]


def make_image(quadrant: str, red: bool, rng: np.random.Generator, size: int = 16) -> Image.Image:
    img = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
    h = size // 2
    y = 0 if quadrant[0] == "t" else h
    x = 0 if quadrant[1] == "l" else h
    color = (230, 30, 30) if red else (30, 30, 230)
    img[y:y + h, x:x + h] = color
    return Image.fromarray(img)


def tags_of(quadrant: str, red: bool) -> list[str]:
    tags = []
    if quadrant[0] == "t":
        tags.append("top")
    if quadrant[1] == "l":
        tags.append("left")
    if red:
        tags.append("warm")
    return tags


def make_dataset(folder, n: int = 160, seed: int = 0, missing: float = 0.0, with_split: bool = False) -> pd.DataFrame:
    """Write n PNGs under folder/images and return the label table (paths relative to `folder`)."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        q, red = QUADRANTS[i % 4], bool(rng.random() < 0.5)
        path = f"images/{i:04d}.png"
        make_image(q, red, rng).save(folder / path)
        tags = tags_of(q, red)  # a blue patch bottom right has no tag: "[]" (labelled, none applies)
        row = {"image": path, "quadrant": q, "red": "yes" if red else "no", "tags": "|".join(tags) or "[]"}
        if missing:
            if rng.random() < missing:
                row["red"] = None
            if rng.random() < missing:
                row["tags"] = None
        if with_split:
            row["split"] = "test" if i % 5 == 0 else ("val" if i % 5 == 1 else "train")
        rows.append(row)
    return pd.DataFrame(rows)


def write_config(path, table: str, *, epochs: int = 6, extra: str = "") -> None:
    path.write_text(f"""
tasks:
  quadrant: {{type: multiclass, top_k: 2}}
  red: {{type: binary, positive: "yes"}}
  tags: {{type: multilabel}}
data:
  train_table: {table}
  val_fraction: 0.2
  image_size: [16, 16]
  channels: 3
  batch_size: 16
  num_workers: 0
model:
  backbone: small_cnn
  small_cnn: {{blocks: 2, channels: [8, 16]}}
optimizer: {{lr: 0.01}}
training:
  epochs: {epochs}
  seed: 0
  progress_bar: false
output_dir: runs
{extra}
""")


@pytest.fixture
def dataset(tmp_path):
    """A 160-image dataset with a CSV table (10% of `red` and `tags` labels missing) and a config."""
    df = make_dataset(tmp_path, n=160, missing=0.1)
    df.to_csv(tmp_path / "labels.csv", index=False)
    write_config(tmp_path / "config.yaml", "labels.csv")
    return tmp_path


@pytest.fixture
def crash_at(monkeypatch):
    """crash_at(epoch, batch): the next training run raises RuntimeError("simulated crash") once,
    at the start of that training step, as a crash would."""
    from polyhead.engine.module import MultiTaskModule

    def arm(epoch: int, batch: int) -> None:
        original = MultiTaskModule.training_step

        def step(self, b, batch_idx):
            if (self.current_epoch, batch_idx) == (epoch, batch):
                monkeypatch.setattr(MultiTaskModule, "training_step", original)
                raise RuntimeError("simulated crash")
            return original(self, b, batch_idx)

        monkeypatch.setattr(MultiTaskModule, "training_step", step)

    return arm


def pytest_configure(config):
    """Module- and session-scoped fixtures train too, before any function fixture runs: the whole
    session (each xdist worker) writes data.cache files to a folder of its own, never ~/.cache."""
    config._polyhead_cache = tempfile.mkdtemp(prefix="polyhead-test-cache-")
    os.environ["POLYHEAD_CACHE_DIR"] = config._polyhead_cache


def pytest_unconfigure(config):
    shutil.rmtree(getattr(config, "_polyhead_cache", ""), ignore_errors=True)


@pytest.fixture(autouse=True)
def _image_cache_dir(tmp_path_factory, monkeypatch):
    """Every test gets its own data.cache folder (never the user's ~/.cache) and starts with no
    in-memory cache left by another test."""
    from polyhead.data import cache

    monkeypatch.setenv("POLYHEAD_CACHE_DIR", str(tmp_path_factory.mktemp("image-cache")))
    cache.forget()
    yield
    cache.forget()
