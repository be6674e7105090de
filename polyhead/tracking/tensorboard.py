"""TensorBoard: event files in `run_dir/tensorboard/` (`tensorboard --logdir RUN_DIR/tensorboard`).

A resumed run writes a new event file into the same folder; TensorBoard joins them by step."""

from __future__ import annotations

import json
from pathlib import Path

from polyhead.tracking.base import Tracker, missing_library, register_tracker


@register_tracker("tensorboard")
class TensorBoardTracker(Tracker):
    def __init__(self, **_):
        self.writer = None
        self.log_dir: Path | None = None

    def start(self, run_dir: Path, run_name: str, resume_info: dict | None) -> dict:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise missing_library("tensorboard", "tensorboard") from None
        self.log_dir = run_dir / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        return {"log_dir": str(self.log_dir.resolve())}

    def log_params(self, flat: dict[str, str]) -> None:
        lines = "\n".join(f"| {k} | {v} |" for k, v in flat.items())
        self.writer.add_text("config", f"| key | value |\n|---|---|\n{lines}")

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def set_tags(self, tags: dict[str, str]) -> None:
        self.writer.add_text("tags", f"```\n{json.dumps(tags, indent=2)}\n```")

    def finish(self, status: str = "FINISHED") -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def where(self) -> str | None:
        return f"TensorBoard: tensorboard --logdir {self.log_dir.resolve()}" if self.log_dir else None
