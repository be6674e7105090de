"""Command-line overrides with sweeps -> one override list per run, by Hydra's own basic sweeper.

    ["optimizer.lr=0.01,0.001", "training.weighting=equal,famo", "training.epochs=3"]
    -> 4 combinations (the cartesian product, the first key varying slowest), each
       ["optimizer.lr=0.01", "training.weighting=equal", "training.epochs=3"], ...

Sweeps: `a,b,c`, `range(start, stop[, step])`, `choice(a, b)`, `glob(...)` (Hydra's discrete
sweeps). `interval(...)` has no finite list of values: it belongs to `polyhead tune`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from polyhead.config.loading import parse_overrides
from polyhead.errors import ConfigError

ACCEPTED = "key=value, key=a,b,c, key=range(start,stop[,step]) or key=choice(a,b)"
MAX_LABEL = 120  # characters of a run folder's name


@dataclass
class Combination:
    """One run of a sweep: `overrides` (every override, in the order given) and `swept`
    ({key: value} of the sweep overrides only, as typed), numbered from 0."""

    index: int
    overrides: list[str]
    swept: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """A readable folder name: `3-optimizer.lr=0.001,training.weighting=famo` (unsafe characters
        become `_`, long names are cut)."""
        text = ",".join(f"{k}={v}" for k, v in self.swept.items()) or "run"
        text = re.sub(r"[^\w.,=+\-\[\]]", "_", text.replace("\\", ""))
        return f"{self.index}-{text}"[:MAX_LABEL]


def expand(overrides: list[str]) -> list[Combination]:
    """The runs of `polyhead train -m OVERRIDES`, in Hydra's order (a repeated key: the last wins)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.errors import HydraException

    parsed = parse_overrides(list(overrides), sweeps=True, accepted=f"accepted: {ACCEPTED}")
    for ov in parsed:
        if ov.is_sweep_override() and not ov.is_discrete_sweep():
            raise ConfigError(f"cannot sweep '{ov.input_line}': an interval has no list of values "
                              f"(accepted: {ACCEPTED}; search an interval with `polyhead tune`)")
    swept_keys = {ov.get_key_element() for ov in parsed if ov.is_sweep_override()}
    try:
        [batch] = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    except HydraException as exc:
        raise ConfigError(f"cannot expand the sweep: {exc} (accepted: {ACCEPTED})") from None
    runs = []
    for i, combo in enumerate(batch):
        swept = {}
        for text in combo:
            key, _, value = text.partition("=")
            if key in swept_keys:
                swept[key.lstrip("+~")] = value
        runs.append(Combination(i, list(combo), swept))
    return runs
