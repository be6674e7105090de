"""Checks before any work: the monitored metric, the devices, and one message per mistake
whichever entry point meets it first."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from polyhead.cli.main import main
from polyhead.config.loading import load_config
from polyhead.engine.checks import check_config, monitorable_metrics
from polyhead.engine.devices import check_training_devices, resolve_device, training_devices
from polyhead.errors import ConfigError, PolyheadError


def one_line_error(capsys, argv) -> str:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# ---- training.monitor ----------------------------------------------------------------------------
def test_misspelled_monitor_stops_print_config(dataset, capsys):
    err = one_line_error(capsys, ["train", dataset / "config.yaml", "training.monitor=val/quadrnt/accuracy",
                                  f"output_dir={dataset / 'runs'}", "--print-config"])
    assert "'training.monitor': 'val/quadrnt/accuracy'; expected one of val/loss, train/loss" in err
    assert "val/red/auroc" in err and err.endswith("(did you mean 'val/quadrant/accuracy'?)")
    one_line_error(capsys, ["train", dataset / "config.yaml", "training.monitor=val/quadrnt/accuracy",
                            f"output_dir={dataset / 'runs'}"])
    assert not (dataset / "runs").exists()  # no run folder, not even an empty one


def test_top_k_monitor_checked_once_classes_are_known(dataset, capsys):
    """top_k=4 of 4 classes: no top-4 accuracy is computed. The name is plausible before the
    classes are read, so it is refused once they are, still before the run folder exists."""
    argv = ["train", dataset / "config.yaml", "tasks.quadrant.top_k=4", "training.monitor=val/quadrant/top4_accuracy",
            f"output_dir={dataset / 'runs'}"]
    assert main([str(a) for a in argv + ["--print-config"]]) == 0
    capsys.readouterr()
    err = one_line_error(capsys, argv)
    assert "'training.monitor': 'val/quadrant/top4_accuracy'" in err and "val/quadrant/macro_f1" in err
    assert not (dataset / "runs").exists()


def test_monitorable_metrics_are_what_training_logs(dataset, capsys):
    """Every train/ and val/ column of history.csv is a name `training.monitor` accepts, and back."""
    run = dataset / "runs" / "r"
    assert main(["train", str(dataset / "config.yaml"), f"output_dir={dataset / 'runs'}", "run_name=r",
                 "training.epochs=1", "tracking.enabled=false", "report.enabled=false"]) == 0
    logged = {c for c in pd.read_csv(run / "history.csv").columns if c.startswith(("train/", "val/"))}
    cfg = load_config(run / "config.yaml")  # classes written in
    assert logged == set(monitorable_metrics(cfg.tasks))


# ---- devices -------------------------------------------------------------------------------------
@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.mark.parametrize("accelerator", ["gpu", "cuda"])
def test_gpu_accelerator_without_a_gpu(dataset, capsys, no_gpu, accelerator):
    err = one_line_error(capsys, ["train", dataset / "config.yaml", f"training.accelerator={accelerator}",
                                  f"output_dir={dataset / 'runs'}"])
    assert err.endswith(f"training.accelerator={accelerator}: no GPU found; use cpu or auto")
    assert not (dataset / "runs").exists()


@pytest.mark.parametrize("devices, expected", [
    ("-1", "training.devices=-1: use auto (one device), a count N >= 1"),
    ("[0,0]", "training.devices=[0, 0]: use auto (one device), a count N >= 1"),
    ("4096", "training.devices=4096 CPU processes: this machine has"),
])
def test_bad_device_counts_are_refused(dataset, capsys, no_gpu, devices, expected):
    """Issue 13: more devices than exist, or a count that is no count, is one line before any work."""
    err = one_line_error(capsys, ["train", dataset / "config.yaml", f"training.devices={devices}",
                                  "training.accelerator=cpu"])
    assert expected in err


def test_devices_on_this_machine(no_gpu):
    assert training_devices("cpu", 2) == ("cpu", 2)
    assert training_devices("auto", 2) == ("cpu", 2)  # no GPU: CPU processes
    with pytest.raises(ConfigError, match=r"training.devices=\[0, 1\]: no GPU found"):
        training_devices("cuda", [0, 1])
    with pytest.raises(ConfigError, match=r"training.num_nodes=0: use a count >= 1"):
        check_training_devices("cpu", 1, 0)
    with pytest.raises(ConfigError, match=r"training.strategy"):
        check_training_devices("cpu", 1, 1, "fsdp")


def test_auto_devices_means_one_device(no_gpu):
    assert training_devices("auto", "auto") == ("auto", 1)  # Lightning's own "auto" would take every GPU
    assert training_devices("cpu", 1) == ("cpu", 1)
    with pytest.raises(ConfigError, match=r"training.devices=\[0\]: no GPU found; use cpu or auto"):
        training_devices("auto", [0])


def test_device_vocabulary(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("gpu") == resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ConfigError, match=r"--device cuda:1: there is no GPU 1 \(1 GPU\(s\) found: cuda:0\)"):
        resolve_device("cuda:1")
    with pytest.raises(ConfigError, match="--device tpu: unknown device; use one of auto, cpu, cuda"):
        resolve_device("tpu")


def test_predict_and_evaluate_on_a_missing_gpu(dataset, capsys, no_gpu):
    assert main(["train", str(dataset / "config.yaml"), f"output_dir={dataset / 'runs'}", "run_name=r",
                 "training.epochs=1", "tracking.enabled=false", "report.enabled=false"]) == 0
    capsys.readouterr()
    run = dataset / "runs" / "r"
    for device in ("gpu", "cuda", "cuda:0"):
        err = one_line_error(capsys, ["predict", run, "--images", dataset / "images", "--out", dataset / "p.csv",
                                      "--device", device])
        assert err.endswith(f"--device {device}: no GPU found; use cpu or auto")
    err = one_line_error(capsys, ["evaluate", run, "--table", dataset / "labels.csv", "--device", "gpu"])
    assert err.endswith("--device gpu: no GPU found; use cpu or auto")
    assert not (dataset / "p.csv").exists() and not (run / "evaluations").exists()


# ---- one home, one message ---------------------------------------------------------------------
def test_each_registry_words_its_mistake_once(dataset):
    """A bad name gets the same line from the config check as from the registry's own builder."""
    from polyhead.config.schema import TaskConfig
    from polyhead.model.backbones import build_backbone
    from polyhead.tasks import build_task
    from polyhead.tracking import build_trackers
    from polyhead.weighting import build_weighting

    def both(overrides, build):
        cfg = load_config(dataset / "config.yaml", overrides)
        with pytest.raises(PolyheadError) as from_check:
            check_config(cfg)
        with pytest.raises(PolyheadError) as from_registry:
            build()
        assert str(from_check.value) == str(from_registry.value)
        return str(from_check.value)

    assert "'training.weighting': 'famous'" in both(
        ["training.weighting=famous"], lambda: build_weighting("famous", ["quadrant"]))
    assert "for 'dwa': t; accepted: T" in both(
        ["training.weighting=dwa", "training.weighting_args.t=2"], lambda: build_weighting("dwa", ["quadrant"], {"t": 2}))
    assert "'tracking.trackers[0]': 'wandb'" in both(
        ["tracking.trackers=[wandb]"], lambda: build_trackers(["wandb"], experiment="x", output_dir=dataset))
    assert "unknown backbone 'model.backbone=resnet_18'" in both(
        ["model.backbone=resnet_18"], lambda: build_backbone("resnet_18"))
    assert "'tasks.quadrant.type': 'regression'" in both(
        ["tasks.quadrant.type=regression"], lambda: build_task("quadrant", TaskConfig(type="regression")))
