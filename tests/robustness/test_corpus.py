"""The bad-input corpus: every case is a user's input and the exact outcome polyhead gives it.

Outcomes: an error (exit status 2, one line on stderr naming file/row/column/key), a problem
line from `polyhead validate-data` (exit status 1 for bad images, 0 for warnings only), a row
skipped by `data.on_bad_image=skip`, or "accepted" with what the input became. Every case id
below is listed in docs/robustness.md (checked by `test_every_case_is_documented`)."""

from __future__ import annotations

import csv
import json
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from conftest import make_dataset, write_config
from polyhead.cli.main import main
from polyhead.data.images import load_image

SIZE = (16, 16)


# ---- helpers ---------------------------------------------------------------------------------
def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def user_error(capsys, argv, pattern: str) -> str:
    """The CLI ends with status 2 and one stderr line matching `pattern`."""
    code, out, err = cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, (code, err)
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def png_header_only(path: Path, width: int, height: int) -> None:
    """A valid-looking PNG whose IHDR declares width x height, with a tiny IDAT (never decodable)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))


def solid(color, mode="RGB", size=(16, 16)) -> Image.Image:
    return Image.new(mode, size, color)


# ---- the image corpus: one table, one validate-data run ---------------------------------------
def _make_special_images(folder: Path) -> dict[str, str]:
    """case id -> image path as written in the table (relative unless the case is about that)."""
    (folder / "special").mkdir()
    s = folder / "special"
    jpeg = s / "good.jpg"
    # 64x64 noise: most of the file is scan data, where a cut download usually ends
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(jpeg, quality=95)
    data = jpeg.read_bytes()
    (s / "truncated.jpg").write_bytes(data[: int(len(data) * 0.7)])
    png = s / "good.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(png)
    data = png.read_bytes()
    (s / "truncated.png").write_bytes(data[: int(len(data) * 0.6)])
    (s / "zero.png").write_bytes(b"")
    (s / "text.jpg").write_text("this is not an image\n")
    (s / "folder.png").mkdir()
    solid((0, 255, 255, 0), "CMYK").save(s / "cmyk.jpg", quality=95)  # pure red in CMYK
    Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16)).save(s / "deep16.png")
    solid((10, 200, 10), size=(1, 1)).save(s / "one_pixel.png")
    frames = [solid((250, 0, 0)), solid((0, 0, 250))]
    frames[0].save(s / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    (s / "my images").mkdir()
    solid((0, 0, 200)).save(s / "my images" / "ünïcødé café.png")
    solid((200, 200, 0)).save(s / "absolute.png")
    png_header_only(s / "bomb.png", 40000, 40000)  # 1.6e9 pixels: above twice the limit
    png_header_only(s / "over_limit.png", 10000, 10000)  # 1e8: above the limit, under twice it
    # a complete-looking PNG (IEND present) whose compressed pixel data is garbage: only decoding finds it
    raw = b"\x78\x9c" + bytes(range(250, 256)) * 8
    good = png.read_bytes()
    start = good.index(b"IDAT") - 4
    length = struct.unpack(">I", good[start:start + 4])[0]
    idat = struct.pack(">I", len(raw)) + b"IDAT" + raw + struct.pack(">I", zlib.crc32(b"IDAT" + raw))
    (s / "short_data.png").write_bytes(good[:start] + idat + good[start + 12 + length:])
    return {
        "img-missing-file": "special/nope.png",
        "img-zero-bytes": "special/zero.png",
        "img-truncated-jpeg": "special/truncated.jpg",
        "img-truncated-png": "special/truncated.png",
        "img-text-named-jpg": "special/text.jpg",
        "img-directory": "special/folder.png",
        "img-decompression-bomb": "special/bomb.png",
        "img-over-pixel-limit": "special/over_limit.png",
        "img-corrupt-pixel-data": "special/short_data.png",
        "img-cmyk-jpeg": "special/cmyk.jpg",
        "img-16bit-png": "special/deep16.png",
        "img-1x1": "special/one_pixel.png",
        "img-animated-gif": "special/animated.gif",
        "img-unicode-spaces-path": "special/my images/ünïcødé café.png",
        "img-absolute-path": str((s / "absolute.png").resolve()),
        "img-relative-path": "special/good.jpg",
    }


# case id -> (kind, message regex) in header mode; None = accepted
IMAGE_CASES = {
    "img-missing-file": ("missing", r"nope\.png: file not found$"),
    "img-zero-bytes": ("empty", r"zero\.png: the file is empty \(0 bytes\)$"),
    "img-truncated-jpeg": ("truncated", r"truncated\.jpg: truncated JPEG: no end-of-image marker \(FF D9\) after the image data$"),
    "img-truncated-png": ("truncated", r"truncated\.png: truncated PNG: no IEND chunk"),
    "img-text-named-jpg": ("not_an_image", r"text\.jpg: not an image file, or a format Pillow cannot read"),
    "img-directory": ("not_a_file", r"folder\.png: it is a directory, not a file"),
    "img-decompression-bomb": ("too_large", r"bomb\.png: .*1600000000 pixels.*MAX_IMAGE_PIXELS"),
    "img-over-pixel-limit": ("too_large", r"over_limit\.png: 10000x10000 = 100000000 pixels is above Pillow's "
                                          r"decompression-bomb limit PIL\.Image\.MAX_IMAGE_PIXELS"),
    "img-corrupt-pixel-data": None,  # header mode accepts it; --full refuses it (test below)
    "img-cmyk-jpeg": None, "img-16bit-png": None, "img-1x1": None, "img-animated-gif": None,
    "img-unicode-spaces-path": None, "img-absolute-path": None, "img-relative-path": None,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A folder with 20 good images (train/val/test by a split column) plus one train row per
    special image; `validate-data --out problems.json` has been run on it once."""
    folder = tmp_path_factory.mktemp("corpus")
    base = make_dataset(folder, n=20, with_split=True)
    special = _make_special_images(folder)
    extra = pd.DataFrame([{"image": p, "quadrant": "tl", "red": "yes", "tags": "top", "split": "train"}
                          for p in special.values()])
    table = pd.concat([base, extra], ignore_index=True)
    table.to_csv(folder / "labels.csv", index=False)
    rows = {case: len(base) + 1 + i for i, case in enumerate(special)}  # 1-based table rows
    write_config(folder / "config.yaml", "labels.csv", epochs=1, extra="")
    argv = ["validate-data", folder / "config.yaml", "data.split_column=split", "--out", folder / "problems.json"]
    code = main([str(a) for a in argv])
    problems = json.loads((folder / "problems.json").read_text())
    return {"folder": folder, "base": base, "special": special, "rows": rows, "code": code, "problems": problems}


@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_image_case_header_mode(corpus, case):
    found = [p for p in corpus["problems"] if p["row"] == corpus["rows"][case] and p["severity"] == "error"]
    expected = IMAGE_CASES[case]
    if expected is None:
        assert found == [], found
        return
    (p,) = found
    kind, pattern = expected
    line = f"{p['table']}, row {p['row']}, column '{p['column']}': {p['image']}: {p['message']}"
    assert p["kind"] == kind and p["split"] == "train" and p["column"] == "image"
    assert p["table"].endswith("labels.csv [train]") and re.search(pattern, line), line


def test_validate_data_lines_and_exit_status(corpus, capsys):
    folder = corpus["folder"]
    assert corpus["code"] == 1  # bad images found
    code, out, _ = cli(capsys, "validate-data", folder / "config.yaml", "data.split_column=split")
    assert code == 1
    row = corpus["rows"]["img-missing-file"]
    expected = f"error: {folder / 'labels.csv'} [train], row {row}, column 'image': {folder / 'special/nope.png'}: file not found"
    assert expected in out.splitlines(), out
    bad = sum(1 for v in IMAGE_CASES.values() if v is not None)
    assert re.search(rf"checked 36 rows \(train 28, val 4, test 4\) and 36 distinct images \(header\): {bad} error\(s\)", out)


def test_validate_data_csv_out_and_clean_exit(corpus, capsys, tmp_path):
    """Exit status 0 on a clean table; --out FILE.csv lists the problems."""
    folder = corpus["folder"]
    corpus["base"].to_csv(folder / "clean.csv", index=False)
    code, out, _ = cli(capsys, "validate-data", folder / "config.yaml", "data.split_column=split",
                       f"data.train_table={folder / 'clean.csv'}", "--out", tmp_path / "p.csv")
    assert code == 0 and "0 error(s), 0 warning(s)" in out
    assert (tmp_path / "p.csv").read_text().splitlines() == [
        "kind,severity,split,table,row,column,image,message"]


def test_full_mode_decodes(corpus, capsys, tmp_path):
    """img-corrupt-pixel-data: its header and IEND are fine, decoding fails (--full only)."""
    folder, row = corpus["folder"], corpus["rows"]["img-corrupt-pixel-data"]
    code, out, _ = cli(capsys, "validate-data", folder / "config.yaml", "data.split_column=split", "--full",
                       "--out", tmp_path / "p.json")
    assert code == 1
    found = [p for p in json.loads((tmp_path / "p.json").read_text()) if p["row"] == row]
    assert len(found) == 1 and found[0]["kind"] == "decode", found
    assert re.search(r"truncated|corrupt", found[0]["message"]), found[0]["message"]
    assert "(full)" in out


@pytest.mark.parametrize("case, check", [
    ("img-cmyk-jpeg", lambda t: t.shape == (3, 16, 16) and t[0].float().mean() > 200 and t[1].float().mean() < 60),
    ("img-16bit-png", lambda t: t.shape == (3, 16, 16) and int(t.min()) == 255),  # 65535 -> 255, not clipped
    ("img-1x1", lambda t: t.shape == (3, 16, 16) and t[1].float().mean() > 150),
    ("img-animated-gif", lambda t: t[0].float().mean() > 200 and t[2].float().mean() < 60),  # first frame: red
    ("img-unicode-spaces-path", lambda t: t[2].float().mean() > 150),
    ("img-absolute-path", lambda t: t[0].float().mean() > 150 and t[2].float().mean() < 60),
])
def test_accepted_images_become(corpus, case, check):
    """What an accepted image becomes: an RGB uint8 [3, 16, 16] tensor with the expected colours."""
    p = Path(corpus["special"][case])
    tensor = load_image(p if p.is_absolute() else corpus["folder"] / p, channels=3, size=SIZE)
    assert check(tensor), tensor.float().mean(dim=(1, 2))


# ---- tables and labels ---------------------------------------------------------------------------
def _variant(corpus, tmp_path, table: pd.DataFrame, name="labels.csv", config_extra="", **write) -> Path:
    """The base images (absolute paths) with a modified table in tmp_path; returns the config."""
    table = table.copy()
    table["image"] = [str(corpus["folder"] / p) for p in table["image"]]
    if name.endswith(".jsonl"):
        table.to_json(tmp_path / name, orient="records", lines=True)
    elif name.endswith(".parquet"):
        table.to_parquet(tmp_path / name, index=False)
    else:
        table.to_csv(tmp_path / name, index=False, **write)
    write_config(tmp_path / "config.yaml", name, epochs=1, extra=config_extra)
    return tmp_path / "config.yaml"


def test_label_outside_declared_classes(corpus, tmp_path, capsys):
    t = corpus["base"].copy()
    t.loc[2, "quadrant"] = "purple"
    cfg = _variant(corpus, tmp_path, t)
    user_error(capsys, ["train", cfg, "data.split_column=split", "tasks.quadrant.classes=[tl,tr,bl,br]"],
               r"labels\.csv \[train\], row 3, column 'quadrant': label 'purple' is not a class of task "
               r"'quadrant' \(classes: tl, tr, bl, br\)$")


def test_empty_and_nan_labels_are_masked(corpus, tmp_path, capsys):
    """An empty CSV cell, a JSONL null and a Parquet NaN are missing labels: the row trains the other tasks."""
    t = corpus["base"].copy()
    train_rows = t.index[t["split"] == "train"]
    t.loc[train_rows[0], "red"] = None
    t.loc[train_rows[1], "tags"] = None
    t["weight"] = [float(i % 2) for i in range(len(t))]
    t.loc[train_rows[2], "weight"] = float("nan")  # a float column: a real NaN in Parquet
    for name in ("labels.csv", "labels.jsonl", "labels.parquet"):
        cfg = _variant(corpus, tmp_path, t, name=name)
        code, out, _ = cli(capsys, "validate-data", cfg, "data.split_column=split", "+tasks.heavy.type=binary",
                           "tasks.heavy.column=weight")
        n = len(train_rows)
        assert code == 0 and (f"train: {n} rows (labelled per task: quadrant {n}, red {n - 1}, tags {n - 1}, "
                              f"heavy {n - 1})") in out, (name, out)


def test_multilabel_unknown_label(corpus, tmp_path, capsys):
    t = corpus["base"].copy()
    t.loc[0, "tags"] = "top|blue"
    cfg = _variant(corpus, tmp_path, t)
    user_error(capsys, ["train", cfg, "data.split_column=split", "tasks.tags.classes=[top,left,warm]"],
               r"labels\.csv \[test\], row 1, column 'tags': label 'blue' is not a class of task 'tags'")


def test_multilabel_wrong_delimiter_declared(corpus, tmp_path, capsys):
    t = corpus["base"].copy()
    t.loc[2, "tags"] = "top,left"
    cfg = _variant(corpus, tmp_path, t)
    user_error(capsys, ["train", cfg, "data.split_column=split", "tasks.tags.classes=[top,left,warm]"],
               r"row 3, column 'tags': label 'top,left' is not a class of task 'tags' .*; cells are split on "
               r"'\|' \(tasks\.tags\.delimiter\)$")


def test_multilabel_wrong_delimiter_inferred(corpus, tmp_path, capsys):
    t = corpus["base"].copy()
    t.loc[2, "tags"] = "top;left"
    cfg = _variant(corpus, tmp_path, t)
    code, out, _ = cli(capsys, "validate-data", cfg, "data.split_column=split")
    assert code == 0
    assert re.search(r"warning: .*labels\.csv \[train\], row 3, column 'tags': label 'top;left' of task 'tags' "
                     r"contains ';', but cells are split on '\|': set tasks\.tags\.delimiter=';'", out), out


def test_numeric_labels_for_named_classes(corpus, tmp_path, capsys):
    t = corpus["base"].copy()
    t["quadrant"] = [str(i % 4) for i in range(len(t))]
    cfg = _variant(corpus, tmp_path, t)
    user_error(capsys, ["train", cfg, "data.split_column=split", "tasks.quadrant.classes=[tl,tr,bl,br]"],
               r"labels\.csv \[train\], row 3, column 'quadrant': label '2' is not a class of task 'quadrant' .*the column holds a "
               r"number but tasks\.quadrant\.classes are names")


def test_task_column_missing(corpus, tmp_path, capsys):
    cfg = _variant(corpus, tmp_path, corpus["base"])
    user_error(capsys, ["train", cfg, "data.split_column=split", "+tasks.color.type=binary"],
               r"table '.*labels\.csv' has no column 'color' for task 'color' \(set tasks\.color\.column\)")


def test_empty_table(corpus, tmp_path, capsys):
    cfg = _variant(corpus, tmp_path, corpus["base"].iloc[:0])
    user_error(capsys, ["train", cfg], r"table '.*labels\.csv' has no rows$")


def test_one_class_multiclass(corpus, tmp_path, capsys):
    t = corpus["base"].copy()
    t["quadrant"] = "tl"
    cfg = _variant(corpus, tmp_path, t)
    user_error(capsys, ["train", cfg, "data.split_column=split"],
               r"task 'quadrant' has a single class \('tl'\) in '.*labels\.csv' \[train\]; a multiclass task needs")


def test_one_class_binary_warns(corpus, tmp_path, capsys):
    t = corpus["base"].copy()
    t["red"] = "yes"
    cfg = _variant(corpus, tmp_path, t)
    code, out, _ = cli(capsys, "validate-data", cfg, "data.split_column=split")
    assert code == 0
    assert re.search(r"warning: .*labels\.csv \[train\], column 'red': task 'red' has a single class \('yes'\) "
                     r"in the train split", out), out


def test_unknown_split_value(corpus, tmp_path, capsys):
    t = corpus["base"].copy()
    t.loc[4, "split"] = "holdout"
    cfg = _variant(corpus, tmp_path, t)
    user_error(capsys, ["train", cfg, "data.split_column=split"],
               r"labels\.csv, row 5, column 'split': unknown split 'holdout'; expected train, val or test$")


def test_duplicated_rows_and_leak_warn(corpus, tmp_path, capsys):
    t = corpus["base"].copy()
    train = t.index[t["split"] == "train"]
    dup = t.loc[[train[0]]].copy()  # the same image twice in train
    leak = t.loc[[train[1]]].assign(split="val")  # a train image in val
    t = pd.concat([t, dup, leak], ignore_index=True)
    cfg = _variant(corpus, tmp_path, t)
    code, out, _ = cli(capsys, "validate-data", cfg, "data.split_column=split")
    assert code == 0
    assert re.search(rf"warning: .*labels\.csv \[train\], row 21, column 'image': .*0002\.png: duplicated row: "
                     rf"same image as row {train[0] + 1}$", out, re.M), out
    assert re.search(rf"warning: .*labels\.csv \[val\], row 22, column 'image': .*0003\.png: also in the train "
                     rf"split \(.*labels\.csv \[train\], row {train[1] + 1}\): a train/val leak$", out, re.M), out


@pytest.mark.parametrize("case", ["csv-bom", "csv-semicolon"])
def test_csv_dialects_accepted(corpus, tmp_path, capsys, case):
    kw = {"encoding": "utf-8-sig"} if case == "csv-bom" else {"sep": ";"}
    cfg = _variant(corpus, tmp_path, corpus["base"], **kw)
    if case == "csv-bom":
        assert (tmp_path / "labels.csv").read_bytes().startswith(b"\xef\xbb\xbfimage,")
    code, out, _ = cli(capsys, "validate-data", cfg, "data.split_column=split")
    assert code == 0 and "train: 12 rows (labelled per task: quadrant 12, red 12, tags 12)" in out, out


# ---- config and output folder ---------------------------------------------------------------
CONFIG_CASES = {
    "config-unknown-key": (["training.epoch=3"], r"unknown config key 'training\.epoch'"),
    "config-wrong-type": (["training.epochs=abc"], r"bad value for config key 'training\.epochs' \(command line "
                                                   r"'training\.epochs=abc'\): Value 'abc' .* Integer"),
    "config-negative-batch-size": (["data.batch_size=-4"], r"bad value for config key 'data\.batch_size': -4; "
                                                           r"expected an integer > 0$"),
    "config-unknown-backbone": (["model.backbone=resnet_nope"], r"unknown backbone 'model\.backbone=resnet_nope'"),
    "config-unknown-weighting": (["training.weighting=magic"], r"bad value for config key 'training\.weighting': "
                                                               r"'magic'; expected one of .*pcgrad"),
    "config-bad-validate-mode": (["data.validate=deep"], r"data\.validate.*'deep'.*off, header, full"),
    "config-binary-positive-not-a-value": (["tasks.red.positive=maybe"],
                                           r"error: tasks\.red\.positive is 'maybe', which is not one of the values of "
                                           r"column 'red' in .*labels\.csv.*: no, yes$"),
    "config-binary-positive-not-a-class": (["tasks.red.classes=[yes,no]", "tasks.red.positive=maybe"],
                                           r"error: tasks\.red\.positive is 'maybe', which is not one of "
                                           r"tasks\.red\.classes: yes, no$"),
    "config-section-as-value": (["training.early_stopping=true"], r"config key 'training\.early_stopping' is a section "
                                r"\(keys: enabled, patience, min_delta\), not a value .*; set one of its keys, e\.g\. "
                                r"training\.early_stopping\.enabled=true$"),
    "config-task-as-value": (["tasks.quadrant=binary"], r"config key 'tasks\.quadrant' is a section .*e\.g\. "
                                                        r"tasks\.quadrant\.type=binary$"),
    "config-task-key-typo": (["tasks.quadrant.topk=2"], r"unknown config key 'tasks\.quadrant\.topk' .*; did you mean "
                                                        r"'tasks\.quadrant\.top_k'\?"),
    "config-unknown-weighting-arg": (["training.weighting=famo", "training.weighting_args.rate=0.1"],
                                     r"unknown training\.weighting_args key\(s\) for 'famo': rate; accepted: lr, gamma$"),
    "config-monitor-typo": (["training.monitor=val/quadrnt/accuracy"],
                            r"'training\.monitor': 'val/quadrnt/accuracy'; expected one of val/loss, train/loss, .*"
                            r"\(did you mean 'val/quadrant/accuracy'\?\)$"),
    "config-more-devices-than-exist": (["training.devices=4096", "training.accelerator=cpu"],
                                      r"training\.devices=4096 CPU processes: this machine has \d+ core\(s\); use at "
                                      r"most \d+$"),
    "config-nodes-without-launcher": (["training.num_nodes=2", "training.accelerator=cpu"],
                                      r"training\.num_nodes=2: start polyhead on every machine with a launcher"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_config_errors(corpus, capsys, case):
    overrides, pattern = CONFIG_CASES[case]
    user_error(capsys, ["train", corpus["folder"] / "config.yaml", *overrides], pattern)


def test_yaml_boolean_labels_train(corpus, tmp_path, capsys):
    """`classes: [yes, no]` and `positive: yes` unquoted are the labels "yes" and "no"; positive decides."""
    cfg = _variant(corpus, tmp_path, corpus["base"])
    text = cfg.read_text().replace('red: {type: binary, positive: "yes"}', "red: {type: binary, classes: [yes, no], positive: yes}")
    assert "classes: [yes, no], positive: yes}" in text
    cfg.write_text(text)
    code, out, err = cli(capsys, "train", cfg, "data.split_column=split", f"output_dir={tmp_path / 'runs'}",
                         "run_name=yaml")
    assert code == 0, err
    bundle = json.loads((tmp_path / "runs" / "yaml" / "model" / "bundle.json").read_text())
    red = next(t for t in bundle["tasks"] if t["name"] == "red")
    assert red["classes"] == ["no", "yes"] and red["positive"] == "yes"
    data = json.loads((tmp_path / "runs" / "yaml" / "data.json").read_text())
    assert data["train"]["labelled"]["red"] == data["train"]["rows"]
    val = corpus["base"][corpus["base"]["split"] == "val"]
    metrics = json.loads((tmp_path / "runs" / "yaml" / "metrics.json").read_text())
    assert metrics["val"]["red"]["positives"] == int((val["red"] == "yes").sum())


def test_config_file_typo_reads_like_the_command_line(corpus, tmp_path, capsys):
    """config-file-typo: `trainig:` in the YAML file gets the command line's did-you-mean."""
    text = (corpus["folder"] / "config.yaml").read_text().replace("\ntraining:", "\ntrainig:")
    (tmp_path / "typo.yaml").write_text(text.replace("labels.csv", str(corpus["folder"] / "labels.csv")))
    line = user_error(capsys, ["train", tmp_path / "typo.yaml"], r"unknown config key 'trainig' \(in '.*typo\.yaml'\); "
                                                                  r"did you mean 'training'\?")
    cli_line = user_error(capsys, ["train", corpus["folder"] / "config.yaml", "trainig.epochs=1"], "trainig")
    assert line.split("); ")[1] == cli_line.split("); ")[1]


@pytest.mark.parametrize("case, overrides, check", [
    ("config-image-size-int", ["data.image_size=16"], lambda c: c["data"]["image_size"] == [16]),
    ("config-weighting-arg-no-plus", ["training.weighting=pcgrad", "training.weighting_args.mode=parameters"],
     lambda c: c["training"]["weighting_args"] == {"mode": "parameters"}),
])
def test_config_shapes_accepted(corpus, capsys, case, overrides, check):
    code, out, err = cli(capsys, "train", corpus["folder"] / "config.yaml", *overrides, "--print-config")
    assert code == 0 and check(yaml.safe_load(out)), (case, err)


def test_config_presets(corpus, tmp_path, capsys):
    """config-preset-contradiction: the file's defaults list and its own section name two backbones;
    config-preset-replaces-section: model=resnet18 on the command line wins over the file's section."""
    text = (corpus["folder"] / "config.yaml").read_text().replace("labels.csv", str(corpus["folder"] / "labels.csv"))
    (tmp_path / "c.yaml").write_text("defaults: [{model: resnet18}]\n" + text)
    user_error(capsys, ["train", tmp_path / "c.yaml"], r"'model\.backbone: small_cnn' in '.*c\.yaml' contradicts "
                                                       r"'model: resnet18' in its defaults list")
    code, out, err = cli(capsys, "train", corpus["folder"] / "config.yaml", "model=resnet18", "--print-config")
    assert code == 0 and yaml.safe_load(out)["model"]["backbone"] == "resnet18"
    assert err.strip() == ("polyhead train: note: model=resnet18 on the command line replaces the config file's 'model' "
                           "section; not used: model.backbone, model.small_cnn (set any of them after model=resnet18 "
                           "to keep it)")


def test_no_gpu(corpus, tmp_path, capsys, monkeypatch):
    """config-accelerator-no-gpu and predict-device-no-gpu: one line, before any work."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    user_error(capsys, ["train", corpus["folder"] / "config.yaml", "training.accelerator=gpu",
                        f"output_dir={tmp_path / 'runs'}"], r"training\.accelerator=gpu: no GPU found; use cpu or auto$")
    assert not (tmp_path / "runs").exists()
    user_error(capsys, ["predict", corpus["folder"], "--images", corpus["folder"] / "images", "--out",
                        tmp_path / "p.csv", "--device", "gpu"], r"--device gpu: no GPU found; use cpu or auto$")


def test_resume_with_a_changed_model(corpus, tmp_path, capsys):
    """resume-changed-model: refused in one line; the run folder is left byte for byte as it was."""
    cfg = _training_table(corpus, tmp_path, bad=False)
    argv = ["train", cfg, "data.split_column=split", f"output_dir={tmp_path / 'runs'}", "run_name=r",
            "tracking.enabled=false", "report.enabled=false"]
    assert cli(capsys, *argv)[0] == 0
    run = tmp_path / "runs" / "r"
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    user_error(capsys, ["train", "--resume", run, "model.small_cnn.blocks=3"],
               r"cannot resume '.*' with a changed model\.small_cnn\.blocks \(2 -> 3\): .*on resume only these may "
               r"change: training\.epochs, ")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_output_dir_not_writable(corpus, tmp_path, capsys):
    """Stopped before any training, naming the folder; nothing is written elsewhere."""
    cfg = _training_table(corpus, tmp_path, bad=False)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    user_error(capsys, ["train", cfg, "data.split_column=split", f"output_dir={blocker}/runs"],
               rf"cannot write the run folder '{re.escape(str(blocker))}/runs/.*' \(output_dir=.*\): Not a directory$")
    assert blocker.read_text() == "not a folder"
    if os.geteuid() != 0:  # root writes through permissions; everyone else is stopped by them
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        user_error(capsys, ["train", cfg, "data.split_column=split", f"output_dir={locked}/runs"],
                   r"cannot write the run folder .*Permission denied")


# ---- bad images during `polyhead train` ----------------------------------------------------------
def _training_table(corpus, tmp_path, bad: bool = True) -> Path:
    """The 20 base rows plus the accepted special images, and (bad=True) a missing and a corrupt one."""
    special = corpus["special"]
    keep = ["img-cmyk-jpeg", "img-16bit-png", "img-1x1", "img-animated-gif", "img-unicode-spaces-path",
            "img-absolute-path"] + (["img-missing-file", "img-text-named-jpg"] if bad else [])
    extra = pd.DataFrame([{"image": special[k], "quadrant": "tl", "red": "yes", "tags": "top", "split": "train"}
                          for k in keep])
    t = pd.concat([corpus["base"], extra], ignore_index=True)
    t["image"] = [p if Path(p).is_absolute() else str(corpus["folder"] / p) for p in t["image"]]
    t.to_csv(tmp_path / "labels.csv", index=False)
    write_config(tmp_path / "config.yaml", "labels.csv", epochs=1)
    return tmp_path / "config.yaml"


def test_bad_images_stop_training_and_lose_nothing(corpus, tmp_path, capsys):
    cfg = _training_table(corpus, tmp_path)
    runs = tmp_path / "runs"
    (runs / "earlier").mkdir(parents=True)
    (runs / "earlier" / "metrics.json").write_text('{"kept": true}')
    line = user_error(capsys, ["train", cfg, "data.split_column=split", f"output_dir={runs}"],
                      rf"cannot read images: 2 bad image\(s\) found by data\.validate=header, the first: .*labels\.csv "
                      rf"\[train\], row 27, column 'image': .*nope\.png: file not found; full list: "
                      rf"{re.escape(str(runs))}/bad_images\.csv; to go on without those rows set data\.on_bad_image=skip$")
    assert "Traceback" not in line
    listed = list(csv.DictReader(open(runs / "bad_images.csv")))
    assert [(r["row"], r["kind"]) for r in listed] == [("27", "missing"), ("28", "not_an_image")]
    assert sorted(p.name for p in runs.iterdir()) == ["bad_images.csv", "earlier"]  # no half-made run folder
    assert (runs / "earlier" / "metrics.json").read_text() == '{"kept": true}'


def test_skip_bad_images_trains(corpus, tmp_path, capsys):
    """on_bad_image=skip: the missing and the corrupt row are dropped and listed; the accepted odd
    images (CMYK, 16-bit, 1x1, GIF, unicode path, absolute path) train with the rest."""
    cfg = _training_table(corpus, tmp_path)
    code, out, err = cli(capsys, "train", cfg, "data.split_column=split", "data.on_bad_image=skip",
                         f"output_dir={tmp_path / 'runs'}", "run_name=skip")
    assert code == 0, err
    run = tmp_path / "runs" / "skip"
    assert "skipped 2 row(s) with bad images (data.on_bad_image=skip): train 2" in out
    rows = list(csv.DictReader(open(run / "skipped_rows.csv")))
    assert list(rows[0]) == ["split", "table", "row", "image", "reason"]
    assert [(r["split"], r["row"], Path(r["image"]).name, r["reason"]) for r in rows] == [
        ("train", "27", "nope.png", "file not found"),
        ("train", "28", "text.jpg", "not an image file, or a format Pillow cannot read")]
    data = json.loads((run / "data.json").read_text())
    assert data["train"]["skipped"] == 2 and data["train"]["rows"] == 12 + 6 and data["val"]["skipped"] == 0
    assert (run / "model").is_dir() and (run / "metrics.json").is_file()


def test_skip_that_empties_a_split(corpus, tmp_path, capsys):
    t = corpus["base"].copy()
    t.loc[t["split"] == "val", "image"] = "special/nope.png"
    cfg = _variant(corpus, tmp_path, t)
    user_error(capsys, ["train", cfg, "data.split_column=split", "data.on_bad_image=skip"],
               r"every row of the val split \(.*labels\.csv \[val\]\) has a bad image; nothing is left .*"
               r"row 2, column 'image': .*nope\.png: file not found\)$")


def test_skip_that_leaves_a_task_unlabelled(corpus, tmp_path, capsys):
    t = corpus["base"].copy()
    train = t["split"] == "train"
    t.loc[train, "red"] = None
    t.loc[train[train].index[0], ["red", "image"]] = ["yes", "special/zero.png"]  # the only labelled row
    cfg = _variant(corpus, tmp_path, t)
    user_error(capsys, ["train", cfg, "data.split_column=split", "data.on_bad_image=skip", "tasks.red.classes=[no,yes]"],
               r"task 'red' has no labelled row left in the training split after skipping 1 row\(s\)")


def test_validate_off_skips_the_check(corpus, tmp_path, capsys):
    """data.validate=off: no check before training; the bad image stops training when it is decoded."""
    cfg = _training_table(corpus, tmp_path)
    user_error(capsys, ["train", cfg, "data.split_column=split", "data.validate=off",
                        f"output_dir={tmp_path / 'runs'}"],
               r"cannot read image '.*(nope\.png': file not found|text\.jpg': not an image file.*)$")


# ---- bad images and tables during `polyhead predict` ----------------------------------------------
@pytest.fixture(scope="module")
def corpus_run(corpus):
    """A run trained for one epoch on the corpus's good rows."""
    folder = corpus["folder"]
    corpus["base"].to_csv(folder / "good.csv", index=False)
    argv = ["train", folder / "config.yaml", "data.split_column=split", f"data.train_table={folder / 'good.csv'}",
            f"output_dir={folder / 'runs'}", "run_name=predict"]
    assert main([str(a) for a in argv]) == 0
    return folder / "runs" / "predict"


# file under special/ -> the `error` cell `predict` writes for it (None: predicted)
PREDICT_CASES = {
    "truncated.jpg": r"image file is truncated", "truncated.png": r"truncated|corrupt",
    "zero.png": r"^the file is empty \(0 bytes\)$", "text.jpg": r"^not an image file, or a format Pillow cannot read$",
    "bomb.png": r"exceeds limit", "over_limit.png": r"exceeds limit", "short_data.png": r"truncated|corrupt",
    "good.jpg": None, "good.png": None, "cmyk.jpg": None, "deep16.png": None, "one_pixel.png": None,
    "animated.gif": None, "absolute.png": None, "ünïcødé café.png": None,
}


@pytest.mark.parametrize("out", ["p.parquet", "p.csv"])
def test_predict_over_a_folder_with_bad_images(corpus, corpus_run, tmp_path, capsys, out):
    """predict-bad-image-skip: every file of the image corpus (and a text file) under one folder."""
    import shutil

    photos = tmp_path / "photos"
    shutil.copytree(corpus["folder"] / "special", photos)
    (photos / "notes.txt").write_text("not an image, and not named like one")
    code, stdout, err = cli(capsys, "predict", corpus_run, "--images", photos, "--out", tmp_path / out,
                            "--num-workers", "0", "--batch-size", "4")
    assert code == 0, err
    bad = sum(1 for v in PREDICT_CASES.values() if v)
    assert f"skipped {bad} unreadable image(s); see the 'error' column" in stdout
    assert "left out 1 file(s) that are not images (by extension)" in stdout
    df = pd.read_parquet(tmp_path / out) if out.endswith(".parquet") else pd.read_csv(tmp_path / out)
    assert sorted(Path(p).name for p in df["image"]) == sorted(PREDICT_CASES)
    for path, error, quadrant in zip(df["image"], df["error"], df["quadrant"]):
        expected = PREDICT_CASES[Path(path).name]
        if expected is None:
            assert pd.isna(error) and quadrant in ("tl", "tr", "bl", "br"), (path, error)
        else:
            assert re.search(expected, error) and pd.isna(quadrant), (path, error)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["photos", out])


def test_predict_stops_at_a_bad_image_with_error_policy(corpus, corpus_run, tmp_path, capsys):
    """predict-bad-image-error: one line naming the image; no output file, no `.partial`."""
    paths = [corpus["folder"] / "special" / name for name in ("good.png", "good.jpg", "text.jpg")]
    user_error(capsys, ["predict", corpus_run, "--images", *paths, "--out", tmp_path / "p.parquet",
                        "--on-bad-image", "error", "--num-workers", "0", "--batch-size", "2"],
               r"cannot read image '.*text\.jpg': not an image file, or a format Pillow cannot read$")
    assert list(tmp_path.iterdir()) == []


def test_predict_table_without_the_image_column(corpus, corpus_run, tmp_path, capsys):
    """predict-no-image-column: the line names the flag that sets the column."""
    corpus["base"].rename(columns={"image": "file"}).to_csv(tmp_path / "t.csv", index=False)
    user_error(capsys, ["predict", corpus_run, "--table", tmp_path / "t.csv", "--out", tmp_path / "p.csv"],
               r"table '.*t\.csv' has no image column 'image' \(--image-column, .*\); columns: file, quadrant")


# ---- export and the onnx backend ------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A run folder holding only an untrained small_cnn bundle (no training needed for these cases)."""
    from polyhead.config.schema import TaskConfig
    from polyhead.model.bundle import BackboneSpec, Preprocessing, build_model, save_bundle
    from polyhead.tasks import build_tasks

    run = tmp_path_factory.mktemp("tiny_run")
    tasks = build_tasks({"quadrant": TaskConfig(type="multiclass", classes=["tl", "tr", "bl", "br"])})
    spec, prep = BackboneSpec("small_cnn", 3, small_cnn={"blocks": 1, "channels": [4]}), Preprocessing(SIZE, 3, None, None)
    save_bundle(run / "model", build_model(spec, tasks, prep), tasks, spec, prep)
    return run


# case id -> (arguments after `polyhead export RUN`, message regex); RUN is the tiny run unless "not-a-run"
EXPORT_CASES = {
    "export-unknown-format": (["--format", "tflite"], r"--format 'tflite': expected onnx or triton$"),
    "export-opset-too-old": (["--opset", "11"], r"--opset 11: polyhead exports ONNX opsets 13 to 20 \(default 17\)$"),
    "export-not-a-run": ([], r"no model bundle at '.*corpus\d*': expected '.*/bundle\.json' or '.*/model/bundle\.json'"),
    "export-bad-name": (["--format", "triton", "--name", "my model"],
                        r"--name 'my model': a model name may hold letters, digits, '_', '-' and '\.'"),
}


@pytest.mark.parametrize("case", list(EXPORT_CASES))
def test_export_errors(corpus, tiny_run, tmp_path, capsys, case):
    """One line each; nothing is written."""
    args, pattern = EXPORT_CASES[case]
    run = corpus["folder"] if case == "export-not-a-run" else tiny_run
    user_error(capsys, ["export", run, "--out", tmp_path / "out", *args], pattern)
    assert not (tmp_path / "out").exists()


def test_export_out_not_writable(tiny_run, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    user_error(capsys, ["export", tiny_run, "--out", blocker / "onnx"],
               rf"cannot write the export to '{re.escape(str(blocker))}/onnx' \(--out\): Not a directory$")
    assert blocker.read_text() == "not a folder"


def test_predict_onnx_not_exported(corpus, tiny_run, tmp_path, capsys):
    user_error(capsys, ["predict", tiny_run, "--images", corpus["folder"] / "images", "--out", tmp_path / "p.csv",
                        "--backend", "onnx"],
               rf"run '{re.escape(str(tiny_run))}' has no exported ONNX graph \(.*export/onnx/model\.onnx\): "
               rf"run `polyhead export {re.escape(str(tiny_run))}` first$")
    assert not (tmp_path / "p.csv").exists()


# ---- bad images and leaks during `polyhead inspect-data` -------------------------------------------
def _inspect_table(corpus, tmp_path, extra: list[dict]) -> Path:
    """The 20 base rows (12 train, 4 val, 4 test by data.split_column=split) plus `extra` rows; returns the config."""
    t = pd.concat([corpus["base"], pd.DataFrame(extra)], ignore_index=True)
    t["image"] = [str(corpus["folder"] / p) for p in t["image"]]
    t.to_csv(tmp_path / "labels.csv", index=False)
    write_config(tmp_path / "config.yaml", "labels.csv", epochs=1)
    return tmp_path / "config.yaml"


BAD_FOR_INSPECT = ["img-missing-file", "img-zero-bytes", "img-truncated-png"]  # table rows 21, 22, 23


def _bad_rows(corpus) -> list[dict]:
    return [{"image": corpus["special"][c], "quadrant": "tl", "red": "yes", "tags": "top", "split": "train"}
            for c in BAD_FOR_INSPECT]


def test_inspect_data_stops_on_bad_images(corpus, tmp_path, capsys):
    """The check `train` runs, before any picture: one line, the full list in <output_dir>/bad_images.csv,
    nothing written in --out (even with --samples above the rows there are)."""
    cfg = _inspect_table(corpus, tmp_path, _bad_rows(corpus))
    runs, out = tmp_path / "runs", tmp_path / "inspect"
    user_error(capsys, ["inspect-data", cfg, "data.split_column=split", "--samples", 200, "--out", out,
                        f"output_dir={runs}"],
               rf"cannot read images: 3 bad image\(s\) found by data\.validate=header, the first: .*labels\.csv "
               rf"\[train\], row 21, column 'image': .*nope\.png: file not found; full list: "
               rf"{re.escape(str(runs))}/bad_images\.csv; to go on without those rows set data\.on_bad_image=skip$")
    listed = list(csv.DictReader(open(runs / "bad_images.csv")))
    assert [(r["row"], r["kind"]) for r in listed] == [("21", "missing"), ("22", "empty"), ("23", "truncated")]
    assert not out.exists()


def test_inspect_data_skips_bad_images(corpus, tmp_path, capsys):
    """data.on_bad_image=skip: the three rows are left out (and listed); --samples 200 shows every good train row."""
    cfg = _inspect_table(corpus, tmp_path, _bad_rows(corpus))
    code, out, err = cli(capsys, "inspect-data", cfg, "data.split_column=split", "data.on_bad_image=skip",
                         "--samples", 200, "--out", tmp_path / "inspect")
    assert code == 0, err
    assert "skipped 3 row(s) with bad images (data.on_bad_image=skip): train 3" in out
    report = json.loads((tmp_path / "inspect" / "data_report.json").read_text())
    good_train = {str(corpus["folder"] / p) for p in corpus["base"].loc[corpus["base"]["split"] == "train", "image"]}
    assert report["splits"]["train"]["quadrant"]["rows"] == len(good_train) == 12
    assert {s["path"] for s in report["samples"]} == good_train
    assert [(r["row"], Path(r["image"]).name, r["reason"]) for r in report["skipped_rows"]] == [
        (21, "nope.png", "file not found"), (22, "zero.png", "the file is empty (0 bytes)"),
        (23, "truncated.png", "truncated PNG: no IEND chunk at the end of the file")]


def test_inspect_data_reports_a_leak(corpus, tmp_path, capsys):
    """A train image also in val: the warning `validate-data` gives, and not "no warnings"."""
    base = corpus["base"]
    leaked = base.loc[base["split"] == "train"].iloc[1]  # table row 4, images/0003.png
    cfg = _inspect_table(corpus, tmp_path, [dict(leaked, split="val")])
    code, out, err = cli(capsys, "inspect-data", cfg, "data.split_column=split", "--out", tmp_path / "inspect")
    assert code == 0, err
    line = (r"labels\.csv \[val\], row 21, column 'image': .*0003\.png: also in the train split "
            r"\(.*labels\.csv \[train\], row 4\): a train/val leak")
    assert re.search(rf"^warning: .*{line}$", out, re.M), out
    report = json.loads((tmp_path / "inspect" / "data_report.json").read_text())
    assert len(report["validation_warnings"]) == 1 and re.search(line, report["validation_warnings"][0])
    assert "no warnings" not in out


# ---- paths and command-line usage ------------------------------------------------------------------
def test_table_not_found_says_where_it_looked(corpus, tmp_path, capsys, monkeypatch):
    """A relative path on the command line is read from the working directory, one in a config file from
    the file's folder: the message shows the absolute path tried and the key that named it."""
    cfg = _training_table(corpus, tmp_path, bad=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    user_error(capsys, ["train", cfg, "data.train_table=small.csv"],
               rf"error: table not found: '{re.escape(str(elsewhere / 'small.csv'))}' \(data\.train_table=small\.csv is "
               rf"relative to the working directory '{re.escape(str(elsewhere))}'\)$")
    (tmp_path / "config.yaml").write_text((tmp_path / "config.yaml").read_text().replace("labels.csv", "small.csv"))
    user_error(capsys, ["train", cfg],
               rf"error: table not found: '{re.escape(str(tmp_path / 'small.csv'))}' \(data\.train_table; a relative path "
               rf"in a config file is read from the config file's folder\)$")


def test_quoted_paths_hold_no_split_name(corpus, tmp_path, capsys):
    """Quotes hold a path only: `'/x/labels.csv' [train]`, never `'/x/labels.csv [train]'`."""
    t = corpus["base"].copy()
    t.loc[t["split"] == "train", "red"] = None
    cfg = _variant(corpus, tmp_path, t)
    user_error(capsys, ["train", cfg, "data.split_column=split", "tasks.red.classes=[no,yes]"],
               rf"error: task 'red' has no labelled row in the training split "
               rf"\('{re.escape(str(tmp_path / 'labels.csv'))}' \[train\]\)$")


@pytest.mark.parametrize("argv, usage", [
    (["train", "{cfg}", "--print-cfg", "training.epochs=3"], "usage: polyhead train "),
    (["compare", "{cfg}", "--inference-iters", "many"], "usage: polyhead compare "),
    (["inspect-data", "{cfg}", "--samples"], "usage: polyhead inspect-data "),
])
def test_unknown_flag_prints_that_verbs_usage(corpus, capsys, argv, usage):
    """A flag the verb does not know (or a bad flag value): argparse's usage of that verb, then one error line."""
    with pytest.raises(SystemExit) as stop:
        main([str(a).replace("{cfg}", str(corpus["folder"] / "config.yaml")) for a in argv])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith(usage), err
    assert err.strip().splitlines()[-1].startswith(f"polyhead {argv[0]}: error: ")


# ---- the docs list every case ----------------------------------------------------------------------
CASE_IDS = [
    *IMAGE_CASES, *CONFIG_CASES, "label-outside-classes", "label-empty-or-null", "multilabel-unknown-label",
    "multilabel-wrong-delimiter-declared", "multilabel-wrong-delimiter-inferred", "numeric-labels-named-classes",
    "task-column-missing", "table-empty", "table-one-class-multiclass", "table-one-class-binary",
    "split-unknown-value", "table-duplicated-rows", "table-train-val-leak", "csv-bom", "csv-semicolon",
    "output-dir-not-writable", "train-bad-images-error", "train-bad-images-skip", "skip-empties-split",
    "skip-leaves-task-unlabelled", "validate-off", "validate-data-exit-status", "config-yaml-boolean-labels",
    "predict-bad-image-skip", "predict-bad-image-error", "predict-no-image-column",
    *EXPORT_CASES, "export-out-not-writable", "predict-onnx-not-exported", "config-file-typo",
    "config-image-size-int", "config-weighting-arg-no-plus", "config-preset-contradiction",
    "config-preset-replaces-section", "config-accelerator-no-gpu", "predict-device-no-gpu", "resume-changed-model",
    "inspect-data-bad-images-error", "inspect-data-bad-images-skip", "inspect-data-leak",
    "table-not-found-command-line", "table-not-found-config-file", "quoted-path-with-split", "cli-unknown-flag",
]


def test_every_case_is_documented():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "robustness.md").read_text()
    assert len(CASE_IDS) >= 30 and len(set(CASE_IDS)) == len(CASE_IDS)
    missing = [c for c in CASE_IDS if f"`{c}`" not in doc]
    assert not missing, missing
