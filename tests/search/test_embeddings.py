"""`polyhead embed`, `polyhead neighbors`, `Predictor.similar`: the shared features as a search index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from polyhead.cli.main import main
from polyhead.model.bundle import load_bundle
from polyhead.search import EmbeddingInfo, SimilarityIndex, write_embeddings
from polyhead.search.embeddings import iter_embeddings

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 220), "yellow": (220, 220, 40)}
PER_CLASS = 32

CONFIG = """
tasks:
  colour: {type: multiclass}
data:
  train_table: labels.csv
  val_fraction: 0.0
  image_size: [16, 16]
  batch_size: 16
  num_workers: 0
model:
  backbone: small_cnn
  small_cnn: {blocks: 2, channels: [8, 16]}
optimizer: {lr: 0.01}
training: {epochs: 2, seed: 0, progress_bar: false, monitor: train/loss}
tracking: {enabled: false}
report: {enabled: false}
output_dir: runs
run_name: colours
"""


def colour_images(folder, seed: int = 0) -> pd.DataFrame:
    """PER_CLASS 16x16 images per colour: noise plus a 6x6 patch of that colour at a random place."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    rows = []
    for i in range(PER_CLASS * len(COLOURS)):
        name = list(COLOURS)[i % len(COLOURS)]
        img = rng.integers(0, 80, size=(16, 16, 3), dtype=np.uint8)
        y, x = rng.integers(0, 11, size=2)
        img[y:y + 6, x:x + 6] = COLOURS[name]
        path = f"images/{i:04d}.png"
        Image.fromarray(img).save(folder / path)
        rows.append({"image": path, "colour": name})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory):
    """A tiny CNN trained two epochs (16 steps) to tell the patch colours apart."""
    import polyhead

    root = tmp_path_factory.mktemp("search")
    labels = colour_images(root)
    labels.to_csv(root / "labels.csv", index=False)
    (root / "config.yaml").write_text(CONFIG)
    run = polyhead.fit(root / "config.yaml")
    labels["path"] = [str((root / p).resolve()) for p in labels["image"]]
    return root, run.run_dir, labels


def test_recall_at_10_of_same_colour_neighbours_is_far_above_a_random_index(colour_run, tmp_path):
    import polyhead

    root, run_dir, labels = colour_run
    predictor = polyhead.load(run_dir, device="cpu")
    done = predictor.embed_to_file(root / "images", tmp_path / "emb.parquet", show_progress=False)
    assert done.rows == len(labels)
    index = SimilarityIndex.open(tmp_path / "emb.parquet")
    paths, vectors = next(iter_embeddings(tmp_path / "emb.parquet"))
    colour = dict(zip(labels["path"], labels["colour"]))
    hits = []
    for path, found in zip(paths, index.search(vectors, k=11)):
        others = [n.image for n in found if n.image != path][:10]  # the query itself is not a neighbour
        hits.append(np.mean([colour[p] == colour[path] for p in others]))
    recall = float(np.mean(hits))
    n, n_c = len(labels), PER_CLASS
    random_recall = (n_c - 1) / (n - 1)  # expected share of same-colour rows among 10 drawn at random: 0.24
    assert recall > 0.8 and recall > 3 * random_recall, (recall, random_recall)

    # Predictor.similar: the same search from an image file; the query itself first, cosine 1
    query = labels["path"][5]
    similar = predictor.similar(query, k=5)  # the file embed_to_file wrote is the default index
    assert list(similar["rank"]) == [1, 2, 3, 4, 5] and similar["image"][0] == query
    assert similar["score"][0] == pytest.approx(1.0, abs=1e-4)
    assert similar["score"].is_monotonic_decreasing


def test_embed_writes_one_row_per_image_with_the_model_features(colour_run, tmp_path):
    root, run_dir, labels = colour_run
    for dtype, arrow, tol in (("float32", "float", 1e-4), ("float16", "halffloat", 1e-2)):
        out = tmp_path / f"emb-{dtype}.parquet"
        assert main(["embed", str(run_dir), "--images", str(root / "images"), "--out", str(out), "--dtype", dtype,
                     "--num-workers", "0", "--device", "cpu"]) == 0
        table = pq.read_table(out)
        bundle = load_bundle(run_dir)
        dim = bundle.model.num_features
        assert table.num_rows == len(labels) and sorted(table["image"].to_pylist()) == sorted(labels["path"])
        assert str(table.schema.field("embedding").type) == f"fixed_size_list<element: {arrow}>[{dim}]"
        # against the bundle's model run here on the same pixels (no channels_last, no batching)
        first = table["image"][0].as_py()
        from polyhead.data.images import load_image

        with torch.no_grad():
            expected = bundle.model.forward_features(load_image(first, channels=3, size=(16, 16))[None])[0]
        got = torch.tensor(np.asarray(table["embedding"][0].as_py(), dtype=np.float32))
        torch.testing.assert_close(got, expected, rtol=tol, atol=tol)


def test_index_is_built_once_and_rebuilt_when_the_embeddings_change(colour_run, tmp_path):
    import polyhead

    root, run_dir, labels = colour_run
    predictor = polyhead.load(run_dir, device="cpu")
    emb = tmp_path / "emb.parquet"
    predictor.embed_to_file(root / "images", emb, show_progress=False)
    SimilarityIndex.open(emb)
    built = (tmp_path / "emb.faiss").stat().st_mtime_ns
    assert len(SimilarityIndex.open(emb)) == len(labels)
    assert (tmp_path / "emb.faiss").stat().st_mtime_ns == built  # reused
    assert len(predictor.similar(labels["path"][0], k=20)) == 20
    subset = list(labels["path"][:8])
    predictor.embed_to_file(subset, emb, show_progress=False)  # the file changes: the index follows
    index = SimilarityIndex.open(emb)
    assert len(index) == 8 and {n.image for n in index.search(np.ones((1, index.info.dim)), k=20)[0]} == set(subset)
    assert set(predictor.similar(subset[0], k=20)["image"]) == set(subset)  # the Predictor reopens it too


def test_one_line_errors(colour_run, tmp_path, capsys):
    root, run_dir, _ = colour_run
    query = str(root / "images" / "0000.png")

    def error(argv) -> str:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0, err
        return err

    assert "no embeddings file at" in error(["neighbors", str(run_dir), "--index", str(tmp_path / "missing.parquet"),
                                             "--image", query])
    dim = load_bundle(run_dir).model.num_features
    other = tmp_path / "other.parquet"
    write_embeddings([(["a.png"], torch.zeros(1, dim + 3))], other, EmbeddingInfo(dim + 3, "float32", "0" * 16))
    assert f"{dim + 3}-dim embeddings but this model's features are {dim}-dim" in error(
        ["neighbors", str(run_dir), "--index", str(other), "--image", query])
    same_dim = tmp_path / "same.parquet"
    write_embeddings([(["a.png"], torch.zeros(1, dim))], same_dim, EmbeddingInfo(dim, "float32", "0" * 16))
    assert "written by another model" in error(["neighbors", str(run_dir), "--index", str(same_dim), "--image", query])
    (tmp_path / "empty").mkdir()
    assert "no images found" in error(["embed", str(run_dir), "--images", str(tmp_path / "empty"),
                                       "--out", str(tmp_path / "e.parquet")])
    assert not (tmp_path / "e.parquet").exists()


FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_CONFIG = """
tasks:
  category: {type: multiclass}
data:
  train_table: train.parquet
  val_fraction: 0.0
  image_size: [28, 28]
  channels: 1
  batch_size: 32
  num_workers: 0
model:
  backbone: small_cnn
  small_cnn: {blocks: 2, channels: [8, 16]}
optimizer: {lr: 0.01}
training: {epochs: 2, seed: 0, progress_bar: false, monitor: train/loss}
tracking: {enabled: false}
report: {enabled: false}
output_dir: runs
"""


@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="needs Debian's dataset-fashion-mnist (the demo's data)")
def test_recall_at_10_on_the_demo_data(tmp_path):
    """The demo's category task on 1000 Fashion-MNIST images (2 epochs, 64 steps); neighbours of
    500 held-out test images among themselves."""
    import polyhead
    from polyhead.data.preparers.fashion_mnist import prepare_fashion_mnist

    prepare_fashion_mnist(tmp_path, limit=1000, progress=False)
    (tmp_path / "config.yaml").write_text(FASHION_CONFIG)
    run = polyhead.fit(tmp_path / "config.yaml")
    test = pd.read_parquet(tmp_path / "test.parquet").head(500)
    paths = [str((tmp_path / p).resolve()) for p in test["image"]]
    category = dict(zip(paths, test["category"]))
    predictor = polyhead.load(run.run_dir, device="cpu")
    predictor.embed_to_file(paths, tmp_path / "emb.parquet", show_progress=False)
    index = SimilarityIndex.open(tmp_path / "emb.parquet")
    found_paths, vectors = next(iter_embeddings(tmp_path / "emb.parquet"))
    hits = [np.mean([category[n.image] == category[q] for n in found if n.image != q][:10])
            for q, found in zip(found_paths, index.search(vectors, k=11))]
    recall = float(np.mean(hits))
    counts = test["category"].value_counts()
    random_recall = float(np.mean([(counts[c] - 1) / (len(test) - 1) for c in test["category"]]))  # ~0.10
    print(f"recall@10 {recall:.3f}, random index {random_recall:.3f}")
    assert recall > 0.35 and recall > 3 * random_recall, (recall, random_recall)  # measured: 0.52
