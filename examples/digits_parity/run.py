"""Digit class + even/odd from one config-built CNN, on scikit-learn's bundled 8x8 digits (offline).

    python examples/digits_parity/run.py                    # full: ~1 min on 2 CPU cores
    python examples/digits_parity/run.py --tiny --out DIR   # a few seconds (what the tests run)

Writes under --out (default runs/examples/digits_parity):
    data/            the digits as 8x8 PNGs + labels.csv (image, digit, parity)
    grids/           samples.png (raw) and samples_augmented.png (the training augmentation)
    runs/fit/        the run folder `polyhead.fit` writes (bundle, history, metrics, report)
    runs/mlflow.db   the MLflow store (open with `mlflow ui --backend-store-uri sqlite:///...`)
    manual_loop.json the hand-written loop's test metrics
    results.json     both trainings' test metrics side by side, and the MLflow run's id and metrics
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

import polyhead
from polyhead.data.loaders import eval_loader, image_size, train_loader
from polyhead.data.transforms import BatchAugment, build_train_transform
from polyhead.engine.data import build_data
from polyhead.engine.evaluation import evaluate_model
from polyhead.engine.fit import build_model_from_config
from polyhead.engine.module import recompute_losses, task_losses
from polyhead.reports.grids import save_image_grid
from polyhead.weighting import StepContext, build_weighting

HERE = Path(__file__).resolve().parent
# --tiny: 150 images, 2 steps of one epoch, no plots or report (the test suite's budget)
TINY = ["training.epochs=1", "training.limit_train_batches=2", "model.small_cnn.channels=[8,16]",
        "report.enabled=false"]


def write_digits(out: Path, limit: int | None = None) -> Path:
    """scikit-learn's 1797 digits (8x8, values 0..16) as grayscale PNGs plus labels.csv."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, targets = digits.images[:limit], digits.target[:limit]
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (pixels, digit) in enumerate(zip(images, targets)):
        path = f"images/{i:04d}.png"
        Image.fromarray(np.round(pixels * 255 / 16).astype(np.uint8), mode="L").save(out / path)
        rows.append({"image": path, "digit": str(digit), "parity": "even" if digit % 2 == 0 else "odd"})
    table = out / "labels.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    return table


def sample_grids(cfg, out: Path, n: int = 12) -> list[Path]:
    """Raw training images and the same images through the training augmentation, 3 draws each."""
    tasks, splits = build_data(cfg, check_images=False)
    size = image_size(cfg.data)
    from polyhead.data.images import load_image

    picked = list(range(min(n, len(splits.train))))
    images = [load_image(splits.train.paths[i], channels=cfg.data.channels, size=size) for i in picked]
    captions = ["\n".join(f"{t}: {task.classes[int(splits.train.targets[t][i])]}" for t, task in tasks.items())
                for i in picked]
    raw = save_image_grid(images, captions, out / "samples.png", columns=6, title="training samples (16x16)")
    transform = build_train_transform(cfg.data.augment, size, cfg.data.channels)
    torch.manual_seed(0)
    cells, texts = [], []
    for img, cap in zip(images[:6], captions[:6]):
        cells += [img] + [transform(img.clone()) for _ in range(3)]
        texts += ["raw\n" + cap, "draw 1", "draw 2", "draw 3"]
    augmented = save_image_grid(cells, texts, out / "samples_augmented.png", columns=4,
                                title="augmentation: crop_padding 2, rotation 10")
    return [raw, augmented]


def manual_loop(cfg) -> dict:
    """The same training as `fit`, written out with polyhead's pieces: returns the test metrics."""
    torch.manual_seed(cfg.training.seed)
    torch.set_num_threads(cfg.training.cpu_threads or torch.get_num_threads())
    tasks, splits = build_data(cfg)                        # {name: Task}, encoded train/val/test
    model, _, _ = build_model_from_config(cfg, tasks)      # backbone + one head per task, normalises uint8 input
    weighting = build_weighting(cfg.training.weighting, list(tasks), dict(cfg.training.weighting_args))
    lr = cfg.optimizer.lr
    opt = torch.optim.AdamW([{"params": model.parameters()}, *weighting.parameter_groups(lr=lr)], lr=lr,
                            weight_decay=cfg.optimizer.weight_decay)
    loader = train_loader(splits.train, cfg.data, seed=cfg.training.seed)  # un-augmented, ordered by (seed, epoch)
    augment = BatchAugment(cfg.data.augment, cfg.data.channels, seed=cfg.training.seed)  # data.augment, batched
    limit = cfg.training.limit_train_batches
    steps = int(limit) if limit else len(loader)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.training.epochs * steps)
    for epoch in range(cfg.training.epochs):
        model.train()
        loader.sampler.set_epoch(epoch)
        sums: dict[str, float] = {}
        for step, batch in enumerate(loader):
            if step >= steps:
                break
            images = augment(batch["image"], batch["index"], epoch)            # uint8 [B, C, H, W]
            features = model.forward_features(images)                          # [B, F]
            losses = task_losses(tasks, model.forward_heads(features), batch)  # {task: masked mean loss}
            opt.zero_grad()
            ctx = StepContext(backward=lambda t: t.backward(), features=features,
                              shared_parameters=model.shared_parameters())
            weighting.backward(losses, ctx)                                  # uncertainty: learned weights
            opt.step()
            sched.step()
            weighting.after_step(lambda: recompute_losses(model, tasks, batch))
            for name, loss in losses.items():
                sums[name] = sums.get(name, 0.0) + float(loss.detach()) / steps
        weighting.on_epoch_end(sums)
        weights = ", ".join(f"{t} {w:.2f}" for t, w in weighting.task_weights().items())
        print(f"manual loop epoch {epoch + 1}: " + ", ".join(f"{t} loss {v:.3f}" for t, v in sums.items())
              + f" | weights {weights}")
    return evaluate_model(model, tasks, eval_loader(splits.test, cfg.data, seed=cfg.training.seed),
                          show_progress=False)


def mlflow_run(run_dir: Path) -> dict:
    """The MLflow run `fit` logged (tracking.json names it), read back through MLflow's own client."""
    from mlflow.tracking import MlflowClient

    info = json.loads((run_dir / "tracking.json").read_text())["mlflow"]
    run = MlflowClient(tracking_uri=info["uri"]).get_run(info["run_id"])
    return {"uri": info["uri"], "run_id": info["run_id"], "status": run.info.status,
            "metrics": {k: v for k, v in run.data.metrics.items() if k.startswith("final/test/")}}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/examples/digits_parity", help="output folder")
    p.add_argument("--tiny", action="store_true", default=os.environ.get("POLYHEAD_EXAMPLE_BUDGET") == "tiny",
                   help="a few seconds' budget (also POLYHEAD_EXAMPLE_BUDGET=tiny)")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    table = write_digits(out / "data", limit=150 if args.tiny else None)
    overrides = [f"data.train_table={table}", f"output_dir={out / 'runs'}", "run_name=fit"]
    overrides += TINY if args.tiny else []
    cfg = polyhead.load_config(HERE / "config.yaml", overrides)

    grids = sample_grids(cfg, out / "grids")
    print("sample grids:", *grids)

    run = polyhead.fit(cfg)                                # run folder, MLflow run, report
    fit_test = run.metrics["test"]
    manual_test = manual_loop(polyhead.load_config(HERE / "config.yaml", overrides))
    (out / "manual_loop.json").write_text(json.dumps(manual_test, indent=2))

    results = {"fit": {t: {k: m[k] for k in ("accuracy", "n")} for t, m in fit_test.items()},
               "manual_loop": {t: {k: m[k] for k in ("accuracy", "n")} for t, m in manual_test.items()},
               "mlflow": mlflow_run(run.run_dir), "run_dir": str(run.run_dir)}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    for how in ("fit", "manual_loop"):
        print(f"{how:12s} test accuracy: " + ", ".join(f"{t} {m['accuracy']:.3f}" for t, m in results[how].items()))
    print(f"MLflow run {results['mlflow']['run_id']}: mlflow ui --backend-store-uri {results['mlflow']['uri']}")
    return results


if __name__ == "__main__":
    main()
