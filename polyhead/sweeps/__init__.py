"""Many trainings from one config: `polyhead train -m` (a grid of overrides, Hydra multirun
semantics) and `polyhead tune` (an Optuna study over `tune.space`).

    expand.py   overrides with sweeps (a,b / range(...) / choice(...)) -> one override list per run
    runner.py   one run in this process or a joblib (loky) worker: its folder, status, metrics, seconds
    parent.py   the MLflow parent run; each run's MLflow run becomes its child (mlflow.parentRunId)
    summary.py  summary.csv and the terminal table
    multirun.py `polyhead train -m`: check every combination, run them, summarise
    space.py    tune.space -> Optuna distributions, checked against the config schema
    tune.py     `polyhead tune`: the study, per-epoch reports and pruning, best_config.yaml, trials.csv

Each run is an ordinary `polyhead.engine.fit.fit` into its own run folder; nothing here trains.
"""
