"""Training on several processes (data-parallel, DDP over torch.distributed).

Every process (a *rank*) runs the same `fit`: it reads the same config, builds the same splits
and model, and trains on its shard of each epoch's rows. How the processes start:

    training.devices=N (one machine)   `fit` starts N copies of `python -m polyhead.engine.worker`
                                       itself (polyhead.engine.launch) and waits for them
    torchrun / srun + torchrun          the launcher starts them; each sees RANK, WORLD_SIZE,
                                       LOCAL_RANK, MASTER_ADDR, MASTER_PORT (the env:// rendezvous)

Either way the process group is joined here, before any data is read, so that rank 0 can choose
the run folder and share it; Lightning's DDP strategy then finds the group already up.

Only rank 0 writes (run folder files, checkpoints, trackers, the report) and prints; the others
train and stop after `trainer.fit`. What each rank reads of the others is in
polyhead.engine.ddp_step (the training step's losses) and the `gather_*` helpers below (metrics).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0  # 0 .. size-1, over every node
    size: int = 1  # processes in all
    local_rank: int = 0  # rank on this machine (its GPU, when there are several)

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world() -> World:
    """The current process group's view (World() when there is none)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return World()


def launched_size() -> int:
    """WORLD_SIZE when a launcher (torchrun, polyhead's own, srun + torchrun) started this process, else 1."""
    if all(k in os.environ for k in ("RANK", "WORLD_SIZE")):
        return int(os.environ["WORLD_SIZE"])
    return 1


def backend_for(accelerator: str) -> str:
    """nccl between GPUs, gloo between CPU processes."""
    return "nccl" if accelerator in ("cuda", "gpu", "auto") and torch.cuda.is_available() else "gloo"


def join(accelerator: str, devices: int | list[int] = 1, timeout_s: float = 1800.0) -> World:
    """Join the launcher's process group (env:// rendezvous), once. A GPU rank uses the GPU its
    LOCAL_RANK names: that number, or with a GPU list (training.devices=[0, 2]) that entry, as
    Lightning places the model."""
    if launched_size() > 1 and not dist.is_initialized():
        backend = backend_for(accelerator)
        if backend == "nccl":
            local = int(os.environ.get("LOCAL_RANK", 0))
            torch.cuda.set_device(devices[local] if isinstance(devices, list) else local)
        dist.init_process_group(backend, init_method="env://", timeout=datetime.timedelta(seconds=timeout_s))
    return world()


def _device() -> torch.device:
    """Where collectives take their tensors: the GPU for nccl, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The element-wise sum over every rank (a new tensor on `t`'s device; `t` itself when alone)."""
    if not world().distributed:
        return t
    out = t.detach().to(_device(), copy=True)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(t.device)


def gather_objects(obj: Any) -> list[Any]:
    """[obj of rank 0, obj of rank 1, ...] on every rank (picklable objects: CPU tensors, dicts)."""
    w = world()
    if not w.distributed:
        return [obj]
    out: list[Any] = [None] * w.size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj`, on every rank."""
    if not world().distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if world().distributed:
        dist.barrier()

