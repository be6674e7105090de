"""`compare`: the honest multi-task vs single-task comparison on one config.

Trains the multi-task model (every task) and one single-task model per task with the same
budget (backbone, epochs, optimiser, seed, data split), then reports per task the test
metrics of both, the training time of both, and the inference throughput of the one
multi-task model against running every single-task model in turn on the same images.

Comparison folder (`<output_dir>/<run_name or CONFIG-compare-TIMESTAMP>/`):
    multitask/          a normal run folder (see polyhead.engine.fit)
    single-<task>/      one run folder per task
    split.parquet       only when `data.stratify` names a task: the shared split, materialised
    comparison.json     everything below, machine-readable
    comparison.md       the same as a markdown table
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from polyhead.config.schema import Config
from polyhead.data.loaders import image_size
from polyhead.engine.checks import check_config
from polyhead.engine.precision import autocast
from polyhead.errors import PolyheadError
from polyhead.tasks import Task

SPLIT_COLUMN = "_polyhead_compare_split"
MTL = "multitask"


def single_task_config(cfg: Config, task: str) -> Config:
    """A copy of `cfg` that trains `task` alone with everything else unchanged.

    - `training.monitor` naming another task falls back to the split's overall loss
      (`val/loss` or `train/loss`), which for one task is that task's loss.
    - The loss weighting becomes `equal`: with one task there is nothing to combine, and a
      static weight would only rescale the loss (i.e. the learning rate).
    """
    sub = copy.deepcopy(cfg)
    sub.tasks = {task: sub.tasks[task]}
    t = sub.training
    parts = t.monitor.split("/")
    if len(parts) >= 3 and parts[1] in cfg.tasks and parts[1] != task:
        t.monitor, t.monitor_mode = f"{parts[0]}/loss", "auto"
    t.weighting, t.weighting_args = "equal", {}
    if sub.data.stratify is not None and sub.data.stratify != task:
        sub.data.stratify = None
    check_config(sub)
    return sub


def _materialise_split(cfg: Config, folder: Path) -> Path:
    """Write the full config's (stratified) random split as a table with a split column, so every
    single-task run sees exactly the multi-task run's train/val/test rows even though its config
    no longer has the task the split was stratified on."""
    from polyhead.data.splits import read_source_table, split_source
    from polyhead.tasks import build_tasks

    table = read_source_table(cfg.data, cfg.data.train_table, "data.train_table")
    labelled = build_tasks({name: cfg.tasks[name] for name in _main_table_tasks(cfg)})
    parts = split_source(cfg.data, table, labelled, seed=cfg.training.seed)
    frame = table.frame.copy()
    frame[SPLIT_COLUMN] = "train"
    for name in ("val", "test"):
        own_table = getattr(cfg.data, f"{name}_table")
        if parts[name] is not None and not own_table:
            frame.loc[parts[name].frame.index, SPLIT_COLUMN] = name
    path = folder / "split.parquet"
    frame.to_parquet(path, index=False)
    return path


def _main_table_tasks(cfg: Config) -> list[str]:
    """Tasks labelled by data.train_table (the others have their own `tasks.<name>.table`)."""
    return [name for name, t in cfg.tasks.items() if not t.table]


def _needs_shared_split(cfg: Config) -> bool:
    d = cfg.data
    random = not d.split_column and ((d.val_fraction > 0 and not d.val_table) or
                                     (d.test_fraction > 0 and not d.test_table))
    # Only the main table is stratified (a per-task table is split at random on its own).
    return bool(d.stratify) and random and bool(d.train_table) and d.stratify in _main_table_tasks(cfg)


def _use_split_table(sub: Config, path: Path) -> None:
    from polyhead.data.tables import IMAGE

    d = sub.data
    d.train_table, d.image_column, d.root, d.split_column, d.stratify = str(path), IMAGE, None, SPLIT_COLUMN, None
    d.val_fraction = d.test_fraction = 0.0


def compared_metrics(task: Task) -> tuple[str, ...]:
    """The metrics compared for `task`: its main metric, then accuracy where its type reports
    accuracy among its headline metrics (multiclass: accuracy; binary: f1, accuracy; multilabel: micro_f1)."""
    return tuple(dict.fromkeys(m for m in (task.main_metric, "accuracy") if m in task.headline_metrics))


def _metric_values(metrics: dict, task: Task) -> dict[str, float | None]:
    split = "test" if "test" in metrics else "val"
    values = metrics.get(split, {}).get(task.name, {})
    out = {}
    for key in compared_metrics(task):
        v = values.get(key)
        out[key] = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_inference(models: list[torch.nn.Module], cfg: Config, iters: int = 20, warmup: int = 3) -> dict:
    """Images/s of running every model in `models` one after another on the same batch.

    One image counts once when all models have answered it. The batch is random uint8 pixels
    of the configured size and channels: this measures model compute, not image decoding."""
    device = next(models[0].parameters()).device
    h, w = image_size(cfg.data)
    batch_size = cfg.data.eval_batch_size or 2 * cfg.data.batch_size
    gen = torch.Generator().manual_seed(cfg.training.seed)
    images = torch.randint(0, 256, (batch_size, cfg.data.channels, h, w), dtype=torch.uint8, generator=gen).to(device)
    for m in models:
        m.eval()
    with torch.inference_mode(), autocast(device, str(cfg.training.precision)):  # as the models were trained
        for _ in range(warmup):
            for m in models:
                m(images)
        _sync(device)
        start = time.perf_counter()
        for _ in range(iters):
            for m in models:
                m(images)
        _sync(device)
        seconds = time.perf_counter() - start
    return {"images_per_s": batch_size * iters / seconds, "seconds": seconds, "batch_size": batch_size,
            "device": str(device)}


def compare(cfg: Config, console: Console | None = None, inference_iters: int = 20, *,
            name_hint: str = "compare") -> dict:
    """Train the multi-task model and one single-task model per task; return (and write) the comparison."""
    from polyhead.engine.fit import fit, make_run_dir

    console = console or Console()
    if len(cfg.tasks) < 2:
        raise PolyheadError(f"compare needs at least two tasks; the config has {len(cfg.tasks)} "
                            f"({', '.join(cfg.tasks) or 'none'}). Add tasks under 'tasks:' or use `polyhead train`")
    if inference_iters < 1:
        raise PolyheadError(f"--inference-iters must be >= 1, got {inference_iters}")
    check_config(cfg)
    singles = {name: single_task_config(cfg, name) for name in cfg.tasks}  # config errors before any training
    folder = make_run_dir(cfg, name_hint)
    if _needs_shared_split(cfg):
        split_table = _materialise_split(cfg, folder)
        for name in _main_table_tasks(cfg):
            _use_split_table(singles[name], split_table)

    plan = [(MTL, copy.deepcopy(cfg))] + [(f"single-{n}", sub) for n, sub in singles.items()]
    results = {}
    for i, (run_name, sub) in enumerate(plan, start=1):
        sub.output_dir, sub.run_name = str(folder), run_name
        console.rule(f"[bold]compare {i}/{len(plan)}: {run_name}[/] ({', '.join(sub.tasks)})")
        results[run_name] = fit(sub, console=console, name_hint=run_name)

    mtl = results[MTL]
    split = "test" if "test" in mtl.metrics else "val"
    tasks = {}
    for name, task in mtl.tasks.items():
        single = results[f"single-{name}"]
        m_vals = _metric_values(mtl.metrics, task)
        s_vals = _metric_values(single.metrics, task)
        tasks[name] = {
            "type": task.type,
            "metrics": {k: {"multitask": m_vals[k], "single_task": s_vals[k],
                            "delta": None if m_vals[k] is None or s_vals[k] is None else m_vals[k] - s_vals[k]}
                        for k in m_vals},
            "training_seconds": {"multitask": mtl.seconds, "single_task": single.seconds},
        }
    single_total = sum(results[f"single-{n}"].seconds for n in cfg.tasks)
    console.rule("[bold]compare: inference[/]")
    mtl_speed = measure_inference([mtl.model], cfg, inference_iters)
    single_speed = measure_inference([results[f"single-{n}"].model for n in cfg.tasks], cfg, inference_iters)
    h, w = image_size(cfg.data)
    report = {
        "folder": str(folder),
        "split": split,
        "tasks": tasks,
        "training_seconds": {"multitask": mtl.seconds, "single_task_total": single_total,
                             "ratio": single_total / mtl.seconds},
        "inference": {
            "multitask_images_per_s": mtl_speed["images_per_s"],
            "single_task_images_per_s": single_speed["images_per_s"],
            "ratio": mtl_speed["images_per_s"] / single_speed["images_per_s"],
            "batch_size": mtl_speed["batch_size"], "iterations": inference_iters,
            "image_size": [h, w], "channels": cfg.data.channels, "device": mtl_speed["device"],
            "threads": torch.get_num_threads(),
        },
        "runs": {name: str(r.run_dir) for name, r in results.items()},
    }
    (folder / "comparison.json").write_text(json.dumps(report, indent=2))
    (folder / "comparison.md").write_text(comparison_markdown(report))
    console.print(comparison_table(report))
    console.print(f"comparison folder: [bold]{folder}[/]")
    return report


def _rows(report: dict) -> list[tuple[str, str, str, str, str]]:
    """(task, metric, multi-task, single-task, delta) as display strings, tasks first."""
    def num(v):
        return "-" if v is None else f"{v:.4f}"

    rows = []
    for name, info in report["tasks"].items():
        for key, v in info["metrics"].items():
            d = v["delta"]
            rows.append((name, key, num(v["multitask"]), num(v["single_task"]), "-" if d is None else f"{d:+.4f}"))
    t = report["training_seconds"]
    rows.append(("all tasks", "training time (s)", f"{t['multitask']:.1f}", f"{t['single_task_total']:.1f}",
                 f"{t['ratio']:.2f}x (single/multi)"))
    i = report["inference"]
    rows.append(("all tasks", "inference images/s", f"{i['multitask_images_per_s']:.1f}",
                 f"{i['single_task_images_per_s']:.1f}", f"{i['ratio']:.2f}x (multi/single)"))
    return rows


def comparison_table(report: dict) -> Table:
    n = len(report["tasks"])
    table = Table(title=f"1 multi-task model vs {n} single-task models ({report['split']} split, "
                        f"Δ = multi − single)", title_justify="left")
    for col, justify in (("task", "left"), ("metric", "left"), ("multi-task", "right"), ("single-task", "right"),
                         ("Δ", "right")):
        table.add_column(col, justify=justify, style="bold" if col == "task" else None)
    rows = _rows(report)
    for k, row in enumerate(rows):
        table.add_row(*row, end_section=k == len(rows) - 3)
    return table


def comparison_markdown(report: dict) -> str:
    i = report["inference"]
    lines = [
        f"# Multi-task vs single-task ({report['split']} split)",
        "",
        f"One multi-task model against {len(report['tasks'])} single-task models trained with the same budget. "
        "Δ = multi-task − single-task; training time compares the one multi-task run with the sum of the "
        "single-task runs; inference counts an image once every task has answered it.",
        "",
        "| task | metric | multi-task | single-task | Δ |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [f"| {' | '.join(row)} |" for row in _rows(report)]
    lines += [
        "",
        f"Inference: batch {i['batch_size']} of random uint8 images {i['image_size'][0]}x{i['image_size'][1]}x"
        f"{i['channels']}, {i['iterations']} timed iterations on {i['device']} ({i['threads']} threads); "
        "model compute only, no image decoding.",
        "",
        "Runs: " + ", ".join(f"`{Path(p).name}/`" for p in report["runs"].values()),
        "",
    ]
    return "\n".join(lines)
