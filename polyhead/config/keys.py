"""What the schema says about a dotted key, and the one wording for a key a user got wrong.

Both ways of writing a config (a YAML file, a command-line override) go through these
functions, so a typo gets the same did-you-mean wherever it was written.

    schema_type("training.early_stopping")  -> EarlyStoppingConfig   (a section)
    schema_type("tasks.color.top_k")        -> int                   (tasks.<name> is a TaskConfig)
    schema_type("training.weighting_args.mode") -> Any               (free-form: the method checks it)
    schema_type("training.epoch")           -> None                  (not a key)
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any

from polyhead.config.schema import Config
from polyhead.errors import ConfigError

#: Mappings whose keys are a registry's to check, not the schema's: `training.weighting_args.<arg>=v`
#: needs no "+" (the weighting method refuses an argument it does not take, naming the ones it does).
FREE_FORM = ("training.weighting_args", "model.backbone_args", "tasks.*.loss_args")  # *: any one name


def _unwrap(t: Any) -> Any:
    """Optional[X] -> X."""
    args = [a for a in typing.get_args(t) if a is not type(None)]
    if typing.get_origin(t) is typing.Union and len(args) == 1:
        return args[0]
    return t


def _child(t: Any, part: str) -> Any:
    t = _unwrap(t)
    if dataclasses.is_dataclass(t):
        return typing.get_type_hints(t).get(part)
    if typing.get_origin(t) is dict:
        return typing.get_args(t)[1]
    return None


def schema_type(key: str) -> Any:
    """The schema's type at a dotted key ('' is the root), or None when the schema has no such key."""
    t: Any = Config
    for part in key.split(".") if key else []:
        t = _child(t, part)
        if t is None:
            return None
    return _unwrap(t)


def is_section(t: Any) -> bool:
    return dataclasses.is_dataclass(t) or typing.get_origin(t) is dict


def is_open(t: Any) -> bool:
    """A mapping whose keys the user names (tasks, thresholds, weighting_args...)."""
    return typing.get_origin(t) is dict


def is_list(t: Any) -> bool:
    return typing.get_origin(t) is list


def section_keys(key: str) -> list[str]:
    t = schema_type(key)
    return [f.name for f in dataclasses.fields(t)] if dataclasses.is_dataclass(t) else []


def unknown_key_error(key: str, where: str) -> ConfigError:
    """`key` is not in the schema: name it, suggest the closest key of its section, list the section."""
    parent_key, _, leaf = key.rpartition(".")
    valid = section_keys(parent_key)
    close = difflib.get_close_matches(leaf, valid, n=1)
    hint = f"; did you mean '{parent_key + '.' if parent_key else ''}{close[0]}'?" if close else ""
    listing = f" Valid keys under '{parent_key or '<root>'}': {', '.join(valid)}." if valid else ""
    return ConfigError(f"unknown config key '{key}' ({where}){hint}{listing}")


def _shown(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def section_error(key: str, value: Any, where: str, add: bool = False) -> ConfigError:
    """A single value given for a whole section, e.g. `training.early_stopping=true`."""
    keys = section_keys(key)
    plus = "+" if add else ""
    example = f"{plus}{key}.{keys[0] if keys else '<name>'}={_shown(value)}"
    listing = f" (keys: {', '.join(keys)})" if keys else ""
    return ConfigError(f"config key '{key}' is a section{listing}, not a value ({where}); "
                       f"set one of its keys, e.g. {example}")


def is_free_form(key: str) -> bool:
    parts = key.split(".")
    for prefix in FREE_FORM:
        want = prefix.split(".")
        if len(parts) > len(want) and all(w in ("*", p) for w, p in zip(want, parts)):
            return True
    return False


def coerce(key: str, value: Any, where: str, add: bool = False, t: Any = None) -> Any:
    """One value checked against the schema's shape at `key` (of type `t`, looked up when not
    given): a scalar for a section is an error, a scalar for a list becomes a one-element list
    (`data.image_size=28` -> [28])."""
    t = schema_type(key) if t is None else t
    scalar = value is not None and not isinstance(value, (dict, list, tuple))
    if scalar and is_section(t):
        raise section_error(key, value, where, add)
    if scalar and is_list(t):
        return [value]
    return value


def normalise(body: dict, prefix: str, where: str, parent: Any = None) -> dict:
    """A file's mapping (or a preset's section) checked key by key against the schema: unknown
    keys, scalars for sections and scalars for lists, with the same words as the command line.
    `parent`: the schema type of `body` (default: the type at `prefix`)."""
    parent = schema_type(prefix.rstrip(".")) if parent is None else parent
    out = {}
    for k, value in body.items():
        key, t = f"{prefix}{k}", _unwrap(_child(parent, str(k)))
        if t is None:
            raise unknown_key_error(key, where)
        value = coerce(key, value, where, t=t)
        if isinstance(value, dict) and is_section(t):
            value = normalise(value, f"{key}.", where, t)
        out[k] = value
    return out
