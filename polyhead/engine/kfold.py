"""k-fold cross-validation (`data.folds: K`): K runs of `fit`, one per fold, under one parent folder.

Fold k validates on the k-th of K folds of the training rows (each source's train and val rows,
dealt out by `polyhead.data.splits.fold_positions`: seeded by training.seed, stratified on
data.stratify) and trains on the other K-1; the test split is the same held-out set for every fold.
The class lists are inferred once from all those rows, so every fold trains the same heads.

Parent folder (`<output_dir>/<run_name or CONFIG-kfold-TIMESTAMP>/`):
    config.yaml    the resolved config (data.folds: K, inferred class lists written in); rebuilds the run
    folds.csv      the rows the folds are drawn from: table, row (1-based in its table), image, fold
    fold-1/ .. fold-K/   one run folder per fold (see polyhead.engine.fit); its config.yaml has data.fold: k
    kfold.json     per fold: status (finished | failed | interrupted), run folder, error, val and test
                   metrics (metrics.json); per scalar metric "<split>/<task>/<metric>": mean and std
                   (numpy, ddof=0) over the finished folds whose value is finite, and how many those are
    kfold.csv      the same as a table: one row per fold, then the rows `mean` and `std`
    tracking.json  the parent's tracker runs (MLflow: the fold runs are its children, tag mlflow.parentRunId)

kfold.json and kfold.csv are rewritten after every fold, so a failed or interrupted fold leaves the
finished ones summarised. A failed fold does not stop the others.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from polyhead.config.loading import to_yaml
from polyhead.config.schema import Config
from polyhead.data.splits import FoldPool, fold_frame, fold_pools
from polyhead.data.tables import quoted
from polyhead.engine.checks import check_config
from polyhead.engine.summary import scalar_metrics
from polyhead.engine.tracked_run import flatten, tracked_run
from polyhead.errors import ConfigError, PolyheadError, one_line
from polyhead.tasks import Task, build_tasks
from polyhead.tracking import Trackers

SPLITS = ("val", "test")


@dataclass
class FoldRun:
    """One fold's run: `status` finished | failed | interrupted; `metrics` as metrics.json's val and
    test ({"val": {task: {metric: value, "n": rows}}, "test": ...}; {} unless finished)."""

    fold: int
    run_dir: Path | None
    status: str
    metrics: dict
    seconds: float = 0.0
    error: str | None = None


@dataclass
class KFoldResult:
    """What `fit_folds` (and `polyhead.fit` with data.folds) returns: the parent folder, every fold's
    run and `summary` {"<split>/<task>/<metric>": {"mean", "std", "folds"}} over the finished folds."""

    run_dir: Path
    folds: list[FoldRun]
    summary: dict[str, dict]

    @property
    def metrics(self) -> dict:
        """The mean over the finished folds, shaped like a single run's metrics: {"val": {task: {metric: mean}}}."""
        out: dict = {}
        for key, stats in self.summary.items():
            split, task, metric = key.split("/", 2)
            out.setdefault(split, {}).setdefault(task, {})[metric] = stats["mean"]
        return out

    @property
    def failed(self) -> list[int]:
        return [r.fold for r in self.folds if r.status != "finished"]

    def failure_line(self) -> str:
        """One line for the CLI when some fold did not finish."""
        first = next(r for r in self.folds if r.status != "finished")
        done = [r.fold for r in self.folds if r.status == "finished"]
        return (f"k-fold: fold {', '.join(map(str, self.failed))} of {len(self.folds)} did not finish (fold "
                f"{first.fold}: {first.error}); the finished folds ({', '.join(map(str, done)) or 'none'}) are "
                f"summarised in '{self.run_dir / 'kfold.json'}'")


def fit_folds(cfg: Config, *, console: Console | None = None, name_hint: str = "run",
              resume: str | Path | None = None, callbacks: Sequence = ()) -> KFoldResult:
    """Train one model per fold of `cfg` (data.folds set, data.fold unset) and summarise them.

    Every check that needs no training comes first: the config, then the folds against the rows
    (ConfigError when data.folds exceeds a table's rows or, stratified, its rarest class's).
    `resume`: a parent folder written before: finished folds are kept, a fold with a checkpoint
    resumes from it (`fit(resume=...)`), the others train from the start. `callbacks`: passed to
    every fold's `fit`."""
    from polyhead.engine.fit import build_run_trackers, make_run_dir, quiet_lightning

    console = console or Console()
    check_config(cfg)
    if not cfg.data.folds or cfg.data.fold is not None:
        raise PolyheadError(f"fit_folds needs data.folds set and data.fold unset (got data.folds={cfg.data.folds}, "
                            f"data.fold={cfg.data.fold}); fit trains one fold")
    from polyhead.engine.distributed import launched_size

    if launched_size() > 1:  # every process would make its own parent folder
        raise ConfigError(f"data.folds={cfg.data.folds} under a launcher (torchrun, srun): launch one fold at a time "
                          f"with data.fold=k, or use training.devices=N on one machine (polyhead starts the processes "
                          f"for each fold)")
    quiet_lightning()
    cfg = copy.deepcopy(cfg)
    k_total = cfg.data.folds
    tasks = build_tasks(cfg.tasks)
    pools = fold_pools(cfg.data, tasks, seed=cfg.training.seed)  # a ConfigError before any folder
    fix_classes(cfg, tasks, pools, console)
    _pin_tracking_store(cfg)
    previous = _previous_runs(Path(resume)) if resume is not None else {}
    parent = Path(resume) if resume is not None else make_run_dir(cfg, f"{name_hint}-kfold")
    if resume is None:
        (parent / "config.yaml").write_text(to_yaml(cfg))
        fold_frame(pools).to_csv(parent / "folds.csv", index=False)
    sizes = np.bincount(np.concatenate([p.fold for p in pools]), minlength=k_total + 1)[1:]
    console.print(f"k-fold cross-validation: {k_total} folds of {', '.join(map(str, sizes))} rows "
                  f"({escape(str(parent))})", soft_wrap=True)

    trackers = build_run_trackers(cfg)
    runs: list[FoldRun] = []
    with tracked_run(trackers):  # an interrupted k-fold run ends the parent run KILLED
        if trackers:
            trackers.start(parent, parent.name)
            trackers.log_params(flatten(yaml.safe_load(to_yaml(cfg))))
            trackers.set_tags({"polyhead.kfold.folds": str(k_total)})
        for k in range(1, k_total + 1):
            sub = fold_config(cfg, k, parent)
            console.rule(f"[bold]fold {k}/{k_total}[/]")
            try:
                runs.append(_run_fold(sub, k, parent, previous.get(k), console, callbacks))
            except BaseException as exc:  # Ctrl-C (Lightning: SystemExit): summarise what finished, then stop
                runs.append(FoldRun(k, _fold_dir(parent, k), "interrupted", {}, error=one_line(exc)))
                write_summary(parent, cfg, runs)
                _tag_child(parent, runs[-1], console)
                raise
            write_summary(parent, cfg, runs)
            _tag_child(parent, runs[-1], console)
            if trackers and runs[-1].status == "finished":
                trackers.log_metrics(_prefixed(runs[-1].metrics, "fold/"), step=k)
        summary = summarise(runs)
        result = KFoldResult(parent, runs, summary)
        if trackers:
            _finish_parent(trackers, parent, result, console)
    console.print(kfold_table(result, tasks))
    console.print(f"k-fold folder: [bold]{escape(str(parent))}[/]", soft_wrap=True)
    return result


def fold_config(cfg: Config, k: int, parent: Path) -> Config:
    """Fold k's config: the k-fold config with data.fold=k, writing its run folder to `parent`/fold-k."""
    sub = copy.deepcopy(cfg)
    sub.data.fold = k
    sub.output_dir, sub.run_name = str(parent), f"fold-{k}"
    return sub


def fix_classes(cfg: Config, tasks: dict[str, Task], pools: list[FoldPool], console: Console | None) -> None:
    """Infer each task's classes (those the config does not list) from all the rows the folds are
    drawn from and write them into `cfg`: a class missing from one fold's training rows still gets
    its output, so every fold trains the same heads."""
    for p in pools:
        for name in p.source.tasks:
            task = tasks[name]
            column = p.source.table.frame[task.column].iloc[p.pool]
            if task.fit_classes(column, quoted(p.source.table.source)) and console is not None:
                shown = ", ".join(task.classes[:30]) + (" ..." if len(task.classes) > 30 else "")
                console.print(f"[bold]{name}[/] ({task.type}): {len(task.classes)} classes inferred from the rows "
                              f"of every fold: {escape(shown)}", soft_wrap=True)
            cfg.tasks[name].classes = list(task.classes)


def _pin_tracking_store(cfg: Config) -> None:
    """The fold runs write to `parent/` (their output_dir), so the default MLflow store
    (`<output_dir>/mlflow.db`) is named explicitly: parent and fold runs share the user's store."""
    t = cfg.tracking
    if t.enabled and "mlflow" in t.trackers and not t.mlflow.uri:
        t.mlflow.uri = f"sqlite:///{Path(cfg.output_dir).expanduser().resolve() / 'mlflow.db'}"


def _previous_runs(parent: Path) -> dict[int, dict]:
    record = parent / "kfold.json"
    if not (parent / "folds.csv").is_file():
        raise PolyheadError(f"cannot resume '{parent}' as a k-fold run: no folds.csv there (not a k-fold parent "
                            f"folder; resume one fold with --resume {parent}/fold-K)")
    runs = json.loads(record.read_text()).get("runs", []) if record.is_file() else []
    return {int(r["fold"]): r for r in runs}


def _run_fold(sub: Config, k: int, parent: Path, before: dict | None, console: Console, callbacks) -> FoldRun:
    """Train fold k (or keep it finished, or resume it, as `before`, its kfold.json entry, says).
    Any Exception makes a failed FoldRun: the next fold still trains."""
    from polyhead.engine.fit import fit

    run_dir = Path(before["run_dir"]) if before and before.get("run_dir") else None
    if run_dir is not None and before.get("status") == "finished" and (run_dir / "metrics.json").is_file():
        saved = json.loads((run_dir / "metrics.json").read_text())
        console.print(f"fold {k}: finished before ({escape(str(run_dir))})", soft_wrap=True)
        return FoldRun(k, run_dir, "finished", {s: saved[s] for s in SPLITS if s in saved},
                       float(saved.get("training_seconds", 0.0)))
    resume = run_dir if run_dir is not None and (run_dir / "checkpoints" / "last.ckpt").is_file() else None
    try:
        result = fit(sub, console=console, name_hint=f"fold-{k}", resume=resume, callbacks=callbacks)
    except Exception as exc:
        line = one_line(exc)
        if isinstance(exc, PolyheadError):
            console.print(f"[red]fold {k} failed:[/] {escape(line)}", soft_wrap=True)
        else:  # a bug, not a user's mistake: keep its traceback
            console.print(f"[red]fold {k} failed:[/]")
            console.print_exception()
        found = _fold_dir(parent, k)
        return FoldRun(k, found, "failed", {}, error=line)
    return FoldRun(k, result.run_dir, "finished", result.metrics, result.seconds)


def _fold_dir(parent: Path, k: int) -> Path | None:
    """The newest folder fit made for fold k (fold-k, or fold-k-2 ... when fold-k was taken)."""
    found = [p for p in parent.glob(f"fold-{k}*") if p.is_dir() and (p.name == f"fold-{k}" or
                                                                     p.name.startswith(f"fold-{k}-"))]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def summarise(runs: list[FoldRun]) -> dict[str, dict]:
    """{"<split>/<task>/<metric>": {"mean", "std", "folds"}} for every scalar of the finished folds'
    val and test metrics: numpy mean and std (ddof=0) of the finite values, "folds" how many there
    were (None for mean and std when none)."""
    values: dict[str, list[float]] = {}
    for run in runs:
        if run.status == "finished":
            for key, value in _prefixed(run.metrics).items():
                values.setdefault(key, []).append(value)
    out = {}
    for key, vals in values.items():
        finite = np.asarray([v for v in vals if math.isfinite(v)], dtype=np.float64)
        out[key] = {"mean": float(np.mean(finite)) if len(finite) else None,
                    "std": float(np.std(finite)) if len(finite) else None, "folds": int(len(finite))}
    return out


def _prefixed(metrics: dict, prefix: str = "") -> dict[str, float]:
    """{"val": {task: {metric: v}}, ...} -> {"<prefix>val/<task>/<metric>": v} (scalars only)."""
    out = {}
    for split in SPLITS:
        out.update(scalar_metrics(metrics.get(split, {}), f"{prefix}{split}/"))
    return out


def write_summary(parent: Path, cfg: Config, runs: list[FoldRun]) -> dict:
    """kfold.json and kfold.csv for the folds run so far (see the module docstring)."""
    summary = summarise(runs)
    record = {
        "folds": cfg.data.folds, "seed": cfg.training.seed, "stratify": cfg.data.stratify,
        "folder": str(parent.resolve()),
        "finished": [r.fold for r in runs if r.status == "finished"],
        "failed": [r.fold for r in runs if r.status != "finished"],
        "runs": [{"fold": r.fold, "status": r.status, "run_dir": str(r.run_dir.resolve()) if r.run_dir else None,
                  "training_seconds": r.seconds, "error": r.error, "metrics": r.metrics} for r in runs],
        "summary": summary,
    }
    (parent / "kfold.json").write_text(json.dumps(record, indent=2))
    rows = [{"fold": str(r.fold), "status": r.status, "run_dir": str(r.run_dir or ""), "training_seconds": r.seconds,
             **_prefixed(r.metrics)} for r in runs]
    rows.append({"fold": "mean", **{k: v["mean"] for k, v in summary.items()}})
    rows.append({"fold": "std", **{k: v["std"] for k, v in summary.items()}})
    columns = ["fold", "status", "run_dir", "training_seconds", *summary]
    pd.DataFrame(rows, columns=columns).to_csv(parent / "kfold.csv", index=False)
    return record


def _tag_child(parent: Path, run: FoldRun, console: Console) -> None:
    """MLflow: the fold's run becomes a child of the parent run (tag mlflow.parentRunId)."""
    parent_info = _mlflow_info(parent)
    child_info = _mlflow_info(run.run_dir) if run.run_dir is not None else None
    if not parent_info or not child_info:
        return
    from polyhead.tracking.mlflow import MlflowTracker

    try:
        MlflowTracker.attach(child_info).set_tags({"mlflow.parentRunId": parent_info["run_id"],
                                                   "polyhead.kfold.fold": str(run.fold)})
    except Exception as exc:  # the fold's run is written; a store that went away only warns
        console.print(f"[yellow]fold {run.fold}: not tagged as a child of MLflow run {parent_info['run_id']}: "
                      f"{escape(one_line(exc))}[/]", soft_wrap=True)


def _mlflow_info(run_dir: Path) -> dict | None:
    record = Path(run_dir) / "tracking.json"
    info = json.loads(record.read_text()).get("mlflow") if record.is_file() else None
    return info if info and info.get("run_id") else None


def _finish_parent(trackers: Trackers, parent: Path, result: KFoldResult, console: Console) -> None:
    """mean/<split>/<task>/<metric> and std/... on the parent run, the summary files, then
    FINISHED (FAILED when a fold did not finish)."""
    values = {f"{stat}/{key}": s[stat] for key, s in result.summary.items() for stat in ("mean", "std")
              if s[stat] is not None}
    values["kfold/failed_folds"] = float(len(result.failed))
    trackers.log_metrics(values, step=len(result.folds))
    for name in ("config.yaml", "folds.csv", "kfold.json", "kfold.csv"):
        trackers.log_artifact(parent / name)
    where = trackers.where()
    trackers.finish("FAILED" if result.failed else "FINISHED")
    for line in where:
        console.print(line, soft_wrap=True, highlight=False)


def _number(value) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"


def kfold_table(result: KFoldResult, tasks: dict[str, Task]) -> Table:
    """Each task's headline val and test metrics per fold, then mean ± std over the finished folds."""
    done = len(result.folds) - len(result.failed)
    table = Table(title=f"k-fold cross-validation: {len(result.folds)} folds, mean ± std over {done} finished",
                  title_justify="left")
    table.add_column("metric", style="bold")
    for run in result.folds:
        table.add_column(f"fold {run.fold}", justify="right")
    table.add_column("mean ± std", justify="right")
    for split in SPLITS:
        keys = [f"{split}/{name}/{m}" for name, task in tasks.items() for m in task.headline_metrics
                if f"{split}/{name}/{m}" in result.summary]
        for i, key in enumerate(keys):
            cells = []
            for run in result.folds:
                if run.status != "finished":
                    cells.append(f"[red]{run.status}[/]")
                else:
                    cells.append(_number(_prefixed(run.metrics).get(key)))
            s = result.summary[key]
            both = "-" if s["mean"] is None else f"{s['mean']:.4f} ± {s['std']:.4f}"
            table.add_row(key, *cells, both, end_section=i == len(keys) - 1)
    return table
