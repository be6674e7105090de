"""The `Tracker` contract, the registry keyed by name, and `Trackers`, the fan-out used by training.

A tracker is one file in this package: a `Tracker` subclass decorated with
`@register_tracker("name")`. Heavy libraries are imported inside its methods, so that
`import polyhead.tracking` (done by config validation) stays light.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from polyhead.errors import PolyheadError, one_of

TRACKERS: dict[str, type["Tracker"]] = {}
STATUSES = ("FINISHED", "FAILED", "KILLED")


def register_tracker(name: str) -> Callable[[type["Tracker"]], type["Tracker"]]:
    def add(cls: type[Tracker]) -> type[Tracker]:
        if not (isinstance(cls, type) and issubclass(cls, Tracker)):
            raise PolyheadError(f"register_tracker({name!r}) must decorate a subclass of polyhead.tracking.Tracker, "
                                f"got {cls!r}")
        if cls.start is Tracker.start:
            raise PolyheadError(f"tracker {name!r} ({cls.__module__}.{cls.__qualname__}) must implement "
                                f"start(run_dir, run_name, resume_info) -> dict")
        cls.name = name
        TRACKERS[name] = cls
        return cls

    return add


class Tracker:
    """One experiment tracker's run. Every method but `start` may be a no-op.

    Constructors take keyword options (the tracker's `tracking.<name>.*` keys plus `experiment`
    and `output_dir`); unknown ones are ignored so that trackers share one call site."""

    name = "tracker"

    def start(self, run_dir: Path, run_name: str, resume_info: dict | None) -> dict:
        """Open (or, with `resume_info` from a previous start, reopen) the run.
        Returns what reopening needs (ids, folders): saved in `run_dir/tracking.json`."""
        raise NotImplementedError

    def log_params(self, flat: dict[str, str]) -> None:
        """`{"training.epochs": "2", ...}`: the flattened resolved config."""

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        """`{"train/<task>/loss": 0.3, ...}` at `step` (the epoch during training)."""

    def set_tags(self, tags: dict[str, str]) -> None:
        """Run-level facts: dataset fingerprint, rows, versions."""

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """A file or folder (copied recursively) under `artifact_path` in the run's artifacts."""

    def log_model(self, path: Path) -> None:
        """The model bundle folder; by default an ordinary artifact named like the folder."""
        self.log_artifact(path)

    def finish(self, status: str = "FINISHED") -> None:
        """End the run: FINISHED, FAILED or KILLED."""

    def where(self) -> str | None:
        """One line telling the user how to look at the run, or None."""
        return None


def tracker_names() -> list[str]:
    return sorted(TRACKERS)


def check_trackers(names: list[str]) -> None:
    """Every entry of `tracking.trackers` is a registered tracker."""
    for i, name in enumerate(names):
        one_of(f"tracking.trackers[{i}]", name, tracker_names())


def build_trackers(names: list[str], *, experiment: str, output_dir: str | Path,
                   options: dict[str, dict[str, Any]] | None = None) -> "Trackers":
    """`names` from the registry, each built with `experiment`, `output_dir` (absolute) and its
    own `options[name]` (e.g. {"mlflow": {"uri": None, "log_model": True}})."""
    check_trackers(names)
    trackers = []
    for name in names:
        kwargs = dict((options or {}).get(name, {}))
        trackers.append(TRACKERS[name](experiment=experiment, output_dir=Path(output_dir).expanduser().resolve(),
                                       **kwargs))
    return Trackers(trackers)


class Trackers:
    """Fans every call out to each tracker. Empty (falsy) when tracking is off."""

    def __init__(self, trackers: list[Tracker]):
        self.trackers = trackers
        self.run_dir: Path | None = None

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def start(self, run_dir: Path, run_name: str) -> None:
        """Opens each run; reopens those recorded in `run_dir/tracking.json` (a resumed run).
        tracking.json: {tracker name: what its `start` returned}."""
        if not self.trackers:
            return
        self.run_dir = run_dir
        record_path = run_dir / "tracking.json"
        previous = json.loads(record_path.read_text()) if record_path.is_file() else {}
        record = dict(previous)
        for tracker in self.trackers:
            record[tracker.name] = tracker.start(run_dir, run_name, previous.get(tracker.name))
        record_path.write_text(json.dumps(record, indent=2))

    def log_params(self, flat: dict[str, str]) -> None:
        for t in self.trackers:
            t.log_params(flat)

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        if values:
            for t in self.trackers:
                t.log_metrics(values, step)

    def set_tags(self, tags: dict[str, str]) -> None:
        for t in self.trackers:
            t.set_tags(tags)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if path.exists():
            for t in self.trackers:
                t.log_artifact(path, artifact_path)

    def log_model(self, path: Path) -> None:
        if path.exists():
            for t in self.trackers:
                t.log_model(path)

    def finish(self, status: str = "FINISHED") -> None:
        for t in self.trackers:
            t.finish(status)

    def where(self) -> list[str]:
        return [line for t in self.trackers if (line := t.where())]


def missing_library(tracker: str, package: str) -> PolyheadError:
    return PolyheadError(f"tracker '{tracker}' (tracking.trackers) needs the package '{package}': "
                         f"pip install {package}")
