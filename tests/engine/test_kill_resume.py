"""SIGKILL a training run at random points (mid-epoch, mid-validation, mid-checkpoint-write, and
from outside), resume it each time, and get exactly the uninterrupted run's metrics and history.

The kill points are drawn from an RNG seeded with a fixed seed (DEFAULT_SEED), so every run of the
test kills at the same points; POLYHEAD_KILL_SEED=N overrides it (to replay a printed seed or try others)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from polyhead.engine.checkpoint_io import TEMP_MARK, load_checkpoint_file

REPO = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).with_name("kill_harness.py")
DEFAULT_SEED = 20261122
SETTINGS = ["tracking.enabled=false", "report.enabled=false", "data.augment.hflip=true", "model.head.dropout=0.3",
            "training.cpu_threads=1", "training.epochs=4", "data.test_fraction=0.1"]


def _command(mode: str, seed: int, args: list[str]) -> list[str]:
    return [sys.executable, str(HARNESS), mode, str(seed), "--", *args]


def _run(mode, seed, args, env):
    proc = subprocess.run(_command(mode, seed, args), env=env, capture_output=True, text=True, timeout=120)
    print(proc.stdout.splitlines()[0] if proc.stdout else "", "-> rc", proc.returncode)
    return proc


def test_killed_and_resumed_run_equals_uninterrupted(dataset):
    seed = int(os.environ.get("POLYHEAD_KILL_SEED", DEFAULT_SEED))
    print(f"POLYHEAD_KILL_SEED={seed}")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    fresh = lambda name: ["train", str(dataset / "config.yaml"), f"output_dir={dataset / 'runs'}",  # noqa: E731
                          f"run_name={name}", *SETTINGS]
    cut = dataset / "runs" / "cut"
    resume = ["train", "--resume", str(cut)]
    baseline = subprocess.Popen(_command("none", seed, fresh("full")), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

    # (a) during an epoch, (b) during validation, (c) during a checkpoint write
    for i, (mode, args) in enumerate([("step", fresh("cut")), ("val", resume), ("ckpt", resume)]):
        proc = _run(mode, seed + i, args, env)
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
        state = load_checkpoint_file(cut / "checkpoints" / "last.ckpt")  # never torn
        assert 0 <= state["epoch"] < 3
    assert any(TEMP_MARK in p.name for p in (cut / "checkpoints").iterdir())  # the cut temp file of (c)

    # (d) an external SIGKILL a random delay after training resumed (it may also finish first)
    rng = random.Random(seed)
    proc = subprocess.Popen(_command("none", seed, resume), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        if line.startswith("resuming from"):
            break
    delay = rng.uniform(0.0, 1.5)
    print(f"external kill {delay:.2f} s after resuming")
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    print(f"external kill -> rc {proc.wait(timeout=60)}")  # -9, or 0 when it finished first

    for _ in range(3):  # resume until the run completes
        if (cut / "metrics.json").exists() and proc.returncode == 0:
            break
        proc = _run("none", seed, resume, env)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert baseline.wait(timeout=120) == 0, baseline.stderr.read()[-2000:]

    full = dataset / "runs" / "full"
    full_metrics, cut_metrics = (json.loads((r / "metrics.json").read_text()) for r in (full, cut))
    for split in ("val", "test"):
        assert cut_metrics[split] == full_metrics[split]
    history = pd.read_csv(full / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    pd.testing.assert_frame_equal(pd.read_csv(cut / "history.csv"), history, check_exact=True)
    assert not any(TEMP_MARK in p.name for p in (cut / "checkpoints").iterdir())  # cleaned on resume
