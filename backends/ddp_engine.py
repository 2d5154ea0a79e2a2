"""``ddp``: data parallel with whole weights on every rank; gradients averaged over the ranks.

For a policy whose weights, gradients and AdamW state fit on one device (LoRA on an 8B model
does on an 80 GB GPU): each rank rolls out and trains on its own whole groups, ``step``
all-reduces the gradients (mean over ranks) and then applies the same AdamW update as the
``local`` engine, so the weights stay equal on every rank without being broadcast. Launched by
``torchrun`` (gloo on CPU, nccl on GPU). Randomness is keyed per group, so a run gives the
numbers of one process with ``engine_options.rng=keyed`` whatever the number of ranks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import attrs
import torch
import torch.distributed as dist

from dmpo.backends.engines import LocalEngine
from dmpo.backends.process_group import ProcessGroupRanks, join


class DataParallelEngine(ProcessGroupRanks, LocalEngine):
    """Whole weights per rank, gradients averaged by one all-reduce per optimizer step."""

    def __init__(self, policy: Any, **optim: Any) -> None:
        self._rank, self._world = join(policy.device)
        super().__init__(policy, rng="keyed", **optim)
        if self._world > 1:  # every rank starts from rank 0's weights (a seeded init could differ)
            with torch.no_grad():
                for p in policy.trainable_parameters():
                    dist.broadcast(p.data, src=0)

    def step(self) -> float:
        if self._world > 1:
            self._average_gradients()
        return super().step()

    def _average_gradients(self, bucket_elements: int = 1 << 25) -> None:
        """Mean of every rank's gradients, all-reduced in flat buckets of at most ``bucket_elements``
        (one collective per bucket instead of one per tensor: LoRA has hundreds of small ones)."""
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        bucket: list[torch.Tensor] = []
        size = 0
        for p in [*self.params, None]:
            if p is not None and (not bucket or (size + p.numel() <= bucket_elements
                                                 and p.grad.dtype == bucket[0].dtype)):
                bucket.append(p.grad)
                size += p.numel()
                continue
            flat = torch.cat([g.reshape(-1) for g in bucket])  # [size]
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat.div_(self._world)
            offset = 0
            for g in bucket:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()
            if p is not None:
                bucket, size = [p.grad], p.numel()

    @contextlib.contextmanager
    def full_parameters(self, policy: Any, *, writable: bool = False) -> Iterator[None]:
        """Weights are whole on every rank; what is written (a resume) is the same on every rank."""
        yield


@attrs.frozen(kw_only=True)
class DataParallelOptions:
    """``engine_options`` of ``ddp``: none (optimizer settings are ``optim.*``; randomness is keyed)."""


