"""polyhead methods: the loss weighting methods, their arguments and papers."""

from __future__ import annotations

HELP = """List the loss weighting methods (training.weighting): what each needs (the task losses,
their gradients with respect to the shared features, or to the shared parameters), its
arguments with their defaults (set as training.weighting_args.<arg>=value) and its paper;
then the task losses (tasks.<name>.loss) with their task types and arguments. With --plugin,
a plugin's own methods and losses are listed too."""


def add_parser(sub) -> None:
    import argparse

    p = sub.add_parser("methods", help="list the loss weighting methods, their arguments and papers",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=run)


def describe_all() -> list[str]:
    """Lines for every registered method: `name (needs): summary`, its arguments, its paper."""
    from polyhead.weighting import WEIGHTINGS

    lines = []
    for name in sorted(WEIGHTINGS):
        d = WEIGHTINGS[name].describe()
        args = ", ".join(f"{k}={v}" for k, v in d["args"].items()) or "none"
        lines += [f"{name} (needs: {d['requires']}): {d['summary']}", f"    args: {args}"]
        if d["paper"]:
            lines.append(f"    paper: {d['paper']}")
    return lines


def describe_losses() -> list[str]:
    """Lines for every registered task loss: `name (task types): summary` and its arguments."""
    import inspect
    import re

    from polyhead.losses import LOSSES

    lines = []
    for name in sorted(LOSSES):
        spec = LOSSES[name]
        doc = " ".join((inspect.getdoc(spec.fn) or "").split())
        doc = re.split(r"(?<=\.)(?<!al\.)\s", doc)[0]  # the first sentence ("et al." goes on)
        args = ", ".join(f"{k}={'(required)' if v is inspect.Parameter.empty else v}" for k, v in spec.args.items())
        lines += [f"{name} ({', '.join(spec.types)}): {doc}", f"    args: {args or 'none'}"]
    return lines


def run(args) -> int:
    print("\n".join(describe_all()))
    print("\nchoose with training.weighting=NAME; set an argument with training.weighting_args.ARG=VALUE")
    print("\ntask losses:\n" + "\n".join(describe_losses()))
    print("\nchoose with tasks.TASK.loss=NAME; set an argument with tasks.TASK.loss_args.ARG=VALUE")
    return 0
