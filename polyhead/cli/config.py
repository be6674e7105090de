"""polyhead config --help-keys [PREFIX]: every config key with its type, default and meaning."""

from __future__ import annotations

HELP = """Print every config key with its type, default and meaning (the same table as
docs/config.md, generated from the schema). PREFIX keeps the keys under it, e.g.
`polyhead config --help-keys training`."""


def add_parser(sub) -> None:
    import argparse

    p = sub.add_parser("config", help="every config key with its type, default and meaning",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--help-keys", action="store_true", help="print the keys (the default action)")
    p.add_argument("prefix", nargs="?", default="", help="only the keys under this section, e.g. training")
    p.set_defaults(func=run)


def key_lines(prefix: str = "") -> list[str]:
    """`section.key (type, default D): meaning` for every schema key under `prefix`."""
    from polyhead.config.reference import rows
    from polyhead.errors import ConfigError

    lines = []
    for section, key, type_, default, meaning in rows():
        full = key if section == "(top level)" else f"{section}.{key}"
        if not full.startswith(prefix):
            continue
        if default == "(section)":
            lines.append(f"{full} (section): {meaning}")
        else:
            lines.append(f"{full} ({type_}, {'required' if default == 'required' else 'default ' + default}): {meaning}")
    if not lines:
        sections = sorted({s for s, *_ in rows() if s != "(top level)"})
        raise ConfigError(f"no config key under '{prefix}'; sections: {', '.join(sections)}")
    return lines


def run(args) -> int:
    print("\n".join(key_lines(args.prefix)))
    return 0
