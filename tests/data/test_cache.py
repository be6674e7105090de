"""The decode-once image cache (data.cache): what it holds, when it is rebuilt, atomic files, an
unwritable folder, and training that gives the same result with and without it."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from rich.console import Console
from safetensors.torch import load_file

from polyhead.data import cache as cache_mod
from polyhead.data.cache import fingerprint, open_cache
from polyhead.data.images import load_image

SIZE = (6, 6)


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(12):
        path = tmp_path / "img" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture
def decodes(monkeypatch):
    """Counts the images the cache decodes."""
    count = {"n": 0}

    def counting(path, **kw):
        count["n"] += 1
        return load_image(path, **kw)

    monkeypatch.setattr(cache_mod, "load_image", counting)
    return count


def _open(paths, folder, mode="disk", size=SIZE, console=None):
    cache_mod.forget()  # as a new process would: only the file can be reused
    return open_cache(paths, mode=mode, channels=3, size=size, cache_dir=folder, console=console)


def _npy(folder):
    return sorted(p.name for p in folder.glob("*.npy")) if folder.exists() else []


def test_the_cache_holds_each_decoded_image_and_is_reused_from_disk(images, tmp_path, decodes):
    folder = tmp_path / "cache"
    paths = images[::-1] + images[:3]  # order and repeats do not matter: one row per distinct path
    cache = _open(paths, folder)
    assert decodes["n"] == 12 and len(_npy(folder)) == 1
    for p in images:
        assert torch.equal(cache.images[cache.row[p]], load_image(p, channels=3, size=SIZE))
    assert cache.rows(paths).tolist() == [cache.row[p] for p in paths]
    again = _open(images, folder)
    assert decodes["n"] == 12 and again.where.endswith(".npy")  # read back, nothing decoded
    assert torch.equal(again.images, cache.images)


def test_touching_or_replacing_an_image_rebuilds_the_cache(images, tmp_path, decodes):
    folder = tmp_path / "cache"
    _open(images, folder)
    st = os.stat(images[4])
    os.utime(images[4], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: same pixels, new mtime
    _open(images, folder)
    assert decodes["n"] == 24 and len(_npy(folder)) == 2
    Image.fromarray(np.full((9, 11, 3), 200, dtype=np.uint8)).save(images[5])  # replaced
    cache = _open(images, folder)
    assert decodes["n"] == 36 and len(_npy(folder)) == 3
    assert torch.equal(cache.images[cache.row[images[5]]], torch.full((3, *SIZE), 200, dtype=torch.uint8))


def test_image_size_and_channels_are_part_of_the_key(images, tmp_path):
    key = fingerprint(sorted(images), 3, SIZE)
    assert fingerprint(sorted(images), 3, (6, 7)) != key and fingerprint(sorted(images), 1, SIZE) != key
    assert fingerprint(sorted(images), 3, SIZE) == key
    small = _open(images, tmp_path / "cache", size=(4, 5))
    assert small.images.shape == (12, 3, 4, 5)


def test_a_build_that_fails_midway_leaves_nothing_reusable(images, tmp_path, monkeypatch):
    folder, calls = tmp_path / "cache", {"n": 0}

    def dies_midway(path, **kw):
        calls["n"] += 1
        if calls["n"] == 7:
            raise RuntimeError("killed")
        return load_image(path, **kw)

    monkeypatch.setattr(cache_mod, "load_image", dies_midway)
    with pytest.raises(RuntimeError, match="killed"):
        _open(images, folder)
    assert list(folder.iterdir()) == []  # neither a cache file nor its temporary file
    monkeypatch.setattr(cache_mod, "load_image", load_image)
    cache = _open(images, folder)
    assert torch.equal(cache.images[cache.row[images[6]]], load_image(images[6], channels=3, size=SIZE))


def test_a_torn_or_foreign_file_under_the_key_is_not_used(images, tmp_path, decodes):
    folder = tmp_path / "cache"
    _open(images, folder)
    (file,) = folder.glob("*.npy")
    file.write_bytes(file.read_bytes()[:200])  # torn (as no rename would leave it, but a disk might)
    cache = _open(images, folder)
    assert decodes["n"] == 24 and torch.equal(cache.images[0], load_image(sorted(images)[0], channels=3, size=SIZE))


def _console():
    return Console(record=True, width=300, force_terminal=False)


@pytest.mark.parametrize("mode, expect", [("disk", None), ("auto", "memory")])
def test_an_unwritable_cache_folder_is_one_warning(images, tmp_path, mode, expect):
    (tmp_path / "a-file").write_text("")
    console = _console()
    cache = _open(images, tmp_path / "a-file" / "cache", mode=mode, console=console)
    text = console.export_text()
    assert text.count("warning: cannot write the image cache") == 1
    assert (cache.where if cache else None) == expect
    if cache is not None:
        assert torch.equal(cache.images[cache.row[images[0]]], load_image(images[0], channels=3, size=SIZE))


def test_a_full_disk_is_one_warning_and_leaves_no_file(images, tmp_path, monkeypatch):
    def full(f, shape, batches):
        f.write(b"x" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_mod, "_write_rows", full)
    console = _console()
    assert _open(images, tmp_path / "cache", mode="disk", console=console) is None
    assert "No space left on device" in console.export_text()
    assert list((tmp_path / "cache").iterdir()) == []


def test_memory_mode_writes_nothing_and_is_kept_for_the_next_run_of_the_process(images, tmp_path, decodes):
    first = open_cache(images, mode="memory", channels=3, size=SIZE, cache_dir=tmp_path / "cache")
    second = open_cache(list(reversed(images)), mode="memory", channels=3, size=SIZE, cache_dir=tmp_path / "cache")
    assert second is first and decodes["n"] == 12 and not (tmp_path / "cache").exists()
    assert open_cache(images, mode="off", channels=3, size=SIZE) is None


# ---- training ---------------------------------------------------------------------------------
def test_cached_and_uncached_loaders_yield_the_same_batches(dataset):
    from polyhead.config.loading import load_config
    from polyhead.data.loaders import eval_loader, train_loader
    from polyhead.data.splits import build_splits
    from polyhead.tasks import build_tasks

    cfg = load_config(dataset / "config.yaml", [f"data.root={dataset}", "data.num_workers=0"])
    splits = build_splits(cfg.data, build_tasks(cfg.tasks), seed=0)
    cache = open_cache(splits.train.paths + splits.val.paths, mode="memory", channels=3, size=(16, 16))
    for make in (train_loader, eval_loader):
        plain, cached = make(splits.train, cfg.data, seed=0), make(splits.train, cfg.data, seed=0, cache=cache)
        for epoch in (0, 1):
            if make is train_loader:
                plain.sampler.set_epoch(epoch)
                cached.sampler.set_epoch(epoch)
            pairs = list(zip(plain, cached, strict=True))
            assert len(pairs) == len(plain)
            for a, b in pairs:
                assert torch.equal(a["image"], b["image"]) and torch.equal(a["index"], b["index"])
                assert torch.equal(a["row"], b["row"]) and a["row"].dtype == b["row"].dtype
                for t in a["targets"]:
                    assert a["targets"][t].dtype == b["targets"][t].dtype
                    assert torch.equal(a["targets"][t].nan_to_num(-7), b["targets"][t].nan_to_num(-7))
                    assert torch.equal(a["mask"][t], b["mask"][t])


def _weights(run):
    files = sorted((run / "model").rglob("*.safetensors"))
    return {f"{f.relative_to(run)}:{k}": v for f in files for k, v in load_file(f).items()}


def test_training_cached_and_uncached_gives_the_same_weights(dataset, capsys):
    from polyhead.cli.main import main

    common = ["tracking.enabled=false", "report.enabled=false", "training.epochs=2", "training.cpu_threads=1",
              "data.augment.hflip=true", "data.augment.crop_padding=2", "data.augment.rotation=10",
              "model.head.dropout=0.2"]
    runs = {}
    for mode in ("off", "disk", "memory"):
        argv = ["train", str(dataset / "config.yaml"), f"output_dir={dataset / 'runs'}", f"run_name={mode}",
                f"data.cache={mode}", *common]
        assert main(argv) == 0
        runs[mode] = dataset / "runs" / mode
    assert "image cache: decoded" in capsys.readouterr().out
    reference = _weights(runs["off"])
    history = pd.read_csv(runs["off"] / "history.csv")
    for mode in ("disk", "memory"):
        weights = _weights(runs[mode])
        assert weights.keys() == reference.keys()
        assert all(torch.equal(weights[k], reference[k]) for k in reference)
        pd.testing.assert_frame_equal(pd.read_csv(runs[mode] / "history.csv"), history, check_exact=True)
        assert (json.loads((runs[mode] / "metrics.json").read_text())["val"]
                == json.loads((runs["off"] / "metrics.json").read_text())["val"])


def test_training_goes_on_when_the_cache_folder_is_unwritable(dataset, capsys):
    from polyhead.cli.main import main

    (dataset / "a-file").write_text("")
    argv = ["train", str(dataset / "config.yaml"), f"output_dir={dataset / 'runs'}", "run_name=r",
            "tracking.enabled=false", "report.enabled=false", "training.epochs=1", "data.cache=disk",
            f"data.cache_dir={dataset / 'a-file' / 'cache'}"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("warning: cannot write the image cache") == 1
    assert (dataset / "runs" / "r" / "metrics.json").is_file()
