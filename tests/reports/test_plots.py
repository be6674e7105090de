"""Each plot function on synthetic outputs: files exist and are PNGs of a sensible size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from report_data import check_png, make_history, make_images, make_outputs, make_tasks

from polyhead.reports.curves import plot_training
from polyhead.reports.evaluation import (expected_calibration_error, plot_evaluation, true_label_probability)


def test_training_curves_full_history(tmp_path):
    tasks = make_tasks()
    written = plot_training(make_history(8, weights_change=True), tasks, tmp_path)
    assert sorted(p.name for p in written) == ["learning_rate.png", "losses.png", "metrics.png", "task_weights.png"]
    for p in written:
        check_png(p)


def test_constant_task_weights_are_not_plotted(tmp_path):
    written = plot_training(make_history(3), make_tasks(), tmp_path)
    assert "task_weights.png" not in {p.name for p in written}


def test_single_epoch_history(tmp_path):
    written = plot_training(make_history(1), make_tasks(), tmp_path)
    assert {p.name for p in written} == {"learning_rate.png", "losses.png", "metrics.png"}
    for p in written:
        check_png(p)


def test_history_without_validation(tmp_path):
    history = make_history(4, val=False)
    assert not any(c.startswith("val/") for c in history.columns)
    written = plot_training(history, make_tasks(), tmp_path)
    assert {"losses.png", "metrics.png"} <= {p.name for p in written}
    for p in written:
        check_png(p)


def test_evaluation_plots_with_many_classes_and_labels(tmp_path):
    tasks = make_tasks(classes=25, labels=30)
    paths = make_images(tmp_path / "images", 200)
    written = plot_evaluation(make_outputs(tasks), tasks, paths, tmp_path / "plots", worst=16, max_annotated=12)
    names = {p.name for p in written}
    assert names == {"species_confusion.png", "species_calibration.png", "species_worst.png",
                     "outdoor_roc_pr.png", "outdoor_calibration.png", "outdoor_worst.png",
                     "tags_per_label.png", "tags_calibration.png", "tags_worst.png"}
    sizes = {p.name: check_png(p) for p in written}
    # The 25-class matrix and the 30-label bars grow with the class count, so labels stay readable.
    assert sizes["species_confusion.png"][1] > 1200
    assert sizes["tags_per_label.png"][1] > 1200


def test_small_confusion_matrix_stays_small(tmp_path):
    tasks = make_tasks(classes=4, labels=3)
    written = plot_evaluation(make_outputs(tasks), tasks, [], tmp_path, worst=0)
    w, h = check_png(next(p for p in written if p.name == "species_confusion.png"))
    assert h < 900
    assert not any(p.name.endswith("_worst.png") for p in written)  # no paths, no grid


def test_task_without_labelled_rows_is_skipped(tmp_path):
    tasks = make_tasks(classes=3, labels=2)
    outputs = make_outputs(tasks)
    outputs["outdoor"] = (torch.zeros(0, 1), torch.zeros(0), torch.zeros(0, dtype=torch.long))
    written = plot_evaluation(outputs, tasks, [], tmp_path, worst=0)
    assert not any(p.name.startswith("outdoor") for p in written)


def test_binary_with_one_class_only(tmp_path):
    tasks = {"outdoor": make_tasks()["outdoor"]}
    outputs = {"outdoor": (torch.rand(20, 1), torch.ones(20), torch.arange(20))}
    written = plot_evaluation(outputs, tasks, [], tmp_path, worst=0)
    assert {p.name for p in written} == {"outdoor_roc_pr.png", "outdoor_calibration.png"}


def test_worst_examples_are_the_lowest_true_label_probabilities():
    tasks = make_tasks(classes=3, labels=2)
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    score, _ = true_label_probability(tasks["species"], probs, torch.tensor([0, 0, 2]))
    assert torch.allclose(score, torch.tensor([0.7, 0.1, 0.4]))
    score, label = true_label_probability(tasks["tags"], torch.tensor([[0.9, 0.8]]), torch.tensor([[1.0, 0.0]]))
    assert label.tolist() == [1] and score.item() == pytest.approx(0.2)  # label 1 is off but got 0.8


def test_expected_calibration_error():
    conf = np.array([0.95, 0.95, 0.55, 0.55])
    assert expected_calibration_error(conf, np.array([1, 1, 1, 0.0])) == pytest.approx(0.5 * 0.05 + 0.5 * 0.05)
    assert expected_calibration_error(conf, np.array([0, 0, 0, 0.0])) == pytest.approx(0.75)
