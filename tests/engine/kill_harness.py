"""Runs `polyhead ...` and SIGKILLs itself at a seeded random point (used by test_kill_resume.py).

    python kill_harness.py MODE SEED -- polyhead-args...

MODE: step (the Nth training step of this process), val (the Nth validation batch),
ckpt (the Nth checkpoint write: the temp file is cut to half its size, the rename never
happens), none (no kill). The point is drawn from random.Random(SEED) and printed first, so a
failure can be replayed.
"""

from __future__ import annotations

import os
import random
import signal
import sys
from pathlib import Path

RANGES = {"step": (8, 14), "val": (1, 2), "ckpt": (1, 2)}


def _kill() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _count_then_kill(owner, name: str, at: int, before=None) -> None:
    original = getattr(owner, name)
    calls = [0]

    def wrapped(*args, **kwargs):
        calls[0] += 1
        if calls[0] == at:
            if before is not None:
                before(*args, **kwargs)
            _kill()
        return original(*args, **kwargs)

    setattr(owner, name, staticmethod(wrapped) if isinstance(owner.__dict__[name], staticmethod) else wrapped)


def _cut_temp_file(tmp: Path, path: Path) -> None:
    size = Path(tmp).stat().st_size
    with open(tmp, "r+b") as fh:  # a partly written checkpoint, as if killed mid-write
        fh.truncate(size // 2)


def main() -> int:
    mode, seed = sys.argv[1], int(sys.argv[2])
    args = sys.argv[sys.argv.index("--") + 1:]
    at = random.Random(seed).randint(*RANGES[mode]) if mode in RANGES else 0
    print(f"kill_harness: mode={mode} seed={seed} at={at}", flush=True)
    from polyhead.engine.checkpoint_io import AtomicCheckpointIO
    from polyhead.engine.module import MultiTaskModule

    if mode == "step":
        _count_then_kill(MultiTaskModule, "training_step", at)
    elif mode == "val":
        _count_then_kill(MultiTaskModule, "validation_step", at)
    elif mode == "ckpt":
        _count_then_kill(AtomicCheckpointIO, "_commit", at, before=_cut_temp_file)
    from polyhead.cli.main import main as polyhead

    return polyhead(args)


if __name__ == "__main__":
    sys.exit(main())
