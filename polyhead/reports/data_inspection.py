"""Look at the data before training: sample grids, label distributions and warnings.

`inspect_data` takes the splits exactly as training builds them (`build_splits`) and writes:
    samples.png             raw training samples, each captioned with every task's label
    samples_augmented.png   the same samples after the training augmentation, several draws each
    label_distribution.png  per task, counts per class and split plus rows missing the label
    data_report.json        {"splits": {split: {task: {"rows", "labelled", "missing", "counts": {class: n}}}},
                             "warnings": [str], "augmentation": str or None (none configured),
                             "samples": [{"split_index", "path", "labels": {task: str}}],
                             "skipped_rows": [{"split", "table", "row", "image", "reason"}],
                             "validation_warnings": [str]}
                            (skipped_rows: rows left out for a bad image, data.on_bad_image=skip;
                             validation_warnings: data.validate's duplicated rows, train/val leaks, ...)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from polyhead.data.dataset import EncodedSplit
from polyhead.data.images import load_image
from polyhead.reports._style import agg_pyplot as pyplot
from polyhead.reports.grids import save_image_grid
from polyhead.tasks import Task

MISSING = "—"
TINY = 10  # fewer training examples than this: a class the model can hardly learn
IMBALANCE = 10.0  # largest / smallest training class count at or above this: severe imbalance
MOSTLY_MISSING = 0.5  # share of rows without a task's label above this: warned


@dataclass
class Inspection:
    out_dir: Path
    report: dict  # the data_report.json content
    warnings: list[str]


# ---------------------------------------------------------------- counting

def label_counts(split: EncodedSplit, tasks: dict[str, Task]) -> dict[str, dict]:
    """{task: {"rows", "labelled", "missing", "counts": {class: n}}} for one encoded split.

    Multiclass and binary: rows per class. Multilabel: rows carrying each label (a row may carry
    several or none)."""
    out = {}
    for name, task in tasks.items():
        mask = split.masks[name]
        targets = split.targets[name][mask]
        if task.type == "multilabel":
            per = targets.sum(axis=0).astype(np.int64) if len(targets) else np.zeros(len(task.classes), np.int64)
        else:
            per = np.bincount(targets.astype(np.int64), minlength=len(task.classes))
        labelled = int(mask.sum())
        out[name] = {"rows": len(split), "labelled": labelled, "missing": len(split) - labelled,
                     "counts": {c: int(n) for c, n in zip(task.classes, per)}}
    return out


def data_warnings(counts: dict[str, dict[str, dict]], tasks: dict[str, Task]) -> list[str]:
    """Plain-text warnings from `{split: label_counts(...)}` (train required)."""
    warnings = []
    for name, task in tasks.items():
        train = counts["train"][name]
        c = train["counts"]
        if train["rows"] and train["missing"] / train["rows"] > MOSTLY_MISSING:
            warnings.append(f"task '{name}': {train['missing']} of {train['rows']} training rows "
                            f"({train['missing'] / train['rows']:.0%}) have no label")
        empty = [k for k, n in c.items() if n == 0]
        if empty:
            warnings.append(f"task '{name}': no training example for class(es) {_names(empty)}")
        present = {k: n for k, n in c.items() if n > 0}
        if len(present) >= 2:
            big, small = max(present, key=present.get), min(present, key=present.get)
            if present[big] / present[small] >= IMBALANCE:
                warnings.append(f"task '{name}': severe class imbalance in train: '{big}' has {present[big]} "
                                f"examples, '{small}' only {present[small]} ({present[big] / present[small]:.0f}x)")
        tiny = [k for k, n in present.items() if n < TINY]
        if tiny:
            shown = ", ".join(f"'{k}' ({present[k]})" for k in tiny[:20]) + (" ..." if len(tiny) > 20 else "")
            warnings.append(f"task '{name}': {len(tiny)} class(es) with fewer than {TINY} training examples: {shown}")
        for split in ("val", "test"):
            if split not in counts:
                continue
            rare = [k for k, n in counts[split][name]["counts"].items() if n > 0 and c[k] < TINY]
            if rare:
                shown = ", ".join(f"'{k}' ({counts[split][name]['counts'][k]} in {split}, {c[k]} in train)"
                                  for k in rare[:20]) + (" ..." if len(rare) > 20 else "")
                warnings.append(f"task '{name}': class(es) present in {split} but rare in train: {shown}")
    return warnings


def _names(names: list[str]) -> str:
    return ", ".join(f"'{n}'" for n in names[:20]) + (f" ... ({len(names)} in all)" if len(names) > 20 else "")


# ---------------------------------------------------------------- samples

def label_text(split: EncodedSplit, i: int, task: Task) -> str:
    """Row i's label of one task as text: the class, the joined labels (multilabel), or "—" if missing."""
    name = task.name
    if not split.masks[name][i]:
        return MISSING
    target = split.targets[name][i]
    if task.type == "multilabel":
        labels = [c for c, on in zip(task.classes, target) if on]
        return "|".join(labels) if labels else "(none)"
    return task.classes[int(target)]


def choose_samples(split: EncodedSplit, tasks: dict[str, Task], n: int, seed: int) -> list[int]:
    """n row positions of `split`, drawn with `seed`; first one per class of the first multiclass
    task (in class order, as far as n allows), then at random among the rest."""
    rng = np.random.default_rng(seed)
    n = min(n, len(split))
    chosen: list[int] = []
    first = next((t for t in tasks.values() if t.type == "multiclass"), None)
    if first is not None:
        mask, targets = split.masks[first.name], split.targets[first.name]
        for k in range(len(first.classes)):
            rows = np.flatnonzero(mask & (targets == k))
            if len(rows) and len(chosen) < n:
                chosen.append(int(rng.choice(rows)))
    rest = np.setdiff1d(np.arange(len(split)), chosen)
    chosen += [int(i) for i in rng.choice(rest, size=n - len(chosen), replace=False)]
    return chosen


def caption(split: EncodedSplit, i: int, tasks: dict[str, Task]) -> str:
    return "\n".join(f"{name}: {label_text(split, i, task)}" for name, task in tasks.items())


# ---------------------------------------------------------------- plots

def plot_label_distribution(counts: dict[str, dict[str, dict]], tasks: dict[str, Task], path: Path) -> Path:
    """One horizontal bar chart per task: classes (plus a "(missing label)" row) by split."""
    plt = pyplot()
    splits = list(counts)
    colors = {"train": "#4c72b0", "val": "#dd8452", "test": "#55a868"}
    heights = [max(2.2, 0.28 * (len(t.classes) + 1) * max(1, len(splits) * 0.6) + 1.0) for t in tasks.values()]
    fig, axes = plt.subplots(len(tasks), 1, figsize=(10, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, (name, task) in zip(axes[:, 0], tasks.items()):
        labels = list(task.classes) + ["(missing label)"]
        y = np.arange(len(labels))
        bar = 0.8 / len(splits)
        top = 1
        for j, split in enumerate(splits):
            c = counts[split][name]
            values = [c["counts"][k] for k in task.classes] + [c["missing"]]
            top = max(top, *values)
            pos = y - 0.4 + bar * (j + 0.5)
            bars = ax.barh(pos, values, height=bar, color=colors.get(split, "gray"), label=split)
            bars[-1].set_hatch("//")
            bars[-1].set_alpha(0.6)
            for b, v in zip(bars, values):
                ax.text(b.get_width(), b.get_y() + b.get_height() / 2, f" {v}", va="center", fontsize=7)
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, top * 1.15)
        kind = {"multilabel": "rows carrying each label"}.get(task.type, "rows per class")
        ax.set_title(f"{name} ({task.type}, {len(task.classes)} classes): {kind}", fontsize=10, loc="left")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: never over a bar
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- the whole inspection

def inspect_splits(splits: dict[str, EncodedSplit | None], tasks: dict[str, Task], out_dir: str | Path, *,
                   channels: int, size: tuple[int, int], transform=None, augment: str = "", samples: int = 16,
                   draws: int = 4, seed: int = 0, skipped_rows: list[dict] = (),
                   validation_warnings: list[str] = ()) -> Inspection:
    """Write the four files into `out_dir`. `splits`: {"train", "val", "test"} (val/test may be None);
    `transform`: the training augmentation on uint8 [C, H, W] (None: no augmentation); `augment`
    names its steps for the title; `skipped_rows` and `validation_warnings`: what data.validate found
    (`DataSplits.skipped_rows`, `DataSplits.warnings`), recorded in data_report.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = splits["train"]
    counts = {name: label_counts(s, tasks) for name, s in splits.items() if s is not None and len(s)}
    warnings = data_warnings(counts, tasks)

    picked = choose_samples(train, tasks, samples, seed)
    images = [load_image(train.paths[i], channels=channels, size=size) for i in picked]
    captions = [caption(train, i, tasks) for i in picked]
    h, w = size
    save_image_grid(images, captions, out / "samples.png",
                    title=f"{len(picked)} training samples ({channels}x{h}x{w}, as the model sees them)")
    _augmented_grid(images, captions, out / "samples_augmented.png", transform, augment, draws, seed)
    plot_label_distribution(counts, tasks, out / "label_distribution.png")

    report = {"splits": counts, "warnings": warnings, "augmentation": augment if transform is not None else None,
              "samples": [{"split_index": i, "path": train.paths[i],
                           "labels": {n: label_text(train, i, t) for n, t in tasks.items()}} for i in picked],
              "skipped_rows": list(skipped_rows), "validation_warnings": list(validation_warnings)}
    (out / "data_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return Inspection(out, report, warnings)


def _augmented_grid(images: list[torch.Tensor], captions: list[str], path: Path, transform, augment: str,
                    draws: int, seed: int) -> None:
    if transform is None:
        save_image_grid(images, captions, path,
                        title="no augmentation configured (data.augment): training sees the images as they are")
        return
    torch.manual_seed(seed)  # the same draws on every run
    cells, texts = [], []
    for img, cap in zip(images, captions):
        cells.append(img)
        texts.append("raw\n" + cap)
        for k in range(draws):
            cells.append(transform(img.clone()))
            texts.append(f"draw {k + 1}")
    save_image_grid(cells, texts, path, columns=draws + 1,
                    title=f"training augmentation ({augment or 'configured'}): raw image, then {draws} random draws")
