"""`training.devices=N` on one machine: start N training processes and wait for them.

Each process is `python -m polyhead.engine.worker CONFIG.yaml ...` with torchrun's environment
(RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR=127.0.0.1, a free
MASTER_PORT, TORCHELASTIC_RUN_ID), so a worker started here and one started by torchrun take the
same path (polyhead.engine.distributed). The config travels as the resolved YAML the run folder
would hold; rank 0 writes the run folder's path into a result file.

Rank 0 prints the training; the others are quiet. When a process fails the others are stopped
(they would wait for it forever); a user's mistake comes back as that process's one-line
PolyheadError (the worker leaves it beside the result file), anything else as WorkersFailed
after the process's own traceback.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from polyhead.config.loading import to_yaml
from polyhead.config.schema import Config
from polyhead.errors import PolyheadError


class WorkersFailed(PolyheadError):
    """A training process stopped with an error (already reported by that process)."""

    def __init__(self, code: int, rank: int):
        super().__init__(f"training process {rank} stopped (exit code {code})")
        self.code, self.rank = code, rank


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_env(rank: int, size: int, port: int, run_id: str) -> dict[str, str]:
    # c10's warning-level log repeats DDP's find_unused_parameters note on every process each run: polyhead
    # needs the flag (a head without a labelled row in a step, a frozen backbone), so it is no news
    quiet = {} if "TORCH_CPP_LOG_LEVEL" in os.environ else {"TORCH_CPP_LOG_LEVEL": "ERROR"}
    return {**os.environ, **quiet, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(size),
            "LOCAL_WORLD_SIZE": str(size), "GROUP_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
            "TORCHELASTIC_RUN_ID": run_id}


def run_workers(cfg: Config, nproc: int, *, name_hint: str, resume: str | Path | None,
                poll_s: float = 0.2) -> Path:
    """Train `cfg` on `nproc` local processes; returns the run folder rank 0 wrote."""
    with tempfile.TemporaryDirectory(prefix="polyhead-ddp-") as tmp:
        config, result = Path(tmp) / "config.yaml", Path(tmp) / "result.json"
        config.write_text(to_yaml(cfg))
        cmd = [sys.executable, "-m", "polyhead.engine.worker", str(config), "--name-hint", name_hint,
               "--result", str(result)]
        if resume is not None:
            cmd += ["--resume", str(resume)]
        port, run_id = free_port(), f"polyhead-{os.getpid()}-{time.time_ns()}"
        procs = [subprocess.Popen(cmd, env=worker_env(r, nproc, port, run_id)) for r in range(nproc)]
        try:
            _wait(procs, poll_s, result)
        except BaseException:
            stop_processes(procs)
            raise
        if not result.is_file():
            raise PolyheadError("the training processes ended without a run folder (rank 0 wrote no result)")
        return Path(json.loads(result.read_text())["run_dir"])


def _wait(procs: list[subprocess.Popen], poll_s: float, result: Path, settle_s: float = 2.0) -> None:
    """Until every process has ended. When one fails: a PolyheadError with the line of the process
    that met the cause, or WorkersFailed. Processes that stopped because another did (a peer's
    non-finite loss) leave a `.peer` line; the others get `settle_s` to leave theirs first."""
    while True:
        codes = [p.poll() for p in procs]
        failed = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
        if failed:
            deadline = time.monotonic() + settle_s
            while time.monotonic() < deadline and any(p.poll() is None for p in procs):
                time.sleep(poll_s)
            _raise_first_cause(procs, result, failed[0])
        if all(c == 0 for c in codes):
            return
        time.sleep(poll_s)


def _raise_first_cause(procs: list[subprocess.Popen], result: Path, first: tuple[int, int]) -> None:
    for rank in range(len(procs)):  # a cause, in rank order
        message = Path(f"{result}.error-{rank}")
        if message.is_file():
            raise PolyheadError(message.read_text())
    for rank in range(len(procs)):  # else a process that stopped because of another's
        message = Path(f"{result}.error-{rank}.peer")
        if message.is_file():
            raise PolyheadError(message.read_text())
    raise WorkersFailed(first[1], first[0])


def stop_processes(procs: list[subprocess.Popen], grace_s: float = 10.0) -> None:
    """SIGTERM the processes still running; SIGKILL those still there after `grace_s`."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
