"""Runs an example script in this process (torch and polyhead are imported once for the suite)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(folder: str, script: str = "run.py"):
    """The example's script as a module."""
    path = EXAMPLES / folder / script
    spec = importlib.util.spec_from_file_location(f"example_{folder}_{Path(script).stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_example(folder: str, argv: list[str], script: str = "run.py"):
    """`main(argv)` of the example's script; torch's thread count (an example may set it) is restored."""
    threads = torch.get_num_threads()
    try:
        return load_example(folder, script).main(argv)
    finally:
        torch.set_num_threads(threads)
