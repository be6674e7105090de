"""Fixtures of the engine tests."""

from __future__ import annotations

import pytest

from polyhead.engine.module import MultiTaskModule


@pytest.fixture
def crash_at(monkeypatch):
    """crash_at(epoch, batch): the next training run raises RuntimeError("simulated crash") once,
    at the start of that training step, as a crash would."""
    def arm(epoch: int, batch: int) -> None:
        original = MultiTaskModule.training_step

        def step(self, b, batch_idx):
            if (self.current_epoch, batch_idx) == (epoch, batch):
                monkeypatch.setattr(MultiTaskModule, "training_step", original)
                raise RuntimeError("simulated crash")
            return original(self, b, batch_idx)

        monkeypatch.setattr(MultiTaskModule, "training_step", step)

    return arm
