"""One vocabulary for where a model runs, checked in one place, before any work.

    auto       the CUDA GPU when there is one (training: Lightning's choice, which includes
               Apple's MPS), otherwise the CPU
    cpu        the CPU
    cuda       the first CUDA GPU; `gpu` means the same
    cuda:N     CUDA GPU number N (predict and evaluate `--device`; for training use
               training.accelerator=cuda with training.devices=[N])
    mps        the Apple-silicon GPU

Training runs on one device: multi-device training (DDP) is not supported yet, because
validation metrics would be computed per process and never gathered.
"""

from __future__ import annotations

import torch

from polyhead.errors import ConfigError, one_of

ACCELERATORS = ("auto", "cpu", "cuda", "gpu", "mps")


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


def check_training_devices(accelerator: str, devices) -> None:
    """Names only (no hardware look-up): training.accelerator is known and training.devices
    names one device."""
    one_of("training.accelerator", accelerator, ACCELERATORS)
    single = devices == "auto" or devices == 1 or (
        isinstance(devices, (list, tuple)) and len(devices) == 1 and isinstance(devices[0], int) and devices[0] >= 0)
    if isinstance(devices, bool) or not single:
        raise ConfigError(f"training.devices={devices!r}: multi-device training is not supported yet (single "
                          f"device only); use training.devices=1, or [N] to pick GPU N")
    if isinstance(devices, (list, tuple)) and _kind(accelerator) not in ("cuda", "auto"):
        raise ConfigError(f"training.devices={list(devices)} picks a GPU but training.accelerator={accelerator}; "
                          f"use training.accelerator=cuda, or training.devices=1")


def training_devices(accelerator: str, devices) -> tuple[str, int | list[int]]:
    """(accelerator, devices) for Lightning, after checking that this machine has them. "auto"
    devices means one device (Lightning's own "auto" would take every GPU)."""
    check_training_devices(accelerator, devices)
    kind = _kind(accelerator)
    if isinstance(devices, (list, tuple)):
        kind = "cuda"
        resolve_device(f"cuda:{devices[0]}", f"training.devices={list(devices)}")
        return kind, [int(devices[0])]
    _require(kind, f"training.accelerator={accelerator}")
    return kind, 1


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
