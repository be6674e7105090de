"""Task types: class inference, encoding with partial labels, losses, decoding, metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from polyhead.config.schema import TaskConfig
from polyhead.errors import DataError
from polyhead.tasks import build_task, task_from_dict


def col(values):
    s = pd.Series(values, dtype=object)
    s.index = range(1, len(s) + 1)
    return s


def test_multiclass_infers_encodes_and_masks():
    t = build_task("cat", TaskConfig(type="multiclass"))
    assert t.fit_classes(col(["b", "a", None, "c", ""]), "t.csv")
    assert t.classes == ["a", "b", "c"]
    targets, mask = t.encode(col(["b", None, "c", float("nan"), " "]), "t.csv")
    assert targets.tolist() == [1, -1, 2, -1, -1]
    assert mask.tolist() == [True, False, True, False, False]


def test_numeric_labels_are_one_class_whatever_their_spelling():
    t = build_task("n", TaskConfig(type="multiclass"))
    t.fit_classes(col([1, 2.0, "10", 2]), "t")
    assert t.classes == ["1", "2", "10"]  # natural order
    targets, _ = t.encode(col(["2", 10.0, 1]), "t")
    assert targets.tolist() == [1, 2, 0]


def test_unknown_label_names_row_column_and_value():
    t = build_task("cat", TaskConfig(type="multiclass", classes=["a", "b"], column="label"))
    with pytest.raises(DataError, match=r"t.csv, row 2, column 'label': label 'z' is not a class of task 'cat'"):
        t.encode(col(["a", "z"]), "t.csv")


def test_multiclass_loss_ignores_masked_rows_and_none_when_empty():
    t = build_task("cat", TaskConfig(type="multiclass", classes=["a", "b", "c"]))
    logits = torch.tensor([[5.0, 0, 0], [0, 0, 9.0]])
    targets = torch.tensor([0, 0])
    only_first = t.loss(logits, targets, torch.tensor([True, False]))
    both = t.loss(logits, targets, torch.tensor([True, True]))
    assert only_first < 0.05 < both
    assert t.loss(logits, targets, torch.tensor([False, False])) is None


def test_multiclass_class_weights_and_smoothing_change_loss():
    logits, targets, mask = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]), torch.tensor([True, True])
    plain = build_task("c", TaskConfig(type="multiclass", classes=["a", "b"])).loss(logits, targets, mask)
    smooth = build_task("c", TaskConfig(type="multiclass", classes=["a", "b"], label_smoothing=0.2)).loss(logits, targets, mask)
    assert not torch.isclose(plain, smooth)


def test_multiclass_decode_and_metrics():
    t = build_task("cat", TaskConfig(type="multiclass", classes=["a", "b", "c"], top_k=2))
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]])
    cols = t.decode(probs)
    assert cols["cat"] == ["a", "c", "a"]
    assert cols["cat_top2"][1] == ["c", "b"]
    assert cols["cat_prob"][0] == pytest.approx(0.7)
    m = t.metrics(probs, torch.tensor([0, 2, 1]))
    assert m["n"] == 3 and m["accuracy"] == pytest.approx(2 / 3) and m["top2_accuracy"] == pytest.approx(1.0)
    assert m["per_class"]["b"]["recall"] == 0.0 and m["per_class"]["a"]["precision"] == pytest.approx(0.5)
    assert m["confusion_matrix"] == [[1, 0, 0], [1, 0, 0], [0, 0, 1]]


@pytest.mark.parametrize("values, classes", [
    ([0, 1, 1], ["0", "1"]),
    (["yes", "no"], ["no", "yes"]),
    ([True, False], ["false", "true"]),
    (["Yes"], ["No", "Yes"]),
    (["cat", "dog"], ["cat", "dog"]),
])
def test_binary_class_inference(values, classes):
    t = build_task("b", TaskConfig(type="binary"))
    t.fit_classes(col(values), "t")
    assert t.classes == classes


def test_binary_positive_and_errors():
    t = build_task("b", TaskConfig(type="binary", positive="cat"))
    t.fit_classes(col(["cat", "dog", None]), "t")
    assert t.classes == ["dog", "cat"]
    targets, mask = t.encode(col(["cat", "dog", None]), "t")
    assert targets[:2].tolist() == [1.0, 0.0] and mask.tolist() == [True, True, False]
    with pytest.raises(DataError, match="row 1.*'bird'"):
        t.encode(col(["bird"]), "t")
    three = build_task("b", TaskConfig(type="binary"))
    with pytest.raises(DataError, match="must hold two values.*found 3"):
        three.fit_classes(col(["a", "b", "c"]), "t")


def test_binary_metrics_threshold_and_decode():
    t = build_task("b", TaskConfig(type="binary", classes=["no", "yes"], threshold=0.7))
    probs = torch.tensor([[0.9], [0.6], [0.2], [0.8]])
    assert t.decode(probs)["b"] == ["yes", "no", "no", "yes"]
    m = t.metrics(probs, torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert m["accuracy"] == pytest.approx(0.5) and m["auroc"] == pytest.approx(0.75)
    assert m["positives"] == 2
    only_pos = t.metrics(probs[:2], torch.tensor([1.0, 1.0]))
    assert only_pos["auroc"] is None  # undefined with a single class present


def test_multilabel_cells_lists_delimiters_and_empty_sets():
    t = build_task("tags", TaskConfig(type="multilabel", delimiter=";"))
    cells = col(["red;blue", ["green"], None, "[]", np.array(["red"])])
    t.fit_classes(cells, "t")
    assert t.classes == ["blue", "green", "red"]
    targets, mask = t.encode(cells, "t")
    assert targets.tolist() == [[1, 0, 1], [0, 1, 0], [0, 0, 0], [0, 0, 0], [0, 0, 1]]
    assert mask.tolist() == [True, True, False, True, True]
    with pytest.raises(DataError, match=r"row 1.*'red,blue'.*split on ';'"):
        t.encode(col(["red,blue"]), "t")


def test_multilabel_thresholds_decode_and_metrics():
    t = build_task("tags", TaskConfig(type="multilabel", classes=["a", "b"], thresholds={"b": 0.9}))
    probs = torch.tensor([[0.8, 0.8], [0.2, 0.95]])
    cols = t.decode(probs)
    assert cols["tags"] == [["a"], ["b"]]
    assert cols["tags_prob_b"] == pytest.approx([0.8, 0.95])
    m = t.metrics(probs, torch.tensor([[1.0, 1.0], [0.0, 1.0]]))
    assert m["exact_match"] == pytest.approx(0.5)
    assert m["per_label"]["b"]["recall"] == pytest.approx(0.5)
    assert m["micro_f1"] == pytest.approx(0.8)


def test_multilabel_loss_masks_rows():
    t = build_task("tags", TaskConfig(type="multilabel", classes=["a", "b"]))
    logits = torch.tensor([[9.0, -9.0], [-9.0, 9.0]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert t.loss(logits, targets, torch.tensor([True, False])) < 0.01
    assert t.loss(logits, targets, torch.tensor([True, True])) > 1.0


def test_task_dict_round_trip():
    t = build_task("tags", TaskConfig(type="multilabel", thresholds={"a": 0.3}))
    t.fit_classes(col(["a|b"]), "t")
    again = task_from_dict(t.to_dict())
    assert again.classes == ["a", "b"] and again.config.thresholds == {"a": 0.3} and again.type == "multilabel"
