"""Top-2 categories + multilabel tags on a frozen pretrained efficientnet_lite0, then served and queried.

    python examples/shop_top2_tags/run.py                    # a few minutes on 2 CPU cores
    python examples/shop_top2_tags/run.py --tiny --out DIR   # seconds (what the tests run)

Steps, each the polyhead command it runs printed first (under --out, default runs/examples/shop_top2_tags):
    1. data/           generated product images, train.csv and test.csv (make_products.py)
    2. runs/shop/      `polyhead train`: model_summary.json, history.csv, plots/training/ (curves),
                       plots/test/, metrics.json, report.html, the bundle
    3. predictions.parquet   `polyhead predict RUN --table test.csv`
    4. `polyhead serve RUN` on 127.0.0.1, asked about one test image by client.py, then stopped
    5. results.json    test metrics, the served answer and the predict row for the same image
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import client  # noqa: E402
from make_products import make_products  # noqa: E402

# --tiny: 8 images per category at 32x32, one epoch of two steps on the frozen backbone (the tests)
TINY = ["training.epochs=1", "training.freeze_backbone_epochs=1", "training.limit_train_batches=2",
        "data.image_size=32", "data.batch_size=8"]
MODEL = "shop"


def polyhead(*argv: str) -> None:
    from polyhead.cli.main import main

    print("$ polyhead " + shlex.join(argv), flush=True)
    if main(list(argv)) != 0:
        raise SystemExit(f"polyhead {argv[0]} failed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_and_ask(run_dir: Path, image: Path, port: int) -> dict:
    """Starts `polyhead serve` in a child process, asks it about `image` once, stops it."""
    import polyhead as package

    env = dict(os.environ)  # the child imports this same polyhead, with one torch thread
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(package.__file__).parents[1]), env.get("PYTHONPATH")]))
    env.setdefault("OMP_NUM_THREADS", "1")
    argv = ["serve", str(run_dir), "--name", MODEL, "--port", str(port), "--device", "cpu"]
    print("$ polyhead " + shlex.join(argv), flush=True)
    server = subprocess.Popen([sys.executable, "-m", "polyhead", *argv], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        client.wait_ready(base, MODEL, deadline_s=180, alive=lambda: server.poll() is None)
        print(f"$ python {Path(client.__file__).name} {base} {MODEL} {image}", flush=True)
        return client.predict(base, MODEL, str(image))
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/examples/shop_top2_tags", help="output folder")
    p.add_argument("--port", type=int, default=0, help="port for `polyhead serve` (default: a free one)")
    p.add_argument("--tiny", action="store_true", default=os.environ.get("POLYHEAD_EXAMPLE_BUDGET") == "tiny",
                   help="a few seconds' budget (also POLYHEAD_EXAMPLE_BUDGET=tiny)")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()

    data = make_products(out / "data", per_category=8 if args.tiny else 80, test_per_category=2 if args.tiny else 20)
    polyhead("train", str(HERE / "config.yaml"), f"data.train_table={data / 'train.csv'}",
             f"data.test_table={data / 'test.csv'}", f"output_dir={out / 'runs'}", f"run_name={MODEL}",
             *(TINY if args.tiny else []))
    run_dir = out / "runs" / MODEL
    predictions = out / "predictions.parquet"
    polyhead("predict", str(run_dir), "--table", str(data / "test.csv"), "--out", str(predictions))

    test = pd.read_csv(data / "test.csv")
    image = data / test["image"][0]
    served = serve_and_ask(run_dir, image, args.port or free_port())
    row = pd.read_parquet(predictions).iloc[0]
    metrics = json.loads((run_dir / "metrics.json").read_text())["test"]
    results = {
        "run_dir": str(run_dir),
        "test": {"category": {k: metrics["category"][k] for k in ("accuracy", "top2_accuracy", "n")},
                 "tags": {k: metrics["tags"][k] for k in ("micro_f1", "macro_f1", "n")}},
        "image": str(image),
        "served": served,
        "predicted": {key: list(row[key]) for key in ("category_top2", "category_top2_prob", "tags")},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    c, t = results["test"]["category"], results["test"]["tags"]
    print(f"test: category accuracy {c['accuracy']:.3f}, top-2 accuracy {c['top2_accuracy']:.3f}; "
          f"tags micro F1 {t['micro_f1']:.3f}")
    print(f"served {image.name}: category top-2 {served['category_top2']}, tags {served['tags']} "
          f"(true: {test['category'][0]}, {test['tags'][0]})")
    return results


if __name__ == "__main__":
    main()
