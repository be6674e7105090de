"""tune.space -> Optuna distributions, and the sampled values -> command-line overrides.

    optimizer.lr:       {type: float, low: 1e-4, high: 1e-2, log: true} -> trial.suggest_float(...)
    data.batch_size:    {type: int, low: 16, high: 64, step: 16}        -> trial.suggest_int(...)
    training.weighting: {type: categorical, choices: [equal, famo]}     -> trial.suggest_categorical(...)
    model:              {type: categorical, choices: [tiny_cnn, wide_cnn]}  (a preset group)

Each trial trains the config with its values as overrides (`optimizer.lr=0.00123`), so a value goes
through the same checks as one typed on the command line. `check_space` tries every bound and choice
before the study starts: a key that is no config key, or a value its key refuses, is one line.
"""

from __future__ import annotations

from typing import Any, Sequence

from polyhead.config import keys
from polyhead.config.presets import GROUPS
from polyhead.config.schema import Config, TuneParamConfig
from polyhead.errors import ConfigError


def override(key: str, value: Any) -> str:
    """A sampled value as a Hydra override: strings quoted (so `true` or `1` chosen as text stay text)."""
    if value is None:
        return f"{key}=null"
    if isinstance(value, bool):
        return f"{key}={str(value).lower()}"
    if isinstance(value, str):
        return f"{key}='" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"{key}={value!r}"


def suggest(trial, key: str, p: TuneParamConfig) -> Any:
    """One value of `p` from the trial; ints as int, a float grid with its step."""
    if p.type == "categorical":
        return trial.suggest_categorical(key, list(p.choices))
    if p.type == "int":
        return trial.suggest_int(key, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
    return trial.suggest_float(key, float(p.low), float(p.high), step=p.step, log=p.log)


def _probes(p: TuneParamConfig) -> list[Any]:
    """The values that stand for the whole range: its bounds, or every choice."""
    if p.type == "categorical":
        return list(p.choices)
    return [int(p.low), int(p.high)] if p.type == "int" else [float(p.low), float(p.high)]


def _check_key(key: str, p: TuneParamConfig) -> None:
    if key in GROUPS:
        if p.type != "categorical":
            raise ConfigError(f"tune.space.{key}: '{key}' is a preset group; give it type: categorical with "
                              f"preset names as choices")
        return
    if keys.is_free_form(key):
        return
    t = keys.schema_type(key)
    if t is None:
        raise keys.unknown_key_error(key, "tune.space")
    if keys.is_section(t):
        raise ConfigError(f"tune.space.{key}: '{key}' is a section, not a value; tune one of its keys "
                          f"({', '.join(keys.section_keys(key)) or '<name>.<key>'})")


def check_space(config_path: str | None, overrides: Sequence[str], cfg: Config, plugins: Sequence[str] = ()) -> None:
    """Every key of tune.space is a config key, and each bound or choice is a value the config accepts
    (a probe config per value, checked like a training's); the first problem is one line."""
    from polyhead.engine.checks import load_checked_config

    if not cfg.tune.space:
        raise ConfigError("tune.space is empty: name the config keys to search, e.g. tune: {space: {optimizer.lr: "
                          "{type: float, low: 1e-4, high: 1e-2, log: true}}}")
    for key, p in cfg.tune.space.items():
        _check_key(key, p)
        for value in _probes(p):
            try:
                load_checked_config(config_path, [*overrides, override(key, value)], [], plugins=plugins)
            except ConfigError as exc:
                raise ConfigError(f"tune.space.{key}: the value {value!r} is refused: {exc}") from None
