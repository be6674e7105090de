"""`add_task`: a trained run + new task(s) -> a new run whose bundle has every old head unchanged
and one new head per new task, trained on the frozen shared features (polyhead.engine.head_training).

NEW.yaml holds a `tasks:` section (the schema of a config's tasks, each usually with its own
`table`), and optionally `data:` (e.g. a `train_table` for the new tasks), `training:` (epochs,
seed), `optimizer:` (lr, weight_decay), `output_dir` and `run_name`. Every other setting is the
base run's. Paths are relative to NEW.yaml, as in a training config.

The new run folder:
    config.yaml         the base run's config plus the new tasks (with their classes and tables)
    data.json           rows and labelled rows per split of the new tasks
    model_summary.json  the model with its N+1 heads
    history.csv         one row per head-training epoch: train/loss, val/loss (new tasks, summed)
    model/              the bundle: the base run's backbone and heads, byte for byte, plus the new heads
    metrics.json        val/test metrics (new tasks measured here, old tasks copied from the base
                        run), training_seconds, and `add_task`: base run, timings, the base run's
                        full training time
"""

from __future__ import annotations

import copy
import csv
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from rich.console import Console

from polyhead.config.loading import from_yaml_text, load_config, to_yaml
from polyhead.config.schema import Config
from polyhead.data.loaders import eval_loader
from polyhead.engine.data import build_data
from polyhead.engine.devices import resolve_device
from polyhead.engine.head_training import LabelledFeatures, build_heads, cache_features, head_metrics, train_heads
from polyhead.errors import ConfigError, PolyheadError
from polyhead.model.bundle import Bundle, find_bundle, load_bundle, save_bundle
from polyhead.model.summary import model_summary
from polyhead.tasks import Task

SECTIONS = ("tasks", "data", "training", "optimizer", "output_dir", "run_name")
_BUNDLE_KEYS = {"format", "format_version", "polyhead_version", "backbone", "head", "preprocessing", "tasks",
                "num_features"}


@dataclass
class AddTaskResult:
    run_dir: Path
    metrics: dict  # {"val": {new task: metrics}, "test": {...}} (splits with rows only)
    tasks: dict[str, Task]  # the new tasks
    seconds: float  # the whole add-task
    feature_seconds: float  # the one backbone pass over every image
    head_seconds: float  # the head epochs over the cached features
    images: int  # images the backbone saw
    base_training_seconds: float | None  # the base run's full training (None when it did not record it)


def base_run(path: str | Path) -> tuple[Bundle, Config, Path]:
    """(bundle, config, run folder) of a run written by `polyhead train` (or `add-task`)."""
    bundle_dir = find_bundle(path)
    run_dir = bundle_dir.parent
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise PolyheadError(f"add-task needs a run folder with its config.yaml: none at '{config}'")
    return load_bundle(bundle_dir), from_yaml_text(config.read_text()), run_dir


def new_task_config(base: Config, new_yaml: str | Path, bundle: Bundle, base_dir: Path) -> Config:
    """The config `add_task` trains with: the base run's, with `tasks` replaced by NEW.yaml's tasks
    and NEW.yaml's data / training / optimizer keys (and output_dir, run_name) over the base's.
    The new run goes next to the base run unless NEW.yaml names an output_dir."""
    path = Path(new_yaml).expanduser()
    if not path.is_file():
        raise ConfigError(f"no such file: '{path}' (the new task(s), as a `tasks:` section)")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict) or not raw.get("tasks"):
        raise ConfigError(f"'{path}' names no task: expected a `tasks:` section (the schema of a config's tasks, "
                          f"each with its `table`)")
    extra = sorted(set(raw) - set(SECTIONS))
    if extra:
        raise ConfigError(f"'{path}': add-task keeps the run's model; the file may hold {', '.join(SECTIONS)}, "
                          f"not {', '.join(extra)}")
    existing = [name for name in raw["tasks"] if name in bundle.tasks] if isinstance(raw["tasks"], dict) else []
    if existing:
        raise ConfigError(f"task '{existing[0]}' already exists in the run (its tasks: {', '.join(bundle.tasks)}); "
                          f"give the new task another name in '{path}'")
    if bundle.spec.branch_point:
        raise ConfigError(f"the run's model branches at '{bundle.spec.branch_point}' (model.branch_point): a new "
                          f"head would need a branch of its own; add the task to the config and retrain instead")
    # the schema's checks, paths relative to the file; a task without a table uses the base's train_table
    inherit = [] if (raw.get("data") or {}).get("train_table") or not base.data.train_table else \
        [f"data.train_table='{base.data.train_table}'"]
    given = load_config(path, inherit)
    cfg = copy.deepcopy(base)
    cfg.tasks = given.tasks
    for section in ("data", "training", "optimizer"):
        for key in raw.get(section) or {}:
            setattr(getattr(cfg, section), key, getattr(getattr(given, section), key))
    cfg.output_dir = given.output_dir if "output_dir" in raw else str(base_dir.parent)
    cfg.run_name = given.run_name
    return cfg


def add_task(run: str | Path, new_yaml: str | Path, *, device: str = "auto", console: Console | None = None,
             keep_features: bool = False, show_progress: bool = True) -> AddTaskResult:
    """Train the heads of NEW.yaml's tasks on the frozen features of `run`'s model; write a new run
    folder (see the module docstring). `keep_features`: keep the cached features (features/*.safetensors).
    A failure removes the new run folder: the base run is never touched."""
    from polyhead.engine.fit import make_run_dir  # Lightning loads with this module

    console = console or Console()
    started = time.perf_counter()
    bundle, base_cfg, base_dir = base_run(run)
    cfg = new_task_config(base_cfg, new_yaml, bundle, base_dir)
    target = resolve_device(device)
    tasks, splits = build_data(cfg, console)
    out = make_run_dir(cfg, name_hint=f"{base_dir.name}+{'+'.join(tasks)}")
    try:
        t0 = time.perf_counter()
        model = bundle.model.use_channels_last(True).eval()
        data = _cached_features(model, tasks, splits, cfg, out / "features", target, show_progress)
        feature_seconds, t0 = time.perf_counter() - t0, time.perf_counter()
        head_cfg = bundle.meta.get("head", {})
        torch.manual_seed(cfg.training.seed)  # the new heads' initial weights
        heads = build_heads(tasks, model.num_features, hidden=head_cfg.get("hidden", ()),
                            dropout=head_cfg.get("dropout", 0.0)).to(target)
        history = train_heads(heads, tasks, data["train"], data.get("val"), epochs=cfg.training.epochs,
                              lr=cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay,
                              batch_size=cfg.data.batch_size, seed=cfg.training.seed)
        metrics = {name: head_metrics(heads, tasks, data[name]) for name in ("val", "test") if name in data}
        head_seconds = time.perf_counter() - t0

        model = model.cpu()
        for name, head in heads.items():  # appended: the old heads stay as loaded
            model.heads[name] = head.cpu()
        _write_run(out, bundle, model, base_cfg, cfg, tasks, splits, history)
        if not keep_features:
            shutil.rmtree(out / "features")
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    base_metrics = _read_json(base_dir / "metrics.json")
    base_seconds = base_metrics.get("add_task", {}).get("full_training_seconds", base_metrics.get("training_seconds"))
    images = sum(len(d.x) for d in data.values())
    seconds = time.perf_counter() - started
    summary = {split: {**{t: m for t, m in base_metrics.get(split, {}).items() if t in bundle.tasks}, **metrics[split]}
               for split in metrics}
    summary.update(training_seconds=seconds, add_task={
        "base_run": str(base_dir), "new_tasks": list(tasks), "copied_from_base": list(bundle.tasks),
        "images": images, "feature_seconds": feature_seconds, "head_seconds": head_seconds,
        "head_epochs": cfg.training.epochs, "full_training_seconds": base_seconds})
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    return AddTaskResult(out, metrics, tasks, seconds, feature_seconds, head_seconds, images, base_seconds)


def _cached_features(model, tasks: dict[str, Task], splits, cfg: Config, folder: Path, device: torch.device,
                     show_progress: bool) -> dict[str, LabelledFeatures]:
    """{split: cached features with the new tasks' targets} for train, val and test (those with rows)."""
    data = {}
    for name in ("train", "val", "test"):
        split = getattr(splits, name)
        if split is not None and len(split):
            x = cache_features(model, eval_loader(split, cfg.data, seed=cfg.training.seed),
                               folder / f"{name}.safetensors", device=device, description=f"features ({name})",
                               show_progress=show_progress)
            data[name] = LabelledFeatures.of(x, split, tasks).to(device)
    return data


def _write_run(out: Path, bundle: Bundle, model, base_cfg: Config, cfg: Config, tasks: dict[str, Task], splits,
               history: list[dict]) -> None:
    extra = {k: v for k, v in bundle.meta.items() if k not in _BUNDLE_KEYS}  # e.g. what later versions record
    head = bundle.meta.get("head", {})
    save_bundle(out / "model", model, {**bundle.tasks, **tasks}, bundle.spec, bundle.prep,
                head_hidden=head.get("hidden", ()), head_dropout=head.get("dropout", 0.0), extra=extra)
    merged = copy.deepcopy(base_cfg)  # retraining from it trains all N+1 tasks together
    for name, task in tasks.items():
        merged.tasks[name] = copy.deepcopy(cfg.tasks[name])
        merged.tasks[name].classes = list(task.classes)
        if not merged.tasks[name].table and cfg.data.train_table != base_cfg.data.train_table:
            merged.tasks[name].table = cfg.data.train_table
    (out / "config.yaml").write_text(to_yaml(merged))
    (out / "data.json").write_text(json.dumps(splits.summary(), indent=2))
    summary = model_summary(model, (bundle.prep.channels, *bundle.prep.image_size))
    (out / "model_summary.json").write_text(json.dumps(summary, indent=2))
    keys = list(dict.fromkeys(k for row in history for k in row))
    with open(out / "history.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
