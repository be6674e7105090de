"""Per-task tables: a task takes its labels from its own table; other tasks are masked on its rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from polyhead.cli.main import main
from polyhead.config.loading import load_config
from polyhead.data.loaders import train_loader
from polyhead.data.splits import build_splits
from polyhead.data.sampling import SourceSampler, source_probabilities
from polyhead.errors import ConfigError, DataError
from polyhead.tasks import build_tasks
from conftest import make_dataset, write_config


@pytest.fixture
def per_task(tmp_path):
    """main.csv labels only `tags`, quadrant.csv only `quadrant`, red/red.csv only `red` (different images)."""
    main_df = make_dataset(tmp_path / "main", n=40, seed=1)
    main_df["image"] = "main/" + main_df["image"]
    main_df[["image", "tags"]].to_csv(tmp_path / "main.csv", index=False)
    quad = make_dataset(tmp_path / "quad", n=160, seed=2)
    quad["image"] = "quad/" + quad["image"]
    quad[["image", "quadrant"]].to_csv(tmp_path / "quadrant.csv", index=False)
    red = make_dataset(tmp_path / "red", n=80, seed=3)  # paths relative to red/
    red[["image", "red"]].to_csv(tmp_path / "red" / "red.csv", index=False)
    write_config(tmp_path / "config.yaml", "main.csv", epochs=6)
    _edit(tmp_path / "config.yaml", ("top_k: 2}", "top_k: 2, table: quadrant.csv}"),
          ('positive: "yes"}', 'positive: "yes", table: red/red.csv}'))
    return tmp_path


def _edit(path, *replacements):
    text = path.read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text)


def _splits(root, overrides=()):
    cfg = load_config(root / "config.yaml", list(overrides))
    tasks = build_tasks(cfg.tasks)
    return cfg, tasks, build_splits(cfg.data, tasks, seed=cfg.training.seed)


def test_sources_are_split_and_concatenated_with_masks(per_task):
    cfg, tasks, splits = _splits(per_task)
    assert cfg.tasks["red"].table == str(per_task / "red" / "red.csv")  # relative to the config file
    train = splits.train
    names = train.source_names
    assert names == [str(per_task / "main.csv") + " [train]", str(per_task / "quadrant.csv") + " [train]",
                     str(per_task / "red" / "red.csv") + " [train]"]
    counts = np.bincount(train.sources)
    assert counts.tolist() == [32, 128, 64]  # each source split 80/20 on its own
    assert len(train) == len(train.paths) == len(train.rows) == 224
    owner = {"tags": 0, "quadrant": 1, "red": 2}
    for task, src in owner.items():
        assert (train.masks[task] == (train.sources == src)).all(), task
    q, r, t = train.targets["quadrant"], train.targets["red"], train.targets["tags"]
    assert q.dtype == np.int64 and (q[train.sources != 1] == -1).all() and (q[train.sources == 1] >= 0).all()
    assert r.dtype == np.float32 and np.isnan(r[train.sources != 2]).all() and not np.isnan(r[train.sources == 2]).any()
    assert t.shape == (224, 3) and (t[train.sources != 0] == 0).all()
    assert train.paths[40].startswith(str(per_task / "quad" / "images"))  # image paths resolve per table
    assert all(p.startswith(str(per_task / "red" / "images")) for p in np.asarray(train.paths)[train.sources == 2])
    assert train.rows[train.sources == 1].min() >= 1 and train.rows[train.sources == 1].max() <= 160  # 1-based per source
    assert splits.val is not None and sorted(splits.val.rows_per_source().values()) == [8, 16, 32]
    summary = splits.summary()
    assert summary["train"]["labelled"] == {"quadrant": 128, "red": 64, "tags": 32}
    assert list(summary["train"]["sources"].values()) == [32, 128, 64]
    # classes are inferred per task from its own table
    assert tasks["quadrant"].classes == ["bl", "br", "tl", "tr"]
    assert tasks["red"].classes == ["no", "yes"] and tasks["tags"].classes == ["left", "top", "warm"]


def test_split_column_in_a_per_task_table(per_task):
    import pandas as pd

    q = pd.read_csv(per_task / "quadrant.csv")
    q["split"] = ["val" if i % 5 == 0 else "train" for i in range(len(q))]
    q.to_csv(per_task / "quadrant.csv", index=False)
    _, _, splits = _splits(per_task, ["data.split_column=split"])  # main.csv and red.csv have no split column
    val = splits.val.rows_per_source()
    assert val[str(per_task / "quadrant.csv") + " [val]"] == 32 and sum(val.values()) == 32 + 8 + 16


def test_train_table_is_optional_when_every_task_has_a_table(per_task):
    _edit(per_task / "config.yaml", ("type: multilabel}", "type: multilabel, table: main.csv}"),
          ("  train_table: main.csv\n", ""))
    cfg, _, splits = _splits(per_task)
    assert cfg.data.train_table is None
    assert len(splits.train.source_names) == 3 and splits.train.labelled() == {"quadrant": 128, "red": 64, "tags": 32}


def test_no_source_at_all_is_a_config_error(tmp_path):
    write_config(tmp_path / "config.yaml", "x.csv")
    _edit(tmp_path / "config.yaml", ("  train_table: x.csv\n", ""), ('positive: "yes"}', 'positive: "yes", table: r.csv}'))
    with pytest.raises(ConfigError, match=r"'data.train_table' is required.*quadrant, tags"):
        load_config(tmp_path / "config.yaml")
    with pytest.raises(ConfigError, match="data.sampling"):
        load_config(tmp_path / "config.yaml", ["data.train_table=x.csv", "data.sampling=roundrobin"])


def test_errors_name_the_per_task_table(per_task):
    import pandas as pd

    red = pd.read_csv(per_task / "red" / "red.csv")
    red.rename(columns={"red": "is_red"}).to_csv(per_task / "red" / "red.csv", index=False)
    with pytest.raises(DataError, match=r"red\.csv' has no column 'red' for task 'red'.*columns: is_red"):
        _splits(per_task)
    _, tasks, splits = _splits(per_task, ["tasks.red.column=is_red"])  # the column key applies to its table
    assert splits.train.labelled()["red"] == 64
    red.loc[5, "red"] = "maybe"
    red.to_csv(per_task / "red" / "red.csv", index=False)
    with pytest.raises(DataError, match=r"red\.csv \[(train|val)\], row 6, column 'red': label 'maybe'"):
        _splits(per_task, ["tasks.red.classes=[no,yes]"])


def test_sampler_modes():
    sources = np.repeat([0, 1, 2], [1000, 100, 10])  # unequal sizes
    n = len(sources)
    prop = SourceSampler(sources, mode="proportional", seed=0)
    assert sorted(prop.indices(0)) == list(range(n))  # every row once per epoch
    assert not np.array_equal(prop.indices(0), prop.indices(1))
    draws = {}
    for mode in ("round_robin", "temperature"):
        s = SourceSampler(sources, mode=mode, temperature=2.0, seed=0)
        idx = np.concatenate([s.indices(e) for e in range(20)])
        assert len(s.indices(0)) == n and idx.min() >= 0 and idx.max() < n
        draws[mode] = np.bincount(sources[idx], minlength=3) / len(idx)
    assert np.allclose(draws["round_robin"], 1 / 3, atol=0.02)
    expected = np.sqrt([1000, 100, 10]) / np.sqrt([1000, 100, 10]).sum()
    assert np.allclose(draws["temperature"], expected, atol=0.02)
    assert draws["temperature"][0] < 1000 / n and draws["temperature"][0] > 1 / 3  # between the two
    assert np.allclose(source_probabilities(np.array([1000, 100, 10]), "temperature", 1.0), [1000 / n, 100 / n, 10 / n])
    # reproducible from the seed; epochs differ; iteration advances the epoch unless set_epoch says otherwise
    a, b = SourceSampler(sources, mode="round_robin", seed=7), SourceSampler(sources, mode="round_robin", seed=7)
    assert list(a) == list(b) and list(a) == list(b)
    first = list(SourceSampler(sources, mode="round_robin", seed=7))
    a.set_epoch(0)
    assert list(a) == first and list(a) != first


def test_train_loader_mixes_sources_only_for_several_sources(per_task):
    from polyhead.data.dataset import EncodedSplit

    cfg, _, splits = _splits(per_task, ["data.sampling=round_robin"])
    loader = train_loader(splits.train, cfg.data, seed=cfg.training.seed)
    assert isinstance(loader.sampler, SourceSampler) and loader.sampler.mode == "round_robin"
    single = EncodedSplit(paths=splits.train.paths, rows=splits.train.rows, source="one")
    sampler = train_loader(single, cfg.data, seed=cfg.training.seed).sampler  # one table: every row once per epoch, order from (seed, epoch)
    assert isinstance(sampler, SourceSampler) and sampler.mode == "proportional"
    sampler.set_epoch(3)
    drawn = list(sampler)
    assert sorted(i for _, i in drawn) == list(range(len(single))) and {e for e, _ in drawn} == {3}


def test_train_end_to_end_with_per_task_tables(per_task):
    argv = ["train", str(per_task / "config.yaml"), f"output_dir={per_task / 'runs'}", "run_name=pt",
            "data.sampling=temperature"]
    assert main(argv) == 0
    run = per_task / "runs" / "pt"
    val = json.loads((run / "metrics.json").read_text())["val"]
    assert val["quadrant"]["n"] == 32 and val["red"]["n"] == 16 and val["tags"]["n"] == 8
    assert val["quadrant"]["accuracy"] > 0.6
    assert val["red"]["accuracy"] > 0.6
    assert val["tags"]["micro_f1"] > 0.5
    data = json.loads((run / "data.json").read_text())
    assert data["train"]["sources"] == {str(per_task / "main.csv") + " [train]": 32,
                                        str(per_task / "quadrant.csv") + " [train]": 128,
                                        str(per_task / "red" / "red.csv") + " [train]": 64}
    assert data["val"]["labelled"] == {"quadrant": 32, "red": 16, "tags": 8}


def test_a_loader_yields_the_documented_batch(per_task):
    """data.dataset.Batch is what a loader yields: exactly its keys, its dtypes and shapes, each
    row's `row` and `index` pointing back at the split; prediction batches add `error`."""
    from polyhead.data.dataset import Batch, MultiTaskDataset, PredictionBatch
    from polyhead.data.loaders import eval_loader

    cfg, tasks, splits = _splits(per_task)
    batch = next(iter(eval_loader(splits.train, cfg.data, seed=0)))
    assert set(batch) == Batch.__required_keys__ == {"image", "targets", "mask", "row", "index"}
    index = batch["index"]
    b = len(index)
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (b, 3, 16, 16)
    assert set(batch["targets"]) == set(batch["mask"]) == set(tasks)
    for name in tasks:
        assert batch["mask"][name].dtype == torch.bool and batch["mask"][name].shape == (b,)
        assert batch["mask"][name].tolist() == splits.train.masks[name][index.numpy()].tolist()
    assert batch["targets"]["tags"].shape == (b, len(tasks["tags"].classes))
    assert batch["row"].tolist() == splits.train.rows[index.numpy()].tolist()
    item = MultiTaskDataset(splits.train, channels=3, size=(16, 16), on_bad_image="skip")[0]
    assert set(item) == PredictionBatch.__required_keys__ | PredictionBatch.__optional_keys__
    assert item["error"] == "" and int(item["index"]) == 0
