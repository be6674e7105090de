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


class ImageError(DataError):
    """An image file cannot be decoded. `path` and `reason` (e.g. "file not found") are kept apart
    from the message so a caller can record the reason beside the path (prediction's `error`
    column). One positional argument, so a DataLoader worker can re-raise it."""

    def __init__(self, message: str, *, path: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.path, self.reason = path, reason if reason is not None else message


def bad_value(key: str, value, expected: str) -> ConfigError:
    """The one wording for a config value that is not accepted (every registry and check uses it)."""
    return ConfigError(f"bad value for config key '{key}': {value!r}; expected {expected}")


def one_of(key: str, value, options) -> None:
    """Raise `bad_value` with a did-you-mean hint unless `value` is one of `options`."""
    if value in options:
        return
    import difflib

    names = [str(o) for o in options]
    close = difflib.get_close_matches(str(value), names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(f"{bad_value(key, value, 'one of ' + ', '.join(names))}{hint}")


def one_line(exc: BaseException) -> str:
    """An exception as one line for a summary or a status column: a user's mistake (PolyheadError)
    as its message, as the command line prints it; anything else with its type. An error re-raised
    from a DataLoader worker keeps the original's last line."""
    text = str(exc).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1]
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, PolyheadError):
        return first
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
