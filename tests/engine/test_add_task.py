"""`polyhead add-task`: new heads on a trained run's frozen features, written as a new run whose old
heads give bit-identical outputs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from conftest import make_dataset
from polyhead.cli.main import main
from polyhead.data.images import load_image
from polyhead.model.bundle import load_bundle

BASE = """
tasks:
  quadrant: {type: multiclass, top_k: 2}
  red: {type: binary, positive: "yes"}
data:
  train_table: labels.csv
  val_fraction: 0.2
  test_fraction: 0.1
  image_size: [16, 16]
  batch_size: 16
  num_workers: 0
model:
  backbone: small_cnn
  small_cnn: {blocks: 2, channels: [8, 16]}
optimizer: {lr: 0.01}
training: {epochs: 4, seed: 0, progress_bar: false}
tracking: {enabled: false}
report: {enabled: false}
output_dir: runs
run_name: base
"""


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A run trained on `quadrant` and `red`; its table also labels `tags` (the task to add)."""
    import polyhead

    root = tmp_path_factory.mktemp("add_task")
    make_dataset(root, n=160).to_csv(root / "labels.csv", index=False)
    (root / "base.yaml").write_text(BASE)
    run = polyhead.fit(root / "base.yaml")
    return root, run.run_dir


def add(root, run_dir, text: str, name: str = "new.yaml"):
    from polyhead.engine.add_task import add_task

    (root / name).write_text(text)
    return add_task(run_dir, root / name, device="cpu", show_progress=False)


def test_old_heads_are_bit_identical_and_the_new_head_learns(base_run):
    root, run_dir = base_run
    done = add(root, run_dir, "tasks:\n  tags: {type: multilabel, table: labels.csv}\ntraining: {epochs: 40}\n")
    assert done.run_dir != run_dir and done.run_dir.parent == run_dir.parent

    old, new = load_bundle(run_dir), load_bundle(done.run_dir)
    assert list(new.tasks) == ["quadrant", "red", "tags"] and list(new.model.heads) == list(new.tasks)
    images = torch.stack([load_image(str(root / "images" / f"{i:04d}.png"), channels=3, size=(16, 16))
                          for i in range(24)])
    with torch.no_grad():
        before, after = old.model(images), new.model(images)
    for task in ("quadrant", "red"):
        assert torch.equal(before[task], after[task]), task
    # the files themselves: backbone and old heads byte for byte
    for part in ("backbone.safetensors", "heads/quadrant.safetensors", "heads/red.safetensors"):
        assert (run_dir / "model" / part).read_bytes() == (done.run_dir / "model" / part).read_bytes(), part

    # the new head learned tags (top / left / warm follow from quadrant and colour): a constant
    # predictor's mean average precision is each label's prevalence, about 0.5 here
    assert done.metrics["val"]["tags"]["mAP"] > 0.75, done.metrics["val"]["tags"]
    assert set(done.metrics) == {"val", "test"}
    written = json.loads((done.run_dir / "metrics.json").read_text())
    base_metrics = json.loads((run_dir / "metrics.json").read_text())
    assert written["val"]["quadrant"] == base_metrics["val"]["quadrant"]  # copied: same heads, same split
    assert written["add_task"]["full_training_seconds"] == base_metrics["training_seconds"]
    assert written["add_task"]["images"] == 160
    assert not (done.run_dir / "features").exists()  # the cache is removed unless --keep-features

    # the new run is an ordinary run: predict writes the new task's columns
    import polyhead

    frame = polyhead.load(done.run_dir, device="cpu").predict(root / "images", show_progress=False)
    assert len(frame) == 160 and "tags" in frame.columns and frame["error"].isna().all()
    assert "tags" in (done.run_dir / "config.yaml").read_text()


def test_add_task_refuses_an_existing_name_with_one_line(base_run, capsys):
    root, run_dir = base_run
    (root / "dup.yaml").write_text("tasks:\n  red: {type: binary, table: labels.csv}\n")
    runs_before = sorted(p.name for p in run_dir.parent.iterdir())
    assert main(["add-task", str(run_dir), str(root / "dup.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "task 'red' already exists" in err and "quadrant, red" in err
    assert sorted(p.name for p in run_dir.parent.iterdir()) == runs_before  # nothing written


def test_add_task_refuses_model_settings(base_run, capsys):
    root, run_dir = base_run
    (root / "model.yaml").write_text("tasks:\n  tags: {type: multilabel}\nmodel: {backbone: resnet18}\n")
    assert main(["add-task", str(run_dir), str(root / "model.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "keeps the run's model" in err and "not model" in err


def test_help_lists_the_lifecycle_verbs():
    out = subprocess.run([sys.executable, "-m", "polyhead", "--help"], capture_output=True, text=True,
                         timeout=120).stdout
    assert all(verb in out for verb in ("add-task", "embed", "neighbors"))


def test_a_branched_model_is_refused_with_one_line(tmp_path):
    from types import SimpleNamespace

    from polyhead.config.schema import Config
    from polyhead.engine.add_task import new_task_config
    from polyhead.errors import ConfigError

    (tmp_path / "new.yaml").write_text("tasks:\n  tags: {type: multilabel, table: labels.csv}\n")
    branched = SimpleNamespace(tasks={"quadrant": None}, spec=SimpleNamespace(branch_point="blocks.1"))
    with pytest.raises(ConfigError, match=r"branches at 'blocks.1' .*retrain instead"):
        new_task_config(Config(), tmp_path / "new.yaml", branched, tmp_path)
