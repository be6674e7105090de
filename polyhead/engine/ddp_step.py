"""What a training process reads of the others (several processes, polyhead.engine.distributed).

Each of the W processes holds B rows of the step's W x B (its share of one order, see
SourceSampler); a task t has n_r labelled rows on process r and N = sum_r n_r in all. One
process alone would train on the mean loss over the N rows, L_t = sum_r n_r L_rt / N. So that W
processes train on exactly that:

- `global_losses` gives every process the same task set (those with N > 0; a task with no row
  here gets a zero loss still tied to its head) and, for each, a loss whose *value* is the global
  L_t (so every weighting method reads the same numbers and keeps the same state on every
  process) and whose *gradient* is n_r W / N times the local one (so DDP's average of the
  processes' gradients is the gradient of L_t). One all-reduce of [4, T] numbers per step, which
  also carries the non-finite flags, so every process skips or stops at the same step.
- Gradient-based methods reduce per-task gradients before aggregating (StepContext.all_reduce,
  see polyhead.weighting.gradient): aggregation is not linear, so aggregating per process and
  averaging the results would not be the single-process update.
- Validation and training metrics gather every process's outputs (`gather_outputs`), so each
  row counts once and every process logs the same values (the monitor, early stopping and the
  plateau schedule agree).
"""

from __future__ import annotations

import torch
from torch import nn

from polyhead.data.dataset import Batch
from polyhead.engine.distributed import World, all_reduce_sum, gather_objects
from polyhead.errors import PolyheadError


class PeerFailed(PolyheadError):
    """This process stopped because another one met the cause (which that one reports)."""


def _stats(names: list[str], losses: dict[str, torch.Tensor], batch: Batch, device) -> torch.Tensor:
    """float64 [4, T]: labelled rows, loss x rows (finite losses), non-finite flag, NaN flag per task."""
    rows = []
    for name in names:
        n = batch["mask"][name].sum().to(device, torch.float64)
        loss = losses.get(name)
        if loss is None:
            zero = torch.zeros((), dtype=torch.float64, device=device)
            rows.append(torch.stack([n, zero, zero, zero]))
            continue
        value = loss.detach().to(torch.float64)
        finite = torch.isfinite(value)
        rows.append(torch.stack([n, torch.where(finite, value * n, 0.0), (~finite).to(torch.float64),
                                 torch.isnan(value).to(torch.float64)]))
    return torch.stack(rows, dim=1)


def global_losses(names: list[str], losses: dict[str, torch.Tensor], logits: dict[str, torch.Tensor],
                  batch: Batch, world: World) -> tuple[dict[str, torch.Tensor], list[int], dict[str, str], bool]:
    """-> (losses as the module docstring says, {task: labelled rows over every process} in the
    same order, {task: "NaN" | "infinite"} over every process, whether this process's own losses
    are the non-finite ones)."""
    device = next(iter(logits.values())).device
    local = _stats(names, losses, batch, device)
    here, everywhere = torch.stack([local, all_reduce_sum(local)]).tolist()  # [2][4][T], one host sync
    total, summed, nonfinite, nan = everywhere
    bad = {name: ("NaN" if nan[i] else "infinite") for i, name in enumerate(names) if nonfinite[i]}
    mine = any(here[2])
    out, counts = {}, []
    for i, name in enumerate(names):
        if total[i] <= 0 or name in bad:
            continue
        loss = losses.get(name)
        if loss is None:  # labelled elsewhere only: no gradient from here, the head still takes part
            loss = logits[name].sum() * 0.0
        scaled = loss * (here[0][i] * world.size / total[i])
        # value: exactly the global mean (s - s is 0 in floating point; v + s - s need not be v)
        out[name] = torch.tensor(summed[i] / total[i], dtype=scaled.dtype, device=device) + (scaled - scaled.detach())
        counts.append(int(total[i]))
    return out, counts, bad, mine


@torch.no_grad()
def global_values(names: list[str], losses: dict[str, torch.Tensor], batch: Batch) -> dict[str, torch.Tensor]:
    """{task: mean loss over every process's labelled rows} (values only), for the tasks labelled
    anywhere: what a weighting method's `after_step` recomputation reads (FAMO)."""
    device = next(iter(losses.values())).device if losses else torch.device("cpu")
    total, summed, *_ = all_reduce_sum(_stats(names, losses, batch, device)).tolist()
    return {name: torch.tensor(summed[i] / total[i], device=device)
            for i, name in enumerate(names) if total[i] > 0}


def gather_outputs(outputs: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
                   ) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """{task: (probs [N, K], targets, index [N])} of every process, concatenated in index order
    (each process's `OutputCollector.labelled_outputs()`)."""
    parts = gather_objects(outputs)
    merged = {}
    for name in outputs:
        p, t, i = (torch.cat([part[name][k] for part in parts]) for k in range(3))
        order = torch.argsort(i, stable=True)
        merged[name] = (p[order], t[order], i[order])
    return merged


def check_same_state(module: nn.Module, what: str) -> None:
    """Every process holds bit-identical parameters and buffers in `module` (a weighting method);
    PolyheadError naming the first that differs. A cheap guard, once per epoch: a method that read
    per-process numbers would drift apart silently."""
    state = {k: v.detach().to("cpu", torch.float64) for k, v in module.state_dict().items()}
    if not state:
        return
    parts = gather_objects(state)
    for key, value in state.items():
        for rank, other in enumerate(parts):
            same = other[key].shape == value.shape and bool(
                ((other[key] == value) | (other[key].isnan() & value.isnan())).all())  # NaN: "not yet known"
            if not same:
                raise PolyheadError(f"{what} '{key}' differs between training processes (process {rank}); "
                                    f"a weighting method must compute its state from values reduced over "
                                    f"every process (polyhead.engine.ddp_step)")
