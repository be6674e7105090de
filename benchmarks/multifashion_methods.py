"""MultiFashion: test metrics per task for several weighting methods vs single-task baselines.

    polyhead prepare multifashion data/multifashion
    python benchmarks/multifashion_methods.py --data data/multifashion --epochs 5 --train-rows 12000

Runs `polyhead compare` (the multi-task model with `equal` weighting and one single-task
model per task, same budget and split), then the multi-task model with each other method
(same config, epochs, seed and split), and prints one markdown table of test metrics.
`--train-rows N` trains on the first N rows of the training table (the CPU budget); the
test table is always the full one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from polyhead.cli.main import default_cpu_threads  # noqa: E402

default_cpu_threads()

import pandas as pd  # noqa: E402
from rich.console import Console  # noqa: E402

from polyhead.config.loading import load_config  # noqa: E402
from polyhead.engine.compare import compare  # noqa: E402
from polyhead.engine.fit import fit  # noqa: E402

MAIN = {"multiclass": "accuracy", "binary": "accuracy", "multilabel": "micro_f1"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT / "data" / "multifashion"))
    parser.add_argument("--config", default=str(ROOT / "configs" / "multifashion.yaml"))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-rows", type=int, help="use the first N training rows")
    parser.add_argument("--methods", nargs="+", default=["uncertainty", "famo", "mgda", "pcgrad"])
    parser.add_argument("--out", default=str(ROOT / "runs" / "multifashion-methods"))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    data, out = Path(args.data).resolve(), Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    train = data / "train.parquet"
    if args.train_rows:
        subset = out / f"train_first{args.train_rows}.parquet"
        frame = pd.read_parquet(train).head(args.train_rows)
        frame["image"] = [str(data / p) for p in frame["image"]]
        frame.to_parquet(subset, index=False)
        train = subset
    base = [f"data.train_table={train}", f"data.test_table={data / 'test.parquet'}",
            f"training.epochs={args.epochs}", f"output_dir={out}", "training.progress_bar=false", *args.overrides]
    console = Console()
    started = time.perf_counter()
    report = compare(load_config(args.config, base + ["run_name=compare"]), console=console)
    tasks = {name: info["type"] for name, info in report["tasks"].items()}
    rows = {"single-task": {t: report["tasks"][t]["metrics"][MAIN[k]]["single_task"] for t, k in tasks.items()},
            "equal": {t: report["tasks"][t]["metrics"][MAIN[k]]["multitask"] for t, k in tasks.items()}}
    for method in args.methods:
        result = fit(load_config(args.config, base + [f"run_name={method}", f"training.weighting={method}"]),
                     console=console, name_hint=method)
        rows[method] = {t: result.metrics["test"][t][MAIN[k]] for t, k in tasks.items()}
    header = "| model | " + " | ".join(f"{t} ({MAIN[k]})" for t, k in tasks.items()) + " | mean |"
    lines = [header, "|" + "---|" * (len(tasks) + 2)]
    for name, values in rows.items():
        mean = sum(values.values()) / len(values)
        lines.append(f"| {name} | " + " | ".join(f"{values[t]:.4f}" for t in tasks) + f" | {mean:.4f} |")
    table = "\n".join(lines)
    print(table)
    print(f"\n{args.epochs} epochs, train rows: {args.train_rows or 'all'}, test rows: full test table; "
          f"inference ratio (1 multi-task vs {len(tasks)} single-task models): {report['inference']['ratio']:.2f}x; "
          f"total {time.perf_counter() - started:.0f} s")
    (out / "results.json").write_text(json.dumps({"rows": rows, "inference": report["inference"],
                                                  "epochs": args.epochs, "train_rows": args.train_rows}, indent=2))


if __name__ == "__main__":
    main()
