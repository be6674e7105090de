"""Read config YAML without turning labels into booleans.

PyYAML follows YAML 1.1, where an unquoted yes/no/on/off/true/false (any of their usual
capitalisations) is a boolean: `classes: [yes, no]` would reach polyhead as [True, False], then
as the strings "True" and "False", and no table cell would match them. Labels are text, so
where a config holds labels a YAML boolean is read back as the word that was written:

- the items of `tasks.<name>.classes` and `tasks.<name>.positive`;
- every mapping key (task names, the labels of `tasks.<name>.thresholds`, the task names of
  `training.weighting_args.weights`): the schema's keys are always strings.

Everywhere else a YAML boolean stays a boolean (`enabled: yes` is true). Nothing is guessed
from the table: `positive: yes` is the label "yes", exactly as `positive: "yes"` is.
"""

from __future__ import annotations

from typing import IO, Any

import yaml


class _Bool:
    """A YAML boolean that remembers the word it was written as. Not a bool (nor an int) until
    `_restore` decides, so `{yes: 0.3, TRUE: 0.4}` keeps two keys."""

    __slots__ = ("value", "text")

    def __init__(self, value: bool, text: str):
        self.value, self.text = bool(value), text


class _Loader(yaml.SafeLoader):
    """SafeLoader whose booleans are `_Bool`s, resolved by `_restore` once the path is known."""


def _construct_bool(loader: _Loader, node: yaml.ScalarNode) -> _Bool:
    return _Bool(loader.construct_yaml_bool(node), str(node.value))


_Loader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)


def load_yaml(stream: str | IO) -> Any:
    """`yaml.safe_load`, except that booleans written where labels go keep their text (see above).

    Raises yaml.YAMLError like `yaml.safe_load`."""
    return _restore(yaml.load(stream, Loader=_Loader), ())


def _is_label(path: tuple) -> bool:
    """tasks.<name>.positive, or an item of tasks.<name>.classes."""
    if len(path) < 3 or path[0] != "tasks":
        return False
    return (len(path) == 3 and path[2] == "positive") or (len(path) == 4 and path[2] == "classes")


def _restore(node: Any, path: tuple) -> Any:
    if isinstance(node, _Bool):
        return node.text if _is_label(path) else node.value
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            key = key.text if isinstance(key, _Bool) else key
            out[key] = _restore(value, (*path, key))
        return out
    if isinstance(node, list):
        return [_restore(item, (*path, i)) for i, item in enumerate(node)]
    return node
