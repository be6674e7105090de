"""Training throughput: end-to-end (images -> data.cache / DataLoader -> step) vs model-only (batches already in memory).

The ratio end-to-end / model-only says how much of the model's speed the input pipeline
delivers: 1.0 means data loading is fully hidden behind compute. End-to-end uses the config's
data.cache (default auto: built or read once before timing, its seconds reported apart) and the
loader workers and torch threads `polyhead train` would choose. The last stdout line is one JSON
object: ratio_all_cores (end-to-end / model-only on every core), ratio_same_threads (end-to-end /
model-only at end-to-end's thread count), the images/s behind them and the settings.

    python benchmarks/train_throughput.py --data data/fashion-mnist            # the demo config
    python benchmarks/train_throughput.py --data DIR --batches 300 --repeats 3 -- training.precision=bf16-mixed

Both modes run the same model, the same Lightning training step (batched augmentation, masked
losses, weighting, optimizer, scheduler); only where the batches come from differs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from polyhead.cli.main import default_cpu_threads  # noqa: E402

default_cpu_threads()  # before torch loads, exactly as the CLI does

import lightning as L  # noqa: E402
import torch  # noqa: E402

from polyhead.config.loading import load_config  # noqa: E402
from polyhead.data.cache import open_cache  # noqa: E402
from polyhead.data.loaders import image_size, loader_workers, train_loader  # noqa: E402
from polyhead.data.splits import build_splits  # noqa: E402
from polyhead.data.transforms import BatchAugment  # noqa: E402
from polyhead.engine.fit import build_model_from_config, quiet_lightning  # noqa: E402
from polyhead.engine.threads import training_threads  # noqa: E402
from polyhead.engine.precision import resolve_precision  # noqa: E402
from polyhead.engine.module import MultiTaskModule  # noqa: E402
from polyhead.tasks import build_tasks  # noqa: E402
from polyhead.weighting import build_weighting  # noqa: E402


class Timer(L.Callback):
    """Images/s over the batches after `warmup` (first batches pay for worker start-up and allocation)."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.images, self.seconds = warmup, None, 0, 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.start is not None:
            self.images += batch["image"].shape[0]
            self.seconds = time.perf_counter() - self.start


def run(cfg, tasks, batches, warmup: int, loader) -> float:
    L.seed_everything(0, verbose=False)
    model, _, _ = build_model_from_config(cfg, tasks)
    model.use_channels_last(cfg.training.channels_last)
    module = MultiTaskModule(model, tasks, build_weighting(cfg.training.weighting, list(tasks)),
                             optimizer=cfg.optimizer, scheduler=cfg.scheduler,
                             augment=BatchAugment(cfg.data.augment, cfg.data.channels, seed=cfg.training.seed))
    timer = Timer(warmup)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=batches, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
                        accelerator=cfg.training.accelerator,
                        precision=resolve_precision(str(cfg.training.precision), cfg.training.accelerator))
    trainer.fit(module, loader)
    return timer.images / timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT / "data" / "fashion-mnist"), help="prepared Fashion-MNIST folder")
    parser.add_argument("--config", default=str(ROOT / "configs" / "fashion_mnist.yaml"))
    parser.add_argument("--batches", type=int, default=200, help="training batches per measurement")
    parser.add_argument("--warmup", type=int, default=20, help="batches not timed")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. data.num_workers=2")
    args = parser.parse_args()

    quiet_lightning()
    data = Path(args.data).resolve()
    cfg = load_config(args.config, [f"data.train_table={data / 'train.parquet'}", "~data.test_table",
                                    "data.val_fraction=0.0", *args.overrides])
    tasks = build_tasks(cfg.tasks)
    splits = build_splits(cfg.data, tasks, seed=cfg.training.seed)
    d = cfg.data
    started = time.perf_counter()
    cache = open_cache(splits.train.paths, mode=d.cache, channels=d.channels, size=image_size(d), cache_dir=d.cache_dir)
    cache_seconds = time.perf_counter() - started
    workers = loader_workers(d, cached=cache is not None)
    cores = len(os.sched_getaffinity(0))
    threads = training_threads(workers, cfg.training.cpu_threads) or torch.get_num_threads()
    torch.set_num_threads(threads)  # as `polyhead train` sizes the pool
    loader = train_loader(splits.train, d, seed=cfg.training.seed, cache=cache)

    # The model-only bound: the same batches, already in memory (augmented in the step, as end-to-end).
    cached, it = [], iter(loader)
    for _ in range(args.batches):
        cached.append(next(it))
    del it
    in_memory = torch.utils.data.DataLoader(cached, batch_size=None)  # yields the stored batches as they are

    e2e, mem, mem_all = [], [], []
    for _ in range(args.repeats):
        e2e.append(run(cfg, tasks, args.batches, args.warmup, loader))
        mem.append(run(cfg, tasks, args.batches, args.warmup, in_memory))
        if threads != cores:  # with no loader to feed, the model may have every core
            torch.set_num_threads(cores)
            mem_all.append(run(cfg, tasks, args.batches, args.warmup, in_memory))
            torch.set_num_threads(threads)
    mem_all = mem_all or mem  # end-to-end already runs on every core: the same measurement
    med = {k: statistics.median(v) for k, v in (("e2e", e2e), ("mem", mem), ("all", mem_all))}
    result = {
        "end_to_end_images_per_s": med["e2e"],
        "model_only_images_per_s": med["mem"],
        "model_only_all_cores_images_per_s": med["all"],
        "ratio_all_cores": med["e2e"] / med["all"],
        "ratio_same_threads": med["e2e"] / med["mem"],
        "ratio": med["e2e"] / med["mem"], "ratio_vs_all_cores": med["e2e"] / med["all"],  # earlier names
        "runs": {"end_to_end": e2e, "model_only": mem, "model_only_all_cores": mem_all},
        "cache": cache.where if cache is not None else "off", "cache_seconds": cache_seconds,
        "batch_size": d.batch_size, "num_workers": workers, "batches": args.batches,
        "warmup": args.warmup, "torch_threads": threads, "cores": cores,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
        "torch": torch.__version__, "overrides": args.overrides,
    }

    def show(label, runs, value):
        print(f"{label:<28}: {value:8.0f} images/s   (runs: {', '.join(f'{x:.0f}' for x in runs)})")

    print(f"image cache: {result['cache']} ({cache_seconds:.1f} s to build or open)")
    show(f"end-to-end ({threads} thread(s))", e2e, med["e2e"])
    show(f"model-only ({threads} thread(s))", mem, med["mem"])
    show(f"model-only ({cores} threads)", mem_all, med["all"])
    print(f"ratio end-to-end / model-only: {result['ratio_same_threads']:.2f} at equal threads, "
          f"{result['ratio_all_cores']:.2f} against all cores "
          f"(batch {d.batch_size}, {workers} loader worker(s), {cores} cores)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
