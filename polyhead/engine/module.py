"""The Lightning training module.

The step uses manual optimisation so that the weighting method decides how
per-task losses become gradients:

    features = model.forward_features(images)        [B, F]  (one pass through the backbone)
    logits   = model.forward_heads(features)         {task: [B, K]}
    losses   = {task: Task.loss(logits, targets, mask)}   (tasks with no labelled row are absent)
    weighting.backward(losses, StepContext(features, shared params, backward))
    optimizer.step()
    weighting.after_step(recompute)   (FAMO: the batch's losses again, updated model, no grad)
    lr scheduler step

Training batches arrive un-augmented: `augment` (data.augment, batched) draws each sample's
random numbers on the CPU before the batch moves to the device and transforms the images after.

On several processes (training.devices=N) the losses are first made global: the same tasks on
every process, each loss's value the mean over every process's labelled rows, and validation and
training metrics gathered from all of them (polyhead.engine.ddp_step).

A loss-based method backpropagates a weighted sum; a gradient-based method may
take d loss_t / d features or d loss_t / d shared parameters first. The task weights and
learning rates each step used are logged as epoch means (`weights/<task>`, `lr/<group>`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from functools import partial

import lightning as L
import torch

from polyhead.config.schema import OptimizerConfig, SchedulerConfig
from polyhead.data.dataset import Batch
from polyhead.data.transforms import BatchAugment
from polyhead.engine.ddp_step import PeerFailed, check_same_state, gather_outputs, global_losses, global_values
from polyhead.engine.distributed import World, all_reduce_sum, world
from polyhead.engine.epoch_means import EpochMeans
from polyhead.engine.evaluation import OutputCollector
from polyhead.engine.nonfinite import NonFiniteGuard
from polyhead.engine.progress import epoch_number
from polyhead.engine.schedules import cosine_factor, onecycle_factor
from polyhead.model.multitask import MultiTaskModel
from polyhead.model.stages import (backbone_stages, check_layer_decay, check_unfreeze_stages, set_trainable_stages,
                                   stage_learning_rates, trainable_stage_count)
from polyhead.tasks import Task
from polyhead.weighting import StepContext, WeightingMethod

SCALAR_TYPES = (int, float)
TRAIN_METRIC_ROWS = 32768  # rows per epoch whose outputs score train/<task>/<main metric> (a running estimate)


def task_losses(tasks: dict[str, Task], logits: dict[str, torch.Tensor], batch: Batch) -> dict[str, torch.Tensor]:
    """{task: mean loss over the batch's labelled rows}; a task without labelled rows is left out.
    The training step, its recomputation for the weighting method and the validation step all use it."""
    out = {}
    for name, task in tasks.items():
        loss = task.loss(logits[name], batch["targets"][name], batch["mask"][name])
        if loss is not None:
            out[name] = loss
    return out


@torch.no_grad()
def recompute_losses(model: MultiTaskModel, tasks: dict[str, Task], batch: Batch) -> dict[str, torch.Tensor]:
    """{task: loss} of `batch` with the model's current (just updated) parameters, for a weighting
    method's `after_step`: a forward in the model's current mode, as the step's own, that leaves
    the buffers (BatchNorm's running statistics) as they were."""
    saved = [b.clone() for b in model.buffers()]
    try:
        return task_losses(tasks, model(batch["image"]), batch)
    finally:
        for b, value in zip(model.buffers(), saved):
            b.copy_(value)


class MultiTaskModule(L.LightningModule):
    def __init__(self, model: MultiTaskModel, tasks: dict[str, Task], weighting: WeightingMethod, *,
                 optimizer: OptimizerConfig, scheduler: SchedulerConfig, freeze_backbone_epochs: int = 0,
                 gradient_clip: float | None = None, monitor: str = "val/loss",
                 nonfinite: NonFiniteGuard | None = None, unfreeze_stages: int | None = None,
                 augment: BatchAugment | None = None):
        super().__init__()
        self.augment = augment if augment is not None and augment.enabled else None  # data.augment
        self.nonfinite = nonfinite or NonFiniteGuard("error")  # training.on_nonfinite_loss
        self.monitor = monitor  # shown in the progress bar beside the losses
        self.automatic_optimization = False
        self.model, self.tasks, self.weighting = model, tasks, weighting
        self.optimizer_cfg, self.scheduler_cfg = optimizer, scheduler
        self.freeze_backbone_epochs, self.gradient_clip = freeze_backbone_epochs, gradient_clip
        self.stages = backbone_stages(model.backbone)  # bottom to top, see polyhead.model.stages
        check_unfreeze_stages(self.stages, unfreeze_stages)
        check_layer_decay(optimizer.layer_decay)
        self.unfreeze_stages = unfreeze_stages
        self._val = OutputCollector(tasks)
        self._train = OutputCollector(tasks, deferred=True, max_rows=TRAIN_METRIC_ROWS)
        self._val_loss: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        self._means = EpochMeans()  # task weights and learning rates of this epoch's steps
        self.world = World()  # several training processes: set in setup (polyhead.engine.ddp_step)

    def setup(self, stage: str) -> None:
        self.world = world()

    def forward(self, x):
        return self.model(x)

    # ---- augmentation (training batches only) ----------------------------------------
    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        if self.augment is not None and self._trainer is not None and self.trainer.training:
            # a function of (seed, epoch, position): the same draws on a resumed run
            batch = {**batch, "augment": self.augment.draws(batch["index"], self.current_epoch)}
        return batch

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if isinstance(batch, dict) and "augment" in batch:
            batch = dict(batch)
            batch["image"] = self.augment.apply(batch["image"], batch.pop("augment"))
        return batch

    # ---- optimisation --------------------------------------------------------------
    def configure_optimizers(self):
        o = self.optimizer_cfg
        backbone = self._backbone_groups()
        weighting = self.weighting.parameter_groups(o.lr)  # [] or one "weighting" group without decay
        taken = {id(p) for g in backbone + weighting for p in g["params"]}
        rest = [p for p in self.parameters() if id(p) not in taken]
        groups = [*backbone, {"params": rest, "lr": o.lr, "name": "heads"}, *weighting]
        if o.name == "sgd":
            opt = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay)
        else:
            opt = torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)
        s = self.scheduler_cfg
        if s.name == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=s.factor, patience=s.patience,
                                                               min_lr=s.min_lr)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        if s.name in ("cosine", "onecycle"):
            total = max(1, int(self.trainer.estimated_stepping_batches))
            if s.name == "onecycle":
                shape = partial(onecycle_factor, total=total, pct_start=s.pct_start, div_factor=s.div_factor,
                                final_div_factor=s.final_div_factor)
                lambdas = [shape] * len(groups)
            else:
                steps_per_epoch = max(1, total // max(1, self.trainer.max_epochs or 1))
                floors = [s.min_lr / g["lr"] if g["lr"] > 0 else 0.0 for g in groups]
                lambdas = [partial(cosine_factor, total=total, warmup=s.warmup_epochs * steps_per_epoch, floor=f)
                           for f in floors]
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambdas)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        return opt

    def _backbone_groups(self) -> list[dict]:
        """One "backbone" group, or with optimizer.layer_decay one "backbone.<stage>" group per stage
        (bottom to top) at lr_top * d^(stages above it); see `stage_learning_rates`."""
        o = self.optimizer_cfg
        if o.layer_decay is None or o.layer_decay == 1.0:
            return [{"params": list(self.model.backbone.parameters()), "name": "backbone",
                     "lr": o.backbone_lr if o.backbone_lr is not None else o.lr}]
        params = dict(self.model.backbone.named_parameters())
        rates = stage_learning_rates(len(self.stages), o.lr, o.backbone_lr, o.layer_decay)
        # the group name becomes the metric lr/<name>: only characters every tracker accepts
        return [{"params": [params[n] for n in stage.params], "lr": lr,
                 "name": "backbone." + re.sub(r"[^\w.\-]", "_", stage.name)} for stage, lr in zip(self.stages, rates)]

    def on_train_epoch_start(self):
        self._means.reset()
        # Frozen stages get no gradient (so no update, weight decay included) and run in eval mode:
        # their BatchNorm keeps its (pretrained) statistics.
        n = trainable_stage_count(len(self.stages), self.current_epoch, self.freeze_backbone_epochs,
                                  self.unfreeze_stages)
        set_trainable_stages(self.model.backbone, self.stages, n, self.model.training)

    def training_step(self, batch: Batch, batch_idx: int):
        opt = self.optimizers()
        features = self.model.forward_features(batch["image"])
        logits = self.model.forward_heads(features)
        losses = task_losses(self.tasks, logits, batch)
        if self.world.distributed:  # every process: the same tasks, global loss values
            losses, counts, bad, mine = global_losses(list(self.tasks), losses, logits, batch, self.world)
        else:
            # Labelled-row counts and finite flags in one host sync, before any backward.
            counts, bad = self.nonfinite.check(losses, batch) if losses else ([], {})
            mine = True
        if self.nonfinite.policy == "skip":
            self.log("train/skipped_batches", float(bool(bad)), on_step=False, on_epoch=True, reduce_fx="sum",
                     batch_size=1)
        if bad:
            if not mine and self.nonfinite.policy == "error":
                raise PeerFailed("another training process stopped at a non-finite training loss (its message "
                                 "names the rows)")
            self.nonfinite.handle(bad, batch, step=self.global_step, epoch=epoch_number(self.current_epoch))  # raises on error
            return None
        if not losses:
            return None
        opt.zero_grad(set_to_none=True)
        ctx = StepContext(backward=self.manual_backward, features=features,
                          shared_parameters=self.model.shared_parameters(),
                          epoch=self.current_epoch, step=self.global_step,
                          world_size=self.world.size, all_reduce=all_reduce_sum)
        total = self.weighting.backward(losses, ctx)
        # the weights and learning rates this step uses (epoch means are logged in end_epoch)
        self._means.add(self.weighting.weight_vector(), {g.get("name", "group"): g["lr"] for g in opt.param_groups},
                        self.weighting.active)
        if self.gradient_clip:
            self.clip_gradients(opt, gradient_clip_val=self.gradient_clip, gradient_clip_algorithm="norm")
        opt.step()
        self.weighting.after_step(lambda: self._recompute(batch))
        sched = self.lr_schedulers()
        if sched is not None and not isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step()
        self._train.update(logits, batch)  # stays on the device; scored once in end_epoch
        bs = batch["image"].shape[0]
        self.log("train/loss", total.detach(), on_step=False, on_epoch=True, prog_bar=True, batch_size=bs)
        # Each task's epoch mean is weighted by its labelled rows (counts read with the finite check).
        for (name, loss), n in zip(losses.items(), counts):
            self.log(f"train/{name}/loss", loss.detach(), on_step=False, on_epoch=True, batch_size=int(n))
        return total.detach()

    def _recompute(self, batch: Batch) -> dict[str, torch.Tensor]:
        losses = recompute_losses(self.model, self.tasks, batch)
        return global_values(list(self.tasks), losses, batch) if self.world.distributed else losses

    def _outputs(self, collector: OutputCollector) -> dict:
        """{task: (probs, targets, index)} of the labelled rows, of every process."""
        outputs = collector.labelled_outputs()
        return gather_outputs(outputs) if self.world.distributed else outputs

    def _metrics(self, collector: OutputCollector) -> dict[str, dict]:
        return {name: self.tasks[name].metrics(p, t) for name, (p, t, _) in self._outputs(collector).items()}

    def end_epoch(self):
        """Once per epoch, after validation: the weighting method's and the plateau schedule's
        updates. Called by the `EpochEnd` callback, which runs before checkpoints are written,
        so a checkpoint always holds the state the next epoch starts from."""
        self._log_train_metrics()
        gradient_method = self.weighting.requires != "losses"
        for key, value in self._means.means(self.weighting.tasks, inactive=gradient_method).items():
            self.log(key, value)  # epoch means of every step's value
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items()}
        task_means = {t: metrics[f"train/{t}/loss"] for t in self.tasks if f"train/{t}/loss" in metrics}
        self.weighting.on_epoch_end(task_means)
        if self.world.distributed:
            check_same_state(self.weighting, f"weighting method '{self.weighting.name}' state")
        sched = self.lr_schedulers()
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            key = "val/loss" if "val/loss" in metrics else "train/loss"
            if key in metrics:
                sched.step(metrics[key])

    def _log_train_metrics(self) -> None:
        """train/<task>/<main metric> from this epoch's collected training outputs (logged here,
        in the EpochEnd callback, so that history.csv, written next, has it)."""
        for name, metrics in self._metrics(self._train).items():
            value = metrics.get(self.tasks[name].main_metric)
            if isinstance(value, SCALAR_TYPES) and not isinstance(value, bool):
                self.log(f"train/{name}/{self.tasks[name].main_metric}", float(value))
        self._train.reset()

    # ---- validation ----------------------------------------------------------------
    def validation_step(self, batch: Batch, batch_idx: int):
        logits = self.model(batch["image"])
        for name, loss in task_losses(self.tasks, logits, batch).items():
            acc = self._val_loss[name]  # sums stay on the device; read once at epoch end
            n = batch["mask"][name].sum()
            acc[0] = acc[0] + loss.detach().float() * n
            acc[1] = acc[1] + n
        self._val.update(logits, batch)

    def on_validation_epoch_end(self):
        total = 0.0
        sums = self._val_loss_sums()
        for name, (s, n) in sums.items():
            if n:
                self.log(f"val/{name}/loss", s / n)
                total += s / n
        if any(n for _, n in sums.values()):
            self.log("val/loss", total, prog_bar=True)
        for name, metrics in self._metrics(self._val).items():
            for key, value in metrics.items():
                if isinstance(value, SCALAR_TYPES) and key != "n" and not isinstance(value, bool):
                    logged = f"val/{name}/{key}"
                    self.log(logged, float(value), prog_bar=logged == self.monitor)
        self._val.reset()
        self._val_loss.clear()

    def _val_loss_sums(self) -> dict[str, tuple[float, int]]:
        """{task: (loss x rows, rows)} of this validation epoch, over every process."""
        names = list(self.tasks)
        sums = [self._val_loss.get(t, (0.0, 0)) for t in names]  # device tensors: read once here
        local = torch.tensor([[float(s) for s, _ in sums], [float(n) for _, n in sums]], dtype=torch.float64)
        summed = all_reduce_sum(local).tolist()  # the tensor itself on one process
        return {t: (summed[0][i], int(summed[1][i])) for i, t in enumerate(names)}
