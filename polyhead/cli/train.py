"""polyhead train CONFIG [KEY=VALUE ...]"""

from __future__ import annotations

HELP = """Train a multi-task model from a YAML config.

Overrides use Hydra's syntax: training.epochs=3, +tasks.color.type=binary,
~model.weights, and config-group presets such as model=efficientnet_lite0 or
optimizer=sgd. The run folder (bundle, checkpoints, metrics) is printed at the end."""


def add_parser(sub) -> None:
    import argparse

    p = sub.add_parser("train", help="train a model from a YAML config", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML config file")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (Hydra syntax)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from rich.console import Console

    from polyhead.config.loading import load_config, to_yaml
    from polyhead.engine.fit import fit

    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(to_yaml(cfg), end="")
        return 0
    fit(cfg, console=Console(), name_hint=Path(args.config).stem)
    return 0
