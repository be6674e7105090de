"""polyhead train CONFIG [KEY=VALUE ...]  |  polyhead train --resume RUN_DIR [KEY=VALUE ...]
|  polyhead train CONFIG -m KEY=A,B ... [--jobs N]"""

from __future__ import annotations

HELP = """Train a multi-task model from a YAML config.

Overrides use Hydra's syntax: training.epochs=3, +tasks.color.type=binary,
~model.weights, and config-group presets such as model=efficientnet_lite0 or
optimizer=sgd. The run folder (bundle, checkpoints, metrics) is printed at the end.

With -m (multirun), comma lists, range(start,stop[,step]) and choice(a,b) sweep: every combination
trains as its own run under <output_dir>/<sweep>/, with a summary.csv (docs/scaling.md):
  polyhead train my.yaml -m optimizer.lr=0.01,0.001 training.weighting=equal,famo --jobs 2"""


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
    p.add_argument("-m", "--multirun", action="store_true",
                   help="sweep: train every combination of the overrides' comma lists, range(...) and choice(...)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="with -m: runs trained at once, each in its own process (default: 1, one after another)")
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
    if args.multirun or args.jobs != 1:
        return _multirun(args, config_path, overrides)
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


def _multirun(args, config_path, overrides: list[str]) -> int:
    from polyhead.errors import ConfigError

    if not args.multirun:
        raise ConfigError(f"--jobs {args.jobs} needs -m: it is the number of a sweep's runs trained at once")
    if args.resume or args.print_config:
        raise ConfigError(f"{'--resume' if args.resume else '--print-config'} does not go with -m: a sweep trains "
                          f"new runs (print one combination's config without -m)")
    from polyhead.sweeps.multirun import multirun

    return multirun(str(config_path), overrides, jobs=args.jobs, plugins=getattr(args, "plugin", ()),
                    name_hint=config_path.stem)
