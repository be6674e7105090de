"""Inference throughput of one multi-task model vs one single-task model per task: the figure
`polyhead compare` reports as `inference.ratio` (multi-task images/s over single-task images/s).

    python benchmarks/compare_inference.py                              # the demo config's models, CPU
    python benchmarks/compare_inference.py --config my.yaml --iters 50 --repeats 5 model.backbone=resnet18

The models are built as `compare` builds them (the config, and per task the config reduced to that
task) but not trained: speed does not depend on the weights. Each measurement is
`polyhead.engine.compare.measure_inference` (random uint8 batches of the configured size, after
warm-up); the ratio is taken per repeat and the median reported. Tasks without a class list get
`--classes` placeholder classes (binary: 2). The last stdout line is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from polyhead.config.loading import load_config  # noqa: E402
from polyhead.engine.compare import measure_inference, single_task_config  # noqa: E402
from polyhead.engine.fit import build_model_from_config  # noqa: E402
from polyhead.tasks import build_tasks  # noqa: E402


def build(cfg) -> torch.nn.Module:
    model, _, _ = build_model_from_config(cfg, build_tasks(cfg.tasks))
    return model.use_channels_last(cfg.training.channels_last)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "fashion_mnist.yaml"))
    parser.add_argument("--iters", type=int, default=20, help="timed iterations per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--classes", type=int, default=10, help="placeholder classes for tasks without a list")
    parser.add_argument("overrides", nargs="*", help="config overrides, as for `polyhead compare`")
    args = parser.parse_args()

    cfg = load_config(args.config, args.overrides)
    for task in cfg.tasks.values():
        if not task.classes:
            task.classes = ["no", "yes"] if task.type == "binary" else [f"c{i}" for i in range(args.classes)]
    torch.set_num_threads(cfg.training.cpu_threads or torch.get_num_threads())
    multi = build(cfg)
    singles = [build(single_task_config(cfg, name)) for name in cfg.tasks]
    runs = []
    for r in range(args.repeats):
        m = measure_inference([multi], cfg, args.iters)
        s = measure_inference(singles, cfg, args.iters)
        runs.append({"multitask_images_per_s": m["images_per_s"], "single_task_images_per_s": s["images_per_s"],
                     "ratio": m["images_per_s"] / s["images_per_s"]})
        print(f"repeat {r + 1}: multi-task {m['images_per_s']:.0f} img/s, {len(singles)} single-task models "
              f"{s['images_per_s']:.0f} img/s, ratio {runs[-1]['ratio']:.2f}")
    figures = {"ratio": statistics.median(r["ratio"] for r in runs), "tasks": len(singles),
               "backbone": cfg.model.backbone, "image_size": list(cfg.data.image_size), "channels": cfg.data.channels,
               "batch_size": m["batch_size"], "iters": args.iters, "repeats": runs, "device": m["device"],
               "threads": torch.get_num_threads(), "torch": torch.__version__,
               "machine": platform.processor() or platform.machine()}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
