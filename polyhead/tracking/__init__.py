"""Experiment trackers (MLflow, TensorBoard, a CSV file, ClearML), one file each, keyed by name.

Adapters only: every module of this package but `base` is a tracker and registers itself on
import. What a run logs, and when, is the engine's (`polyhead.engine.tracked_run`)."""

from __future__ import annotations

import importlib
import pkgutil

from polyhead.tracking.base import (TRACKERS, Tracker, Trackers, build_trackers, check_trackers, register_tracker,
                                    tracker_names)

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["TRACKERS", "Tracker", "Trackers", "build_trackers", "check_trackers", "register_tracker", "tracker_names"]
