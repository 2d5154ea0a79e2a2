"""Joining the ranks of a launch: torchrun's or the ``deepspeed`` launcher's environment.

Both launchers export ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` (torchrun also for several nodes, from its rendezvous). Without them the
process is a world of one and no process group is made.
"""

from __future__ import annotations

import os
from datetime import timedelta

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
