"""`training.channels_last` (MultiTaskModel.use_channels_last): NHWC activations change speed, not results."""

from __future__ import annotations

import copy

import pytest
import torch

from polyhead.config.schema import Config, TaskConfig
from polyhead.engine.fit import build_model_from_config
from polyhead.tasks import build_tasks


def _model():
    cfg = Config()
    cfg.tasks = {"kind": TaskConfig(type="multiclass", classes=["a", "b", "c"]),
                 "flag": TaskConfig(type="binary", classes=["no", "yes"], positive="yes")}
    cfg.data.image_size, cfg.data.channels = [16, 16], 3
    cfg.model.small_cnn.channels, cfg.model.head.hidden = [8, 16, 32], [16]
    torch.manual_seed(0)
    return build_model_from_config(cfg, build_tasks(cfg.tasks))[0]


@pytest.mark.parametrize("training", [False, True])
def test_channels_last_gives_the_same_outputs_and_gradients(training):
    """The same weights in NCHW and NHWC: the same logits (eval and train mode, where BatchNorm uses
    the batch's statistics) and, in train mode, the same gradients, within float rounding."""
    nchw = _model().use_channels_last(False).train(training)
    nhwc = copy.deepcopy(nchw).use_channels_last(True).train(training)
    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    a, b = nchw(images), nhwc(images)
    assert nhwc.normalize(images).is_contiguous(memory_format=torch.channels_last)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5)
    if training:
        sum(v.square().mean() for v in a.values()).backward()
        sum(v.square().mean() for v in b.values()).backward()
        for (name, p), q in zip(nchw.named_parameters(), nhwc.parameters()):
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-3, atol=1e-5, msg=name)
