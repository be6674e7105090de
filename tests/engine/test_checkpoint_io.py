"""Atomic checkpoint writes, a full disk, and loads that never run pickled code."""

from __future__ import annotations

import errno
import pathlib
import shutil

import pandas as pd
import pytest
import torch

from polyhead.cli.main import main
from polyhead.engine.checkpoint_io import TEMP_MARK, AtomicCheckpointIO, load_checkpoint_file
from polyhead.engine.fit import _restore_best
from polyhead.errors import PolyheadError
from polyhead.model.bundle import load_bundle


def _argv(dataset, *extra):
    return ["train", str(dataset / "config.yaml"), f"output_dir={dataset / 'runs'}", "run_name=r",
            "tracking.enabled=false", "report.enabled=false", *extra]


def test_atomic_write_replaces_and_cleans_stale_temp_files(tmp_path):
    io = AtomicCheckpointIO(tmp_path)
    target = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"epoch": 0, "w": torch.ones(3)}, target)
    io.save_checkpoint({"epoch": 1, "w": torch.zeros(3)}, target)
    assert load_checkpoint_file(target)["epoch"] == 1
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]  # no temp file left
    stale = target.parent / f"last.ckpt{TEMP_MARK}12345"
    stale.write_bytes(b"half a checkpoint")
    AtomicCheckpointIO(tmp_path)  # a new Trainer (resume) removes what a killed run left
    assert not stale.exists() and target.exists()
    stale.write_bytes(b"half a checkpoint")  # a torn file is refused with a message, not a traceback
    with pytest.raises(PolyheadError, match="is not a readable checkpoint"):
        load_checkpoint_file(stale)


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(dataset, monkeypatch, capsys):
    original, last_writes = AtomicCheckpointIO._write, [0]

    def write(checkpoint, tmp):
        if tmp.name.startswith("last.ckpt"):
            last_writes[0] += 1
            if last_writes[0] == 2:  # epoch 1's last.ckpt: part written, then the disk is full
                tmp.write_bytes(b"partial")
                raise OSError(errno.ENOSPC, "No space left on device")
        original(checkpoint, tmp)

    monkeypatch.setattr(AtomicCheckpointIO, "_write", staticmethod(write))
    assert main(_argv(dataset, "training.epochs=3")) == 2
    err = capsys.readouterr().err.strip()
    run = dataset / "runs" / "r"
    last = run / "checkpoints" / "last.ckpt"
    assert len(err.splitlines()) == 1
    assert f"no space left on the device writing '{last}'" in err
    assert f"the previous checkpoint '{last}' is intact" in err and f"polyhead train --resume {run}" in err
    assert load_checkpoint_file(last)["epoch"] == 0
    assert not any(TEMP_MARK in p.name for p in last.parent.iterdir())

    monkeypatch.setattr(AtomicCheckpointIO, "_write", staticmethod(original))  # space freed
    assert main(["train", "--resume", str(run)]) == 0
    assert pd.read_csv(run / "history.csv")["epoch"].tolist() == [1, 2, 3]  # 1-based, as users count
    assert (run / "metrics.json").exists()


def test_disk_full_writing_the_bundle(dataset, monkeypatch, capsys):
    import polyhead.model.bundle as bundle

    original = bundle.save_file

    def full(*args, **kwargs):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(bundle, "save_file", full)
    assert main(_argv(dataset, "training.epochs=1")) == 2
    run = dataset / "runs" / "r"
    err = capsys.readouterr().err
    assert f"no space left on the device writing '{run / 'model'}'" in err and "--resume" in err
    monkeypatch.setattr(bundle, "save_file", original)
    assert main(["train", "--resume", str(run)]) == 0  # training is done: writes the bundle, evaluates
    assert load_bundle(run).tasks.keys() == {"quadrant", "red", "tags"}


class _Touch:
    """Unpickling this runs pathlib.Path.touch(marker): what a malicious checkpoint could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _crafted(path, marker):
    torch.save({"state_dict": {"x": torch.zeros(1)}, "epoch": 0, "payload": _Touch(marker)}, path)


def test_crafted_pickles_are_refused_without_running(dataset, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    probe = tmp_path / "probe.ckpt"
    _crafted(probe, marker)
    torch.load(probe, weights_only=False)  # the crafted file really runs code when unpickled
    assert marker.exists()
    marker.unlink()

    assert main(_argv(dataset, "training.epochs=1")) == 0
    run = dataset / "runs" / "r"
    capsys.readouterr()

    _crafted(run / "checkpoints" / "last.ckpt", marker)  # resume
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"'{run / 'checkpoints' / 'last.ckpt'}' is not a plain checkpoint: it contains pickled objects" in err

    _crafted(run / "checkpoints" / "best.ckpt", marker)  # restoring the best checkpoint
    with pytest.raises(PolyheadError, match="best.ckpt' is not a plain checkpoint"):
        _restore_best(None, run, None)

    weights = tmp_path / "evil.pth"  # model.weights
    _crafted(weights, marker)
    assert main(_argv(dataset, "run_name=w", f"model.weights={weights}")) == 2
    assert "is not a plain state dict" in capsys.readouterr().err

    for part in ("backbone.safetensors", "heads/red.safetensors"):  # a bundle's weights
        bundle_dir = tmp_path / f"bundle-{part.replace('/', '-')}"
        shutil.copytree(run / "model", bundle_dir)
        _crafted(bundle_dir / part, marker)
        with pytest.raises(PolyheadError, match="as safetensors"):
            load_bundle(bundle_dir)
        assert main(["evaluate", str(bundle_dir), "--table", str(dataset / "labels.csv")]) == 2
        assert main(["predict", str(bundle_dir), "--images", str(dataset / "images"),
                     "--out", str(tmp_path / "p.csv")]) == 2
        assert "as safetensors" in capsys.readouterr().err
    assert not marker.exists()  # nothing was ever unpickled with code
