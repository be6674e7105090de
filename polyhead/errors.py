"""The one exception type for mistakes a user can make.

Anything raised as a `PolyheadError` is printed by the CLI as a single line
(no traceback). The message must say what was wrong, where (config key, file,
row, column) and what would have been accepted.
"""


class PolyheadError(Exception):
    """A user-caused problem: bad config, bad table, bad image, bad path."""


class ConfigError(PolyheadError):
    """The config (YAML file or command-line override) is invalid."""


class DataError(PolyheadError):
    """A label table, image folder or image cannot be used as given."""
