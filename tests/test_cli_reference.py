"""The reference verbs the docs point to: `polyhead methods` and `polyhead config --help-keys`."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

from polyhead.config import schema


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "polyhead", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def schema_keys(cls=schema.Config, prefix: str = "") -> set[str]:
    """Every key of the schema, sections included; tasks.<name>.* for the task settings."""
    keys = set()
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        keys.add(key)
        if key == "tasks":
            keys |= schema_keys(schema.TaskConfig, "tasks.<name>.")
        elif key == "tune.space":
            keys |= schema_keys(schema.TuneParamConfig, "tune.space.<key>.")
        elif f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory()):
            keys |= schema_keys(type(f.default_factory()), f"{key}.")
    return keys


def test_methods_lists_every_method_with_args_defaults_and_paper():
    proc = run_cli("methods")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    # the README's table of methods, written by hand
    for name in ("equal", "static", "uncertainty", "dwa", "rlw", "famo", "gradnorm", "mgda", "pcgrad", "cagrad",
                 "nash_mtl", "imtl", "upgrad"):
        assert f"\n{name} (needs: " in "\n" + out, name
    lines = out.splitlines()
    famo = lines.index(next(line for line in lines if line.startswith("famo ")))
    assert lines[famo + 1] == "    args: lr=0.025, gamma=0.001"
    assert lines[famo + 2] == '    paper: Liu, Liu, Jin, Stone and Liu, "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023'
    assert "    args: mode=features, alpha=1.5, lr=0.025" in lines and "    args: T=2.0" in lines
    assert sum(line.startswith("    paper: ") for line in lines) == 11  # all but equal and static
    assert "upgrad (needs: features)" in out and "Quinton and Rey" in out and "ICML 2018" in out


def test_config_help_keys_prints_every_key():
    proc = run_cli("config", "--help-keys")
    assert proc.returncode == 0, proc.stderr
    printed = {line.split(" (")[0] for line in proc.stdout.splitlines()}
    assert printed == schema_keys()
    assert "training.epochs (int, default 10): maximum number of epochs" in proc.stdout.splitlines()
    assert "tasks.<name>.type (str, required): multiclass | binary | multilabel" in proc.stdout
    only = run_cli("config", "--help-keys", "training.early_stopping").stdout.splitlines()
    assert [line.split(" (")[0] for line in only] == [
        "training.early_stopping", "training.early_stopping.enabled", "training.early_stopping.patience",
        "training.early_stopping.min_delta"]
    bad = run_cli("config", "--help-keys", "trainig")
    assert bad.returncode == 2 and "no config key under 'trainig'; sections: data" in bad.stderr
