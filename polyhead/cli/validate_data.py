"""polyhead validate-data CONFIG [KEY=VALUE ...] [--full] [--out FILE.csv|json]"""

from __future__ import annotations

HELP = """Check every table row and image of a config's train/val/test splits, without training.

The tables are read exactly as `polyhead train` reads them (a table error stops there, as in
train). Each image is then checked once: header mode (default) opens its header (exists,
non-empty, a known format and mode, under Pillow's decompression-bomb limit, not truncated);
--full (or data.validate=full) decodes every image. One line per problem, then a summary.

Exit status: 0 when no image is bad (warnings such as duplicated rows or a train/val leak
do not count), 1 when bad images were found, 2 for a config or table error."""


def add_parser(sub) -> None:
    import argparse

    p = sub.add_parser("validate-data", help="check every table row and image before training",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML config file (the same one `polyhead train` takes)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (Hydra syntax)")
    p.add_argument("--full", action="store_true", help="decode every image (default: data.validate, "
                                                       "'header' unless set to 'full')")
    p.add_argument("--out", metavar="FILE", help="write every problem to FILE (.csv or .json)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from rich.console import Console

    from polyhead.cli.common import load_verb_config
    from polyhead.data.loaders import image_size
    from polyhead.data.validation import SPLITS, print_problems, validate_splits
    from polyhead.engine.data import build_data
    from polyhead.errors import PolyheadError

    cfg = load_verb_config("validate-data", Path(args.config), list(args.overrides), getattr(args, "plugin", ()))
    console = Console()
    tasks, splits = build_data(cfg, console, check_images=False)  # the images are checked below
    mode = "full" if args.full or cfg.data.validate == "full" else "header"
    d = cfg.data
    report = validate_splits({n: getattr(splits, n) for n in SPLITS}, tasks, mode=mode,
                             image_column=d.image_column, channels=d.channels, size=image_size(d),
                             progress=cfg.training.progress_bar)
    print_problems(console, report.problems)
    for name, info in splits.summary().items():
        labelled = ", ".join(f"{t} {n}" for t, n in info["labelled"].items())
        console.print(f"{name}: {info['rows']} rows (labelled per task: {labelled})", highlight=False)
    rows = {n: len(s) for n in SPLITS if (s := getattr(splits, n)) is not None}
    console.print(f"checked {sum(rows.values())} rows ({', '.join(f'{k} {v}' for k, v in rows.items())}) and "
                  f"{report.images_checked} distinct images ({mode}): {len(report.errors)} error(s), "
                  f"{len(report.warnings)} warning(s)", highlight=False, soft_wrap=True)
    if args.out:
        try:
            console.print(f"written: {report.write(args.out)}", highlight=False, soft_wrap=True)
        except OSError as exc:
            raise PolyheadError(f"cannot write --out '{args.out}': {exc.strerror or exc}") from None
    return 1 if report.errors else 0
