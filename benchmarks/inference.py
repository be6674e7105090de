"""Inference: N heads on one model vs N single-task models, and `polyhead predict`'s memory and start-up.

    python benchmarks/inference.py heads                       # N = 3 and 10 tasks on the demo's small CNN
    python benchmarks/inference.py rows --run RUN --images DIR # peak memory, tables of 10k, 100k and 1M rows
    python benchmarks/inference.py startup --run RUN --table T # wall time and peak memory of one predict
    python benchmarks/inference.py all --run RUN --images DIR --table T

- heads: images/s of one model with N heads over images/s of N one-head models run one after the
  other on the same batch (`polyhead.engine.compare.measure_inference`: random uint8 batches,
  model compute only). The goal is a ratio >= 0.95 N: the heads cost next to nothing.
- rows: `polyhead predict RUN --table T --out x.parquet` on tables of 10k to 1M rows that reuse the
  images of DIR; each run is sampled every 0.1 s for at most --seconds (a 1M-row table takes far
  longer to predict than that; the chunked reader reaches its steady state within seconds) and
  stopped; and, in a separate process without DataLoader workers, the peak RSS once the first 20
  batches are predicted (which includes reading the table, or its first chunk). Memory: the peak over the samples of the main process's RSS plus its DataLoader
  workers' private memory (what they share with the main process is counted once), and of the
  main process's RSS alone.
- startup: one whole `polyhead predict` of table T (wall time, peak tree and main-process memory), and the
  same figures for a bare `python -c "import torch"` (the floor any PyTorch predict pays).

`--root` runs another polyhead source tree (e.g. an older checkout, for a before/after). The last
stdout line is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def heads(ns: list[int], iters: int, repeats: int, config: str) -> dict:
    sys.path.insert(0, str(ROOT))
    import torch

    from polyhead.config.loading import load_config
    from polyhead.engine.compare import measure_inference, single_task_config
    from polyhead.engine.fit import build_model_from_config
    from polyhead.tasks import build_tasks

    def build(cfg):
        model, _, _ = build_model_from_config(cfg, build_tasks(cfg.tasks))
        return model.use_channels_last(cfg.training.channels_last)

    out = {}
    for n in ns:
        cfg = load_config(config, [])
        template = next(iter(cfg.tasks.values()))
        cfg.tasks = {}
        for i in range(n):
            task = type(template)(type="multiclass", classes=[f"c{k}" for k in range(10)])
            cfg.tasks[f"task{i}"] = task
        cfg.data.stratify, cfg.training.monitor = None, "val/loss"
        multi = build(cfg)
        singles = [build(single_task_config(cfg, name)) for name in cfg.tasks]
        ratios = []
        for _ in range(repeats):
            m = measure_inference([multi], cfg, iters)["images_per_s"]
            s = measure_inference(singles, cfg, iters)["images_per_s"]
            ratios.append(m / s)
        out[n] = {"ratio": round(statistics.median(ratios), 2), "goal": round(0.95 * n, 2),
                  "ratios": [round(r, 2) for r in ratios], "multitask_images_per_s": round(m),
                  "single_task_images_per_s": round(s)}
        print(f"N={n}: one {n}-head model / {n} one-head models = {out[n]['ratio']:.2f} (goal >= {0.95 * n:.2f}); "
              f"{m:.0f} vs {s:.0f} images/s", flush=True)
    return {"tasks": out, "config": config, "threads": torch.get_num_threads()}


# ---------------------------------------------------------------- memory of a process tree


def _tree(pid: int) -> list[int]:
    """pid and its descendants (from /proc/*/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except OSError:
            pass
    return found


def _kib(pid: int, field: str, file: str) -> int:
    try:
        with open(f"/proc/{pid}/{file}") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(argv: list[str], env: dict, seconds: float | None) -> dict:
    """Run `argv`, sampling memory every 0.1 s; stop it after `seconds` (None: let it finish)."""
    start = time.perf_counter()
    # cwd: not a source tree, or `python -m polyhead` would import the one there instead of env's
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=tempfile.gettempdir())
    peak_tree = peak_rss = 0
    finished = True
    while proc.poll() is None:
        pids = _tree(proc.pid)
        main_rss = _kib(proc.pid, "VmRSS", "status")
        private = sum(_kib(p, "Private_Clean", "smaps_rollup") + _kib(p, "Private_Dirty", "smaps_rollup")
                      for p in pids[1:])
        peak_tree = max(peak_tree, main_rss + private)
        peak_rss = max(peak_rss, main_rss)
        if seconds is not None and time.perf_counter() - start > seconds:
            os.killpg(proc.pid, signal.SIGKILL)
            finished = False
            break
        time.sleep(0.1)
    err = proc.communicate()[1]
    if finished and proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {err.strip().splitlines()[-1] if err.strip() else proc.returncode}")
    return {"seconds": round(time.perf_counter() - start, 1), "finished": finished,
            "peak_tree_mb": round(peak_tree / 1024), "peak_main_rss_mb": round(peak_rss / 1024)}


def _env(root: Path) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}


def predict_argv(run: str, table: Path, out: Path, workers: int) -> list[str]:
    return [sys.executable, "-m", "polyhead", "predict", run, "--table", str(table), "--out", str(out),
            "--num-workers", str(workers)]


# the peak RSS of one process once the first 20 batches are predicted (no workers): what the table costs
FIRST_BATCHES = """import resource, sys, time
from polyhead.api import Predictor
start = time.perf_counter()
stream = iter(Predictor.load(sys.argv[1], "cpu").iter_predictions(sys.argv[2], show_progress=False, num_workers=0))
for _ in range(20):
    next(stream)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, round(time.perf_counter() - start, 1))
"""


def first_batches(run: str, table: Path, root: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", FIRST_BATCHES, run, str(table)], env=_env(root), capture_output=True,
                          text=True, cwd=tempfile.gettempdir())
    if done.returncode != 0:
        raise SystemExit(f"predicting {table} failed: {done.stderr.strip().splitlines()[-1]}")
    mb, seconds = done.stdout.split()[-2:]
    return {"peak_rss_mb": int(mb), "seconds": float(seconds)}


def rows(run: str, images: str, sizes: list[int], seconds: float, workers: int, root: Path, work: Path) -> dict:
    import pandas as pd

    files = sorted(str(p.resolve()) for p in Path(images).rglob("*.png"))[:16]
    out = {}
    for n in sizes:
        table = work / f"rows{n}.parquet"
        pd.DataFrame({"image": [files[i % len(files)] for i in range(n)]}).to_parquet(table)
        first = first_batches(run, table, root)
        found = out[n] = measure(predict_argv(run, table, work / "p.parquet", workers), _env(root), seconds)
        found["first_20_batches"] = first
        table.unlink()
        print(f"{n:>9} rows: first 20 batches in-process (no workers): peak RSS {first['peak_rss_mb']} MB after "
              f"{first['seconds']} s; `polyhead predict`: peak {found['peak_tree_mb']} MB (tree), main RSS "
              f"{found['peak_main_rss_mb']} MB over {found['seconds']} s{'' if found['finished'] else ' (stopped)'}",
              flush=True)
    return {"rows": out, "seconds_cap": seconds, "num_workers": workers, "root": str(root)}


def startup(run: str, table: str, workers: int, root: Path, work: Path, repeats: int) -> dict:
    import pandas as pd

    n = len(pd.read_parquet(table) if table.endswith(".parquet") else pd.read_csv(table))
    runs = [measure(predict_argv(run, Path(table), work / "p.parquet", workers), _env(root), None)
            for _ in range(repeats)]
    bare = measure([sys.executable, "-c", "import torch, time; time.sleep(0.5)"], _env(root), None)
    best = min(runs, key=lambda r: r["seconds"])
    print(f"predict {n} images: {best['seconds']} s, peak {best['peak_tree_mb']} MB (tree), main RSS "
          f"{best['peak_main_rss_mb']} MB; `import torch` alone: RSS {bare['peak_main_rss_mb']} MB", flush=True)
    return {"images": n, "predict": best, "runs": runs, "import_torch": bare, "num_workers": workers,
            "root": str(root)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("heads", "rows", "startup", "all"))
    parser.add_argument("--config", default=str(ROOT / "configs" / "fashion_mnist.yaml"), help="heads: the model")
    parser.add_argument("--ns", type=int, nargs="+", default=[3, 10], help="heads: task counts")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run", help="rows/startup: a run folder to predict with")
    parser.add_argument("--images", help="rows: a folder of PNGs the tables reuse")
    parser.add_argument("--table", help="startup: the table to predict")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--seconds", type=float, default=45.0, help="rows: stop each predict after this long")
    parser.add_argument("--num-workers", type=int, default=1, help="predict's --num-workers (its default: 1)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the polyhead source tree to run")
    args = parser.parse_args()
    figures = {"cores": os.cpu_count(), "machine": platform.processor() or platform.machine(),
               "python": platform.python_version()}
    with tempfile.TemporaryDirectory(prefix="polyhead-inference-") as tmp:
        if args.mode in ("heads", "all"):
            figures["heads"] = heads(args.ns, args.iters, args.repeats, args.config)
        if args.mode in ("rows", "all"):
            figures["memory"] = rows(args.run, args.images, args.sizes, args.seconds, args.num_workers, args.root,
                                     Path(tmp))
        if args.mode in ("startup", "all"):
            figures["startup"] = startup(args.run, args.table, args.num_workers, args.root, Path(tmp), args.repeats)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
