"""Config-group presets: defaults list -> file -> command-line choices -> command-line values.

The expected values are the preset files' own (polyhead/conf/): resnet18 = {backbone: resnet18,
pretrained: false}; efficientnet_lite0 = {backbone: efficientnet_lite0, pretrained: true};
sgd = {name: sgd, lr: 0.01, momentum: 0.9, nesterov: true, weight_decay: 0.0005}."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from polyhead.cli.main import main
from polyhead.config.loading import load_config
from polyhead.errors import ConfigError

TASKS = "tasks: {a: {type: binary}}\ndata: {train_table: t.csv}\n"
FILE_MODEL = "model: {backbone: small_cnn, drop_rate: 0.2, small_cnn: {blocks: 2}, head: {hidden: [256]}}\n"
FILE_OPTIMIZER = "optimizer: {name: adamw, lr: 0.003, weight_decay: 0.0001}\n"


def write(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(TASKS + text)
    return path


def test_defaults_list_only(tmp_path):
    cfg = load_config(write(tmp_path, "defaults: [{model: resnet18}, {optimizer: sgd}]\n"))
    assert (cfg.model.backbone, cfg.model.pretrained) == ("resnet18", False)
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.nesterov) == ("sgd", 0.01, True)


def test_file_only(tmp_path):
    cfg = load_config(write(tmp_path, FILE_MODEL + FILE_OPTIMIZER))
    assert (cfg.model.backbone, cfg.model.drop_rate, cfg.model.small_cnn.blocks) == ("small_cnn", 0.2, 2)
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.weight_decay) == ("adamw", 0.003, 0.0001)


def test_defaults_then_file_keys_over_the_preset(tmp_path):
    """As in Hydra: the file's keys that do not name another preset refine the preset."""
    cfg = load_config(write(tmp_path, "defaults: [{optimizer: sgd}]\noptimizer: {lr: 0.05}\n"))
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.momentum) == ("sgd", 0.05, 0.9)


@pytest.mark.parametrize("text, key", [
    ("defaults: [{model: resnet18}]\n" + FILE_MODEL, "'model.backbone: small_cnn'.*'model: resnet18'"),
    ("defaults: [{optimizer: sgd}]\n" + FILE_OPTIMIZER, "'optimizer.name: adamw'.*'optimizer: sgd'"),
    ("defaults: [{scheduler: plateau}]\nscheduler: {name: cosine}\n", "'scheduler.name: cosine'.*'scheduler: plateau'"),
])
def test_defaults_contradicted_by_the_file_is_an_error(tmp_path, text, key):
    with pytest.raises(ConfigError, match=f"{key} in its defaults list.*keep one of the two") as info:
        load_config(write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_command_line_choice_replaces_the_file_section(tmp_path):
    notes: list[str] = []
    cfg = load_config(write(tmp_path, FILE_MODEL + FILE_OPTIMIZER), ["model=resnet18", "optimizer=sgd"], notes)
    assert (cfg.model.backbone, cfg.model.pretrained, cfg.model.drop_rate, cfg.model.head.hidden) == (
        "resnet18", False, 0.0, [])  # nothing of the file's model section is mixed in
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.nesterov,
            cfg.optimizer.weight_decay) == ("sgd", 0.01, 0.9, True, 0.0005)
    assert notes == [
        "model=resnet18 on the command line replaces the config file's 'model' section; not used: model.backbone, "
        "model.drop_rate, model.small_cnn, model.head (set any of them after model=resnet18 to keep it)",
        "optimizer=sgd on the command line replaces the config file's 'optimizer' section; not used: optimizer.name, "
        "optimizer.lr, optimizer.weight_decay (set any of them after optimizer=sgd to keep it)"]


def test_command_line_choice_over_defaults_and_file(tmp_path):
    notes: list[str] = []
    cfg = load_config(write(tmp_path, "defaults: [{model: resnet18}]\nmodel: {drop_rate: 0.2}\n"),
                      ["model=efficientnet_lite0"], notes)
    assert (cfg.model.backbone, cfg.model.pretrained, cfg.model.drop_rate) == ("efficientnet_lite0", True, 0.0)
    assert len(notes) == 1 and "not used: model.drop_rate" in notes[0]


def test_command_line_choice_then_values(tmp_path):
    notes: list[str] = []
    cfg = load_config(write(tmp_path, FILE_MODEL), ["model=resnet18", "model.drop_rate=0.1", "model.head.hidden=[64]"],
                      notes)
    assert (cfg.model.backbone, cfg.model.drop_rate, cfg.model.head.hidden) == ("resnet18", 0.1, [64])


def test_command_line_choice_without_a_file_section_has_no_note(tmp_path):
    notes: list[str] = []
    cfg = load_config(write(tmp_path, "defaults: [{model: resnet18}]\n"), ["model=small_cnn"], notes)
    assert cfg.model.backbone == "small_cnn" and notes == []


def test_self_must_be_last(tmp_path):
    with pytest.raises(ConfigError, match="'_self_' in the 'defaults' of .* must be last"):
        load_config(write(tmp_path, "defaults: [_self_, {model: resnet18}]\n"))


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "polyhead", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def in_process(capsys, *args):
    """The CLI's own `main` in this process (the first case above runs a real process)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def test_print_config_through_the_cli(tmp_path, capsys):
    """`polyhead train CFG optimizer=sgd model=resnet18 --print-config`: the chosen presets, and one
    note line per replaced section on stderr (stdout stays YAML)."""
    path = write(tmp_path, FILE_MODEL + FILE_OPTIMIZER)
    proc = run_cli("train", path, "optimizer=sgd", "model=resnet18", "--print-config")
    assert proc.returncode == 0, proc.stderr
    printed = yaml.safe_load(proc.stdout)
    assert (printed["model"]["backbone"], printed["model"]["head"]["hidden"]) == ("resnet18", [])
    assert (printed["optimizer"]["name"], printed["optimizer"]["lr"]) == ("sgd", 0.01)
    notes = proc.stderr.strip().splitlines()
    assert [n.split(" on the command line")[0] for n in notes] == ["polyhead train: note: optimizer=sgd",
                                                                    "polyhead train: note: model=resnet18"]

    path = write(tmp_path, "defaults: [{model: resnet18}]\n" + FILE_MODEL)
    proc = in_process(capsys, "train", path, "--print-config")
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "contradicts 'model: resnet18'" in proc.stderr
    proc = in_process(capsys, "train", path, "model=resnet18", "model.drop_rate=0.1", "--print-config")
    printed = yaml.safe_load(proc.stdout)
    assert proc.returncode == 0 and (printed["model"]["backbone"], printed["model"]["drop_rate"]) == ("resnet18", 0.1)

    for text, expected in [(FILE_MODEL, ("small_cnn", 0.2, 2)),  # file only
                           ("defaults: [{model: resnet18}]\nmodel: {drop_rate: 0.2}\n", ("resnet18", 0.2, 3))]:
        proc = in_process(capsys, "train", write(tmp_path, text), "--print-config")
        m = yaml.safe_load(proc.stdout)["model"]
        assert proc.returncode == 0 and proc.stderr == ""
        assert (m["backbone"], m["drop_rate"], m["small_cnn"]["blocks"]) == expected
