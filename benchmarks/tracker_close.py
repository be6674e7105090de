"""Wall-clock seconds of a tracker session from start to `finish` (closing must not wait on a
reporter subprocess or a network time-out), by tracker.

    python benchmarks/tracker_close.py                          # clearml (offline), csv, tensorboard, mlflow
    python benchmarks/tracker_close.py --trackers clearml --repeats 5

Each session runs in a fresh temporary folder (and HOME, where ClearML keeps offline sessions)
and does what a short run does: params, tags, two metric steps, one artifact, finish. The first
session of each tracker (`cold`: it includes importing the tracker's package) is reported apart
from the median and maximum of the `--repeats` that follow. Trackers whose package is missing
are reported as skipped. The last stdout line is one JSON object of the figures (seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from polyhead.errors import PolyheadError  # noqa: E402
from polyhead.tracking import build_trackers  # noqa: E402


def session_seconds(name: str) -> float:
    """One session of tracker `name`, start to finish, in a fresh folder."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["HOME"] = str(tmp / "home")
        (tmp / "run").mkdir()
        (tmp / "run" / "config.yaml").write_text("a: 1\n")
        trackers = build_trackers([name], experiment="polyhead-bench", output_dir=tmp,
                                  options={"clearml": {"offline": True}, "mlflow": {"uri": None, "log_model": False}})
        started = time.perf_counter()
        trackers.start(tmp / "run", "bench-run")
        trackers.log_params({"training.epochs": "2"})
        trackers.set_tags({"data.fingerprint": "abc"})
        trackers.log_metrics({"train/quadrant/loss": 1.5, "val/red/auroc": 0.75}, step=0)
        trackers.log_metrics({"train/quadrant/loss": 0.5}, step=1)
        trackers.log_artifact(tmp / "run" / "config.yaml")
        trackers.finish("FINISHED")
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trackers", nargs="+", default=["clearml", "csv", "tensorboard", "mlflow"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    home = os.environ.get("HOME")
    figures: dict[str, object] = {}
    try:
        for name in args.trackers:
            try:
                cold = session_seconds(name)
            except (ImportError, PolyheadError) as exc:  # package not installed
                print(f"{name}: skipped ({exc})")
                figures[name] = None
                continue
            seconds = [session_seconds(name) for _ in range(args.repeats)]
            print(f"{name}: cold {cold:.2f} s, then " + ", ".join(f"{s:.2f} s" for s in seconds))
            figures[name] = {"cold": cold, "median": statistics.median(seconds), "max": max(seconds)}
    finally:
        if home is not None:
            os.environ["HOME"] = home
    print(json.dumps({"seconds": figures, "repeats": args.repeats, "python": platform.python_version(),
                      "machine": platform.processor() or platform.machine()}))


if __name__ == "__main__":
    main()
