"""`train --resume RUN KEY=VALUE`: what may change is checked before anything is touched, and the
run's config.yaml is rewritten only once the resumed training has started."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping

from polyhead.cli.main import main
from polyhead.engine.callbacks import ConfiguredEarlyStopping


@pytest.fixture
def run(dataset):
    """A 1-epoch run (no trackers, no report: the test is about the run folder)."""
    argv = ["train", str(dataset / "config.yaml"), f"output_dir={dataset / 'runs'}", "run_name=r", "training.epochs=1",
            "tracking.enabled=false", "report.enabled=false"]
    assert main(argv) == 0
    return dataset / "runs" / "r"


def files(run) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("override, key", [
    ("model.small_cnn.blocks=3", "model.small_cnn.blocks (2 -> 3)"),
    ("optimizer.lr=0.1", "optimizer.lr (0.01 -> 0.1)"),  # the checkpoint restores the optimiser's lr
    ("+tasks.colour.type=binary", "tasks.colour (added)"),
    ("data.image_size=[24,24]", "data.image_size ([16, 16] -> [24, 24])"),
])
def test_refused_change_touches_nothing(run, capsys, override, key):
    before = files(run)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"cannot resume '{run}' with a changed {key}: " in err
    assert "on resume only these may change: training.epochs, training.early_stopping.*" in err
    assert files(run) == before  # config.yaml, checkpoints, history: byte for byte


def test_refused_then_allowed_resume(run, capsys):
    assert main(["train", "--resume", str(run), "model.small_cnn.blocks=3"]) == 2
    assert main(["train", "--resume", str(run), "training.epochs=2", "training.early_stopping.enabled=true",
                 "training.progress_bar=false"]) == 0
    assert pd.read_csv(run / "history.csv")["epoch"].tolist() == [1, 2]
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["training"]["epochs"] == 2 and saved["model"]["small_cnn"]["blocks"] == 2
    # nothing left to train: no epoch starts, the config is still saved once the resume has run
    assert main(["train", "--resume", str(run), "training.epochs=2", "data.eval_batch_size=8"]) == 0
    assert pd.read_csv(run / "history.csv")["epoch"].tolist() == [1, 2]
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["eval_batch_size"] == 8


def test_config_is_written_only_once_training_resumes(run, dataset):
    """A checkpoint that does not fit the model (here: another run's, with 3 blocks) fails inside
    Lightning's restore; the run's config.yaml must still be the one the checkpoint came from."""
    other = ["train", str(dataset / "config.yaml"), f"output_dir={dataset / 'runs'}", "run_name=other",
             "training.epochs=1", "tracking.enabled=false", "report.enabled=false", "model.small_cnn.blocks=3",
             "model.small_cnn.channels=[8,16,32]"]
    assert main(other) == 0
    (run / "checkpoints" / "last.ckpt").write_bytes((dataset / "runs" / "other" / "checkpoints" / "last.ckpt").read_bytes())
    saved = (run / "config.yaml").read_text()
    with pytest.raises(RuntimeError, match="state_dict"):
        main(["train", "--resume", str(run), "training.epochs=2"])
    assert (run / "config.yaml").read_text() == saved


def test_early_stopping_patience_may_change_on_resume():
    """Lightning restores the checkpoint's patience; a changed training.early_stopping.patience must win."""
    state = EarlyStopping(monitor="val/loss", patience=2).state_dict()
    mine = ConfiguredEarlyStopping(monitor="val/loss", patience=7)
    mine.load_state_dict(state)
    assert mine.patience == 7 and mine.wait_count == state["wait_count"]
    assert torch.equal(torch.as_tensor(mine.best_score), torch.as_tensor(state["best_score"]))
