"""polyhead tune CONFIG [--trials N] [--jobs J] [KEY=VALUE ...]"""

from __future__ import annotations

HELP = """Search hyperparameters with Optuna: the config's tune.space names the keys and their ranges,
e.g. tune: {space: {optimizer.lr: {type: float, low: 1e-4, high: 1e-2, log: true},
training.weighting: {type: categorical, choices: [equal, famo]}}}.

Each trial trains one run with its sampled values under <output_dir>/<study>/; weak trials are
pruned after an epoch (tune.pruner). The study lives in tune.storage (default <output_dir>/tune.db):
the same command again continues it up to --trials finished trials. At the end: the best trial,
trials.csv and best_config.yaml (train it with polyhead train). See docs/scaling.md."""


def add_parser(sub) -> None:
    import argparse

    p = sub.add_parser("tune", help="search hyperparameters (Optuna) over the config's tune.space", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML config file with a tune: {space: ...} section")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (Hydra syntax), every trial")
    p.add_argument("--trials", type=int, metavar="N",
                   help="finished trials the study should have (default: tune.trials); earlier ones count")
    p.add_argument("--jobs", type=int, default=1, metavar="J",
                   help="trials trained at once, each in its own process (default: 1)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from polyhead.sweeps.tune import tune

    return tune(args.config, list(args.overrides), trials=args.trials, jobs=args.jobs,
                plugins=getattr(args, "plugin", ()), name_hint=Path(args.config).stem)
