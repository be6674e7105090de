"""`polyhead <verb> ...`: one module per verb, each with `add_parser` and `run`.

A `PolyheadError` (a user's mistake) prints one line and exits with status 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys

from polyhead import __version__
from polyhead.engine.threads import default_cpu_threads

VERBS = ("train", "tune", "evaluate", "predict", "prepare", "compare", "inspect-data", "validate-data", "export",
         "serve", "add-task", "embed", "neighbors", "methods", "config")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; each verb's parser is `verb_parsers(parser)[verb]`."""
    import importlib

    parser = argparse.ArgumentParser(prog="polyhead", description="Multi-task image classification: "
                                     "one shared backbone, many task heads.")
    parser.add_argument("--version", action="version", version=f"polyhead {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for verb in VERBS:
        importlib.import_module(f"polyhead.cli.{verb.replace('-', '_')}").add_parser(sub)
    for verb_parser in verb_parsers(parser).values():
        add_plugin_arg(verb_parser)
    return parser


def add_plugin_arg(p: argparse.ArgumentParser) -> None:
    """--plugin on every verb: imported before the verb builds or loads anything (docs/extending.md)."""
    if any("--plugin" in a.option_strings for a in p._actions):
        return
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE",
                   help="import a plugin first (repeatable): a module name (my_pkg.my_module) or a Python file "
                        "(./my_plugin.py) registering backbones, losses, weighting methods or trackers")


def verb_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """{verb: its parser}, from the parser `build_parser` made."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Flags may stand anywhere after the verb, between or after the positionals
    (`polyhead train my.yaml --print-config a.b=1`): the verb's own parser reads its arguments
    intermixed, so a mistake prints that verb's usage. Before the verb only --help and --version."""
    argv = sys.argv[1:] if argv is None else list(argv)
    verbs = verb_parsers(parser)
    if not argv or argv[0] not in verbs:  # --help, --version, no verb or an unknown one: the top level says
        return parser.parse_args(argv)
    verb, rest = argv[0], argv[1:]
    try:
        args = verbs[verb].parse_intermixed_args(rest)
    except TypeError:  # a parser argparse cannot read intermixed (nargs=REMAINDER): flags in the usual places
        args = verbs[verb].parse_args(rest)
    args.verb = verb
    return args


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if "Original Traceback" in text:  # re-raised from a DataLoader worker: keep the original message
        text = text.strip().splitlines()[-1].split(": ", 1)[-1]
    return text


def main(argv: list[str] | None = None) -> int:
    if "torch" not in sys.modules:
        default_cpu_threads()
    args = parse_args(build_parser(), argv)
    from polyhead.errors import PolyheadError

    try:
        if getattr(args, "plugin", None):
            from polyhead.plugins import canonical, load_plugins

            args.plugin = [canonical(p) for p in args.plugin]  # files: absolute, as a bundle records them
            load_plugins(args.plugin)
        return int(args.func(args) or 0)
    except PolyheadError as exc:
        print(f"polyhead {args.verb}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"polyhead {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
