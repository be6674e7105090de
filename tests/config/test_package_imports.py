"""Import rules of the package.

The config package is the bottom of the dependency graph: the typed schema, YAML loading and
schema-level checks. The registries' checks live with the registries (see polyhead/engine/checks.py).
A private (`_`-prefixed) module or name belongs to its package: no other package imports it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "polyhead"
CONFIG = PACKAGE / "config"
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


def module_name(path: Path) -> str:
    """polyhead/data/tables.py -> "polyhead.data.tables"; a package's __init__.py -> the package."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(dotted: str) -> bool:
    return (PACKAGE.parent / Path(*dotted.split(".")) / "__init__.py").is_file()


def owner(dotted: str) -> str | None:
    """Who may use the polyhead name `dotted` (a module, or a module's attribute): None when no
    part of it is private; else the package holding its first private part (a private name of a
    top-level module such as polyhead.tasks stays that module's own)."""
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not (part.startswith("__") and part.endswith("__")):
            holder = ".".join(parts[:i])
            if is_package(holder) or holder.count(".") == 1:  # a package, or a top-level module
                return holder
            return holder.rsplit(".", 1)[0]  # a module inside a subpackage: its package
    return None


def used_names(path: Path) -> set[str]:
    """Every polyhead name `path` imports or reads from an imported polyhead module: `import a.b`,
    `from a.b import c` (-> "a.b.c") and `m._x` where m is bound to a polyhead module."""
    names, modules = set(), {}
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names.add(a.name)
                if a.asname:
                    modules[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("polyhead"):
            for a in node.names:
                names.add(f"{node.module}.{a.name}")
                if (PACKAGE.parent / Path(*node.module.split("."), f"{a.name}.py")).is_file() or \
                        is_package(f"{node.module}.{a.name}"):
                    modules[a.asname or a.name] = f"{node.module}.{a.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            names.add(f"{modules[node.value.id]}.{node.attr}")
    return {n for n in names if n.startswith("polyhead.")}


def private_imports(files) -> list[str]:
    offending = []
    for path in files:
        importer = module_name(path)
        for name in used_names(path):
            home = owner(name)
            if home is not None and importer != home and not importer.startswith(home + "."):
                offending.append(f"{importer} uses {name} (private to {home})")
    return sorted(offending)


def test_no_package_uses_another_packages_private_names():
    assert private_imports(PACKAGE.rglob("*.py")) == []


def test_the_private_import_scan_sees_each_form(tmp_path, monkeypatch):
    """The scan itself: each way of reaching into another package's private parts is reported,
    a package's own private modules are not."""
    root = tmp_path / "polyhead"
    for folder in ("data", "engine", "serving", "data/preparers"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "data" / "splits.py").write_text("def _read(): ...\n")
    (root / "data" / "preparers" / "_idx.py").write_text("X = 1\n")
    (root / "data" / "preparers" / "mnist.py").write_text("from polyhead.data.preparers._idx import X\n")
    (root / "engine" / "a.py").write_text("from polyhead.data.splits import _read\n")
    (root / "engine" / "b.py").write_text("from polyhead.data.preparers import _idx\n")
    (root / "engine" / "c.py").write_text("import polyhead.data.splits as m\nm._read()\n")
    (root / "serving" / "d.py").write_text("from polyhead.data import splits\nsplits._read()\n")
    (root / "tasks.py").write_text("def _helper(): ...\n")
    (root / "data" / "e.py").write_text("from polyhead.tasks import _helper\nfrom polyhead.data.splits import _read\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", root)
    assert private_imports(root.rglob("*.py")) == [
        "polyhead.data.e uses polyhead.tasks._helper (private to polyhead.tasks)",
        "polyhead.engine.a uses polyhead.data.splits._read (private to polyhead.data)",
        "polyhead.engine.b uses polyhead.data.preparers._idx (private to polyhead.data.preparers)",
        "polyhead.engine.c uses polyhead.data.splits._read (private to polyhead.data)",
        "polyhead.serving.d uses polyhead.data.splits._read (private to polyhead.data)",
    ]
