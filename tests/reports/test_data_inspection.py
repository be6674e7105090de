"""`polyhead inspect-data`: sample grids, label distribution, data_report.json and data warnings."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from polyhead.cli.main import main
from polyhead.reports.data_inspection import data_warnings, label_counts
from polyhead.reports.grids import save_image_grid

FILES = {"samples.png", "samples_augmented.png", "label_distribution.png", "data_report.json"}


def _inspect(config, out, *args) -> dict:
    assert main(["inspect-data", str(config), *map(str, args), "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == FILES
    for name in FILES - {"data_report.json"}:
        with Image.open(out / name) as img:
            assert img.width >= 300 and img.height >= 300, name
    return json.loads((out / "data_report.json").read_text())


def test_conftest_dataset(dataset, capsys):
    report = _inspect(dataset / "config.yaml", dataset / "inspect", "--samples", 8, "--draws", 2)
    out = capsys.readouterr().out
    labels = pd.read_csv(dataset / "labels.csv")
    train = report["splits"]["train"]
    assert set(report["splits"]) == {"train", "val"}
    assert sum(report["splits"][s]["quadrant"]["rows"] for s in ("train", "val")) == len(labels) == 160
    # 10% of red and tags labels are missing: counts and missing rows add up to the table's
    for task in ("red", "tags"):
        missing = sum(report["splits"][s][task]["missing"] for s in ("train", "val"))
        assert missing == labels[task].isna().sum() > 0
    assert sum(train["red"]["counts"].values()) + train["red"]["missing"] == train["red"]["rows"]
    assert train["quadrant"]["missing"] == 0 and set(train["quadrant"]["counts"]) == {"bl", "br", "tl", "tr"}
    warm = sum(report["splits"][s]["tags"]["counts"]["warm"] for s in ("train", "val"))
    assert warm == labels["tags"].dropna().str.contains("warm").sum()
    # the samples cover every quadrant, and each caption matches the table's labels
    samples = report["samples"]
    assert len(samples) == 8 and {s["labels"]["quadrant"] for s in samples} == {"bl", "br", "tl", "tr"}
    by_path = labels.set_index("image")
    for s in samples:
        row = by_path.loc[s["path"].split(str(dataset) + "/")[-1]]
        assert s["labels"]["red"] == (row["red"] if isinstance(row["red"], str) else "—")
        tags = sorted(row["tags"].split("|")) if isinstance(row["tags"], str) else ["—"]
        assert sorted(s["labels"]["tags"].split("|")) == tags
    assert report["warnings"] == [] and "no warnings" in out and str(dataset / "inspect") in out.replace("\n", "")


def test_samples_are_chosen_with_the_training_seed(dataset):
    first = _inspect(dataset / "config.yaml", dataset / "a")
    again = _inspect(dataset / "config.yaml", dataset / "b")
    other = _inspect(dataset / "config.yaml", dataset / "c", "training.seed=5")
    assert first["samples"] == again["samples"] != other["samples"]


def _imbalanced(folder, counts: dict[str, int], val: dict[str, int] | None = None) -> None:
    """A grayscale 16x16 dataset whose `shape` task has `counts` train rows per class (plus `val`)."""
    rng = np.random.default_rng(0)
    (folder / "img").mkdir(parents=True)
    rows = []
    for split, per in (("train", counts), ("val", val or {})):
        for cls, n in per.items():
            for _ in range(n):
                path = f"img/{len(rows):04d}.png"
                Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(folder / path)
                rows.append({"image": path, "shape": cls, "split": split,
                             "size": None if len(rows) % 3 else ("big" if len(rows) % 2 else "small")})
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    (folder / "config.yaml").write_text("""
tasks:
  shape: {type: multiclass}
  size: {type: binary, positive: big}
data: {train_table: labels.csv, split_column: split, image_size: [16, 16], channels: 1, num_workers: 0,
       augment: {hflip: true, rotation: 20}}
model: {backbone: small_cnn}
training: {seed: 0}
""")


def test_imbalance_tiny_classes_and_missing_labels_are_warned(tmp_path, capsys):
    _imbalanced(tmp_path, {"circle": 120, "square": 30, "star": 4}, val={"circle": 3, "star": 2})
    report = _inspect(tmp_path / "config.yaml", tmp_path / "out")
    out = capsys.readouterr().out
    assert report["splits"]["train"]["shape"]["counts"] == {"circle": 120, "square": 30, "star": 4}
    assert report["augmentation"] == "hflip, rotation=20.0"
    assert report["splits"]["val"]["shape"]["counts"] == {"circle": 3, "square": 0, "star": 2}
    warnings = report["warnings"]
    assert ("task 'shape': severe class imbalance in train: 'circle' has 120 examples, 'star' only 4 (30x)"
            in warnings)
    assert "task 'shape': 1 class(es) with fewer than 10 training examples: 'star' (4)" in warnings
    assert "task 'shape': class(es) present in val but rare in train: 'star' (2 in val, 4 in train)" in warnings
    # `size` is labelled on one row in three: more than half missing
    size = report["splits"]["train"]["size"]
    assert size["missing"] == 154 - sum(size["counts"].values()) and size["missing"] > 100
    assert any(w.startswith(f"task 'size': {size['missing']} of 154 training rows") for w in warnings)
    flat = " ".join(out.split())
    assert "warning: task 'shape': severe class imbalance" in flat and "'star' only 4" in flat


def test_a_declared_class_without_training_example(tmp_path):
    _imbalanced(tmp_path, {"circle": 12, "square": 15})
    report = _inspect(tmp_path / "config.yaml", tmp_path / "out", "tasks.shape.classes=[circle,square,star]",
                      "data.augment.hflip=false", "data.augment.rotation=0")
    assert "task 'shape': no training example for class(es) 'star'" in report["warnings"]
    assert report["augmentation"] is None
    assert not any("imbalance" in w or "fewer than" in w for w in report["warnings"] if "'shape'" in w)


def test_many_classes(tmp_path):
    counts = {f"class_{i:02d}": 5 + 3 * i for i in range(25)}
    _imbalanced(tmp_path, counts)
    report = _inspect(tmp_path / "config.yaml", tmp_path / "out", "--samples", 30)
    assert len(report["samples"]) == 30
    assert {s["labels"]["shape"] for s in report["samples"]} == set(counts)  # one of each class first
    with Image.open(tmp_path / "out" / "label_distribution.png") as img:
        assert img.height > 1000  # grows with the number of classes


def test_label_counts_and_warnings_of_a_multilabel_task(dataset):
    from polyhead.config.loading import load_config
    from polyhead.data.splits import build_splits
    from polyhead.tasks import build_tasks

    cfg = load_config(dataset / "config.yaml", ["data.val_fraction=0"])
    tasks = build_tasks(cfg.tasks)
    splits = build_splits(cfg.data, tasks, seed=cfg.training.seed)
    counts = label_counts(splits.train, tasks)
    labels = pd.read_csv(dataset / "labels.csv")
    tags = labels["tags"].dropna()
    assert counts["tags"]["counts"] == {t: int(tags.str.contains(t).sum()) for t in ("left", "top", "warm")}
    assert counts["tags"]["missing"] == labels["tags"].isna().sum()
    counts["tags"]["counts"]["warm"] = 3  # a rare label is named like a rare class
    warnings = data_warnings({"train": counts}, tasks)
    assert any("task 'tags': severe class imbalance" in w and "'warm' only 3" in w for w in warnings)


def test_config_errors_are_one_line(dataset, capsys):
    assert main(["inspect-data", str(dataset / "config.yaml"), "data.train_table=nope.csv"]) == 2
    err = capsys.readouterr().err
    assert "table not found" in err and len(err.strip().splitlines()) == 1
    assert main(["inspect-data", str(dataset / "config.yaml"), "data.augmnt.hflip=true"]) == 2
    assert "unknown config key" in capsys.readouterr().err


def test_image_grid_checks_its_input(tmp_path):
    import torch

    with pytest.raises(ValueError, match="2 images but 1 captions"):
        save_image_grid([torch.zeros(3, 4, 4, dtype=torch.uint8)] * 2, ["a"], tmp_path / "g.png")
    with pytest.raises(ValueError, match="expected uint8"):
        save_image_grid([torch.zeros(3, 4, 4)], ["a"], tmp_path / "g.png")
    path = save_image_grid([torch.full((1, 4, 4), 200, dtype=torch.uint8)], ["gray\n" + "x" * 80], tmp_path / "g.png")
    with Image.open(path) as img:
        assert img.size[0] > 100


def test_the_verb_in_a_real_process(dataset):
    import subprocess
    import sys

    def run(*args):
        return subprocess.run([sys.executable, "-m", "polyhead", *map(str, args)], capture_output=True, text=True,
                              timeout=300)

    assert "inspect-data" in run("--help").stdout
    proc = run("inspect-data", dataset / "config.yaml", "tasks.quadrant.type=binary")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("polyhead inspect-data: error: ") and len(proc.stderr.strip().splitlines()) == 1
    proc = run("inspect-data", dataset / "config.yaml", f"output_dir={dataset / 'runs'}", "--samples", 4)
    assert proc.returncode == 0, proc.stderr
    (folder,) = (dataset / "runs").iterdir()  # default: <output_dir>/inspect-<config stem>-<time>
    assert folder.name.startswith("inspect-config-") and {p.name for p in folder.iterdir()} == FILES
    assert folder.name in proc.stdout.replace("\n", "")
