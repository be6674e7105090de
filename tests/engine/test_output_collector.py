"""OutputCollector keeps each labelled row's split position; the deferred mode (training step) agrees."""

from __future__ import annotations

import torch
from torch import nn

from polyhead.config.schema import TaskConfig
from polyhead.engine.evaluation import OutputCollector, evaluate_model
from polyhead.tasks import build_task


def _tasks():
    return {"kind": build_task("kind", TaskConfig(type="multiclass", classes=["a", "b", "c"])),
            "hot": build_task("hot", TaskConfig(type="binary", classes=["no", "yes"]))}


def _batches(n_batches=3, size=4):
    g = torch.Generator().manual_seed(0)
    for b in range(n_batches):
        yield {"image": torch.randn(size, 2, generator=g),
               "index": torch.arange(b * size, (b + 1) * size),
               "targets": {"kind": torch.randint(0, 3, (size,), generator=g),
                           "hot": (torch.rand(size, generator=g) > 0.5).float()},
               "mask": {"kind": torch.rand(size, generator=g) > 0.3, "hot": torch.rand(size, generator=g) > 0.5}}


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.kind, self.hot = nn.Linear(2, 3), nn.Linear(2, 1)

    def forward(self, x):
        return {"kind": self.kind(x), "hot": self.hot(x)}


def test_index_of_labelled_rows_and_deferred_mode_agree():
    torch.manual_seed(0)
    model, tasks = _Model(), _tasks()
    now, later = OutputCollector(tasks), OutputCollector(tasks, deferred=True)
    masks = {"kind": [], "hot": []}
    for batch in _batches():
        logits = model(batch["image"])
        now.update(logits, batch)
        later.update(logits, batch)
        for t in masks:
            masks[t].append(batch["mask"][t])
    a, b = now.labelled_outputs(), later.labelled_outputs()
    for t in tasks:
        expected = torch.nonzero(torch.cat(masks[t]))[:, 0]
        assert a[t][2].tolist() == expected.tolist()  # positions in the split of the labelled rows
        for x, y in zip(a[t], b[t]):
            assert torch.equal(x, y)
    assert now.compute() == later.compute()


def test_deferred_collector_stops_after_max_rows():
    tasks = _tasks()
    c = OutputCollector(tasks, deferred=True, max_rows=5)
    model = _Model()
    for batch in _batches(n_batches=4, size=4):
        c.update(model(batch["image"]), batch)
    assert c.rows == 8  # the batch that crossed 5 rows was kept, later ones were not
    assert max(c.labelled_outputs()["kind"][2].tolist()) < 8


def test_evaluate_model_returns_outputs_on_request():
    model, tasks = _Model(), _tasks()
    batches = list(_batches())
    metrics = evaluate_model(model, tasks, batches, show_progress=False)
    again, outputs = evaluate_model(model, tasks, batches, show_progress=False, return_outputs=True)
    assert metrics == again
    probs, targets, index = outputs["kind"]
    assert probs.shape == (metrics["kind"]["n"], 3) and index.dtype == torch.int64 and len(targets) == len(index)
