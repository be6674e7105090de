"""One training process vs several (DDP over gloo) on this machine's CPU, same global batch.

    python benchmarks/ddp_cpu.py --data /tmp/fmnist-10k --limit 10000 --epochs 3 --processes 2

Trains the demo model (configs/fashion_mnist.yaml, its 3 tasks) on Fashion-MNIST's first `--limit`
training images (prepared into `--data` when absent, not timed) twice: one process with
data.batch_size=B x P, and P processes with B each (the same steps, see docs/scaling.md), every
core shared out (one process: all of them; P processes: cores / P each). Reports each run's
wall-clock of the whole `polyhead train` command, its training images per second over the epochs
(history.csv-free: rows x epochs / the run's training seconds from metrics.json, which include
evaluation) and the test accuracy of `category`. On a CPU this measures the cost of the
multi-process path (start-up, gradient all-reduce, gathers), not a speed-up: the processes share
the same cores. The last line is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def prepare(data: Path, limit: int) -> None:
    if (data / "train.parquet").is_file():
        return
    subprocess.run([sys.executable, "-m", "polyhead.cli.main", "prepare", "fashion-mnist", str(data), "--source",
                    "/usr/share/datasets/fashion-mnist", "--limit", str(limit), "--missing-fraction", "0.2"],
                   check=True, cwd=ROOT)


def train(data: Path, runs: Path, name: str, processes: int, batch: int, epochs: int) -> dict:
    args = [sys.executable, "-m", "polyhead.cli.main", "train", str(ROOT / "configs" / "fashion_mnist.yaml"),
            f"data.train_table={data / 'train.parquet'}", f"data.test_table={data / 'test.parquet'}",
            f"output_dir={runs}", f"run_name={name}", f"training.epochs={epochs}", f"data.batch_size={batch}",
            "training.accelerator=cpu", f"training.devices={processes}", "tracking.enabled=false",
            "report.enabled=false", "training.progress_bar=false"]
    started = time.perf_counter()
    subprocess.run(args, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - started
    run = runs / name
    metrics = json.loads((run / "metrics.json").read_text())
    rows = json.loads((run / "data.json").read_text())["train"]["rows"]
    return {"wall_s": round(wall, 1), "train_s": round(metrics["training_seconds"], 1),
            "img_per_s": round(rows * epochs / metrics["training_seconds"], 1),
            "test_category_accuracy": round(metrics["test"]["category"]["accuracy"], 4)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, default=Path("/tmp/fmnist-10k"))
    p.add_argument("--limit", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--batch", type=int, default=128, help="global batch (per process: batch / processes)")
    p.add_argument("--runs", type=Path, default=Path("/tmp/ddp-bench-runs"))
    a = p.parse_args()
    prepare(a.data, a.limit)
    stamp = time.strftime("%H%M%S")
    one = train(a.data, a.runs, f"one-{stamp}", 1, a.batch, a.epochs)
    print("1 process:", one)
    many = train(a.data, a.runs, f"many-{stamp}", a.processes, a.batch // a.processes, a.epochs)
    print(f"{a.processes} processes:", many)
    print(json.dumps({"cores": os.cpu_count(), "processes": a.processes, "global_batch": a.batch,
                      "epochs": a.epochs, "one": one, "many": many,
                      "many_over_one_img_per_s": round(many["img_per_s"] / one["img_per_s"], 3)}))


if __name__ == "__main__":
    main()
