"""How many threads torch's CPU pool gets. Imports no torch: the CLI sets the default before
torch loads (OpenMP reads OMP_NUM_THREADS once); training resizes the pool from its workload."""

from __future__ import annotations

import os

_MARK = "POLYHEAD_DEFAULT_OMP_NUM_THREADS"  # the OMP_NUM_THREADS value polyhead set itself (not the user)


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_cpu_threads() -> None:
    """Before torch is imported: leave a core for the DataLoader workers, unless the user set
    OMP_NUM_THREADS. Training then sizes the pool from its workload (`training_threads`): every
    core when the images are cached and no worker decodes."""
    if "OMP_NUM_THREADS" not in os.environ:
        value = str(max(1, available_cores() - 1))
        os.environ["OMP_NUM_THREADS"] = os.environ[_MARK] = value


def user_chose_threads() -> bool:
    """OMP_NUM_THREADS is set, and not by `default_cpu_threads`."""
    value = os.environ.get("OMP_NUM_THREADS")
    return value is not None and os.environ.get(_MARK) != value


def training_threads(workers: int, cpu_threads: int | None = None) -> int | None:
    """torch threads for a training step that shares the CPU with `workers` loader processes:
    `cpu_threads` (training.cpu_threads) when given, None (leave the pool alone) when the user set
    OMP_NUM_THREADS, else the cores the workers leave (all of them without workers)."""
    if cpu_threads is not None:
        return cpu_threads
    if user_chose_threads():
        return None
    return max(1, available_cores() - workers)
