"""YAML + command-line overrides -> a validated `Config`.

Overrides follow Hydra's grammar (parsed by Hydra itself):

    training.epochs=3          change an existing key
    +tasks.color.type=binary   add a key that is not there yet
    ++a.b=1                    add or change
    ~model.weights             delete (reset to the schema default)
    model=efficientnet_lite0   pick a preset from a config group (model, optimizer, scheduler)

Precedence, lowest first (see `polyhead.config.presets`):

    1. schema defaults
    2. the presets of the file's `defaults:` list
    3. the file's own keys (over its presets, as in Hydra; naming another backbone /
       optimizer / scheduler than the file's own preset is an error)
    4. presets chosen on the command line: each replaces its whole section, the file's
       keys in that section included (a note names the keys dropped)
    5. command-line values, in the order given

Shapes are forgiving where that is unambiguous: a single value for a list key is a
one-element list (`data.image_size=28`), and `training.weighting_args.<arg>=v` needs no "+"
(the weighting method checks its own argument names). A value for a whole section
(`training.early_stopping=true`) or an unknown key gets one line naming the key and what
its section holds, with the same words for the file and the command line (`config/keys.py`).
"""

from __future__ import annotations

import warnings
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from polyhead.config import keys, presets
from polyhead.config.presets import GROUPS, available_presets
from polyhead.config.schema import Config
from polyhead.config.validation import validate
from polyhead.config.yaml_labels import load_yaml
from polyhead.errors import ConfigError

ABSENT = "__absent__"


def _read_yaml(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return load_yaml(fh)  # yaml.safe_load, but an unquoted `yes` where a label goes stays "yes"
    except FileNotFoundError:
        raise ConfigError(f"config file not found: '{path}'") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"invalid YAML in '{path}'{where}: {problem}") from None


def parse_overrides(overrides: Iterable[str], *, sweeps: bool = False,
                    accepted: str = "expected key=value, +key=value or ~key") -> list:
    """Hydra's Override objects of `overrides`; a bad one is one line naming it, Hydra's reason and
    `accepted`. `sweeps`: a,b / range(...) / choice(...) are allowed (`polyhead train -m`), else
    one line saying to add -m."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    parsed = []
    for text in overrides:
        try:
            parsed.extend(parser.parse_overrides([text]))
        except OverrideParseException as exc:
            raise ConfigError(f"cannot parse override '{text}': {_parse_reason(exc)} ({accepted})") from None
    for ov in parsed:
        if not sweeps and ov.is_sweep_override():  # a,b / range(...) / choice(...): one run per value is `train -m`
            raise ConfigError(f"override '{ov.input_line}' is a sweep of several values: train each with "
                              f"`polyhead train CONFIG -m {ov.input_line}`, or give one value (a list is [a,b])")
    return parsed


def _parse_reason(exc: Exception) -> str:
    """Hydra's reason, without its "Error parsing override" header, its link and its caret line."""
    lines = [line.strip() for line in str(exc).strip().splitlines()]
    useful = [line for line in lines if line and not line.startswith(("See ", "Error parsing override"))
              and set(line) != {"^"}]
    return useful[0] if useful else lines[0]


def _omegaconf_error(exc: OmegaConfBaseException, where: str, key_hint: str = "") -> ConfigError:
    key = getattr(exc, "full_key", None) or key_hint
    msg = str(exc).strip().splitlines()[0]
    if "not in struct" in msg or "Key '" in msg and "not in" in msg:
        return keys.unknown_key_error(key, where)
    if "issing mandatory value" in msg:
        return ConfigError(f"config key '{key}' is required but not set ({where})")
    return ConfigError(f"bad value for config key '{key}' ({where}): {msg}")


def _merge(base: DictConfig, update: Any, where: str, key_hint: str = "") -> DictConfig:
    try:
        return OmegaConf.merge(base, update)
    except OmegaConfBaseException as exc:
        raise _omegaconf_error(exc, where, key_hint) from None


def _first_absent(cfg: DictConfig, key: str) -> str | None:
    """The shortest prefix of `key` that `cfg` does not have (None when `key` exists)."""
    parts = key.split(".")
    for i in range(1, len(parts) + 1):
        prefix = ".".join(parts[:i])
        if OmegaConf.select(cfg, prefix, default=ABSENT) is ABSENT:
            return prefix
    return None


def _delete(cfg: DictConfig, key: str, where: str) -> DictConfig:
    if _first_absent(cfg, key) is not None:
        raise ConfigError(f"cannot delete '{key}' ({where}): no such key")
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    default = OmegaConf.select(OmegaConf.structured(Config), key, default=ABSENT)
    with open_dict(parent):
        if default is ABSENT:  # a user-added key (a task, a weighting arg): remove it
            del parent[leaf]
        else:  # a schema key: back to its default
            parent[leaf] = default
    return cfg


def _check_absent_key(key: str, absent: str, where: str) -> None:
    """`key=v` where `absent` (a prefix of key) does not exist yet: say how to add it, or that the
    schema has no such key (with the closest one)."""
    parent = absent.rpartition(".")[0]
    if keys.schema_type(absent) is None or not keys.is_open(keys.schema_type(parent)):
        raise keys.unknown_key_error(absent, where)
    raise ConfigError(f"unknown config key '{key}' ({where}; use '+{key}=...' to add a new key)")


def _apply_value_override(cfg: DictConfig, ov) -> DictConfig:
    key, where = ov.key_or_group, f"command line '{ov.input_line}'"
    if ov.is_delete():
        return _delete(cfg, key, where)
    absent = _first_absent(cfg, key)
    nested = keys.coerce(key, ov.value(), where, add=absent is not None)  # a section or a list: its shape
    adding = ov.is_add() or ov.is_force_add() or keys.is_free_form(key)
    if ov.is_add() and absent is None:
        raise ConfigError(f"cannot add '{key}' ({where}): it already exists; use '{key}=...' to change it")
    if absent is not None and not adding:
        _check_absent_key(key, absent, where)
    if keys.schema_type(key) is None and not keys.is_free_form(key):
        raise keys.unknown_key_error(key, where)
    for part in reversed(key.split(".")):  # a.b=v -> {"a": {"b": v}}: merging validates against the schema
        nested = {part: nested}
    return _merge(cfg, nested, where, key)


def _read_body(config_path: str | Path | None) -> dict:
    if config_path is None:
        return {}
    loaded = _read_yaml(Path(config_path))
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file '{config_path}' must hold a mapping of keys, got {type(loaded).__name__}")
    return dict(loaded)


def _note(notes: list[str] | None, text: str | None) -> None:
    if text is None:
        return
    if notes is None:
        warnings.warn(text, UserWarning, stacklevel=4)
    else:
        notes.append(text)


def compose(config_path: str | Path | None = None, overrides: Iterable[str] = (),
            notes: list[str] | None = None) -> DictConfig:
    """Build the structured (typed) DictConfig from a YAML file and overrides, in the precedence
    of the module docstring. `notes` collects one line per file section a command-line preset
    replaced (None: they are issued as warnings)."""
    parsed = parse_overrides(overrides)
    config_dir = Path(config_path).resolve().parent if config_path else None
    where = f"in '{config_path}'" if config_path else "defaults"
    body = _read_body(config_path)
    file_choices = presets.defaults_choices(body.pop("defaults", []), config_path)
    body = keys.normalise(body, "", where)
    cli_choices = {ov.key_or_group: ov.value() for ov in parsed if _is_group_choice(ov)}
    values = [ov for ov in parsed if not _is_group_choice(ov)]

    cfg = OmegaConf.structured(Config)
    for group, name in {**file_choices, **cli_choices}.items():
        preset = keys.normalise(presets.load_preset(group, name, config_dir, _read_yaml), f"{group}.",
                                f"preset '{group}={name}'")
        if group in cli_choices:
            _note(notes, presets.replaced_section_note(group, name, body.pop(group, None)))
        else:
            presets.check_file_agrees(group, name, preset, body.get(group), config_path)
        cfg = _merge(cfg, {group: preset}, f"preset '{group}={name}'")
    cfg = _merge(cfg, _resolve_relative_paths(body, config_dir), where)
    for ov in values:
        cfg = _apply_value_override(cfg, ov)
    return cfg


def _is_group_choice(ov) -> bool:
    return ov.key_or_group in GROUPS and not ov.is_delete() and isinstance(ov.value(), str)


_PATH_KEYS = ("train_table", "val_table", "test_table", "root")


def _resolve_relative_paths(body: dict, config_dir: Path | None) -> dict:
    """Paths written in a config file are relative to that file, not to the shell's folder."""
    if config_dir is None:
        return body

    def resolve(value):
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            return str((config_dir / value).resolve())
        return value

    out = dict(body)
    if isinstance(body.get("plugins"), list):  # files (./my_plugin.py) are relative to the config too
        from polyhead.plugins import canonical

        out["plugins"] = [canonical(p, config_dir) if isinstance(p, str) else p for p in body["plugins"]]
    if isinstance(body.get("data"), dict):
        out["data"] = {k: (resolve(v) if k in _PATH_KEYS else v) for k, v in body["data"].items()}
    if isinstance(body.get("tasks"), dict):  # tasks.<name>.table
        out["tasks"] = {name: ({**task, "table": resolve(task["table"])} if isinstance(task, dict) and "table" in task
                               else task) for name, task in body["tasks"].items()}
    model = body.get("model")
    if isinstance(model, dict) and isinstance(model.get("weights"), str):
        w = Path(model["weights"]).expanduser()
        if not w.is_absolute():
            out["model"] = {**model, "weights": str((config_dir / w).resolve())}
    return out


def load_config(config_path: str | Path | None = None, overrides: Iterable[str] = (),
                notes: list[str] | None = None) -> Config:
    """Load, override and validate against the schema. Returns the typed `Config` dataclass.

    The registries' checks (task types, backbones, weighting methods, trackers, devices, the
    monitored metric) are `polyhead.engine.checks.check_config`; `load_checked_config` does both."""
    cfg = compose(config_path, overrides, notes)
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        raise _omegaconf_error(exc, f"in '{config_path}'" if config_path else "defaults") from None
    validate(obj)
    return obj


def to_yaml(config: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def from_yaml_text(text: str) -> Config:
    """Rebuild a saved (already resolved) config, e.g. a run folder's config.yaml."""
    body = yaml.safe_load(text) or {}
    cfg = _merge(OmegaConf.structured(Config), body, "saved config")
    return OmegaConf.to_object(cfg)


def as_dict(config: Config) -> dict:
    assert is_dataclass(config)
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True)  # type: ignore[return-value]


__all__ = ["compose", "load_config", "to_yaml", "from_yaml_text", "as_dict", "available_presets", "GROUPS"]
