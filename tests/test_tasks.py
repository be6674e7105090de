"""Task types: class inference, encoding with partial labels, losses, decoding, metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from polyhead.config.schema import TaskConfig
from polyhead.errors import ConfigError, DataError
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


# ---- binary: `positive` decides the positive class --------------------------------------------
def test_binary_positive_decides_over_the_class_order():
    """classes [yes, no] with positive yes: targets, metrics and `_prob` are for "yes" (hand-computed)."""
    t = build_task("b", TaskConfig(type="binary", classes=["yes", "no"], positive="yes"))
    targets, mask = t.encode(col(["yes", "no", "yes", "yes", "no"]), "t")
    assert targets.tolist() == [1.0, 0.0, 1.0, 1.0, 0.0] and mask.all()
    probs = torch.tensor([[0.9], [0.8], [0.3], [0.7], [0.1]])  # the head's probability of "yes"
    cols = t.decode(probs)
    assert cols["b"] == ["yes", "yes", "no", "yes", "no"]
    assert cols["b_prob"] == pytest.approx([0.9, 0.8, 0.3, 0.7, 0.1])
    m = t.metrics(probs, torch.as_tensor(targets))
    # predicted yes: rows 1, 2, 4; true yes: rows 1, 3, 4 -> TP 2, FP 1, FN 1, TN 1
    assert m["positives"] == 3 and m["accuracy"] == pytest.approx(3 / 5)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    # AUROC: yes scores {0.9, 0.3, 0.7} above no scores {0.8, 0.1} in 4 of 6 pairs
    assert m["auroc"] == pytest.approx(4 / 6)
    again = task_from_dict(t.to_dict())  # the bundle keeps the same positive class
    assert again.decode(probs)["b"] == cols["b"]


def test_binary_positive_outside_the_classes_is_one_config_error():
    with pytest.raises(ConfigError, match=r"^tasks\.b\.positive is 'maybe', which is not one of "
                                          r"tasks\.b\.classes: yes, no$"):
        build_task("b", TaskConfig(type="binary", classes=["yes", "no"], positive="maybe"))


def test_binary_positive_that_is_not_a_value_of_the_column():
    t = build_task("footwear", TaskConfig(type="binary", positive="maybe"))
    with pytest.raises(ConfigError, match=r"^tasks\.footwear\.positive is 'maybe', which is not one of the values "
                                          r"of column 'footwear' in t\.csv: no, yes$"):
        t.fit_classes(col(["yes", "no", None]), "t.csv")
    three = build_task("b", TaskConfig(type="binary", positive="a"))
    with pytest.raises(DataError, match="more than two values: a, b, c"):
        three.fit_classes(col(["a", "b", "c"]), "t")


def test_binary_positive_matches_a_boolean_column_whatever_its_case():
    """`positive=true` on the command line reaches the task as "True"; a bool column reads "true"."""
    t = build_task("b", TaskConfig(type="binary", positive="True"))
    t.fit_classes(col([True, False]), "t")
    assert t.classes == ["false", "true"]
    assert t.encode(col([True, False]), "t")[0].tolist() == [1.0, 0.0]


# ---- one threshold rule: probability >= threshold is positive ---------------------------------
@pytest.mark.parametrize("threshold", [0.5, 0.7])
def test_binary_decode_and_metrics_agree_at_the_threshold(threshold):
    t = build_task("b", TaskConfig(type="binary", classes=["no", "yes"], threshold=threshold))
    probs = torch.tensor([[threshold]], dtype=torch.float32)  # exactly the threshold, in float32
    assert t.decode(probs)["b"] == ["yes"]
    m = t.metrics(probs, torch.tensor([1.0]))
    assert m["recall"] == 1.0 and m["confusion_matrix"] == [[0, 0], [0, 1]]


@pytest.mark.parametrize("threshold", [0.5, 0.7])
def test_multilabel_decode_and_metrics_agree_at_the_threshold(threshold):
    t = build_task("tags", TaskConfig(type="multilabel", classes=["a", "b"], threshold=threshold))
    probs = torch.tensor([[threshold, 0.1]], dtype=torch.float32)
    assert t.decode(probs)["tags"] == [["a"]]
    m = t.metrics(probs, torch.tensor([[1.0, 0.0]]))
    assert m["per_label"]["a"]["recall"] == 1.0 and m["exact_match"] == 1.0


# ---- multilabel macro-F1 over the labels of the split -----------------------------------------
def test_multilabel_macro_f1_leaves_out_labels_absent_from_the_split():
    """Perfect predictions; label "c" neither occurs nor is predicted: macro-F1 is 1.0, like mAP."""
    t = build_task("tags", TaskConfig(type="multilabel", classes=["a", "b", "c"]))
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    probs = targets * 0.8 + 0.1  # 0.9 where the label applies, 0.1 elsewhere
    m = t.metrics(probs, targets)
    assert m["micro_f1"] == pytest.approx(1.0) and m["macro_f1"] == pytest.approx(1.0)
    assert m["mAP"] == pytest.approx(1.0)
    # a label predicted but never true counts (F1 0): (1 + 1 + 0) / 3
    wrong = probs.clone()
    wrong[3, 2] = 0.9
    assert t.metrics(wrong, targets)["macro_f1"] == pytest.approx(2 / 3)


def test_prediction_columns_name_every_decoded_column():
    probs = {"multiclass": torch.tensor([[0.7, 0.2, 0.1]]), "binary": torch.tensor([[0.6]]),
             "multilabel": torch.tensor([[0.7, 0.2, 0.1]])}
    for kind, p in probs.items():
        classes = ["a", "b"] if kind == "binary" else ["a", "b", "c"]
        t = build_task("x", TaskConfig(type=kind, classes=classes, top_k=2))
        columns = t.prediction_columns()
        decoded = t.decode(p)
        assert list(decoded) == list(columns), kind
        for name, kind_of in columns.items():
            value = decoded[name][0]
            expected = {"string": str, "float": float, "string_list": list, "float_list": list}[kind_of]
            assert isinstance(value, expected), (name, value)


def test_a_saved_binary_task_keeps_the_class_order_its_head_was_trained_with():
    """A bundle saved before `positive` reordered the classes: its head's output is P(classes[1])."""
    old = {"name": "b", "type": "binary", "classes": ["yes", "no"], "positive": "yes"}
    t = task_from_dict(old)
    assert t.classes == ["yes", "no"] and t.decode(torch.tensor([[0.9]]))["b"] == ["no"]


def test_each_task_type_owns_its_headline_metrics():
    """One home for the headline metrics: the Task class. Its first is the main metric (per-epoch
    lines, curves, train/<task>/<metric>), every one is a metric the type reports, and the
    terminal table and `compare` read them from the class."""
    from polyhead.engine.compare import compared_metrics
    from polyhead.engine.summary import metrics_table
    from polyhead.tasks import TASK_TYPES

    assert {name: cls.main_metric for name, cls in TASK_TYPES.items()} == {
        "multiclass": "accuracy", "binary": "f1", "multilabel": "micro_f1"}
    for name, cls in TASK_TYPES.items():
        config = TaskConfig(type=name, classes=[str(i) for i in range(10)], top_k=3)
        assert cls.main_metric == cls.headline_metrics[0]
        reported = set(cls.scalar_metrics(config)) | {"top5_accuracy"}  # top-k: whichever k is configured
        assert set(cls.headline_metrics) <= reported, name
    binary = build_task("red", TaskConfig(type="binary", classes=["no", "yes"]))
    assert compared_metrics(binary) == ("f1", "accuracy")
    assert compared_metrics(build_task("tags", TaskConfig(type="multilabel", classes=["a", "b"]))) == ("micro_f1",)
    table = metrics_table({"red": {"n": 4, "accuracy": 0.75, "f1": 0.5, "precision": 1.0}}, {"red": binary}, "t")
    shown = next(iter(table.columns[3].cells))
    assert shown == "f1 0.5000  accuracy 0.7500"  # headline order; precision is not a headline metric


def test_multilabel_metrics_with_a_single_label():
    task = build_task("one", TaskConfig(type="multilabel", classes=["denim"]))
    m = task.metrics(torch.tensor([[0.9], [0.2], [0.7]]), torch.tensor([[1.0], [0.0], [0.0]]))
    assert m["per_label"]["denim"]["precision"] == 0.5 and m["per_label"]["denim"]["recall"] == 1.0
    assert m["macro_f1"] == pytest.approx(2 / 3)
