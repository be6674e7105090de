"""polyhead train CONFIG [KEY=VALUE ...]  |  polyhead train --resume RUN_DIR [KEY=VALUE ...]"""

from __future__ import annotations

HELP = """Train a multi-task model from a YAML config.

Overrides use Hydra's syntax: training.epochs=3, +tasks.color.type=binary,
~model.weights, and config-group presets such as model=efficientnet_lite0 or
optimizer=sgd. The run folder (bundle, checkpoints, metrics) is printed at the end."""


def add_parser(sub) -> None:
    import argparse

    p = sub.add_parser("train", help="train a model from a YAML config", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", help="YAML config file (not needed with --resume)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (Hydra syntax)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a run from its last checkpoint (its saved config plus any overrides, "
                        "e.g. training.epochs=20 to train longer); a k-fold folder (data.folds) keeps its "
                        "finished folds and resumes or retrains the others")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from polyhead.cli.common import load_verb_config
    from polyhead.config.loading import to_yaml
    from polyhead.engine.resume import check_resume
    from polyhead.errors import ConfigError, PolyheadError

    overrides = list(args.overrides)
    if args.resume:
        if args.config:  # with --resume every positional is an override
            overrides.insert(0, args.config)
        config_path = Path(args.resume) / "config.yaml"
        if not config_path.is_file():
            raise ConfigError(f"cannot resume '{args.resume}': no config.yaml there (not a polyhead run folder)")
    elif not args.config:
        raise ConfigError("give a config file (polyhead train my.yaml) or --resume RUN_DIR")
    else:
        config_path = Path(args.config)
    # notes to stderr: --print-config prints YAML
    cfg = load_verb_config("train", config_path, overrides, getattr(args, "plugin", ()))
    if args.resume:
        check_resume(args.resume, cfg)
    if args.print_config:
        print(to_yaml(cfg), end="")
        return 0
    from rich.console import Console

    from polyhead.engine.fit import fit  # torch and Lightning: only once there is something to train

    if cfg.data.folds and cfg.data.fold is None:  # k-fold: one run per fold under one folder
        from polyhead.engine.kfold import fit_folds

        result = fit_folds(cfg, console=Console(), name_hint=config_path.stem, resume=args.resume)
        if result.failed:
            raise PolyheadError(result.failure_line())
        return 0
    fit(cfg, console=Console(), name_hint=config_path.stem, resume=args.resume)
    return 0
