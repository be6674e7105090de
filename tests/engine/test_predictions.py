"""`predict`: sources (image files, folders, tables), Parquet and CSV output, unreadable images."""

from __future__ import annotations

import io

import pandas as pd
import pyarrow.parquet as pq
import pytest

import polyhead
from polyhead.cli.main import build_parser, main
from polyhead.errors import ImageError


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(root, run folder): one epoch on 48 generated images (tags include "[]" rows)."""
    from conftest import make_dataset, write_config

    root = tmp_path_factory.mktemp("predict")
    make_dataset(root, n=48).to_csv(root / "labels.csv", index=False)
    write_config(root / "config.yaml", "labels.csv", epochs=1)
    assert main(["train", str(root / "config.yaml"), f"output_dir={root / 'runs'}", "run_name=r"]) == 0
    return root, root / "runs" / "r"


def _images(root) -> list[str]:
    return sorted(str(p) for p in (root / "images").glob("*.png"))


def test_parquet_when_the_first_batch_gets_no_tag(run, tmp_path):
    """The images ordered so that no image of the first batch is over the threshold and a later one
    is: the file is written, with `tags` as list<string> and float probabilities."""
    root, run_dir = run
    predictor = polyhead.load(run_dir, device="cpu")
    probs = predictor.predict(_images(root), batch_size=4, show_progress=False)
    labels = predictor.tasks["tags"].classes
    top = probs[[f"tags_prob_{c}" for c in labels]].max(axis=1)
    ordered = probs.assign(top=top).sort_values("top")
    threshold = (ordered["top"].iloc[3] + ordered["top"].iloc[-1]) / 2  # above the first 4, below the last
    predictor.tasks["tags"].config.threshold = float(threshold)
    out = tmp_path / "p.parquet"
    predictor.predict_to_file(ordered["image"].tolist(), out, batch_size=4, show_progress=False)
    table = pq.read_table(out)
    assert str(table.schema.field("tags").type) == "list<element: string>"
    assert str(table.schema.field("tags_prob_top").type) == "double"
    assert str(table.schema.field("quadrant_top2").type) == "list<element: string>"
    assert str(table.schema.field("quadrant_top2_prob").type) == "list<element: double>"
    df = table.to_pandas()
    assert [list(v) for v in df["tags"].iloc[:4]] == [[]] * 4 and len(df["tags"].iloc[-1]) >= 1
    assert not (tmp_path / "p.parquet.partial").exists()


def test_parquet_schema_does_not_depend_on_the_rows(run, tmp_path):
    """No image tagged at all: `tags` is still list<string> (not list<null>)."""
    root, run_dir = run
    predictor = polyhead.load(run_dir, device="cpu")
    predictor.tasks["tags"].config.threshold = 0.999999
    out = tmp_path / "none.parquet"
    predictor.predict_to_file(_images(root)[:6], out, batch_size=4, show_progress=False)
    assert str(pq.read_schema(out).field("tags").type) == "list<element: string>"


def test_a_failure_leaves_no_partial_file(run, tmp_path, monkeypatch):
    """Any failure after the first batch (here: the prediction loop itself) removes `<out>.partial`."""
    import polyhead.api as api

    real = api.predict_batches

    def failing(*args, **kwargs):
        for i, item in enumerate(real(*args, **kwargs)):
            if i == 1:
                raise OSError("no space left on device")
            yield item

    monkeypatch.setattr(api, "predict_batches", failing)
    root, run_dir = run
    for name in ("p.parquet", "p.csv"):
        with pytest.raises(OSError, match="no space left"):
            polyhead.load(run_dir, device="cpu").predict_to_file(_images(root), tmp_path / name, batch_size=4,
                                                                  show_progress=False)
        assert list(tmp_path.iterdir()) == [], name


def test_bad_image_policy_in_the_python_api(run, tmp_path):
    root, run_dir = run
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    paths = _images(root)[:5] + [str(broken)] + _images(root)[5:7]
    predictor = polyhead.load(run_dir, device="cpu")
    df = predictor.predict(paths, batch_size=4, show_progress=False)
    assert len(df) == 8 and df["error"].notna().tolist() == [False] * 5 + [True] + [False] * 2
    assert df.loc[5, "error"] == "not an image file, or a format Pillow cannot read"
    assert df.loc[5, ["quadrant", "red", "red_prob", "tags", "tags_prob_top"]].isna().all()
    assert df.loc[0, ["quadrant", "red", "tags"]].notna().all()
    with pytest.raises(ImageError, match=r"cannot read image '.*broken\.png': not an image file"):
        predictor.predict_to_file(paths, tmp_path / "p.parquet", batch_size=4, show_progress=False,
                                  on_bad_image="error")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.png"]  # no output, no .partial


def test_csv_lists_use_the_task_delimiter_and_read_back_as_labels(run, tmp_path):
    """A CSV prediction file is a label table: `top|left`, `[]` for no tag, top-k joined the same way."""
    from polyhead.data.dataset import encode_table
    from polyhead.data.tables import read_table

    root, run_dir = run
    predictor = polyhead.load(run_dir, device="cpu")
    predictor.tasks["tags"].config.threshold = 0.999999  # nothing over it: every cell is []
    out = tmp_path / "p.csv"
    predictor.predict_to_file(_images(root)[:6], out, batch_size=4, show_progress=False)
    cells = pd.read_csv(out, keep_default_na=False)
    assert (cells["tags"] == "[]").all() and (cells["error"] == "").all()
    assert all(len(v.split("|")) == 2 for v in cells["quadrant_top2"])
    assert all(len(v.split("|")) == 2 and float(v.split("|")[0]) >= 0 for v in cells["quadrant_top2_prob"])
    predictor.tasks["tags"].config.threshold = 0.01  # nearly every label over it: "a|b|c" cells
    predictor.predict_to_file(_images(root), out, batch_size=16, show_progress=False)
    cells = pd.read_csv(out, keep_default_na=False)
    assert any("|" in v for v in cells["tags"]), cells["tags"].tolist()
    assert not any(v.startswith("[\"") for v in cells["tags"])  # not JSON
    split = encode_table(read_table(out), {"tags": predictor.tasks["tags"]})
    expected = predictor.predict(_images(root), show_progress=False)["tags"]
    labels = predictor.tasks["tags"].classes
    assert [[c for c, on in zip(labels, row) if on] for row in split.targets["tags"]] == expected.tolist()


def test_cli_single_image_stdout_and_flags(run, tmp_path, capsys):
    root, run_dir = run
    one = _images(root)[0]
    assert main(["predict", str(run_dir), "--images", one, "--out", "-", "--num-workers", "0"]) == 0
    out, err = capsys.readouterr()
    df = pd.read_csv(io.StringIO(out))
    assert df["image"].tolist() == [one] and "wrote 1 predictions to stdout" in err
    assert main(["predict", str(run_dir), "--images", *_images(root)[:3], "--out", str(tmp_path / "p.csv"),
                 "--num-workers", "0"]) == 0
    assert len(pd.read_csv(tmp_path / "p.csv")) == 3


def test_cli_table_without_the_image_column_names_the_flag(run, tmp_path, capsys):
    root, run_dir = run
    pd.read_csv(root / "labels.csv").rename(columns={"image": "path"}).to_csv(tmp_path / "t.csv", index=False)
    argv = ["predict", str(run_dir), "--table", str(tmp_path / "t.csv"), "--out", str(tmp_path / "p.csv")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no image column 'image' (--image-column" in err, err
    assert main(argv + ["--image-column", "path", "--num-workers", "0"]) == 0


def test_every_predict_and_evaluate_flag_has_help():
    sub = next(a for a in build_parser()._actions if a.dest == "verb")
    for verb in ("predict", "evaluate"):
        for action in sub.choices[verb]._actions:
            assert action.help, (verb, action.option_strings or action.dest)


def test_evaluate_a_bundle_folder_writes_into_its_run(run, capsys):
    root, run_dir = run
    assert main(["evaluate", str(run_dir / "model"), "--table", str(root / "labels.csv"), "--num-workers", "0"]) == 0
    assert (run_dir / "evaluations" / "labels.json").is_file()
    assert (run_dir / "evaluations" / "labels" / "plots").is_dir()
    assert not (run_dir / "model" / "evaluations").exists()


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_a_table_streams_in_chunks_every_row_once_in_order(run, tmp_path, fmt):
    """A 9-row table (relative paths, one missing image) read 4 rows at a time, 3 images per batch:
    every row exactly once, in the table's order, with its 1-based row number, and the probabilities
    of the model applied to the decoded images directly."""
    import numpy as np
    import torch
    from PIL import Image

    root, run_dir = run
    names = [f"images/{i:04d}.png" for i in (5, 0, 7, 7, 3, 11, 2, 9, 1)]
    names[4] = "images/missing.png"
    table = pd.DataFrame({"image": names, "note": list("abcdefghi")})
    path = root / f"chunked.{fmt}"
    {"csv": lambda: table.to_csv(path, index=False), "parquet": lambda: table.to_parquet(path),
     "jsonl": lambda: table.to_json(path, orient="records", lines=True)}[fmt]()
    predictor = polyhead.load(run_dir, device="cpu")
    out = tmp_path / "p.parquet"
    predictor.predict_to_file(path, out, chunk_rows=4, batch_size=3, show_progress=False)
    got = pd.read_parquet(out)

    assert got["image"].tolist() == [str((root / n).resolve()) for n in names]
    assert got["row"].tolist() == list(range(1, 10))
    assert got["error"].notna().tolist() == [i == 4 for i in range(9)]
    good = [i for i in range(9) if i != 4]
    pixels = [np.asarray(Image.open(root / names[i]).convert("RGB")) for i in good]  # already 16 x 16
    images = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous()  # uint8 [8, 3, 16, 16]
    with torch.inference_mode():
        probs = torch.sigmoid(predictor.bundle.model.eval()(images)["red"][:, 0])  # binary: one logit
    assert got["red_prob"].iloc[good].to_numpy() == pytest.approx(probs.numpy(), abs=1e-5)


def test_predict_on_two_processes_is_the_one_process_output(run, tmp_path, capsys):
    """Issue 13: `--devices 2` shards a table read in chunks (chunk_rows smaller than the table, an odd
    number of rows, one unreadable image) over 2 processes; the one Parquet file holds every row once,
    in the table's order, with the single-process predictions."""
    root, run_dir = run
    df = pd.read_csv(root / "labels.csv").iloc[:45].copy()
    df.loc[7, "image"] = "images/missing.png"
    df.to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "images").symlink_to(root / "images")
    one, two = tmp_path / "one.parquet", tmp_path / "two.parquet"
    base = ["predict", str(run_dir), "--table", str(tmp_path / "t.csv"), "--batch-size", "4", "--num-workers", "0",
            "--device", "cpu"]
    assert main([*base, "--out", str(one)]) == 0
    from polyhead.engine.sharded_predict import predict_sharded

    done = predict_sharded(run_dir, str(tmp_path / "t.csv"), two, processes=2, device="cpu", batch_size=4,
                           num_workers=0, chunk_rows=16)
    assert done.rows == 45 and done.bad_images == 1
    a, b = pd.read_parquet(one), pd.read_parquet(two)
    assert b["row"].tolist() == list(range(1, 46))  # every table row once, in order
    assert b["error"].notna().tolist() == [i == 7 for i in range(45)]
    pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-5)
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "two.csv"), "--devices", "2"]) == 0
    assert "wrote 45 predictions" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "two.csv")["row"].tolist() == list(range(1, 46))
    assert main([*base, "--out", str(tmp_path / "x.parquet"), "--devices", "4096"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--devices 4096 CPU processes: this machine has" in err
