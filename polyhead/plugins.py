"""Plugins: the user's own Python modules, imported before anything is built, so that what they
register (`@register_backbone`, `@register_loss`, `@register_weighting`, `@register_tracker`)
can be named in a config.

A plugin is a module name (`my_pkg.my_module`, importable from sys.path) or a Python file
(`./my_plugin.py`; in a config file relative to that file, on the command line to the current
folder). They come from the config's `plugins:` list and from `--plugin` on every verb.

Each plugin is imported once per process; what it registered is noted (the registries before
and after), and a model bundle records the plugins of its run with those names, so loading it
without one says which plugin to pass (`check_bundle_plugins`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from polyhead.errors import PolyheadError


class PluginError(PolyheadError):
    """A plugin cannot be found or imported, or a bundle needs one that is not loaded."""


@dataclass
class Plugin:
    spec: str  # a module name, or a file's absolute path
    registers: dict[str, list[str]] = field(default_factory=dict)  # kind -> names, e.g. {"backbone": ["tiny"]}

    def record(self) -> dict:
        return {"plugin": self.spec, "registers": self.registers}


_LOADED: dict[str, Plugin] = {}


def _registries() -> dict[str, dict]:
    from polyhead.losses import LOSSES
    from polyhead.model.backbones import BACKBONES
    from polyhead.tracking import TRACKERS
    from polyhead.weighting import WEIGHTINGS

    return {"backbone": BACKBONES, "loss": LOSSES, "weighting": WEIGHTINGS, "tracker": TRACKERS}


def is_file(spec: str) -> bool:
    """A file path (ends in .py, or holds a path separator), not a module name."""
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def canonical(spec: str, base: str | Path | None = None) -> str:
    """The spec as recorded: module names as given, files as absolute paths (relative to `base`,
    default the current folder)."""
    spec = str(spec).strip()
    if not is_file(spec):
        return spec
    path = Path(spec).expanduser()
    if not path.is_absolute():
        path = Path(base or Path.cwd()) / path
    return str(path.resolve())


def load_plugins(specs: Iterable[str], base: str | Path | None = None) -> list[Plugin]:
    """Import each plugin (once per process); returns them in order. One PluginError line for a
    plugin that is missing or fails to import, naming it and the error."""
    return [load_plugin(spec, base) for spec in specs]


def load_plugin(spec: str, base: str | Path | None = None) -> Plugin:
    key = canonical(spec, base)
    if not key:
        raise PluginError("a plugin name is empty: give a module name (my_pkg.my_module) or a file (./my_plugin.py)")
    if key in _LOADED:
        return _LOADED[key]
    registries = _registries()
    before = {kind: set(reg) for kind, reg in registries.items()}
    try:
        _import_file(key) if is_file(key) else importlib.import_module(key)
    except PluginError:
        raise
    except ModuleNotFoundError as exc:
        if not is_file(key) and exc.name and (key == exc.name or key.startswith(exc.name + ".")):
            raise PluginError(f"plugin '{spec}' not found: no module named '{exc.name}' on the Python path "
                              f"(install it, add its folder to PYTHONPATH, or give a file: ./my_plugin.py)") from None
        raise PluginError(f"plugin '{spec}' failed to import: {_one_line(exc)}") from None
    except Exception as exc:
        raise PluginError(f"plugin '{spec}' failed to import: {_one_line(exc)}") from None
    registers = {kind: sorted(set(reg) - before[kind]) for kind, reg in registries.items()}
    plugin = Plugin(key, {kind: names for kind, names in registers.items() if names})
    _LOADED[key] = plugin
    return plugin


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _import_file(path: str) -> None:
    file = Path(path)
    if not file.is_file():
        raise PluginError(f"plugin file not found: '{path}'")
    digest = hashlib.sha1(path.encode()).hexdigest()[:8]
    name = f"polyhead_plugin_{file.stem}_{digest}"  # unique per path: two folders' plugin.py do not clash
    module_spec = importlib.util.spec_from_file_location(name, file)
    if module_spec is None or module_spec.loader is None:
        raise PluginError(f"plugin '{path}' is not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses, pickling and relative lookups need it there
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


def plugin_records(specs: Iterable[str]) -> list[dict]:
    """What a bundle records of the plugins `specs` (loaded already: `load_plugins`)."""
    return [load_plugin(spec).record() for spec in specs]


def check_bundle_plugins(meta: dict, where: str) -> None:
    """Before a bundle is rebuilt: every name it uses (its backbone, its tasks' losses) that a
    recorded plugin registered is registered now; else one line naming the plugin and --plugin."""
    records = meta.get("plugins") or []
    if not records:
        return
    used = {"backbone": {(meta.get("backbone") or {}).get("name")},
            "loss": {t.get("loss", "cross_entropy") for t in meta.get("tasks", [])}}
    registries = _registries()
    for record in records:
        for kind, names in (record.get("registers") or {}).items():
            for name in names:
                if name in used.get(kind, ()) and name not in registries.get(kind, {}):
                    spec = record.get("plugin")
                    raise PluginError(f"the model at '{where}' needs plugin '{spec}' (it registers {kind} '{name}'), "
                                      f"which is not loaded: pass --plugin {spec}")
