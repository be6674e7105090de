"""Plugins (polyhead.plugins): user code registering backbones, losses and weighting methods, imported
from the config or --plugin; bundles that record them; docs/extending.md's example run by the CLI."""

from __future__ import annotations

import base64
import json
import re
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from conftest import make_dataset
from polyhead import plugins
from polyhead.cli.main import main
from polyhead.config.schema import TaskConfig
from polyhead.errors import ConfigError, PolyheadError
from polyhead.model.backbones import build_backbone, register_backbone
from polyhead.weighting import WeightingMethod, register_weighting

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture(autouse=True)
def fresh_registries():
    """Every registration a test makes (directly or through a plugin) is undone after it."""
    registries = plugins._registries()
    before = {kind: dict(reg) for kind, reg in registries.items()}
    loaded = dict(plugins._LOADED)
    yield
    for kind, reg in registries.items():
        reg.clear()
        reg.update(before[kind])
    plugins._LOADED.clear()
    plugins._LOADED.update(loaded)


def _tiny_dataset(folder: Path, n: int = 48) -> Path:
    make_dataset(folder, n=n).to_csv(folder / "labels.csv", index=False)
    return folder


def _quiet(*extra):
    return ["tracking.enabled=false", "report.enabled=false", "data.num_workers=0", "data.val_fraction=0.25",
            "training.progress_bar=false", *extra]


# ---------------------------------------------------------------------------- the doc's example


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_extending_doc_shows_the_example_plugin_file_verbatim():
    doc = (DOCS / "extending.md").read_text()
    assert (DOCS / "examples" / "my_plugin.py").read_text() in _blocks(doc, "python")


def test_extending_doc_loss_example_is_a_valid_tasks_section():
    import yaml

    from polyhead.tasks import build_task

    block = next(b for b in _blocks((DOCS / "extending.md").read_text(), "yaml") if "loss: asymmetric" in b)
    tasks = {name: build_task(name, TaskConfig(**cfg)) for name, cfg in yaml.safe_load(block)["tasks"].items()}
    assert {n: t.config.loss for n, t in tasks.items()} == {"category": "focal", "tags": "asymmetric"}


def test_extending_doc_example_trains_predicts_and_serves_through_the_cli(tmp_path, capsys, monkeypatch):
    doc = (DOCS / "extending.md").read_text()
    config = next(b for b in _blocks(doc, "yaml") if "backbone: tiny_mlp" in b)
    _tiny_dataset(tmp_path)
    (tmp_path / "my.yaml").write_text(config)
    plugin = str(DOCS / "examples" / "my_plugin.py")
    argv = ["train", str(tmp_path / "my.yaml"), "--plugin", plugin, f"output_dir={tmp_path / 'runs'}",
            "run_name=r", "training.epochs=1", *_quiet()[1:]]  # tracking on: the doc's own tracker
    assert main(argv) == 0, capsys.readouterr().err
    run = tmp_path / "runs" / "r"
    saved = (run / "config.yaml").read_text()
    assert plugin in saved and "backbone: tiny_mlp" in saved and "weighting: mean_of_tasks" in saved
    assert "loss: poly1" in saved
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert logged[0]["step"] == 1 and "train/loss" in logged[0] and "val/loss" in logged[0]  # epoch 1's
    assert any("final/val/quadrant/accuracy" in entry for entry in logged)

    # what the run trained is the plugin's: its MLP backbone, with the doc's weighting method
    from polyhead.model.bundle import load_bundle
    bundle = load_bundle(run)
    assert type(bundle.model.backbone).__name__ == "TinyMLP" and bundle.model.num_features == 24
    assert bundle.meta["plugins"] == [{"plugin": plugin, "registers": {
        "backbone": ["tiny_mlp"], "loss": ["poly1"], "weighting": ["mean_of_tasks"], "tracker": ["jsonl"]}}]

    # without the plugin: one line naming it and the flag
    for kind, name in (("backbone", "tiny_mlp"), ("loss", "poly1"), ("weighting", "mean_of_tasks"),
                       ("tracker", "jsonl")):
        plugins._registries()[kind].pop(name)  # as in a new process
    plugins._LOADED.pop(plugin)
    capsys.readouterr()
    out = tmp_path / "p.csv"
    assert main(["predict", str(run), "--table", str(tmp_path / "labels.csv"), "--out", str(out),
                 "--num-workers", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"needs plugin '{plugin}' (it registers backbone 'tiny_mlp')" in err and f"--plugin {plugin}" in err
    assert not out.exists()

    # `polyhead serve --workers N`: each worker imports the plugins named in its settings
    from fastapi.testclient import TestClient

    from polyhead.serving.app import app_from_environment
    from polyhead.serving.settings import ENVIRONMENT, ServeSettings
    monkeypatch.setenv(ENVIRONMENT, ServeSettings(path=str(run), device="cpu", name="m").to_json())
    with pytest.raises(plugins.PluginError, match=f"needs plugin '{re.escape(plugin)}'"):
        app_from_environment()
    monkeypatch.setenv(ENVIRONMENT, ServeSettings(path=str(run), device="cpu", name="m", plugins=[plugin]).to_json())
    image = tmp_path / "images" / "0000.png"
    with TestClient(app_from_environment()) as client:
        answer = client.post("/v1/models/m:predict", json={"instances": [{"b64": base64.b64encode(
            image.read_bytes()).decode()}]})
    assert answer.status_code == 200 and set(answer.json()["predictions"][0]) >= {"quadrant", "red", "tags"}

    # with it: predictions for the 48 rows, as the served model predicts
    assert main(["predict", str(run), "--table", str(tmp_path / "labels.csv"), "--out", str(out),
                 "--num-workers", "0", "--plugin", plugin]) == 0
    predicted = pd.read_csv(out)
    assert len(predicted) == 48
    assert predicted["quadrant"][0] == answer.json()["predictions"][0]["quadrant"]


# ---------------------------------------------------------------------------- loading plugins


PLUGIN = """
import torch
from torch import nn
from polyhead.model.backbones import register_backbone

@register_backbone("{name}")
def make(*, in_chans=3, drop_rate=0.0):
    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.num_features = 6
            self.lin = nn.Linear(in_chans, 6)
        def forward_features(self, x):
            return self.lin(x.mean(dim=(2, 3)))
    return Flat()
"""


def test_config_plugins_are_relative_to_the_config_file(tmp_path, capsys):
    _tiny_dataset(tmp_path / "data")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "plug.py").write_text(PLUGIN.format(name="flat6"))
    (tmp_path / "conf" / "c.yaml").write_text(textwrap.dedent("""
        plugins: [./plug.py]
        tasks: {quadrant: {type: multiclass}}
        data: {train_table: ../data/labels.csv, image_size: [16, 16], batch_size: 16}
        model: {backbone: flat6}
        training: {epochs: 1}
        """))
    assert main(["train", str(tmp_path / "conf" / "c.yaml"), f"output_dir={tmp_path / 'runs'}", "run_name=r",
                 *_quiet()]) == 0, capsys.readouterr().err
    from polyhead.model.bundle import load_bundle
    meta = load_bundle(tmp_path / "runs" / "r").meta
    assert meta["plugins"] == [{"plugin": str((tmp_path / "conf" / "plug.py").resolve()),
                                "registers": {"backbone": ["flat6"]}}]


def test_module_plugin_from_the_python_path(tmp_path, monkeypatch):
    (tmp_path / "my_pkg").mkdir()
    (tmp_path / "my_pkg" / "__init__.py").write_text("")
    (tmp_path / "my_pkg" / "bb.py").write_text(PLUGIN.format(name="flat6_mod"))
    monkeypatch.syspath_prepend(str(tmp_path))
    [loaded] = plugins.load_plugins(["my_pkg.bb"])
    assert loaded.spec == "my_pkg.bb" and loaded.registers == {"backbone": ["flat6_mod"]}
    assert plugins.load_plugins(["my_pkg.bb"])[0] is loaded  # once per process
    assert build_backbone("flat6_mod", in_chans=3).forward_features(torch.zeros(2, 3, 8, 8)).shape == (2, 6)


@pytest.mark.parametrize("source,needle", [
    ("import nothing_here_at_all\n", "failed to import: ModuleNotFoundError: No module named 'nothing_here_at_all'"),
    ("x = 1 / 0\n", "failed to import: ZeroDivisionError: division by zero"),
    ("from polyhead.model.backbones import register_backbone\n@register_backbone('small_cnn')\ndef f(**k): pass\n",
     "failed to import: ConfigError: backbone 'small_cnn' is already registered"),
])
def test_plugin_that_fails_to_import_is_one_line(tmp_path, capsys, source, needle):
    (tmp_path / "bad.py").write_text(source)
    assert main(["methods", "--plugin", str(tmp_path / "bad.py")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and f"plugin '{tmp_path / 'bad.py'}' {needle}" in err


def test_missing_plugins_are_one_line(tmp_path, capsys):
    assert main(["methods", "--plugin", str(tmp_path / "nope.py")]) == 2
    assert f"plugin file not found: '{tmp_path / 'nope.py'}'" in capsys.readouterr().err
    assert main(["methods", "--plugin", "no_such_pkg.mod"]) == 2
    assert "plugin 'no_such_pkg.mod' not found: no module named 'no_such_pkg'" in capsys.readouterr().err


def test_methods_lists_a_plugin_weighting(capsys):
    assert main(["methods", "--plugin", str(DOCS / "examples" / "my_plugin.py")]) == 0
    assert "mean_of_tasks (needs: losses): Weighs each task by 1 / (number of tasks" in capsys.readouterr().out


# ---------------------------------------------------------------------------- checks of registered pieces


def test_backbone_class_without_forward_features_is_refused_when_registered():
    with pytest.raises(ConfigError, match="backbone 'nofeat' .* has no forward_features"):
        @register_backbone("nofeat")
        class NoFeatures(nn.Module):
            num_features = 4


@pytest.mark.parametrize("attrs,needle", [
    ({"num_features": None}, "must set num_features (a positive int"),
    ({"num_features": 4, "forward_features": None}, "has no forward_features(x) method"),
])
def test_backbone_is_checked_when_built(attrs, needle):
    def make(**_):
        m = nn.Linear(3, 4)
        for k, v in attrs.items():
            setattr(m, k, v)
        if "forward_features" not in attrs:
            m.forward_features = m.forward
        return m

    register_backbone("broken_bb")(make)
    with pytest.raises(ConfigError) as err:
        build_backbone("broken_bb", in_chans=3)
    assert needle in str(err.value) and "'broken_bb'" in str(err.value)


def test_backbone_with_wrong_feature_width_is_refused_when_the_model_is_built():
    from polyhead.model.bundle import BackboneSpec, Preprocessing, build_model
    from polyhead.tasks import build_task

    class Liar(nn.Module):
        num_features = 8

        def forward_features(self, x):
            return x.mean(dim=(2, 3))  # [B, 3], not [B, 8]

    register_backbone("liar")(lambda **_: Liar())
    task = build_task("q", TaskConfig(type="multiclass", classes=["a", "b"]))
    with pytest.raises(ConfigError, match=r"backbone 'liar': forward_features must return .* \[2, 8\], returned \[2, 3\]"):
        build_model(BackboneSpec("liar", 3), {"q": task}, Preprocessing((8, 8), 3, None, None))


def test_weighting_registration_checks():
    with pytest.raises(PolyheadError, match="must set a class attribute name"):
        @register_weighting
        class Nameless(WeightingMethod):
            def combine(self, losses):
                return sum(losses.values())
    with pytest.raises(PolyheadError, match="'lazy' .* must implement combine"):
        @register_weighting
        class Lazy(WeightingMethod):
            name = "lazy"
    with pytest.raises(PolyheadError, match="'equal' is already registered"):
        @register_weighting
        class Equal2(WeightingMethod):
            name = "equal"

            def combine(self, losses):
                return sum(losses.values())


def test_bundle_plugin_check_asks_only_for_what_the_model_uses():
    from polyhead.plugins import check_bundle_plugins

    check_bundle_plugins({"backbone": {"name": "small_cnn"}, "tasks": []}, "x")  # older bundles: no "plugins" key
    meta = {"backbone": {"name": "small_cnn"}, "tasks": [{"name": "t", "loss": "focal"}],
            "plugins": [{"plugin": "my_pkg.w", "registers": {"weighting": ["gone"], "backbone": ["unused_bb"]}}]}
    check_bundle_plugins(meta, "x")  # a weighting method and an unused backbone are not needed to predict
    meta["tasks"].append({"name": "u", "loss": "gone_loss"})
    meta["plugins"].append({"plugin": "./l.py", "registers": {"loss": ["gone_loss"]}})
    with pytest.raises(plugins.PluginError, match=r"needs plugin './l.py' \(it registers loss 'gone_loss'\), "
                                                  r"which is not loaded: pass --plugin ./l.py"):
        check_bundle_plugins(meta, "x")


def test_backbone_args_reach_the_factory_and_unknown_ones_are_one_line():
    register_backbone("widthy")(lambda *, in_chans=3, drop_rate=0.0, width=4: _Flat(in_chans, width))
    assert build_backbone("widthy", options={"width": 7}).num_features == 7
    with pytest.raises(ConfigError, match=r"unknown model.backbone_args key\(s\) for backbone 'widthy': wdth; "
                                          r"accepted: width"):
        build_backbone("widthy", options={"wdth": 7})
    with pytest.raises(ConfigError, match="model.backbone_args is for a backbone registered by a plugin"):
        build_backbone("resnet18", options={"width": 7})


class _Flat(nn.Module):
    def __init__(self, in_chans: int, width: int):
        super().__init__()
        self.num_features = width
        self.lin = nn.Linear(in_chans, width)

    def forward_features(self, x):
        return self.lin(x.mean(dim=(2, 3)))


def test_tracker_registration_checks():
    from polyhead.tracking import Tracker, register_tracker

    with pytest.raises(PolyheadError, match=r"register_tracker\('x'\) must decorate a subclass"):
        register_tracker("x")(object)
    with pytest.raises(PolyheadError, match=r"tracker 'lazy' .* must implement start"):
        @register_tracker("lazy")
        class Lazy(Tracker):
            pass


def test_methods_lists_task_losses_with_a_plugins_own(capsys):
    assert main(["methods", "--plugin", str(DOCS / "examples" / "my_plugin.py")]) == 0
    lines = capsys.readouterr().out.splitlines()
    focal = lines.index(next(line for line in lines if line.startswith("focal (multiclass, binary, multilabel): ")))
    assert lines[focal + 1] == "    args: gamma=2.0, alpha=None"
    poly = lines.index(next(line for line in lines if line.startswith("poly1 (multiclass): Poly-1 loss")))
    assert lines[poly + 1] == "    args: epsilon=1.0"
