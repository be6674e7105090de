"""What `train --resume RUN` may change, checked before anything is touched.

A resumed run loads the model, optimiser, schedule, weighting state and callbacks from
`RUN/checkpoints/last.ckpt`. A config value may change on resume only when the checkpoint does
not already decide it and the change leaves the model and the data it learns from as they
were: how long to train, when to stop, how much to show, how fast to load. Everything else
(model, tasks, classes, tables and splits, image size and channels, seed, weighting,
optimiser and scheduler, whose values the checkpoint restores, monitor, tracking) is refused
with one line naming the keys that differ. The run's config.yaml is rewritten only once the
resumed training has started (`SaveConfigOnStart`).
"""

from __future__ import annotations

from pathlib import Path

from polyhead.config.loading import as_dict, load_config
from polyhead.config.schema import Config
from polyhead.errors import ConfigError

#: keys (or sections, ending in ".") a resume may change
RESUMABLE = ("training.epochs", "training.early_stopping.", "training.progress_bar", "training.limit_train_batches",
             "training.limit_val_batches", "training.on_nonfinite_loss", "training.cpu_threads",
             "data.num_workers", "data.cache", "data.cache_dir", "data.eval_batch_size", "data.validate", "report.")


def _flat(tree: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _resumable(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE)


def _absent_root(key: str, side: dict[str, object]) -> str:
    """The shortest prefix of `key` that `side` has nothing under (a whole task added, say)."""
    parts = key.split(".")
    for i in range(1, len(parts) + 1):
        prefix = ".".join(parts[:i])
        if not any(k == prefix or k.startswith(prefix + ".") for k in side):
            return prefix
    return key


def _changes(saved: dict[str, object], new: dict[str, object]) -> list[str]:
    """'key (old -> new)' per changed value; an added or removed section is one entry."""
    out: list[str] = []
    for key in sorted(saved.keys() | new.keys()):
        if saved.get(key, "<unset>") == new.get(key, "<unset>") or _resumable(key):
            continue
        if key not in saved:
            text = f"{_absent_root(key, saved)} (added)"
        elif key not in new:
            text = f"{_absent_root(key, new)} (removed)"
        else:
            text = f"{key} ({saved[key]} -> {new[key]})"
        if text not in out:
            out.append(text)
    return out


def check_resume(run_dir: str | Path, cfg: Config) -> None:
    """Refuse a resume whose config differs from the run's own config.yaml outside `RESUMABLE`."""
    saved = _flat(as_dict(load_config(Path(run_dir) / "config.yaml")))
    refused = _changes(saved, _flat(as_dict(cfg)))
    if refused:
        shown = ", ".join(refused[:5])
        more = f" and {len(refused) - 5} more" if len(refused) > 5 else ""
        allowed = ", ".join(k + "*" if k.endswith(".") else k for k in RESUMABLE)
        raise ConfigError(f"cannot resume '{run_dir}' with a changed {shown}{more}: the checkpoint was trained "
                          f"with the saved config; on resume only these may change: {allowed}; start a new run "
                          f"for anything else")
