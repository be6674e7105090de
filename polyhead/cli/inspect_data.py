"""polyhead inspect-data CONFIG [KEY=VALUE ...] [--out DIR] [--samples N] [--draws K]"""

from __future__ import annotations

HELP = """Look at the data before training: builds the tasks and the train/val/test splits
exactly as `polyhead train` does, checks their images as train does (data.validate: missing,
empty, truncated or unreadable images stop it with data.on_bad_image=error, or their rows are
left out with skip; duplicated rows and a train/val leak are warned), then writes sample grids
(raw and augmented), a label distribution chart and data_report.json, and warns about
imbalance, tiny classes and missing labels. The output folder is printed at the end."""


def add_parser(sub) -> None:
    import argparse

    p = sub.add_parser("inspect-data", help="look at the data (samples, label counts, warnings) before training",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML config file")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (Hydra syntax)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: <output_dir>/inspect-<config>-<time>)")
    p.add_argument("--samples", type=int, default=16, metavar="N", help="training samples to show (default 16)")
    p.add_argument("--draws", type=int, default=4, metavar="K", help="augmented draws per sample (default 4)")
    p.set_defaults(func=run)


def augment_text(aug) -> str:
    """The active augmentation steps of a data.augment config, e.g. "hflip, crop_padding=2"; "" if none."""
    on = [k if v is True else f"{k}={v}" for k, v in vars(aug).items() if v]
    return ", ".join(on)


def run(args) -> int:
    from datetime import datetime
    from pathlib import Path

    from rich.console import Console
    from rich.markup import escape

    from polyhead.cli.common import load_verb_config
    from polyhead.data.loaders import image_size
    from polyhead.data.transforms import build_train_transform
    from polyhead.engine.data import build_data
    from polyhead.errors import ConfigError
    from polyhead.reports.data_inspection import inspect_splits

    if args.samples < 1 or args.draws < 1:
        raise ConfigError(f"--samples and --draws must be at least 1, got {args.samples} and {args.draws}")
    config_path = Path(args.config)
    cfg = load_verb_config("inspect-data", config_path, args.overrides, getattr(args, "plugin", ()))
    console = Console()
    tasks, splits = build_data(cfg, console)  # as train builds them, with its image check and data.on_bad_image
    d = cfg.data
    size = image_size(d)
    out = Path(args.out) if args.out else (
        Path(cfg.output_dir).expanduser() / f"inspect-{config_path.stem}-{datetime.now():%Y%m%d-%H%M%S}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot write the output folder '{out}': {exc.strerror or exc}") from None
    result = inspect_splits({"train": splits.train, "val": splits.val, "test": splits.test}, tasks, out,
                            channels=d.channels, size=size, transform=build_train_transform(d.augment, size, d.channels),
                            augment=augment_text(d.augment), samples=args.samples, draws=args.draws,
                            seed=cfg.training.seed, skipped_rows=splits.skipped_rows,
                            validation_warnings=splits.warnings)
    for split, per_task in result.report["splits"].items():
        labelled = ", ".join(f"{t} {c['labelled']}" for t, c in per_task.items())
        rows = next(iter(per_task.values()))["rows"]
        console.print(f"{split}: {rows} rows (labelled per task: {labelled})", soft_wrap=True)
    for text in result.warnings:
        console.print(f"[yellow]warning: {escape(text)}[/]", soft_wrap=True)
    if not result.warnings and not splits.warnings:  # the data.validate warnings were printed above
        console.print("no warnings")
    console.print(f"written: samples.png, samples_augmented.png, label_distribution.png, data_report.json in "
                  f"[bold]{escape(str(out))}[/]", soft_wrap=True)  # a path to copy: never wrapped
    return 0
