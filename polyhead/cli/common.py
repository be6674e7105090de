"""Flags shared by the verbs that run a trained model (evaluate, predict)."""

from __future__ import annotations


def add_model_input_args(p) -> None:
    p.add_argument("--image-column", help="image column of the table (default: the run's data.image_column)")
    p.add_argument("--root", help="folder the table's image paths are relative to (default: the table's folder)")
    p.add_argument("--batch-size", type=int, default=128, help="images per forward pass (default: 128)")
    p.add_argument("--num-workers", type=int, default=1, help="DataLoader workers decoding images")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda (or gpu), cuda:N or mps")


def add_image_source_args(p, images_help: str) -> None:
    """The images a verb reads: --images (a folder or image files) or --table, exactly one."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", nargs="+", metavar="PATH", help=images_help)
    src.add_argument("--table", help="CSV / Parquet / JSONL table with an image column (see --image-column)")


def image_source(args):
    """What `Predictor` reads for --images / --table: a table path, one folder or image, or a list of images."""
    return args.table or (args.images[0] if len(args.images) == 1 else args.images)


def input_kwargs(args) -> dict:
    return {"image_column": args.image_column, "root": args.root, "batch_size": args.batch_size,
            "num_workers": args.num_workers}


def load_verb_config(verb: str, config_path, overrides, plugins=()):
    """The checked config of a verb that reads one (train, compare, validate-data, inspect-data);
    notes from composing it (a command-line preset replacing a file's section) go to stderr as
    one line each, so stdout stays what the verb prints. `plugins` (--plugin) join the config's
    `plugins` (so the run's saved config and its bundle record them)."""
    import sys

    from polyhead.engine.checks import load_checked_config

    notes: list[str] = []
    cfg = load_checked_config(config_path, list(overrides), notes, plugins=plugins)
    for note in notes:
        print(f"polyhead {verb}: note: {note}", file=sys.stderr)
    return cfg
