"""Joining the ranks of a launch: torchrun's or the ``deepspeed`` launcher's environment.

Both launchers export ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` (torchrun also for several nodes, from its rendezvous). Without them the
process is a world of one and no process group is made.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


def rank_range(n: int, rank: int, world: int) -> range:
    """The contiguous share of ``range(n)`` of ``rank``: sizes differ by at most one, lower ranks first."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


def launched_world_size() -> int:
    """``WORLD_SIZE`` of the launcher (1 without one)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def join(device: torch.device, *, timeout_minutes: float = 30.0) -> tuple[int, int]:
    """Initialise the default process group if the launcher asked for several ranks.

    nccl when the policy lives on a GPU, gloo on the CPU. Returns ``(rank, world_size)``.
    """
    world = launched_world_size()
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)  # nccl's collectives run on the current device
        dist.init_process_group(backend, timeout=timedelta(minutes=timeout_minutes))
    return dist.get_rank(), dist.get_world_size()


def local_device() -> torch.device:
    """This rank's GPU (``LOCAL_RANK``) when there are GPUs, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


class ProcessGroupRanks:
    """The rank members of an engine over the default process group, for an engine that sets
    ``_rank``, ``_world`` and ``_device`` (its device: where nccl's tensors must be)."""

    _rank: int
    _world: int
    _device: torch.device

    @property
    def rank(self) -> int:
        """This process's rank (``RANK`` of the launcher, 0 without one)."""
        return self._rank

    @property
    def world_size(self) -> int:
        """Ranks training together (``WORLD_SIZE``, 1 without a launcher)."""
        return self._world

    @property
    def is_main(self) -> bool:
        """Rank 0 writes metrics, progress and the consolidated policy."""
        return self._rank == 0

    def shard(self, n: int) -> range:
        """This rank's contiguous share of ``range(n)`` (:func:`rank_range`)."""
        return rank_range(n, self._rank, self._world)

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's ``tensor`` (equal shapes) concatenated on dim 0 in rank order, on ``tensor``'s device."""
        if self._world == 1:
            return tensor
        comm = tensor.detach().to(self._device).contiguous()  # gloo: CPU, nccl: this rank's GPU
        parts = [torch.empty_like(comm) for _ in range(self._world)]
        dist.all_gather(parts, comm)
        return torch.cat(parts, dim=0).to(tensor.device)  # [world * N, ...]

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's picklable ``obj``, in rank order."""
        if self._world == 1:
            return [obj]
        out: list[Any] = [None] * self._world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        """Wait for every rank."""
        if self._world > 1:
            dist.barrier()
