"""`polyhead train CONFIG -m key=a,b other=x,y [--jobs N]`: every combination, each its own run.

    <output_dir>/<sweep>/                 <sweep>: run_name, else <config name>-sweep-<date>-<time>
      0-key=a,other=x/ ...                one ordinary run folder per combination (config.yaml, model/, ...)
      summary.csv                         one row per run (polyhead.sweeps.summary), rewritten after each run
      logs/<run>.log                      each run's output (and a failure's traceback) with --jobs > 1

Every combination's config is checked before anything trains. A failing run is recorded (status
failed, its error) and the others go on; the exit status is 1 when any failed. With MLflow on, the
sweep is a parent run in the runs' store and experiment, each run its child.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Iterator, Sequence

from rich.console import Console

from polyhead.config.schema import Config
from polyhead.errors import ConfigError
from polyhead.sweeps import summary
from polyhead.sweeps.expand import Combination, expand
from polyhead.sweeps.parent import ParentRun, link_child, uses_mlflow
from polyhead.sweeps.runner import Outcome, run_one


def check_all(config_path: str | None, runs: list[Combination], plugins: Sequence[str] = (),
              notes: list[str] | None = None) -> list[Config]:
    """Every run's checked config, before anything trains; the first problem is one line naming the run."""
    from polyhead.engine.checks import load_checked_config

    configs = []
    for run in runs:
        try:
            configs.append(load_checked_config(config_path, run.overrides, notes, plugins=plugins))
        except ConfigError as exc:
            which = ", ".join(f"{k}={v}" for k, v in run.swept.items())
            raise ConfigError(f"sweep run {run.index}{f' ({which})' if which else ''}: {exc}") from None
    return configs


def sweep_folder(cfg: Config, name_hint: str) -> Path:
    base = Path(cfg.output_dir).expanduser()
    name = cfg.run_name or f"{name_hint}-sweep-{datetime.now():%Y%m%d-%H%M%S}"
    folder, i = base / name, 1
    while folder.exists():
        i += 1
        folder = base / f"{name}-{i}"
    folder.mkdir(parents=True)
    return folder


def _threads_per_job(jobs: int) -> int | None:
    from polyhead.engine.threads import available_cores, user_chose_threads

    return None if jobs == 1 or user_chose_threads() else max(1, available_cores() // jobs)


def _execute(config_path: str | None, runs: list[Combination], folder: Path, jobs: int, plugins: Sequence[str],
             console: Console) -> Iterator[Outcome]:
    common = dict(folder=folder, plugins=list(plugins), threads=_threads_per_job(jobs))
    if jobs == 1:
        for run in runs:
            console.rule(f"run {run.index + 1}/{len(runs)}: {run.label}")
            yield run_one(config_path, run.overrides, index=run.index, label=run.label, swept=run.swept, **common)
        return
    from joblib import Parallel, delayed

    logs = folder / "logs"
    yield from Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")(
        delayed(run_one)(config_path, run.overrides, index=run.index, label=run.label, swept=run.swept,
                         log_file=logs / f"{run.label}.log", **common) for run in runs)


def _progress(done: int, total: int, o: Outcome) -> str:
    if o.status == "ok":
        name, value = o.monitor
        score = f"best {name} {value:.4g}" if name and not math.isnan(value) else ""
        return f"[{done}/{total}] ok      {o.label}  {score}  ({o.seconds:.0f} s)"
    return f"[{done}/{total}] failed  {o.label}  {o.error}  ({o.seconds:.0f} s)"


def multirun(config_path: str | None, overrides: list[str], *, jobs: int = 1, plugins: Sequence[str] = (),
             console: Console | None = None, name_hint: str = "run") -> int:
    """Runs every combination of `overrides`; returns the exit status (0: all ok, 1: any failed)."""
    import sys

    console = console or Console()
    if jobs < 1:
        raise ConfigError(f"bad value for --jobs: {jobs}; expected an integer >= 1")
    runs = expand(overrides)
    notes: list[str] = []
    configs = check_all(config_path, runs, plugins, notes)
    for note in dict.fromkeys(notes):
        print(f"polyhead train: note: {note}", file=sys.stderr)
    folder = sweep_folder(configs[0], name_hint)
    parent = ParentRun(configs[0], folder, folder.name) if uses_mlflow(configs[0]) else None
    if parent is not None:
        parent.log({"sweep.overrides": " ".join(overrides), "sweep.runs": str(len(runs)), "sweep.jobs": str(jobs),
                    "sweep.config": str(config_path)}, {"polyhead.sweep": folder.name})
    console.print(f"sweep: {len(runs)} run(s) into [bold]{folder}[/], {min(jobs, len(runs))} at a time",
                  soft_wrap=True)
    outcomes = {r.index: Outcome(r.index, r.label, r.overrides, r.swept, status="not run") for r in runs}
    csv_path, status = folder / "summary.csv", "KILLED"
    summary.write_csv(list(outcomes.values()), csv_path)
    try:
        for done, outcome in enumerate(_execute(config_path, runs, folder, jobs, plugins, console), 1):
            outcomes[outcome.index] = outcome
            if parent is not None and outcome.run_dir:
                link_child(Path(outcome.run_dir), parent.info, console)
            summary.write_csv(list(outcomes.values()), csv_path)
            console.print(_progress(done, len(runs), outcome), soft_wrap=True, highlight=False)
        failed = sum(o.status == "failed" for o in outcomes.values())
        status = "FAILED" if failed else "FINISHED"
    finally:
        summary.write_csv(list(outcomes.values()), csv_path)
        if parent is not None:
            ok = sum(o.status == "ok" for o in outcomes.values())
            parent.finish({"runs_ok": ok, "runs_failed": sum(o.status == "failed" for o in outcomes.values())},
                          [csv_path], status)
    console.print(summary.table(list(outcomes.values()), f"sweep {folder.name}"))
    console.print(f"summary: [bold]{csv_path}[/]", soft_wrap=True)
    if parent is not None and parent.where():
        console.print(parent.where(), soft_wrap=True, highlight=False)
    if failed:
        where = f"{csv_path.name}'s error column" + (" and logs/" if jobs > 1 else "")
        console.print(f"[red]{failed} of {len(runs)} run(s) failed[/] (see {where})")
    return 1 if failed else 0
