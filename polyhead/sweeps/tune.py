"""`polyhead tune CONFIG --trials N [--jobs J] [overrides]`: an Optuna study over `tune.space`.

    <output_dir>/tune.db                  the study (tune.storage): run the command again to continue it
    <output_dir>/<study>/
      trial-0000/ ...                     one ordinary run folder per trial (config.yaml, model/, ...)
      trials.csv                          every trial: number, state, value, params, seconds, run folder
      best_config.yaml                    the config with the best trial's values: `polyhead train` it
      logs/trial-NNNN.log                 each trial's output, with --jobs > 1

A trial trains the config with its sampled values as overrides. After each epoch the metric
(tune.metric, default training.monitor) is reported to Optuna; when the pruner says stop, the trial
stops at that epoch's end like an early stop (bundle, metrics and tracker runs complete) and is
recorded PRUNED. A trial's value is the metric's best epoch. `--trials` counts the trials of the
study that finished (complete or pruned), earlier invocations included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import lightning as L
from rich.console import Console
from rich.table import Table

from polyhead.config.schema import Config, TuneParamConfig
from polyhead.errors import ConfigError, PolyheadError, one_of
from polyhead.sweeps.parent import ParentRun, link_child, tag_or_warn, uses_mlflow
from polyhead.sweeps.runner import run_one
from polyhead.sweeps.space import check_space, override, suggest


class OptunaReport(L.Callback):
    """Each epoch's `metric` to the trial (step = epoch from 1); stops training when the trial should be pruned.
    Listed after polyhead's own callbacks (fit(callbacks=...)), so the epoch's metrics are all logged."""

    def __init__(self, trial, metric: str):
        self.trial, self.metric = trial, metric
        self.values: list[float] = []
        self.pruned_at: int | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.metric)
        if trainer.sanity_checking or value is None:
            return
        epoch = trainer.current_epoch + 1
        self.values.append(float(value))
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            self.pruned_at = epoch
            trainer.should_stop = True  # ends like an early stop: the run folder and tracker runs complete


class TrialFailed(Exception):
    """A trial's training failed (recorded FAIL; the study goes on)."""


@dataclass
class Study:
    """What every trial (in this process or a worker) needs, as plain values."""

    config_path: str | None
    overrides: list[str]
    plugins: list[str]
    space: dict[str, TuneParamConfig]
    metric: str
    direction: str  # minimize | maximize
    storage: str
    name: str
    folder: Path
    pruner: str
    startup_trials: int
    warmup_epochs: int
    seed: int
    parent: dict | None = None
    log_trials: bool = False  # each trial's output to logs/ (parallel jobs) instead of the terminal
    threads: int | None = None

    def prepare(self, cfg: Config) -> Config:
        """A trial monitors the study's metric (best checkpoint, early stopping) in the study's direction."""
        cfg.training.monitor = self.metric
        cfg.training.monitor_mode = "min" if self.direction == "minimize" else "max"
        return cfg

    def tag(self, run_dir: str, number: int, state: str) -> None:
        """The trial's MLflow run: its number and state, and the study's parent run."""
        if not run_dir:
            return
        tags = {"polyhead.tune.trial": str(number), "polyhead.tune.state": state}
        if self.parent is not None:
            link_child(Path(run_dir), self.parent, Console(), tags)
        else:
            tag_or_warn(Path(run_dir), tags, Console())

    def objective(self, trial) -> float:
        import optuna

        params = {key: suggest(trial, key, p) for key, p in self.space.items()}
        label = f"trial-{trial.number:04d}"
        report = OptunaReport(trial, self.metric)
        outcome = run_one(self.config_path, [*self.overrides, *(override(k, v) for k, v in params.items())],
                          index=trial.number, label=label, swept={k: str(v) for k, v in params.items()},
                          folder=self.folder, plugins=self.plugins, threads=self.threads,
                          log_file=self.folder / "logs" / f"{label}.log" if self.log_trials else None,
                          callbacks=lambda cfg: [report], prepare=self.prepare)
        trial.set_user_attr("run_dir", outcome.run_dir)
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
        finite = [v for v in report.values if math.isfinite(v)]
        error = outcome.error if outcome.status != "ok" else "" if finite else f"no value of {self.metric} was logged"
        if error:
            self.tag(outcome.run_dir, trial.number, "failed")
            print(f"trial {trial.number} failed ({shown}): {error}", flush=True)
            raise TrialFailed(error)
        best = min(finite) if self.direction == "minimize" else max(finite)
        state = "pruned" if report.pruned_at is not None else "complete"
        self.tag(outcome.run_dir, trial.number, state)
        if report.pruned_at is not None:
            print(f"trial {trial.number} pruned at epoch {report.pruned_at} ({shown}): {self.metric} {best:.4g} "
                  f"({outcome.seconds:.0f} s)", flush=True)
            raise optuna.TrialPruned(f"pruned at epoch {report.pruned_at}")
        print(f"trial {trial.number} complete ({shown}): {self.metric} {best:.4g} ({outcome.seconds:.0f} s)",
              flush=True)
        return best

    def load(self, offset: int = 0):
        """The Optuna study from `storage` (created on first use): TPE seeded with seed + offset."""
        import warnings

        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
        pruner = (optuna.pruners.MedianPruner(n_startup_trials=self.startup_trials, n_warmup_steps=self.warmup_epochs)
                  if self.pruner == "median" else optuna.pruners.NopPruner())
        kwargs = {"engine_kwargs": {"connect_args": {"timeout": 60}}} if self.storage.startswith("sqlite") else {}
        storage = optuna.storages.RDBStorage(self.storage, heartbeat_interval=30, grace_period=120, **kwargs)
        return optuna.create_study(storage=storage, study_name=self.name, direction=self.direction,
                                   load_if_exists=True, pruner=pruner,
                                   sampler=optuna.samplers.TPESampler(seed=self.seed + offset))

    def optimize(self, n_trials: int, worker: int = 0) -> None:
        study = self.load(offset=len(self.load().trials) + 7919 * worker)
        study.optimize(self.objective, n_trials=n_trials, catch=(TrialFailed,))


def _optimize(study: Study, n_trials: int, worker: int) -> None:  # a joblib worker's job
    study.optimize(n_trials, worker)


def finished(study) -> int:
    from optuna.trial import TrialState

    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)


def _check_one_process(cfg: Config) -> None:
    """A trial reports every epoch to Optuna from this process: one training process, one run."""
    from polyhead.engine.devices import process_count
    from polyhead.sweeps.runner import is_kfold

    devices, nodes = cfg.training.devices, cfg.training.num_nodes
    if process_count(devices) > 1 or nodes > 1:
        raise ConfigError(f"polyhead tune trains each trial in one process (it reports every epoch to Optuna): "
                          f"set training.devices=1 (got training.devices={devices}, training.num_nodes={nodes}); "
                          f"`polyhead train -m` sweeps runs on several devices")
    if is_kfold(cfg):
        raise ConfigError(f"polyhead tune does not cross-validate yet (data.folds={cfg.data.folds}): tune on one "
                          f"fold (data.fold=1) or without data.folds, then check the best config with data.folds")


def _direction(cfg: Config, metric: str) -> str:
    t = cfg.tune
    if t.direction != "auto":
        return t.direction
    mode = cfg.training.monitor_mode if metric == cfg.training.monitor else "auto"
    if mode == "auto":
        mode = "min" if metric.endswith("loss") else "max"
    return "minimize" if mode == "min" else "maximize"


def make_study(config_path: str | None, overrides: Sequence[str], *, plugins: Sequence[str] = (),
               name_hint: str = "study", jobs: int = 1) -> tuple[Study, Config]:
    """The checked base config and its `Study`; every problem of tune.* is one line before any trial."""
    from polyhead.engine.checks import load_checked_config, monitorable_metrics
    from polyhead.sweeps.multirun import _threads_per_job

    cfg = load_checked_config(config_path, list(overrides), [], plugins=plugins)
    _check_one_process(cfg)
    t = cfg.tune
    check_space(config_path, overrides, cfg, plugins)
    metric = t.metric or cfg.training.monitor
    if t.metric is not None:
        one_of("tune.metric", metric, monitorable_metrics(cfg.tasks, cfg.training.on_nonfinite_loss))
    output = Path(cfg.output_dir).expanduser().resolve()
    name = t.study_name or name_hint
    study = Study(config_path, list(overrides), list(cfg.plugins), dict(t.space), metric, _direction(cfg, metric),
                  t.storage or f"sqlite:///{output / 'tune.db'}", name, output / name, t.pruner,
                  t.pruner_startup_trials, t.pruner_warmup_epochs,
                  cfg.training.seed if t.seed is None else t.seed, log_trials=jobs > 1,
                  threads=_threads_per_job(jobs))
    return study, cfg


def best_config(study: Study, best_params: dict) -> str:
    """The config as given (file + overrides + --plugin) with the best trial's values, monitoring tune.metric
    when it is set (as the trials did): YAML `polyhead train` loads."""
    from polyhead.config.loading import load_config, to_yaml

    cfg = load_config(study.config_path, [*study.overrides, *(override(k, v) for k, v in best_params.items())], [])
    cfg.plugins = [*cfg.plugins, *(p for p in study.plugins if p not in cfg.plugins)]
    if cfg.tune.metric is not None:
        cfg = study.prepare(cfg)
    return to_yaml(cfg)


def write_trials(optuna_study, path: Path) -> Path:
    frame = optuna_study.trials_dataframe(attrs=("number", "state", "value", "params", "duration", "user_attrs"))
    if "duration" in frame:
        frame["seconds"] = frame.pop("duration").dt.total_seconds().round(1)
    frame = frame.rename(columns=lambda c: c.replace("params_", "").replace("user_attrs_", ""))
    frame.to_csv(path, index=False)
    return path


def trials_table(optuna_study, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    keys = list(dict.fromkeys(k for t in optuna_study.trials for k in t.params))
    for c in ("trial", "state", "value", *keys):
        table.add_column(c, justify="right" if c in ("trial", "value") else "left")
    for t in optuna_study.trials:
        value = "-" if t.value is None else f"{t.value:.4g}"
        cells = [f"{t.params[k]:.4g}" if isinstance(t.params.get(k), float) else str(t.params.get(k, ""))
                 for k in keys]
        table.add_row(str(t.number), t.state.name.lower(), value, *cells)
    return table


def tune(config_path: str | None, overrides: list[str], *, trials: int | None = None, jobs: int = 1,
         plugins: Sequence[str] = (), console: Console | None = None, name_hint: str = "study") -> int:
    """Runs the study until `trials` (default tune.trials) trials have finished; writes trials.csv and
    best_config.yaml. Returns 0 when the study has a best trial, else 1."""
    console = console or Console()
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise PolyheadError("polyhead tune needs the package 'optuna': pip install 'polyhead[tune]'") from None
    for flag, value in (("--trials", trials), ("--jobs", jobs)):
        if value is not None and value < 1:
            raise ConfigError(f"bad value for {flag}: {value}; expected an integer >= 1")
    study, cfg = make_study(config_path, overrides, plugins=plugins, name_hint=name_hint, jobs=jobs)
    total = trials or cfg.tune.trials
    study.folder.mkdir(parents=True, exist_ok=True)
    optuna_study = study.load()
    if optuna_study.direction.name.lower() != study.direction:
        raise ConfigError(f"study '{study.name}' in {study.storage} was made to {optuna_study.direction.name.lower()}; "
                          f"tune.direction is {study.direction} (give another tune.study_name)")
    parent = None
    if uses_mlflow(cfg):
        parent = ParentRun(cfg, study.folder, study.name, resume=optuna_study.user_attrs.get("mlflow_parent"))
        optuna_study.set_user_attr("mlflow_parent", parent.record)
        parent.log({"tune.metric": study.metric, "tune.direction": study.direction,
                    "tune.space": ", ".join(study.space)}, {"polyhead.study": study.name})
        study.parent = parent.info
    remaining = max(0, total - finished(optuna_study))
    console.print(f"study [bold]{study.name}[/] ({study.storage}): {finished(optuna_study)} trial(s) finished, "
                  f"{remaining} to run into {study.folder}, {min(jobs, max(remaining, 1))} at a time; "
                  f"{study.direction} {study.metric}", soft_wrap=True)
    status = "KILLED"
    try:
        if remaining and (jobs == 1 or remaining == 1):
            study.optimize(remaining)
        elif remaining:
            from joblib import Parallel, delayed

            shares = [remaining // jobs + (i < remaining % jobs) for i in range(jobs)]
            Parallel(n_jobs=jobs, backend="loky")(delayed(_optimize)(study, n, i) for i, n in enumerate(shares) if n)
        status = "FINISHED"
    finally:
        optuna_study = study.load()
        write_trials(optuna_study, study.folder / "trials.csv")
        best = _best(optuna_study)
        if best is not None:
            (study.folder / "best_config.yaml").write_text(best_config(study, best.params))
        if parent is not None:
            metrics = {"trials_finished": finished(optuna_study)}
            if best is not None:
                metrics["best_value"] = best.value
                parent.tracker.set_tags({"polyhead.tune.best_trial": str(best.number)})
            parent.finish(metrics, [study.folder / "trials.csv", study.folder / "best_config.yaml"], status)
    console.print(trials_table(optuna_study, f"study {study.name}"))
    console.print(f"trials: [bold]{study.folder / 'trials.csv'}[/]", soft_wrap=True)
    if best is None:
        console.print("[red]no trial has completed yet[/]: no best config")
        return 1
    params = ", ".join(f"{k}={v}" for k, v in best.params.items())
    console.print(f"best trial {best.number}: {study.metric} {best.value:.4g} ({params})", soft_wrap=True,
                  highlight=False)
    console.print(f"best config: [bold]{study.folder / 'best_config.yaml'}[/] "
                  f"(polyhead train {study.folder / 'best_config.yaml'})", soft_wrap=True)
    return 0


def _best(optuna_study):
    from optuna.trial import TrialState

    return optuna_study.best_trial if any(t.state == TrialState.COMPLETE for t in optuna_study.trials) else None
