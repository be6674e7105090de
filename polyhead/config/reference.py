"""Generates docs/config.md from the schema: every key, its type, default and comment.

    python -m polyhead.config.reference > docs/config.md
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing

from polyhead.config import schema

SECTIONS = [("tasks.<name>", schema.TaskConfig), ("data", schema.DataConfig),
            ("data.augment", schema.AugmentConfig), ("model", schema.ModelConfig),
            ("model.small_cnn", schema.SmallCNNConfig), ("model.head", schema.HeadConfig),
            ("optimizer", schema.OptimizerConfig), ("scheduler", schema.SchedulerConfig),
            ("training", schema.TrainingConfig), ("training.early_stopping", schema.EarlyStoppingConfig),
            ("tracking", schema.TrackingConfig), ("tracking.mlflow", schema.MlflowConfig),
            ("tracking.clearml", schema.ClearMLConfig), ("report", schema.ReportConfig),
            ("tune", schema.TuneConfig), ("tune.space.<key>", schema.TuneParamConfig), ("(top level)", schema.Config)]


def _comments(cls) -> dict[str, str]:
    out = {}
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+): [^#]*?(?:#\s*(.*))?$", line)
        if m and m.group(2):
            out[m.group(1)] = m.group(2).strip()
    return out


def _default(f: dataclasses.Field) -> str:
    """The default as text: "(section)" for a nested section, "required" when there is none."""
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
        if dataclasses.is_dataclass(value):
            return "(section)"
    else:
        return ""
    if value == "???":
        return "required"
    return "null" if value is None else str(value)


def _type(cls, f: dataclasses.Field) -> str:
    hint = typing.get_type_hints(cls)[f.name]
    text = str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")
    return re.sub(r"polyhead\.config\.schema\.", "", text)


def rows() -> list[tuple[str, str, str, str, str]]:
    """(section, key, type, default, meaning) for every key of the schema, in SECTIONS order."""
    out = []
    for section, cls in SECTIONS:
        comments = _comments(cls)
        for f in dataclasses.fields(cls):
            out.append((section, f.name, _type(cls, f), _default(f), comments.get(f.name, "")))
    return out


def _md_default(text: str) -> str:
    if text in ("", "(section)"):
        return text
    return "**required**" if text == "required" else f"`{text}`"


def render() -> str:
    lines = ["# Config reference", "",
             "Generated from `polyhead/config/schema.py` by `python -m polyhead.config.reference`",
             "(`polyhead config --help-keys` prints the same in a terminal).",
             "An unknown key or a value of the wrong type is an error. Override any key from the",
             "command line: `polyhead train my.yaml data.batch_size=32` (Hydra syntax, see README).",
             "In a config file an unquoted `yes`, `no`, `on`, `off`, `true` or `false` is a boolean, except",
             "where a label goes (the items of `classes`, `positive`, and mapping keys such as the labels of",
             "`thresholds`): there it is the word as written, so `classes: [yes, no]` means the labels",
             "\"yes\" and \"no\" (polyhead.config.yaml_labels).", ""]
    current = None
    for section, key, type_, default, meaning in rows():
        if section != current:
            if current is not None:
                lines.append("")
            lines += [f"## `{section}`", "", "| key | type | default | meaning |", "|---|---|---|---|"]
            current = section
        cells = (f"`{key}`", type_, _md_default(default), meaning)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
