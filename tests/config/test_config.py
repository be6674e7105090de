"""Config loading: schema defaults, YAML, Hydra-style overrides, presets and one-line errors."""

from __future__ import annotations

import pytest

from polyhead.config.loading import available_presets, from_yaml_text, load_config, to_yaml
from polyhead.engine.checks import load_checked_config
from polyhead.errors import ConfigError

BASE = """
tasks:
  category: {type: multiclass}
  sleeves: {type: binary}
data:
  train_table: train.csv
  batch_size: 32
"""


@pytest.fixture
def cfg_file(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text(BASE)
    return path


def test_defaults_and_relative_paths(cfg_file, tmp_path):
    cfg = load_config(cfg_file)
    assert cfg.data.batch_size == 32
    assert cfg.training.epochs == 10 and cfg.model.backbone == "small_cnn"
    assert cfg.data.train_table == str(tmp_path / "train.csv")  # relative to the config file
    assert list(cfg.tasks) == ["category", "sleeves"]


def test_change_add_delete_overrides(cfg_file):
    cfg = load_config(cfg_file, ["training.epochs=3", "model.backbone=resnet18", "+tasks.tags.type=multilabel",
                                 "tasks.category.classes=[a,b,c]", "~data.batch_size", "data.image_size=[32,48]"])
    assert cfg.training.epochs == 3
    assert cfg.model.backbone == "resnet18"
    assert cfg.tasks["tags"].type == "multilabel"
    assert cfg.tasks["category"].classes == ["a", "b", "c"]
    assert cfg.data.batch_size == 64  # deleted -> schema default
    assert cfg.data.image_size == [32, 48]


def test_group_presets(cfg_file):
    assert {"efficientnet_lite0", "resnet18", "small_cnn"} <= set(available_presets("model"))
    cfg = load_config(cfg_file, ["model=efficientnet_lite0", "optimizer=sgd"])
    assert cfg.model.backbone == "efficientnet_lite0" and cfg.model.pretrained is True
    assert cfg.optimizer.name == "sgd"
    # a value override after the preset wins
    cfg = load_config(cfg_file, ["model=efficientnet_lite0", "model.pretrained=false"])
    assert cfg.model.pretrained is False


def test_defaults_list_in_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("defaults:\n  - model: resnet18\n  - _self_\n" + BASE + "model: {drop_rate: 0.2}\n")
    cfg = load_config(path)
    assert cfg.model.backbone == "resnet18" and cfg.model.drop_rate == 0.2


def test_user_preset_folder_wins(tmp_path):
    (tmp_path / "optimizer").mkdir()
    (tmp_path / "optimizer" / "fast.yaml").write_text("name: sgd\nlr: 0.5\n")
    path = tmp_path / "c.yaml"
    path.write_text(BASE)
    cfg = load_config(path, ["optimizer=fast"])
    assert cfg.optimizer.lr == 0.5


@pytest.mark.parametrize("overrides, expected", [
    (["training.epoch=3"], "unknown config key 'training.epoch'.*did you mean 'training.epochs'"),
    (["+training.epoch=3"], "unknown config key 'training.epoch'"),
    (["new_key=1"], "unknown config key 'new_key'.*Valid keys under '<root>': tasks, data"),
    (["tasks.color.type=binary"], "unknown config key 'tasks.color.type'.*use '\\+tasks.color.type=...'"),
    (["training.epochs=many"], "config key 'training.epochs'.*many"),
    (["data.batch_size=-4"], "'data.batch_size': -4; expected an integer > 0"),
    (["model.backbone=resnet_18"], "unknown backbone 'model.backbone=resnet_18'.*resnet18"),
    (["training.weighting=famous"], "'training.weighting': 'famous'; expected one of"),
    (["tasks.category.type=regression"], "'tasks.category.type': 'regression'"),
    (["data.channels=2"], "'data.channels': 2"),
    (["model=nope"], "unknown preset 'model=nope'; available for 'model'"),
    (["~data.nothing"], "cannot delete 'data.nothing'"),
    (["+data.batch_size=3"], "cannot add 'data.batch_size'.*already exists"),
    (["training.epochs=[1,"], "cannot parse override"),
    (["data.stratify=colour"], "'data.stratify': 'colour'"),
    (["tasks.sleeves.classes=[a,b,c]"], "exactly two classes"),
    (["training.weighting_args.x=1"], "unknown training.weighting_args key.*'equal'"),
    (["+training.weighting_args.x=1"], "unknown training.weighting_args key.*'equal'"),
    (["scheduler.name=one_cycle"], "'scheduler.name': 'one_cycle'; expected one of.*onecycle"),
    (["scheduler.pct_start=1.5"], "'scheduler.pct_start': 1.5; expected a number in \\(0, 1\\)"),
    (["scheduler.div_factor=0.5"], "'scheduler.div_factor': 0.5; expected a number >= 1"),
    (["scheduler.final_div_factor=0"], "'scheduler.final_div_factor': 0"),
    (["model.small_cnn.head_pool=flat"], "'model.small_cnn.head_pool': 'flat'; expected one of.*flatten"),
    (["model.small_cnn.head_grid=0"], "'model.small_cnn.head_grid': 0"),
])
def test_bad_overrides_are_one_line_errors(cfg_file, overrides, expected):
    with pytest.raises(ConfigError, match=expected) as info:
        load_checked_config(cfg_file, overrides)
    assert "\n" not in str(info.value)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks:\n  a: {type: binary\n")
    with pytest.raises(ConfigError, match="invalid YAML in .*line"):
        load_config(bad)
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "typo.yaml").write_text(BASE + "trainig: {epochs: 2}\n")
    with pytest.raises(ConfigError, match="unknown config key 'trainig'.*did you mean 'training'"):
        load_config(tmp_path / "typo.yaml")
    (tmp_path / "notasks.yaml").write_text("data: {train_table: t.csv}\n")
    with pytest.raises(ConfigError, match="no tasks defined"):
        load_config(tmp_path / "notasks.yaml")
    (tmp_path / "nodata.yaml").write_text("tasks: {a: {type: binary}}\n")
    with pytest.raises(ConfigError, match="'data.train_table' is required"):
        load_config(tmp_path / "nodata.yaml")


def test_saved_config_round_trip(cfg_file):
    cfg = load_config(cfg_file, ["training.epochs=2"])
    again = from_yaml_text(to_yaml(cfg))
    assert again == cfg


def test_config_reference_doc_is_current():
    """docs/config.md is generated from the schema; regenerate it when the schema changes."""
    from pathlib import Path

    from polyhead.config.reference import render

    doc = Path(__file__).resolve().parents[2] / "docs" / "config.md"
    assert doc.read_text() == render(), "run: python -m polyhead.config.reference > docs/config.md"
    assert "|  |" not in render()  # every key documented
