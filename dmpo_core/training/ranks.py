"""What the training loop does with several ranks: whole groups per rank, keyed randomness, weights
of the whole batch, and decisions every rank takes alike.

Weights, baselines and ESS are per group, and some schemes look across groups (a batch-wide
normalisation): so every rank gathers the step's rewards and log-likelihoods and weighs the
WHOLE batch, then keeps its own rows. The official DMPO code computes its baselines per GPU
slice instead, which makes a run's result depend on the GPU split; here a run on ``W`` ranks
gives the numbers of one process with keyed randomness (``engine_options.rng=keyed`` on the
local engine). Every function is the identity, or close to it, on one rank.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch

from dmpo_core.contracts import Engine, Ranks, WeightingScheme
from dmpo_core.data import RolloutBatch, WeightOutput
from dmpo_core.engine_base import SingleProcess, keyed_generator
from dmpo_core.errors import TrainingError
from dmpo_core.rewards import ComposedRewards


class _OneProcess(SingleProcess):
    """An engine without the :class:`Ranks` members, with their world-size-1 answers."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> Any:  # everything SingleProcess does not answer: the engine's
        return getattr(self._engine, name)


def ranked(engine: Engine) -> Any:
    """``engine`` itself when it has the :class:`Ranks` members, else a one-process view of it.

    Raises:
        TrainingError: an engine says it has several ranks but lacks the members to share a step.
    """
    if isinstance(engine, Ranks):
        return engine
    if engine.world_size != 1:
        members = ("rng_mode", "shard", "all_gather", "gather_objects", "barrier", "full_parameters",
                   "sync_reference", "save_state", "load_state")
        missing = [n for n in members if not hasattr(engine, n)]
        raise TrainingError(f"engine {type(engine).__name__} has {engine.world_size} ranks but not the "
                            f"Ranks members {missing} (dmpo_core.contracts.Ranks)")
    return _OneProcess(engine)


def check_split(engine: Engine, prompts_per_step: int) -> None:
    """Raise a one-line :class:`TrainingError` when the step's groups cannot be split whole and alike.

    Several ranks need keyed randomness (a sequential generator would tie each group's draws to
    the groups before it on its rank) and a number of prompts per step that the ranks share equally
    (every rank must run the same number of collective forwards).
    """
    world = engine.world_size
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1 and launched > 1:
        raise TrainingError(f"the launcher started {launched} ranks but the engine runs one process; "
                            f"use an engine that shares a step (ddp, deepspeed)")
    if world == 1:
        return
    if engine.rng_mode != "keyed":
        raise TrainingError(f"engine with {world} ranks has rng_mode {engine.rng_mode!r}; several ranks need 'keyed'")
    if prompts_per_step % world:
        raise TrainingError(
            f"rollout.prompts_per_step={prompts_per_step} does not split into {world} ranks of whole groups; "
            f"use a multiple of {world}"
        )


def group_generators(engine: Engine, seed: int, step: int, stage: str, groups: range,
                     iteration: int = 0) -> list[torch.Generator] | None:
    """One keyed generator per group of ``groups`` (global indices), or None under sequential randomness."""
    if engine.rng_mode != "keyed":
        return None
    return [keyed_generator(seed, step, stage, g, iteration) for g in groups]


def group_rows(groups: range, group_size: int) -> slice:
    """Rows ``[B*G]`` of the groups ``groups`` (a contiguous range of group indices)."""
    return slice(groups.start * group_size, groups.stop * group_size)


@attrs.frozen(kw_only=True)
class WholeStep:
    """The gathered rewards ``[B*G]`` and tilts ``[B*G]`` (or None) of a step, for its record."""

    rewards: torch.Tensor
    log_rnd: torch.Tensor | None


def _gathered(engine: Engine, t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else engine.all_gather(t)


def weigh_whole_batch(
    engine: Engine,
    weighting: WeightingScheme,
    batch: RolloutBatch,
    log_rnd: torch.Tensor | None,
    current: torch.Tensor | None,
    groups: range,
) -> tuple[WeightOutput, WeightOutput, WholeStep | None]:
    """The weights of this rank's rows, computed over the whole step's batch.

    Returns ``(local, whole, gathered)``: the weights of this rank's rows ``[rows]``, those of the
    whole batch ``[B*G]`` (for the step's statistics) and the whole batch's rewards and
    likelihoods as a rows-only batch (None on one rank: the batch itself is whole).
    """
    g = batch.group_size
    if engine.world_size == 1:
        w = weighting(batch.rewards, log_rnd, g, log_p_old=batch.log_p_old, log_p_current=current)
        return w, w, None
    rewards = engine.all_gather(batch.rewards)  # [B*G]
    all_rnd, all_old, all_cur = _gathered(engine, log_rnd), _gathered(engine, batch.log_p_old), _gathered(engine, current)
    whole = weighting(rewards, all_rnd, g, log_p_old=all_old, log_p_current=all_cur)
    return whole.rows(group_rows(groups, g)), whole, WholeStep(rewards=rewards, log_rnd=all_rnd)


def agree(engine: Engine, flag: bool) -> bool:
    """True on every rank when ``flag`` is true on every rank (one rank's bad loss stops them all)."""
    if engine.world_size == 1:
        return bool(flag)
    return all(engine.gather_objects(bool(flag)))


def main_decides(engine: Engine, value: Any) -> Any:
    """The main rank's ``value`` on every rank (a time budget, a stop signal seen there)."""
    if engine.world_size == 1:
        return value
    return engine.gather_objects(value)[0]


def merged_rewards(engine: Engine, scored: ComposedRewards) -> ComposedRewards:
    """Every rank's scored rewards as one, rows in rank order (the step's record)."""
    if engine.world_size == 1:
        return scored
    parts: Sequence[ComposedRewards] = engine.gather_objects(scored)
    names = list(parts[0].components)
    return ComposedRewards(
        total=[v for p in parts for v in p.total],
        components={n: [v for p in parts for v in p.components[n]] for n in names},
        n_failed=sum(p.n_failed for p in parts),
    )


def merged_stats(engine: Engine, stats: list[Mapping[str, float]]) -> list[Mapping[str, float]]:
    """Every rank's per-chunk loss statistics, in rank order."""
    if engine.world_size == 1:
        return stats
    return [s for part in engine.gather_objects(list(stats)) for s in part]
