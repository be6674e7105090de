"""Config-group presets (`model=resnet18`, `optimizer=sgd`, `scheduler=plateau`) and which one wins.

A preset is a YAML file `<group>/<name>.yaml` holding that group's section, looked up first in
the folder of the user's config, then in `polyhead/conf/`. A file chooses presets in its
`defaults:` list; the command line chooses with `group=name`.

    file only          defaults: [{model: resnet18}] + model: {drop_rate: 0.2}
                       -> resnet18's section, then the file's keys over it (as in Hydra)
    contradiction      the same, with model: {backbone: small_cnn}
                       -> ConfigError: the file names two different backbones
    command line       model=resnet18 (whatever the file says about model)
                       -> resnet18's section alone; the file's model keys are dropped, and a
                          note names them (command-line values such as model.drop_rate=0.1
                          still apply on top)
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Callable

from polyhead.errors import ConfigError

GROUPS = ("model", "optimizer", "scheduler")
#: the key that says which preset a section is: two different values are two different presets
IDENTITY = {"model": "backbone", "optimizer": "name", "scheduler": "name"}


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


def load_preset(group: str, name: str, config_dir: Path | None, read_yaml: Callable[[Path], Any]) -> dict:
    for d in _group_dirs(config_dir):
        path = d / group / f"{name}.yaml"
        if path.is_file():
            return read_yaml(path) or {}
    valid = available_presets(group, config_dir)
    raise ConfigError(f"unknown preset '{group}={name}'; available for '{group}': {', '.join(valid) or 'none'}")


def defaults_choices(defaults: Any, config_path) -> dict[str, str]:
    """A file's `defaults:` list -> {group: preset}. `_self_` (the file's own keys) may only be
    last: polyhead always merges a file's keys over its presets."""
    if not isinstance(defaults, list):
        raise ConfigError(f"'defaults' in '{config_path}' must be a list such as [{{model: efficientnet_lite0}}]")
    if "_self_" in defaults[:-1]:
        raise ConfigError(f"'_self_' in the 'defaults' of '{config_path}' must be last (or left out): the "
                          f"file's own keys are always merged over its presets")
    choices: dict[str, str] = {}
    for item in defaults:
        if item == "_self_":
            continue
        if not (isinstance(item, dict) and len(item) == 1):
            raise ConfigError(f"bad 'defaults' entry {item!r} in '{config_path}': expected '{{group: preset}}' "
                              f"with group one of {', '.join(GROUPS)}")
        (group, name), = item.items()
        if group not in GROUPS:
            raise ConfigError(f"unknown config group '{group}' in 'defaults' of '{config_path}'; "
                              f"groups: {', '.join(GROUPS)}")
        choices[group] = str(name)
    return choices


def check_file_agrees(group: str, name: str, preset: dict, section: Any, config_path) -> None:
    """The file's own `group:` section must not name another preset than its defaults list does."""
    key = IDENTITY[group]
    if not (isinstance(section, dict) and key in section and key in preset):
        return
    if str(section[key]) != str(preset[key]):
        raise ConfigError(
            f"'{group}.{key}: {section[key]}' in '{config_path}' contradicts '{group}: {name}' in its defaults "
            f"list ({group}.{key}: {preset[key]}); keep one of the two, or choose on the command line ({group}=...)")


def replaced_section_note(group: str, name: str, section: Any) -> str | None:
    """The note for a command-line preset that replaces a section the file wrote."""
    if not isinstance(section, dict) or not section:
        return None
    dropped = ", ".join(f"{group}.{k}" for k in section)
    return (f"{group}={name} on the command line replaces the config file's '{group}' section; not used: "
            f"{dropped} (set any of them after {group}={name} to keep it)")
