"""polyhead methods: the loss weighting methods, their arguments and papers."""

from __future__ import annotations

HELP = """List the loss weighting methods (training.weighting): what each needs (the task losses,
their gradients with respect to the shared features, or to the shared parameters), its
arguments with their defaults (set as training.weighting_args.<arg>=value) and its paper."""


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


def run(args) -> int:
    print("\n".join(describe_all()))
    print("\nchoose with training.weighting=NAME; set an argument with training.weighting_args.ARG=VALUE")
    return 0
