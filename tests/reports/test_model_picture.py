"""The model picture (model.png / model.svg) drawn from the model summary, and its place in a run."""

from __future__ import annotations

import json
import re

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.patches import FancyBboxPatch

from polyhead.cli.main import main
from polyhead.model.backbones import build_backbone
from polyhead.model.branching import BranchedBackbone
from polyhead.model.multitask import MultiTaskModel
from polyhead.model.summary import model_summary
from polyhead.reports.model_picture import draw_model, write_model_picture

HEADS = {"category": 5, "sleeve_length_long_name": 1, "tags": 3}


def _summary(branched: bool) -> dict:
    backbone = build_backbone("small_cnn", in_chans=3, small_cnn={"blocks": 3, "channels": [4, 8, 8]})
    if branched:
        backbone = BranchedBackbone(backbone, "blocks.0", {"g1": ["category", "tags"], "g2": ["sleeve_length_long_name"]})
    model = MultiTaskModel(backbone, HEADS, mean=[0.5] * 3, std=[0.5] * 3)
    return model_summary(model, (3, 16, 16), schedule={"freeze_epochs": 2, "unfreeze_stages": 1, "lr": 0.1,
                                                        "backbone_lr": None, "layer_decay": 0.5})


@pytest.mark.parametrize("branched", [False, True])
def test_picture_lists_every_head_and_stage_with_shapes(tmp_path, branched):
    png, svg = write_model_picture(_summary(branched), tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = svg.read_text()
    shown = " ".join(re.findall(r"<text[^>]*>([^<]*)</text>", text)).replace("&#39;", "'")
    for head, outputs in HEADS.items():
        assert f"head '{head}'" in shown and f"→ {outputs} ·" in shown, head
    for stage in ("blocks.0", "blocks.1", "blocks.2"):
        assert stage in shown
    # by hand: 16x16 input, each block halves the side (ceil): 4x8x8, 8x4x4, 8x2x2
    assert "4×8×8" in shown and "8×4×4" in shown and "8×2×2" in shown
    assert "frozen" in shown and "trains from epoch 3, lr ×0.5" in shown  # top stage: lr*d / lr = 0.5
    if branched:
        assert "branch 'g1'" in shown and "branch 'g2'" in shown


def test_every_label_fits_inside_its_box():
    fig = draw_model(_summary(branched=True))
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    ax = fig.axes[0]
    boxes = [p.get_window_extent(renderer) for p in ax.patches if isinstance(p, FancyBboxPatch)]
    labels = [t for t in ax.texts if t.get_text() and not t.get_text().startswith("model")]
    assert len(boxes) == len(labels) > 5
    for label in labels:
        bb = label.get_window_extent(renderer)
        box = next(b for b in boxes if b.contains(*bb.get_points().mean(axis=0)))
        assert box.x0 <= bb.x0 and bb.x1 <= box.x1 and box.y0 <= bb.y0 and bb.y1 <= box.y1, label.get_text()
    figure = fig.bbox
    assert all(figure.x0 <= b.x0 and b.x1 <= figure.x1 for b in boxes)  # nothing cut off at the edges


def test_a_run_with_partial_unfreezing_shows_stages_and_picture(dataset):
    argv = ["train", str(dataset / "config.yaml"), f"output_dir={dataset / 'runs'}", "run_name=u", "training.epochs=2",
            "training.freeze_backbone_epochs=1", "training.unfreeze_stages=1", "optimizer.layer_decay=0.5",
            "model.small_cnn.blocks=3", "model.small_cnn.channels=[8,16,16]"]
    assert main(argv) == 0
    run = dataset / "runs" / "u"
    summary = json.loads((run / "model_summary.json").read_text())
    assert [(s["stage"], s["trains"]) for s in summary["stages"]] == [
        ("blocks.0", "no"), ("blocks.1", "no"), ("blocks.2", "from epoch 2")]
    assert summary["stages"][2]["lr_multiplier"] == pytest.approx(0.5)
    assert (run / "model.png").is_file() and "head 'tags'" in (run / "model.svg").read_text().replace("&#39;", "'")
    html = (run / "report.html").read_text()
    assert 'alt="model.png"' in html and "backbone stages, bottom to top" in html
    assert "<td>blocks.2</td>" in html


def test_too_many_stages_is_one_line_before_training(dataset, capsys):
    argv = ["train", str(dataset / "config.yaml"), f"output_dir={dataset / 'runs'}", "training.unfreeze_stages=3"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "training.unfreeze_stages=3 but the backbone has 2 stages" in err


@pytest.mark.parametrize("override, expected", [("training.unfreeze_stages=-1", "training.unfreeze_stages"),
                                                ("optimizer.layer_decay=1.5", r"optimizer.layer_decay.*\(0, 1\]"),
                                                ("optimizer.layer_decay=0", "optimizer.layer_decay")])
def test_bad_values_are_one_line(dataset, capsys, override, expected):
    assert main(["train", str(dataset / "config.yaml"), f"output_dir={dataset / 'runs'}", override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(expected, err), err
