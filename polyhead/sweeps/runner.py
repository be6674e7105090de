"""One run of a sweep or a study: load its config, place it in the sweep folder, `fit`, report.

`run_one` is what a joblib (loky) worker executes, so it takes and returns plain picklable values
and never raises for a failed training: the failure is the returned `Outcome`'s status and error.
"""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from polyhead.config.schema import Config
from polyhead.errors import one_line


@dataclass
class Outcome:
    """What one run left. `metrics`: {"val/<task>/<metric>": x, "test/...": x} (metrics.json's scalars),
    `main`: the per-task columns of the summary ({"val/<task>/<main metric>": x, ...}),
    `monitor`: (name, best value over the epochs of history.csv) of training.monitor."""

    index: int
    label: str
    overrides: list[str]
    swept: dict[str, str]
    status: str = "failed"  # ok | failed | not run
    run_dir: str = ""
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    main: dict[str, float] = field(default_factory=dict)
    monitor: tuple[str, float] = ("", math.nan)
    error: str = ""


def default_mlflow_uri(cfg: Config) -> str:
    """Where a run of `cfg` logs to MLflow: tracking.mlflow.uri, else `<output_dir>/mlflow.db`."""
    return cfg.tracking.mlflow.uri or f"sqlite:///{Path(cfg.output_dir).expanduser().resolve() / 'mlflow.db'}"


def place(cfg: Config, folder: Path, name: str) -> Config:
    """The run goes to `folder/name`; MLflow stays in the store the config would have used without the
    sweep (`<output_dir>/mlflow.db`), so the sweep's runs sit beside the user's other runs."""
    cfg.tracking.mlflow.uri = default_mlflow_uri(cfg)
    cfg.output_dir, cfg.run_name = str(folder), name
    return cfg


def share_cpu(cfg: Config, threads: int | None) -> Config:
    """A parallel job's share of the cores: training.cpu_threads, unless the config sets it (the run's
    config.yaml then says how many threads it had)."""
    if threads is not None and cfg.training.cpu_threads is None:
        cfg.training.cpu_threads = threads
    return cfg


def best_of(run_dir: Path, monitor: str, mode: str) -> float:
    """The best value of `monitor` over history.csv's epochs (nan when it was not logged)."""
    import pandas as pd

    history = run_dir / "history.csv"
    if not history.is_file():
        return math.nan
    column = pd.read_csv(history).get(monitor)
    if column is None or column.dropna().empty:
        return math.nan
    return float(column.min() if mode == "min" else column.max())


def monitor_mode(cfg: Config) -> str:
    mode = cfg.training.monitor_mode
    return ("min" if cfg.training.monitor.endswith("loss") else "max") if mode == "auto" else mode


def _console(log_file: Path | None):
    from rich.console import Console

    if log_file is None:
        return Console(), None
    log_file.parent.mkdir(parents=True, exist_ok=True)
    fh = open(log_file, "w", encoding="utf-8")
    return Console(file=fh, width=120, force_terminal=False, force_interactive=False), fh


def is_kfold(cfg: Config) -> bool:
    """data.folds set and data.fold unset: `polyhead train` trains one run per fold under one folder."""
    return bool(getattr(cfg.data, "folds", None)) and getattr(cfg.data, "fold", None) is None


def train(cfg: Config, console, label: str, callbacks: list) -> tuple[Path, dict]:
    """What `polyhead train` does with `cfg`: `fit`, or one run per fold (polyhead.engine.kfold) whose
    metrics are the means over the folds. Returns (run folder, {"val": {task: {metric: x}}, "test": ...})."""
    if is_kfold(cfg):
        from polyhead.engine.kfold import fit_folds
        from polyhead.errors import PolyheadError

        result = fit_folds(cfg, console=console, name_hint=label, callbacks=callbacks)
        if result.failed:
            raise PolyheadError(result.failure_line())
        return result.run_dir, result.metrics
    from polyhead.engine.fit import fit

    result = fit(cfg, console=console, name_hint=label, callbacks=callbacks)
    return result.run_dir, result.metrics


def main_metrics(cfg: Config, metrics: dict[str, float]) -> dict[str, float]:
    """{"<split>/<task>/<main metric>": x} for every split in `metrics` and every task of `cfg`."""
    from polyhead.tasks import TASK_TYPES

    out = {}
    for split in dict.fromkeys(key.split("/", 1)[0] for key in metrics):
        for name, task in cfg.tasks.items():
            key = f"{split}/{name}/{TASK_TYPES[task.type].main_metric}"
            out[key] = metrics.get(key, math.nan)
    return out


def run_one(config_path: str | None, overrides: list[str], *, index: int, label: str, swept: dict[str, str],
            folder: Path, plugins: Sequence[str] = (), log_file: Path | None = None, threads: int | None = None,
            callbacks: Callable[[Config], list] | None = None, prepare: Callable[[Config], Config] | None = None
            ) -> Outcome:
    """Train `config_path` + `overrides` into `folder/label`. `callbacks(cfg)`: extra Lightning callbacks
    for `fit`; `prepare(cfg)`: a last change to the placed config (e.g. a study's monitor).
    Output goes to `log_file` (None: the terminal)."""
    from polyhead.engine.checks import load_checked_config
    from polyhead.engine.summary import scalar_metrics

    out = Outcome(index, label, list(overrides), dict(swept))
    console, fh = _console(log_file)
    started = time.perf_counter()
    try:
        cfg = place(load_checked_config(config_path, overrides, [], plugins=plugins), folder, label)
        cfg = share_cpu(cfg, threads)
        if prepare is not None:
            cfg = prepare(cfg)
        run_dir, metrics = train(cfg, console, label, callbacks(cfg) if callbacks else [])
        out.status, out.run_dir = "ok", str(run_dir)
        for split, values in metrics.items():
            out.metrics.update(scalar_metrics(values, f"{split}/"))
        out.main = main_metrics(cfg, out.metrics)
        out.monitor = (cfg.training.monitor, best_of(run_dir, cfg.training.monitor, monitor_mode(cfg)))
    except Exception as exc:  # recorded, never raised: the sweep's other runs go on
        from polyhead.errors import PolyheadError

        out.status, out.error = "failed", one_line(exc)
        if isinstance(exc, PolyheadError):  # a user's mistake: its one line, as `polyhead train` prints it
            console.print(f"error: {out.error}", markup=False, highlight=False, soft_wrap=True)
        else:  # a bug: the traceback (the log file's, with --jobs > 1)
            console.print(traceback.format_exc(), markup=False, highlight=False)
        maybe = folder / label
        out.run_dir = str(maybe) if maybe.is_dir() else ""
    finally:
        out.seconds = time.perf_counter() - started
        if fh is not None:
            fh.close()
    return out
