"""`polyhead serve`'s settings, light to import (the CLI builds its --help from the defaults)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from polyhead.serving.limits import Limits

ENVIRONMENT = "POLYHEAD_SERVE"  # how `--workers N` hands the settings to each worker process


@dataclass
class ServeSettings:
    """Everything `polyhead serve` passes to each worker (JSON in $POLYHEAD_SERVE)."""

    path: str  # run folder, bundle folder or export folder
    backend: str = "torch"
    device: str = "auto"
    name: str | None = None  # default: the runner's name (the run's config name)
    max_batch: int = 32
    max_wait_ms: float = 5.0
    limits: Limits = field(default_factory=Limits)
    plugins: list[str] = field(default_factory=list)  # --plugin: each worker imports them before loading the model

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ServeSettings":
        data = json.loads(text)
        return cls(**{**data, "limits": Limits(**data["limits"])})
