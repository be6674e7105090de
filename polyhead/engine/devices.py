"""One vocabulary for where a model runs, checked in one place, before any work.

    auto       the CUDA GPU when there is one (training: Lightning's choice, which includes
               Apple's MPS), otherwise the CPU
    cpu        the CPU
    cuda       the first CUDA GPU; `gpu` means the same
    cuda:N     CUDA GPU number N (predict and evaluate `--device`; for training use
               training.accelerator=cuda with training.devices=[N])
    mps        the Apple-silicon GPU

Training runs on one device, or with training.devices=N on N processes (data-parallel, see
polyhead.engine.distributed), on every machine of training.num_nodes.
"""

from __future__ import annotations

import os

import torch

from polyhead.errors import ConfigError, one_of

ACCELERATORS = ("auto", "cpu", "cuda", "gpu", "mps")
STRATEGIES = ("auto", "ddp")  # ddp: one model copy per process, gradients averaged (auto: ddp for N > 1)


def _kind(value: str) -> str:
    return "cuda" if value == "gpu" else value


def _missing(kind: str) -> str | None:
    """Why `kind` cannot be used on this machine, or None when it can."""
    if kind == "cuda" and not torch.cuda.is_available():
        return "no GPU found"
    if kind == "mps" and not torch.backends.mps.is_available():
        return "no Apple GPU (MPS) found"
    return None


def _require(kind: str, where: str) -> None:
    reason = _missing(kind)
    if reason is not None:
        raise ConfigError(f"{where}: {reason}; use cpu or auto")


def check_training_devices(accelerator: str, devices, num_nodes: int = 1, strategy: str = "auto") -> None:
    """Names only (no hardware look-up): training.accelerator is known, training.devices is auto, a
    count or a list of GPU numbers, training.num_nodes a count and training.strategy known."""
    one_of("training.accelerator", accelerator, ACCELERATORS)
    one_of("training.strategy", strategy, STRATEGIES)
    listed = isinstance(devices, (list, tuple))
    ok = devices == "auto" or (isinstance(devices, int) and not isinstance(devices, bool) and devices >= 1) or (
        listed and len(devices) >= 1 and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices)
        and len(set(devices)) == len(devices))
    if not ok:
        raise ConfigError(f"training.devices={devices!r}: use auto (one device), a count N >= 1 (N processes: GPUs, "
                          f"or CPU processes with training.accelerator=cpu), or a list of distinct GPU numbers [0, 2]")
    if listed and _kind(accelerator) not in ("cuda", "auto"):
        raise ConfigError(f"training.devices={list(devices)} picks GPUs but training.accelerator={accelerator}; "
                          f"use training.accelerator=cuda, or a count: training.devices=N")
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
        raise ConfigError(f"training.num_nodes={num_nodes!r}: use a count >= 1 (machines, each running "
                          f"training.devices processes)")


def process_count(devices) -> int:
    """Training processes per machine that training.devices asks for."""
    if isinstance(devices, (list, tuple)):
        return len(devices)
    return 1 if devices == "auto" else int(devices)


def training_devices(accelerator: str, devices) -> tuple[str, int | list[int]]:
    """(accelerator, devices) for Lightning, after checking that this machine has them. "auto"
    devices means one device (Lightning's own "auto" would take every GPU); N CPU processes need
    N cores (more would only take turns on them)."""
    check_training_devices(accelerator, devices)
    kind = _kind(accelerator)
    if isinstance(devices, (list, tuple)):
        for d in devices:
            resolve_device(f"cuda:{d}", f"training.devices={list(devices)}")
        return "cuda", [int(d) for d in devices]
    _require(kind, f"training.accelerator={accelerator}")
    n = process_count(devices)
    if n == 1:
        return kind, 1
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda" and n > torch.cuda.device_count():
        raise ConfigError(f"training.devices={n}: this machine has {torch.cuda.device_count()} GPU(s); use at most "
                          f"that many, or several machines (training.num_nodes, see docs/scaling.md)")
    cores = os.cpu_count() or 1
    if kind == "cpu" and n > cores:
        raise ConfigError(f"training.devices={n} CPU processes: this machine has {cores} core(s); use at most {cores}")
    if kind == "mps":
        raise ConfigError(f"training.devices={n}: an Apple GPU (mps) is one device; use training.devices=1")
    return kind, n


def resolve_device(device: str = "auto", where: str | None = None) -> torch.device:
    """A `--device` value -> torch.device; one line when this machine does not have it."""
    where = where or f"--device {device}"
    kind, _, index = str(device).partition(":")
    if kind not in ACCELERATORS or (index and (kind not in ("cuda", "gpu") or not index.isdigit())):
        raise ConfigError(f"{where}: unknown device; use one of auto, cpu, cuda (or gpu), cuda:N, mps")
    kind = _kind(kind)
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _require(kind, where)
    if index and int(index) >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ConfigError(f"{where}: there is no GPU {index} ({count} GPU(s) found: "
                          f"{', '.join(f'cuda:{i}' for i in range(count))}); use cpu or auto")
    return torch.device(f"{kind}:{index}" if index else kind)
