"""polyhead vs Ludwig 0.11.0 on the same Fashion-MNIST table: wall time and test accuracy, same epochs.

    python benchmarks/vs_ludwig.py                        # 2 epochs, batch 256, full Fashion-MNIST
    python benchmarks/vs_ludwig.py --epochs 1 --limit 6000 --skip-ludwig     # a quick look at polyhead alone

The table: one row per Fashion-MNIST image (PNG written by `polyhead prepare fashion-mnist`), two tasks
(`category`, 10 classes; `footwear`, yes/no) and a `split` column: the last 6 000 training images are
validation, the 10 000 official test images are test. Both tools read that one table.

Ludwig runs in its own Python 3.11 virtual environment, created by this script in `--cache`
(reused by later runs) with `ludwig==0.11.0` and the machine's torch pinned (`torch==2.14.1
torchvision==0.29.1`); when that can't be installed the script says why in one line and reports
polyhead alone. Ludwig's model: its stacked CNN encoder, 3 conv layers 32-64-128 (3x3, batch norm,
2x2 max pool), one fully connected layer of 128, AdamW 1e-3, batch 256. polyhead's: small_cnn 32-64-128
with batch norm, the same optimizer, learning rate, batch and epochs, and the model options given by
`--polyhead` (config overrides). Each tool runs in a fresh process; its wall time covers everything a
user waits for (start-up, reading and preprocessing images, training, the test evaluation).

The last stdout line is one JSON object: {"ludwig": {...} | null, "polyhead": {...}, "time_ratio": ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "polyhead-bench"
LUDWIG_PINS = ["ludwig==0.11.0", "torch==2.14.1", "torchvision==0.29.1"]
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}  # Ludwig's fixed split: 0 train, 1 validation, 2 test

# Run inside Ludwig's venv: train with the fixed split, print the final epoch's test accuracy.
LUDWIG_RUNNER = r"""
import json, logging, sys, time
import pandas as pd
from ludwig.api import LudwigModel
config, table, out = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
model = LudwigModel(config, logging_level=logging.ERROR)
stats, _, _ = model.train(dataset=pd.read_csv(table), output_directory=out, skip_save_processed_input=True,
                          random_seed=0)
test = stats.test if hasattr(stats, "test") else stats[2]
last = {f: {m: float(v[-1]) for m, v in metrics.items() if isinstance(v, list) and v and
            isinstance(v[-1], (int, float))} for f, metrics in test.items()}
print("RESULT=" + json.dumps(last))
"""


def fashion_table(cache: Path, limit: int | None) -> Path:
    """table.csv (absolute image paths, category, footwear, split) under `cache`, prepared once."""
    data = cache / "fashion-mnist"
    if not (data / "test.parquet").is_file():
        subprocess.run([sys.executable, "-m", "polyhead", "prepare", "fashion-mnist", str(data)], check=True,
                       env=_env())
    import pandas as pd

    frames = []
    for split in ("train", "test"):
        frame = pd.read_parquet(data / f"{split}.parquet")[["image", "category", "footwear"]]
        if limit:
            frame = frame.iloc[:limit]
        frame["split"] = split
        if split == "train":  # the last tenth validates (Fashion-MNIST's training set is shuffled)
            frame.iloc[int(len(frame) * 0.9):, frame.columns.get_loc("split")] = "val"
        frame["image"] = [str(data / p) for p in frame["image"]]
        frames.append(frame)
    table = cache / f"vs-ludwig-{limit or 'all'}.csv"
    pd.concat(frames, ignore_index=True).to_csv(table, index=False)
    return table


def _env(root: Path = ROOT) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}


def ludwig_python(cache: Path) -> Path | None:
    """The Ludwig venv's python (created and installed on first use), or None with one line why."""
    venv = cache / "ludwig-venv"
    python = venv / "bin" / "python"
    if python.is_file() and subprocess.run([str(python), "-c", "import ludwig"], capture_output=True).returncode == 0:
        return python
    base = Path("/usr/bin/python3.11")
    if not base.is_file():
        print("Ludwig skipped: no /usr/bin/python3.11 to create its virtual environment")
        return None
    print(f"installing {' '.join(LUDWIG_PINS)} into {venv} (several minutes, once)", flush=True)
    steps = [[str(base), "-m", "venv", str(venv)], [str(python), "-m", "pip", "install", "-q", *LUDWIG_PINS]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or ["exit status %d" % done.returncode])[-1]
            print(f"Ludwig skipped: {' '.join(step[-3:])} failed: {why}")
            return None
    return python


def ludwig_config(epochs: int, batch: int, lr: float) -> dict:
    conv = [{"out_channels": n, "kernel_size": 3, "padding": "same", "norm": "batch", "pool_kernel_size": 2}
            for n in (32, 64, 128)]
    return {
        "input_features": [{"name": "image", "type": "image",
                            "preprocessing": {"height": 28, "width": 28, "num_channels": 1},
                            "encoder": {"type": "stacked_cnn", "conv_layers": conv,
                                        "fc_layers": [{"output_size": 128}]}}],
        "output_features": [{"name": "category", "type": "category"}, {"name": "footwear", "type": "binary"}],
        "preprocessing": {"split": {"type": "fixed", "column": "split"}},
        "trainer": {"epochs": epochs, "batch_size": batch, "learning_rate": lr,
                    "optimizer": {"type": "adamw"}},
    }


def run_ludwig(python: Path, table: Path, args, work: Path) -> dict | None:
    import pandas as pd

    coded = work / "ludwig-table.csv"
    frame = pd.read_csv(table)
    frame["split"] = frame["split"].map(SPLIT_CODES)
    frame.to_csv(coded, index=False)
    (work / "ludwig.json").write_text(json.dumps(ludwig_config(args.epochs, args.batch, args.lr)))
    (work / "runner.py").write_text(LUDWIG_RUNNER)
    start = time.perf_counter()
    done = subprocess.run([str(python), str(work / "runner.py"), str(work / "ludwig.json"), str(coded),
                           str(work / "ludwig-out")], capture_output=True, text=True, cwd=work)
    seconds = time.perf_counter() - start
    result = [line for line in done.stdout.splitlines() if line.startswith("RESULT=")]
    if done.returncode != 0 or not result:
        print("Ludwig failed: " + (done.stderr.strip().splitlines() or ["no result"])[-1])
        return None
    test = json.loads(result[0].removeprefix("RESULT="))
    return {"seconds": round(seconds, 1), "test_category_accuracy": test["category"]["accuracy"],
            "test_footwear_accuracy": test["footwear"]["accuracy"]}


def polyhead_config(table: Path, args, work: Path) -> Path:
    config = {
        "tasks": {"category": {"type": "multiclass"}, "footwear": {"type": "binary", "positive": "yes"}},
        "data": {"train_table": str(table), "split_column": "split", "image_size": [28, 28], "channels": 1,
                 "batch_size": args.batch},
        "model": {"backbone": "small_cnn",
                  "small_cnn": {"blocks": 3, "channels": [32, 64, 128], "batch_norm": True, "pooling": "max"},
                  "head": {"hidden": [128]}},
        "optimizer": {"name": "adamw", "lr": args.lr},
        "training": {"epochs": args.epochs, "seed": 0, "monitor": "val/category/accuracy"},
        "tracking": {"trackers": ["csv"]},
        "report": {"enabled": False},
        "output_dir": str(work / "polyhead-runs"),
        "run_name": "vs-ludwig",
    }
    path = work / "polyhead.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def run_polyhead(table: Path, args, work: Path) -> dict | None:
    config = polyhead_config(table, args, work)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "polyhead", "train", str(config), *args.polyhead],
                          capture_output=True, text=True, env=_env(args.root), cwd=work)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        print("polyhead failed: " + (done.stderr.strip().splitlines() or ["no output"])[-1])
        return None
    test = json.loads((work / "polyhead-runs" / "vs-ludwig" / "metrics.json").read_text())["test"]
    return {"seconds": round(seconds, 1), "test_category_accuracy": test["category"]["accuracy"],
            "test_footwear_accuracy": test["footwear"]["accuracy"], "overrides": args.polyhead,
            "root": str(args.root)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the data and Ludwig's venv are kept")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--limit", type=int, help="only the first N train and N test images (quick looks)")
    parser.add_argument("--skip-ludwig", action="store_true")
    parser.add_argument("--root", type=Path, default=ROOT, help="the polyhead source tree to run (default: this one)")
    parser.add_argument("polyhead", nargs="*", help="polyhead config overrides (model options)")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    table = fashion_table(args.cache, args.limit)
    python = None if args.skip_ludwig else ludwig_python(args.cache)
    with tempfile.TemporaryDirectory(prefix="vs-ludwig-") as tmp:
        work = Path(tmp)
        ludwig = run_ludwig(python, table, args, work) if python else None
        if ludwig:
            print(f"Ludwig 0.11.0: {ludwig['seconds']:.0f} s, test category accuracy "
                  f"{ludwig['test_category_accuracy']:.4f}, footwear {ludwig['test_footwear_accuracy']:.4f}", flush=True)
        mine = run_polyhead(table, args, work)
        if mine:
            print(f"polyhead:      {mine['seconds']:.0f} s, test category accuracy "
                  f"{mine['test_category_accuracy']:.4f}, footwear {mine['test_footwear_accuracy']:.4f}")
    ratio = round(mine["seconds"] / ludwig["seconds"], 2) if mine and ludwig else None
    if ratio is not None:
        print(f"wall-time ratio polyhead / Ludwig: {ratio:.2f} (goal <= 0.7 at >= Ludwig's accuracy)")
    print(json.dumps({"ludwig": ludwig, "polyhead": mine, "time_ratio": ratio, "epochs": args.epochs,
                      "batch_size": args.batch, "lr": args.lr, "rows": args.limit or "all",
                      "cores": os.cpu_count(), "machine": platform.processor() or platform.machine()}))


if __name__ == "__main__":
    main()
