"""add-task vs a full retrain: time and the new task's test metrics (Fashion-MNIST subset).

    python benchmarks/add_task_time.py --data /tmp/fmnist-10k --limit 10000 --epochs 4

1. prepares Fashion-MNIST's first `--limit` train and test images into `--data` (not timed; skipped
   when the tables are there);
2. trains the base run: `category` and `footwear` on the demo model (configs/fashion_mnist.yaml
   without `tags`), `--epochs` epochs;
3. `add-task` on it: `tags` (multilabel) on the frozen, cached features, the same number of epochs;
4. the full retrain with N+1 tasks: the config the add-task run wrote (base tasks plus `tags`),
   trained from scratch with the same budget.

Times are wall-clock of each whole step (data reading, image check, training, evaluation).
The last line is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from polyhead.cli.main import default_cpu_threads  # noqa: E402

default_cpu_threads()

from rich.console import Console  # noqa: E402

from polyhead.config.loading import load_config  # noqa: E402
from polyhead.data.preparers.fashion_mnist import prepare_fashion_mnist  # noqa: E402
from polyhead.engine.add_task import add_task  # noqa: E402
from polyhead.engine.fit import fit  # noqa: E402


def base_config(data: Path, epochs: int, runs: Path) -> Path:
    text = (ROOT / "configs" / "fashion_mnist.yaml").read_text()
    text = text.replace("  tags: {type: multilabel, delimiter: \"|\"}\n", "")
    text = text.replace("../data/fashion-mnist/", f"{data}/")
    path = runs / "base.yaml"
    path.write_text(text + f"\ntracking: {{enabled: false}}\nreport: {{enabled: false}}\noutput_dir: {runs}\n"
                           f"run_name: base\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="where the Fashion-MNIST subset is (or is prepared)")
    parser.add_argument("--limit", type=int, default=10000, help="train and test images prepared")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    data = Path(args.data)
    if not (data / "train.parquet").is_file():
        prepare_fashion_mnist(data, limit=args.limit, progress=False)
    console = Console(quiet=True)
    runs = Path(tempfile.mkdtemp(prefix="add-task-bench-"))
    overrides = [f"training.epochs={args.epochs}", "training.progress_bar=false"]

    base = fit(load_config(base_config(data, args.epochs, runs), overrides), console=console, name_hint="base")
    # no table of its own: the new task reads the base run's train_table (and its test_table)
    (runs / "new.yaml").write_text("tasks:\n  tags: {type: multilabel}\n")
    added = add_task(base.run_dir, runs / "new.yaml", console=console, show_progress=False)
    merged = load_config(added.run_dir / "config.yaml", overrides + ["run_name=retrain"])
    retrain = fit(merged, console=console, name_hint="retrain")

    figures = {
        "train_images": json.loads((base.run_dir / "data.json").read_text())["train"]["rows"],
        "epochs": args.epochs,
        "base_seconds": round(base.seconds, 1),
        "add_task_seconds": round(added.seconds, 1),
        "add_task_feature_seconds": round(added.feature_seconds, 1),
        "add_task_head_seconds": round(added.head_seconds, 1),
        "retrain_seconds": round(retrain.seconds, 1),
        "speedup_vs_retrain": round(retrain.seconds / added.seconds, 1),
        "tags_test_micro_f1_add_task": round(added.metrics["test"]["tags"]["micro_f1"], 4),
        "tags_test_micro_f1_retrain": round(retrain.metrics["test"]["tags"]["micro_f1"], 4),
        "tags_test_mAP_add_task": round(added.metrics["test"]["tags"]["mAP"], 4),
        "tags_test_mAP_retrain": round(retrain.metrics["test"]["tags"]["mAP"], 4),
        "runs": str(runs),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
