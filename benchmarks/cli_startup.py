"""Start-up cost of the command line: wall time of `polyhead train CONFIG --print-config` and, given a
run folder and a few images, of a whole `polyhead predict`, each a fresh Python process, plus which
heavy libraries each one imported.

    python benchmarks/cli_startup.py                         # configs/fashion_mnist.yaml, 5 runs each
    python benchmarks/cli_startup.py --config my.yaml --repeats 9 --run runs/my-run --images photos/

Prints one line per command (median and every run, in seconds), then one JSON object on the
last line: {"python": ..., "repeats": n, "commands": {name: {"median_s", "runs_s", "heavy_imported"}}}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "lightning", "timm", "torchmetrics", "torchvision", "mlflow", "matplotlib", "pandas")
# runs the CLI in-process, then reports which heavy top-level packages it imported
PROBE = ("import sys\nfrom polyhead.cli.main import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
         f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))")


def time_command(argv: list[str], repeats: int) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "polyhead", *argv], env=env, check=True, capture_output=True)
        runs.append(time.perf_counter() - start)
    probe = subprocess.run([sys.executable, "-c", PROBE, *argv], env=env, check=True, capture_output=True, text=True)
    heavy = probe.stdout.strip().splitlines()[-1].removeprefix("HEAVY=")
    return {"median_s": round(statistics.median(runs), 2), "runs_s": [round(r, 2) for r in runs],
            "heavy_imported": [m for m in heavy.split(",") if m]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "fashion_mnist.yaml"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--run", help="a run folder for the predict timing (skipped without it)")
    parser.add_argument("--images", help="a (small) folder of images for the predict timing")
    args = parser.parse_args()
    commands = {"train --print-config": ["train", args.config, "--print-config"]}
    if args.run and args.images:
        out = Path(tempfile.mkdtemp()) / "predictions.csv"
        commands["predict"] = ["predict", args.run, "--images", args.images, "--out", str(out), "--num-workers", "0"]
    result = {"python": platform.python_version(), "repeats": args.repeats, "commands": {}}
    for name, argv in commands.items():
        found = result["commands"][name] = time_command(argv, args.repeats)
        print(f"{name:<22} median {found['median_s']:.2f} s (runs: {', '.join(map(str, found['runs_s']))}); "
              f"heavy imports: {', '.join(found['heavy_imported']) or 'none'}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
