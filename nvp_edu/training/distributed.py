"""Several processes, one run: ``torchrun`` + DistributedDataParallel (DDP).

    torchrun --nproc_per_node=4 -m nvp_edu.train --dataset cifar10 --preset paper --out runs/c4

Each process trains on its shard of every epoch (``DistributedSampler``); ``--batch-size``
is per process. Rank 0 alone evaluates and writes the run folder; the checkpoint keeps
every rank's random state. Batch norm is **not** synchronized across ranks: each rank's
``BatchNormFlow`` normalizes its own mini-batch and counts the log-det of exactly that
map, so every rank optimizes an exact flow likelihood of its own batch. Running averages
are broadcast from rank 0 at every forward (DDP's ``broadcast_buffers``).

A single process is world size 1 and every collective below is a no-op there.

Example:
    >>> env = Dist("cpu")
    >>> env.world, env.main, env.any(torch.tensor(False))
    (1, True, False)
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .settings import check_device


class Dist:
    """Rank/world bookkeeping and this process's device; a single process is world size 1."""

    def __init__(self, device_arg: str) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        check_device(device_arg)  # never a silent fallback to the CPU
        self.device = self._pick_device(device_arg)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    def _pick_device(self, device_arg: str) -> torch.device:
        """CUDA if asked for or (auto) present, else MPS (auto, one process), else CPU."""
        if device_arg.startswith("cuda:"):
            return torch.device(device_arg)
        if device_arg in ("auto", "cuda") and torch.cuda.is_available():
            return torch.device("cuda", self.local_rank if self.world > 1 else 0)
        mps = getattr(torch.backends, "mps", None)
        if device_arg == "mps" or (device_arg == "auto" and self.world == 1
                                   and mps is not None and mps.is_available()):
            return torch.device("mps")
        return torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def any(self, flag: Tensor) -> bool:
        """True on every rank if the 0-d bool tensor ``flag`` is true on any rank.

        One host synchronization (the ``.item()``), shared by all ranks' flags.
        """
        t = flag.float().reshape(1)
        if self.world > 1:
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def flag(self, value: bool) -> bool:
        """:meth:`any` of a Python bool (a tensor on this process's device, as NCCL needs)."""
        return self.any(torch.tensor(value, device=self.device))

    def gather(self, obj: Any) -> list[Any]:
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            # rank 0 still writes the summary after the last collective; tearing gloo down
            # on one rank while the other is busy aborts it ("terminate called ...")
            dist.barrier()
            dist.destroy_process_group()


_Dist = Dist  # the name scripts and tests used before the trainer became a package


def fingerprint(model: nn.Module) -> float:
    """A number that differs when any parameter does (to compare replicas across ranks)."""
    total = torch.zeros((), dtype=torch.float64)
    for i, p in enumerate(model.parameters()):
        total += (i + 1) * p.detach().double().cpu().sum() + p.detach().double().cpu().pow(2).sum()
    return float(total)
