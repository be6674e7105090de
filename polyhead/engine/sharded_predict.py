"""`polyhead predict --devices N`: N processes predict one share each; one output file.

Each process (`python -m polyhead.engine.sharded_predict SPEC.json --shard K`) loads the model
on its device (GPU K, or the CPU with its share of the cores) and, of every chunk of the source
(a folder's image list, a table read `chunk_rows` at a time), predicts its contiguous slice into
`part-<chunk>-<K>.parquet` (Predictor.write_shard). The parts in name order are the input's rows
in order, so the merge is a concatenation that never holds more than one part: the output holds
every row exactly once, in input order, and appears only when complete (as `predict` without
--devices). No process group: the shares are independent.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import torch

from polyhead.api import PredictionSummary
from polyhead.engine.launch import stop_processes
from polyhead.engine.predictions import output_format, write_predictions
from polyhead.errors import ConfigError, PolyheadError


def shard_devices(device: str, processes: int) -> list[str]:
    """One device per process: GPUs 0..N-1 (auto with GPUs, cuda, gpu), or the CPU N times."""
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ConfigError(f"--devices {processes}: use a count of processes >= 1")
    kind = "cuda" if device == "gpu" else device
    if kind.startswith("cuda:"):
        raise ConfigError(f"--devices {processes} with --device {device}: name the kind (--device cuda) and "
                          f"--devices takes GPUs 0..{processes - 1}")
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        have = torch.cuda.device_count()
        if processes > have:
            raise ConfigError(f"--devices {processes}: this machine has {have} GPU(s); use at most {have}")
        return [f"cuda:{i}" for i in range(processes)]
    if kind != "cpu":
        raise ConfigError(f"--devices {processes} with --device {device}: use --device cpu, cuda or auto")
    cores = os.cpu_count() or 1
    if processes > cores:
        raise ConfigError(f"--devices {processes} CPU processes: this machine has {cores} core(s); use at most {cores}")
    return ["cpu"] * processes


def predict_sharded(run_dir: str | Path, source, out: str | Path, *, processes: int, device: str = "auto",
                    backend: str = "torch", plugins: Sequence[str] = (), **kwargs) -> PredictionSummary:
    """Predict `source` on `processes` processes into `out` (.parquet, .csv or "-"); `kwargs`: those
    of Predictor.write_shard (image_column, root, batch_size, num_workers, on_bad_image, chunk_rows)."""
    output_format(out)  # a bad name fails before any process starts
    devices = shard_devices(device, processes)
    source = [str(p) for p in source] if isinstance(source, (list, tuple)) else str(source)
    with tempfile.TemporaryDirectory(prefix="polyhead-predict-") as tmp:
        spec = {"run_dir": str(run_dir), "source": source, "backend": backend, "devices": devices,
                "plugins": list(plugins), "kwargs": kwargs, "parts": str(Path(tmp) / "parts")}
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // processes))}
        procs = [subprocess.Popen([sys.executable, "-m", "polyhead.engine.sharded_predict", str(Path(tmp) / "spec.json"),
                                   "--shard", str(k)], env=env) for k in range(processes)]
        try:
            for k, proc in enumerate(procs):
                if proc.wait() != 0:
                    error = Path(tmp) / f"error-{k}"
                    raise PolyheadError(error.read_text() if error.is_file() else
                                        f"prediction process {k} stopped (exit code {proc.returncode})")
        except BaseException:
            stop_processes(procs)
            raise
        done = [json.loads((Path(tmp) / f"done-{k}.json").read_text()) for k in range(processes)]
        parts = sorted(Path(spec["parts"]).glob("part-*.parquet"))
        rows = _merge(parts, out, run_dir, backend)
    return PredictionSummary(str(out), rows, sum(d["bad_images"] for d in done), done[0]["ignored_files"])


def _merge(parts: list[Path], out: str | Path, run_dir, backend: str) -> int:
    """Concatenate the parts into `out`, one part in memory at a time."""
    import pyarrow.parquet as pq

    if output_format(out) == "parquet":
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp, rows = out.with_name(out.name + ".partial"), 0
        try:
            with pq.ParquetWriter(tmp, pq.read_schema(parts[0])) as writer:
                for part in parts:
                    table = pq.read_table(part)
                    writer.write_table(table)
                    rows += table.num_rows
            tmp.replace(out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return rows
    from polyhead.api import Predictor

    tasks = Predictor.load(run_dir, "cpu", backend).tasks  # CSV cells join lists with each task's delimiter
    return write_predictions((pq.read_table(p).to_pandas() for p in parts), out, tasks)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="polyhead.engine.sharded_predict")
    p.add_argument("spec")
    p.add_argument("--shard", type=int, required=True)
    args = p.parse_args(argv)
    spec = json.loads(Path(args.spec).read_text())
    folder = Path(args.spec).parent
    try:
        from polyhead.api import Predictor
        from polyhead.plugins import load_plugins

        load_plugins(spec["plugins"])
        devices = spec["devices"]
        predictor = Predictor.load(spec["run_dir"], devices[args.shard], spec["backend"])
        Path(spec["parts"]).mkdir(exist_ok=True)
        done = predictor.write_shard(spec["source"], spec["parts"], (args.shard, len(devices)), **spec["kwargs"])
        (folder / f"done-{args.shard}.json").write_text(json.dumps({"bad_images": done.bad_images,
                                                                    "ignored_files": done.ignored_files}))
        return 0
    except PolyheadError as exc:
        (folder / f"error-{args.shard}").write_text(str(exc).strip())
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
