"""Per-task losses by name (polyhead.losses): focal and asymmetric against hand computations,
their reductions to the cross-entropy, option checks and user-registered losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from polyhead.config.schema import TaskConfig
from polyhead.errors import ConfigError, PolyheadError
from polyhead.losses import LOSSES, register_loss
from polyhead.tasks import build_task


def _task(type_, classes, **kw):
    return build_task("t", TaskConfig(type=type_, classes=classes, **kw))


LOGITS3 = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, -0.3]])
Y3 = torch.tensor([0, 2])
LOGIT1 = torch.tensor([[1.5], [-0.5], [0.3]])
Y1 = torch.tensor([1.0, 0.0, 0.0])
LOGITSM = torch.tensor([[1.0, -2.0], [0.0, 3.0]])
YM = torch.tensor([[1.0, 0.0], [0.0, 1.0]])


def _sig(x):
    return 1 / (1 + math.exp(-x))


def test_default_loss_is_todays_cross_entropy_and_bce():
    mc = _task("multiclass", ["a", "b", "c"], class_weights=[1.0, 2.0, 0.5], label_smoothing=0.1)
    want = F.cross_entropy(LOGITS3, Y3, weight=torch.tensor([1.0, 2.0, 0.5]), label_smoothing=0.1)
    assert torch.equal(mc.labelled_loss(LOGITS3, Y3), want)
    b = _task("binary", ["0", "1"], pos_weight=3.0)
    assert torch.equal(b.labelled_loss(LOGIT1, Y1),
                       F.binary_cross_entropy_with_logits(LOGIT1[:, 0], Y1, pos_weight=torch.tensor(3.0)))


def test_focal_gamma_zero_is_cross_entropy():
    mc = _task("multiclass", ["a", "b", "c"], loss="focal", loss_args={"gamma": 0.0}, class_weights=[1.0, 2.0, 0.5])
    want = F.cross_entropy(LOGITS3, Y3, weight=torch.tensor([1.0, 2.0, 0.5]))
    assert torch.allclose(mc.labelled_loss(LOGITS3, Y3), want, atol=1e-6)
    b = _task("binary", ["0", "1"], loss="focal", loss_args={"gamma": 0}, pos_weight=2.0)
    want = F.binary_cross_entropy_with_logits(LOGIT1[:, 0], Y1, pos_weight=torch.tensor(2.0))
    assert torch.allclose(b.labelled_loss(LOGIT1, Y1), want, atol=1e-6)
    ml = _task("multilabel", ["x", "y"], loss="focal", loss_args={"gamma": 0})
    assert torch.allclose(ml.labelled_loss(LOGITSM, YM), F.binary_cross_entropy_with_logits(LOGITSM, YM), atol=1e-6)


def test_focal_multiclass_by_hand():
    mc = _task("multiclass", ["a", "b", "c"], loss="focal", loss_args={"gamma": 2.0})
    expect = []
    for row, y in zip(LOGITS3.tolist(), Y3.tolist()):
        p = math.exp(row[y]) / sum(math.exp(v) for v in row)
        expect.append(-(1 - p) ** 2 * math.log(p))
    assert mc.labelled_loss(LOGITS3, Y3).item() == pytest.approx(sum(expect) / 2, rel=1e-5)


def test_focal_binary_with_alpha_by_hand():
    b = _task("binary", ["0", "1"], loss="focal", loss_args={"gamma": 2.0, "alpha": 0.25})
    expect = []
    for x, t in zip(LOGIT1[:, 0].tolist(), Y1.tolist()):
        p = _sig(x)
        expect.append(-0.25 * (1 - p) ** 2 * math.log(p) if t else -0.75 * p ** 2 * math.log(1 - p))
    assert b.labelled_loss(LOGIT1, Y1).item() == pytest.approx(sum(expect) / 3, rel=1e-5)


def test_asymmetric_by_hand_and_reduces_to_bce():
    ml = _task("multilabel", ["x", "y"], loss="asymmetric",
               loss_args={"gamma_pos": 1.0, "gamma_neg": 4.0, "clip": 0.05})
    expect = []
    for row, trow in zip(LOGITSM.tolist(), YM.tolist()):
        for x, t in zip(row, trow):
            p = _sig(x)
            if t:
                expect.append(-(1 - p) * math.log(p))
            else:
                pm = max(p - 0.05, 0.0)
                expect.append(-pm ** 4 * math.log(1 - pm))
    assert ml.labelled_loss(LOGITSM, YM).item() == pytest.approx(sum(expect) / 4, rel=1e-5)
    plain = _task("multilabel", ["x", "y"], loss="asymmetric", loss_args={"gamma_pos": 0, "gamma_neg": 0, "clip": 0})
    assert torch.allclose(plain.labelled_loss(LOGITSM, YM), F.binary_cross_entropy_with_logits(LOGITSM, YM),
                          atol=1e-6)


@pytest.mark.parametrize("type_,classes,loss,logits,targets", [
    ("multiclass", ["a", "b", "c"], "focal", LOGITS3 * 20, Y3),
    ("binary", ["0", "1"], "focal", LOGIT1 * 30, Y1),
    ("multilabel", ["x", "y"], "focal", LOGITSM * 30, YM),
    ("multilabel", ["x", "y"], "asymmetric", LOGITSM * 30, YM),
    ("binary", ["0", "1"], "asymmetric", LOGIT1 * 30, Y1),
])
def test_gradients_finite_even_for_confident_logits(type_, classes, loss, logits, targets):
    task = _task(type_, classes, loss=loss)
    x = logits.clone().requires_grad_(True)
    value = task.labelled_loss(x, targets)
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value)
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_missing_labels_are_masked_before_the_loss():
    b = _task("binary", ["0", "1"], loss="focal")
    mask = torch.tensor([True, False, True])
    full = b.loss(LOGIT1, Y1, mask)
    assert torch.allclose(full, b.labelled_loss(LOGIT1[[0, 2]], Y1[[0, 2]]))
    assert b.loss(LOGIT1, Y1, torch.zeros(3, dtype=torch.bool)) is None


@pytest.mark.parametrize("kw,needle", [
    ({"loss": "nope"}, "tasks.t.loss"),
    ({"loss": "asymmetric"}, "'asymmetric' is for binary and multilabel tasks, not multiclass"),
    ({"loss": "focal", "label_smoothing": 0.1}, "tasks.t.label_smoothing does not apply to loss 'focal'"),
    ({"loss": "focal", "loss_args": {"gama": 2}}, "unknown tasks.t.loss_args key(s) for 'focal': gama"),
    ({"loss": "focal", "loss_args": {"gamma": -1}}, "tasks.t.loss_args.gamma must be a number >= 0"),
    ({"loss": "focal", "loss_args": {"alpha": 0.25}}, "tasks.t.class_weights"),
])
def test_refused_options_one_line(kw, needle):
    with pytest.raises(ConfigError) as err:
        _task("multiclass", ["a", "b"], **kw)
    assert needle in str(err.value) and "\n" not in str(err.value)


@pytest.fixture
def registered():
    names = []

    def add(name, fn, **kw):
        register_loss(name, **kw)(fn)
        names.append(name)

    yield add
    for n in names:
        LOSSES.pop(n, None)


def test_user_loss_gets_its_args(registered):
    seen = {}

    def scaled_bce(logits, targets, task, scale=1.0):
        seen["scale"] = scale
        return scale * F.binary_cross_entropy_with_logits(logits, targets)

    registered("scaled_bce_test", scaled_bce, types=("multilabel",))
    ml = _task("multilabel", ["x", "y"], loss="scaled_bce_test", loss_args={"scale": 3.0})
    assert torch.allclose(ml.labelled_loss(LOGITSM, YM), 3 * F.binary_cross_entropy_with_logits(LOGITSM, YM))
    assert seen["scale"] == 3.0
    with pytest.raises(ConfigError, match="unknown tasks.t.loss_args key"):
        _task("multilabel", ["x", "y"], loss="scaled_bce_test", loss_args={"scael": 3.0})


def test_user_loss_not_a_scalar_is_refused_when_built(registered):
    registered("per_row_test", lambda logits, targets, task: F.cross_entropy(logits, targets, reduction="none"))
    with pytest.raises(PolyheadError, match=r"loss 'per_row_test' of task 't' must return a scalar.*shape \[2\]"):
        _task("multiclass", ["a", "b"], loss="per_row_test")
    task = build_task("t", TaskConfig(type="multiclass", loss="per_row_test"))  # classes unknown: checked later
    with pytest.raises(PolyheadError, match="must return a scalar"):
        import pandas as pd
        task.fit_classes(pd.Series(["a", "b"]), "train.csv")


def test_register_loss_refuses_a_wrong_signature_and_a_taken_name():
    with pytest.raises(PolyheadError, match=r"must take \(logits, targets, task, \*\*loss_args\)"):
        register_loss("two_args_test")(lambda logits, targets: logits.sum())
    with pytest.raises(PolyheadError, match="already registered"):
        register_loss("focal")(lambda logits, targets, task: logits.sum())
    assert "two_args_test" not in LOSSES


def test_loss_and_its_args_from_the_command_line(tmp_path, capsys):
    from polyhead.cli.main import main

    (tmp_path / "c.yaml").write_text("tasks:\n  red: {type: binary}\ndata: {train_table: x.csv}\n")
    assert main(["train", str(tmp_path / "c.yaml"), "tasks.red.loss=focal", "tasks.red.loss_args.gamma=1.5",
                 "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "loss: focal" in printed and "gamma: 1.5" in printed
    assert main(["train", str(tmp_path / "c.yaml"), "tasks.red.loss=asymmetric", "tasks.red.loss_args.clip=2",
                 "--print-config"]) == 2
    assert "tasks.red.loss_args.clip must be a number >= 0.0 and <= 1.0, got 2" in capsys.readouterr().err


def test_class_weights_must_match_inferred_classes():
    import pandas as pd

    task = build_task("t", TaskConfig(type="multiclass", class_weights=[1.0, 2.0]))
    with pytest.raises(ConfigError, match=r"tasks.t.class_weights has 2 weights but the task has 3 classes \(a, b, c\)"):
        task.fit_classes(pd.Series(["a", "b", "c"]), "train.csv")


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_tasks_build_under_no_grad_and_inference_mode(mode):
    with mode():
        task = _task("multilabel", ["x", "y"], loss="asymmetric")
    assert task.labelled_loss(LOGITSM, YM).ndim == 0
