"""Label tables in every format, image folders, split columns and seeded splits."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from polyhead.config.loading import load_config
from polyhead.data.splits import build_splits
from polyhead.data.tables import random_split, read_table, split_by_column
from polyhead.errors import DataError
from polyhead.tasks import build_tasks


@pytest.fixture
def frame():
    return pd.DataFrame({"image": ["a.png", "sub/b.png", "/abs/c.png"], "cat": ["x", "y", None],
                         "tags": ["p|q", "", "q"]})


@pytest.mark.parametrize("fmt", ["csv", "csv;", "csv-bom", "tsv", "parquet", "jsonl"])
def test_formats_read_the_same(tmp_path, frame, fmt):
    path = tmp_path / f"t.{fmt.split(';')[0].split('-')[0]}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "csv;":
        frame.to_csv(path, index=False, sep=";")
    elif fmt == "csv-bom":
        path.write_bytes(b"\xef\xbb\xbf" + frame.to_csv(index=False).encode())
    elif fmt == "tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        path.write_text("\n".join(json.dumps(r) for r in frame.to_dict("records")))
    table = read_table(path)
    assert list(table.frame.index) == [1, 2, 3]
    assert table.paths == [str(tmp_path / "a.png"), str(tmp_path / "sub" / "b.png"), "/abs/c.png"]
    assert table.frame["cat"].iloc[0] == "x" and pd.isna(table.frame["cat"].iloc[2])


def test_root_and_image_column(tmp_path):
    (tmp_path / "t.csv").write_text("file,cat\na.png,x\n")
    table = read_table(tmp_path / "t.csv", image_column="file", root=tmp_path / "imgs")
    assert table.paths == [str(tmp_path / "imgs" / "a.png")]
    with pytest.raises(DataError, match="no image column 'image'.*columns: file, cat"):
        read_table(tmp_path / "t.csv")


def test_table_errors(tmp_path):
    with pytest.raises(DataError, match="table not found"):
        read_table(tmp_path / "none.csv")
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(DataError, match="unknown extension '.xlsx'"):
        read_table(tmp_path / "t.xlsx")
    (tmp_path / "empty.csv").write_text("image,cat\n")
    with pytest.raises(DataError, match="has no rows"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "blank.csv").write_text("image,cat\na.png,x\n,y\n")
    with pytest.raises(DataError, match="row 2: empty image path"):
        read_table(tmp_path / "blank.csv")


def test_image_folder_tree(tmp_path):
    from conftest import make_image

    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        (tmp_path / cls / "nested").mkdir(parents=True)
        make_image("tl", True, rng).save(tmp_path / cls / "1.png")
        make_image("tl", True, rng).save(tmp_path / cls / "nested" / "2.jpg")
    (tmp_path / "cats" / "notes.txt").write_text("not an image")
    table = read_table(tmp_path, folder_task="animal")
    assert len(table) == 4 and sorted(set(table.frame["animal"])) == ["cats", "dogs"]
    with pytest.raises(DataError, match="no class sub-folders"):
        read_table(tmp_path / "cats" / "nested")


def test_split_column(tmp_path):
    (tmp_path / "t.csv").write_text("image,s\na,train\nb,VAL\nc,test\nd,validation\n")
    idx = split_by_column(read_table(tmp_path / "t.csv"), "s")
    assert idx["train"].tolist() == [0] and idx["val"].tolist() == [1, 3] and idx["test"].tolist() == [2]
    (tmp_path / "bad.csv").write_text("image,s\na,train\nb,holdout\n")
    with pytest.raises(DataError, match="row 2, column 's': unknown split 'holdout'"):
        split_by_column(read_table(tmp_path / "bad.csv"), "s")


def test_random_split_is_seeded_and_stratified():
    strata = ["a"] * 80 + ["b"] * 20
    one = random_split(100, {"val": 0.2}, seed=1, strata=strata)
    two = random_split(100, {"val": 0.2}, seed=1, strata=strata)
    assert np.array_equal(one["val"], two["val"])
    assert len(one["val"]) == 20 and sum(strata[i] == "b" for i in one["val"]) == 4
    assert not np.array_equal(one["val"], random_split(100, {"val": 0.2}, seed=2, strata=strata)["val"])
    assert set(one["train"]).isdisjoint(one["val"]) and len(one["train"]) == 80


def test_build_splits_from_config(tmp_path):
    from conftest import make_dataset, write_config

    make_dataset(tmp_path, n=40, with_split=True).to_csv(tmp_path / "t.csv", index=False)
    write_config(tmp_path / "c.yaml", "t.csv")
    cfg = load_config(tmp_path / "c.yaml", ["data.split_column=split"])
    tasks = build_tasks(cfg.tasks)
    splits = build_splits(cfg.data, tasks, seed=cfg.training.seed)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (24, 8, 8)
    assert tasks["tags"].classes == ["left", "top", "warm"]


def test_missing_task_column_and_value_outside_declared_classes(tmp_path):
    from conftest import make_dataset, write_config

    make_dataset(tmp_path, n=20).to_csv(tmp_path / "t.csv", index=False)
    write_config(tmp_path / "c.yaml", "t.csv")
    cfg = load_config(tmp_path / "c.yaml", ["+tasks.colour.type=binary"])
    with pytest.raises(DataError, match="no column 'colour' for task 'colour'"):
        build_splits(cfg.data, build_tasks(cfg.tasks), seed=cfg.training.seed)
    cfg = load_config(tmp_path / "c.yaml", ["tasks.quadrant.classes=[tl,tr,bl]"])
    with pytest.raises(DataError, match="row 4, column 'quadrant': label 'br'"):
        build_splits(cfg.data, build_tasks(cfg.tasks), seed=cfg.training.seed)
