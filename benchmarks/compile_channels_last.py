"""`torch.compile` and channels_last, each on and off: training-step and inference speed of one model.

    python benchmarks/compile_channels_last.py                    # the demo config's model, CPU
    python benchmarks/compile_channels_last.py --steps 40 --config my.yaml model.backbone=resnet18

For each of the four combinations: the model of `--config` (tasks without classes get 10
placeholder classes), random uint8 batches already in memory (model compute only, no decoding);
training = forward, the sum of the task losses, backward and an AdamW step at `data.batch_size`;
inference = forward under `inference_mode` at the evaluation batch size. The first `--warmup`
steps are timed apart: for compiled models they include the compilation. Reported: compile (warm-up)
seconds, training and inference images/s, and each speed relative to the eager NCHW model.
The last stdout line is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from polyhead.config.loading import load_config  # noqa: E402
from polyhead.engine.fit import build_model_from_config  # noqa: E402
from polyhead.tasks import build_tasks  # noqa: E402


def batches(cfg, tasks, size: int, count: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h, w = cfg.data.image_size if len(cfg.data.image_size) == 2 else cfg.data.image_size * 2
    out = []
    for _ in range(count):
        images = torch.randint(0, 256, (size, cfg.data.channels, h, w), dtype=torch.uint8, generator=g)
        targets = {n: torch.randint(0, 2, (size, t.num_outputs), generator=g).float() for n, t in tasks.items()}
        out.append((images, targets))
    return out


def loss_of(logits: dict, targets: dict) -> torch.Tensor:
    return sum(torch.nn.functional.binary_cross_entropy_with_logits(logits[n], targets[n]) for n in logits)


def timed(fn, items, warmup: int) -> tuple[float, float]:
    """(seconds of the first `warmup` calls, images/s of the rest)."""
    start = time.perf_counter()
    for item in items[:warmup]:
        fn(item)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for item in items[warmup:]:
        fn(item)
    images = sum(item[0].shape[0] for item in items[warmup:])
    return first, images / (time.perf_counter() - start)


def variant(cfg, tasks, channels_last: bool, compiled: bool, steps: int, warmup: int) -> dict:
    torch.manual_seed(0)
    model, _, _ = build_model_from_config(cfg, tasks)
    model.use_channels_last(channels_last)
    run = torch.compile(model) if compiled else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def train_step(item):
        images, targets = item
        opt.zero_grad(set_to_none=True)
        loss_of(run(images), targets).backward()
        opt.step()

    def infer(item):
        with torch.inference_mode():
            run(item[0])

    model.train()
    train_warm, train_speed = timed(train_step, batches(cfg, tasks, cfg.data.batch_size, steps + warmup), warmup)
    model.eval()
    eval_size = cfg.data.eval_batch_size or 2 * cfg.data.batch_size
    infer_warm, infer_speed = timed(infer, batches(cfg, tasks, eval_size, steps + warmup, seed=1), warmup)
    return {"channels_last": channels_last, "compile": compiled, "train_images_per_s": round(train_speed),
            "infer_images_per_s": round(infer_speed), "train_warmup_s": round(train_warm, 1),
            "infer_warmup_s": round(infer_warm, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "fashion_mnist.yaml"))
    parser.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="steps timed apart (compilation happens here)")
    parser.add_argument("--no-compile", action="store_true", help="only channels_last on and off")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    for task in cfg.tasks.values():
        if not task.classes:
            task.classes = ["no", "yes"] if task.type == "binary" else [f"c{i}" for i in range(10)]
    tasks = build_tasks(cfg.tasks)
    torch.set_num_threads(cfg.training.cpu_threads or torch.get_num_threads())
    results = []
    for compiled in (False,) if args.no_compile else (False, True):
        for channels_last in (False, True):
            r = variant(cfg, tasks, channels_last, compiled, args.steps, args.warmup)
            results.append(r)
            base = results[0]
            r["train_vs_eager_nchw"] = round(r["train_images_per_s"] / base["train_images_per_s"], 2)
            r["infer_vs_eager_nchw"] = round(r["infer_images_per_s"] / base["infer_images_per_s"], 2)
            print(f"compile={compiled!s:<5} channels_last={channels_last!s:<5} train {r['train_images_per_s']:>6} img/s "
                  f"(x{r['train_vs_eager_nchw']:.2f}), inference {r['infer_images_per_s']:>6} img/s "
                  f"(x{r['infer_vs_eager_nchw']:.2f}), warm-up {r['train_warmup_s']} s + {r['infer_warmup_s']} s",
                  flush=True)
    print(json.dumps({"variants": results, "backbone": cfg.model.backbone, "image_size": list(cfg.data.image_size),
                      "batch_size": cfg.data.batch_size, "steps": args.steps, "threads": torch.get_num_threads(),
                      "torch": torch.__version__, "machine": platform.processor() or platform.machine()}))


if __name__ == "__main__":
    main()
