"""`fit`: config -> trained run folder. The one place a Config becomes objects (its tasks and data
through polyhead.engine.data, shared with the data verbs).

Run folder:
    config.yaml      resolved config (inferred class lists written in), rebuilds the run
    data.json        rows and labelled rows per split and task (and rows skipped for a bad image)
    skipped_rows.csv rows dropped for a bad image with data.on_bad_image=skip: split, table, row, image, reason
    model_summary.json  input size; parameters, MACs and output shape per component (backbone or trunk and
                     branches, each head); the backbone's stages: output shape, whether and at which lr they train
    model.png, model.svg  a picture of the model drawn from model_summary.json (polyhead.reports.model_picture)
    history.csv      one row per epoch: every per-task loss and metric; learning rates and task weights as
                     means over the epoch's steps
    checkpoints/     best.ckpt, last.ckpt (Lightning; written atomically by engine/checkpoint_io.py)
    model/           the bundle (see polyhead.model.bundle)
    metrics.json     final validation and test metrics per task
    plots/           training/ (learning curves), test/ or val/ (evaluation plots), see polyhead.reports
    report.html      self-contained report (report.enabled)
    tracking.json    how to reopen each tracker's run (see polyhead.tracking)
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Sequence

import lightning as L
import torch
import yaml
from rich.console import Console

from polyhead.config.loading import to_yaml
from polyhead.config.schema import Config
from polyhead.data.cache import ImageCache, open_cache
from polyhead.data.loaders import eval_loader, image_size, loader_workers, train_loader
from polyhead.data.splits import DataSplits
from polyhead.data.transforms import BatchAugment
from polyhead.data.validation import write_skipped_rows
from polyhead.engine.callbacks import ConfiguredEarlyStopping, EpochEnd, EpochHistory, EpochSeed, SaveConfigOnStart
from polyhead.engine.checks import check_config, check_monitor
from polyhead.engine.checkpoint_io import AtomicCheckpointIO, disk_full_guard, load_checkpoint_file, resume_epoch
from polyhead.engine.data import build_data
from polyhead.engine.devices import process_count, training_devices
from polyhead.engine.distributed import backend_for, barrier, broadcast_object, join, launched_size, world
from polyhead.engine.evaluation import evaluate_model
from polyhead.engine.module import MultiTaskModule
from polyhead.engine.nonfinite import NonFiniteGuard
from polyhead.engine.precision import resolve_precision
from polyhead.engine.resume import check_resume
from polyhead.engine.threads import training_threads
from polyhead.engine.progress import epoch_number, progress_callbacks
from polyhead.engine.summary import metrics_table
from polyhead.engine.tracked_run import EpochMetrics, data_tags, dataset_fingerprint, finish_run, start_run, tracked_run
from polyhead.errors import ConfigError, PolyheadError
from polyhead.model.bundle import BackboneSpec, Preprocessing, build_model, save_bundle
from polyhead.plugins import plugin_records
from polyhead.model.multitask import MultiTaskModel
from polyhead.model.summary import model_summary, stages_table, summary_table
from polyhead.tasks import Task
from polyhead.tracking import Trackers, build_trackers
from polyhead.weighting import build_weighting


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict  # {"val": {task: {...}}, "test": {...}}
    tasks: dict[str, Task]
    model: MultiTaskModel
    seconds: float


def make_run_dir(cfg: Config, name_hint: str = "run") -> Path:
    base = Path(cfg.output_dir).expanduser()
    name = cfg.run_name or f"{name_hint}-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir, i = base / name, 1
    while run_dir.exists() and any(run_dir.iterdir()):
        i += 1
        run_dir = base / f"{name}-{i}"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise PolyheadError(f"cannot write the run folder '{run_dir}' (output_dir={cfg.output_dir!r}): "
                            f"{exc.strerror or exc}") from None
    return run_dir


def set_cpu_threads(cfg: Config, workers: int) -> int | None:
    """On a CPU, torch's threads and the DataLoader workers share the cores: torch gets the cores the
    workers leave (every core when the images are cached and no worker runs), unless the user chose
    (training.cpu_threads, or their own OMP_NUM_THREADS). Returns the threads set (None: left alone)."""
    if torch.cuda.is_available() and cfg.training.accelerator != "cpu":
        return None
    threads = training_threads(workers, cfg.training.cpu_threads)
    sharing = int(os.environ.get("LOCAL_WORLD_SIZE", 1))  # training processes on this machine share its cores
    if threads is not None and cfg.training.cpu_threads is None and sharing > 1:
        threads = max(1, threads // sharing)
    if threads is not None:
        torch.set_num_threads(threads)
    return threads


def open_image_cache(cfg: Config, splits: DataSplits, console: Console) -> ImageCache | None:
    """data.cache over every image of the run (train, val and test): one cache however the rows are
    split, so another seed or `compare`'s runs reuse it."""
    d = cfg.data
    paths = [p for split in (splits.train, splits.val, splits.test) if split is not None for p in split.paths]
    return open_cache(paths, mode=d.cache, channels=d.channels, size=image_size(d), cache_dir=d.cache_dir,
                      console=console, progress=live_progress(cfg, console))


def build_model_from_config(cfg: Config, tasks: dict[str, Task]) -> tuple[MultiTaskModel, BackboneSpec, Preprocessing]:
    m, d = cfg.model, cfg.data
    small_cnn = dict(vars(m.small_cnn)) if m.backbone == "small_cnn" else None
    spec = BackboneSpec(name=m.backbone, in_chans=d.channels, small_cnn=small_cnn, drop_rate=m.drop_rate,
                        branch_point=m.branch_point, branch_groups=m.branch_groups,
                        options=dict(m.backbone_args) or None)
    prep = Preprocessing(image_size(d), d.channels, d.mean, d.std)
    model = build_model(spec, tasks, prep, head_hidden=m.head.hidden, head_dropout=m.head.dropout,
                        pretrained=m.pretrained, weights=m.weights, weights_key_map=m.weights_key_map)
    return model, spec, prep


def _monitor(cfg: Config, has_val: bool, console: Console) -> tuple[str, str]:
    monitor = cfg.training.monitor
    if monitor.startswith("val/") and not has_val:
        console.print(f"[yellow]no validation split: monitoring 'train/loss' instead of '{monitor}'[/]")
        monitor = "train/loss"
    mode = cfg.training.monitor_mode
    if mode == "auto":
        mode = "min" if monitor.endswith("loss") else "max"
    return monitor, mode


def _weighting_args(cfg: Config) -> dict:
    args = dict(cfg.training.weighting_args)
    if cfg.training.weighting == "static" and "weights" not in args:
        args["weights"] = {name: t.weight for name, t in cfg.tasks.items()}
    return args


def quiet_lightning() -> None:
    """Lightning's start-up chatter (accelerator lines, tips) is noise next to polyhead's own summary."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*The number of training batches.*")
    warnings.filterwarnings("ignore", ".*Checkpoint directory .* exists and is not empty.*")  # on --resume
    # several processes: every logged value is already reduced over them (polyhead.engine.ddp_step)
    warnings.filterwarnings("ignore", ".*when logging on epoch level in distributed setting.*")


def fit(cfg: Config, *, console: Console | None = None, name_hint: str = "run",
        resume: str | Path | None = None, callbacks: Sequence[L.Callback] = ()) -> RunResult:
    """Train, save the bundle, evaluate on val and test. Returns the run's folder and metrics.

    `resume`: a run folder; training continues from its `checkpoints/last.ckpt` (model,
    optimizer, scheduler, weighting method state, epoch counters, early stopping, history)
    and logs into the same tracker runs (`tracking.json`). `callbacks`: extra Lightning callbacks,
    run after polyhead's own epoch-end ones (e.g. `polyhead tune`'s per-epoch report to Optuna)."""
    console = console or Console()
    check_config(cfg)  # every config problem, and a resume's refused changes, before any work
    t = cfg.training
    accelerator, devices = training_devices(t.accelerator, t.devices)  # this machine has them
    if resume is not None:
        check_resume(resume, cfg)
    processes = process_count(devices) * t.num_nodes
    if processes > 1 and launched_size() == 1:  # start them (one machine), then read what rank 0 wrote
        return _fit_on_processes(cfg, processes, accelerator, console=console, name_hint=name_hint, resume=resume,
                                 callbacks=callbacks)
    w = join(accelerator, devices)  # started by a launcher (ours, torchrun, srun): the process group, before any data
    if w.size != processes:
        raise ConfigError(f"the launcher started {w.size} training processes but training.devices x "
                          f"training.num_nodes = {process_count(devices)} x {t.num_nodes}; set training.devices to "
                          f"the processes per machine and training.num_nodes to the machines")
    if not w.main:  # rank 0 prints, writes and tracks
        console, trackers = Console(quiet=True), build_run_trackers(cfg, enabled=False)
    else:
        trackers = build_run_trackers(cfg)
    with tracked_run(trackers):  # a failure ends the tracker runs as FAILED
        result = _fit(cfg, trackers, console=console, name_hint=name_hint, resume=resume, callbacks=callbacks)
        finish_run(trackers, result.run_dir, console)
    return result


def _fit_on_processes(cfg: Config, processes: int, accelerator: str, *, console: Console, name_hint: str,
                      resume: str | Path | None, callbacks: Sequence[L.Callback]) -> RunResult:
    """training.devices=N on this machine: N worker processes (polyhead.engine.launch); the result
    is read back from the run folder rank 0 wrote."""
    t = cfg.training
    if t.num_nodes > 1:
        raise ConfigError(f"training.num_nodes={t.num_nodes}: start polyhead on every machine with a launcher "
                          f"(torchrun --nnodes {t.num_nodes} --nproc-per-node {process_count(t.devices)} ..., or srun "
                          f"running torchrun), see docs/scaling.md")
    if callbacks:
        raise PolyheadError("extra training callbacks cannot reach the training processes of training.devices="
                            f"{processes}; train on one device (training.devices=1)")
    from polyhead.engine.launch import run_workers
    from polyhead.model.bundle import load_bundle

    started = time.perf_counter()
    kind = "GPU" if accelerator == "cuda" else accelerator.upper()
    console.print(f"training on {processes} {kind} processes (data-parallel)")
    run_dir = run_workers(cfg, processes, name_hint=name_hint, resume=resume)
    bundle = load_bundle(run_dir / "model")
    summary = json.loads((run_dir / "metrics.json").read_text())
    metrics = {split: summary[split] for split in ("val", "test") if split in summary}
    return RunResult(run_dir, metrics, bundle.tasks, bundle.model, time.perf_counter() - started)


def _fit(cfg: Config, trackers: Trackers, *, console: Console, name_hint: str,
         resume: str | Path | None, callbacks: Sequence[L.Callback] = ()) -> RunResult:
    quiet_lightning()
    w = world()  # several training processes: only rank 0 writes (see polyhead.engine.distributed)
    run_dir, ckpt = _resume_point(Path(resume)) if resume is not None else (None, None)  # fail before any work
    started = time.perf_counter()
    L.seed_everything(cfg.training.seed, workers=True, verbose=False)
    tasks, splits = build_data(cfg, console)  # with data.validate's image check and data.on_bad_image
    cache = None
    for turn in (True, False):  # rank 0 fills the disk cache first; the others then read it
        if turn == w.main:
            cache = open_image_cache(cfg, splits, console)
        barrier()
    set_cpu_threads(cfg, loader_workers(cfg.data, cached=cache is not None))
    for name, task in tasks.items():  # write inferred classes into the saved config
        cfg.tasks[name].classes = list(task.classes)
    check_monitor(cfg)  # again, now that the class counts are known (top-k accuracy needs k < classes)
    model, spec, prep = build_model_from_config(cfg, tasks)
    model.use_channels_last(cfg.training.channels_last)
    weighting = build_weighting(cfg.training.weighting, list(tasks), _weighting_args(cfg))
    if resume is None:  # rank 0 names the run folder
        run_dir = Path(broadcast_object(str(make_run_dir(cfg, name_hint)) if w.main else None))
    if w.main:
        _write_run_files(cfg, run_dir, splits, model, prep, console, fresh=resume is None)
    _start_tracking(cfg, trackers, run_dir, splits)

    module = MultiTaskModule(model, tasks, weighting, optimizer=cfg.optimizer, scheduler=cfg.scheduler,
                             freeze_backbone_epochs=cfg.training.freeze_backbone_epochs,
                             unfreeze_stages=cfg.training.unfreeze_stages,
                             gradient_clip=cfg.training.gradient_clip, monitor=cfg.training.monitor,
                             nonfinite=NonFiniteGuard(cfg.training.on_nonfinite_loss, splits.train),
                             augment=BatchAugment(cfg.data.augment, cfg.data.channels, seed=cfg.training.seed))
    has_val = splits.val is not None and len(splits.val) > 0
    extra = ((EpochMetrics(trackers),) if trackers else ()) + (
        (SaveConfigOnStart(run_dir / "config.yaml", cfg),) if resume is not None else ()) + tuple(callbacks)
    trainer = _trainer(cfg, run_dir, has_val, console, tasks, extra)
    if ckpt is not None:
        console.print(f"resuming from {ckpt}")
    shard = (w.rank, w.size)  # this process's share of the rows
    train = train_loader(splits.train, cfg.data, seed=cfg.training.seed, cache=cache, shard=shard)
    if ckpt is not None:  # persistent workers draw the first epoch's rows before Lightning calls set_epoch
        train.sampler.set_epoch(resume_epoch(ckpt))
    val = eval_loader(splits.val, cfg.data, seed=cfg.training.seed, cache=cache, shard=shard) if has_val else None
    trainer.fit(module, train, val,
                ckpt_path=ckpt, weights_only=True)
    if not w.main:  # rank 0 saves, evaluates and reports
        return RunResult(run_dir, {}, tasks, model, time.perf_counter() - started)
    _restore_best(module, run_dir, console)
    with disk_full_guard(run_dir / "model", run_dir):
        save_bundle(run_dir / "model", model, tasks, spec, prep, head_hidden=cfg.model.head.hidden,
                    head_dropout=cfg.model.head.dropout, extra={"plugins": plugin_records(cfg.plugins)})

    device = module.device if module.device.type != "meta" else torch.device("cpu")
    metrics, outputs = {}, {}
    for split_name in ("val", "test"):
        split = getattr(splits, split_name)
        if split is not None and len(split):
            metrics[split_name], split_outputs = evaluate_model(
                model, tasks, eval_loader(split, cfg.data, seed=cfg.training.seed, cache=cache), device=device, description=f"evaluating {split_name}",
                show_progress=live_progress(cfg, console), return_outputs=True)
            outputs[split_name] = (split_outputs, split.paths)
            console.print(metrics_table(metrics[split_name], tasks, f"{split_name} metrics"))
    seconds = time.perf_counter() - started
    summary = {**metrics, "training_seconds": seconds, "epochs_run": trainer.current_epoch}
    with disk_full_guard(run_dir / "metrics.json", run_dir):
        (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    if cfg.report.enabled:
        from polyhead.reports.run import write_run_report

        report = write_run_report(run_dir, tasks, outputs, worst=cfg.report.worst_examples,
                                  max_annotated=cfg.report.max_classes_annotated)
        console.print(f"report: [bold]{report}[/]")
    console.print(f"run folder: [bold]{run_dir}[/] ({seconds:.0f} s)")
    return RunResult(run_dir, metrics, tasks, model, seconds)


def _write_run_files(cfg: Config, run_dir: Path, splits: DataSplits, model: MultiTaskModel, prep: Preprocessing,
                     console: Console, *, fresh: bool) -> None:
    """config.yaml (a fresh run; a resume rewrites it once the checkpoint has loaded, SaveConfigOnStart),
    data.json, skipped_rows.csv, model_summary.json and the model picture; the summaries printed."""
    if fresh:
        (run_dir / "config.yaml").write_text(to_yaml(cfg))
    (run_dir / "data.json").write_text(json.dumps(splits.summary(), indent=2))
    write_skipped_rows(run_dir, splits)
    _print_data_summary(console, splits, run_dir)
    summary = model_summary(model, (prep.channels, *prep.image_size), schedule=_stage_schedule(cfg))
    (run_dir / "model_summary.json").write_text(json.dumps(summary, indent=2))
    console.print(summary_table(summary))
    console.print(stages_table(summary))
    from polyhead.reports.model_picture import write_model_picture  # matplotlib: imported when used

    write_model_picture(summary, run_dir)


def _stage_schedule(cfg: Config) -> dict:
    """Which backbone stages train when, and at which learning rate (for the model summary)."""
    t, o = cfg.training, cfg.optimizer
    return {"freeze_epochs": t.freeze_backbone_epochs, "unfreeze_stages": t.unfreeze_stages, "lr": o.lr,
            "backbone_lr": o.backbone_lr, "layer_decay": o.layer_decay}


def live_progress(cfg: Config, console: Console) -> bool:
    """Live progress bars only where they can redraw (an interactive terminal or a notebook) and with
    training.progress_bar; a log file gets one plain line per epoch instead (polyhead.engine.progress)."""
    return bool(cfg.training.progress_bar and (console.is_interactive or console.is_jupyter))


def _trainer(cfg: Config, run_dir: Path, has_val: bool, console: Console, tasks: dict[str, Task],
             extra: tuple[L.Callback, ...] = ()) -> L.Trainer:
    t = cfg.training
    monitor, mode = _monitor(cfg, has_val, console)
    # Order matters: epoch-end updates and the history row first, then the checkpoints, all at the
    # end of the training epoch (after validation), when train/ and val/ metrics both exist.
    ckpt = L.pytorch.callbacks.ModelCheckpoint
    callbacks: list[L.Callback] = [
        EpochSeed(t.seed),
        EpochEnd(),
        EpochHistory(run_dir / "history.csv"),
        *extra,  # tracking: after the history row, same scalars
        ckpt(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode=mode, save_top_k=1,
             save_on_train_epoch_end=True, enable_version_counter=False),
        ckpt(dirpath=run_dir / "checkpoints", filename="last", monitor=None, save_top_k=1,
             save_on_train_epoch_end=True, enable_version_counter=False),
    ]
    if t.early_stopping.enabled:
        callbacks.append(ConfiguredEarlyStopping(monitor=monitor, mode=mode, patience=t.early_stopping.patience,
                                                 min_delta=t.early_stopping.min_delta))
    live = live_progress(cfg, console)
    callbacks += progress_callbacks(live, console, {name: task.main_metric for name, task in tasks.items()})
    limits = {}
    if t.limit_train_batches is not None:
        limits["limit_train_batches"] = int(t.limit_train_batches) if t.limit_train_batches >= 1 else t.limit_train_batches
    if t.limit_val_batches is not None:
        limits["limit_val_batches"] = int(t.limit_val_batches) if t.limit_val_batches >= 1 else t.limit_val_batches
    accelerator, devices = training_devices(t.accelerator, t.devices)
    strategy: str | L.pytorch.strategies.Strategy = "auto"
    if world().distributed:  # find_unused_parameters: a task without a labelled row in a step leaves its head unused
        strategy = L.pytorch.strategies.DDPStrategy(process_group_backend=backend_for(accelerator),
                                                    find_unused_parameters=True)
    return L.Trainer(max_epochs=t.epochs, accelerator=accelerator, devices=devices, num_nodes=t.num_nodes,
                     strategy=strategy, use_distributed_sampler=False,  # the samplers shard (data/loaders.py)
                     precision=resolve_precision(str(t.precision), t.accelerator), callbacks=callbacks, logger=False,
                     plugins=[AtomicCheckpointIO(run_dir)],  # atomic writes, weights_only loads
                     default_root_dir=str(run_dir), deterministic=t.deterministic, num_sanity_val_steps=0,
                     enable_progress_bar=live, enable_model_summary=False, log_every_n_steps=10, **limits)


def build_run_trackers(cfg: Config, enabled: bool = True) -> Trackers:
    """The trackers of a run (tracking.*); `enabled=False`: none (a training process other than rank 0)."""
    t = cfg.tracking
    options = {"mlflow": {"uri": t.mlflow.uri, "log_model": t.mlflow.log_model},
               "clearml": {"offline": t.clearml.offline}}
    return build_trackers(list(t.trackers) if t.enabled and enabled else [], experiment=t.experiment,
                          output_dir=cfg.output_dir, options=options)


def _start_tracking(cfg: Config, trackers: Trackers, run_dir: Path, splits: DataSplits) -> None:
    if not trackers:
        return
    from polyhead import __version__

    tables = [cfg.data.train_table, cfg.data.val_table, cfg.data.test_table, *(t.table for t in cfg.tasks.values())]
    files = [Path(p).expanduser() for p in dict.fromkeys(tables) if p and Path(p).expanduser().is_file()]
    paths = [p for split in (splits.train, splits.val, splits.test) if split is not None for p in split.paths]
    tags = {"data.fingerprint": dataset_fingerprint(files, paths), **data_tags(splits.summary()),
            "polyhead.version": __version__, "model.backbone": cfg.model.backbone,
            "training.weighting": cfg.training.weighting}
    start_run(trackers, run_dir, yaml.safe_load(to_yaml(cfg)), tags)


def _resume_point(run_dir: Path) -> tuple[Path, Path]:
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise PolyheadError(f"cannot resume '{run_dir}': no checkpoint at '{ckpt}' (is it a run folder written "
                            f"by `polyhead train` that finished at least one epoch?)")
    load_checkpoint_file(ckpt, mmap=True)  # refuse pickled code or a torn file before any work
    return run_dir, ckpt


def _restore_best(module: MultiTaskModule, run_dir: Path, console: Console) -> None:
    best = run_dir / "checkpoints" / "best.ckpt"
    if not best.exists():
        return
    state = load_checkpoint_file(best)
    module.load_state_dict(state["state_dict"])
    epoch = epoch_number(state["epoch"]) if isinstance(state.get("epoch"), int) else "?"
    console.print(f"restored the best checkpoint (epoch {epoch})")


def _print_data_summary(console: Console, splits: DataSplits, run_dir: Path) -> None:
    for name, info in splits.summary().items():
        labelled = ", ".join(f"{t} {n}" for t, n in info["labelled"].items())
        console.print(f"{name}: {info['rows']} rows (labelled per task: {labelled})")
