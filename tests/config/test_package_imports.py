"""The config package is the bottom of the dependency graph: the typed schema, YAML loading and
schema-level checks. The registries' checks live with the registries (see polyhead/engine/checks.py)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[2] / "polyhead" / "config"
ABOVE = ("polyhead.model", "polyhead.weighting", "polyhead.tracking", "polyhead.tasks", "polyhead.engine",
         "polyhead.data")


def imported_modules(path: Path) -> set[str]:
    """Every module an import statement in `path` names, at any depth (lazy imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_config_modules_import_no_registry():
    offending = {f"{p.name}: {m}" for p in CONFIG.glob("*.py") for m in imported_modules(p) if m.startswith(ABOVE)}
    assert not offending, sorted(offending)


def test_loading_a_config_loads_no_registry(tmp_path):
    (tmp_path / "c.yaml").write_text("tasks: {a: {type: binary}}\ndata: {train_table: t.csv}\n")
    code = ("import sys; from polyhead.config.loading import load_config; "
            f"load_config({str(tmp_path / 'c.yaml')!r}, ['model=resnet18', 'training.weighting=famo']); "
            f"print(sorted(m for m in sys.modules if m.startswith({ABOVE!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.strip() == "[]"
