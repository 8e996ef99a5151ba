"""Data-parallel offline training with torch.distributed (``torchrun --nproc_per_node=K -m mbdpo train ...``).

Each of the K processes samples ``batch_size`` windows from its own shard of
the data set; after every backward pass the gradients are averaged over the
processes, and the batch statistics that steer an update (the Q scale's
percentiles, the energy's running mean and variance) are computed on the
gathered batch. One update is then exactly one update of a single process
on the combined batch of K x ``batch_size`` windows, except that InfoNCE
draws its negatives from each process's own batch. Every process keeps an
identical copy of the agent; rank 0 evaluates, logs and writes checkpoints.

:class:`SingleProcess` is the same interface for world size 1: every call is
the identity, so the update code has one path.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Iterable

import torch
import torch.distributed as dist

# Rank 0 evaluates every task while the other ranks wait at their next gradient average.
EVALUATION_TIMEOUT = timedelta(hours=3)


class SingleProcess:
    """World size 1: nothing to synchronise."""

    rank, world_size = 0, 1

    def average_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        pass

    def gather(self, values: torch.Tensor) -> torch.Tensor:
        return values

    def broadcast_object(self, value):
        return value

    def any(self, flag: bool) -> bool:
        return flag

    def barrier(self) -> None:
        pass

    def close(self) -> None:
        pass


class DataParallel:
    """One process of a data-parallel group set up by torchrun (environment variables RANK, WORLD_SIZE, ...)."""

    def __init__(self, backend: str, device: torch.device):
        dist.init_process_group(backend, timeout=EVALUATION_TIMEOUT)
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.device = device  # where the backend's collectives take their tensors (nccl: a GPU)

    def average_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Replace each gradient by its mean over the processes (one all-reduce of a flat buffer)."""
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.flatten() for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for g in grads:
            g.copy_(flat[offset: offset + g.numel()].view_as(g))
            offset += g.numel()

    def gather(self, values: torch.Tensor) -> torch.Tensor:
        """Every process's ``values`` concatenated along dim 0 (same shape on every process)."""
        parts = [torch.empty_like(values) for _ in range(self.world_size)]
        dist.all_gather(parts, values.contiguous())
        return torch.cat(parts)

    def broadcast_object(self, value):
        """Rank 0's ``value`` on every process."""
        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true in any process (so that all of them, e.g., stop at the same update)."""
        value = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def barrier(self) -> None:
        """Wait until every process has come here (e.g., for rank 0's last evaluation and checkpoint)."""
        dist.barrier()

    def close(self) -> None:
        dist.destroy_process_group()


def launched_in_parallel() -> bool:
    """Whether torchrun started this process as one of several (its WORLD_SIZE is above 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def process_group(device: torch.device) -> SingleProcess | DataParallel:
    """The data-parallel group torchrun started this process in, or :class:`SingleProcess`."""
    if not launched_in_parallel():
        return SingleProcess()
    return DataParallel("nccl" if device.type == "cuda" else "gloo", device)


def local_device(device: torch.device) -> torch.device:
    """On GPUs, each process of a group uses the GPU of its local rank."""
    if device.type == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device
