"""Learning-rate schedule shapes, as multipliers of each parameter group's base lr per optimiser step.

    cosine    optional linear warm-up over `warmup` steps, then half a cosine from 1 down to `floor`
    onecycle  Smith's one-cycle (as torch's OneCycleLR, without momentum cycling): half a cosine
              from 1/div_factor up to 1 over the first pct_start of the steps, then half a cosine
              down to 1/(div_factor * final_div_factor) at the last step

Both are pure functions of the step index, so a resumed run continues the same curve, and
steps past `total` (an estimate when batches are limited or tables are sampled) hold the end value.
"""

from __future__ import annotations

import math


def _cos_between(start: float, end: float, progress: float) -> float:
    """`start` at progress 0, `end` at progress 1, along half a cosine."""
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))


def cosine_factor(step: int, *, total: int, warmup: int = 0, floor: float = 0.0) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return _cos_between(1.0, floor, (step - warmup) / max(1, total - warmup))


def onecycle_factor(step: int, *, total: int, pct_start: float = 0.3, div_factor: float = 25.0,
                    final_div_factor: float = 1e4) -> float:
    start, end = 1.0 / div_factor, 1.0 / (div_factor * final_div_factor)
    # torch's OneCycleLR: the peak is at step pct_start * total - 1, the end at step total - 1
    peak = float(pct_start * total) - 1
    last = total - 1
    if step <= peak:
        return _cos_between(start, 1.0, step / peak if peak > 0 else 1.0)
    return _cos_between(1.0, end, (step - peak) / max(1e-9, last - peak))
