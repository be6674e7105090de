"""Serving throughput and latency: `polyhead serve` under 1 and 32 concurrent clients, with and
without dynamic batching, against the raw batched model on the same images.

    python benchmarks/serve_throughput.py                           # the demo model (28x28 gray, small CNN)
    python benchmarks/serve_throughput.py --model resnet18            # timm resnet18, 64x64 RGB from 96x96 JPEGs
    python benchmarks/serve_throughput.py --model efficientnet_lite0 --seconds 30   # 224x224: slow on 2 cores
    python benchmarks/serve_throughput.py --run runs/fashion_mnist-...   # a trained run instead

- raw: `TorchRunner.probabilities` on batches of --max-batch images already decoded in memory,
  in this process with the same torch thread count the server uses (the bound the model sets);
- served: a `polyhead serve` process; each client (one asyncio task, keep-alive connection)
  sends TF-Serving-style requests of one base64 PNG/JPEG after the other for --seconds; the
  server decodes, batches, runs the model and answers JSON.

Both servers start once; each of --repeats rounds measures the raw model and then every scenario
back to back. ratio = served img/s at 32 clients with batching / raw img/s of the same round
(median over rounds). The clients run in this process on the same machine, so they take CPU
from the server: on a small machine the ratio is a lower bound. The last stdout line is one
JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from polyhead.cli.main import default_cpu_threads  # noqa: E402

default_cpu_threads()  # before torch loads, as the server's CLI does

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

MODELS = {  # --model: (config overrides, size of the generated source images, format)
    "demo": ([], 28, "PNG"),
    "resnet18": (["model.backbone=resnet18", "model.pretrained=false", "data.channels=3", "data.image_size=[64,64]",
                  "data.batch_size=8", "model.head.hidden=[]"], 96, "JPEG"),
    "efficientnet_lite0": (["model.backbone=efficientnet_lite0", "model.pretrained=false", "data.channels=3",
                            "data.image_size=[224,224]", "data.batch_size=8", "model.head.hidden=[]"], 256, "JPEG"),
}
CATEGORIES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def make_run(model: str, folder: Path) -> Path:
    """The demo config's model (or --model's) trained for 2 batches on generated images: serving speed
    depends on the architecture, not on what it learned."""
    from polyhead.api import fit

    overrides, side, fmt = MODELS[model]
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    rows = []
    for i in range(64):
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        path = f"images/{i:03d}.{fmt.lower()}"
        Image.fromarray(pixels).save(folder / path, format=fmt)
        category = CATEGORIES[i % 10]
        rows.append({"image": path, "category": category, "footwear": "yes" if i % 10 in (5, 7, 9) else "no",
                     "tags": "upper|cotton" if i % 2 else "lower"})
    pd.DataFrame(rows).to_parquet(folder / "train.parquet")
    result = fit(ROOT / "configs" / "fashion_mnist.yaml", [
        f"data.train_table={folder / 'train.parquet'}", "data.test_table=null", "data.num_workers=0",
        "training.epochs=1", "training.limit_train_batches=2", "training.progress_bar=false",
        "report.enabled=false", "tracking.enabled=false", f"output_dir={folder / 'runs'}", "run_name=bench",
        *overrides])
    return result.run_dir


def source_images(run: Path, folder: Path | None, count: int) -> list[bytes]:
    if folder is None:
        folder = run.parent.parent / "images"
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))[:count]
    return [f.read_bytes() for f in files]


class RawModel:
    """The model alone on decoded batches of `batch` images (the same images the clients send)."""

    def __init__(self, run: Path, images: list[bytes], batch: int):
        from polyhead.serving.inputs import decode_images
        from polyhead.serving.limits import Limits
        from polyhead.serving.runner import load_runner

        self.runner = load_runner(run, device="cpu")
        pixels = decode_images(images, [str(i) for i in range(len(images))], self.runner, Limits())
        self.batch = np.concatenate([pixels] * -(-batch // len(pixels)))[:batch]
        for _ in range(3):
            self.runner.probabilities(self.batch)  # warm-up

    def img_per_s(self, seconds: float) -> float:
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            self.runner.probabilities(self.batch)
            done += len(self.batch)
        return done / (time.perf_counter() - start)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`polyhead serve RUN` in a child process."""

    def __init__(self, run: Path, max_batch: int, max_wait_ms: float):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "polyhead", "serve", str(run), "--name", "bench",
                                      "--port", str(self.port), "--max-batch", str(max_batch),
                                      "--max-wait-ms", str(max_wait_ms)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)})

    async def wait_ready(self, session, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"polyhead serve exited: {self.proc.stderr.read()}")
            try:
                async with session.get(f"{self.url}/v2/health/ready") as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError("polyhead serve did not become ready")

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the server process has used so far (Linux /proc), else None."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


async def load(url: str, bodies: list[bytes], clients: int, seconds: float, warmup: float, per_request: int = 1
               ) -> dict:
    """`clients` concurrent clients, each sending one request after the other; latencies after `warmup` s."""
    import aiohttp

    latencies: list[float] = []
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + seconds
    headers = {"Content-Type": "application/json"}

    async def client(session, k):
        i = k
        while True:
            sent = time.perf_counter()
            if sent >= stop_at:
                return
            async with session.post(url, data=bodies[i % len(bodies)], headers=headers) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"HTTP {r.status}")
            if sent >= measure_from:
                latencies.append(time.perf_counter() - sent)
            i += clients

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(session, k) for k in range(clients)))
    lat = np.array(latencies)
    return {"clients": clients, "requests": len(lat), "img_per_s": len(lat) * per_request / seconds,
            "p50_ms": float(np.percentile(lat, 50) * 1000), "p99_ms": float(np.percentile(lat, 99) * 1000)}


async def batch_stats(session, server) -> tuple[float, float]:
    """(forward passes, images) so far, from the server's /metrics."""
    async with session.get(f"{server.url}/metrics") as r:
        text = await r.text()
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("polyhead_batch_size_"))
    return float(values.get("polyhead_batch_size_count", 0)), float(values.get("polyhead_batch_size_sum", 0))


async def measure(run: Path, bodies: list[bytes], raw: RawModel, args) -> list[dict]:
    """Both servers stay up; each repeat measures the raw model, then every scenario, back to back, so
    the ratio compares figures taken a few seconds apart (the machine may be shared)."""
    import aiohttp

    # without batching a forward pass holds exactly one request: max_batch = images per request
    servers = {"dynamic batching": Server(run, args.max_batch, args.max_wait_ms),
               "no batching": Server(run, args.per_request, 0.0)}
    rows = []
    try:
        async with aiohttp.ClientSession() as session:
            for server in servers.values():
                await server.wait_ready(session)
            for repeat in range(args.repeats):
                rows.append({"setting": "raw model", "repeat": repeat, "clients": None,
                             "img_per_s": raw.img_per_s(args.seconds), "batch": args.max_batch})
                for label, server in servers.items():
                    for clients in args.clients:
                        before, cpu = await batch_stats(session, server), server.cpu_seconds()
                        r = await load(f"{server.url}/v1/models/bench:predict", bodies, clients, args.seconds,
                                       args.warmup, args.per_request)
                        after, cpu_after = await batch_stats(session, server), server.cpu_seconds()
                        passes = after[0] - before[0]
                        sent = r["requests"] * (args.seconds + args.warmup) / args.seconds  # warm-up ones too
                        rows.append({"setting": label, "repeat": repeat, **r,
                                     "batch": (after[1] - before[1]) / passes if passes else None,
                                     "server_cpu_ms_per_request": None if cpu is None else
                                     1000 * (cpu_after - cpu) / sent})
                        print(f"repeat {repeat} {label:>16} | {clients:>2} clients | {r['img_per_s']:7.1f} img/s | "
                              f"p50 {r['p50_ms']:7.1f} ms | p99 {r['p99_ms']:7.1f} ms", flush=True)
    finally:
        for server in servers.values():
            server.stop()
    return rows


def summarise(rows: list[dict], clients: list[int]) -> dict:
    """Medians over repeats per (setting, clients); the ratio is the median of the per-repeat ratios."""
    def median(setting, n, key):
        values = [r[key] for r in rows if r["setting"] == setting and r["clients"] == n and r[key] is not None]
        return float(np.median(values)) if values else None

    table = [{"setting": s, "clients": n, **{k: median(s, n, k) for k in ("img_per_s", "p50_ms", "p99_ms", "batch",
                                                                    "server_cpu_ms_per_request")}}
             for s in ("dynamic batching", "no batching") for n in clients]
    raw = {r["repeat"]: r["img_per_s"] for r in rows if r["setting"] == "raw model"}
    most = max(clients)
    ratios = [r["img_per_s"] / raw[r["repeat"]] for r in rows
              if r["setting"] == "dynamic batching" and r["clients"] == most]
    return {"raw_img_per_s": float(np.median(list(raw.values()))), "ratio": float(np.median(ratios)),
            "ratios": ratios, "table": table}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, help="a trained run (default: build one for --model on generated images)")
    p.add_argument("--model", choices=sorted(MODELS), default="demo")
    p.add_argument("--images", type=Path, help="folder of images to send (default: the run's generated images)")
    p.add_argument("--seconds", type=float, default=5.0, help="measured seconds per scenario and client count")
    p.add_argument("--repeats", type=int, default=3, help="rounds of (raw model, every scenario)")
    p.add_argument("--warmup", type=float, default=1.5)
    p.add_argument("--clients", type=int, nargs="+", default=[1, 32])
    p.add_argument("--per-request", type=int, default=1, help="images in each request")
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="polyhead-serve-bench-") as tmp:
        run = args.run or make_run(args.model, Path(tmp))
        images = source_images(run, args.images, 32)
        b64 = [base64.b64encode(b).decode() for b in images]
        bodies = [json.dumps({"instances": [{"b64": b64[(i + j) % len(b64)]} for j in range(args.per_request)]}).encode()
                  for i in range(len(b64))]
        raw = RawModel(run, images, args.max_batch)
        rows = asyncio.run(measure(run, bodies, raw, args))
    summary = summarise(rows, args.clients)
    print(f"raw batched model (batch {args.max_batch}): {summary['raw_img_per_s']:.1f} img/s; served with "
          f"{max(args.clients)} clients and dynamic batching / raw = {summary['ratio']:.2f} (median of {args.repeats})")
    for r in summary["table"]:
        print(f"{r['setting']:>16} | {r['clients']:>2} clients | {r['img_per_s']:7.1f} img/s | p50 {r['p50_ms']:7.1f} ms "
              f"| p99 {r['p99_ms']:7.1f} ms | {r['batch'] or 0:4.1f} img/pass | "
              f"server CPU {r['server_cpu_ms_per_request'] or 0:.1f} ms/request")
    print(json.dumps({"model": args.model if args.run is None else str(args.run), **summary, "rows": rows,
                      "seconds": args.seconds, "repeats": args.repeats, "max_batch": args.max_batch,
                      "images_per_request": args.per_request,
                      "max_wait_ms": args.max_wait_ms, "torch_threads": os.environ.get("OMP_NUM_THREADS"),
                      "cpus": os.cpu_count(), "python": platform.python_version()}))


if __name__ == "__main__":
    main()
