"""polyhead compare CONFIG [KEY=VALUE ...]"""

from __future__ import annotations

HELP = """Multi-task vs single-task on the same config and budget.

Trains the multi-task model (every task) and one single-task model per task with the
same backbone, epochs, optimiser, seed and data split, then prints per task the test
metric of both (Δ = multi-task − single-task), the training time of both, and the
inference images/s of the one multi-task model against all single-task models run one
after another. Everything lands in one comparison folder (multitask/, single-<task>/,
comparison.json, comparison.md). See docs/compare.md."""


def add_parser(sub) -> None:
    import argparse

    p = sub.add_parser("compare", help="multi-task model vs one single-task model per task", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML config file with at least two tasks")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (Hydra syntax)")
    p.add_argument("--inference-iters", type=int, default=20, metavar="N",
                   help="timed inference iterations per measurement (default: 20)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from rich.console import Console

    from polyhead.cli.common import load_verb_config
    from polyhead.engine.compare import compare

    cfg = load_verb_config("compare", args.config, args.overrides, getattr(args, "plugin", ()))
    compare(cfg, console=Console(), inference_iters=args.inference_iters,
            name_hint=f"{Path(args.config).stem}-compare")
    return 0
