"""Evaluation plots from a model's outputs on a labelled split.

`outputs = {task: (probs [N, K] float, targets, index [N] int64)}` holds the labelled rows only
(see `engine.evaluation.OutputCollector.labelled_outputs`); `index` points into `paths`, the
split's image paths. Targets: multiclass int64 [N]; binary float {0, 1} [N]; multilabel
float {0, 1} [N, K].
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from polyhead.reports._style import grid, pyplot, safe_name, save
from polyhead.tasks import BinaryTask, MulticlassTask, MultilabelTask, Task

Outputs = dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def plot_evaluation(outputs: Outputs, tasks: dict[str, Task], paths: Sequence[str], out_dir: Path, *,
                    worst: int = 16, max_annotated: int = 12) -> list[Path]:
    """Per task: confusion matrix (multiclass), per-label bars (multilabel), ROC/PR (binary),
    a reliability diagram, and a grid of the `worst` worst-classified images. Returns the PNGs."""
    out_dir = Path(out_dir)
    written: list[Path] = []
    for name, (probs, targets, index) in outputs.items():
        task = tasks[name]
        if len(targets) == 0:
            continue
        probs, targets = probs.float().cpu(), targets.cpu()
        stem = out_dir / safe_name(name)
        if isinstance(task, MulticlassTask):
            written.append(plot_confusion(task, probs, targets, Path(f"{stem}_confusion.png"), max_annotated))
        elif isinstance(task, MultilabelTask):
            written.append(plot_per_label(task, probs, targets, Path(f"{stem}_per_label.png")))
        elif isinstance(task, BinaryTask):
            written.append(plot_roc_pr(task, probs, targets, Path(f"{stem}_roc_pr.png")))
        written.append(plot_calibration(task, probs, targets, Path(f"{stem}_calibration.png")))
        if worst > 0 and len(paths):
            written.append(plot_worst(task, probs, targets, index, paths, Path(f"{stem}_worst.png"), worst))
    return written


# ---- multiclass ------------------------------------------------------------------------------
def plot_confusion(task: Task, probs: torch.Tensor, targets: torch.Tensor, path: Path, max_annotated: int) -> Path:
    """Row-normalised confusion matrix (each true class sums to 1); the figure grows with K."""
    plt = pyplot()
    k = len(task.classes)
    cm = np.zeros((k, k))
    np.add.at(cm, (targets.long().numpy(), probs.argmax(1).numpy()), 1)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    side = min(28.0, max(5.5, 0.42 * k + 3))
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.grid(False)
    labels = [_short(c, 18) for c in task.classes]
    tick_font = 10 if k <= 20 else 8
    ax.set_xticks(range(k), labels, rotation=45 if k <= 12 else 90, ha="right" if k <= 12 else "center",
                  fontsize=tick_font, rotation_mode="anchor" if k <= 12 else "default")
    ax.set_yticks(range(k), labels, fontsize=tick_font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= max_annotated:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=9,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    acc = float(np.trace(cm) / max(cm.sum(), 1))
    ax.set_title(f"{task.name}: confusion matrix (rows normalised)\nn={int(cm.sum())}, accuracy {acc:.3f}")
    fig.tight_layout()
    return save(fig, path)


# ---- multilabel ------------------------------------------------------------------------------
def plot_per_label(task: Task, probs: torch.Tensor, targets: torch.Tensor, path: Path) -> Path:
    """Horizontal precision / recall / F1 bars per label (at the task's thresholds), with support."""
    plt = pyplot()
    per = task.metrics(probs, targets).get("per_label", {})
    labels = list(per)
    k = len(labels)
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.45 * k + 1.5)))
    y = np.arange(k)
    h = 0.27
    for off, key, color in ((-h, "precision", "#4c72b0"), (0, "recall", "#dd8452"), (h, "f1", "#55a868")):
        ax.barh(y + off, [per[c][key] for c in labels], height=h, label=key, color=color)
    ax.set_yticks(y, [f"{_short(c, 24)} (n={int(per[c]['support'])})" for c in labels],
                  fontsize=10 if k <= 30 else 8)
    for i, c in enumerate(labels):  # the F1 as a number: a zero bar is otherwise invisible
        ax.text(per[c]["f1"] + 0.01, i + h, f"F1 {per[c]['f1']:.2f}", va="center", fontsize=8, color="#2f6b3b")
    ax.set_ylim(k - 0.5, -0.5)  # first label on top, no empty margin
    ax.set_xlim(0, 1.12)
    ax.set_xlabel("score")
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=3, frameon=False)
    ax.set_title(f"{task.name}: per-label precision, recall, F1 (n={len(targets)})", loc="left", pad=22)
    fig.tight_layout()
    return save(fig, path)


# ---- binary ----------------------------------------------------------------------------------
def plot_roc_pr(task: Task, probs: torch.Tensor, targets: torch.Tensor, path: Path) -> Path:
    """ROC and precision-recall curves, AUROC and AP in the legends (undefined with one class)."""
    import torchmetrics.functional.classification as M

    plt = pyplot()
    p, t = probs[:, 0], targets.long()
    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(10, 4.3))
    both = 0 < int(t.sum()) < len(t)
    if both:
        fpr, tpr, _ = M.binary_roc(p, t)
        auroc = M.binary_auroc(p, t).item()
        roc_ax.plot(fpr, tpr, color="#1f77b4", linewidth=2, label=f"AUROC = {auroc:.3f}")
        prec, rec, _ = M.binary_precision_recall_curve(p, t)
        ap = M.binary_average_precision(p, t).item()
        pr_ax.plot(rec, prec, color="#d62728", linewidth=2, label=f"AP = {ap:.3f}")
        pr_ax.axhline(float(t.float().mean()), color="gray", linestyle="--", linewidth=1,
                      label=f"positive rate = {float(t.float().mean()):.3f}")
    else:
        for ax in (roc_ax, pr_ax):
            ax.text(0.5, 0.5, "undefined: only one class\namong the labelled rows", ha="center", va="center")
    roc_ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="chance")
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.02),
               title="ROC")
    pr_ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="precision-recall")
    roc_ax.legend(loc="lower right")
    if both:
        pr_ax.legend(loc="lower left")
    pos = task.classes[1]
    fig.suptitle(f"{task.name}: positive class '{_short(pos, 30)}' (n={len(t)}, positives {int(t.sum())})")
    fig.tight_layout()
    return save(fig, path)


# ---- calibration -----------------------------------------------------------------------------
def calibration_points(task: Task, probs: torch.Tensor, targets: torch.Tensor) -> tuple[np.ndarray, np.ndarray, str]:
    """(confidence [M], outcome [M] in {0, 1}, axis wording). Multiclass: top-1 confidence vs
    correct; binary: P(positive) vs positive; multilabel: every label probability vs that label."""
    if isinstance(task, MulticlassTask):
        conf, pred = probs.max(1)
        return conf.numpy(), (pred == targets.long()).float().numpy(), "top-1 confidence|accuracy"
    if isinstance(task, BinaryTask):
        return probs[:, 0].numpy(), targets.float().numpy(), "predicted probability|positive rate"
    return probs.reshape(-1).numpy(), targets.float().reshape(-1).numpy(), "predicted probability|positive rate"


def expected_calibration_error(conf: np.ndarray, outcome: np.ndarray, bins: int = 10) -> float:
    """Sum over equal-width bins of (bin share) * |mean outcome - mean confidence|."""
    which = np.clip((conf * bins).astype(int), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            ece += sel.mean() * abs(outcome[sel].mean() - conf[sel].mean())
    return float(ece)


def plot_calibration(task: Task, probs: torch.Tensor, targets: torch.Tensor, path: Path, bins: int = 10) -> Path:
    plt = pyplot()
    conf, outcome, wording = calibration_points(task, probs, targets)
    xlabel, ylabel = wording.split("|")
    which = np.clip((conf * bins).astype(int), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    rate = np.array([outcome[which == b].mean() if counts[b] else np.nan for b in range(bins)])
    mean_conf = np.array([conf[which == b].mean() if counts[b] else np.nan for b in range(bins)])
    edges = np.linspace(0, 1, bins + 1)
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.5, 6.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.bar(edges[:-1], np.nan_to_num(rate), width=1 / bins, align="edge", color="#4c72b0", alpha=0.8,
           edgecolor="white", label=ylabel)
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="perfect calibration")
    ax.plot(mean_conf, rate, "o", color="#d62728", markersize=5, label=f"mean {xlabel.split()[-1]} per bin")
    ax.set(ylabel=ylabel, xlim=(0, 1), ylim=(0, 1.02))
    # Above the axes: inside, it would hide bars of an under- or over-confident model.
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False, fontsize=8)
    ece = expected_calibration_error(conf, outcome, bins)
    fig.suptitle(f"{task.name}: reliability diagram\nECE = {ece:.3f} ({len(conf)} predictions)")
    hist.bar(edges[:-1], counts, width=1 / bins, align="edge", color="#8c8c8c", edgecolor="white")
    hist.set(xlabel=xlabel, ylabel="count")
    fig.tight_layout()
    return save(fig, path)


# ---- worst examples --------------------------------------------------------------------------
def true_label_probability(task: Task, probs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(probability given to the true label [N], the label position it refers to [N]).
    Multilabel: per row, the label whose true state (on or off) got the lowest probability."""
    if isinstance(task, MulticlassTask):
        t = targets.long()
        return probs.gather(1, t[:, None])[:, 0], t
    if isinstance(task, BinaryTask):
        p = probs[:, 0]
        return torch.where(targets > 0.5, p, 1 - p), torch.zeros(len(p), dtype=torch.long)
    right = torch.where(targets > 0.5, probs, 1 - probs)
    value, label = right.min(1)
    return value, label


def _caption(task: Task, probs: torch.Tensor, targets: torch.Tensor, i: int, p: float, label: int) -> str:
    if isinstance(task, MulticlassTask):
        true, pred = task.classes[int(targets[i])], task.classes[int(probs[i].argmax())]
        return f"true: {_short(true, 22)}\npred: {_short(pred, 22)}\np(true) = {p:.2f}"
    if isinstance(task, BinaryTask):
        neg, pos = task.classes
        true = pos if targets[i] > 0.5 else neg
        pred = pos if probs[i, 0] >= task.config.threshold else neg
        return f"true: {_short(true, 22)}\npred: {_short(pred, 22)}\np(true) = {p:.2f}"
    on = task.thresholds()
    true = [c for c, t in zip(task.classes, targets[i].tolist()) if t > 0.5]
    pred = [c for c, x, th in zip(task.classes, probs[i].tolist(), on.tolist()) if x >= th]
    state = "on" if targets[i, label] > 0.5 else "off"
    return (f"true: {_short(', '.join(true) or '-', 26)}\npred: {_short(', '.join(pred) or '-', 26)}\n"
            f"p({_short(task.classes[label], 18)} {state}) = {p:.2f}")


def plot_worst(task: Task, probs: torch.Tensor, targets: torch.Tensor, index: torch.Tensor, paths: Sequence[str],
               path: Path, count: int = 16, cols: int = 4, pixels: int = 192) -> Path:
    """A grid of the `count` rows whose true label got the lowest probability, lowest first."""
    from polyhead.errors import DataError

    plt = pyplot()
    score, label = true_label_probability(task, probs, targets)
    order = torch.argsort(score)[:count].tolist()
    rows, cols = grid(len(order), cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.7 * cols, 3.35 * rows), squeeze=False)
    for ax, i in zip(axes.flat, order):
        ax.grid(False)
        ax.set_xticks([])
        ax.set_yticks([])
        try:
            img = _thumbnail(paths[int(index[i])], pixels)
            # Small images (16-64 px) stay sharp: one screen block per pixel instead of a blur.
            style = {"interpolation": "nearest" if max(img.shape[:2]) < pixels else "antialiased"}
            if (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all():
                ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=255, **style)  # grayscale stays gray
            else:
                ax.imshow(img, **style)
        except (DataError, IndexError, OSError):
            ax.text(0.5, 0.5, "image unreadable", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(_caption(task, probs, targets, i, float(score[i]), int(label[i])), fontsize=9)
        if int(index[i]) < len(paths):
            ax.set_title(_short(Path(paths[int(index[i])]).name, 26), fontsize=8, color="#555555")
    for ax in list(axes.flat)[len(order):]:
        ax.set_visible(False)
    fig.suptitle(f"{task.name}: {len(order)} worst-classified examples (lowest probability of the true label)",
                 fontsize=12)
    fig.tight_layout()
    return save(fig, path)


def _thumbnail(path: str, pixels: int):
    """uint8 [H, W, 3] at most `pixels` on its longer side, aspect kept (decoded by load_image)."""
    from PIL import Image

    from polyhead.data.images import load_image

    with Image.open(path) as im:
        w, h = im.size
        if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF orientation turns it by 90 degrees
            w, h = h, w
    scale = min(1.0, pixels / max(w, h, 1))
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return load_image(path, channels=3, size=size).permute(1, 2, 0).numpy()


def _short(text: str, width: int) -> str:
    text = str(text)
    return text if len(text) <= width else text[:width - 1] + "…"
