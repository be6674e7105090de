"""What training shows: the live bar on a terminal (epochs from 1), plain lines anywhere else."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from conftest import write_config
from polyhead.config.loading import load_config
from polyhead.engine.fit import _trainer
from polyhead.engine.progress import EpochLines, EpochProgressBar, duration
from polyhead.tasks import build_tasks


def _build(tmp_path, *, terminal: bool, progress_bar: bool = True, epochs: int = 1):
    write_config(tmp_path / "config.yaml", "labels.csv", epochs=epochs)
    cfg = load_config(tmp_path / "config.yaml", [f"training.progress_bar={progress_bar}"])
    console = Console(file=io.StringIO(), force_terminal=terminal, force_interactive=terminal, force_jupyter=False)
    return _trainer(cfg, tmp_path, True, console, build_tasks(cfg.tasks))


@pytest.mark.parametrize("epochs", [1, 3])
def test_terminal_bar_counts_epochs_from_one(tmp_path, epochs):
    trainer = _build(tmp_path, terminal=True, epochs=epochs)
    bar = trainer.progress_bar_callback
    assert isinstance(bar, EpochProgressBar) and not any(isinstance(c, EpochLines) for c in trainer.callbacks)
    bar.setup(trainer, None, "fit")
    assert [bar._get_train_description(e).strip() for e in range(epochs)] == [
        f"Epoch {e}/{epochs}" for e in range(1, epochs + 1)]  # Lightning's own bar: "Epoch 0/0" for one epoch


@pytest.mark.parametrize("terminal, progress_bar", [(False, True), (True, False), (False, False)])
def test_plain_lines_without_a_live_bar(tmp_path, terminal, progress_bar):
    """stdout not a terminal, or training.progress_bar=false: no live bar, one line per epoch."""
    trainer = _build(tmp_path, terminal=terminal, progress_bar=progress_bar)
    assert trainer.progress_bar_callback is None
    (lines,) = [c for c in trainer.callbacks if isinstance(c, EpochLines)]
    assert lines.main_metrics == {"quadrant": "accuracy", "red": "f1", "tags": "micro_f1"}


@pytest.mark.parametrize("seconds, text", [(0.04, "0.0 s"), (12.44, "12.4 s"), (99, "1m39s"), (3599.6, "1h00m"),
                                           (5400, "1h30m")])
def test_duration(seconds, text):
    assert duration(seconds) == text
