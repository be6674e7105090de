"""NaN / infinite task losses in a training step (`training.on_nonfinite_loss`).

The check shares the step's one host sync: the labelled-row counts, the finite flags and the
NaN flags of every task loss travel in one tensor, read before backward, so a bad batch never
reaches the optimizer.

    error  stop with a one-line PolyheadError: task(s), global step, epoch, the batch's rows
    skip   no backward and no optimizer step for that batch; warn once; the module logs the
           count per epoch as `train/skipped_batches`
"""

from __future__ import annotations

import warnings

import torch

from polyhead.data.dataset import Batch, EncodedSplit
from polyhead.data.tables import quoted
from polyhead.errors import PolyheadError

POLICIES = ("error", "skip")
ROWS_SHOWN = 10


class NonFiniteGuard:
    """`policy`: error | skip. `split`: the training split, to name the batch's source tables."""

    def __init__(self, policy: str = "error", split: EncodedSplit | None = None):
        if policy not in POLICIES:
            raise ValueError(f"on_nonfinite_loss must be one of {POLICIES}, got {policy!r}")
        self.policy, self.split = policy, split
        self.warned = False

    def check(self, losses: dict[str, torch.Tensor], batch: Batch) -> tuple[list[int], dict[str, str]]:
        """-> (labelled rows per task in `losses` order, {task: "NaN" | "infinite"} for the bad ones).
        One device-to-host transfer."""
        names = list(losses)
        counts = [batch["mask"][n].sum() for n in names]
        finite = [torch.isfinite(losses[n].detach()).long() for n in names]
        nan = [torch.isnan(losses[n].detach()).long() for n in names]
        values = torch.stack(counts + finite + nan).tolist()
        k = len(names)
        bad = {n: ("NaN" if values[2 * k + i] else "infinite") for i, n in enumerate(names) if not values[k + i]}
        return [int(v) for v in values[:k]], bad

    def handle(self, bad: dict[str, str], batch: Batch, *, step: int, epoch: int) -> None:
        """Raise (error) or warn once (skip) about a batch with non-finite task losses. `step`: the
        optimizer steps before this batch; `epoch`: 1-based, as users see epochs."""
        what = ", ".join(f"'{t}' ({kind})" for t, kind in bad.items())
        where = f"at step {step} (epoch {epoch}) on {self.describe_rows(batch)}"
        if self.policy == "error":
            raise PolyheadError(
                f"non-finite training loss for task(s) {what} {where}; lower optimizer.lr, check those rows' "
                f"labels, or set training.on_nonfinite_loss=skip to drop such batches")
        if not self.warned:
            self.warned = True
            warnings.warn(f"skipping a batch with a non-finite loss for task(s) {what} {where} "
                          f"(training.on_nonfinite_loss=skip; later ones are counted in train/skipped_batches)",
                          RuntimeWarning, stacklevel=2)

    def describe_rows(self, batch: Batch) -> str:
        """"a batch of '/x/labels.csv' [train] rows 3, 17 (+6 more)" (1-based table rows, grouped by
        source, the first ROWS_SHOWN)."""
        rows = batch["row"].tolist()
        index = batch["index"].tolist() if "index" in batch else [None] * len(rows)
        groups: dict[str, list[int]] = {}
        for i, (row, pos) in enumerate(zip(rows, index)):
            if i >= ROWS_SHOWN:
                break
            source = "?"
            if self.split is not None and pos is not None and pos < len(self.split):
                source = self.split.source_names[int(self.split.sources[pos])]
            groups.setdefault(source, []).append(int(row))
        text = "; ".join(f"{quoted(src)} rows {', '.join(map(str, r))}" for src, r in groups.items())
        more = f" (+{len(rows) - ROWS_SHOWN} more)" if len(rows) > ROWS_SHOWN else ""
        return f"a batch of {text}{more}"
