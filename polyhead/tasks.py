"""Task types. Each class owns everything type-specific about one output:
label encoding, loss, output activation, decoding and metrics.

Shapes (B = batch, K = the task's number of outputs):
    logits   float [B, K]       (K = classes for multiclass, 1 for binary, labels for multilabel)
    targets  multiclass: int64 [B]; binary: float [B]; multilabel: float [B, K]
    mask     bool  [B]          True where the row has a label for this task

Adding a task type means adding one subclass and one `TASK_TYPES` entry.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from polyhead.config.schema import TaskConfig
from polyhead.errors import ConfigError, DataError, PolyheadError, one_of
from polyhead.losses import check_loss, check_loss_output

if TYPE_CHECKING:  # tables are read elsewhere; pandas is not needed to check a config
    import pandas as pd


def is_missing(value: Any) -> bool:
    """None, NaN and blank strings are missing labels (the row is masked out of this task)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str) and value.strip() == "":
        return True
    return False


def label_str(value: Any) -> str:
    """One canonical string per label value: 3, 3.0 and "3" are the same class."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (np.integer,)):
        return str(int(value))
    return str(value).strip()


def _classification_metrics():
    """torchmetrics' functional classification metrics, imported on first use: the package pulls in
    torchvision and matplotlib, which `polyhead predict` never needs."""
    from torchmetrics.functional import classification

    return classification


def _where(table: str, row: Any, column: str) -> str:
    return f"{table}, row {row}, column '{column}'"


class Task:
    """Base class. Subclasses set `type` and implement the abstract methods."""

    type: ClassVar[str] = ""
    #: The metrics summaries show for this type (the terminal table after training and `evaluate`),
    #: most telling first. The first is `main_metric`: the one the per-epoch lines, the learning
    #: curves, training's `train/<task>/<metric>` and `compare` report.
    headline_metrics: ClassVar[tuple[str, ...]] = ()
    main_metric: ClassVar[str] = ""  # headline_metrics[0], set for each subclass

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.headline_metrics:
            cls.main_metric = cls.headline_metrics[0]

    def __init__(self, name: str, config: TaskConfig):
        self.name = name
        self.config = config
        self.column = config.column or name
        self.classes: list[str] | None = [str(c) for c in config.classes] if config.classes else None
        self.criterion = check_loss(name, self.type, config).fn  # fn(logits, targets, task, **loss_args)
        if self.classes is not None:
            self.check_loss()

    # ---- classes -----------------------------------------------------------------
    @property
    def num_outputs(self) -> int:
        assert self.classes is not None, f"classes of task '{self.name}' are not known yet"
        return len(self.classes)

    def fit_classes(self, column: pd.Series, table: str) -> bool:
        """Infer the class list from a training column if the config gave none.

        Returns True if classes were inferred (the caller prints them once)."""
        if self.classes is not None:
            return False
        self.classes = self._infer_classes(column, table)
        self.check_loss()
        return True

    def _infer_classes(self, column: pd.Series, table: str) -> list[str]:
        values = sorted({label_str(v) for v in column if not is_missing(v)}, key=_natural_key)
        if not values:
            raise DataError(f"task '{self.name}': column '{self.column}' in {table} has no labels at all; "
                            f"give the classes in tasks.{self.name}.classes or label some rows")
        return values

    # ---- encoding ----------------------------------------------------------------
    def encode(self, column: pd.Series, table: str) -> tuple[np.ndarray, np.ndarray]:
        """Table column -> (targets, mask). Raises DataError naming row/column/value."""
        raise NotImplementedError

    # ---- training ----------------------------------------------------------------
    def loss(self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """Mean loss over the labelled rows; None when no row of the batch is labelled."""
        if not bool(mask.any()):
            return None
        return self.labelled_loss(logits[mask], targets[mask])

    def labelled_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean loss of labelled rows only: logits [n, K], targets of those n rows; the task's
        `loss` (polyhead.losses) with its `loss_args` (binary: the single logit column, [n])."""
        return self._criterion(logits, targets)

    def _criterion(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.type == "binary":
            logits = logits[:, 0]
        return self.criterion(logits, targets, self, **dict(self.config.loss_args or {}))

    def check_loss(self) -> None:
        """Run the loss once on a tiny batch (all-zero logits, the first class as target): one line
        unless it returns a finite scalar with a gradient."""
        n, k = 2, self.num_outputs
        weights = self.config.class_weights
        if self.type == "multiclass" and weights is not None and len(weights) != k:
            shown = ", ".join(self.classes[:10]) + (" ..." if k > 10 else "")
            raise ConfigError(f"tasks.{self.name}.class_weights has {len(weights)} weights but the task has {k} "
                              f"classes ({shown}); give one weight per class")
        try:
            with torch.inference_mode(False), torch.enable_grad():  # also when a bundle loads under no_grad
                logits = torch.zeros(n, k, requires_grad=True)
                if self.type == "multiclass":
                    targets = torch.zeros(n, dtype=torch.int64)
                else:
                    targets = torch.zeros(n, k) if self.type == "multilabel" else torch.zeros(n)
                value = self._criterion(logits, targets)
        except PolyheadError:
            raise
        except Exception as exc:
            raise PolyheadError(f"loss '{self.config.loss}' of task '{self.name}' fails on a small test batch: "
                                f"{type(exc).__name__}: {exc}") from None
        check_loss_output(self, value)

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """logits [B, K] -> probabilities [B, K]."""
        return torch.sigmoid(logits)

    # ---- outputs -----------------------------------------------------------------
    def decode(self, probs: torch.Tensor) -> dict[str, list]:
        """probs [B, K] -> prediction columns (name -> one value per row)."""
        raise NotImplementedError

    def prediction_columns(self) -> dict[str, str]:
        """The columns `decode` writes, in order, each with its kind: "string", "float",
        "string_list" or "float_list" (so a prediction file's schema is known before any row)."""
        raise NotImplementedError

    def metrics(self, probs: torch.Tensor, targets: torch.Tensor) -> dict[str, Any]:
        """probs [N, K] and targets of the labelled rows only -> JSON-able metrics."""
        raise NotImplementedError

    @classmethod
    def scalar_metrics(cls, config: TaskConfig) -> tuple[str, ...]:
        """The number-valued keys `metrics` can return for a task so configured (besides `n`):
        training logs them as val/<task>/<name>, so `training.monitor` may name them. A key may
        be absent from one evaluation (e.g. AUROC on a split with one class)."""
        raise NotImplementedError

    # ---- bundle ------------------------------------------------------------------
    def to_dict(self) -> dict:
        from dataclasses import asdict

        cfg = asdict(self.config)
        cfg["classes"] = self.classes
        return {"name": self.name, **cfg}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, classes={self.classes!r})"


def _natural_key(s: str):
    try:
        return (0, float(s), s)
    except ValueError:
        return (1, 0.0, s)


def _unknown_label(task: Task, table: str, row, value, extra: str = "") -> DataError:
    shown = ", ".join(task.classes[:20]) + (" ..." if len(task.classes) > 20 else "")
    return DataError(f"{_where(table, row, task.column)}: label {value!r} is not a class of task '{task.name}' "
                     f"(classes: {shown}){extra}")


def _numeric_hint(task: Task, key: str) -> str:
    """A number where the declared classes are names: most likely class indices, not class names."""
    if _natural_key(key)[0] != 0 or any(_natural_key(c)[0] == 0 for c in task.classes):
        return ""
    return (f"; the column holds a number but tasks.{task.name}.classes are names: write the class names "
            f"in the table, or declare the numbers as tasks.{task.name}.classes")


class MulticlassTask(Task):
    type = "multiclass"
    headline_metrics = ("accuracy", "top3_accuracy", "top5_accuracy", "macro_f1")

    def encode(self, column, table):
        index = {c: i for i, c in enumerate(self.classes)}
        targets = np.full(len(column), -1, dtype=np.int64)
        for i, (row, value) in enumerate(column.items()):
            if is_missing(value):
                continue
            key = label_str(value)
            if key not in index:
                raise _unknown_label(self, table, row, value, _numeric_hint(self, key))
            targets[i] = index[key]
        return targets, targets >= 0

    def activate(self, logits):
        return torch.softmax(logits.float(), dim=-1)

    def decode(self, probs):
        k = min(self.config.top_k, self.num_outputs)
        top_p, top_i = probs.topk(k, dim=-1)
        names = self.classes
        return {
            self.name: [names[i] for i in top_i[:, 0].tolist()],
            f"{self.name}_prob": top_p[:, 0].tolist(),
            f"{self.name}_top{k}": [[names[i] for i in row] for row in top_i.tolist()],
            f"{self.name}_top{k}_prob": top_p.tolist(),
        }

    def prediction_columns(self):
        k = min(self.config.top_k, self.num_outputs)
        return {self.name: "string", f"{self.name}_prob": "float", f"{self.name}_top{k}": "string_list",
                f"{self.name}_top{k}_prob": "float_list"}

    def metrics(self, probs, targets):
        M = _classification_metrics()
        c, n = self.num_outputs, int(targets.numel())
        out: dict[str, Any] = {"n": n}
        if n == 0:
            return out
        kw = dict(num_classes=c, validate_args=False)
        out["accuracy"] = M.multiclass_accuracy(probs, targets, average="micro", **kw).item()
        k = min(self.config.top_k, c)
        if 1 < k < c:
            out[f"top{k}_accuracy"] = M.multiclass_accuracy(probs, targets, average="micro", top_k=k, **kw).item()
        out["macro_f1"] = M.multiclass_f1_score(probs, targets, average="macro", **kw).item()
        prec = M.multiclass_precision(probs, targets, average="none", **kw).tolist()
        rec = M.multiclass_recall(probs, targets, average="none", **kw).tolist()
        f1 = M.multiclass_f1_score(probs, targets, average="none", **kw).tolist()
        support = torch.bincount(targets, minlength=c).tolist()
        out["per_class"] = {name: {"precision": prec[i], "recall": rec[i], "f1": f1[i], "support": support[i]}
                            for i, name in enumerate(self.classes)}
        out["confusion_matrix"] = M.multiclass_confusion_matrix(probs, targets, **kw).tolist()
        return out

    @classmethod
    def scalar_metrics(cls, config):
        k = config.top_k if config.classes is None else min(config.top_k, len(config.classes))
        top_k = (f"top{k}_accuracy",) if k > 1 and (config.classes is None or k < len(config.classes)) else ()
        return ("accuracy", *top_k, "macro_f1")


_TRUE = {"1", "true", "yes", "y", "t", "pos", "positive"}
_FALSE = {"0", "false", "no", "n", "f", "neg", "negative"}


class BinaryTask(Task):
    type = "binary"
    headline_metrics = ("f1", "accuracy", "auroc", "average_precision")

    def __init__(self, name: str, config: TaskConfig):
        super().__init__(name, config)
        if self.classes is not None and config.positive is not None and len(self.classes) == 2:
            # `positive` decides whatever the order of `classes`: the head's output is P(positive)
            pos = _match_label(config.positive, self.classes)
            if pos is None:
                raise ConfigError(f"tasks.{name}.positive is {config.positive!r}, which is not one of "
                                  f"tasks.{name}.classes: {', '.join(self.classes)}")
            self.classes = [next(c for c in self.classes if c != pos), pos]

    @property
    def num_outputs(self) -> int:
        return 1

    def _infer_classes(self, column, table):
        values = super()._infer_classes(column, table)
        lowered = {v.lower() for v in values}
        if self.config.positive is not None:
            return self._classes_around_positive(values, table)
        if lowered <= (_TRUE | _FALSE):  # 0/1, true/false, yes/no...: the true token is positive
            trues = [v for v in values if v.lower() in _TRUE]
            falses = [v for v in values if v.lower() in _FALSE]
            if len(trues) <= 1 and len(falses) <= 1:
                t = trues[0] if trues else _pair(falses[0])
                f = falses[0] if falses else _pair(trues[0])
                return [f, t]
        if len(values) != 2:
            raise DataError(f"binary task '{self.name}': column '{self.column}' in {table} must hold two values "
                            f"(or 0/1, true/false, yes/no), found {len(values)}: {', '.join(values[:10])}; "
                            f"use a multiclass task or set tasks.{self.name}.classes")
        return values  # sorted: the second is the positive class

    def _classes_around_positive(self, values: list[str], table: str) -> list[str]:
        """[negative, positive] from the column's values and `tasks.<name>.positive`. A column with a
        single value is accepted (the other class is then named after it, and may not occur)."""
        given = self.config.positive
        pos = _match_label(given, values)
        if pos is None and len(values) > 1:
            raise ConfigError(f"tasks.{self.name}.positive is {given!r}, which is not one of the values of column "
                              f"'{self.column}' in {table}: {', '.join(values[:10])}")
        others = [v for v in values if v != pos]
        if len(others) > 1:
            raise DataError(f"binary task '{self.name}': column '{self.column}' in {table} has more than two values: "
                            f"{', '.join(values[:10])}")
        pos = pos or label_str(given)
        neg = others[0] if others else ("0" if pos == "1" else f"not {pos}")
        return [neg, pos]

    def encode(self, column, table):
        neg, pos = self.classes
        lut = {neg: 0.0, pos: 1.0, neg.lower(): 0.0, pos.lower(): 1.0}
        targets = np.full(len(column), np.nan, dtype=np.float32)
        for i, (row, value) in enumerate(column.items()):
            if is_missing(value):
                continue
            key = label_str(value)
            hit = lut.get(key, lut.get(key.lower()))
            if hit is None:
                raise _unknown_label(self, table, row, value, f"; positive is '{pos}'" + _numeric_hint(self, key))
            targets[i] = hit
        return targets, ~np.isnan(targets)

    def activate(self, logits):
        return torch.sigmoid(logits.float())

    def predicted(self, probs: torch.Tensor) -> torch.Tensor:
        """probs [B, 1] -> bool [B]: probability >= threshold (the one rule for decode and metrics)."""
        return probs[:, 0] >= self.config.threshold

    def decode(self, probs):
        neg, pos = self.classes
        return {self.name: [pos if x else neg for x in self.predicted(probs).tolist()],
                f"{self.name}_prob": probs[:, 0].tolist()}

    def prediction_columns(self):
        return {self.name: "string", f"{self.name}_prob": "float"}

    def metrics(self, probs, targets):
        M = _classification_metrics()
        n = int(targets.numel())
        out: dict[str, Any] = {"n": n, "positives": int(targets.sum().item()) if n else 0}
        if n == 0:
            return out
        p, t = probs[:, 0], targets.long()
        hard = self.predicted(probs).long()  # torchmetrics thresholds with `>`: give it the decisions
        out["accuracy"] = M.binary_accuracy(hard, t).item()
        out["precision"] = M.binary_precision(hard, t).item()
        out["recall"] = M.binary_recall(hard, t).item()
        out["f1"] = M.binary_f1_score(hard, t).item()
        both = 0 < out["positives"] < n
        out["auroc"] = M.binary_auroc(p, t).item() if both else None
        out["average_precision"] = M.binary_average_precision(p, t).item() if both else None
        out["confusion_matrix"] = M.binary_confusion_matrix(hard, t).tolist()
        return out

    @classmethod
    def scalar_metrics(cls, config):
        return ("positives", "accuracy", "precision", "recall", "f1", "auroc", "average_precision")


def _match_label(given: str, labels: list[str]) -> str | None:
    """The label `given` names: the same text, else the only one equal ignoring case ("True" is
    "true": a boolean set on the command line reaches the config as "True")."""
    key = label_str(given)
    if key in labels:
        return key
    folded = [c for c in labels if c.lower() == key.lower()]
    return folded[0] if len(folded) == 1 else None


def _pair(token: str) -> str:
    pairs = {"1": "0", "0": "1", "true": "false", "false": "true", "yes": "no", "no": "yes", "y": "n", "n": "y",
             "t": "f", "f": "t", "pos": "neg", "neg": "pos", "positive": "negative", "negative": "positive"}
    other = pairs.get(token.lower(), "")
    return other.upper() if token.isupper() else other.capitalize() if token[:1].isupper() else other


class MultilabelTask(Task):
    type = "multilabel"
    headline_metrics = ("micro_f1", "macro_f1", "mAP", "exact_match")

    def _split(self, value) -> list[str] | None:
        """A cell -> list of labels; None when the cell is missing. '[]' or an empty list = no labels."""
        if isinstance(value, (list, tuple, np.ndarray)):
            return [label_str(v) for v in value if not is_missing(v)]
        if is_missing(value):
            return None
        text = str(value).strip()
        if text == "[]":
            return []
        return [part.strip() for part in text.split(self.config.delimiter) if part.strip()]

    def _infer_classes(self, column, table):
        labels: set[str] = set()
        for value in column:
            parts = self._split(value)
            if parts:
                labels.update(parts)
        if not labels:
            raise DataError(f"task '{self.name}': column '{self.column}' in {table} has no labels at all; "
                            f"give the labels in tasks.{self.name}.classes")
        return sorted(labels, key=_natural_key)

    def thresholds(self) -> torch.Tensor:
        """float [K]: per-label decision thresholds."""
        per = self.config.thresholds or {}
        unknown = set(per) - set(self.classes)
        if unknown:
            raise ConfigError(f"tasks.{self.name}.thresholds names unknown labels: {', '.join(sorted(unknown))}; "
                              f"labels: {', '.join(self.classes)}")
        return torch.tensor([per.get(c, self.config.threshold) for c in self.classes])

    def encode(self, column, table):
        index = {c: i for i, c in enumerate(self.classes)}
        targets = np.zeros((len(column), len(self.classes)), dtype=np.float32)
        mask = np.zeros(len(column), dtype=bool)
        for i, (row, value) in enumerate(column.items()):
            parts = self._split(value)
            if parts is None:
                continue
            for part in parts:
                j = index.get(part)
                if j is None:
                    hint = f"; cells are split on {self.config.delimiter!r} (tasks.{self.name}.delimiter)"
                    raise _unknown_label(self, table, row, part, hint)
                targets[i, j] = 1.0
            mask[i] = True
        return targets, mask

    def activate(self, logits):
        return torch.sigmoid(logits.float())

    def predicted(self, probs: torch.Tensor) -> torch.Tensor:
        """probs [B, K] -> bool [B, K]: probability >= the label's threshold (decode and metrics)."""
        return probs >= self.thresholds().to(probs.device)

    def decode(self, probs):
        over = self.predicted(probs)
        cols: dict[str, list] = {self.name: [[c for c, on in zip(self.classes, row) if on] for row in over.tolist()]}
        for j, c in enumerate(self.classes):
            cols[f"{self.name}_prob_{c}"] = probs[:, j].tolist()
        return cols

    def prediction_columns(self):
        return {self.name: "string_list", **{f"{self.name}_prob_{c}": "float" for c in self.classes}}

    def metrics(self, probs, targets):
        """micro_f1, macro_f1, exact_match, mAP and per_label {precision, recall, f1, ap, support}.

        macro_f1 averages per-label F1 over the labels that occur in `targets` or are predicted
        (None when no label does); mAP averages AP over the labels with a positive and a negative row."""
        M = _classification_metrics()
        n, k = int(targets.shape[0]), len(self.classes)
        out: dict[str, Any] = {"n": n}
        if n == 0:
            return out
        t = targets.long()
        preds = self.predicted(probs).long()
        kw = dict(num_labels=k, validate_args=False)
        hard = preds.float()  # decisions already taken (>= threshold); torchmetrics' 0.5 keeps them
        f1 = M.multilabel_f1_score(hard, t, average="none", threshold=0.5, **kw).reshape(-1).tolist()  # [K] even for K = 1
        support = t.sum(dim=0).tolist()
        out["micro_f1"] = M.multilabel_f1_score(hard, t, average="micro", threshold=0.5, **kw).item()
        out["macro_f1"] = _macro_over_present(f1, support, preds.sum(dim=0).tolist())
        out["exact_match"] = (preds == t).all(dim=1).float().mean().item()
        prec = M.multilabel_precision(hard, t, average="none", threshold=0.5, **kw).reshape(-1).tolist()
        rec = M.multilabel_recall(hard, t, average="none", threshold=0.5, **kw).reshape(-1).tolist()
        ap = []
        for j in range(k):
            col = t[:, j]
            ap.append(M.binary_average_precision(probs[:, j], col).item() if 0 < int(col.sum()) < n else None)
        present = [a for a in ap if a is not None]
        out["mAP"] = float(np.mean(present)) if present else None
        out["per_label"] = {c: {"precision": prec[j], "recall": rec[j], "f1": f1[j], "ap": ap[j], "support": support[j]}
                            for j, c in enumerate(self.classes)}
        return out

    @classmethod
    def scalar_metrics(cls, config):
        return ("micro_f1", "macro_f1", "exact_match", "mAP")


def _macro_over_present(f1: list[float], support: list[int], predicted: list[int]) -> float | None:
    """Mean per-label F1 over the labels that occur in the targets or are predicted; a label with
    neither has no F1 to speak of (0/0) and is left out, as mAP leaves out labels without positives.
    None when no label qualifies."""
    present = [f for f, s, p in zip(f1, support, predicted) if s > 0 or p > 0]
    return float(np.mean(present)) if present else None


TASK_TYPES: dict[str, type[Task]] = {t.type: t for t in (MulticlassTask, BinaryTask, MultilabelTask)}


def build_task(name: str, config: TaskConfig) -> Task:
    one_of(f"tasks.{name}.type", config.type, list(TASK_TYPES))
    return TASK_TYPES[config.type](name, config)


def build_tasks(configs: dict[str, TaskConfig]) -> dict[str, Task]:
    return {name: build_task(name, cfg) for name, cfg in configs.items()}


def task_from_dict(d: dict) -> Task:
    """Rebuild a task saved by `Task.to_dict` (bundle loading)."""
    d = dict(d)
    name = d.pop("name")
    if d.get("type") == "binary" and len(d.get("classes") or ()) == 2:
        # the saved order is the one the head was trained with (bundles written before `positive`
        # reordered the classes may disagree with their `positive`): classes[1] is the head's output
        d["positive"] = d["classes"][1]
    return build_task(name, TaskConfig(**d))
