"""The single-process half of the :class:`~dmpo_core.contracts.Engine` contract, as a base class.

An engine that trains in one process inherits :class:`SingleProcess` and writes only what
updates parameters (``backward``, ``step``, ``zero_grad``, ``state_dict``/``load_state_dict``,
``device``, ``lr``). Everything a distributed engine adds (ranks, sharding, gathers, whole
parameters for generation, its own checkpoint files) has its world-size-1 answer here, so the
training loop runs one code path for every engine.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

RNG_MODES = ("sequential", "keyed")
"""``sequential``: one seeded generator threaded through a step (the single-process default,
which the demo's figures come from). ``keyed``: each group's draws come from a generator keyed
by (seed, step, stage, global group index), so a run's numbers do not depend on how its groups
are split over ranks."""


def keyed_generator(seed: int, step: int, stage: str, index: int, iteration: int = 0) -> torch.Generator:
    """A CPU generator seeded by ``(seed, step, stage, index, iteration)`` alone.

    The same arguments give the same draws on every rank and in every world size: keyed
    randomness is what makes the groups of a step independent of the rank that owns them.
    """
    key = f"{seed}/{step}/{stage}/{index}/{iteration}".encode()
    return torch.Generator().manual_seed(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1)


class SingleProcess:
    """World size 1: this process owns every group, gathers are the identity, nothing to sync."""

    rng_mode: str = "sequential"

    @property
    def rank(self) -> int:
        """Always 0: one process."""
        return 0

    @property
    def world_size(self) -> int:
        """Always 1: one process."""
        return 1

    @property
    def is_main(self) -> bool:
        """Always True: the one process writes everything."""
        return True

    def shard(self, n: int) -> range:
        """Every index of ``n`` (groups, items): one process owns them all."""
        return range(n)

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` itself: the concatenation over one rank."""
        return tensor

    def gather_objects(self, obj: Any) -> list[Any]:
        """``[obj]``: every rank's object, in rank order."""
        return [obj]

    def barrier(self) -> None:
        """Nothing to wait for."""

    @contextlib.contextmanager
    def full_parameters(self, policy: Any, *, writable: bool = False) -> Iterator[None]:
        """The policy's weights are whole in this process already."""
        yield

    def sync_reference(self, policy: Any) -> None:
        """Make the reference equal to the current policy (the policy does it itself)."""
        policy.sync_reference()

    def save_state(self, folder: Path) -> None:
        """Nothing beyond :meth:`state_dict`, which the loop stores in ``trainer.pt``."""

    def load_state(self, folder: Path) -> None:
        """Nothing beyond :meth:`load_state_dict`."""
