"""Unquoted YAML 1.1 booleans (yes/no/on/off/true/false) where labels go are read as the words written."""

from __future__ import annotations

import subprocess
import sys

import yaml

from polyhead.config.loading import load_config
from polyhead.config.yaml_labels import load_yaml

CONFIG = """
tasks:
  red: {type: binary, classes: [yes, no], positive: yes}
  light: {type: binary, classes: [Off, On], positive: On}
  tags: {type: multilabel, thresholds: {yes: 0.3, TRUE: 0.4}}
data: {train_table: t.csv}
training:
  early_stopping: {enabled: yes}
  progress_bar: off
"""


def test_labels_keep_their_text_and_flags_stay_booleans():
    data = load_yaml(CONFIG)
    assert data["tasks"]["red"] == {"type": "binary", "classes": ["yes", "no"], "positive": "yes"}
    assert data["tasks"]["light"]["classes"] == ["Off", "On"] and data["tasks"]["light"]["positive"] == "On"
    assert data["tasks"]["tags"]["thresholds"] == {"yes": 0.3, "TRUE": 0.4}
    assert data["training"]["early_stopping"]["enabled"] is True and data["training"]["progress_bar"] is False


def test_load_config_reads_unquoted_labels(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text(CONFIG)
    cfg = load_config(path)
    assert cfg.tasks["red"].classes == ["yes", "no"] and cfg.tasks["red"].positive == "yes"
    assert cfg.tasks["light"].positive == "On" and cfg.tasks["tags"].thresholds == {"yes": 0.3, "TRUE": 0.4}
    assert cfg.training.early_stopping.enabled is True and cfg.training.progress_bar is False


def test_print_config_shows_the_labels_written(tmp_path):
    """Through the real command line: `--print-config` shows "yes"/"no", not "True"/"False"."""
    path = tmp_path / "my.yaml"
    path.write_text(CONFIG)
    proc = subprocess.run([sys.executable, "-m", "polyhead", "train", str(path), "--print-config"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    printed = yaml.safe_load(proc.stdout)
    assert printed["tasks"]["red"]["classes"] == ["yes", "no"] and printed["tasks"]["red"]["positive"] == "yes"
    assert printed["training"]["early_stopping"]["enabled"] is True
