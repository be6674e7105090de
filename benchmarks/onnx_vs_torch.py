"""CPU inference throughput: onnxruntime (the graph `polyhead export` writes) vs PyTorch.

    python benchmarks/onnx_vs_torch.py                                  # both models, every core
    python benchmarks/onnx_vs_torch.py --models demo --batches 30 --repeats 3 --threads 2

Models (random weights: speed does not depend on them), built from configs/fashion_mnist.yaml:
  demo                the demo model: small CNN 32-64-128, MLP heads, 3 tasks, 28x28 grayscale
  efficientnet_lite0  the same tasks on efficientnet_lite0, 224x224 RGB

Both sides get the same float32 batches in 0..1 and the same thread count. PyTorch runs as
`polyhead predict` does (channels_last, inference_mode); onnxruntime through OnnxRunner
(CPU provider, idle threads sleep), and once more with spinning threads (`ort_spin`).
Reported: median images/s over `--repeats` runs of `--batches` batches after a warm-up.
The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from polyhead.config.loading import load_config  # noqa: E402
from polyhead.data.preparers.fashion_mnist import CATEGORIES, TAGS_BY_CATEGORY  # noqa: E402
from polyhead.engine.fit import build_model_from_config  # noqa: E402
from polyhead.export.onnx import export_onnx  # noqa: E402
from polyhead.export.runtime import OnnxRunner  # noqa: E402
from polyhead.model.bundle import load_bundle, save_bundle  # noqa: E402
from polyhead.tasks import build_tasks  # noqa: E402

MODELS = {
    "demo": ([], 128),
    "efficientnet_lite0": (["model.backbone=efficientnet_lite0", "data.image_size=[224,224]", "data.channels=3"], 16),
}


def build_bundle(name: str, folder: Path):
    """The model configs/fashion_mnist.yaml (+ overrides) builds, saved and loaded as a bundle."""
    overrides, _ = MODELS[name]
    cfg = load_config(ROOT / "configs" / "fashion_mnist.yaml", overrides)
    tags = sorted({t for ts in TAGS_BY_CATEGORY.values() for t in ts})
    cfg.tasks["category"].classes, cfg.tasks["footwear"].classes = list(CATEGORIES), ["no", "yes"]
    cfg.tasks["tags"].classes = tags
    tasks = build_tasks(cfg.tasks)
    torch.manual_seed(0)
    model, spec, prep = build_model_from_config(cfg, tasks)
    save_bundle(folder, model, tasks, spec, prep, head_hidden=cfg.model.head.hidden,
                head_dropout=cfg.model.head.dropout)
    return load_bundle(folder)


def images_per_second(run_batch, batches: list[np.ndarray], warmup: int) -> float:
    for x in batches[:warmup]:
        run_batch(x)
    start = time.perf_counter()
    for x in batches[warmup:]:
        run_batch(x)
    return sum(len(x) for x in batches[warmup:]) / (time.perf_counter() - start)


def bench(name: str, args, folder: Path) -> dict:
    bundle = build_bundle(name, folder / name / "model")
    graph = export_onnx(bundle, folder / name / "model.onnx", name=name)
    batch = args.batch or MODELS[name][1]
    rng = np.random.default_rng(0)
    shape = (batch, bundle.prep.channels, *bundle.prep.image_size)
    batches = [rng.random(shape, dtype=np.float32) for _ in range(min(args.batches + args.warmup, 8))]
    batches = [batches[i % len(batches)] for i in range(args.batches + args.warmup)]
    model = bundle.model.use_channels_last(True).eval()

    def torch_batch(x):
        with torch.inference_mode():
            model(torch.from_numpy(x))

    runners = {"ort": OnnxRunner(graph, threads=args.threads), "ort_spin": OnnxRunner(graph, threads=args.threads,
                                                                                      spin=True)}
    runs = {"torch": [], "ort": [], "ort_spin": []}
    for _ in range(args.repeats):  # interleaved, so a busy moment on a shared machine hits all sides
        runs["torch"].append(images_per_second(torch_batch, batches, args.warmup))
        for key, runner in runners.items():
            runs[key].append(images_per_second(runner.probabilities, batches, args.warmup))
    result = {"model": name, "batch": batch, "input": list(shape[1:]),
              **{f"{k}_img_s": round(statistics.median(v), 1) for k, v in runs.items()},
              "runs": {k: [round(r, 1) for r in v] for k, v in runs.items()}}
    result["ort_over_torch"] = round(result["ort_img_s"] / result["torch_img_s"], 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batch", type=int, help="batch size (default: demo 128, efficientnet_lite0 16)")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per run")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            r = bench(name, args, Path(tmp))
            results.append(r)
            print(f"{name:20s} batch {r['batch']:4d}  torch {r['torch_img_s']:8.1f} img/s   onnxruntime "
                  f"{r['ort_img_s']:8.1f} img/s (spinning threads {r['ort_spin_img_s']:8.1f})   "
                  f"ratio {r['ort_over_torch']:.2f}   runs {r['runs']}", flush=True)
    print(json.dumps({"benchmark": "onnx_vs_torch", "threads": args.threads, "torch": torch.__version__,
                      "onnxruntime": __import__("onnxruntime").__version__, "python": platform.python_version(),
                      "machine": platform.processor() or platform.machine(), "results": results}))


if __name__ == "__main__":
    main()
