"""Issue 13: training on several processes (2 gloo processes on the CPU) is the single-process run.

Two processes with data.batch_size=B each see, step by step, the rows one process sees with 2B
(SourceSampler's interleaved shards), so without BatchNorm or dropout the two runs must end with
the same weights, the same validation metrics per epoch and the same test metrics, for the plain
sum, a stateful method (FAMO) and a gradient method, with a task labelled on so few rows that a
process often has none of it in its batch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import make_dataset, write_config
from polyhead.cli.main import main
from polyhead.model.bundle import load_bundle

REPO = Path(__file__).resolve().parents[2]
SAME = ["tracking.enabled=false", "report.enabled=false", "model.small_cnn.batch_norm=false",
        "training.accelerator=cpu", "training.cpu_threads=1", "data.test_fraction=0.1"]


@pytest.fixture(scope="module")
def sparse(tmp_path_factory):
    """164 images (odd validation and training sizes: uneven shards, a padded epoch); `red` labelled
    on one row in eight, so a process's batch of 8 often has no `red` row while the other's has."""
    root = tmp_path_factory.mktemp("ddp")
    df = make_dataset(root, n=164, missing=0.1)
    df.loc[df.index % 8 != 0, "red"] = None
    df.to_csv(root / "labels.csv", index=False)
    write_config(root / "config.yaml", "labels.csv", epochs=2)
    return root


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _train(root: Path, name: str, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "polyhead.cli.main", "train", str(root / "config.yaml"),
            f"output_dir={root / 'runs'}", f"run_name={name}", *SAME, *overrides]
    proc = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in load_bundle(run / "model").model.state_dict().items()}


def _assert_same_run(a: Path, b: Path, atol: float = 2e-5) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=atol, rtol=1e-4, msg=key)
    ha, hb = pd.read_csv(a / "history.csv"), pd.read_csv(b / "history.csv")
    shared = [c for c in ha.columns if c.startswith(("val/", "train/", "weights/")) and c in hb.columns]
    assert any(c.startswith("val/") for c in shared)
    pd.testing.assert_frame_equal(ha[shared], hb[shared], atol=1e-4, rtol=1e-4)
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (a, b))
    for split in ("val", "test"):
        for task, metrics in ma[split].items():
            assert mb[split][task]["n"] == metrics["n"]  # every row once
            for key, value in metrics.items():
                if isinstance(value, float):
                    assert mb[split][task][key] == pytest.approx(value, abs=1e-4), (split, task, key)


def _train_here(root: Path, name: str, *overrides: str) -> None:
    """The one-process run, in this process."""
    assert main(["train", str(root / "config.yaml"), f"output_dir={root / 'runs'}", f"run_name={name}", *SAME,
                 *overrides]) == 0


@pytest.mark.parametrize("method, extra", [
    ("equal", []),
    ("famo", []),  # state updated from the losses after each step
    ("dwa", ["training.epochs=3"]),  # state from the epoch's mean losses (weights move from epoch 3)
    ("gradnorm", []),  # learnt weights from per-task gradient norms
    ("upgrad", []),  # gradient method on the features: the Gramian is summed over the processes
    ("mgda", ["training.weighting_args.mode=parameters"]),  # on the parameters: the Jacobian is averaged
])
def test_two_processes_train_as_one_with_twice_the_batch(sparse, method, extra):
    _train_here(sparse, f"one-{method}", "data.batch_size=16", f"training.weighting={method}", *extra)
    two = _train(sparse, f"two-{method}", "data.batch_size=8", "training.devices=2",
                 f"training.weighting={method}", *extra)
    assert "training on 2 CPU processes" in two.stdout
    runs = sparse / "runs"
    data = json.loads((runs / f"two-{method}" / "data.json").read_text())
    assert data["val"]["rows"] % 2 == 1  # uneven validation shards
    _assert_same_run(runs / f"one-{method}", runs / f"two-{method}")
    assert not (runs / f"two-{method}-2").exists()  # one run folder, written by rank 0


KILLER = """
import os, signal
if os.environ.get("POLYHEAD_TEST_KILL_AT") and os.environ.get("RANK") == "1":
    from polyhead.engine.module import MultiTaskModule
    _step = MultiTaskModule.training_step
    def training_step(self, batch, batch_idx):
        if self.global_step == int(os.environ["POLYHEAD_TEST_KILL_AT"]):
            os.killpg(os.getpgid(0), signal.SIGKILL)  # every training process and the launcher, mid-epoch
        return _step(self, batch, batch_idx)
    MultiTaskModule.training_step = training_step
"""


def test_killed_two_process_run_resumes_exactly(sparse, tmp_path):
    """SIGKILL both processes (and their launcher) mid-epoch 3; `--resume` on two processes ends with
    the uninterrupted two-process run's weights, history and metrics, bit for bit."""
    (tmp_path / "sitecustomize.py").write_text(KILLER)
    common = ["data.batch_size=8", "training.devices=2", "training.epochs=4", "data.augment.hflip=true",
              "model.head.dropout=0.3", "training.weighting=famo"]
    _train(sparse, "full", *common)
    argv = [sys.executable, "-m", "polyhead.cli.main", "train", str(sparse / "config.yaml"),
            f"output_dir={sparse / 'runs'}", "run_name=cut", *SAME, *common]
    env = {**_env(), "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}", "POLYHEAD_TEST_KILL_AT": "19"}  # 8 steps an epoch
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, start_new_session=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    cut = sparse / "runs" / "cut"
    assert len(pd.read_csv(cut / "history.csv")) == 2 and not (cut / "metrics.json").exists()
    resumed = subprocess.run([sys.executable, "-m", "polyhead.cli.main", "train", "--resume", str(cut)],
                             env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    full = sparse / "runs" / "full"
    for key, value in _weights(full).items():
        assert torch.equal(value, _weights(cut)[key]), key
    pd.testing.assert_frame_equal(pd.read_csv(cut / "history.csv"), pd.read_csv(full / "history.csv"),
                                  check_exact=True)
    assert json.loads((cut / "metrics.json").read_text())["test"] == json.loads((full / "metrics.json").read_text())["test"]


def test_torchrun_two_nodes_of_one_process(sparse):
    """Two `torchrun` launches on 127.0.0.1, one process each (--nnodes 2): the same run as
    training.devices=2 on one machine."""
    ref = sparse / "runs" / "two-equal"
    if not ref.exists():
        _train(sparse, "two-equal", "data.batch_size=8", "training.devices=2")
    from polyhead.engine.launch import free_port

    port = free_port()
    args = ["train", str(sparse / "config.yaml"), f"output_dir={sparse / 'runs'}", "run_name=nodes", *SAME,
            "data.batch_size=8", "training.devices=1", "training.num_nodes=2"]
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                               "--node-rank", str(rank), "--master-addr", "127.0.0.1", "--master-port", str(port),
                               "-m", "polyhead.cli.main", *args],
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    outs = [p.communicate(timeout=300) for p in nodes]
    for p, (_, err) in zip(nodes, outs):
        assert p.returncode == 0, err[-3000:]
    _assert_same_run(ref, sparse / "runs" / "nodes", atol=1e-6)


def test_launcher_mismatch_and_nodes_without_launcher_are_one_line(sparse, capsys):
    assert main(["train", str(sparse / "config.yaml"), "training.num_nodes=2", "training.accelerator=cpu",
                 "tracking.enabled=false"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "training.num_nodes=2: start polyhead on every machine" in err


def test_a_users_mistake_in_a_worker_is_one_line(sparse, tmp_path):
    """A bad image found by the workers (after the launch): one line, from the first process that met it."""
    df = pd.read_csv(sparse / "labels.csv")
    df.loc[5, "image"] = "images/missing.png"
    df.to_csv(tmp_path / "labels.csv", index=False)
    (tmp_path / "images").symlink_to(sparse / "images")
    write_config(tmp_path / "config.yaml", "labels.csv", epochs=1)
    proc = _train(tmp_path, "bad", "training.devices=2", check=False)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "missing.png" in lines[0] and "Traceback" not in proc.stderr, proc.stderr


def test_shards_cover_every_row_once():
    from polyhead.data.sampling import ShardSampler, SourceSampler

    for n, w in [(33, 2), (10, 3), (2, 4)]:
        rows = [i for r in range(w) for i in ShardSampler(n, rank=r, replicas=w)]
        assert rows == list(range(n))
    sources = np.zeros(131, dtype=np.int64)
    whole = SourceSampler(sources, seed=3).indices(2)
    shards = []
    for rank in (0, 1):
        sampler = SourceSampler(sources, seed=3, rank=rank, replicas=2)
        sampler.set_epoch(2)
        shards.append(list(sampler))
    assert len(shards[0]) == len(shards[1]) == 66
    interleaved = [p for pair in zip(*shards) for p in pair]
    assert interleaved[:131] == whole.tolist() and interleaved[131] == whole[0]  # padded by the first draw


NAN_ON_RANK1 = """
import os
if os.environ.get("RANK") == "1":
    import torch
    from polyhead.engine import module
    _losses = module.task_losses
    def task_losses(tasks, logits, batch):
        out = _losses(tasks, logits, batch)
        if torch.is_grad_enabled() and "quadrant" in out:
            out["quadrant"] = out["quadrant"] * float("nan")
        return out
    module.task_losses = task_losses
"""


def test_non_finite_loss_on_one_process_names_its_rows(sparse, tmp_path):
    """Only process 1 meets a NaN loss: every process stops at that step, and the one line is process 1's
    (task, step, rows), not the other's 'another process stopped'."""
    (tmp_path / "sitecustomize.py").write_text(NAN_ON_RANK1)
    argv = [sys.executable, "-m", "polyhead.cli.main", "train", str(sparse / "config.yaml"),
            f"output_dir={sparse / 'runs'}", "run_name=nan", *SAME, "data.batch_size=8", "training.devices=2"]
    env = {**_env(), "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "non-finite training loss for task(s) 'quadrant' (NaN) at step 0 (epoch 1) on a batch of" in lines[0]
