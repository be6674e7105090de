"""Train (through the Python API, keeping the model) -> evaluate -> predict through the CLI on a small generated dataset."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from polyhead.cli.main import main
from polyhead.model.bundle import load_bundle


@pytest.fixture(scope="module")
def trained_result(tmp_path_factory):
    """(root, RunResult): trained through the Python API, so the in-memory model is kept."""
    import polyhead
    from conftest import make_dataset, write_config

    root = tmp_path_factory.mktemp("e2e")
    df = make_dataset(root, n=200, missing=0.15)
    df.to_csv(root / "labels.csv", index=False)
    make_dataset(root / "holdout", n=60, seed=1).to_parquet(root / "holdout" / "test.parquet", index=False)
    write_config(root / "config.yaml", "labels.csv", epochs=8)
    result = polyhead.fit(root / "config.yaml", [f"output_dir={root / 'runs'}", "run_name=e2e",
                                                 f"data.test_table={root / 'holdout' / 'test.parquet'}"])
    assert result.run_dir == root / "runs" / "e2e"
    return root, result


@pytest.fixture(scope="module")
def trained(trained_result):
    root, result = trained_result
    return root, result.run_dir


def test_run_folder_contents(trained):
    _, run = trained
    for name in ("config.yaml", "data.json", "history.csv", "metrics.json", "model/bundle.json",
                 "model/backbone.safetensors", "model/heads/quadrant.safetensors", "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name
    history = pd.read_csv(run / "history.csv")
    assert len(history) == 8
    for col in ("train/loss", "train/quadrant/loss", "train/red/loss", "train/tags/loss", "val/loss",
                "val/quadrant/accuracy", "val/red/f1", "val/tags/micro_f1", "lr/heads", "weights/quadrant"):
        assert col in history.columns, col
    assert history["train/loss"].iloc[-1] < history["train/loss"].iloc[0]


def test_learns_every_task_well_above_chance(trained):
    _, run = trained
    metrics = json.loads((run / "metrics.json").read_text())
    test = metrics["test"]
    assert test["quadrant"]["accuracy"] > 0.8  # chance: 0.25
    assert test["red"]["accuracy"] > 0.85  # chance: ~0.5
    assert test["tags"]["micro_f1"] > 0.8
    assert test["quadrant"]["n"] == 60
    assert test["tags"]["n"] == 60  # the "[]" rows (labelled, no tag applies) are scored too


def test_partial_labels_are_scored_on_labelled_rows_only(trained):
    root, run = trained
    data = json.loads((run / "data.json").read_text())
    train = data["train"]
    assert train["labelled"]["quadrant"] == train["rows"]  # no missing quadrant labels
    assert train["labelled"]["red"] < train["rows"]  # ~15% missing
    assert train["labelled"]["tags"] < train["rows"]
    val = json.loads((run / "metrics.json").read_text())["val"]
    assert val["red"]["n"] == data["val"]["labelled"]["red"]
    table = pd.read_csv(root / "labels.csv", keep_default_na=False)
    assert (table["tags"] == "[]").any()  # the data holds "labelled, no tag applies" rows
    assert data["train"]["labelled"]["tags"] + data["val"]["labelled"]["tags"] == int((table["tags"] != "").sum())


def test_empty_list_cells_are_labelled_with_no_tag(trained):
    """A "[]" cell: mask True and all-zero targets; an empty cell: mask False."""
    from polyhead.data.dataset import encode_table
    from polyhead.data.tables import read_table

    root, run = trained
    table = read_table(root / "labels.csv")
    split = encode_table(table, {"tags": load_bundle(run).tasks["tags"]})
    cells = pd.read_csv(root / "labels.csv", keep_default_na=False)["tags"].to_numpy()
    empty_list, blank = cells == "[]", cells == ""
    assert empty_list.sum() > 5 and blank.sum() > 5
    assert split.masks["tags"][empty_list].all() and not split.targets["tags"][empty_list].any()
    assert not split.masks["tags"][blank].any()


def test_evaluate_cli(trained, capsys):
    root, run = trained
    out = root / "eval.json"
    assert main(["evaluate", str(run), "--table", str(root / "holdout" / "test.parquet"), "--out", str(out),
                 "--num-workers", "0"]) == 0
    result = json.loads(out.read_text())["metrics"]
    assert set(result) == {"quadrant", "red", "tags"}
    assert result["quadrant"]["accuracy"] > 0.8
    assert len(result["quadrant"]["confusion_matrix"]) == 4
    assert set(result["tags"]["per_label"]) == {"top", "left", "warm"}
    assert "quadrant" in capsys.readouterr().out


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_predict_folder(trained, suffix):
    root, run = trained
    out = root / f"pred{suffix}"
    assert main(["predict", str(run), "--images", str(root / "holdout" / "images"), "--out", str(out),
                 "--batch-size", "7", "--num-workers", "0"]) == 0
    df = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    assert len(df) == 60
    for col in ("image", "quadrant", "quadrant_prob", "quadrant_top2", "red", "red_prob", "tags",
                "tags_prob_top", "tags_prob_left", "tags_prob_warm"):
        assert col in df.columns, col
    truth = pd.read_parquet(root / "holdout" / "test.parquet")
    truth["image"] = [str((root / "holdout" / p).resolve()) for p in truth["image"]]
    merged = df.merge(truth, on="image", suffixes=("", "_true"))
    assert (merged["quadrant"] == merged["quadrant_true"]).mean() > 0.8
    assert set(merged["red"]) <= {"yes", "no"}


def test_bundle_round_trip_gives_the_trained_models_outputs(trained_result):
    """The bundle loaded from disk computes what the trained model in memory computes."""
    _, result = trained_result
    trained_model = result.model.cpu().eval()
    x = torch.randint(0, 255, (5, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = trained_model(x)
        for path in (result.run_dir, result.run_dir / "model"):  # a run folder or its bundle folder
            bundle = load_bundle(path)
            got = bundle.model.eval()(x)
            assert set(got) == set(expected) == {"quadrant", "red", "tags"}
            for task in expected:
                torch.testing.assert_close(got[task], expected[task], rtol=0, atol=1e-5)
            assert {n: t.classes for n, t in bundle.tasks.items()} == {n: t.classes for n, t in result.tasks.items()}
    assert bundle.tasks["quadrant"].classes == ["bl", "br", "tl", "tr"]
    assert bundle.tasks["red"].classes == ["no", "yes"]
    assert bundle.prep.image_size == (16, 16)


def test_python_api_predict_matches_cli_classes(trained):
    import polyhead

    root, run = trained
    predictor = polyhead.load(run, device="cpu")
    df = predictor.predict(root / "holdout" / "test.parquet", show_progress=False)
    assert len(df) == 60 and df["row"].tolist() == list(range(1, 61))
    assert set(df["quadrant"]) <= {"tl", "tr", "bl", "br"}
