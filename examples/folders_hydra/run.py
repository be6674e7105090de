"""An image-folder tree, config groups and command-line overrides, through `polyhead train`.

    python examples/folders_hydra/run.py                    # ~1 min of CPU on 2 cores
    python examples/folders_hydra/run.py --tiny --out DIR   # seconds (what the tests run)

Writes under --out (default runs/examples/folders_hydra): shapes/<shape>/*.png, then two runs of
the same config.yaml, each the `polyhead train` command line printed before it runs:
    runs/file_presets   the presets the file's `defaults:` list chooses (model=tiny_cnn, optimizer=adamw_fast)
    runs/cli_presets    presets and values chosen on the command line
                        (model=wide_cnn optimizer=sgd optimizer.lr=0.05 scheduler=none model.head.dropout=0.2)
and results.json: each run's test accuracy and the resolved model/optimizer/scheduler sections.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_folders import make_folders  # noqa: E402

RUNS = {
    "file_presets": [],
    "cli_presets": ["model=wide_cnn", "optimizer=sgd", "optimizer.lr=0.05", "scheduler=none",
                    "model.head.dropout=0.2"],
}
TINY = ["training.epochs=1", "training.limit_train_batches=2", "report.enabled=false"]


def main(argv: list[str] | None = None) -> dict:
    from polyhead.cli.main import main as polyhead

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/examples/folders_hydra", help="output folder")
    p.add_argument("--tiny", action="store_true", default=os.environ.get("POLYHEAD_EXAMPLE_BUDGET") == "tiny",
                   help="a few seconds' budget (also POLYHEAD_EXAMPLE_BUDGET=tiny)")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    shapes = make_folders(out / "shapes", per_class=10 if args.tiny else 120)
    common = [f"data.train_table={shapes}", f"output_dir={out / 'runs'}"] + (TINY if args.tiny else [])

    results = {}
    for name, overrides in RUNS.items():
        argv_ = ["train", str(HERE / "config.yaml"), f"run_name={name}", *overrides, *common]
        print("$ polyhead " + shlex.join(argv_), flush=True)
        if polyhead(argv_) != 0:
            raise SystemExit(f"polyhead train failed for run '{name}'")
        run_dir = out / "runs" / name
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        metrics = json.loads((run_dir / "metrics.json").read_text())
        results[name] = {"run_dir": str(run_dir), "test_accuracy": metrics["test"]["shape"]["accuracy"],
                         **{k: cfg[k] for k in ("model", "optimizer", "scheduler")}}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    for name, r in results.items():
        print(f"{name:13s} {r['model']['small_cnn']['channels']} {r['optimizer']['name']} lr {r['optimizer']['lr']} "
              f"{r['scheduler']['name']}: test accuracy {r['test_accuracy']:.3f}")
    return results


if __name__ == "__main__":
    main()
