"""polyhead vs a plain PyTorch loop on the same 4-task table of 64x64 RGB JPEGs, same CNN and epochs.

    python benchmarks/vs_plain_pytorch.py --rows 6000 --epochs 5
    python benchmarks/vs_plain_pytorch.py --rows 4000 --epochs 4 --polyhead "scheduler.name=cosine" --polyhead ""

The table (written under --out, reused when present) is built from Fashion-MNIST
(/usr/share/datasets/fashion-mnist, or --source): each image is a 64x64 RGB canvas on a dark or light
grey background with two colourised Fashion-MNIST items, one in the left half and one in the right
half, each shifted at random. Tasks:

    left    multiclass, category of the left item (10 classes)
    right   multiclass, category of the right item (10 classes), 25 % of training labels missing
    attrs   multilabel, 5 labels: footwear, upper (T-shirt/pullover/coat/shirt), bag (any item),
            warm (left item red or yellow), dark (background); 10 % of training labels missing
    same    binary, both items have the same colour (4 colours: ~25 % yes)

Training rows come from Fashion-MNIST's train split, test rows (all labelled) from its test split.

The plain loop (below, ~100 lines) is what one would write by hand: a 4-block CNN 32-64-128-128
(conv 3x3 -> BN -> ReLU -> max pool 2), global average pool, one linear head per task, the sum of
masked per-task losses, AdamW lr 2e-3 with torch's OneCycleLR, batch 128, every training row.
polyhead trains the same CNN (model.small_cnn blocks 4, channels [32, 64, 128, 128]) for the same
epochs from a config; each --polyhead "OVERRIDES" adds a polyhead run with those Hydra-style
overrides on top of that base config ("" = the base itself). Wall time: training plus the test
evaluation, for both (polyhead's also holds its data check, model summary and bundle save). The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from polyhead.cli.main import default_cpu_threads  # noqa: E402

default_cpu_threads()  # the same thread setting for both sides, as the polyhead CLI does

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from polyhead.data.preparers._idx import load_split, locate  # noqa: E402
from polyhead.data.preparers.fashion_mnist import CATEGORIES  # noqa: E402

COLOURS = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 90, 240), "yellow": (240, 220, 40)}
ATTRS = ("footwear", "upper", "bag", "warm", "dark")
FOOTWEAR, UPPER = {"Sandal", "Sneaker", "Ankle boot"}, {"T-shirt/top", "Pullover", "Coat", "Shirt"}
MISSING = {"right": 0.25, "attrs": 0.10}
TASKS = {"left": ("multiclass", 10), "right": ("multiclass", 10), "attrs": ("multilabel", 5), "same": ("binary", 1)}


# --------------------------------------------------------------------------- the table

def build_table(out: Path, rows: int, test_rows: int, source: Path | None, seed: int = 0) -> tuple[Path, Path]:
    """Write out/{train,test}.parquet and their JPEGs once; reuse them when present."""
    train, test = out / "train.parquet", out / "test.parquet"
    if train.is_file() and test.is_file() and len(pd.read_parquet(train)) == rows \
            and len(pd.read_parquet(test)) == test_rows:
        return train, test
    files, _ = locate(out, source, download=False)
    rng = np.random.default_rng(seed)
    for split, n, path in (("train", rows, train), ("test", test_rows, test)):
        images, labels = load_split(files, split)
        frame = _compose(out, split, images, labels, n, rng)
        if split == "train":
            for task, share in MISSING.items():
                frame.loc[rng.random(n) < share, task] = None
        frame.to_parquet(path, index=False)
    return train, test


def _compose(out: Path, split: str, images: np.ndarray, labels: np.ndarray, n: int, rng) -> pd.DataFrame:
    folder = out / "images" / split
    folder.mkdir(parents=True, exist_ok=True)
    names, palette = list(COLOURS), np.array(list(COLOURS.values()), dtype=np.float32)
    records = []
    for i in range(n):
        pick = rng.integers(0, len(images), 2)
        colour = rng.integers(0, len(names), 2)
        dark = bool(rng.random() < 0.5)
        canvas = np.full((64, 64, 3), rng.uniform(10, 70) if dark else rng.uniform(150, 220), np.float32)
        for k, x0 in ((0, rng.integers(0, 5)), (1, 32 + rng.integers(0, 5))):
            y0 = rng.integers(0, 37)
            alpha = images[pick[k]].astype(np.float32)[..., None] / 255.0  # [28, 28, 1]
            patch = canvas[y0:y0 + 28, x0:x0 + 28]
            canvas[y0:y0 + 28, x0:x0 + 28] = patch * (1 - alpha) + palette[colour[k]] * alpha
        rel = f"images/{split}/{i:06d}.jpg"
        Image.fromarray(canvas.round().clip(0, 255).astype(np.uint8)).save(out / rel, quality=90)
        cats = [CATEGORIES[int(labels[p])] for p in pick]
        attrs = [a for a, on in zip(ATTRS, (any(c in FOOTWEAR for c in cats), any(c in UPPER for c in cats),
                                            "Bag" in cats, names[colour[0]] in ("red", "yellow"), dark)) if on]
        records.append({"image": rel, "left": cats[0], "right": cats[1], "attrs": "|".join(attrs) or "[]",
                        "same": "yes" if colour[0] == colour[1] else "no"})
    return pd.DataFrame(records)


# --------------------------------------------------------------------------- the plain loop

def encode(frame: pd.DataFrame) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{task: (targets, labelled mask)}: class index / 0-1 vector / 0-1."""
    out = {}
    for task in ("left", "right"):
        have = frame[task].notna().to_numpy()
        idx = [CATEGORIES.index(c) if ok else 0 for c, ok in zip(frame[task], have)]
        out[task] = (torch.tensor(idx), torch.tensor(have))
    have = frame["attrs"].notna().to_numpy()
    multi = [[float(a in str(cell).split("|")) for a in ATTRS] for cell in frame["attrs"]]
    out["attrs"] = (torch.tensor(multi), torch.tensor(have))
    out["same"] = (torch.tensor((frame["same"] == "yes").to_numpy(), dtype=torch.float32),
                   torch.tensor(frame["same"].notna().to_numpy()))
    return out


class Images(Dataset):
    def __init__(self, root: Path, frame: pd.DataFrame):
        self.paths, self.labels = [str(root / p) for p in frame["image"]], encode(frame)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        img = torch.from_numpy(np.array(Image.open(self.paths[i]).convert("RGB"))).permute(2, 0, 1)
        return img, {t: (y[i], m[i]) for t, (y, m) in self.labels.items()}


class PlainCNN(nn.Module):
    def __init__(self):
        super().__init__()
        layers, c = [], 3
        for w in (32, 64, 128, 128):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            c = w
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.heads = nn.ModuleDict({t: nn.Linear(c, k) for t, (_, k) in TASKS.items()})

    def forward(self, x):  # uint8 [B, 3, 64, 64]
        f = self.features((x.float() / 255 - 0.5) / 0.5)
        return {t: h(f) for t, h in self.heads.items()}


def plain_loss(logits, labels):
    total = 0.0
    for t, (y, m) in labels.items():
        if not m.any():
            continue
        if TASKS[t][0] == "multiclass":
            total = total + nn.functional.cross_entropy(logits[t][m], y[m])
        else:
            total = total + nn.functional.binary_cross_entropy_with_logits(logits[t][m].squeeze(-1), y[m])
    return total


def train_plain(root: Path, train: pd.DataFrame, epochs: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    loader = DataLoader(Images(root, train), batch_size=128, shuffle=True, num_workers=1, persistent_workers=True)
    model = PlainCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=epochs * len(loader))
    for epoch in range(epochs):
        model.train()
        for x, labels in loader:
            loss = plain_loss(model(x), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(f"plain epoch {epoch + 1}/{epochs} loss {float(loss):.4f}", flush=True)
    return model


@torch.no_grad()
def test_plain(model: nn.Module, root: Path, test: pd.DataFrame) -> dict:
    model.eval()
    outs = {t: [] for t in TASKS}
    for x, _ in DataLoader(Images(root, test), batch_size=256, num_workers=1):
        for t, v in model(x).items():
            outs[t].append(v)
    labels, logits = encode(test), {t: torch.cat(v) for t, v in outs.items()}
    pred_ml = (logits["attrs"] > 0).float()
    y_ml = labels["attrs"][0]
    tp = (pred_ml * y_ml).sum()
    return {"left": {"accuracy": (logits["left"].argmax(1) == labels["left"][0]).float().mean().item()},
            "right": {"accuracy": (logits["right"].argmax(1) == labels["right"][0]).float().mean().item()},
            "attrs": {"micro_f1": (2 * tp / (pred_ml.sum() + y_ml.sum())).item(),
                      "exact_match": (pred_ml == y_ml).all(1).float().mean().item()},
            "same": {"accuracy": ((logits["same"].squeeze(-1) > 0).float() == labels["same"][0]).float().mean().item()}}


# --------------------------------------------------------------------------- polyhead

CONFIG = """
tasks:
  left: {{type: multiclass}}
  right: {{type: multiclass}}
  attrs: {{type: multilabel, classes: [{attrs}]}}
  same: {{type: binary, positive: "yes"}}
data:
  train_table: {train}
  test_table: {test}
  image_size: [64, 64]
  channels: 3
  val_fraction: 0.0
  batch_size: 128
model:
  backbone: small_cnn
  small_cnn: {{blocks: 4, channels: [32, 64, 128, 128]}}
optimizer: {{name: adamw, lr: 0.002}}
scheduler: {{name: onecycle}}
training: {{epochs: {epochs}, seed: {seed}, monitor: train/loss, progress_bar: false}}
tracking: {{enabled: false}}
report: {{enabled: false}}
output_dir: {runs}
"""


def run_polyhead(config: Path, overrides: list[str]) -> tuple[dict, float]:
    from polyhead.config.loading import load_config
    from polyhead.engine.fit import fit

    result = fit(load_config(config, overrides), name_hint="vs-plain")
    test = result.metrics["test"]
    keep = {"left": ("accuracy",), "right": ("accuracy",), "attrs": ("micro_f1", "exact_match"), "same": ("accuracy",)}
    metrics = {t: {k: float(test[t][k]) for k in keys} for t, keys in keep.items()}
    return metrics, result.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=6000, help="training rows")
    parser.add_argument("--test-rows", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="folder for the table and runs (default: a temporary folder)")
    parser.add_argument("--source", type=Path, help="Fashion-MNIST IDX folder (default: the usual places)")
    parser.add_argument("--polyhead", action="append", help='overrides for one polyhead run ("" = base config)')
    parser.add_argument("--skip-plain", action="store_true")
    args = parser.parse_args()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="vs-plain-"))
    out.mkdir(parents=True, exist_ok=True)
    train_path, test_path = build_table(out, args.rows, args.test_rows, args.source, args.seed)
    train, test = pd.read_parquet(train_path), pd.read_parquet(test_path)
    results: dict = {"rows": args.rows, "test_rows": args.test_rows, "epochs": args.epochs}
    if not args.skip_plain:
        started = time.perf_counter()
        model = train_plain(out, train, args.epochs, args.seed)
        scores = test_plain(model, out, test)
        results["plain"] = {"seconds": round(time.perf_counter() - started, 1), **scores}
        print("plain", json.dumps(results["plain"]), flush=True)
    config = out / "vs_plain.yaml"
    config.write_text(CONFIG.format(attrs=", ".join(ATTRS), train=train_path, test=test_path, epochs=args.epochs,
                                    seed=args.seed, runs=out / "runs"))
    for overrides in args.polyhead or [""]:
        metrics, seconds = run_polyhead(config, shlex.split(overrides))
        label = f"polyhead {overrides}".strip()
        results[label] = {"seconds": round(seconds, 1), **metrics}
        print(label, json.dumps(results[label]), flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
