"""Mixed precision: the one place that chooses between bfloat16 and float16.

    training   `resolve_precision(training.precision, training.accelerator)` -> Lightning's precision
    inference  `autocast(device, precision)`: evaluation, prediction, `serve`'s torch runner and
               `compare`'s timing, on CUDA only (the CPU runs float32)
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch


def half_dtype() -> torch.dtype:
    """The half type of mixed precision on this GPU: bfloat16 where supported (float32's range, no
    loss scaling), else float16."""
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def resolve_precision(setting: str, accelerator: str) -> str:
    """training.precision (auto | 32 | 16-mixed | bf16-mixed) -> Lightning's precision string.
    "auto": mixed precision in `half_dtype` when training on a CUDA GPU, else "32-true"."""
    if setting != "auto":
        return "32-true" if setting == "32" else setting
    if torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda"):
        return "bf16-mixed" if half_dtype() is torch.bfloat16 else "16-mixed"
    return "32-true"


def autocast(device: torch.device, precision: str = "auto") -> AbstractContextManager:
    """The context a forward pass for inference runs in on `device`: on CUDA, autocast to the
    half type training would use with `precision` (training.precision; "auto" for a saved model,
    whose run may have been trained anywhere); elsewhere, or with "32", nothing."""
    if device.type != "cuda":
        return nullcontext()
    resolved = resolve_precision(str(precision), "cuda")
    if resolved == "32-true":
        return nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if resolved.startswith("bf16") else torch.float16)
