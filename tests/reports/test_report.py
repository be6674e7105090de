"""End to end: a tiny run writes its plots and a self-contained report.html that opens in Chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from browser import chromium
from conftest import make_dataset, write_config
from report_data import check_png

from polyhead.api import fit
from polyhead.cli.main import main
from polyhead.reports.html import write_report

TRAINING_PLOTS = {"losses.png", "metrics.png", "learning_rate.png"}
TEST_PLOTS = {"quadrant_confusion.png", "quadrant_calibration.png", "quadrant_worst.png", "red_roc_pr.png",
              "red_calibration.png", "red_worst.png", "tags_per_label.png", "tags_calibration.png", "tags_worst.png"}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A 2-epoch run with train / val / test splits (one run shared by the tests of this file)."""
    folder = tmp_path_factory.mktemp("report")
    make_dataset(folder, n=120, missing=0.1, with_split=True).to_csv(folder / "labels.csv", index=False)
    write_config(folder / "config.yaml", "labels.csv", epochs=2, extra="")
    result = fit(folder / "config.yaml", ["data.split_column=split", f"output_dir={folder / 'runs'}", "run_name=r"])
    return result.run_dir


def _pngs(run_dir: Path) -> list[Path]:
    return sorted(run_dir.rglob("*.png"))


def test_run_writes_plots_and_report(run):
    assert {p.name for p in (run / "plots" / "training").iterdir()} == TRAINING_PLOTS
    assert {p.name for p in (run / "plots" / "test").iterdir()} == TEST_PLOTS
    assert not (run / "plots" / "val").exists()  # the test split's plots only
    for png in _pngs(run):
        check_png(png, min_side=150)
    history = (run / "history.csv").read_text().splitlines()[0].split(",")
    # the train side of "train vs validation": each task's main metric, once per epoch
    assert {"train/quadrant/accuracy", "train/red/f1", "train/tags/micro_f1"} <= set(history)
    html = (run / "report.html").read_text()
    sources = re.findall(r'<img src="([^"]*)"', html)
    assert len(sources) == len(_pngs(run)) == len(TRAINING_PLOTS | TEST_PLOTS) + 1  # and the model picture
    assert (run / "model.png").is_file()
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing to fetch
    for text in ("test split", "validation split", "quadrant", "macro_f1", "per class", "small_cnn"):
        assert text in html


def test_report_opens_in_chromium_without_errors(run):
    report = run / "report.html"
    errors: list[str] = []
    with chromium() as browser:
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        images = page.evaluate("() => Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
        title = page.title()
    assert errors == []
    assert len(images) == len(_pngs(run))
    assert all(complete and width > 0 for complete, width in images), images
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    assert "polyhead run" in title


def test_evaluate_writes_plots_and_refreshes_the_report(run, tmp_path, capsys):
    table = run.parent.parent / "labels.csv"
    assert main(["evaluate", str(run), "--table", str(table), "--num-workers", "0"]) == 0
    plots = run / "evaluations" / "labels" / "plots"
    assert {p.name for p in plots.iterdir()} == TEST_PLOTS
    html = (run / "report.html").read_text()
    assert html.count("<img ") == len(_pngs(run))
    assert "evaluations/labels/plots/quadrant_confusion.png" in html
    assert str(table.resolve()) in html  # the evaluation's table and metrics are shown
    assert "report.html" in capsys.readouterr().out

    out = tmp_path / "m.json"
    assert main(["evaluate", str(run), "--table", str(table), "--num-workers", "0", "--no-plots",
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["metrics"]["quadrant"]["n"] > 0
    assert not (run / "evaluations" / "m").exists()


def test_report_renders_both_model_summary_formats_and_escapes_text(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(
        {"val": {"<b>cat</b>": {"n": 3, "accuracy": 0.5, "per_class": {"a&b": {"precision": 1.0, "support": 2}}}},
         "epochs_run": 1}))
    (tmp_path / "model_summary.json").write_text(json.dumps(
        {"input_size": [3, 32, 32], "macs_per_image": 1234567,
         "components": [{"component": "backbone (resnet)", "parameters": 10, "trainable": 10, "macs": 1000000},
                        {"component": "total", "parameters": 12, "trainable": 12, "macs": 1234567}]}))
    html = write_report(tmp_path).read_text()
    assert "&lt;b&gt;cat&lt;/b&gt;" in html and "<b>cat</b>" not in html
    assert "a&amp;b" in html
    assert "1,234,567 MACs per image" in html and "<th>macs</th>" in html and "3 × 32 × 32" in html

    (tmp_path / "model_summary.json").write_text(json.dumps(
        [{"component": "head 'x'", "parameters": 5, "trainable": 0}]))
    html = write_report(tmp_path).read_text()
    assert "head &#x27;x&#x27;" in html and "<th>macs</th>" not in html
