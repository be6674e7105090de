"""One wording for a key a user got wrong, wherever it was written (YAML file or command line),
and forgiving shapes where they are unambiguous."""

from __future__ import annotations

import re

import pytest

from polyhead.config.loading import load_config
from polyhead.engine.checks import load_checked_config
from polyhead.errors import ConfigError

BASE = "tasks:\n  category: {type: multiclass}\ndata:\n  train_table: t.csv\n"


def error(path=None, overrides=()) -> str:
    with pytest.raises(ConfigError) as info:
        load_checked_config(path, list(overrides))
    text = str(info.value)
    assert "\n" not in text
    return text


def without_where(message: str) -> str:
    """The message with its '(in FILE)' / '(command line ...)' part taken out."""
    return re.sub(r" \((in '[^']*'|command line '[^']*')\)", "", message)


@pytest.mark.parametrize("yaml_text, override", [
    ("data:\n  image_size: 28\n", "data.image_size=28"),
    ("data:\n  image_size: [28]\n", "data.image_size=[28]"),
])
def test_image_size_single_value(tmp_path, yaml_text, override):
    (tmp_path / "file.yaml").write_text(BASE.replace("data:\n  train_table: t.csv\n", "") + yaml_text
                                        + "  train_table: t.csv\n")
    (tmp_path / "cli.yaml").write_text(BASE)
    assert load_config(tmp_path / "file.yaml").data.image_size == [28]
    assert load_config(tmp_path / "cli.yaml", [override]).data.image_size == [28]


@pytest.mark.parametrize("yaml_text, override, expected", [
    ("training:\n  early_stopping: true\n", "training.early_stopping=true",
     "config key 'training.early_stopping' is a section (keys: enabled, patience, min_delta), not a value; "
     "set one of its keys, e.g. training.early_stopping.enabled=true"),
    ("tasks:\n  category: binary\n", "tasks.category=binary",
     "config key 'tasks.category' is a section (keys: type, column, table, classes, class_weights, "
     "label_smoothing, top_k, positive, pos_weight, threshold, thresholds, delimiter, loss, loss_args, weight), not a value; "
     "set one of its keys, e.g. tasks.category.type=binary"),
])
def test_value_for_a_section(tmp_path, yaml_text, override, expected):
    (tmp_path / "cli.yaml").write_text(BASE)
    from_cli = error(tmp_path / "cli.yaml", [override])
    assert without_where(from_cli) == expected and f"(command line '{override}')" in from_cli
    (tmp_path / "file.yaml").write_text(BASE + yaml_text)
    assert without_where(error(tmp_path / "file.yaml")) == expected


@pytest.mark.parametrize("yaml_text, override, hint", [
    ("tasks:\n  category: {type: multiclass, topk: 3}\n", "tasks.category.topk=3",
     "did you mean 'tasks.category.top_k'?"),
    ("trainig:\n  epochs: 3\n", "trainig.epochs=3", "did you mean 'training'?"),
    ("training:\n  epoch: 3\n", "training.epoch=3", "did you mean 'training.epochs'?"),
])
def test_file_typo_and_command_line_typo_read_the_same(tmp_path, yaml_text, override, hint):
    (tmp_path / "cli.yaml").write_text(BASE)
    (tmp_path / "file.yaml").write_text(BASE + yaml_text)
    from_file, from_cli = error(tmp_path / "file.yaml"), error(tmp_path / "cli.yaml", [override])
    assert hint in from_file and without_where(from_file) == without_where(from_cli)


def test_new_task_key_names_the_plus(tmp_path):
    (tmp_path / "c.yaml").write_text(BASE)
    assert "use '+tasks.color.type=...' to add a new key" in error(tmp_path / "c.yaml", ["tasks.color.type=binary"])
    assert "e.g. +tasks.color.type=binary" in error(tmp_path / "c.yaml", ["tasks.color=binary"])


def test_weighting_args_need_no_plus(tmp_path):
    """README: `training.weighting_args.mode=parameters`; the method, not the schema, knows its args."""
    (tmp_path / "c.yaml").write_text(BASE)
    cfg = load_checked_config(tmp_path / "c.yaml", ["training.weighting=pcgrad", "training.weighting_args.mode=parameters"])
    assert cfg.training.weighting_args == {"mode": "parameters"}
    cfg = load_checked_config(tmp_path / "c.yaml", ["training.weighting=famo", "training.weighting_args.lr=0.05",
                                                    "training.weighting_args.lr=0.01"])  # set, then changed
    assert cfg.training.weighting_args == {"lr": 0.01}
    assert error(tmp_path / "c.yaml", ["training.weighting=famo", "training.weighting_args.mode=parameters"]) == (
        "unknown training.weighting_args key(s) for 'famo': mode; accepted: lr, gamma")
