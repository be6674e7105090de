"""`polyhead prepare deepfashion-attributes ROOT OUT`: a small replica of the release's list files
(count line, header line, space-padded rows), written here, turned into a table, crops and a config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from polyhead.cli.main import main
from polyhead.data.preparers.deepfashion import prepare_deepfashion_attributes
from polyhead.errors import DataError

CATEGORIES = [("Blouse", 1), ("Jeans", 2), ("Dress", 3)]
ATTRIBUTES = [("floral", 1), ("stripe", 1), ("denim", 2), ("a-line", 3), ("crew neck", 4), ("boho chic", 5)]
# image: (split, category 1-based, attribute values, bbox x1 y1 x2 y2)
IMAGES = {
    "img/Floral_Blouse/img_00000001.jpg": ("train", 1, [1, -1, -1, -1, 1, 0], (4, 6, 20, 26)),
    "img/Floral_Blouse/img_00000002.jpg": ("train", 1, [1, 1, -1, -1, -1, 1], (0, 0, 32, 32)),
    "img/Skinny_Jeans/img_00000001.jpg": ("train", 2, [-1, -1, 1, -1, -1, -1], (8, 2, 24, 30)),
    "img/Skinny_Jeans/img_00000002.jpg": ("val", 2, [0, 0, 1, 0, 0, 0], (2, 2, 30, 30)),
    "img/Boho_Dress/img_00000001.jpg": ("train", 3, [1, -1, -1, 1, -1, 1], (5, 5, 27, 31)),
    "img/Boho_Dress/img_00000002.jpg": ("test", 3, [-1, -1, -1, 1, 1, -1], (1, 3, 31, 29)),
    "img/Boho_Dress/img_00000003.jpg": ("test", 3, [-1, 1, -1, -1, -1, 1], (0, 0, 16, 16)),
}


def _listing(path: Path, header: str, rows: list[tuple[str, str]]) -> None:
    """The release's layout: the row count, the header, then `name<padding>values`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [str(len(rows)), header] + [f"{name:<60}{values}" for name, values in rows]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def release(tmp_path) -> Path:
    root = tmp_path / "DeepFashion"
    _listing(root / "Anno/list_category_cloth.txt", "category_name  category_type",
             [(n, str(t)) for n, t in CATEGORIES])
    _listing(root / "Anno/list_attr_cloth.txt", "attribute_name  attribute_type",
             [(n, str(t)) for n, t in ATTRIBUTES])
    _listing(root / "Anno/list_category_img.txt", "image_name  category_label",
             [(i, str(c)) for i, (_, c, _, _) in IMAGES.items()])
    _listing(root / "Anno/list_attr_img.txt", "image_name  attribute_labels",
             [(i, " ".join(f"{v:2d}" for v in a)) for i, (_, _, a, _) in IMAGES.items()])
    _listing(root / "Anno/list_bbox.txt", "image_name  x_1  y_1  x_2  y_2",
             [(i, " ".join(f"{v:03d}" for v in b)) for i, (_, _, _, b) in IMAGES.items()])
    _listing(root / "Eval/list_eval_partition.txt", "image_name  evaluation_status",
             [(i, s) for i, (s, _, _, _) in IMAGES.items()])
    for k, (image, (_, _, _, (x1, y1, x2, y2))) in enumerate(IMAGES.items()):
        pixels = np.zeros((32, 32, 3), dtype=np.uint8)
        pixels[y1:y2, x1:x2] = (200, 40 + 20 * k, 40)  # the garment: its box, a colour per image
        (root / image).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / image, quality=100)
    return root


def test_table_has_category_body_attribute_types_and_official_split(release, tmp_path):
    summary = prepare_deepfashion_attributes(tmp_path / "out", source=release, progress=False)
    table = pd.read_parquet(tmp_path / "out" / "deepfashion.parquet").set_index("image")
    assert list(table.index) == list(IMAGES)
    assert table["split"].tolist() == [s for s, _, _, _ in IMAGES.values()]
    assert table["category"].tolist() == ["Blouse", "Blouse", "Jeans", "Jeans", "Dress", "Dress", "Dress"]
    assert table["body"].tolist() == ["upper", "upper", "lower", "lower", "full", "full", "full"]
    first = table.loc["img/Floral_Blouse/img_00000001.jpg"]
    # texture: floral yes, stripe no; fabric: denim no -> "[]"; part: crew neck; style: unknown (0) -> missing
    assert (first["texture"], first["fabric"], first["shape"], first["part"]) == ("floral", "[]", "[]", "crew neck")
    assert pd.isna(first["style"])
    assert table.loc["img/Floral_Blouse/img_00000002.jpg", "texture"] == "floral|stripe"
    assert table.loc["img/Floral_Blouse/img_00000002.jpg", "style"] == "boho chic"
    val = table.loc["img/Skinny_Jeans/img_00000002.jpg"]  # only denim known: the other types are missing
    assert val["fabric"] == "denim" and val[["texture", "shape", "part", "style"]].isna().all()
    assert {s: i["rows"] for s, i in summary["splits"].items()} == {"train": 4, "val": 1, "test": 2}


def test_crops_are_the_bounding_boxes(release, tmp_path):
    prepare_deepfashion_attributes(tmp_path / "out", source=release, crop_bbox=True, progress=False)
    table = pd.read_parquet(tmp_path / "out" / "deepfashion.parquet")
    for k, (image, (_, _, _, (x1, y1, x2, y2))) in enumerate(IMAGES.items()):
        crop = tmp_path / "out" / "crops" / image
        assert table["image"][k] == f"crops/{image}"
        with Image.open(crop) as img:
            assert img.size == (x2 - x1, y2 - y1)
            pixels = np.asarray(img.convert("RGB")).astype(int)
        assert pixels[..., 0].min() > 120  # no background (black) left: JPEG blurs edges a little
        assert np.abs(pixels.mean(axis=(0, 1)) - np.array([200, 40 + 20 * k, 40])).max() < 12


def test_cli_writes_a_config_that_trains(release, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["prepare", "deepfashion-attributes", str(release), str(out), "--limit", "3"]) == 0
    printed = capsys.readouterr().out
    assert "train: 3 rows" in printed and "val: 1 rows" in printed and f"config: {out / 'config.yaml'}" in printed
    assert len(pd.read_parquet(out / "deepfashion.parquet")) == 6  # 3 train (of 4), 1 val, 2 test
    argv = ["train", str(out / "config.yaml"), "model.backbone=small_cnn", "model.pretrained=false",
            "model.small_cnn.blocks=1", "model.small_cnn.channels=[4]", "data.image_size=16", "data.batch_size=4",
            "data.num_workers=0", "training.epochs=1", "tracking.enabled=false", "report.enabled=false",
            "training.progress_bar=false", f"output_dir={tmp_path / 'runs'}", "run_name=r"]
    assert main(argv) == 0, capsys.readouterr().err
    data = (tmp_path / "runs" / "r" / "data.json").read_text()
    assert '"train"' in data and '"test"' in data
    assert (tmp_path / "runs" / "r" / "model" / "bundle.json").is_file()


def test_bad_release_is_one_line(release, tmp_path):
    (release / "Eval/list_eval_partition.txt").unlink()
    with pytest.raises(DataError, match="missing Eval/list_eval_partition.txt"):
        prepare_deepfashion_attributes(tmp_path / "out", source=release, progress=False)
    text = (release / "Anno/list_bbox.txt").read_text().splitlines()
    (release / "Anno/list_bbox.txt").write_text("\n".join(["99", *text[1:]]))
    _listing(release / "Eval/list_eval_partition.txt", "image_name  evaluation_status",
             [(i, s) for i, (s, _, _, _) in IMAGES.items()])
    with pytest.raises(DataError, match=r"list_bbox.txt: line 1 says 99 rows, found 7"):
        prepare_deepfashion_attributes(tmp_path / "out", source=release, crop_bbox=True, progress=False)
    with pytest.raises(DataError, match="obtain"):
        prepare_deepfashion_attributes(tmp_path / "out", source=None, progress=False)


def test_attribute_rows_of_the_wrong_width_are_one_line(release, tmp_path):
    rows = [(i, " ".join(f"{v:2d}" for v in a[:-1])) for i, (_, _, a, _) in IMAGES.items()]
    _listing(release / "Anno/list_attr_img.txt", "image_name  attribute_labels", rows)
    with pytest.raises(DataError, match="rows hold 5 attribute values; Anno/list_attr_cloth.txt lists 6"):
        prepare_deepfashion_attributes(tmp_path / "out", source=release, progress=False)
