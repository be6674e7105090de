"""YAML + command-line overrides -> a validated `Config`.

Overrides follow Hydra's grammar (parsed by Hydra itself):

    training.epochs=3          change an existing key
    +tasks.color.type=binary   add a key that is not there yet
    ++a.b=1                    add or change
    ~model.weights             delete (reset to the schema default)
    model=efficientnet_lite0   pick a preset from a config group

Precedence, lowest first (Hydra's with `_self_` last): schema defaults, group
presets named in the file's `defaults:` list (or replaced on the command line),
the file's own keys, then the command-line value overrides.
"""

from __future__ import annotations

import difflib
from dataclasses import is_dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from polyhead.config.schema import Config
from polyhead.config.validation import validate
from polyhead.config.yaml_labels import load_yaml
from polyhead.errors import ConfigError

GROUPS = ("model", "optimizer", "scheduler")


def _group_dirs(config_dir: Path | None) -> list[Path]:
    dirs = []
    if config_dir is not None:
        dirs.append(config_dir)
    dirs.append(Path(str(resources.files("polyhead") / "conf")))
    return dirs


def available_presets(group: str, config_dir: Path | None = None) -> list[str]:
    names: set[str] = set()
    for d in _group_dirs(config_dir):
        if (d / group).is_dir():
            names.update(p.stem for p in (d / group).glob("*.yaml"))
    return sorted(names)


def _load_preset(group: str, name: str, config_dir: Path | None) -> dict:
    for d in _group_dirs(config_dir):
        path = d / group / f"{name}.yaml"
        if path.is_file():
            return _read_yaml(path) or {}
    valid = available_presets(group, config_dir)
    raise ConfigError(f"unknown preset '{group}={name}'; available for '{group}': {', '.join(valid) or 'none'}")


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


def _parse_overrides(overrides: Iterable[str]) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    parsed = []
    for text in overrides:
        try:
            parsed.extend(parser.parse_overrides([text]))
        except OverrideParseException as exc:
            first = str(exc).strip().splitlines()[0]
            raise ConfigError(f"cannot parse override '{text}': {first} (expected key=value, +key=value or ~key)") from None
    return parsed


def _keys_of(node: Any) -> list[str]:
    if isinstance(node, DictConfig):
        return [str(k) for k in node.keys()]
    return []


def _unknown_key_error(key: str, where: str, schema: DictConfig) -> ConfigError:
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(schema, parent_key) if parent_key else schema
    valid = _keys_of(parent)
    close = difflib.get_close_matches(leaf, valid, n=1)
    hint = f"; did you mean '{parent_key + '.' if parent_key else ''}{close[0]}'?" if close else ""
    listing = f" Valid keys under '{parent_key or '<root>'}': {', '.join(valid)}." if valid else ""
    return ConfigError(f"unknown config key '{key}' ({where}){hint}{listing}")


def _omegaconf_error(exc: OmegaConfBaseException, where: str, schema: DictConfig) -> ConfigError:
    key = getattr(exc, "full_key", None) or ""
    msg = str(exc).strip().splitlines()[0]
    if "not in struct" in msg or "Key '" in msg and "not in" in msg:
        return _unknown_key_error(key, where, schema)
    if "issing mandatory value" in msg:
        return ConfigError(f"config key '{key}' is required but not set ({where})")
    return ConfigError(f"bad value for config key '{key}' ({where}): {msg}")


def _merge(base: DictConfig, update: Any, where: str, schema: DictConfig) -> DictConfig:
    try:
        return OmegaConf.merge(base, update)
    except OmegaConfBaseException as exc:
        raise _omegaconf_error(exc, where, schema) from None


def _apply_value_override(cfg: DictConfig, ov, schema: DictConfig) -> DictConfig:
    key, where = ov.key_or_group, f"command line '{ov.input_line}'"
    exists = OmegaConf.select(cfg, key, default="__absent__") != "__absent__"
    if ov.is_delete():
        if not exists:
            raise ConfigError(f"cannot delete '{key}' ({where}): no such key")
        parent_key, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
        default = OmegaConf.select(schema, key, default="__absent__")
        with open_dict(parent):
            if default == "__absent__":  # a user-added key (a task, a weighting arg): remove it
                del parent[leaf]
            else:  # a schema key: back to its default
                parent[leaf] = default
        return cfg
    if ov.is_add() and exists:
        raise ConfigError(f"cannot add '{key}' ({where}): it already exists; use '{key}=...' to change it")
    if not (ov.is_add() or ov.is_force_add()) and not exists:
        raise _unknown_key_error(key, f"{where}; use '+{key}=...' to add a new key", schema)
    nested = ov.value()
    for part in reversed(key.split(".")):  # a.b=v -> {"a": {"b": v}}: merging validates against the schema
        nested = {part: nested}
    return _merge(cfg, nested, where, schema)


def compose(config_path: str | Path | None = None, overrides: Iterable[str] = ()) -> DictConfig:
    """Build the structured (typed) DictConfig from a YAML file and overrides."""
    schema = OmegaConf.structured(Config)
    cfg = OmegaConf.structured(Config)
    parsed = _parse_overrides(overrides)
    config_dir = Path(config_path).resolve().parent if config_path else None

    body: dict = {}
    if config_path is not None:
        loaded = _read_yaml(Path(config_path))
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file '{config_path}' must hold a mapping of keys, got {type(loaded).__name__}")
        body = dict(loaded)
    choices = _defaults_choices(body.pop("defaults", []), config_path)

    value_overrides = []
    for ov in parsed:
        is_group_choice = (
            ov.key_or_group in GROUPS and not ov.is_delete() and isinstance(ov.value(), str)
        )
        if is_group_choice:
            choices[ov.key_or_group] = ov.value()
        else:
            value_overrides.append(ov)

    for group, name in choices.items():
        preset = _load_preset(group, name, config_dir)
        cfg = _merge(cfg, {group: preset}, f"preset '{group}={name}'", schema)
    where = f"in '{config_path}'" if config_path else "defaults"
    cfg = _merge(cfg, _resolve_relative_paths(body, config_dir), where, schema)
    for ov in value_overrides:
        cfg = _apply_value_override(cfg, ov, schema)
    return cfg


def _defaults_choices(defaults: Any, config_path) -> dict[str, str]:
    choices: dict[str, str] = {}
    if not isinstance(defaults, list):
        raise ConfigError(f"'defaults' in '{config_path}' must be a list such as [{{model: efficientnet_lite0}}]")
    for item in defaults:
        if item == "_self_":
            continue
        if not (isinstance(item, dict) and len(item) == 1):
            raise ConfigError(f"bad 'defaults' entry {item!r} in '{config_path}': expected '{{group: preset}}' with group one of {', '.join(GROUPS)}")
        (group, name), = item.items()
        if group not in GROUPS:
            raise ConfigError(f"unknown config group '{group}' in 'defaults' of '{config_path}'; groups: {', '.join(GROUPS)}")
        choices[group] = str(name)
    return choices


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


def load_config(config_path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Load, override and validate. Returns the typed `Config` dataclass."""
    cfg = compose(config_path, overrides)
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        raise _omegaconf_error(exc, f"in '{config_path}'" if config_path else "defaults", OmegaConf.structured(Config)) from None
    validate(obj)
    return obj


def to_yaml(config: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def from_yaml_text(text: str) -> Config:
    """Rebuild a saved (already resolved) config, e.g. a run folder's config.yaml."""
    body = yaml.safe_load(text) or {}
    schema = OmegaConf.structured(Config)
    cfg = _merge(OmegaConf.structured(Config), body, "saved config", schema)
    return OmegaConf.to_object(cfg)


def as_dict(config: Config) -> dict:
    assert is_dataclass(config)
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True)  # type: ignore[return-value]


__all__ = ["compose", "load_config", "to_yaml", "from_yaml_text", "as_dict", "available_presets", "GROUPS"]
