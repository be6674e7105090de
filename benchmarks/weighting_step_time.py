"""Per-step training time of every weighting method, relative to `equal`, at 2 and 10 tasks.

    python benchmarks/weighting_step_time.py                        # small CNN, 32x32, batch 64, CPU
    python benchmarks/weighting_step_time.py --tasks 2 10 --steps 30 --modes features parameters

The step is the one `engine/module.py` runs (forward through the backbone once, the heads,
masked per-task losses, `weighting.backward`, optimizer step, `weighting.after_step`: FAMO's
forward without gradients), on in-memory batches, so the figure isolates the cost of the method.
`--methods famo equal` times only those (`equal` is always timed: it is the reference). Gradient methods are timed in both modes:
`features` (per-task gradients of the shared representation; one backward through the
backbone) and `parameters` (per-task gradients of every shared parameter).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from polyhead.config.schema import TaskConfig  # noqa: E402
from polyhead.engine.module import recompute_losses, task_losses  # noqa: E402
from polyhead.model.backbones import build_backbone  # noqa: E402
from polyhead.model.multitask import MultiTaskModel  # noqa: E402
from polyhead.tasks import build_task  # noqa: E402
from polyhead.weighting import WEIGHTINGS, StepContext, build_weighting  # noqa: E402


def make_problem(n_tasks: int, batch: int, size: int, seed: int = 0):
    torch.manual_seed(seed)
    tasks = {f"t{i}": build_task(f"t{i}", TaskConfig(type="multiclass", classes=[str(c) for c in range(10)]))
             for i in range(n_tasks)}
    backbone = build_backbone("small_cnn", in_chans=3, small_cnn={"blocks": 3, "channels": [32, 64, 128]})
    model = MultiTaskModel(backbone, {n: 10 for n in tasks}, mean=[0.5] * 3, std=[0.5] * 3).use_channels_last()
    batches = [{"image": torch.randint(0, 255, (batch, 3, size, size), dtype=torch.uint8),
                "targets": {n: torch.randint(0, 10, (batch,)) for n in tasks},
                "mask": {n: torch.ones(batch, dtype=torch.bool) for n in tasks}} for _ in range(4)]
    return tasks, model, batches


def time_method(name: str, mode: str | None, n_tasks: int, steps: int, warmup: int, batch: int, size: int) -> float:
    """Median seconds per step."""
    tasks, model, batches = make_problem(n_tasks, batch, size)
    args = {"mode": mode} if mode else {}
    weighting = build_weighting(name, list(tasks), args)
    opt = torch.optim.AdamW([{"params": model.parameters()}, *weighting.parameter_groups(1e-3)], lr=1e-3)
    times = []
    for i in range(warmup + steps):
        batch_ = batches[i % len(batches)]
        start = time.perf_counter()
        features = model.forward_features(batch_["image"])
        losses = task_losses(tasks, model.forward_heads(features), batch_)
        opt.zero_grad(set_to_none=True)
        ctx = StepContext(backward=lambda t: t.backward(), features=features,
                          shared_parameters=model.shared_parameters(), epoch=0, step=i)
        weighting.backward(losses, ctx)
        opt.step()
        weighting.after_step(lambda: recompute_losses(model, tasks, batch_))
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 10])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--modes", nargs="+", default=["features", "parameters"])
    parser.add_argument("--methods", nargs="+", help="only these methods (and equal); default: all")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    chosen = set(args.methods or WEIGHTINGS) | {"equal"}

    rows = []
    for name, cls in sorted(WEIGHTINGS.items(), key=lambda kv: (kv[1].requires != "losses", kv[0])):
        if name not in chosen:
            continue
        modes = args.modes if "mode" in cls.arg_names else [None]
        for mode in modes:
            rows.append({"method": name, "mode": mode or "-", "requires": cls.requires, "seconds": {}})
            for t in args.tasks:
                rows[-1]["seconds"][t] = time_method(name, mode, t, args.steps, args.warmup, args.batch, args.size)
    base = next(r for r in rows if r["method"] == "equal")["seconds"]
    header = "| method | mode | " + " | ".join(f"{t} tasks: ms/step | × equal" for t in args.tasks) + " |"
    print(header)
    print("|" + "---|" * (2 + 2 * len(args.tasks)))
    for r in rows:
        cells = []
        for t in args.tasks:
            cells += [f"{1000 * r['seconds'][t]:.1f}", f"{r['seconds'][t] / base[t]:.2f}"]
        print(f"| {r['method']} | {r['mode']} | " + " | ".join(cells) + " |")
    info = {"batch": args.batch, "size": args.size, "steps": args.steps, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine()}
    print(f"\nsmall CNN 32-64-128, batch {args.batch}, {args.size}x{args.size} RGB, 10 classes per task, "
          f"median of {args.steps} steps after {args.warmup} warm-up; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, **info}, indent=2))
    print(json.dumps({"rows": rows, **info}))  # the figures, as the last line


if __name__ == "__main__":
    main()
